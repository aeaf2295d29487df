//! Small building blocks shared by the encoder and decoder layers: convolutions with the
//! PyTorch weight layouts (including the `(K, 1)` frequency-axis Conv2d / ConvTranspose2d of
//! demucs, which candle's uniform-stride conv2d cannot express), norms and activations.

use candle_core::{Module, Tensor, D};

use candle_nn::VarBuilder;

use crate::cpu::{self, conv};
use crate::Result;

pub(crate) fn gelu(x: &Tensor) -> Result<Tensor> {
    // F.gelu / nn.GELU default: the exact erf form.
    if cpu::fast(x) {
        return cpu::gelu_tensor(x);
    }
    Ok(x.gelu_erf()?)
}

/// `F.glu(x, dim)`: first half times the sigmoid of the second half.
pub(crate) fn glu(x: &Tensor, dim: usize) -> Result<Tensor> {
    if dim == 1 && cpu::fast(x) {
        return cpu::glu_dim1(x);
    }
    let n = x.dim(dim)? / 2;
    let a = x.narrow(dim, 0, n)?;
    let b = x.narrow(dim, n, n)?;
    Ok((a * candle_nn::ops::sigmoid(&b)?)?)
}

/// `nn.Conv1d` (`weight: (out, in, k)`).
#[derive(Debug, Clone)]
pub(crate) struct Conv1d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    stride: usize,
    dilation: usize,
}

impl Conv1d {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((cout, cin, kernel), "weight")?,
            bias: vb.get(cout, "bias")?.reshape((1, cout, 1))?,
            padding,
            stride,
            dilation,
        })
    }

    /// `(weight (C', C, K), bias (1, C', 1), dilation)`, for fused CPU kernels.
    pub fn parts(&self) -> (&Tensor, &Tensor, usize) {
        (&self.weight, &self.bias, self.dilation)
    }

    /// `(B, C, T) -> (B, C', T')`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if cpu::fast(x) && (self.stride == 1 || self.dilation == 1) {
            let (b, c, l) = x.dims3()?;
            let (co, _, k) = self.weight.dims3()?;
            let mut lo = 0;
            let y = cpu::with_all([x, &self.weight, &self.bias], |[x, w, bias]| {
                cpu::per_item(x, b, |item| {
                    let y;
                    (y, lo) = if self.stride == 1 {
                        conv::conv1d_s1(item, (c, l), w, k, bias, self.padding, self.dilation)
                    } else {
                        conv::conv_strided(item, (c, l, 1), w, k, bias, self.stride, self.padding)
                    };
                    y
                })
            })?;
            return cpu::tensor(y, (b, co, lo));
        }
        self.forward_candle(x)
    }

    /// The same with candle's ops (other devices; the reference in tests).
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv1d(&self.weight, self.padding, self.stride, self.dilation, 1)?;
        Ok(y.broadcast_add(&self.bias)?)
    }
}

/// `nn.Conv2d` with a square kernel, stride 1 and equal padding (the `rewrite` convolutions).
#[derive(Debug, Clone)]
pub(crate) struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
}

impl Conv2d {
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((cout, cin, kernel, kernel), "weight")?,
            bias: vb.get(cout, "bias")?.reshape((1, cout, 1, 1))?,
            padding,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if cpu::fast(x) {
            let (b, c, f, t) = x.dims4()?;
            let (co, _, k, _) = self.weight.dims4()?;
            let (mut fo, mut to) = (f, t);
            let y = cpu::with_all([x, &self.weight, &self.bias], |[x, w, bias]| {
                cpu::per_item(x, b, |item| {
                    if k == 1 {
                        conv::conv1d_s1(item, (c, f * t), w, 1, bias, 0, 1).0
                    } else {
                        let y;
                        (y, fo, to) = conv::conv2d_s1(item, (c, f, t), w, k, bias, self.padding);
                        y
                    }
                })
            })?;
            return cpu::tensor(y, (b, co, fo, to));
        }
        let y = if self.weight.dim(2)? == 1 {
            // 1x1: a matrix product over channels.
            let (b, c, f, t) = x.dims4()?;
            let w = self.weight.flatten_from(1)?; // (out, in)
            let cout = w.dim(0)?;
            w.broadcast_left(b)?
                .matmul(&x.reshape((b, c, f * t))?)?
                .reshape((b, cout, f, t))?
        } else {
            x.conv2d(&self.weight, self.padding, 1, 1, 1)?
        };
        Ok(y.broadcast_add(&self.bias)?)
    }
}

/// `nn.Conv2d` with kernel `(K, 1)`, stride `(S, 1)`, padding `(P, 0)`: a 1-d convolution
/// over frequencies, applied to every time frame.
#[derive(Debug, Clone)]
pub(crate) struct FreqConv {
    conv: Conv1d,
}

