//! Whole files through an offline model (HTDemucs), in bounded memory.
//!
//! HTDemucs separates segments of 7.8 s at 44.1 kHz in stereo and normalises the mixture by
//! its mean and standard deviation, which depend on the whole file. So a file is decoded twice:
//! a first pass measures those statistics and the length at the model rate; a second pass feeds
//! the model as its segments need the audio ([`FrameSource`]), and the finished output goes
//! back to the file's rate and out to the encoders block by block. Neither pass holds the file:
//! memory is a few segments (plus the model), however long the input.
//!
//! * Input at another rate is resampled to the model rate and back with the project's
//!   resampler; both delays are dropped exactly, so output frame `n` is input frame `n`.
//! * Mono input (or `--mono`) runs as dual mono and the two output channels are averaged back
//!   to one. Input with more than two channels is mixed down to mono first (as with `--mono`):
//!   the channel layout, and so where the dialogue is, is not known.
//! * The speech is the vocals stem; the music is the mixture minus the speech, computed at the
//!   file's rate, so that `speech + music == input` exactly (before the encoders' rounding).
//!   The sum of the other three stems would not do: HTDemucs' stems do not add up to the
//!   mixture exactly, and the rest would be lost from both outputs.
//! * A bag of models (`htdemucs_ft`) runs one pass per model, one model loaded at a time.
//!   A single model stays loaded from one file to the next ([`LoadedModel`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nomusic_audio_io::Decoder;
use nomusic_dsp::resample::StreamResampler;
use nomusic_models::demucs::{self, DemucsPass, SPEECH_STEM};
use nomusic_models::htdemucs::{self, FrameSource, MixStatsBuilder, SeparateOptions};
use nomusic_models::ModelError;

use crate::file::{
    downmix, refuse_overwrite, timing, FileJob, FileReport, Progress, Sink, READ_FRAMES,
};
use crate::EngineError;

/// The HTDemucs model in memory between passes and files. A job with one model loads its
/// checkpoint once for all its files; a bag of one-stem models still has one model in memory
/// at a time (the one held is dropped before another is loaded).
#[derive(Default)]
pub struct LoadedModel(Option<(DemucsPass, htdemucs::Separator)>);

impl LoadedModel {
    /// Takes out the model of `pass`: the one held if it is that model, else loaded.
    pub fn take(&mut self, pass: &DemucsPass) -> Result<htdemucs::Separator, ModelError> {
        match self.0.take() {
            Some((held, model)) if held == *pass => Ok(model),
            other => {
                drop(other);
                demucs::load(pass)
            }
        }
    }

    /// Holds `model` (the model of `pass`) for the next [`LoadedModel::take`].
    pub fn keep(&mut self, pass: &DemucsPass, model: htdemucs::Separator) {
        self.0 = Some((pass.clone(), model));
    }
}

