//! Streaming separation of interleaved multi-channel audio at any sample rate.
//!
//! Each channel runs its own pipeline: resample to the model rate, run the model hop by hop,
//! resample back. Every delay on the way (both resamplers and the model's own latency) is
//! dropped exactly, so output frame `n` is the speech of input frame `n`, and the output of a
//! stream does not depend on the chunk sizes it arrives in.

use nomusic_dsp::resample::StreamResampler;
use nomusic_models::Separator;

use crate::EngineError;

/// Builds one model instance per channel.
pub type ModelFactory<'a> = dyn Fn() -> Result<Box<dyn Separator>, nomusic_models::ModelError> + 'a;

/// What to produce besides the speech.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixOptions {
    /// Linear gain of the music kept in the speech output (0 removes it; `--music-gain -15dB`
    /// keeps it ducked).
    pub music_gain: f32,
    /// Also produce the music stem (mixture minus speech).
    pub music_stem: bool,
}

impl Default for MixOptions {
    fn default() -> Self {
        Self {
            music_gain: 0.0,
            music_stem: false,
        }
    }
}

/// One mono channel: resample in, model, resample out, with exact delay compensation.
struct ChannelPipeline {
    down: StreamResampler,
    up: StreamResampler,
    model: Box<dyn Separator>,
    hop: usize,
    /// Model-rate input waiting for a full hop.
    model_in: Vec<f32>,
    hop_out: Vec<f32>,
    /// Model-rate output frames still to drop (input resampler delay + model latency).
    skip_model: usize,
    /// Model-rate output waiting to be resampled back.
    up_in: Vec<f32>,
    /// Output-rate frames still to drop (output resampler delay).
    skip_out: usize,
    /// Raw output of the up resampler, before the skip.
    up_raw: Vec<f32>,
    /// Aligned speech at the stream rate, not yet handed out.
    speech: Vec<f32>,
}

impl ChannelPipeline {
    fn new(model: Box<dyn Separator>, rate_hz: u32) -> Result<Self, EngineError> {
        let model_rate = model.sample_rate_hz();
        let down = StreamResampler::new(rate_hz, model_rate)?;
        let up = StreamResampler::new(model_rate, rate_hz)?;
        let hop = model.hop_frames();
        Ok(Self {
            skip_model: down.delay_frames() + model.latency_frames(),
            skip_out: up.delay_frames(),
            down,
            up,
            model,
            hop,
            model_in: Vec::with_capacity(4 * hop),
            hop_out: vec![0.0; hop],
            up_in: Vec::with_capacity(4 * hop),
            up_raw: Vec::new(),
            speech: Vec::new(),
        })
    }

    /// Pushes input (or `silence` frames of zeros) and collects aligned speech in `self.speech`.
    fn push(&mut self, input: Input<'_>) -> Result<(), EngineError> {
        match input {
            Input::Samples(x) => self.down.process(x, &mut self.model_in),
            Input::Silence(n) => self.down.process_silence(n, &mut self.model_in),
        }
        let mut at = 0;
        while self.model_in.len() - at >= self.hop {
            self.model
                .process_hop(&self.model_in[at..at + self.hop], &mut self.hop_out)?;
            at += self.hop;
            let drop = self.skip_model.min(self.hop);
            self.skip_model -= drop;
            self.up_in.extend_from_slice(&self.hop_out[drop..]);
        }
        self.model_in.drain(..at);
        self.up.process(&self.up_in, &mut self.up_raw);
        self.up_in.clear();
        let drop = self.skip_out.min(self.up_raw.len());
        self.skip_out -= drop;
        self.speech.extend_from_slice(&self.up_raw[drop..]);
        self.up_raw.clear();
        Ok(())
    }
}

enum Input<'a> {
    Samples(&'a [f32]),
    Silence(usize),
}

/// Separates an interleaved stream of `channels` channels at `sample_rate_hz`.
pub struct StreamSeparator {
    channels: usize,
    rate_hz: u32,
    pipes: Vec<ChannelPipeline>,
    options: MixOptions,
    /// Input samples (interleaved) not yet matched by output, for the music stem and the
    /// ducked mix.
    input_fifo: Vec<f32>,
    deinterleaved: Vec<f32>,
    frames_in: u64,
    frames_out: u64,
    finished: bool,
}

