//! Streaming STFT analysis and overlap-add synthesis.
//!
//! Every spectral model needs the same two blocks: a causal analysis that turns `hop` new
//! samples into one spectrum of the last `fft_len` samples, and a synthesis that inverts one
//! spectrum and overlap-adds it into `hop` finished samples. Both are built once (`new`
//! allocates the FFT plans, windows and scratch) and then never allocate.
//!
//! Conventions: the forward transform is unnormalised and multiplied by `scale`; the inverse is
//! unnormalised and multiplied by its own `scale`. With analysis window `a`, synthesis window `s`
//! and `sum_k a[n + k hop] s[n + k hop] * analysis_scale * synthesis_scale * fft_len == 1`, the
//! chain analysis -> synthesis reproduces its input delayed by [`Stft::latency_frames`] =
//! `fft_len - hop`.

use std::sync::Arc;

pub use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Invalid STFT parameters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StftError {
    /// The hop must be non-zero and no longer than the FFT.
    #[error("hop {hop_len} must be in 1..={fft_len}")]
    Hop { fft_len: usize, hop_len: usize },
    /// The FFT length must be even and non-zero.
    #[error("fft length {fft_len} must be even and non-zero")]
    FftLen { fft_len: usize },
    /// A window must have exactly `fft_len` taps.
    #[error("window has {got} taps, expected {expected}")]
    Window { expected: usize, got: usize },
}

/// The Vorbis power-complementary window used by DeepFilterNet (symmetric about `n / 2`).
///
/// `w[i] = sin(pi/2 * sin^2(pi * (i + 0.5) / n))`, evaluated in f64 like libDF.
pub fn vorbis_window(n: usize) -> Vec<f32> {
    let half = (n / 2) as f64;
    (0..n)
        .map(|i| {
            let s = (0.5 * std::f64::consts::PI * (i as f64 + 0.5) / half).sin();
            (0.5 * std::f64::consts::PI * s * s).sin() as f32
        })
        .collect()
}

/// The periodic Hann window (`torch.hann_window(n)`, `scipy.signal.get_window("hann", n)`).
pub fn hann_window(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            (0.5 - 0.5 * x.cos()) as f32
        })
        .collect()
}

/// The square root of the periodic Hann window (GTCRN's analysis and synthesis window).
pub fn sqrt_hann_window(n: usize) -> Vec<f32> {
    hann_window(n).into_iter().map(f32::sqrt).collect()
}

/// A rectangular window of ones.
pub fn rect_window(n: usize) -> Vec<f32> {
    vec![1.0; n]
}

fn check(fft_len: usize, hop_len: usize, window: &[f32]) -> Result<(), StftError> {
    if fft_len == 0 || fft_len % 2 != 0 {
        return Err(StftError::FftLen { fft_len });
    }
    if hop_len == 0 || hop_len > fft_len {
        return Err(StftError::Hop { fft_len, hop_len });
    }
    if window.len() != fft_len {
        return Err(StftError::Window {
            expected: fft_len,
            got: window.len(),
        });
    }
    Ok(())
}

/// Causal streaming analysis: `hop` samples in, `fft_len / 2 + 1` bins out.
pub struct StftAnalysis {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    scale: f32,
    hop_len: usize,
    /// The last `fft_len` input samples, oldest first.
    history: Vec<f32>,
    frame: Vec<f32>,
    scratch: Vec<Complex32>,
}

impl StftAnalysis {
    /// Builds an analysis of `fft_len` points advancing by `hop_len`, windowed by `window`
    /// (`fft_len` taps) and with every bin multiplied by `scale`.
    pub fn new(
        fft_len: usize,
        hop_len: usize,
        window: Vec<f32>,
        scale: f32,
    ) -> Result<Self, StftError> {
        check(fft_len, hop_len, &window)?;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(fft_len);
        let scratch = fft.make_scratch_vec();
        Ok(Self {
            fft,
            window,
            scale,
            hop_len,
            history: vec![0.0; fft_len],
            frame: vec![0.0; fft_len],
            scratch,
        })
    }

    /// Number of bins per spectrum.
    pub fn bins(&self) -> usize {
        self.window.len() / 2 + 1
    }

