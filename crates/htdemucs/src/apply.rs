//! `apply_model` (demucs/apply.py) and the input normalisation of `demucs.api.Separator`:
//! the mixture is normalised by the mean and standard deviation of its mono downmix, cut
//! into segments of the model's training length (7.8 s for the release) overlapping by 25 %,
//! each segment is separated, and the outputs are blended with triangular weights. Optional
//! random time shifts (`shifts`) average several passes.
//!
//! [`Separator::separate_streaming`] hands out finished audio as soon as no later segment
//! overlaps it, so memory stays bounded by a few segments however long the input.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{Checkpoint, Error, HtDemucs, Result};

/// Options of `apply_model` that a caller may change.
#[derive(Debug, Clone)]
pub struct SeparateOptions {
    /// Fraction of a segment shared with the next one (`overlap`, 0.25 upstream).
    pub overlap: f64,
    /// Passes with a random shift of up to 0.5 s, averaged (`shifts`; 0 = one plain pass,
    /// as parity tests need; the demucs command line uses 1).
    pub shifts: usize,
    /// Seed of the shift generator (upstream uses Python's `random`).
    pub seed: u64,
    /// Normalise by the mixture's mean and std as `demucs.api.Separator` does.
    pub normalize: bool,
}

impl Default for SeparateOptions {
    fn default() -> Self {
        Self {
            overlap: 0.25,
            shifts: 0,
            seed: 0,
            normalize: true,
        }
    }
}

/// Where a separation stands, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Segments separated so far, over all shifts.
    pub segments_done: usize,
    pub segments_total: usize,
}

/// Separated audio: `audio[stem][channel][frame]`, stems named as in `names`.
#[derive(Debug, Clone)]
pub struct Stems {
    pub names: Vec<String>,
    pub audio: Vec<Vec<Vec<f32>>>,
}

impl Stems {
    /// The stem called `name` (e.g. "vocals").
    pub fn get(&self, name: &str) -> Option<&[Vec<f32>]> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.audio[i].as_slice())
    }
}

/// A loaded model ready to separate whole recordings.
pub struct Separator {
    model: HtDemucs,
}

/// The input as `apply_model` sees it: the mixture, optionally normalised, zero outside.
struct Input<'a> {
    channels: &'a [&'a [f32]],
    mean: f32,
    std: f32,
}

impl Input<'_> {
    fn len(&self) -> usize {
        self.channels[0].len()
    }

    /// `out[c][i] = x[c][start + i]`, zero outside the signal.
    fn read(&self, start: isize, out: &mut [Vec<f32>]) {
        let n = self.len() as isize;
        for (chan, o) in self.channels.iter().zip(out.iter_mut()) {
            for (i, v) in o.iter_mut().enumerate() {
                let j = start + i as isize;
                *v = if (0..n).contains(&j) {
                    (chan[j as usize] - self.mean) / self.std
                } else {
                    0.0
                };
            }
        }
    }
}

impl Separator {
    pub fn new(model: HtDemucs) -> Self {
        Self { model }
    }

    /// Loads a `.th` release file or a safetensors conversion (see [`Checkpoint`]).
    pub fn from_checkpoint(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Ok(Self::new(Checkpoint::read(path)?.into_model(device)?))
    }

    pub fn model(&self) -> &HtDemucs {
        &self.model
    }

    /// Stem names in output order (`["drums", "bass", "other", "vocals"]` for the release).
    pub fn sources(&self) -> &[String] {
        &self.model.config().sources
    }

    /// The sample rate the model expects; resample other rates before and after.
    pub fn sample_rate_hz(&self) -> u32 {
        self.model.config().samplerate
    }

    /// Channels the model expects (2: duplicate mono, downmix the rest).
    pub fn audio_channels(&self) -> usize {
        self.model.config().audio_channels
    }

    /// Frames per network call (343980 for the release: 7.8 s at 44.1 kHz).
    pub fn segment_frames(&self) -> usize {
        self.model.config().segment_frames()
    }

