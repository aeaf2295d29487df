//! `apply_model` (demucs/apply.py) and the input normalisation of `demucs.api.Separator`:
//! the mixture is normalised by the mean and standard deviation of its mono downmix, cut
//! into segments of the model's training length (7.8 s for the release) overlapping by 25 %,
//! each segment is separated, and the outputs are blended with triangular weights. Optional
//! random time shifts (`shifts`) average several passes.
//!
//! [`Separator::separate_streaming`] hands out finished audio as soon as no later segment
//! overlaps it, so memory stays bounded by a few segments however long the input.
//! [`Separator::separate_source`] does the same reading the input from a [`FrameSource`]
//! (e.g. a decoder), so that not even the input has to be in memory; the shifted passes run
//! in lock-step over the input, so `shifts` does not change that.

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

/// Where [`Separator::separate_source`] reads the mixture: consecutive planar frames at the
/// model's rate and channel count.
pub trait FrameSource {
    /// Appends the next frames, at most `max_frames`, to every `out[channel]` (the same number
    /// to each) and returns how many; 0 at the end of the input.
    fn read(&mut self, out: &mut [Vec<f32>], max_frames: usize) -> Result<usize>;
}

/// Planar audio in memory as a [`FrameSource`].
pub struct SliceSource<'a> {
    channels: &'a [&'a [f32]],
    at: usize,
}

impl<'a> SliceSource<'a> {
    pub fn new(channels: &'a [&'a [f32]]) -> Self {
        Self { channels, at: 0 }
    }
}

impl FrameSource for SliceSource<'_> {
    fn read(&mut self, out: &mut [Vec<f32>], max_frames: usize) -> Result<usize> {
        let n = self.channels.first().map_or(0, |c| c.len());
        let take = max_frames.min(n - self.at);
        for (o, c) in out.iter_mut().zip(self.channels) {
            o.extend_from_slice(&c[self.at..self.at + take]);
        }
        self.at += take;
        Ok(take)
    }
}

/// The normalisation of `demucs.api.Separator`: mean and unbiased standard deviation of the
/// mixture's mono downmix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixStats {
    pub mean: f32,
    pub std: f32,
}

impl MixStats {
    /// No normalisation.
    pub const IDENTITY: MixStats = MixStats {
        mean: 0.0,
        std: 1.0 - 1e-8,
    };

    /// The statistics of planar audio in memory.
    pub fn of(channels: &[&[f32]]) -> Self {
        let (mean, std) = mono_mean_std(channels);
        Self { mean, std }
    }
}

/// [`MixStats`] of a mixture that arrives in pieces (Welford's running mean and variance in
/// `f64`), for a first pass over a file.
#[derive(Debug, Clone, Default)]
pub struct MixStatsBuilder {
    frames: u64,
    mean: f64,
    m2: f64,
}

impl MixStatsBuilder {
    /// Adds planar frames (all channels of one length).
    pub fn push(&mut self, channels: &[&[f32]]) {
        let n = channels.first().map_or(0, |c| c.len());
        let c = channels.len() as f64;
        for i in 0..n {
            let x = channels.iter().map(|ch| f64::from(ch[i])).sum::<f64>() / c;
            self.frames += 1;
            let d = x - self.mean;
            self.mean += d / self.frames as f64;
            self.m2 += d * (x - self.mean);
        }
    }

    /// Frames seen so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn finish(&self) -> MixStats {
        let var = self.m2 / (self.frames as f64 - 1.0).max(1.0);
        MixStats {
            mean: self.mean as f32,
            std: var.sqrt() as f32,
        }
    }
}

/// A loaded model ready to separate whole recordings.
pub struct Separator {
    model: HtDemucs,
}

/// `block[stem][channel][frame]`.
type Block = Vec<Vec<Vec<f32>>>;

/// The input as `apply_model` sees it: the mixture, normalised, zero outside `[0, frames)`.
/// Only the frames that segments still to come may read are held.
struct Window<'a> {
    source: &'a mut dyn FrameSource,
    frames: usize,
    /// Absolute frame of `buf[c][0]`.
    start: usize,
    buf: Vec<Vec<f32>>,
    ended: bool,
    mean: f32,
    std: f32,
}

