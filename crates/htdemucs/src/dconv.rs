//! `DConv` (demucs/demucs.py): the residual branch of dilated convolutions inside each
//! encoder and decoder layer. Without the LSTM and attention options, which HTDemucs never
//! enables.
//!
//! On the CPU each residual step runs fused over the native layout `(C, N, T)` (`N` the
//! frequency rows of the frequency branch, 1 for the time branch), in blocks of rows that
//! run in parallel: conv (3 shifted products) -> GroupNorm + GELU -> 1x1 product ->
//! GroupNorm + GLU + LayerScale + residual, with two passes over the data outside the
//! products.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::cpu::conv::bias_rows;
use crate::cpu::gemm::{matmul, MatRef, Threads};
use crate::cpu::{self, gelu, norm_stats, sigmoid, simd, Kernel};
use crate::layers::{gelu as gelu_tensor, glu, Conv1d, LayerScale, Norm};
use crate::{Error, Result};

/// GroupNorm epsilon (PyTorch default).
const EPS: f64 = 1e-5;

/// Floats of the widest intermediate (`2C x rows x T`) per block of rows (1 MiB).
const BLOCK_FLOATS: usize = 1 << 18;

/// Settings shared by every DConv of a model (`dconv_kw` upstream).
#[derive(Debug, Clone, Copy)]
pub struct DConvConfig {
    pub depth: usize,
    pub compress: f64,
}

/// One residual step: conv(k=3, dilated) -> GroupNorm(1) -> GELU -> conv 1x1 -> GroupNorm(1)
/// -> GLU -> LayerScale, with the PyTorch `nn.Sequential` indices 0, 1, 3, 4, 6 as names.
#[derive(Debug, Clone)]
struct DConvLayer {
    conv: Conv1d,
    norm1: Norm,
    proj: Conv1d,
    norm2: Norm,
    scale: LayerScale,
}

/// The weights of one step as host slices, for the fused kernel.
struct StepWeights<'a> {
    conv_w: &'a [f32],
    conv_b: &'a [f32],
    dilation: usize,
    norm1: (&'a [f32], &'a [f32]),
    proj_w: &'a [f32],
    proj_b: &'a [f32],
    norm2: (&'a [f32], &'a [f32]),
    scale: &'a [f32],
}

impl DConvLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = gelu_tensor(&self.norm1.forward(&self.conv.forward(x)?)?)?;
        let y = glu(&self.norm2.forward(&self.proj.forward(&y)?)?, 1)?;
        Ok((x + self.scale.forward(&y)?)?)
    }

    /// In place on host data `(B, C, N, T)`.
    fn forward_cpu(&self, x: &mut [f32], dims: (usize, usize, usize, usize)) -> Result<()> {
        let (b, c, n, t) = dims;
        let (Some((n1w, n1b, 1)), Some((n2w, n2b, 1))) =
            (self.norm1.group_affine(), self.norm2.group_affine())
        else {
            // `load` always builds GroupNorm(1, C) here.
            return Err(Error::Config(
                "DConv without its GroupNorm(1, C) norms".into(),
            ));
        };
        let (conv_w, conv_b, dilation) = self.conv.parts();
        let (proj_w, proj_b, _) = self.proj.parts();
        cpu::with_all(
            [conv_w, conv_b, proj_w, proj_b, self.scale.scale()],
            |[conv_w, conv_b, proj_w, proj_b, scale]| {
                let wts = StepWeights {
                    conv_w,
                    conv_b,
                    dilation,
                    norm1: (n1w, n1b),
                    proj_w,
                    proj_b,
                    norm2: (n2w, n2b),
                    scale,
                };
                let rows = (BLOCK_FLOATS / (2 * c * t)).clamp(1, n);
                for item in x.chunks_mut(c * n * t).take(b) {
                    let blocks: Vec<(usize, Vec<f32>)> = if rows == n {
                        vec![(0, step_block(&wts, item, (c, n, t), 0, n, Threads::All))]
                    } else {
                        (0..n)
                            .step_by(rows)
                            .collect::<Vec<_>>()
                            .into_par_iter()
                            .map(|n0| {
                                let nb = rows.min(n - n0);
                                (n0, step_block(&wts, item, (c, n, t), n0, nb, Threads::One))
                            })
                            .collect()
                    };
                    for (n0, out) in blocks {
                        let nb = out.len() / (c * t);
                        for (ci, src) in out.chunks(nb * t).enumerate() {
                            item[(ci * n + n0) * t..][..nb * t].copy_from_slice(src);
                        }
                    }
                }
            },
        )
    }
}