    /// Separates planar audio (`channels[c][frame]`, all of one length) into stems of the
    /// same length. `progress` is called after every segment; returning `false` cancels.
    /// Holds the whole output in memory; see [`Self::separate_streaming`] for long inputs.
    pub fn separate(
        &self,
        channels: &[&[f32]],
        opts: &SeparateOptions,
        mut progress: impl FnMut(Progress) -> bool,
    ) -> Result<Stems> {
        let n = channels.first().map_or(0, |c| c.len());
        let s = self.sources().len();
        let mut audio = vec![vec![Vec::with_capacity(n); channels.len()]; s];
        self.separate_streaming(channels, opts, &mut progress, |_, block| {
            for (stem, chans) in audio.iter_mut().zip(block) {
                for (out, c) in stem.iter_mut().zip(chans) {
                    out.extend_from_slice(c);
                }
            }
        })?;
        Ok(Stems {
            names: self.sources().to_vec(),
            audio,
        })
    }

    /// Like [`Self::separate`] but hands finished output to `sink(start_frame, block)`, in
    /// order, with `block[stem][channel][frame]`. Without shifts, memory is a few segments
    /// whatever the input length; with shifts the output is gathered before it is handed out.
    pub fn separate_streaming(
        &self,
        channels: &[&[f32]],
        opts: &SeparateOptions,
        mut progress: impl FnMut(Progress) -> bool,
        mut sink: impl FnMut(usize, &[Vec<Vec<f32>>]),
    ) -> Result<()> {
        let cfg = self.model.config();
        if channels.len() != cfg.audio_channels {
            return Err(Error::Input(format!(
                "{} channels, the model takes {}",
                channels.len(),
                cfg.audio_channels
            )));
        }
        let n = channels[0].len();
        if channels.iter().any(|c| c.len() != n) {
            return Err(Error::Input("channels of different lengths".into()));
        }
        if !(0.0..1.0).contains(&opts.overlap) {
            return Err(Error::Input(format!(
                "overlap {} outside [0, 1)",
                opts.overlap
            )));
        }
        if n == 0 {
            return Ok(());
        }
        // demucs.api.Separator: `(wav - mean) / (std + 1e-8)`.
        let (mean, std) = if opts.normalize {
            mono_mean_std(channels)
        } else {
            (0.0, 1.0 - 1e-8)
        };
        let input = Input {
            channels,
            mean,
            std: std + 1e-8,
        };
        let seg = cfg.segment_frames();
        let stride = (((1.0 - opts.overlap) * seg as f64) as usize).max(1);
        let denorm = |block: &mut [Vec<Vec<f32>>]| {
            for v in block.iter_mut().flatten().flatten() {
                *v = *v * input.std + input.mean;
            }
        };
        if opts.shifts == 0 {
            let total = n.div_ceil(stride);
            let mut done = 0;
            return self.run_split(&input, 0, n, seg, stride, &mut |block, start| {
                done += 1;
                if !progress(Progress {
                    segments_done: done,
                    segments_total: total,
                }) {
                    return Err(Error::Cancelled);
                }
                if let Some((start, mut block)) = block.map(|b| (start, b)) {
                    denorm(&mut block);
                    sink(start, &block);
                }
                Ok(())
            });
        }
        // Shifted passes, averaged (`apply_model` with shifts > 0).
        let max_shift = (0.5 * cfg.samplerate as f64) as usize;
        let mut rng = SplitMix64(opts.seed);
        let s = self.sources().len();
        let mut acc = vec![vec![vec![0f32; n]; channels.len()]; s];
        let total = opts.shifts * (n + max_shift).div_ceil(stride);
        let mut done = 0;
        for _ in 0..opts.shifts {
            let offset = (rng.next() % (max_shift as u64 + 1)) as usize;
            let view_len = n + max_shift - offset;
            let skip = max_shift - offset;
            self.run_split(
                &input,
                offset as isize - max_shift as isize,
                view_len,
                seg,
                stride,
                &mut |block, start| {
                    done += 1;
                    if !progress(Progress {
                        segments_done: done,
                        segments_total: total,
                    }) {
                        return Err(Error::Cancelled);
                    }
                    if let Some(block) = block {
                        for (a_stem, b_stem) in acc.iter_mut().zip(&block) {
                            for (a, b) in a_stem.iter_mut().zip(b_stem) {
                                for (i, v) in b.iter().enumerate() {
                                    let j = start + i;
                                    if j >= skip && j - skip < n {
                                        a[j - skip] += v;
                                    }
                                }
                            }
                        }
                    }
                    Ok(())
                },
            )?;
        }
        for v in acc.iter_mut().flatten().flatten() {
            *v /= opts.shifts as f32;
        }
        denorm(&mut acc);
        sink(0, &acc);
        Ok(())
    }

