//! `HEncLayer` (demucs/hdemucs.py): one encoder layer, used by both the frequency branch
//! (convolutions over the frequency axis, `(B, C, F, T)`) and the time branch (`(B, C, T)`).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::dconv::{DConv, DConvConfig};
use crate::layers::{gelu, glu, Conv1d, Conv2d, FreqConv, Norm};
use crate::Result;

/// The per-layer arguments that `HTDemucs.__init__` passes as `kw` / `kwt`.
#[derive(Debug, Clone, Copy)]
pub struct LayerConfig {
    pub kernel_size: usize,
    pub stride: usize,
    pub freq: bool,
    pub pad: bool,
    pub norm: bool,
    pub rewrite: bool,
    pub norm_groups: usize,
    pub dconv: DConvConfig,
}

#[derive(Debug, Clone)]
enum Conv {
    Time(Conv1d),
    Freq(FreqConv),
}

#[derive(Debug, Clone)]
enum Rewrite {
    Time(Conv1d),
    Freq(Conv2d),
}

#[derive(Debug, Clone)]
pub struct HEncLayer {
    freq: bool,
    stride: usize,
    empty: bool,
    conv: Conv,
    norm1: Norm,
    rewrite: Option<(Rewrite, Norm)>,
    dconv: Option<DConv>,
}

impl HEncLayer {
    /// `empty`: only the first convolution (the time layer just before the branches merge).
    pub fn load(
        vb: VarBuilder,
        chin: usize,
        chout: usize,
        cfg: &LayerConfig,
        dconv: bool,
        context: usize,
        empty: bool,
    ) -> Result<Self> {
        let pad = if cfg.pad { cfg.kernel_size / 4 } else { 0 };
        let (k, s) = (cfg.kernel_size, cfg.stride);
        let conv = if cfg.freq {
            Conv::Freq(FreqConv::load(vb.pp("conv"), chin, chout, k, s, pad)?)
        } else {
            Conv::Time(Conv1d::load(vb.pp("conv"), chin, chout, k, s, pad, 1)?)
        };
        let mut layer = Self {
            freq: cfg.freq,
            stride: s,
            empty,
            conv,
            norm1: Norm::Identity,
            rewrite: None,
            dconv: None,
        };
        if empty {
            return Ok(layer);
        }
        layer.norm1 = Norm::load(vb.pp("norm1"), cfg.norm, cfg.norm_groups, chout)?;
        if cfg.rewrite {
            let ker = 1 + 2 * context;
            let conv = if cfg.freq {
                Rewrite::Freq(Conv2d::load(
                    vb.pp("rewrite"),
                    chout,
                    2 * chout,
                    ker,
                    context,
                )?)
            } else {
                Rewrite::Time(Conv1d::load(
                    vb.pp("rewrite"),
                    chout,
                    2 * chout,
                    ker,
                    1,
                    context,
                    1,
                )?)
            };
            let norm = Norm::load(vb.pp("norm2"), cfg.norm, cfg.norm_groups, 2 * chout)?;
            layer.rewrite = Some((conv, norm));
        }
        if dconv {
            layer.dconv = Some(DConv::load(vb.pp("dconv"), chout, &cfg.dconv)?);
        }
        Ok(layer)
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// `inject`: the time branch output added to a frequency layer's first convolution
    /// where both branches have the same stride.
    pub fn forward(&self, x: &Tensor, inject: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.clone();
        if !self.freq && x.rank() == 4 {
            let (b, c, f, t) = x.dims4()?;
            x = x.reshape((b, c * f, t))?;
        }
        if !self.freq {
            let le = x.dim(2)?;
            if le % self.stride != 0 {
                x = x.pad_with_zeros(2, 0, self.stride - le % self.stride)?;
            }
        }
        let mut y = match &self.conv {
            Conv::Time(c) => c.forward(&x)?,
            Conv::Freq(c) => c.forward(&x)?,
        };
        if self.empty {
            return Ok(y);
        }
        if let Some(inject) = inject {
            let inject = if inject.rank() == 3 && y.rank() == 4 {
                inject.unsqueeze(2)?
            } else {
                inject.clone()
            };
            y = y.broadcast_add(&inject)?;
        }
        let mut y = gelu(&self.norm1.forward(&y)?)?;
        if let Some(dconv) = &self.dconv {
            y = if self.freq {
                dconv.forward_freq(&y)?
            } else {
                dconv.forward(&y)?
            };
        }
        match &self.rewrite {
            Some((conv, norm)) => {
                let z = match conv {
                    Rewrite::Time(c) => c.forward(&y)?,
                    Rewrite::Freq(c) => c.forward(&y)?,
                };
                glu(&norm.forward(&z)?, 1)
            }
            None => Ok(y),
        }
    }
}
