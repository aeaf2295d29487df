//! Resampling at a ratio that may change while it runs: the clock-drift compensator of live mode.
//!
//! Two sound cards never run at exactly the rates they claim. Live mode captures on one and plays
//! on the other, so it converts `from_hz -> to_hz` and nudges the ratio by a few hundred parts per
//! million to keep the playback buffer where it should be (PulseAudio's module-loopback does the
//! same). Interpolation is a Kaiser-windowed sinc, 32 taps, from a table of 512 phases with linear
//! interpolation between neighbouring phases (about -90 dB of interpolation error).
//!
//! At equal rates and zero correction every output frame lands exactly on an input frame, where
//! the filter is a unit impulse, so the output is a bit-exact copy (delayed by `HALF` frames).

use crate::resample::bessel_i0;

/// Taps on each side of the interpolation point.
const HALF: usize = 16;
const TAPS: usize = 2 * HALF;
const PHASES: usize = 512;
const KAISER_BETA: f64 = 8.0;

/// Interleaved multi-channel resampler whose ratio can be corrected between calls.
pub struct VariableResampler {
    channels: usize,
    /// Input frames per output frame at zero correction.
    nominal_step: f64,
    /// Input frames per output frame now.
    step: f64,
    correction_ppm: f64,
    /// `(PHASES + 1) x TAPS` filter table: row `r` interpolates at fractional offset `r / PHASES`.
    table: Vec<f32>,
    /// Input history, interleaved, starting at frame `base`.
    history: Vec<f32>,
    /// Position of the next output frame, in frames from the start of `history`.
    pos: f64,
    /// Input frames consumed so far (dropped from `history`), for `input_position`.
    dropped: u64,
    taps: [f32; TAPS],
}

