//! The model configuration: the keyword arguments of upstream `HTDemucs.__init__`
//! (demucs/htdemucs.py), with the same names and defaults, so that the `kwargs` of a release
//! `.th` or the `config` metadata of a safetensors file deserialise directly.

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

/// A duration in seconds kept as a fraction, as upstream does (`Fraction(39, 5)` for 7.8 s),
/// so that `segment * samplerate` is an exact frame count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Seconds {
    pub num: u64,
    pub den: u64,
}

impl Seconds {
    /// `int(self * samplerate)` as upstream computes it.
    pub fn frames(&self, sample_rate_hz: u32) -> usize {
        (self.num * u64::from(sample_rate_hz) / self.den) as usize
    }

    pub fn as_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(f64),
        }
        let parse = |s: &str| -> Option<Seconds> {
            let (n, d) = s.split_once('/').unwrap_or((s, "1"));
            let (num, den) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
            (den > 0).then_some(Seconds { num, den })
        };
        match Raw::deserialize(d)? {
            Raw::Text(s) => {
                parse(&s).ok_or_else(|| serde::de::Error::custom(format!("bad fraction {s:?}")))
            }
            Raw::Int(n) => Ok(Seconds { num: n, den: 1 }),
            // Milliseconds are exact enough for any segment length a float can describe.
            Raw::Float(f) if f > 0.0 => Ok(Seconds {
                num: (f * 1000.0).round() as u64,
                den: 1000,
            }),
            Raw::Float(f) => Err(serde::de::Error::custom(format!("bad segment {f}"))),
        }
    }
}

/// Upstream `HTDemucs` arguments (demucs 4.1.0). Fields that only matter for training
/// (dropout, learning rates, CAPE augmentation, ...) are accepted and ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HtDemucsConfig {
    pub sources: Vec<String>,
    pub audio_channels: usize,
    pub channels: usize,
    pub channels_time: Option<usize>,
    pub growth: f64,
    pub nfft: usize,
    pub wiener_iters: i64,
    pub end_iters: i64,
    pub cac: bool,
    pub depth: usize,
    pub rewrite: bool,
    pub multi_freqs: Option<Vec<f64>>,
    pub freq_emb: f64,
    pub emb_scale: f64,
    pub kernel_size: usize,
    pub time_stride: usize,
    pub stride: usize,
    pub context: usize,
    pub context_enc: usize,
    pub norm_starts: usize,
    pub norm_groups: usize,
    pub dconv_mode: u32,
    pub dconv_depth: usize,
    pub dconv_comp: f64,
    pub bottom_channels: usize,
    pub t_layers: usize,
    pub t_emb: String,
    pub t_hidden_scale: f64,
    pub t_heads: usize,
    pub t_norm_in: bool,
    pub t_norm_in_group: bool,
    pub t_group_norm: bool,
    pub t_norm_first: bool,
    pub t_norm_out: bool,
    pub t_max_period: f64,
    pub t_layer_scale: bool,
    pub t_gelu: bool,
    pub t_weight_pos_embed: f64,
    pub t_sparse_self_attn: bool,
    pub t_sparse_cross_attn: bool,
    pub t_cross_first: bool,
    pub samplerate: u32,
    pub segment: Seconds,
    pub use_train_segment: bool,
}

impl Default for HtDemucsConfig {
    /// The upstream defaults of `HTDemucs.__init__`.
    fn default() -> Self {
        Self {
            sources: ["drums", "bass", "other", "vocals"]
                .map(String::from)
                .to_vec(),
            audio_channels: 2,
            channels: 48,
            channels_time: None,
            growth: 2.0,
            nfft: 4096,
            wiener_iters: 0,
            end_iters: 0,
            cac: true,
            depth: 4,
            rewrite: true,
            multi_freqs: None,
            freq_emb: 0.2,
            emb_scale: 10.0,
            kernel_size: 8,
            time_stride: 2,
            stride: 4,
            context: 1,
            context_enc: 0,
            norm_starts: 4,
            norm_groups: 4,
            dconv_mode: 1,
            dconv_depth: 2,
            dconv_comp: 8.0,
            bottom_channels: 0,
            t_layers: 5,
            t_emb: "sin".into(),
            t_hidden_scale: 4.0,
            t_heads: 8,
            t_norm_in: true,
            t_norm_in_group: false,
            t_group_norm: false,
            t_norm_first: true,
            t_norm_out: true,
            t_max_period: 10000.0,
            t_layer_scale: true,
            t_gelu: true,
            t_weight_pos_embed: 1.0,
            t_sparse_self_attn: false,
            t_sparse_cross_attn: false,
            t_cross_first: false,
            samplerate: 44100,
            segment: Seconds { num: 10, den: 1 },
            use_train_segment: true,
        }
    }
}

impl HtDemucsConfig {
    /// The configuration of the released `htdemucs` model (signature 955717e8) and of each
    /// model of `htdemucs_ft`.
    pub fn htdemucs() -> Self {
        Self {
            dconv_mode: 3,
            bottom_channels: 512,
            segment: Seconds { num: 39, den: 5 },
            ..Self::default()
        }
    }

    /// Parse the JSON form (the `config` metadata of our safetensors files).
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Frames the network sees per call (`int(segment * samplerate)`).
    pub fn segment_frames(&self) -> usize {
        self.segment.frames(self.samplerate)
    }

    pub fn hop_length(&self) -> usize {
        self.nfft / 4
    }

    /// Reject the configurations whose code paths this crate does not implement.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if !self.cac {
            return bad("cac=false (masking / Wiener filtering) is not implemented".into());
        }
        if self.multi_freqs.as_ref().is_some_and(|m| !m.is_empty()) {
            return bad("multi_freqs (MultiWrap) is not implemented".into());
        }
        if self.t_layers > 0 && self.t_emb != "sin" {
            return bad(format!(
                "t_emb={:?}: only \"sin\" is implemented",
                self.t_emb
            ));
        }
        if self.t_sparse_self_attn || self.t_sparse_cross_attn {
            return bad("sparse attention needs xformers kernels and is not implemented".into());
        }
        if self.t_group_norm || (!self.t_norm_in && self.t_norm_in_group) {
            return bad("group norms inside the transformer are not implemented".into());
        }
        if self.sources.is_empty() || self.audio_channels == 0 {
            return bad("no sources or no audio channels".into());
        }
        if self.nfft < 16 || !self.nfft.is_power_of_two() || self.kernel_size < 4 {
            return bad(format!(
                "nfft={} kernel_size={}",
                self.nfft, self.kernel_size
            ));
        }
        if self.segment.num == 0 {
            return bad("segment is zero".into());
        }
        Ok(())
    }
}