/// One residual step on rows `n0..n0 + nb` of `x: (C, N, T)`: returns their new values
/// `(C, nb, T)`.
fn step_block(
    w: &StepWeights<'_>,
    x: &[f32],
    (c, n, t): (usize, usize, usize),
    n0: usize,
    nb: usize,
    threads: Threads,
) -> Vec<f32> {
    let h = w.conv_b.len();
    let dl = w.dilation;
    let tp = t + 2 * dl;
    let width = nb * tp;
    // Zero-padded copy, then conv k=3 as three shifted products; column j * tp + tt of
    // `hp` is output (row j, time tt) for tt < t, junk beyond.
    let mut xp = vec![0f32; c * width];
    for ci in 0..c {
        for j in 0..nb {
            xp[ci * width + j * tp + dl..][..t].copy_from_slice(&x[(ci * n + n0 + j) * t..][..t]);
        }
    }
    let mut hp = bias_rows(w.conv_b, width);
    for tap in 0..3 {
        let a = MatRef {
            data: w.conv_w,
            offset: tap,
            rs: 3 * c,
            cs: 3,
        };
        let b = MatRef::rows(&xp, tap * dl, width);
        matmul(
            (h, width - 2 * dl, c),
            a,
            b,
            &mut hp,
            0,
            width,
            true,
            threads,
        );
    }
    drop(xp);
    // GroupNorm(1) per row + GELU, compacted to (H, nb * T).
    let stats1: Vec<(f32, f32)> = (0..nb)
        .map(|j| {
            let rows: Vec<&[f32]> = (0..h).map(|hh| &hp[hh * width + j * tp..][..t]).collect();
            norm_stats(&rows, EPS)
        })
        .collect();
    let mut hm = vec![0f32; h * nb * t];
    for (hh, dst) in hm.chunks_mut(nb * t).enumerate() {
        for (j, &(mean, inv)) in stats1.iter().enumerate() {
            let a = w.norm1.0[hh] * inv;
            let bb = w.norm1.1[hh] - mean * a;
            let src = &hp[hh * width + j * tp..][..t];
            simd(AffineGelu {
                dst: &mut dst[j * t..][..t],
                src,
                a,
                b: bb,
            });
        }
    }
    drop(hp);
    // 1x1 projection to 2C channels.
    let cols = nb * t;
    let mut z = bias_rows(w.proj_b, cols);
    let a = MatRef::rows(w.proj_w, 0, h);
    matmul(
        (2 * c, cols, h),
        a,
        MatRef::rows(&hm, 0, cols),
        &mut z,
        0,
        cols,
        true,
        threads,
    );
    drop(hm);
    // GroupNorm(1) per row + GLU + LayerScale + residual.
    let stats2: Vec<(f32, f32)> = (0..nb)
        .map(|j| {
            let rows: Vec<&[f32]> = (0..2 * c).map(|cc| &z[cc * cols + j * t..][..t]).collect();
            norm_stats(&rows, EPS)
        })
        .collect();
    let mut out = vec![0f32; c * cols];
    let glu_row = |(ci, dst): (usize, &mut [f32])| {
        for (j, &(mean, inv)) in stats2.iter().enumerate() {
            let a1 = w.norm2.0[ci] * inv;
            let b1 = w.norm2.1[ci] - mean * a1;
            let a2 = w.norm2.0[c + ci] * inv;
            let b2 = w.norm2.1[c + ci] - mean * a2;
            let za = &z[ci * cols + j * t..][..t];
            let zg = &z[(c + ci) * cols + j * t..][..t];
            let xr = &x[(ci * n + n0 + j) * t..][..t];
            let s = w.scale[ci];
            let dst = &mut dst[j * t..][..t];
            simd(GluResidual {
                dst,
                z: (za, zg),
                x: xr,
                affine: (a1, b1, a2, b2),
                scale: s,
            });
        }
    };
    if threads == Threads::All {
        out.par_chunks_mut(cols).enumerate().for_each(glu_row);
    } else {
        out.chunks_mut(cols).enumerate().for_each(glu_row);
    }
    out
}

/// `dst = gelu(src * a + b)`
struct AffineGelu<'a> {
    dst: &'a mut [f32],
    src: &'a [f32],
    a: f32,
    b: f32,
}

