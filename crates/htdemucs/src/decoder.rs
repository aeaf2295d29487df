//! `HDecLayer` (demucs/hdemucs.py): one decoder layer of either branch: skip connection,
//! rewrite convolution, DConv, then the transposed convolution that upsamples.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::dconv::DConv;
use crate::encoder::LayerConfig;
use crate::layers::{gelu, glu, Conv1d, Conv2d, ConvTr1d, FreqConvTr, Norm};
use crate::Result;

#[derive(Debug, Clone)]
enum ConvTr {
    Time(ConvTr1d),
    Freq(FreqConvTr),
}

#[derive(Debug, Clone)]
enum Rewrite {
    Time(Conv1d),
    Freq(Conv2d),
}

#[derive(Debug, Clone)]
pub struct HDecLayer {
    freq: bool,
    chin: usize,
    pad: usize,
    last: bool,
    empty: bool,
    conv_tr: ConvTr,
    norm2: Norm,
    rewrite: Option<(Rewrite, Norm)>,
    dconv: Option<DConv>,
}

impl HDecLayer {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: VarBuilder,
        chin: usize,
        chout: usize,
        cfg: &LayerConfig,
        dconv: bool,
        context: usize,
        last: bool,
        empty: bool,
    ) -> Result<Self> {
        let pad = if cfg.pad { cfg.kernel_size / 4 } else { 0 };
        let (k, s) = (cfg.kernel_size, cfg.stride);
        let conv_tr = if cfg.freq {
            ConvTr::Freq(FreqConvTr::load(vb.pp("conv_tr"), chin, chout, k, s)?)
        } else {
            ConvTr::Time(ConvTr1d::load(vb.pp("conv_tr"), chin, chout, k, s)?)
        };
        let norm2 = Norm::load(vb.pp("norm2"), cfg.norm, cfg.norm_groups, chout)?;
        let mut layer = Self {
            freq: cfg.freq,
            chin,
            pad,
            last,
            empty,
            conv_tr,
            norm2,
            rewrite: None,
            dconv: None,
        };
        if empty {
            return Ok(layer);
        }
        if cfg.rewrite {
            // context_freq=True (no MultiWrap): a square kernel over (freq, time).
            let ker = 1 + 2 * context;
            let conv = if cfg.freq {
                Rewrite::Freq(Conv2d::load(
                    vb.pp("rewrite"),
                    chin,
                    2 * chin,
                    ker,
                    context,
                )?)
            } else {
                Rewrite::Time(Conv1d::load(
                    vb.pp("rewrite"),
                    chin,
                    2 * chin,
                    ker,
                    1,
                    context,
                    1,
                )?)
            };
            let norm = Norm::load(vb.pp("norm1"), cfg.norm, cfg.norm_groups, 2 * chin)?;
            layer.rewrite = Some((conv, norm));
        }
        if dconv {
            layer.dconv = Some(DConv::load(vb.pp("dconv"), chin, &cfg.dconv)?);
        }
        Ok(layer)
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Returns the upsampled output and, second, the input of the transposed convolution
    /// (`pre` upstream, used where the branches split).
    pub fn forward(
        &self,
        x: &Tensor,
        skip: Option<&Tensor>,
        length: usize,
    ) -> Result<(Tensor, Tensor)> {
        let mut x = x.clone();
        if self.freq && x.rank() == 3 {
            let (b, _, t) = x.dims3()?;
            x = x.reshape((b, self.chin, (), t))?;
        }
        let y = if self.empty {
            x
        } else {
            if let Some(skip) = skip {
                x = (x + skip)?;
            }
            let mut y = match &self.rewrite {
                Some((conv, norm)) => {
                    let z = match conv {
                        Rewrite::Time(c) => c.forward(&x)?,
                        Rewrite::Freq(c) => c.forward(&x)?,
                    };
                    glu(&norm.forward(&z)?, 1)?
                }
                None => x,
            };
            if let Some(dconv) = &self.dconv {
                y = if self.freq {
                    dconv.forward_freq(&y)?
                } else {
                    dconv.forward(&y)?
                };
            }
            y
        };
        let z = match &self.conv_tr {
            ConvTr::Time(c) => c.forward(&y)?,
            ConvTr::Freq(c) => c.forward(&y)?,
        };
        let z = self.norm2.forward(&z)?;
        let z = if self.freq {
            let f = z.dim(2)?;
            z.narrow(2, self.pad, f - 2 * self.pad)?
        } else {
            z.narrow(2, self.pad, length)?
        };
        let z = if self.last { z } else { gelu(&z)? };
        Ok((z, y))
    }
}