    /// Samples consumed per call.
    pub fn hop_len(&self) -> usize {
        self.hop_len
    }

    /// Pushes `input` (`hop_len` samples) and writes the spectrum of the last `fft_len` samples.
    ///
    /// # Panics
    /// If `input.len() != hop_len` or `spectrum.len() != bins()`.
    pub fn process(&mut self, input: &[f32], spectrum: &mut [Complex32]) {
        assert_eq!(input.len(), self.hop_len, "analysis input length");
        assert_eq!(spectrum.len(), self.bins(), "analysis spectrum length");
        self.history.copy_within(self.hop_len.., 0);
        let keep = self.history.len() - self.hop_len;
        self.history[keep..].copy_from_slice(input);
        for ((f, &x), &w) in self.frame.iter_mut().zip(&self.history).zip(&self.window) {
            *f = x * w;
        }
        // Lengths are fixed at construction, so the transform cannot fail.
        let _ = self
            .fft
            .process_with_scratch(&mut self.frame, spectrum, &mut self.scratch);
        if self.scale != 1.0 {
            for c in spectrum.iter_mut() {
                *c *= self.scale;
            }
        }
    }

    /// The last `fft_len` samples pushed, oldest first (zeros before the stream started).
    pub fn history(&self) -> &[f32] {
        &self.history
    }

    /// Forgets all pushed samples.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }
}

/// Streaming inverse: one spectrum in, `hop` overlap-added samples out.
pub struct StftSynthesis {
    ifft: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    scale: f32,
    hop_len: usize,
    /// Overlap-add accumulator of `fft_len` samples; the first `hop_len` are finished next.
    accum: Vec<f32>,
    spectrum: Vec<Complex32>,
    frame: Vec<f32>,
    scratch: Vec<Complex32>,
}

impl StftSynthesis {
    /// Builds a synthesis of `fft_len` points advancing by `hop_len`: every inverse frame is
    /// multiplied by `scale` and by `window` before overlap-add.
    pub fn new(
        fft_len: usize,
        hop_len: usize,
        window: Vec<f32>,
        scale: f32,
    ) -> Result<Self, StftError> {
        check(fft_len, hop_len, &window)?;
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(fft_len);
        let scratch = ifft.make_scratch_vec();
        Ok(Self {
            ifft,
            window,
            scale,
            hop_len,
            accum: vec![0.0; fft_len],
            spectrum: vec![Complex32::default(); fft_len / 2 + 1],
            frame: vec![0.0; fft_len],
            scratch,
        })
    }

    /// Number of bins per spectrum.
    pub fn bins(&self) -> usize {
        self.spectrum.len()
    }

    /// Inverse-transforms `spectrum` (`bins()` values; the imaginary parts of the DC and
    /// Nyquist bins are ignored), windows and overlap-adds it, and writes `hop_len` samples.
    ///
    /// # Panics
    /// If `spectrum.len() != bins()` or `output.len() != hop_len`.
    pub fn process(&mut self, spectrum: &[Complex32], output: &mut [f32]) {
        assert_eq!(spectrum.len(), self.bins(), "synthesis spectrum length");
        assert_eq!(output.len(), self.hop_len, "synthesis output length");
        self.spectrum.copy_from_slice(spectrum);
        let last = self.spectrum.len() - 1;
        self.spectrum[0].im = 0.0;
        self.spectrum[last].im = 0.0;
        let _ =
            self.ifft
                .process_with_scratch(&mut self.spectrum, &mut self.frame, &mut self.scratch);
        self.overlap_add(output);
    }

    /// Windows and overlap-adds a time-domain frame of `fft_len` samples (already inverse
    /// transformed, e.g. by a model) and writes `hop_len` finished samples. `scale` is applied.
    ///
    /// # Panics
    /// If `frame.len() != fft_len` or `output.len() != hop_len`.
    pub fn process_frame(&mut self, frame: &[f32], output: &mut [f32]) {
        assert_eq!(frame.len(), self.frame.len(), "synthesis frame length");
        assert_eq!(output.len(), self.hop_len, "synthesis output length");
        self.frame.copy_from_slice(frame);
        self.overlap_add(output);
    }