/// Separates one file with the HTDemucs `passes` (see [`nomusic_models::demucs::passes`]):
/// the speech and music of `job`, and each stem named in `job.stems_out`.
pub fn separate_file_offline(
    job: &FileJob,
    passes: &[DemucsPass],
    loaded: &mut LoadedModel,
    options: &SeparateOptions,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<FileReport, EngineError> {
    let started = Instant::now();
    let outputs = job
        .speech_out
        .iter()
        .chain(job.music_out.iter())
        .chain(job.stems_out.iter().map(|(_, p)| p));
    for out in outputs {
        refuse_overwrite(&job.input, out)?;
    }
    if passes.is_empty() {
        return Err(EngineError::Config("no model to run".into()));
    }
    // A broken checkpoint fails before any decoding.
    let first = loaded.take(&passes[0])?;
    check_stems(job, passes, &first)?;
    let model_rate = first.sample_rate_hz();
    loaded.keep(&passes[0], first);

    let decoder = Decoder::open(&job.input)?;
    let info = decoder.info().clone();
    let rate = info.sample_rate_hz;
    let out_rate = job.output_rate_hz.unwrap_or(rate);
    let channels = if job.mono || info.channels > 2 {
        1
    } else {
        info.channels
    };

    // First pass: the length at the model rate and the normalisation statistics.
    let mut stats = MixStatsBuilder::default();
    let mut scan = DecodeSource::new(decoder, channels, model_rate, None)?;
    let mut buf = vec![Vec::new(); 2];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Interrupted);
        }
        for c in &mut buf {
            c.clear();
        }
        let n = scan.read_frames(&mut buf, 1 << 16)?;
        if n == 0 {
            break;
        }
        stats.push(&[&buf[0], &buf[1]]);
    }
    let stats = stats.finish();
    let (frames_in, frames_model) = (scan.frames_in, scan.produced);

    let skipped_packets = scan.decoder.skipped_packets();
    // Outputs are completed only when every pass has run, so that an error or Ctrl-C in a
    // later pass leaves none of them behind.
    let mut done_tracks: Vec<Track> = Vec::new();
    let mut done_speech = None;
    let n_pass = passes.len();
    for (i, pass) in passes.iter().enumerate() {
        let model = loaded.take(pass)?;
        if model.sample_rate_hz() != model_rate {
            return Err(EngineError::Config(format!(
                "{} runs at {} Hz, the first model at {model_rate} Hz",
                pass.checkpoint.display(),
                model.sample_rate_hz()
            )));
        }
        let sources = model.sources().to_vec();
        let gives_speech = pass.stem.is_none_or(|s| s == SPEECH_STEM);
        let want_speech = gives_speech && (job.speech_out.is_some() || job.music_out.is_some());
        // (index of the stem in the model's output, track)
        let mut tracks: Vec<(usize, Track)> = Vec::new();
        for (name, path) in &job.stems_out {
            if pass.stem.is_some_and(|s| s != name.as_str()) {
                continue;
            }
            if let Some(k) = sources.iter().position(|s| s == name) {
                let sink = Sink::new(path, job.format, rate, out_rate, channels)?;
                tracks.push((k, Track::new(model_rate, rate, channels, frames_in, sink)?));
            }
        }
        let vocals = sources.iter().position(|s| s == SPEECH_STEM);
        let mut speech = match (want_speech, vocals) {
            (true, Some(k)) => Some((
                k,
                SpeechTracks::new(job, model_rate, rate, channels, frames_in)?,
            )),
            _ => None,
        };
        let fifo = RefCell::new(VecDeque::new());
        let decoder = Decoder::open(&job.input)?;
        let mut source = DecodeSource::new(
            decoder,
            channels,
            model_rate,
            speech.is_some().then_some(&fifo),
        )?;
        let total = model.segments_for(frames_model as usize, options);
        let sink_error: RefCell<Option<EngineError>> = RefCell::new(None);
        let result = model.separate_source(
            &mut source,
            2,
            frames_model as usize,
            stats,
            options,
            |p| {
                let done = i * total + p.segments_done;
                let all = n_pass * total;
                progress(Progress {
                    frames_done: (frames_in as f64 * done as f64 / all.max(1) as f64) as u64,
                    frames_total: Some(frames_in),
                    sample_rate_hz: rate,
                    segments: Some((done, all)),
                });
                !cancel.load(Ordering::Relaxed) && sink_error.borrow().is_none()
            },
            |_, block| {
                if sink_error.borrow().is_some() {
                    return;
                }
                let mut run = || -> Result<(), EngineError> {
                    for (k, track) in &mut tracks {
                        track.push(&block[*k])?;
                    }
                    if let Some((k, s)) = &mut speech {
                        s.push(&block[*k], &mut fifo.borrow_mut())?;
                    }
                    Ok(())
                };
                if let Err(e) = run() {
                    *sink_error.borrow_mut() = Some(e);
                }
            },
        );
        if let Some(e) = source.error.take().or(sink_error.into_inner()) {
            return Err(e);
        }
        match result {
            Err(htdemucs::Error::Cancelled) => return Err(EngineError::Interrupted),
            Err(e) => return Err(ModelError::from(e).into()),
            Ok(()) => {}
        }
        drop(source);
        loaded.keep(pass, model);
        done_tracks.extend(tracks.into_iter().map(|(_, t)| t));
        if let Some((_, s)) = speech {
            done_speech = Some((s, fifo.into_inner()));
        }
    }
    let mut outputs = match done_speech {
        Some((s, mut fifo)) => s.finish(&mut fifo)?,
        None => Vec::new(),
    };
    for track in done_tracks {
        outputs.push(track.finish()?);
    }
    let (duration_s, processing_s, real_time_factor) = timing(frames_in, rate, started);
    Ok(FileReport {
        input: job.input.clone(),
        outputs,
        sample_rate_hz: rate,
        output_rate_hz: out_rate,
        channels,
        input_channels: info.channels,
        frames: frames_in,
        duration_s,
        processing_s,
        real_time_factor,
        codec: info.codec.clone(),
        skipped_packets,
    })
}

