//! CPU fast paths: the hot layers of the network as loops and matrix products over
//! contiguous `f32` buffers, in the tensors' native layouts.
//!
//! candle allocates a tensor per operation and its CPU convolutions either permute to a
//! batch of tiny items or build large im2col buffers; here a convolution is a handful of
//! big products over shifted views of the input ([`conv`]), and the elementwise steps
//! (GroupNorm, GELU, GLU, LayerScale, residual) run fused in one or two passes. Layers
//! call these when their input is an f32 CPU tensor and keep candle's ops for other
//! devices.

pub(crate) mod attention;
pub(crate) mod conv;
pub(crate) mod dense;
pub(crate) mod gemm;

use candle_core::{CpuStorage, DType, Device, Shape, Storage, Tensor};
use rayon::prelude::*;

use crate::Result;

/// Elements per parallel task of elementwise loops.
const PAR_CHUNK: usize = 1 << 15;

/// Whether `x` can take the CPU fast path.
pub(crate) fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// Runs `f` on the data of each of `xs` (made contiguous first, a no-op when they are).
pub(crate) fn with_all<R, const N: usize>(
    xs: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Result<R> {
    let xs = xs
        .iter()
        .map(|x| x.contiguous())
        .collect::<candle_core::Result<Vec<_>>>()?;
    let guards: Vec<_> = xs.iter().map(|x| x.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(N);
    for ((storage, layout), x) in guards.iter().zip(&xs) {
        match &**storage {
            Storage::Cpu(CpuStorage::F32(v)) => {
                slices.push(&v[layout.start_offset()..][..x.elem_count()])
            }
            _ => {
                return Err(candle_core::Error::Msg(
                    "CPU fast path on a non-f32 or non-CPU tensor".into(),
                )
                .into())
            }
        }
    }
    let slices: [&[f32]; N] = slices.try_into().expect("one slice per tensor");
    Ok(f(slices))
}

/// Runs `f` on the data of `x`.
pub(crate) fn with_data<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    with_all([x], |[x]| f(x))
}

/// Runs `per_item` on each batch item of `x` (`items` equal slices) and stacks the results.
pub(crate) fn per_item(
    x: &[f32],
    items: usize,
    mut per_item: impl FnMut(&[f32]) -> Vec<f32>,
) -> Vec<f32> {
    let mut outs: Vec<Vec<f32>> = x
        .chunks(x.len() / items.max(1))
        .map(&mut per_item)
        .collect();
    if outs.len() == 1 {
        outs.pop().expect("one item")
    } else {
        outs.concat()
    }
}

/// A copy of the data of `x`.
pub(crate) fn to_vec(x: &Tensor) -> Result<Vec<f32>> {
    with_data(x, <[f32]>::to_vec)
}

/// A CPU tensor that takes ownership of `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// A loop to compile for the widest SIMD level of the CPU (see [`simd`]). Implementations
/// mark `run` `#[inline(always)]` and call only `#[inline(always)]` functions: closures and
/// function items are compiled out of line, for the baseline CPU.
pub(crate) trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the widest SIMD level this CPU has (AVX-512 / AVX2 on
/// x86-64, detected at run time), so that its plain loops vectorise to that width.
#[inline(always)]
pub(crate) fn simd<K: Kernel>(kernel: K) -> K::Output {
    struct Dispatch<K>(K);
    impl<K: Kernel> pulp::WithSimd for Dispatch<K> {
        type Output = K::Output;
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) -> K::Output {
            self.0.run()
        }
    }
    pulp::Arch::new().dispatch(Dispatch(kernel))
}

/// `exp` to about 2 ulp, branch-free so that loops over it vectorise (the libm call is a
/// large share of softmax and sigmoid time). Inputs below -87.3 give tiny normal numbers
/// instead of denormals or zero.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor series of e^r on |r| <= ln2 / 2 (truncation error below 2e-8 relative).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r / 5040.0))))));
    let bits = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    p * f32::from_bits(bits as u32)
}

#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `erf` (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// Exact (erf) GELU, as `F.gelu`.
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

struct GeluSlice<'a>(&'a mut [f32]);

impl Kernel for GeluSlice<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for v in self.0 {
            *v = gelu(*v);
        }
    }
}