impl Window<'_> {
    /// `out[c][i] = x[c][start + i]`, zero outside the signal.
    fn read(&mut self, start: isize, out: &mut [Vec<f32>]) -> Result<()> {
        let len = out[0].len();
        let end = (start + len as isize).clamp(0, self.frames as isize) as usize;
        while !self.ended && self.start + self.buf[0].len() < end {
            let want = end - (self.start + self.buf[0].len());
            let got = self.source.read(&mut self.buf, want.max(4096))?;
            let n = self.buf[0].len();
            if self.buf.iter().any(|c| c.len() != n) {
                return Err(Error::Input(
                    "source gave channels of different lengths".into(),
                ));
            }
            self.ended = got == 0;
        }
        let first = start.max(0);
        if first < self.start as isize && first < end as isize {
            return Err(Error::Input(format!(
                "internal: segment at frame {start} read after frame {} was dropped",
                self.start
            )));
        }
        for (chan, o) in self.buf.iter().zip(out.iter_mut()) {
            for (i, v) in o.iter_mut().enumerate() {
                let j = start + i as isize;
                *v = if (0..self.frames as isize).contains(&j) {
                    // Past the end of a source shorter than announced: zeros.
                    chan.get(j as usize - self.start)
                        .map_or(0.0, |x| (x - self.mean) / self.std)
                } else {
                    0.0
                };
            }
        }
        Ok(())
    }

    /// No segment will read before `frame` any more.
    fn discard_before(&mut self, frame: isize) {
        let frame = frame.max(0) as usize;
        if frame > self.start {
            let drop = (frame - self.start).min(self.buf[0].len());
            for c in &mut self.buf {
                c.drain(..drop);
            }
            self.start += drop;
        }
    }
}

/// The `split=True` branch of `apply_model` over the view `[view_start, view_start +
/// view_len)` of the input, one segment per [`SplitRun::step`].
struct SplitRun {
    view_start: isize,
    view_len: usize,
    /// Start of the next segment (view coordinates).
    offset: usize,
    /// Output before this (view coordinates) has been handed out.
    emitted: usize,
    /// Pending output from `emitted` on: weighted sums and the sum of weights.
    pending: Block,
    pending_w: Vec<f32>,
}

/// What every pass shares: segment length, stride, blend weights and a scratch chunk.
struct SplitShape {
    seg: usize,
    stride: usize,
    weight: Vec<f32>,
    chunk: Vec<Vec<f32>>,
}

impl SplitShape {
    fn new(seg: usize, overlap: f64, channels: usize) -> Self {
        let stride = (((1.0 - overlap) * seg as f64) as usize).max(1);
        // Triangular weights, maximal in the middle (transition_power 1).
        let half = seg / 2;
        let weight: Vec<f32> = (1..=half)
            .chain((1..=seg - half).rev())
            .map(|w| w as f32)
            .collect();
        let max_w = weight.iter().copied().fold(0.0, f32::max);
        let weight = weight.iter().map(|w| w / max_w).collect();
        Self {
            seg,
            stride,
            weight,
            chunk: vec![vec![0f32; seg]; channels],
        }
    }
}