impl FreqConv {
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = vb.get((cout, cin, kernel, 1), "weight")?.squeeze(3)?;
        let bias = vb.get(cout, "bias")?.reshape((1, cout, 1))?;
        Ok(Self {
            conv: Conv1d {
                weight,
                bias,
                padding,
                stride,
                dilation: 1,
            },
        })
    }

    /// `(B, C, F, T) -> (B, C', F', T)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !cpu::fast(x) {
            return self.forward_candle(x);
        }
        let (b, c, f, t) = x.dims4()?;
        let conv = &self.conv;
        let (co, _, k) = conv.weight.dims3()?;
        let mut fo = 0;
        let y = cpu::with_all([x, &conv.weight, &conv.bias], |[x, w, bias]| {
            cpu::per_item(x, b, |item| {
                let y;
                (y, fo) =
                    conv::conv_strided(item, (c, f, t), w, k, bias, conv.stride, conv.padding);
                y
            })
        })?;
        cpu::tensor(y, (b, co, fo, t))
    }

    /// The same as a batch of 1-d convolutions with candle's ops.
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        let x = x
            .permute((0, 3, 1, 2))?
            .contiguous()?
            .reshape((b * t, c, f))?;
        let y = self.conv.forward_candle(&x)?;
        let (_, c2, f2) = y.dims3()?;
        Ok(y.reshape((b, t, c2, f2))?
            .permute((0, 2, 3, 1))?
            .contiguous()?)
    }
}

/// `nn.ConvTranspose1d` (`weight: (in, out, k)`), no padding.
#[derive(Debug, Clone)]
pub(crate) struct ConvTr1d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl ConvTr1d {
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((cin, cout, kernel), "weight")?,
            bias: vb.get(cout, "bias")?.reshape((1, cout, 1))?,
            stride,
        })
    }

    fn from_parts(weight: Tensor, bias: Tensor, stride: usize) -> Self {
        Self {
            weight,
            bias,
            stride,
        }
    }

    /// `(B, C, T) -> (B, C', (T - 1) * S + K)`
    ///
    /// As one matrix product to columns `(B, C' * K, T)` and an overlap-add of the `K / S`
    /// blocks of each column (candle 0.11's CPU `conv_transpose1d` mixes up batch items).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !cpu::fast(x) {
            return self.forward_candle(x);
        }
        let (b, c, l) = x.dims3()?;
        self.forward_rows(x, b, (c, l, 1))
            .and_then(|(y, co, lo)| cpu::tensor(y, (b, co, lo)))
    }

    /// The CPU kernel on `(B, C, F, T)` data, transposed along `F`: `(y, C', F')`.
    fn forward_rows(
        &self,
        x: &Tensor,
        b: usize,
        dims: (usize, usize, usize),
    ) -> Result<(Vec<f32>, usize, usize)> {
        let (_, co, k) = self.weight.dims3()?;
        let mut fo = 0;
        let y = cpu::with_all([x, &self.weight, &self.bias], |[x, w, bias]| {
            cpu::per_item(x, b, |item| {
                let y;
                (y, fo) = conv::conv_tr_strided(item, dims, w, k, bias, self.stride);
                y
            })
        })?;
        Ok((y, co, fo))
    }

    /// The same with candle's ops.
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let (cin, cout, k) = self.weight.dims3()?;
        let s = self.stride;
        let (b, _, l) = x.dims3()?;
        let y = if k % s == 0 {
            let m = k / s;
            let w = self.weight.reshape((cin, cout * k))?.t()?.contiguous()?; // (C'K, C)
            let cols = w.broadcast_left(b)?.matmul(&x.contiguous()?)?; // (B, C'K, T)
                                                                       // (B, C', m, S, T) -> (B, C', m, T, S): block j of frame l lands on frame l + j.
            let cols = cols.reshape((b, cout, m, s, l))?.transpose(3, 4)?;
            let mut out: Option<Tensor> = None;
            for j in 0..m {
                let block = cols
                    .narrow(2, j, 1)?
                    .squeeze(2)?
                    .pad_with_zeros(2, j, m - 1 - j)?;
                out = Some(match out {
                    None => block,
                    Some(o) => (o + block)?,
                });
            }
            out.expect("m >= 1").reshape((b, cout, (l + m - 1) * s))?
        } else {
            let items = (0..b)
                .map(|i| {
                    x.narrow(0, i, 1)?
                        .conv_transpose1d(&self.weight, 0, 0, s, 1, 1)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::cat(&items, 0)?
        };
        Ok(y.broadcast_add(&self.bias)?)
    }
}