impl VariableResampler {
    /// A resampler from `from_hz` to `to_hz` for `channels` interleaved channels.
    pub fn new(from_hz: u32, to_hz: u32, channels: usize) -> Self {
        assert!(from_hz > 0 && to_hz > 0 && channels > 0);
        // Cut off at the lower of the two Nyquist frequencies. At equal or rising rates the cutoff
        // is the input's Nyquist, where the sinc is zero at every whole frame: an exact copy at
        // whole positions. Falling rates leave room for the transition band below the new Nyquist.
        let ratio = to_hz as f64 / from_hz as f64;
        let cutoff = if ratio >= 1.0 { 1.0 } else { 0.9 * ratio };
        let mut table = vec![0f32; (PHASES + 1) * TAPS];
        let i0_beta = bessel_i0(KAISER_BETA);
        for r in 0..=PHASES {
            let frac = r as f64 / PHASES as f64;
            for k in 0..TAPS {
                // Tap k multiplies input frame floor(pos) + k - (HALF - 1).
                let t = k as f64 - (HALF as f64 - 1.0) - frac;
                let x = t / HALF as f64;
                let w = if x.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(KAISER_BETA * (1.0 - x * x).sqrt()) / i0_beta
                };
                let arg = std::f64::consts::PI * cutoff * t;
                let sinc = if t == 0.0 { 1.0 } else { arg.sin() / arg };
                table[r * TAPS + k] = (cutoff * sinc * w) as f32;
            }
        }
        let nominal_step = from_hz as f64 / to_hz as f64;
        let mut s = Self {
            channels,
            nominal_step,
            step: nominal_step,
            correction_ppm: 0.0,
            table,
            history: Vec::new(),
            pos: 0.0,
            dropped: 0,
            taps: [0.0; TAPS],
        };
        s.reset();
        s
    }

    /// Forgets all input; the next output frame is input frame 0 of what comes next.
    pub fn reset(&mut self) {
        self.history.clear();
        // HALF - 1 frames of silence before the first input frame, so output 0 sits on it.
        self.history.resize((HALF - 1) * self.channels, 0.0);
        self.pos = (HALF - 1) as f64;
        self.dropped = 0;
    }

    /// Sets the ratio correction: positive consumes input faster (fewer output frames per input
    /// frame, to drain a buffer that is too full), negative slower.
    pub fn set_correction_ppm(&mut self, ppm: f64) {
        self.correction_ppm = ppm;
        self.step = if ppm == 0.0 {
            self.nominal_step
        } else {
            self.nominal_step * (1.0 + ppm * 1e-6)
        };
    }

    /// The correction in effect, in parts per million.
    pub fn correction_ppm(&self) -> f64 {
        self.correction_ppm
    }

    /// Frames of delay the filter adds (its lookahead), in input frames.
    pub fn delay_input_frames(&self) -> usize {
        HALF
    }

    /// Input frame (fractional) that the next output frame will be taken at.
    pub fn input_position(&self) -> f64 {
        self.dropped as f64 + self.pos - (HALF - 1) as f64
    }

    /// Resamples interleaved `input` and appends the output frames to `output`.
    pub fn process(&mut self, input: &[f32], output: &mut Vec<f32>) {
        debug_assert_eq!(input.len() % self.channels, 0);
        let c = self.channels;
        self.history.extend_from_slice(input);
        let frames = self.history.len() / c;
        loop {
            let i = self.pos.floor();
            let first = i as usize + 1 - HALF; // pos >= HALF - 1 always
            if first + TAPS > frames {
                break;
            }
            let frac = self.pos - i;
            let row = frac * PHASES as f64;
            let r0 = (row.floor() as usize).min(PHASES - 1);
            let a = (row - r0 as f64) as f32;
            if a == 0.0 {
                self.taps
                    .copy_from_slice(&self.table[r0 * TAPS..(r0 + 1) * TAPS]);
            } else {
                let (lo, hi) = (
                    &self.table[r0 * TAPS..(r0 + 1) * TAPS],
                    &self.table[(r0 + 1) * TAPS..(r0 + 2) * TAPS],
                );
                for ((t, &l), &h) in self.taps.iter_mut().zip(lo).zip(hi) {
                    *t = l + a * (h - l);
                }
            }
            let window = &self.history[first * c..(first + TAPS) * c];
            if frac == 0.0 && r0 == 0 {
                // Whole position: the filter is a unit impulse at tap HALF - 1 (exact copy).
                output.extend_from_slice(&window[(HALF - 1) * c..HALF * c]);
            } else {
                for ch in 0..c {
                    let mut acc = 0f32;
                    for (k, &t) in self.taps.iter().enumerate() {
                        acc += t * window[k * c + ch];
                    }
                    output.push(acc);
                }
            }
            self.pos += self.step;
        }
        // Drop the history no future output needs.
        let keep_from = (self.pos.floor() as usize + 1)
            .saturating_sub(HALF)
            .min(frames);
        if keep_from > 0 {
            self.history.drain(..keep_from * c);
            self.pos -= keep_from as f64;
            self.dropped += keep_from as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f64, hz: f64, frames: usize, phase: f64) -> Vec<f32> {
        (0..frames)
            .map(|n| (2.0 * std::f64::consts::PI * hz * n as f64 / rate + phase).sin() as f32)
            .collect()
    }

    #[test]
    fn equal_rates_without_correction_copy_exactly() {
        let mut r = VariableResampler::new(48_000, 48_000, 2);
        let x: Vec<f32> = (0..20_000)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut y = Vec::new();
        for chunk in x.chunks(2 * 333) {
            r.process(chunk, &mut y);
        }
        // Output lags by the lookahead: everything but the last HALF frames is out.
        assert_eq!(y.len(), x.len() - 2 * HALF);
        assert_eq!(&y[..], &x[..y.len()]);
    }

    #[test]
    fn corrected_ratio_follows_the_sine() {
        // +500 ppm: 1 s of input gives 0.9995 s of output; a 1 kHz sine stays a clean sine at the
        // interpolated positions.
        let rate = 48_000.0;
        let x = sine(rate, 1000.0, 48_000, 0.0);
        let mut r = VariableResampler::new(48_000, 48_000, 1);
        r.set_correction_ppm(500.0);
        let mut y = Vec::new();
        for chunk in x.chunks(480) {
            r.process(chunk, &mut y);
        }
        let step = 1.0 + 500e-6;
        let mut err = 0f64;
        let mut count = 0;
        for (n, &v) in y.iter().enumerate().skip(100).take(40_000) {
            let t = n as f64 * step;
            let want = (2.0 * std::f64::consts::PI * 1000.0 * t / rate).sin();
            err = err.max((v as f64 - want).abs());
            count += 1;
        }
        assert!(count > 30_000);
        assert!(err < 1e-3, "max error {err}");
        let expected = (x.len() - HALF) as f64 / step;
        assert!(
            (y.len() as f64 - expected).abs() < 2.0,
            "{} vs {expected}",
            y.len()
        );
    }

    #[test]
    fn rate_conversion_keeps_a_sine_and_tracks_position() {
        let x = sine(44_100.0, 440.0, 44_100, 0.3);
        let mut r = VariableResampler::new(44_100, 48_000, 1);
        let mut y = Vec::new();
        r.process(&x, &mut y);
        let want = sine(48_000.0, 440.0, y.len(), 0.3);
        let worst = y
            .iter()
            .zip(&want)
            .skip(50)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "worst {worst}");
        let pos = r.input_position();
        assert!((pos - y.len() as f64 * 44_100.0 / 48_000.0).abs() < 1e-6);
    }

    #[test]
    fn downsampling_rejects_what_would_alias() {
        // 23 kHz at 48 kHz cannot exist at 44.1 kHz: it must be attenuated, not folded to 21.1 kHz.
        let x = sine(48_000.0, 23_000.0, 48_000, 0.0);
        let mut r = VariableResampler::new(48_000, 44_100, 1);
        let mut y = Vec::new();
        r.process(&x, &mut y);
        let rms = (y[100..].iter().map(|v| v * v).sum::<f32>() / (y.len() - 100) as f32).sqrt();
        assert!(rms < 0.02, "rms {rms}");
    }
}