impl StreamSeparator {
    /// Builds one model per channel with `factory`.
    pub fn new(
        factory: &ModelFactory<'_>,
        sample_rate_hz: u32,
        channels: usize,
        options: MixOptions,
    ) -> Result<Self, EngineError> {
        if channels == 0 {
            return Err(EngineError::Config(
                "a stream needs at least one channel".into(),
            ));
        }
        let pipes = (0..channels)
            .map(|_| ChannelPipeline::new(factory()?, sample_rate_hz))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            channels,
            rate_hz: sample_rate_hz,
            pipes,
            options,
            input_fifo: Vec::new(),
            deinterleaved: Vec::new(),
            frames_in: 0,
            frames_out: 0,
            finished: false,
        })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Stream rate in Hz.
    pub fn sample_rate_hz(&self) -> u32 {
        self.rate_hz
    }

    /// Model rate in Hz.
    pub fn model_rate_hz(&self) -> u32 {
        self.pipes[0].model.sample_rate_hz()
    }

    /// Frames (at the model rate) the model takes per step.
    pub fn model_hop_frames(&self) -> usize {
        self.pipes[0].hop
    }

    /// The period, in stream-rate frames, of the processing grid: the model's hop and the
    /// resampler's phase cycle both repeat every this many input frames. Two streams that feed
    /// the same audio at the same position modulo this (after silence) produce the same output.
    pub fn grid_frames(&self) -> usize {
        fn gcd(mut a: usize, mut b: usize) -> usize {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        }
        let (rate, model) = (self.rate_hz as usize, self.model_rate_hz() as usize);
        let g = gcd(rate, model);
        let (p, q) = (model / g, rate / g);
        let hop = self.model_hop_frames();
        q * hop / gcd(p, hop)
    }

    /// Total delay between input and output in stream-rate frames, before compensation.
    /// (The output is compensated: it is aligned with the input.)
    pub fn compensated_delay_frames(&self) -> f64 {
        let p = &self.pipes[0];
        let model_rate = p.model.sample_rate_hz() as f64;
        let model_side = (p.down.delay_frames() + p.model.latency_frames()) as f64;
        model_side * self.rate_hz as f64 / model_rate + p.up.delay_frames() as f64
    }

    /// Feeds interleaved input and appends every aligned output frame produced so far to
    /// `speech` (and `music`, when the music stem was asked for). Output lags input by the
    /// pipeline delay; `finish` hands out the rest.
    pub fn process(
        &mut self,
        interleaved: &[f32],
        speech: &mut Vec<f32>,
        music: Option<&mut Vec<f32>>,
    ) -> Result<(), EngineError> {
        if self.finished {
            return Err(EngineError::Config("process after finish".into()));
        }
        if interleaved.len() % self.channels != 0 {
            return Err(EngineError::Config(format!(
                "{} samples is not a whole number of {}-channel frames",
                interleaved.len(),
                self.channels
            )));
        }
        let frames = interleaved.len() / self.channels;
        self.frames_in += frames as u64;
        self.input_fifo.extend_from_slice(interleaved);
        for ch in 0..self.channels {
            self.deinterleaved.clear();
            self.deinterleaved
                .extend(interleaved.iter().skip(ch).step_by(self.channels));
            let (pipes, x) = (&mut self.pipes, &self.deinterleaved);
            pipes[ch].push(Input::Samples(x))?;
        }
        self.emit(speech, music, u64::MAX);
        Ok(())
    }

    /// Flushes the pipeline: afterwards exactly as many frames have come out as went in.
    pub fn finish(
        &mut self,
        speech: &mut Vec<f32>,
        mut music: Option<&mut Vec<f32>>,
    ) -> Result<(), EngineError> {
        self.finished = true;
        // Generous bound on the silence needed to drain every delay.
        let p = &self.pipes[0];
        let bound = 4
            * (self.compensated_delay_frames().ceil() as usize
                + p.hop * self.rate_hz as usize / p.model.sample_rate_hz() as usize
                + p.down.frames_until_output()
                + 4096);
        let mut fed = 0;
        while self.frames_out < self.frames_in {
            let step = 1024;
            for p in &mut self.pipes {
                p.push(Input::Silence(step))?;
            }
            fed += step;
            self.emit(speech, music.as_deref_mut(), self.frames_in);
            if fed > bound && self.frames_out < self.frames_in {
                return Err(EngineError::Config(format!(
                    "pipeline did not drain after {fed} frames of silence"
                )));
            }
        }
        Ok(())
    }

    /// Frames of input seen so far.
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Frames of output handed out so far.
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Moves aligned frames (all channels ready) to the outputs, at most up to `limit` total.
    fn emit(&mut self, speech: &mut Vec<f32>, music: Option<&mut Vec<f32>>, limit: u64) {
        let ready = self.pipes.iter().map(|p| p.speech.len()).min().unwrap_or(0);
        let n = (ready as u64).min(limit.saturating_sub(self.frames_out)) as usize;
        if n == 0 {
            return;
        }
        let c = self.channels;
        let g = self.options.music_gain;
        let start = speech.len();
        speech.reserve(n * c);
        for i in 0..n {
            for ch in 0..c {
                let s = self.pipes[ch].speech[i];
                let x = self.input_fifo[i * c + ch];
                speech.push(s + g * (x - s));
            }
        }
        if let Some(music) = music {
            if self.options.music_stem {
                music.reserve(n * c);
                for i in 0..n {
                    for ch in 0..c {
                        let s = self.pipes[ch].speech[i];
                        music.push(self.input_fifo[i * c + ch] - s);
                    }
                }
            }
        }
        debug_assert_eq!(speech.len() - start, n * c);
        for p in &mut self.pipes {
            p.speech.drain(..n);
        }
        self.input_fifo.drain(..n * c);
        self.frames_out += n as u64;
    }
}
