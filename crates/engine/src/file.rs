//! Whole files in bounded memory: decode a chunk, separate it, encode it, repeat.
//!
//! Memory does not grow with the file's length: only a fixed-size read chunk and the pipeline's
//! own delay buffers are held. Outputs are written to temporary files that are renamed into
//! place when complete, so an error or Ctrl-C never leaves a half-written output.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nomusic_audio_io::{Decoder, Encoder, OutputFormat};
use nomusic_dsp::resample::StreamResampler;

use crate::stream::{MixOptions, ModelFactory, StreamSeparator};
use crate::EngineError;

/// Frames decoded per step.
pub(crate) const READ_FRAMES: usize = 16_384;

/// One file to separate.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub input: PathBuf,
    /// Where the speech goes (music removed or ducked by `mix.music_gain`).
    pub speech_out: Option<PathBuf>,
    /// Where the music stem (mixture minus speech) goes.
    pub music_out: Option<PathBuf>,
    pub format: OutputFormat,
    pub mix: MixOptions,
    /// Output sample rate; `None` keeps the input's.
    pub output_rate_hz: Option<u32>,
    /// Downmix to mono (before processing, which halves the work for stereo).
    pub mono: bool,
    /// Further stems by name (e.g. "drums"), for models that give them (HTDemucs).
    pub stems_out: Vec<(String, PathBuf)>,
}

/// Where a file job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input frames processed so far.
    pub frames_done: u64,
    /// Input length in frames, when the container says.
    pub frames_total: Option<u64>,
    pub sample_rate_hz: u32,
    /// Model segments done and in all, for offline models that work in segments.
    pub segments: Option<(usize, usize)>,
}

/// What a finished file job did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileReport {
    pub input: PathBuf,
    pub outputs: Vec<PathBuf>,
    pub sample_rate_hz: u32,
    pub output_rate_hz: u32,
    /// Channels processed and written.
    pub channels: usize,
    /// Channels of the input file.
    pub input_channels: usize,
    pub frames: u64,
    pub duration_s: f64,
    pub processing_s: f64,
    /// Processing time over audio duration (below 1 is faster than real time).
    pub real_time_factor: f64,
    pub codec: String,
    pub skipped_packets: u64,
}

/// Separates one file. `cancel` is polled between chunks; when it turns true the job stops
/// with `EngineError::Interrupted` and leaves no output behind.
pub fn separate_file(
    job: &FileJob,
    factory: &ModelFactory<'_>,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<FileReport, EngineError> {
    let started = Instant::now();
    if !job.stems_out.is_empty() {
        return Err(EngineError::Config(
            "only HTDemucs models give further stems (drums, bass, other, vocals)".into(),
        ));
    }
    for out in job.speech_out.iter().chain(job.music_out.iter()) {
        refuse_overwrite(&job.input, out)?;
    }
    let mut decoder = Decoder::open(&job.input)?;
    let info = decoder.info().clone();
    let in_channels = info.channels;
    let channels = if job.mono { 1 } else { in_channels };
    let rate = info.sample_rate_hz;
    let out_rate = job.output_rate_hz.unwrap_or(rate);

    let mix = MixOptions {
        music_stem: job.music_out.is_some(),
        ..job.mix
    };
    let mut sep = StreamSeparator::new(factory, rate, channels, mix)?;
    let mut speech_sink = match &job.speech_out {
        Some(p) => Some(Sink::new(p, job.format, rate, out_rate, channels)?),
        None => None,
    };
    let mut music_sink = match &job.music_out {
        Some(p) => Some(Sink::new(p, job.format, rate, out_rate, channels)?),
        None => None,
    };

    let mut buf = Vec::with_capacity(READ_FRAMES * in_channels);
    let mut mono = Vec::new();
    let (mut speech, mut music) = (Vec::new(), Vec::new());
    let mut frames_done = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Interrupted);
        }
        buf.clear();
        let n = decoder.read(&mut buf, READ_FRAMES)?;
        if n == 0 {
            break;
        }
        let input = if job.mono && in_channels > 1 {
            downmix(&buf, in_channels, &mut mono);
            &mono[..]
        } else {
            &buf[..]
        };
        sep.process(input, &mut speech, music_sink.as_ref().map(|_| &mut music))?;
        write_sinks(&mut speech_sink, &mut speech, &mut music_sink, &mut music)?;
        frames_done += n as u64;
        progress(Progress {
            frames_done,
            frames_total: info.frames,
            sample_rate_hz: rate,
            segments: None,
        });
    }
    sep.finish(&mut speech, music_sink.as_ref().map(|_| &mut music))?;
    write_sinks(&mut speech_sink, &mut speech, &mut music_sink, &mut music)?;

    let mut outputs = Vec::new();
    for sink in [speech_sink, music_sink].into_iter().flatten() {
        outputs.push(sink.finish(frames_done)?);
    }
    let (duration_s, processing_s, real_time_factor) = timing(frames_done, rate, started);
    Ok(FileReport {
        input: job.input.clone(),
        outputs,
        sample_rate_hz: rate,
        output_rate_hz: out_rate,
        channels,
        input_channels: in_channels,
        frames: frames_done,
        duration_s,
        processing_s,
        real_time_factor,
        codec: info.codec.clone(),
        skipped_packets: decoder.skipped_packets(),
    })
}