    fn overlap_add(&mut self, output: &mut [f32]) {
        for ((a, &x), &w) in self.accum.iter_mut().zip(&self.frame).zip(&self.window) {
            *a += x * w * self.scale;
        }
        output.copy_from_slice(&self.accum[..self.hop_len]);
        self.accum.copy_within(self.hop_len.., 0);
        let n = self.accum.len();
        self.accum[n - self.hop_len..].fill(0.0);
    }

    /// Forgets the overlap-add memory.
    pub fn reset(&mut self) {
        self.accum.fill(0.0);
    }
}

/// Delay in samples of an analysis -> synthesis chain: `fft_len - hop_len`.
pub fn latency_frames(fft_len: usize, hop_len: usize) -> usize {
    fft_len - hop_len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worst sample error allowed for f32 round trips of unit-scale signals.
    const RECON_TOL: f32 = 1e-5;

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn round_trip(fft: usize, hop: usize, a: Vec<f32>, s: Vec<f32>, a_scale: f32, s_scale: f32) {
        let mut ana = StftAnalysis::new(fft, hop, a, a_scale).unwrap();
        let mut syn = StftSynthesis::new(fft, hop, s, s_scale).unwrap();
        let x = noise(hop * 40, 7);
        let mut y = vec![0.0; x.len()];
        let mut spec = vec![Complex32::default(); ana.bins()];
        for (xi, yi) in x.chunks(hop).zip(y.chunks_mut(hop)) {
            ana.process(xi, &mut spec);
            syn.process(&spec, yi);
        }
        let d = latency_frames(fft, hop);
        // Skip the first frames, which see the zeros before the stream started.
        for n in fft..x.len() - d {
            assert!(
                (y[n + d] - x[n]).abs() < RECON_TOL,
                "fft {fft} hop {hop} n {n}"
            );
        }
    }

    #[test]
    fn vorbis_reconstructs_at_half_overlap() {
        // libDF normalisation: wnorm on analysis, none on synthesis.
        let w = vorbis_window(960);
        let wnorm = 480.0 / (960.0 * w.iter().map(|x| x * x).sum::<f32>());
        round_trip(960, 480, w.clone(), w, wnorm, 1.0);
    }

    #[test]
    fn sqrt_hann_reconstructs_at_half_overlap() {
        let w = sqrt_hann_window(512);
        round_trip(512, 256, w.clone(), w, 1.0, 1.0 / 512.0);
    }

    #[test]
    fn rect_analysis_hann_synthesis_reconstructs_at_quarter_hop() {
        // sum of a periodic Hann at hop n/4 is 2, so scale the synthesis by 1/2.
        round_trip(
            512,
            128,
            rect_window(512),
            hann_window(512),
            1.0,
            0.5 / 512.0,
        );
    }

    #[test]
    fn reset_restores_initial_state() {
        let w = sqrt_hann_window(64);
        let mut ana = StftAnalysis::new(64, 16, w.clone(), 1.0).unwrap();
        let mut syn = StftSynthesis::new(64, 16, w, 1.0 / 64.0).unwrap();
        let x = noise(160, 3);
        let run = |ana: &mut StftAnalysis, syn: &mut StftSynthesis| {
            let mut spec = vec![Complex32::default(); 33];
            let mut y = vec![0.0; x.len()];
            for (xi, yi) in x.chunks(16).zip(y.chunks_mut(16)) {
                ana.process(xi, &mut spec);
                syn.process(&spec, yi);
            }
            y
        };
        let first = run(&mut ana, &mut syn);
        ana.reset();
        syn.reset();
        assert_eq!(first, run(&mut ana, &mut syn));
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(matches!(
            StftAnalysis::new(0, 1, vec![], 1.0),
            Err(StftError::FftLen { .. })
        ));
        assert!(matches!(
            StftAnalysis::new(8, 9, vec![1.0; 8], 1.0),
            Err(StftError::Hop { .. })
        ));
        assert!(matches!(
            StftSynthesis::new(8, 4, vec![1.0; 7], 1.0),
            Err(StftError::Window { .. })
        ));
    }
}