/// Every stem asked for must come from some pass.
fn check_stems(
    job: &FileJob,
    passes: &[DemucsPass],
    first: &htdemucs::Separator,
) -> Result<(), EngineError> {
    for (name, _) in &job.stems_out {
        let given = passes.iter().any(|p| match p.stem {
            Some(s) => s == name.as_str(),
            None => first.sources().iter().any(|s| s == name),
        });
        if !given {
            return Err(EngineError::Config(format!(
                "the model gives no stem \"{name}\" (it gives {})",
                first.sources().join(", ")
            )));
        }
    }
    Ok(())
}

/// The file decoded, mixed to `channels` (1 or 2), duplicated to stereo and resampled to the
/// model rate, with the resampler's delay dropped and its tail flushed so that the length is
/// `round(frames_in * model_rate / rate)`. Optionally keeps the decoded (mixed) input, at the
/// file's rate and interleaved, in `fifo` for the music (mixture minus speech).
struct DecodeSource<'a> {
    decoder: Decoder,
    in_channels: usize,
    channels: usize,
    rate: u32,
    model_rate: u32,
    resamplers: Vec<StreamResampler>,
    skip: usize,
    raw: Vec<f32>,
    mixed: Vec<f32>,
    lane: Vec<f32>,
    /// Model-rate frames resampled but not yet handed out, per model channel.
    ready: Vec<VecDeque<f32>>,
    frames_in: u64,
    produced: u64,
    ended: bool,
    fifo: Option<&'a RefCell<VecDeque<f32>>>,
    /// A decoding error, kept for the caller (the model sees a failed read).
    error: Option<EngineError>,
}