/// `nn.ConvTranspose2d` with kernel `(K, 1)` and stride `(S, 1)`.
#[derive(Debug, Clone)]
pub(crate) struct FreqConvTr {
    conv: ConvTr1d,
}

impl FreqConvTr {
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
    ) -> Result<Self> {
        let weight = vb.get((cin, cout, kernel, 1), "weight")?.squeeze(3)?;
        let bias = vb.get(cout, "bias")?.reshape((1, cout, 1))?;
        Ok(Self {
            conv: ConvTr1d::from_parts(weight, bias, stride),
        })
    }

    /// `(B, C, F, T) -> (B, C', (F - 1) * S + K, T)`
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !cpu::fast(x) {
            return self.forward_candle(x);
        }
        let (b, c, f, t) = x.dims4()?;
        let (y, co, fo) = self.conv.forward_rows(x, b, (c, f, t))?;
        cpu::tensor(y, (b, co, fo, t))
    }

    /// The same as a batch of 1-d transposed convolutions with candle's ops.
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        let x = x
            .permute((0, 3, 1, 2))?
            .contiguous()?
            .reshape((b * t, c, f))?;
        let y = self.conv.forward_candle(&x)?;
        let (_, c2, f2) = y.dims3()?;
        Ok(y.reshape((b, t, c2, f2))?
            .permute((0, 2, 3, 1))?
            .contiguous()?)
    }
}

/// `nn.GroupNorm` or `nn.Identity`, as the `norm_fn` lambdas of demucs build them.
#[derive(Debug, Clone)]
pub(crate) enum Norm {
    Identity,
    Group(GroupNorm),
}

impl Norm {
    pub fn load(vb: VarBuilder, enabled: bool, groups: usize, channels: usize) -> Result<Self> {
        Ok(if enabled {
            Norm::Group(GroupNorm::load(vb, groups, channels, false)?)
        } else {
            Norm::Identity
        })
    }

    /// The GroupNorm's host copies of `(weight, bias)` and its group count, if any.
    pub fn group_affine(&self) -> Option<(&[f32], &[f32], usize)> {
        match self {
            Norm::Identity => None,
            Norm::Group(g) => Some((&g.weight_host, &g.bias_host, g.groups)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Identity => Ok(x.clone()),
            Norm::Group(g) => g.forward(x),
        }
    }
}

/// `nn.GroupNorm(groups, channels, eps=1e-5)` on `(B, C, ...)`, or with `channel_last` on
/// `(B, T, C)` normalising each batch item over everything (demucs' `MyGroupNorm(1, C)`).
///
/// On the CPU it runs as one pass for the statistics and one for the affine map over the
/// data (candle's composite version takes about eight tensor passes, a large share of the
/// time of the DConv branches).
#[derive(Debug, Clone)]
pub(crate) struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    weight_host: Vec<f32>,
    bias_host: Vec<f32>,
    groups: usize,
    channel_last: bool,
    fallback: Option<candle_nn::GroupNorm>,
}