impl SplitRun {
    fn new(view_start: isize, view_len: usize, sources: usize, channels: usize) -> Self {
        Self {
            view_start,
            view_len,
            offset: 0,
            emitted: 0,
            pending: vec![vec![Vec::new(); channels]; sources],
            pending_w: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.offset >= self.view_len
    }

    fn segments(&self, stride: usize) -> usize {
        self.view_len.div_ceil(stride)
    }

    /// The earliest input frame the next segment may read.
    fn next_read(&self, seg: usize) -> isize {
        self.view_start + self.offset as isize - (seg / 2) as isize
    }

    /// Separates the next segment; returns the output it finished, `(view start, block)`.
    fn step(
        &mut self,
        model: &HtDemucs,
        input: &mut Window,
        shape: &mut SplitShape,
    ) -> Result<Option<(usize, Block)>> {
        let (seg, stride) = (shape.seg, shape.stride);
        let n_chan = shape.chunk.len();
        let offset = self.offset;
        let chunk_len = seg.min(self.view_len - offset);
        let delta = seg - chunk_len;
        // TensorChunk.padded: centred, reading real signal around the chunk when present.
        input.read(
            self.view_start + offset as isize - (delta / 2) as isize,
            &mut shape.chunk,
        )?;
        let flat: Vec<f32> = shape.chunk.concat();
        let x = Tensor::from_vec(flat, (1, n_chan, seg), model.device())?;
        let y = model.forward(&x)?; // (1, S, C, seg)
        let y = y
            .squeeze(0)?
            .narrow(2, delta / 2, chunk_len)?
            .to_device(&Device::Cpu)?;
        let y: Vec<Vec<Vec<f32>>> = y.to_vec3()?;
        let rel = offset - self.emitted;
        let end = rel + chunk_len;
        if self.pending_w.len() < end {
            self.pending_w.resize(end, 0.0);
            for c in self.pending.iter_mut().flatten() {
                c.resize(end, 0.0);
            }
        }
        for (p, w) in self.pending_w[rel..end].iter_mut().zip(&shape.weight) {
            *p += w;
        }
        for (p_stem, y_stem) in self.pending.iter_mut().zip(&y) {
            for (p, yc) in p_stem.iter_mut().zip(y_stem) {
                for ((p, v), w) in p[rel..end].iter_mut().zip(yc).zip(&shape.weight) {
                    *p += v * w;
                }
            }
        }
        self.offset += stride;
        // Everything before the next segment's start is final.
        let next = self.offset.min(self.view_len);
        let ready = next.saturating_sub(self.emitted);
        if ready == 0 {
            return Ok(None);
        }
        let sums: Vec<f32> = self.pending_w.drain(..ready).collect();
        let block: Block = self
            .pending
            .iter_mut()
            .map(|stem| {
                stem.iter_mut()
                    .map(|c| c.drain(..ready).zip(&sums).map(|(v, w)| v / w).collect())
                    .collect()
            })
            .collect();
        let start = self.emitted;
        self.emitted = next;
        Ok(Some((start, block)))
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

    /// Network calls needed for `frames` input frames (what [`Progress::segments_total`]
    /// will say).
    pub fn segments_for(&self, frames: usize, opts: &SeparateOptions) -> usize {
        let shape = SplitShape::new(self.segment_frames(), opts.overlap.clamp(0.0, 0.99), 0);
        self.passes(frames, opts)
            .iter()
            .map(|(run, _)| run.segments(shape.stride))
            .sum()
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
    /// order, with `block[stem][channel][frame]`. Memory is a few segments per shift
    /// whatever the input length.
    pub fn separate_streaming(
        &self,
        channels: &[&[f32]],
        opts: &SeparateOptions,
        progress: impl FnMut(Progress) -> bool,
        sink: impl FnMut(usize, &[Vec<Vec<f32>>]),
    ) -> Result<()> {
        let n = channels.first().map_or(0, |c| c.len());
        if channels.iter().any(|c| c.len() != n) {
            return Err(Error::Input("channels of different lengths".into()));
        }
        let stats = if opts.normalize {
            MixStats::of(channels)
        } else {
            MixStats::IDENTITY
        };
        let mut source = SliceSource::new(channels);
        self.run(&mut source, channels.len(), n, stats, opts, progress, sink)
    }

    /// Like [`Self::separate_streaming`], reading `frames` frames of `channels` channels
    /// from `source` as they are needed (a few segments at a time), so a long input never
    /// has to be in memory. Normalisation (`opts.normalize`) uses `stats`, which the caller
    /// measures beforehand (e.g. with [`MixStatsBuilder`] in a first pass). A source that
    /// ends before `frames` reads as zeros; frames past `frames` are not read.
    #[allow(clippy::too_many_arguments)]
    pub fn separate_source(
        &self,
        source: &mut dyn FrameSource,
        channels: usize,
        frames: usize,
        stats: MixStats,
        opts: &SeparateOptions,
        progress: impl FnMut(Progress) -> bool,
        sink: impl FnMut(usize, &[Vec<Vec<f32>>]),
    ) -> Result<()> {
        let stats = if opts.normalize {
            stats
        } else {
            MixStats::IDENTITY
        };
        self.run(source, channels, frames, stats, opts, progress, sink)
    }

    /// The split runs of every pass with the number of leading output frames each drops:
    /// one plain pass, or one per shift with a random offset of up to 0.5 s (`apply_model`
    /// with shifts > 0 pads the input by `max_shift` and drops `max_shift - offset`).
    fn passes(&self, n: usize, opts: &SeparateOptions) -> Vec<(SplitRun, usize)> {
        let s = self.sources().len();
        let c = self.audio_channels();
        if opts.shifts == 0 {
            return vec![(SplitRun::new(0, n, s, c), 0)];
        }
        let max_shift = (0.5 * self.sample_rate_hz() as f64) as usize;
        let mut rng = SplitMix64(opts.seed);
        (0..opts.shifts)
            .map(|_| {
                let offset = (rng.next() % (max_shift as u64 + 1)) as usize;
                let skip = max_shift - offset;
                (SplitRun::new(-(skip as isize), n + skip, s, c), skip)
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        source: &mut dyn FrameSource,
        channels: usize,
        n: usize,
        stats: MixStats,
        opts: &SeparateOptions,
        mut progress: impl FnMut(Progress) -> bool,
        mut sink: impl FnMut(usize, &[Vec<Vec<f32>>]),
    ) -> Result<()> {
        let cfg = self.model.config();
        if channels != cfg.audio_channels {
            return Err(Error::Input(format!(
                "{channels} channels, the model takes {}",
                cfg.audio_channels
            )));
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
        let std = stats.std + 1e-8;
        let mut input = Window {
            source,
            frames: n,
            start: 0,
            buf: vec![Vec::new(); channels],
            ended: false,
            mean: stats.mean,
            std,
        };
        let denorm = |block: &mut [Vec<Vec<f32>>]| {
            for v in block.iter_mut().flatten().flatten() {
                *v = *v * std + stats.mean;
            }
        };
        let mut shape = SplitShape::new(cfg.segment_frames(), opts.overlap, channels);
        let mut passes = self.passes(n, opts);
        let total: usize = passes.iter().map(|(r, _)| r.segments(shape.stride)).sum();
        let k = passes.len();
        // Output from `acc_start` on, summed over the passes; pass p has delivered output
        // up to `covered[p]`.
        let n_src = self.sources().len();
        let mut acc: Block = vec![vec![Vec::new(); channels]; n_src];
        let mut acc_start = 0usize;
        let mut covered = vec![0usize; k];
        let mut done = 0;
        while passes.iter().any(|(r, _)| !r.done()) {
            for (p, (run, skip)) in passes.iter_mut().enumerate() {
                if run.done() {
                    continue;
                }
                let finished = run.step(&self.model, &mut input, &mut shape)?;
                done += 1;
                if !progress(Progress {
                    segments_done: done,
                    segments_total: total,
                }) {
                    return Err(Error::Cancelled);
                }
                let Some((start, block)) = finished else {
                    continue;
                };
                // View frame v is output frame v - skip; keep what lies in [0, n).
                let len = block[0][0].len();
                let from = start.max(*skip);
                let to = (start + len).min(*skip + n);
                if from >= to {
                    continue;
                }
                let (o_from, o_to) = (from - *skip, to - *skip);
                let need = o_to - acc_start;
                for (a_stem, b_stem) in acc.iter_mut().zip(&block) {
                    for (a, b) in a_stem.iter_mut().zip(b_stem) {
                        if a.len() < need {
                            a.resize(need, 0.0);
                        }
                        for (x, v) in a[o_from - acc_start..need]
                            .iter_mut()
                            .zip(&b[from - start..to - start])
                        {
                            *x += v;
                        }
                    }
                }
                covered[p] = o_to;
            }
            // Every pass has delivered up to `ready`: hand it out.
            let ready = covered.iter().copied().min().unwrap_or(0);
            if ready > acc_start {
                let m = ready - acc_start;
                let mut block: Block = acc
                    .iter_mut()
                    .map(|stem| {
                        stem.iter_mut()
                            .map(|c| c.drain(..m).map(|v| v / k as f32).collect())
                            .collect()
                    })
                    .collect();
                denorm(&mut block);
                sink(acc_start, &block);
                acc_start = ready;
            }
            let next_read = passes
                .iter()
                .filter(|(r, _)| !r.done())
                .map(|(r, _)| r.next_read(shape.seg))
                .min()
                .unwrap_or(n as isize);
            input.discard_before(next_read);
        }
        Ok(())
    }
}

/// Mean and unbiased std of the mono downmix (`wav.mean(0)`, `ref.mean()`, `ref.std()`).
fn mono_mean_std(channels: &[&[f32]]) -> (f32, f32) {
    let n = channels.first().map_or(0, |c| c.len());
    if n == 0 {
        return (0.0, 0.0);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_stats_match_the_two_pass_ones() {
        let l: Vec<f32> = (0..5000)
            .map(|i| ((i * 37 % 101) as f32 - 40.0) / 90.0)
            .collect();
        let r: Vec<f32> = (0..5000)
            .map(|i| ((i * 11 % 53) as f32 - 20.0) / 70.0)
            .collect();
        let whole = MixStats::of(&[&l, &r]);
        let mut b = MixStatsBuilder::default();
        for (a, c) in l.chunks(777).zip(r.chunks(777)) {
            b.push(&[a, c]);
        }
        let run = b.finish();
        assert_eq!(b.frames(), 5000);
        assert!((run.mean - whole.mean).abs() < 1e-6, "{run:?} {whole:?}");
        assert!((run.std - whole.std).abs() < 1e-6, "{run:?} {whole:?}");
    }
}