    /// The `split=True` branch of `apply_model` over the view `[view_start, view_start +
    /// view_len)` of the input. `emit(Some(block), start)` receives finished output (view
    /// coordinates) after each segment, or `None` when a segment finished nothing.
    #[allow(clippy::type_complexity)]
    fn run_split(
        &self,
        input: &Input,
        view_start: isize,
        view_len: usize,
        seg: usize,
        stride: usize,
        emit: &mut dyn FnMut(Option<Vec<Vec<Vec<f32>>>>, usize) -> Result<()>,
    ) -> Result<()> {
        let n_src = self.sources().len();
        let n_chan = input.channels.len();
        // Triangular weights, maximal in the middle (transition_power 1).
        let half = seg / 2;
        let weight: Vec<f32> = (1..=half)
            .chain((1..=seg - half).rev())
            .map(|w| w as f32)
            .collect();
        let max_w = weight.iter().copied().fold(0.0, f32::max);
        let weight: Vec<f32> = weight.iter().map(|w| w / max_w).collect();
        // Pending output from `emitted` on: weighted sums and the sum of weights.
        let mut pending = vec![vec![Vec::<f32>::new(); n_chan]; n_src];
        let mut pending_w = Vec::<f32>::new();
        let mut emitted = 0usize;
        let mut chunk = vec![vec![0f32; seg]; n_chan];
        let device = self.model.device().clone();
        let mut offset = 0;
        while offset < view_len {
            let chunk_len = seg.min(view_len - offset);
            let delta = seg - chunk_len;
            // TensorChunk.padded: centred, reading real signal around the chunk when present.
            input.read(
                view_start + offset as isize - (delta / 2) as isize,
                &mut chunk,
            );
            let flat: Vec<f32> = chunk.concat();
            let x = Tensor::from_vec(flat, (1, n_chan, seg), &device)?;
            let y = self.model.forward(&x)?; // (1, S, C, seg)
            let y = y
                .squeeze(0)?
                .narrow(2, delta / 2, chunk_len)?
                .to_device(&Device::Cpu)?;
            let y: Vec<Vec<Vec<f32>>> = y.to_vec3()?;
            let rel = offset - emitted;
            let end = rel + chunk_len;
            if pending_w.len() < end {
                pending_w.resize(end, 0.0);
                for c in pending.iter_mut().flatten() {
                    c.resize(end, 0.0);
                }
            }
            for (p, w) in pending_w[rel..end].iter_mut().zip(&weight) {
                *p += w;
            }
            for (p_stem, y_stem) in pending.iter_mut().zip(&y) {
                for (p, yc) in p_stem.iter_mut().zip(y_stem) {
                    for ((p, v), w) in p[rel..end].iter_mut().zip(yc).zip(&weight) {
                        *p += v * w;
                    }
                }
            }
            // Everything before the next segment's start is final.
            let next = (offset + stride).min(view_len);
            let ready = next - emitted;
            if ready > 0 {
                let sums: Vec<f32> = pending_w.drain(..ready).collect();
                let block: Vec<Vec<Vec<f32>>> = pending
                    .iter_mut()
                    .map(|stem| {
                        stem.iter_mut()
                            .map(|c| c.drain(..ready).zip(&sums).map(|(v, w)| v / w).collect())
                            .collect()
                    })
                    .collect();
                emit(Some(block), emitted)?;
                emitted = next;
            } else {
                emit(None, emitted)?;
            }
            offset += stride;
        }
        Ok(())
    }
}

/// Mean and unbiased std of the mono downmix (`wav.mean(0)`, `ref.mean()`, `ref.std()`).
fn mono_mean_std(channels: &[&[f32]]) -> (f32, f32) {
    let n = channels[0].len();
    let c = channels.len() as f64;
    let mono = |i: usize| channels.iter().map(|ch| f64::from(ch[i])).sum::<f64>() / c;
    let mean = (0..n).map(mono).sum::<f64>() / n as f64;
    let var = (0..n).map(|i| (mono(i) - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0).max(1.0);
    (mean as f32, var.sqrt() as f32)
}

/// A small seeded generator for the shifts.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