impl GroupNorm {
    pub fn load(
        vb: VarBuilder,
        groups: usize,
        channels: usize,
        channel_last: bool,
    ) -> Result<Self> {
        let weight = vb.get(channels, "weight")?;
        let bias = vb.get(channels, "bias")?;
        let fallback = if channel_last || vb.device().is_cpu() {
            None
        } else {
            Some(candle_nn::GroupNorm::new(
                weight.clone(),
                bias.clone(),
                channels,
                groups,
                1e-5,
            )?)
        };
        Ok(Self {
            weight_host: weight.to_device(&candle_core::Device::Cpu)?.to_vec1()?,
            bias_host: bias.to_device(&candle_core::Device::Cpu)?.to_vec1()?,
            weight,
            bias,
            groups,
            channel_last,
            fallback,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(g) = &self.fallback {
            return Ok(g.forward(x)?);
        }
        if !x.device().is_cpu() {
            // channel_last on an accelerator: composite ops.
            let (b, t, c) = x.dims3()?;
            let flat = x.reshape((b, t * c))?;
            let mean = flat.mean_keepdim(1)?;
            let centred = flat.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(1)?;
            let normed = centred
                .broadcast_div(&(var + 1e-5)?.sqrt()?)?
                .reshape((b, t, c))?;
            return Ok(normed
                .broadcast_mul(&self.weight)?
                .broadcast_add(&self.bias)?);
        }
        let dims = x.dims().to_vec();
        let (b, c) = if self.channel_last {
            (dims[0], dims[dims.len() - 1])
        } else {
            (dims[0], dims[1])
        };
        let per_item: usize = dims[1..].iter().product();
        let mut data = x.flatten_all()?.to_vec1::<f32>()?;
        let groups = if self.channel_last { 1 } else { self.groups };
        let group_len = per_item / groups;
        let rest = per_item / c; // frames per channel (channels first)
        for item in 0..b {
            for g in 0..groups {
                let chunk = &mut data[item * per_item + g * group_len..][..group_len];
                let n = chunk.len() as f64;
                let mean = chunk.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
                let var = chunk
                    .iter()
                    .map(|v| (f64::from(*v) - mean).powi(2))
                    .sum::<f64>()
                    / n;
                let inv = 1.0 / (var + 1e-5).sqrt();
                if self.channel_last {
                    for row in chunk.chunks_mut(c) {
                        for ((v, w), bb) in
                            row.iter_mut().zip(&self.weight_host).zip(&self.bias_host)
                        {
                            *v = ((f64::from(*v) - mean) * inv) as f32 * w + bb;
                        }
                    }
                } else {
                    let ch0 = g * (c / groups);
                    for (ci, row) in chunk.chunks_mut(rest).enumerate() {
                        let w = f64::from(self.weight_host[ch0 + ci]) * inv;
                        let bb = f64::from(self.bias_host[ch0 + ci]) - mean * w;
                        let (w, bb) = (w as f32, bb as f32);
                        for v in row.iter_mut() {
                            *v = *v * w + bb;
                        }
                    }
                }
            }
        }
        Ok(Tensor::from_vec(data, dims, x.device())?)
    }
}

/// `LayerScale` (demucs/demucs.py and demucs/transformer.py): a per-channel scale, on the
/// channel axis (dim 1) or, with `channel_last`, on the last axis.
#[derive(Debug, Clone)]
pub(crate) struct LayerScale {
    scale: Tensor,
}

impl LayerScale {
    pub fn load(vb: VarBuilder, channels: usize, channel_last: bool) -> Result<Self> {
        let scale = vb.get(channels, "scale")?;
        let scale = if channel_last {
            scale
        } else {
            scale.reshape((channels, 1))?
        };
        Ok(Self { scale })
    }

    pub fn scale(&self) -> &Tensor {
        &self.scale
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.scale)?)
    }
}

/// Mean and unbiased standard deviation over all dims but the first, keeping dims
/// (`x.mean(dim=(1, ...), keepdim=True)`, `x.std(dim=(1, ...), keepdim=True)`).
pub(crate) fn mean_std(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let b = x.dim(0)?;
    let flat = x.reshape((b, ()))?;
    let n = flat.dim(1)?;
    let mean = flat.mean_keepdim(1)?;
    let var =
        (flat.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n as f64 - 1.0).max(1.0))?;
    let mut shape = vec![1usize; x.rank()];
    shape[0] = b;
    Ok((mean.reshape(shape.clone())?, var.sqrt()?.reshape(shape)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn conv2d_3x3_matches_naive() {
        let dev = Device::Cpu;
        let (ci, co, f, t) = (3, 2, 5, 4);
        let x = Tensor::randn(0f32, 1.0, (1, ci, f, t), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (co, ci, 3, 3), &dev).unwrap();
        let y = x
            .conv2d(&w, 1, 1, 1, 1)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        let xv = x.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
        let wv: Vec<Vec<Vec<Vec<f32>>>> = (0..co)
            .map(|o| w.get(o).unwrap().to_vec3::<f32>().unwrap())
            .collect();
        for o in 0..co {
            for i in 0..f {
                for j in 0..t {
                    let mut acc = 0.0;
                    for c in 0..ci {
                        for di in 0..3 {
                            for dj in 0..3 {
                                let (ii, jj) =
                                    (i as isize + di as isize - 1, j as isize + dj as isize - 1);
                                if ii >= 0 && jj >= 0 && (ii as usize) < f && (jj as usize) < t {
                                    acc += xv[c][ii as usize][jj as usize] * wv[o][c][di][dj];
                                }
                            }
                        }
                    }
                    assert!(
                        (acc - y[o][i][j]).abs() < 1e-4,
                        "{o} {i} {j}: {acc} vs {}",
                        y[o][i][j]
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tr_tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn conv_tr1d_batched_equals_candle_per_item() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 4, 6), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 2, 8), &dev).unwrap();
        let bias = Tensor::zeros((1, 2, 1), candle_core::DType::F32, &dev).unwrap();
        let y = super::ConvTr1d::from_parts(w.clone(), bias, 4)
            .forward(&x)
            .unwrap();
        for b in 0..3 {
            // candle's own conv_transpose1d is right for a single item.
            let yb = x
                .narrow(0, b, 1)
                .unwrap()
                .conv_transpose1d(&w, 0, 0, 4, 1, 1)
                .unwrap();
            let d = (y.narrow(0, b, 1).unwrap() - yb)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-4, "batch {b}: {d}");
        }
    }
}