/// GELU in place.
pub(crate) fn gelu_inplace(data: &mut [f32]) {
    data.par_chunks_mut(PAR_CHUNK)
        .for_each(|c| simd(GeluSlice(c)));
}

/// GELU of a tensor.
pub(crate) fn gelu_tensor(x: &Tensor) -> Result<Tensor> {
    let mut data = to_vec(x)?;
    gelu_inplace(&mut data);
    tensor(data, x.shape())
}

/// `F.glu(x, 1)` on `(B, 2C, ...)`.
pub(crate) fn glu_dim1(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let rest: usize = dims[2..].iter().product();
    let half = dims[1] / 2 * rest;
    let mut out = vec![0f32; dims[0] * half];
    with_data(x, |data| {
        for (o, item) in out.chunks_mut(half).zip(data.chunks(2 * half)) {
            let (a, g) = item.split_at(half);
            o.par_chunks_mut(PAR_CHUNK)
                .zip(a.par_chunks(PAR_CHUNK).zip(g.par_chunks(PAR_CHUNK)))
                .for_each(|(out, (a, g))| simd(GluSlice { out, a, g }));
        }
    })?;
    let mut shape = dims;
    shape[1] /= 2;
    tensor(out, shape)
}

struct GluSlice<'a> {
    out: &'a mut [f32],
    a: &'a [f32],
    g: &'a [f32],
}

impl Kernel for GluSlice<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        for ((o, a), g) in self.out.iter_mut().zip(self.a).zip(self.g) {
            *o = a * sigmoid(*g);
        }
    }
}

/// Mean and `1 / sqrt(var + eps)` over the concatenation of `rows` (GroupNorm statistics,
/// accumulated in f64).
pub(crate) fn norm_stats(rows: &[&[f32]], eps: f64) -> (f32, f32) {
    simd(NormStats(rows, eps))
}

struct NormStats<'a>(&'a [&'a [f32]], f64);

impl Kernel for NormStats<'_> {
    type Output = (f32, f32);
    #[inline(always)]
    fn run(self) -> (f32, f32) {
        let NormStats(rows, eps) = self;
        let (mut s, mut s2, mut n) = ([0f64; 4], [0f64; 4], 0usize);
        for row in rows {
            let mut chunks = row.chunks_exact(4);
            for c in &mut chunks {
                for i in 0..4 {
                    let v = f64::from(c[i]);
                    s[i] += v;
                    s2[i] += v * v;
                }
            }
            for &v in chunks.remainder() {
                s[0] += f64::from(v);
                s2[0] += f64::from(v) * f64::from(v);
            }
            n += row.len();
        }
        let n = n.max(1) as f64;
        let mean = s.iter().sum::<f64>() / n;
        let var = (s2.iter().sum::<f64>() / n - mean * mean).max(0.0);
        (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_math_matches_std() {
        let xs: Vec<f32> = (-3000..=3000).map(|i| i as f32 * 0.01).collect();
        // candle's gelu_erf (libm erf in f64) is the reference the network was checked with.
        let want = Tensor::new(xs.as_slice(), &Device::Cpu)
            .and_then(|t| t.gelu_erf())
            .and_then(|t| t.to_vec1::<f32>())
            .unwrap();
        for (&x, &g) in xs.iter().zip(&want) {
            let e = exp(x);
            assert!((e - x.exp()).abs() <= 3e-7 * x.exp(), "exp({x}) = {e}");
            assert!((gelu(x) - g).abs() < 2e-6, "gelu({x}) = {} vs {g}", gelu(x));
            let s = f64::from(sigmoid(x));
            assert!((s - 1.0 / (1.0 + f64::from(-x).exp())).abs() < 1e-6);
        }
        assert!(exp(-200.0) < 1e-37 && exp(-200.0) >= 0.0);
        assert!(gelu(-30.0).abs() < 1e-30);
    }

    #[test]
    fn glu_matches_candle() {
        let x = Tensor::randn(0f32, 1.0, (2, 6, 3, 5), &Device::Cpu).unwrap();
        let a = x.narrow(1, 0, 3).unwrap();
        let b = x.narrow(1, 3, 3).unwrap();
        let want = (a * candle_nn::ops::sigmoid(&b).unwrap()).unwrap();
        let got = glu_dim1(&x).unwrap();
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