/// A finished job's audio duration, processing time (since `started`) and their ratio, in
/// seconds, for [`FileReport`].
pub(crate) fn timing(frames: u64, rate: u32, started: Instant) -> (f64, f64, f64) {
    let processing_s = started.elapsed().as_secs_f64();
    let duration_s = frames as f64 / rate as f64;
    let rtf = if duration_s > 0.0 {
        processing_s / duration_s
    } else {
        0.0
    };
    (duration_s, processing_s, rtf)
}

fn write_sinks(
    speech_sink: &mut Option<Sink>,
    speech: &mut Vec<f32>,
    music_sink: &mut Option<Sink>,
    music: &mut Vec<f32>,
) -> Result<(), EngineError> {
    if let Some(s) = speech_sink {
        s.write(speech)?;
    }
    speech.clear();
    if let Some(s) = music_sink {
        s.write(music)?;
    }
    music.clear();
    Ok(())
}

pub(crate) fn downmix(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    out.clear();
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() * scale),
    );
}

/// Refuses to write `out` over `input` (also through links or `./` spellings).
pub(crate) fn refuse_overwrite(input: &Path, out: &Path) -> Result<(), EngineError> {
    let same = match (input.canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => input == out,
    };
    if same {
        return Err(EngineError::WouldOverwriteInput {
            path: out.to_path_buf(),
        });
    }
    Ok(())
}

/// An output file, with optional rate conversion whose delay is compensated exactly.
pub(crate) struct Sink {
    encoder: Encoder,
    path: PathBuf,
    channels: usize,
    rate: u32,
    out_rate: u32,
    converters: Vec<StreamResampler>,
    /// Output frames still to drop per channel (the converter's delay).
    skip: usize,
    planar: Vec<Vec<f32>>,
    scratch: Vec<f32>,
    interleaved: Vec<f32>,
    frames_written: u64,
}

impl Sink {
    pub(crate) fn new(
        path: &Path,
        format: OutputFormat,
        rate: u32,
        out_rate: u32,
        channels: usize,
    ) -> Result<Self, EngineError> {
        let encoder = Encoder::create(path, format, out_rate, channels)?;
        let converters = if out_rate == rate {
            Vec::new()
        } else {
            (0..channels)
                .map(|_| StreamResampler::new(rate, out_rate))
                .collect::<Result<Vec<_>, _>>()?
        };
        let skip = converters.first().map_or(0, StreamResampler::delay_frames);
        Ok(Self {
            encoder,
            path: path.to_path_buf(),
            channels,
            rate,
            out_rate,
            converters,
            skip,
            planar: vec![Vec::new(); channels],
            scratch: Vec::new(),
            interleaved: Vec::new(),
            frames_written: 0,
        })
    }

    pub(crate) fn write(&mut self, interleaved: &[f32]) -> Result<(), EngineError> {
        if self.converters.is_empty() {
            self.frames_written += (interleaved.len() / self.channels) as u64;
            return Ok(self.encoder.write(interleaved)?);
        }
        for (ch, conv) in self.converters.iter_mut().enumerate() {
            self.scratch.clear();
            self.scratch
                .extend(interleaved.iter().skip(ch).step_by(self.channels));
            conv.process(&self.scratch, &mut self.planar[ch]);
        }
        self.drain(u64::MAX)
    }

    /// Writes converted frames (all channels ready, after the delay skip), at most up to
    /// `limit` frames in total.
    fn drain(&mut self, limit: u64) -> Result<(), EngineError> {
        let ready = self.planar.iter().map(Vec::len).min().unwrap_or(0);
        let drop = self.skip.min(ready);
        self.skip -= drop;
        let n = (ready - drop).min(limit.saturating_sub(self.frames_written) as usize);
        self.interleaved.clear();
        for i in drop..drop + n {
            for ch in &self.planar {
                self.interleaved.push(ch[i]);
            }
        }
        for ch in &mut self.planar {
            ch.drain(..ready);
        }
        self.frames_written += n as u64;
        self.encoder.write(&self.interleaved)?;
        Ok(())
    }

    /// Flushes the converter so the output has exactly the input's duration, then renames the
    /// finished file into place.
    pub(crate) fn finish(mut self, input_frames: u64) -> Result<PathBuf, EngineError> {
        if !self.converters.is_empty() {
            let want = (input_frames as u128 * self.out_rate as u128 + self.rate as u128 / 2)
                / self.rate as u128;
            let want = want as u64;
            let mut guard = 0;
            while self.frames_written < want {
                for (ch, conv) in self.converters.iter_mut().enumerate() {
                    conv.process_silence(1024, &mut self.planar[ch]);
                }
                self.drain(want)?;
                guard += 1;
                if guard > 10_000 {
                    return Err(EngineError::Config("output resampler did not drain".into()));
                }
            }
        }
        self.encoder.finish()?;
        Ok(self.path)
    }
}
