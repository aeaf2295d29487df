//! `HTDemucs` (demucs/htdemucs.py): the top-level network. A frequency branch (encoders over
//! the complex-as-channels spectrogram) and a time branch (encoders over the waveform) meet
//! in the cross-domain transformer, are decoded separately, and their outputs are summed
//! after the inverse STFT.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::config::HtDemucsConfig;
use crate::dconv::DConvConfig;
use crate::decoder::HDecLayer;
use crate::encoder::{HEncLayer, LayerConfig};
use crate::layers::{mean_std, Conv1d};
use crate::spec::{Spectrogram, Stft};
use crate::transformer::{CrossTransformerEncoder, TransformerConfig};
use crate::{Error, Result};

/// The 1x1 convolutions around the transformer when `bottom_channels > 0`.
#[derive(Debug, Clone)]
struct Bottom {
    up: Conv1d,
    down: Conv1d,
    up_t: Conv1d,
    down_t: Conv1d,
}

pub struct HtDemucs {
    cfg: HtDemucsConfig,
    encoder: Vec<HEncLayer>,
    decoder: Vec<HDecLayer>,
    tencoder: Vec<HEncLayer>,
    tdecoder: Vec<HDecLayer>,
    /// `freq_emb.embedding.weight * emb_scale * freq_emb`, as `(1, C, F, 1)`.
    freq_emb: Option<Tensor>,
    bottom: Option<Bottom>,
    transformer: Option<CrossTransformerEncoder>,
    stft: Stft,
    device: Device,
}