impl<'a> DecodeSource<'a> {
    fn new(
        decoder: Decoder,
        channels: usize,
        model_rate: u32,
        fifo: Option<&'a RefCell<VecDeque<f32>>>,
    ) -> Result<Self, EngineError> {
        let info = decoder.info().clone();
        let resamplers = (0..channels)
            .map(|_| StreamResampler::new(info.sample_rate_hz, model_rate))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            skip: resamplers[0].delay_frames(),
            decoder,
            in_channels: info.channels,
            channels,
            rate: info.sample_rate_hz,
            model_rate,
            resamplers,
            raw: Vec::new(),
            mixed: Vec::new(),
            lane: Vec::new(),
            ready: vec![VecDeque::new(); channels],
            frames_in: 0,
            produced: 0,
            ended: false,
            fifo,
            error: None,
        })
    }

    /// The model-rate length once the input is known to end here.
    fn target(&self) -> u64 {
        ((self.frames_in as u128 * self.model_rate as u128 + self.rate as u128 / 2)
            / self.rate as u128) as u64
    }

    /// Decodes and resamples until `want` frames are ready or the input is exhausted.
    fn fill(&mut self, want: usize) -> Result<(), EngineError> {
        while self.ready[0].len() < want && !self.ended {
            self.raw.clear();
            let n = self.decoder.read(&mut self.raw, READ_FRAMES)?;
            let mut out: Vec<Vec<f32>> = vec![Vec::new(); self.channels];
            if n == 0 {
                self.ended = true;
                let target = self.target();
                let mut guard = 0;
                while self.produced + (self.ready[0].len() as u64) < target {
                    for (r, o) in self.resamplers.iter_mut().zip(&mut out) {
                        r.process_silence(1024, o);
                    }
                    self.take(&mut out);
                    guard += 1;
                    if guard > 100_000 {
                        return Err(EngineError::Config("input resampler did not drain".into()));
                    }
                }
                let excess = (self.produced + self.ready[0].len() as u64).saturating_sub(target);
                for q in &mut self.ready {
                    q.truncate(q.len() - excess as usize);
                }
                break;
            }
            self.frames_in += n as u64;
            let input = if self.channels == 1 && self.in_channels > 1 {
                downmix(&self.raw, self.in_channels, &mut self.mixed);
                &self.mixed[..]
            } else {
                &self.raw[..]
            };
            if let Some(fifo) = self.fifo {
                fifo.borrow_mut().extend(input.iter().copied());
            }
            for (ch, (r, o)) in self.resamplers.iter_mut().zip(&mut out).enumerate() {
                self.lane.clear();
                self.lane
                    .extend(input.iter().skip(ch).step_by(self.channels));
                r.process(&self.lane, o);
            }
            self.take(&mut out);
        }
        Ok(())
    }

    /// Moves resampled frames into `ready`, after the delay skip.
    fn take(&mut self, out: &mut [Vec<f32>]) {
        let n = out[0].len();
        let drop = self.skip.min(n);
        self.skip -= drop;
        for (q, o) in self.ready.iter_mut().zip(out.iter_mut()) {
            q.extend(o.drain(..).skip(drop));
        }
    }

    fn read_frames(
        &mut self,
        out: &mut [Vec<f32>],
        max_frames: usize,
    ) -> Result<usize, EngineError> {
        self.fill(max_frames)?;
        let n = self.ready[0].len().min(max_frames);
        for (c, o) in out.iter_mut().enumerate() {
            // Mono runs as dual mono.
            let q = &self.ready[c.min(self.channels - 1)];
            o.extend(q.iter().take(n));
        }
        for q in &mut self.ready {
            q.drain(..n);
        }
        self.produced += n as u64;
        Ok(n)
    }
}

impl FrameSource for DecodeSource<'_> {
    fn read(&mut self, out: &mut [Vec<f32>], max_frames: usize) -> htdemucs::Result<usize> {
        self.read_frames(out, max_frames).map_err(|e| {
            let msg = e.to_string();
            self.error = Some(e);
            htdemucs::Error::Input(msg)
        })
    }
}

/// One stem on its way out: model-rate stereo -> `channels` at the file's rate -> a [`Sink`].
struct Track {
    back: BackConverter,
    sink: Sink,
    interleaved: Vec<f32>,
}

impl Track {
    fn new(
        model_rate: u32,
        rate: u32,
        channels: usize,
        frames_in: u64,
        sink: Sink,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            back: BackConverter::new(model_rate, rate, channels, frames_in)?,
            sink,
            interleaved: Vec::new(),
        })
    }

    fn push(&mut self, stem: &[Vec<f32>]) -> Result<(), EngineError> {
        self.interleaved.clear();
        self.back.push(stem, &mut self.interleaved);
        self.sink.write(&self.interleaved)
    }

    fn finish(mut self) -> Result<PathBuf, EngineError> {
        self.interleaved.clear();
        self.back.finish(&mut self.interleaved)?;
        self.sink.write(&self.interleaved)?;
        self.sink.finish(self.back.target)
    }
}

