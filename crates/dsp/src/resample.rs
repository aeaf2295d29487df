//! Streaming resampling between the file/device rate and the model rate.
//!
//! A thin, mono wrapper around rubato's synchronous FFT resampler that takes input in any chunk
//! size, so the engine never has to think about rubato's fixed chunking. The output for a given
//! input stream is the same whatever the chunk sizes it arrives in. Equal rates are a no-op copy
//! with zero delay.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

/// Input frames per internal resampler chunk (at the input rate).
const CHUNK_FRAMES: usize = 1024;

/// Why a resampler could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot resample from {from_hz} Hz to {to_hz} Hz: {reason}")]
    Unsupported {
        from_hz: u32,
        to_hz: u32,
        reason: String,
    },
}

/// Mono streaming resampler. `new` allocates; `process` only appends to the caller's buffer.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    inner: Option<Box<Fft<f32>>>,
    /// Input frames waiting for a full chunk.
    pending: Vec<f32>,
    chunk_in: usize,
    scratch_out: Vec<f32>,
}

impl StreamResampler {
    /// A resampler from `from_hz` to `to_hz` (a copy when they are equal).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(ResampleError::Unsupported {
                from_hz,
                to_hz,
                reason: "sample rates must be positive".into(),
            });
        }
        if from_hz == to_hz {
            return Ok(Self {
                from_hz,
                to_hz,
                inner: None,
                pending: Vec::new(),
                chunk_in: 0,
                scratch_out: Vec::new(),
            });
        }
        // rubato's FFT resampler delays by half its output block: keep that block even, so the
        // delay is a whole number of frames and alignment can be exact.
        let gcd = gcd(from_hz as usize, to_hz as usize);
        let min_in = from_hz as usize / gcd;
        let mut blocks = CHUNK_FRAMES.div_ceil(min_in);
        blocks += blocks % 2;
        let inner = Fft::<f32>::new_custom(
            from_hz as usize,
            to_hz as usize,
            blocks * min_in,
            1,
            1,
            WindowFunction::BlackmanHarris2,
            FixedSync::Input,
        )
        .map_err(|e| ResampleError::Unsupported {
            from_hz,
            to_hz,
            reason: e.to_string(),
        })?;
        let chunk_in = inner.input_frames_next();
        let out_max = inner.output_frames_max();
        Ok(Self {
            from_hz,
            to_hz,
            inner: Some(Box::new(inner)),
            pending: Vec::with_capacity(chunk_in),
            chunk_in,
            scratch_out: vec![0.0; out_max],
        })
    }

    /// Input rate in Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Delay of the output in output frames: input frame `n` appears near output frame
    /// `n * to/from + delay_frames()`.
    pub fn delay_frames(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Input frames that must arrive before the next output appears (the chunk still missing).
    pub fn frames_until_output(&self) -> usize {
        if self.inner.is_none() {
            0
        } else {
            self.chunk_in - self.pending.len()
        }
    }

    /// Upper bound on output frames produced for `input_frames` more input frames.
    pub fn max_output_frames(&self, input_frames: usize) -> usize {
        let ratio = self.to_hz as f64 / self.from_hz as f64;
        ((input_frames + self.chunk_in) as f64 * ratio).ceil() as usize + 1
    }

    /// Resamples `input`, appending every completed output frame to `output`.
    pub fn process(&mut self, mut input: &[f32], output: &mut Vec<f32>) {
        let Some(inner) = self.inner.as_mut() else {
            output.extend_from_slice(input);
            return;
        };
        while !input.is_empty() {
            let take = (self.chunk_in - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == self.chunk_in {
                let n = run_chunk(inner, &self.pending, &mut self.scratch_out);
                output.extend_from_slice(&self.scratch_out[..n]);
                self.pending.clear();
            }
        }
    }

    /// Pushes `frames` frames of silence through (used to drain the delay at end of stream).
    pub fn process_silence(&mut self, mut frames: usize, output: &mut Vec<f32>) {
        const ZEROS: [f32; 256] = [0.0; 256];
        while frames > 0 {
            let n = frames.min(ZEROS.len());
            self.process(&ZEROS[..n], output);
            frames -= n;
        }
    }

    /// Forgets all state.
    pub fn reset(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            inner.reset();
        }
        self.pending.clear();
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn run_chunk(inner: &mut Fft<f32>, input: &[f32], out: &mut [f32]) -> usize {
    let frames_in = input.len();
    let frames_out = out.len();
    // The adapters only fail on a size mismatch, which the constructor rules out.
    let adapter_in = InterleavedSlice::new(input, 1, frames_in).expect("input adapter sized");
    let mut adapter_out =
        InterleavedSlice::new_mut(out, 1, frames_out).expect("output adapter sized");
    let (_, written) = inner
        .process_into_buffer(&adapter_in, &mut adapter_out, None)
        .expect("buffers sized by the resampler's own limits");
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sine(rate: u32, hz: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn equal_rates_copy_without_delay() {
        let mut r = StreamResampler::new(16_000, 16_000).unwrap();
        let mut out = Vec::new();
        r.process(&[0.1, 0.2, 0.3], &mut out);
        assert_eq!(out, vec![0.1, 0.2, 0.3]);
        assert_eq!(r.delay_frames(), 0);
    }

    #[test]
    fn zero_rate_is_an_error() {
        assert!(StreamResampler::new(0, 16_000).is_err());
    }

    #[test]
    fn impulse_lands_at_reported_delay() {
        for (from, to) in [
            (44_100, 16_000),
            (16_000, 44_100),
            (48_000, 16_000),
            (22_050, 48_000),
        ] {
            let mut r = StreamResampler::new(from, to).unwrap();
            let pos_in = 5_000usize;
            let mut x = vec![0.0f32; 20_000];
            x[pos_in] = 1.0;
            let mut out = Vec::new();
            r.process(&x, &mut out);
            r.process_silence(10_000, &mut out);
            let peak = out
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap()
                .0;
            let expected = pos_in as f64 * to as f64 / from as f64 + r.delay_frames() as f64;
            assert!(
                (peak as f64 - expected).abs() <= 1.0,
                "{from}->{to}: peak at {peak}, expected {expected}"
            );
        }
    }

    #[test]
    fn sine_survives_a_round_trip() {
        let x = sine(44_100, 440.0, 44_100);
        let mut down = StreamResampler::new(44_100, 16_000).unwrap();
        let mut up = StreamResampler::new(16_000, 44_100).unwrap();
        let mut mid = Vec::new();
        down.process(&x, &mut mid);
        down.process_silence(4096, &mut mid);
        let mid = &mid[down.delay_frames()..];
        let mut back = Vec::new();
        up.process(mid, &mut back);
        up.process_silence(4096, &mut back);
        let back = &back[up.delay_frames()..];
        let (a, b) = (&x[2000..40_000], &back[2000..40_000]);
        let err: f32 = a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum();
        let sig: f32 = a.iter().map(|p| p * p).sum();
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 60.0, "round trip SNR too low: {snr} dB");
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_output(chunks in proptest::collection::vec(1usize..3000, 1..20)) {
            let total: usize = chunks.iter().sum();
            let x = sine(44_100, 1000.0, total);
            let mut whole = StreamResampler::new(44_100, 48_000).unwrap();
            let mut a = Vec::new();
            whole.process(&x, &mut a);
            let mut parts = StreamResampler::new(44_100, 48_000).unwrap();
            let mut b = Vec::new();
            let mut at = 0;
            for c in chunks {
                parts.process(&x[at..at + c], &mut b);
                at += c;
            }
            prop_assert_eq!(a, b);
        }
    }
}