impl HtDemucs {
    /// Builds the network from weights named as in the PyTorch `state_dict`.
    pub fn load(vb: VarBuilder, cfg: &HtDemucsConfig) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let n_src = cfg.sources.len();
        let ac = cfg.audio_channels;
        let dconv = DConvConfig {
            depth: cfg.dconv_depth,
            compress: cfg.dconv_comp,
        };
        // Number of frequency layers, i.e. of time-branch layers (upstream appends a time
        // layer for every frequency layer).
        let n_freq_layers = {
            let (mut freqs, mut n) = (cfg.nfft / 2, 0);
            for _ in 0..cfg.depth {
                if freqs > 1 {
                    n += 1;
                    freqs = if freqs <= cfg.kernel_size {
                        1
                    } else {
                        freqs / cfg.stride
                    };
                }
            }
            n
        };
        let mut chin = ac;
        let mut chin_z = if cfg.cac { 2 * chin } else { chin };
        let mut chout = cfg.channels_time.unwrap_or(cfg.channels);
        let mut chout_z = cfg.channels;
        let mut freqs = cfg.nfft / 2;
        let (mut encoder, mut tencoder) = (Vec::new(), Vec::new());
        let (mut decoder, mut tdecoder) = (Vec::new(), Vec::new());
        let mut freq_emb = None;
        for index in 0..cfg.depth {
            let freq = freqs > 1;
            let (mut ker, mut stri) = (cfg.kernel_size, cfg.stride);
            if !freq {
                ker = cfg.time_stride * 2;
                stri = cfg.time_stride;
            }
            let (mut pad, mut last_freq) = (true, false);
            if freq && freqs <= cfg.kernel_size {
                ker = freqs;
                pad = false;
                last_freq = true;
            }
            let kw = LayerConfig {
                kernel_size: ker,
                stride: stri,
                freq,
                pad,
                norm: index >= cfg.norm_starts,
                rewrite: cfg.rewrite,
                norm_groups: cfg.norm_groups,
                dconv,
            };
            let kwt = LayerConfig {
                freq: false,
                kernel_size: cfg.kernel_size,
                stride: cfg.stride,
                pad: true,
                ..kw
            };
            if last_freq {
                chout_z = chout_z.max(chout);
                chout = chout_z;
            }
            let enc_dconv = cfg.dconv_mode & 1 != 0;
            let dec_dconv = cfg.dconv_mode & 2 != 0;
            encoder.push(HEncLayer::load(
                vb.pp("encoder").pp(index),
                chin_z,
                chout_z,
                &kw,
                enc_dconv,
                cfg.context_enc,
                false,
            )?);
            if freq {
                tencoder.push(HEncLayer::load(
                    vb.pp("tencoder").pp(index),
                    chin,
                    chout,
                    &kwt,
                    enc_dconv,
                    cfg.context_enc,
                    last_freq,
                )?);
            }
            if index == 0 {
                chin = ac * n_src;
                chin_z = if cfg.cac { 2 * chin } else { chin };
            }
            decoder.push(HDecLayer::load(
                vb.pp("decoder").pp(cfg.depth - 1 - index),
                chout_z,
                chin_z,
                &kw,
                dec_dconv,
                cfg.context,
                index == 0,
                false,
            )?);
            if freq {
                tdecoder.push(HDecLayer::load(
                    vb.pp("tdecoder").pp(n_freq_layers - 1 - index),
                    chout,
                    chin,
                    &kwt,
                    dec_dconv,
                    cfg.context,
                    index == 0,
                    last_freq,
                )?);
            }
            chin = chout;
            chin_z = chout_z;
            chout = (cfg.growth * chout as f64) as usize;
            chout_z = (cfg.growth * chout_z as f64) as usize;
            if freq {
                freqs = if freqs <= cfg.kernel_size {
                    1
                } else {
                    freqs / cfg.stride
                };
            }
            if index == 0 && cfg.freq_emb != 0.0 {
                let w = vb
                    .pp("freq_emb")
                    .pp("embedding")
                    .get((freqs, chin_z), "weight")?;
                let w = (w.t()? * (cfg.emb_scale * cfg.freq_emb))?;
                freq_emb = Some(w.reshape((1, chin_z, freqs, 1))?);
            }
        }
        decoder.reverse();
        tdecoder.reverse();
        let mut dim = cfg.channels * (cfg.growth.powi(cfg.depth as i32 - 1)) as usize;
        let bottom = if cfg.bottom_channels > 0 {
            let bc = cfg.bottom_channels;
            let b = Bottom {
                up: Conv1d::load(vb.pp("channel_upsampler"), dim, bc, 1, 1, 0, 1)?,
                down: Conv1d::load(vb.pp("channel_downsampler"), bc, dim, 1, 1, 0, 1)?,
                up_t: Conv1d::load(vb.pp("channel_upsampler_t"), dim, bc, 1, 1, 0, 1)?,
                down_t: Conv1d::load(vb.pp("channel_downsampler_t"), bc, dim, 1, 1, 0, 1)?,
            };
            dim = bc;
            Some(b)
        } else {
            None
        };
        let transformer = if cfg.t_layers > 0 {
            let tc = TransformerConfig {
                dim,
                hidden_scale: cfg.t_hidden_scale,
                num_heads: cfg.t_heads,
                num_layers: cfg.t_layers,
                cross_first: cfg.t_cross_first,
                norm_in: cfg.t_norm_in,
                norm_first: cfg.t_norm_first,
                norm_out: cfg.t_norm_out,
                max_period: cfg.t_max_period,
                layer_scale: cfg.t_layer_scale,
                gelu: cfg.t_gelu,
                weight_pos_embed: cfg.t_weight_pos_embed,
            };
            if dim % cfg.t_heads != 0 || dim % 4 != 0 {
                return Err(Error::Config(format!(
                    "transformer width {dim} vs {} heads",
                    cfg.t_heads
                )));
            }
            Some(CrossTransformerEncoder::load(
                vb.pp("crosstransformer"),
                &tc,
            )?)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            encoder,
            decoder,
            tencoder,
            tdecoder,
            freq_emb,
            bottom,
            transformer,
            stft: Stft::new(cfg.nfft),
            device,
        })
    }

    pub fn config(&self) -> &HtDemucsConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The frequency and time encoder layers (for layer-level tests and inspection).
    pub fn encoders(&self) -> (&[HEncLayer], &[HEncLayer]) {
        (&self.encoder, &self.tencoder)
    }

    /// The frequency and time decoder layers, in the order they run.
    pub fn decoders(&self) -> (&[HDecLayer], &[HDecLayer]) {
        (&self.decoder, &self.tdecoder)
    }

    /// The cross-domain transformer, if the configuration has one.
    pub fn transformer(&self) -> Option<&CrossTransformerEncoder> {
        self.transformer.as_ref()
    }

    /// `HTDemucs._spec` + `_magnitude` (complex as channels): `(B, C, L)` on the host ->
    /// `(B, 2C, F, T)` with channels `[c0.re, c0.im, c1.re, ...]`.
    pub fn spec(&self, mix: &[Vec<Vec<f32>>]) -> Result<Tensor> {
        let mut data = Vec::new();
        let (mut bins, mut frames) = (0, 0);
        for item in mix {
            let chans: Vec<&[f32]> = item.iter().map(|c| c.as_slice()).collect();
            let z = self.stft.spec(&chans);
            (bins, frames) = (z.bins, z.frames);
            let plane = bins * frames;
            for c in 0..z.channels {
                data.extend_from_slice(&z.re[c * plane..(c + 1) * plane]);
                data.extend_from_slice(&z.im[c * plane..(c + 1) * plane]);
            }
        }
        let channels = mix.first().map_or(0, |m| m.len());
        Ok(Tensor::from_vec(
            data,
            (mix.len(), 2 * channels, bins, frames),
            &self.device,
        )?)
    }

    /// `_mask` + `_ispec`: `(B, S, 2C, F, T)` -> `(B, S, C, length)` on the host, flattened.
    fn ispec(&self, x: &Tensor, length: usize) -> Result<Vec<f32>> {
        let (b, s, c2, f, t) = x.dims5()?;
        let c = c2 / 2;
        let x = x.reshape((b * s * c, 2, f * t))?.to_device(&Device::Cpu)?;
        let re = x.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let im = x.narrow(1, 1, 1)?.flatten_all()?.to_vec1::<f32>()?;
        let z = Spectrogram {
            channels: b * s * c,
            bins: f,
            frames: t,
            re,
            im,
        };
        Ok(self.stft.ispec(&z, length).concat())
    }

    /// The network on a batch of mixtures `(B, C, L)`, returning `(B, S, C, L)`. Like
    /// upstream in eval mode, inputs shorter than the training segment are zero-padded to
    /// it (and the output cut back); longer inputs are an error: use [`crate::Separator`].
    pub fn forward(&self, mix: &Tensor) -> Result<Tensor> {
        let (b, ac, length) = mix.dims3()?;
        if ac != self.cfg.audio_channels {
            return Err(Error::Input(format!(
                "{ac} channels, the model takes {}",
                self.cfg.audio_channels
            )));
        }
        let mut mix = mix.to_dtype(DType::F32)?.to_device(&self.device)?;
        let training_length = self.cfg.segment_frames();
        let mut out_length = length;
        if self.cfg.use_train_segment {
            if length > training_length {
                return Err(Error::Input(format!(
                    "{length} frames exceed the model's segment of {training_length}"
                )));
            }
            if length < training_length {
                mix = mix.pad_with_zeros(2, 0, training_length - length)?;
            }
            out_length = training_length;
        }
        let mut timer = StageTimer::from_env();
        let host: Vec<Vec<Vec<f32>>> = mix.to_device(&Device::Cpu)?.to_vec3()?;
        let mag = self.spec(&host)?;
        let (_, _, fq, t) = mag.dims4()?;
        timer.lap("stft");

        let (mean, std) = mean_std(&mag)?;
        let mut x = mag.broadcast_sub(&mean)?.broadcast_div(&(&std + 1e-5)?)?;
        let (meant, stdt) = mean_std(&mix)?;
        let mut xt = mix.broadcast_sub(&meant)?.broadcast_div(&(&stdt + 1e-5)?)?;

        let mut saved = Vec::new();
        let mut saved_t = Vec::new();
        let mut lengths = Vec::new();
        let mut lengths_t = Vec::new();
        for (idx, encode) in self.encoder.iter().enumerate() {
            lengths.push(x.dim(x.rank() - 1)?);
            let mut inject = None;
            if let Some(tenc) = self.tencoder.get(idx) {
                lengths_t.push(xt.dim(2)?);
                xt = tenc.forward(&xt, None)?;
                if tenc.is_empty() {
                    inject = Some(xt.clone());
                } else {
                    saved_t.push(xt.clone());
                }
            }
            x = encode.forward(&x, inject.as_ref())?;
            timer.lap(&format!("encoder.{idx}+tencoder.{idx}"));
            if idx == 0 {
                if let Some(emb) = &self.freq_emb {
                    x = x.broadcast_add(emb)?;
                }
            }
            saved.push(x.clone());
        }
        if let Some(tr) = &self.transformer {
            if let Some(bt) = &self.bottom {
                let (b, c, f, t) = x.dims4()?;
                let y = bt.up.forward(&x.reshape((b, c, f * t))?)?;
                x = y.reshape((b, (), f, t))?;
                xt = bt.up_t.forward(&xt)?;
                let (y, yt) = tr.forward(&x, &xt)?;
                let (b, c, f, t) = y.dims4()?;
                x = bt
                    .down
                    .forward(&y.reshape((b, c, f * t))?)?
                    .reshape((b, (), f, t))?;
                xt = bt.down_t.forward(&yt)?;
            } else {
                (x, xt) = tr.forward(&x, &xt)?;
            }
        }
        timer.lap("transformer");
        let offset = self.decoder.len() - self.tdecoder.len();
        for (idx, decode) in self.decoder.iter().enumerate() {
            let skip = saved.pop().expect("one skip per encoder");
            let len = lengths.pop().expect("one length per encoder");
            let (y, pre) = decode.forward(&x, Some(&skip), len)?;
            x = y;
            if idx >= offset {
                let tdec = &self.tdecoder[idx - offset];
                let length_t = lengths_t.pop().expect("one length per time encoder");
                if tdec.is_empty() {
                    let pre = pre.squeeze(2)?;
                    xt = tdec.forward(&pre, None, length_t)?.0;
                } else {
                    let skip = saved_t.pop().expect("one skip per time encoder");
                    xt = tdec.forward(&xt, Some(&skip), length_t)?.0;
                }
            }
            timer.lap(&format!("decoder.{idx}+tdecoder"));
        }

        let s = self.cfg.sources.len();
        let x = x.reshape((b, s, (), fq, t))?;
        let x = x
            .broadcast_mul(&std.unsqueeze(1)?)?
            .broadcast_add(&mean.unsqueeze(1)?)?;
        let spec_out = self.ispec(&x, out_length)?;
        let spec_out = Tensor::from_vec(spec_out, (b, s, ac, out_length), &self.device)?;
        let xt = xt.reshape((b, s, ac, out_length))?;
        let xt = xt
            .broadcast_mul(&stdt.unsqueeze(1)?)?
            .broadcast_add(&meant.unsqueeze(1)?)?;
        let out = (xt + spec_out)?;
        timer.lap("istft");
        Ok(out.narrow(3, 0, length)?)
    }
}

/// Per-stage wall times on stderr when `NOMUSIC_HTDEMUCS_PROFILE` is set (profiling aid).
struct StageTimer(Option<std::time::Instant>);

impl StageTimer {
    fn from_env() -> Self {
        Self(std::env::var_os("NOMUSIC_HTDEMUCS_PROFILE").map(|_| std::time::Instant::now()))
    }

    fn lap(&mut self, stage: &str) {
        if let Some(t) = &mut self.0 {
            eprintln!(
                "htdemucs profile: {stage:<24} {:8.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
            *t = std::time::Instant::now();
        }
    }
}