impl Kernel for AffineGelu<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for (d, s) in self.dst.iter_mut().zip(self.src) {
            *d = gelu(s * self.a + self.b);
        }
    }
}

/// `dst = x + scale * ((za * a1 + b1) * sigmoid(zg * a2 + b2))`
struct GluResidual<'a> {
    dst: &'a mut [f32],
    z: (&'a [f32], &'a [f32]),
    x: &'a [f32],
    affine: (f32, f32, f32, f32),
    scale: f32,
}

impl Kernel for GluResidual<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let (a1, b1, a2, b2) = self.affine;
        let (za, zg) = self.z;
        for (((d, a), g), xv) in self.dst.iter_mut().zip(za).zip(zg).zip(self.x) {
            *d = xv + self.scale * ((a * a1 + b1) * sigmoid(g * a2 + b2));
        }
    }
}

#[derive(Debug, Clone)]
pub struct DConv {
    layers: Vec<DConvLayer>,
}

impl DConv {
    pub fn load(vb: VarBuilder, channels: usize, cfg: &DConvConfig) -> Result<Self> {
        let hidden = (channels as f64 / cfg.compress) as usize;
        let vb = vb.pp("layers");
        let layers = (0..cfg.depth)
            .map(|d| {
                let vb = vb.pp(d);
                let dilation = 1 << d;
                Ok(DConvLayer {
                    conv: Conv1d::load(vb.pp(0), channels, hidden, 3, 1, dilation, dilation)?,
                    norm1: Norm::load(vb.pp(1), true, 1, hidden)?,
                    proj: Conv1d::load(vb.pp(3), hidden, 2 * channels, 1, 1, 0, 1)?,
                    norm2: Norm::load(vb.pp(4), true, 1, 2 * channels)?,
                    scale: LayerScale::load(vb.pp(6), channels, false)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// `(B, C, T) -> (B, C, T)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if cpu::fast(x) {
            let (b, c, t) = x.dims3()?;
            return self.forward_cpu(x, (b, c, 1, t));
        }
        self.forward_candle(x)
    }

    fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            x = l.forward(&x)?;
        }
        Ok(x)
    }

    fn forward_cpu(&self, x: &Tensor, dims: (usize, usize, usize, usize)) -> Result<Tensor> {
        let mut data = cpu::to_vec(x)?;
        for l in &self.layers {
            l.forward_cpu(&mut data, dims)?;
        }
        cpu::tensor(data, x.shape())
    }

    /// The same on a frequency-branch tensor: every frequency row is a sequence over time.
    /// `(B, C, F, T) -> (B, C, F, T)`
    pub fn forward_freq(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        if cpu::fast(x) {
            return self.forward_cpu(x, (b, c, f, t));
        }
        let y = x
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((b * f, c, t))?;
        let y = self.forward_candle(&y)?;
        Ok(y.reshape((b, f, c, t))?
            .permute((0, 2, 1, 3))?
            .contiguous()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// The fused CPU kernel against candle's op-by-op path on random weights.
    #[test]
    fn fused_step_matches_candle_ops() {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &dev);
        let cfg = DConvConfig {
            depth: 2,
            compress: 4.0,
        };
        DConv::load(vb, 8, &cfg).unwrap();
        // VarMap initialises norm weights / scales to fixed values: randomise everything.
        for var in map.all_vars() {
            let r = Tensor::randn(0f32, 0.5, var.shape(), &dev).unwrap();
            var.set(&(r + 0.3).unwrap()).unwrap();
        }
        let dconv = DConv::load(VarBuilder::from_varmap(&map, DType::F32, &dev), 8, &cfg).unwrap();
        // 60 rows of 300 frames: two blocks of rows, run in parallel.
        let x = Tensor::randn(0f32, 1.0, (2, 8, 60, 300), &dev).unwrap();
        let got = dconv.forward_freq(&x).unwrap();
        let want = dconv
            .forward_candle(
                &x.permute((0, 2, 1, 3))
                    .unwrap()
                    .contiguous()
                    .unwrap()
                    .reshape((120, 8, 300))
                    .unwrap(),
            )
            .unwrap()
            .reshape((2, 60, 8, 300))
            .unwrap()
            .permute((0, 2, 1, 3))
            .unwrap();
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
        let xt = Tensor::randn(0f32, 1.0, (2, 8, 300), &dev).unwrap();
        let d = (dconv.forward(&xt).unwrap() - dconv.forward_candle(&xt).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-4);
    }
}
