//! `DConv` (demucs/demucs.py): the residual branch of dilated convolutions inside each
//! encoder and decoder layer. Without the LSTM and attention options, which HTDemucs never
//! enables.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::layers::{gelu, glu, Conv1d, LayerScale, Norm};
use crate::Result;

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
        let mut x = x.clone();
        for l in &self.layers {
            let y = gelu(&l.norm1.forward(&l.conv.forward(&x)?)?)?;
            let y = glu(&l.norm2.forward(&l.proj.forward(&y)?)?, 1)?;
            x = (x + l.scale.forward(&y)?)?;
        }
        Ok(x)
    }

    /// The same on a frequency-branch tensor: every frequency row is a sequence over time.
    /// `(B, C, F, T) -> (B, C, F, T)`
    pub fn forward_freq(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        let y = x
            .permute((0, 2, 1, 3))?
            .contiguous()?
            .reshape((b * f, c, t))?;
        let y = self.forward(&y)?;
        Ok(y.reshape((b, f, c, t))?
            .permute((0, 2, 1, 3))?
            .contiguous()?)
    }
}