/// The speech (vocals) at the file's rate, and from it the speech output (music removed or
/// ducked) and the music output (mixture minus speech).
struct SpeechTracks {
    back: BackConverter,
    speech_sink: Option<Sink>,
    music_sink: Option<Sink>,
    music_gain: f32,
    vocals: Vec<f32>,
    speech: Vec<f32>,
    music: Vec<f32>,
}

impl SpeechTracks {
    fn new(
        job: &FileJob,
        model_rate: u32,
        rate: u32,
        channels: usize,
        frames_in: u64,
    ) -> Result<Self, EngineError> {
        let out_rate = job.output_rate_hz.unwrap_or(rate);
        let sink = |p: &Option<PathBuf>| -> Result<Option<Sink>, EngineError> {
            p.as_deref()
                .map(|p: &Path| Sink::new(p, job.format, rate, out_rate, channels))
                .transpose()
        };
        Ok(Self {
            back: BackConverter::new(model_rate, rate, channels, frames_in)?,
            speech_sink: sink(&job.speech_out)?,
            music_sink: sink(&job.music_out)?,
            music_gain: job.mix.music_gain,
            vocals: Vec::new(),
            speech: Vec::new(),
            music: Vec::new(),
        })
    }

    fn push(&mut self, stem: &[Vec<f32>], fifo: &mut VecDeque<f32>) -> Result<(), EngineError> {
        self.vocals.clear();
        self.back.push(stem, &mut self.vocals);
        self.write(fifo)
    }

    /// Writes `self.vocals` (interleaved, aligned with the front of `fifo`).
    fn write(&mut self, fifo: &mut VecDeque<f32>) -> Result<(), EngineError> {
        if fifo.len() < self.vocals.len() {
            return Err(EngineError::Config(format!(
                "internal: {} speech samples ahead of {} input samples",
                self.vocals.len(),
                fifo.len()
            )));
        }
        self.speech.clear();
        self.music.clear();
        for (v, x) in self.vocals.iter().zip(fifo.drain(..self.vocals.len())) {
            let m = x - v;
            self.speech.push(v + self.music_gain * m);
            self.music.push(m);
        }
        if let Some(s) = &mut self.speech_sink {
            s.write(&self.speech)?;
        }
        if let Some(s) = &mut self.music_sink {
            s.write(&self.music)?;
        }
        Ok(())
    }

    fn finish(mut self, fifo: &mut VecDeque<f32>) -> Result<Vec<PathBuf>, EngineError> {
        self.vocals.clear();
        self.back.finish(&mut self.vocals)?;
        self.write(fifo)?;
        let target = self.back.target;
        [self.speech_sink, self.music_sink]
            .into_iter()
            .flatten()
            .map(|s| s.finish(target))
            .collect()
    }
}

/// Model-rate stereo back to `channels` (averaging for mono) at the file's rate, with the
/// resampler's delay dropped and the length made exactly `target` frames.
struct BackConverter {
    resamplers: Vec<StreamResampler>,
    skip: usize,
    channels: usize,
    target: u64,
    written: u64,
    lanes: Vec<Vec<f32>>,
    folded: Vec<f32>,
}

impl BackConverter {
    fn new(model_rate: u32, rate: u32, channels: usize, target: u64) -> Result<Self, EngineError> {
        let resamplers = (0..channels)
            .map(|_| StreamResampler::new(model_rate, rate))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            skip: resamplers[0].delay_frames(),
            resamplers,
            channels,
            target,
            written: 0,
            lanes: vec![Vec::new(); channels],
            folded: Vec::new(),
        })
    }

    /// Appends the converted frames of `stem[channel][frame]` to `out`, interleaved.
    fn push(&mut self, stem: &[Vec<f32>], out: &mut Vec<f32>) {
        for (ch, r) in self.resamplers.iter_mut().enumerate() {
            if self.channels == 1 {
                self.folded.clear();
                self.folded
                    .extend(stem[0].iter().zip(&stem[1]).map(|(a, b)| 0.5 * (a + b)));
                r.process(&self.folded, &mut self.lanes[ch]);
            } else {
                r.process(&stem[ch], &mut self.lanes[ch]);
            }
        }
        self.drain(out);
    }

    fn drain(&mut self, out: &mut Vec<f32>) {
        let ready = self.lanes.iter().map(Vec::len).min().unwrap_or(0);
        let drop = self.skip.min(ready);
        self.skip -= drop;
        let n = (ready - drop).min(self.target.saturating_sub(self.written) as usize);
        for i in drop..drop + n {
            for lane in &self.lanes {
                out.push(lane[i]);
            }
        }
        for lane in &mut self.lanes {
            lane.drain(..ready);
        }
        self.written += n as u64;
    }

    /// Flushes the resampler until exactly `target` frames have come out.
    fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), EngineError> {
        let mut guard = 0;
        while self.written < self.target {
            for (r, lane) in self.resamplers.iter_mut().zip(&mut self.lanes) {
                r.process_silence(1024, lane);
            }
            self.drain(out);
            guard += 1;
            if guard > 100_000 {
                return Err(EngineError::Config("output resampler did not drain".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use nomusic_audio_io::{Encoder, OutputFormat, SampleFormat};

    use super::*;

    /// A held model is handed out again without reading its checkpoint; another pass drops it
    /// and loads its own.
    #[test]
    fn a_held_model_is_reused_and_another_pass_loads_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let tiny =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../htdemucs/tests/data/tiny.safetensors");
        let pass = |name: &str| {
            let checkpoint = dir.path().join(name);
            std::fs::copy(&tiny, &checkpoint).unwrap();
            DemucsPass {
                checkpoint,
                stem: None,
            }
        };
        let (a, b) = (pass("a.safetensors"), pass("b.safetensors"));
        let mut loaded = LoadedModel::default();
        let model = loaded.take(&a).unwrap();
        loaded.keep(&a, model);
        std::fs::remove_file(&a.checkpoint).unwrap();
        // Not read again: the file is gone, yet the model comes back.
        let model = loaded.take(&a).unwrap();
        loaded.keep(&a, model);
        assert!(loaded.take(&b).is_ok());
        // `b` was taken and not kept, `a` was dropped for it: `a` must be read, and cannot be.
        assert!(loaded.take(&a).is_err());
    }

    /// Into the model rate through the decoding source and back through the output converter:
    /// the same length and the same samples, not shifted by a frame.
    #[test]
    fn resampling_in_and_back_keeps_length_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wav");
        let (rate, n) = (16_000u32, 8_000usize);
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                0.5 * (std::f32::consts::TAU * 440.0 * t).sin()
                    + 0.25 * (std::f32::consts::TAU * 1000.0 * t).sin()
            })
            .collect();
        let mut enc =
            Encoder::create(&path, OutputFormat::Wav(SampleFormat::Float32), rate, 1).unwrap();
        enc.write(&x).unwrap();
        enc.finish().unwrap();

        let mut src = DecodeSource::new(Decoder::open(&path).unwrap(), 1, 44_100, None).unwrap();
        let mut planar = vec![Vec::new(); 2];
        while src.read_frames(&mut planar, 5_000).unwrap() > 0 {}
        assert_eq!(planar[0].len(), (n * 44_100 + 8_000) / 16_000);
        assert_eq!(planar[0], planar[1], "mono runs as dual mono");

        let mut back = BackConverter::new(44_100, rate, 1, n as u64).unwrap();
        let mut out = Vec::new();
        for (a, b) in planar[0].chunks(3_000).zip(planar[1].chunks(3_000)) {
            back.push(&[a.to_vec(), b.to_vec()], &mut out);
        }
        back.finish(&mut out).unwrap();
        assert_eq!(out.len(), n);
        // A one-frame shift would leave errors of about 0.2 here.
        let err = x[500..n - 500]
            .iter()
            .zip(&out[500..n - 500])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-2, "{err}");
    }
}
