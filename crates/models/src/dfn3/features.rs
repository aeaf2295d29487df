//! DeepFilterNet3's signal side: ERB band layout, normalised input features, ERB gains and the
//! deep filter. Mirrors libDF (`DFState` in `libDF/src/lib.rs`, `df` in `libDF/src/tract.rs`,
//! v0.5.6), which is what the reference runtime runs.

use nomusic_dsp::stft::Complex32;

/// Initial state of the ERB mean normalisation, linearly spaced from the first to the last band.
const MEAN_NORM_INIT_DB: [f32; 2] = [-60.0, -90.0];
/// Initial state of the complex unit normalisation, linearly spaced over the DF bins.
const UNIT_NORM_INIT: [f32; 2] = [0.001, 0.0001];

fn freq_to_erb(freq_hz: f32) -> f32 {
    9.265 * (freq_hz / (24.7 * 9.265)).ln_1p()
}

fn erb_to_freq(erb: f32) -> f32 {
    24.7 * 9.265 * ((erb / 9.265).exp() - 1.0)
}

/// Widths (in FFT bins) of `nb_bands` ERB bands covering `fft_len / 2 + 1` bins, each at least
/// `min_bins` wide; bands are equally spaced on the ERB scale (libDF `erb_fb`).
pub fn erb_band_widths(
    sample_rate_hz: usize,
    fft_len: usize,
    nb_bands: usize,
    min_bins: usize,
) -> Vec<usize> {
    let bin_hz = sample_rate_hz as f32 / fft_len as f32;
    let erb_low = freq_to_erb(0.0);
    let erb_high = freq_to_erb((sample_rate_hz / 2) as f32);
    let step = (erb_high - erb_low) / nb_bands as f32;
    let min_bins = min_bins as i64;
    let mut widths = vec![0usize; nb_bands];
    let (mut prev_edge, mut borrowed) = (0i64, 0i64);
    for (i, w) in widths.iter_mut().enumerate() {
        let edge = (erb_to_freq(erb_low + (i + 1) as f32 * step) / bin_hz).round() as i64;
        let mut n = edge - prev_edge - borrowed;
        if n < min_bins {
            borrowed = min_bins - n;
            n = min_bins;
        } else {
            borrowed = 0;
        }
        *w = n as usize;
        prev_edge = edge;
    }
    // The last band also takes the Nyquist bin, then gives back any bins forced in above.
    widths[nb_bands - 1] += 1;
    let total: usize = widths.iter().sum();
    let excess = total.saturating_sub(fft_len / 2 + 1);
    widths[nb_bands - 1] -= excess;
    widths
}

/// libDF's smoothing constant for a time constant `tau_s` at one frame per `hop` samples,
/// rounded to the fewest decimals (from 3) that keep it below one.
pub fn norm_alpha(sample_rate_hz: usize, hop: usize, tau_s: f32) -> f32 {
    let alpha = (-(hop as f32 / sample_rate_hz as f32) / tau_s).exp();
    let mut precision = 3;
    loop {
        let p = 10i32.pow(precision) as f32;
        let a = (alpha * p).round() / p;
        if a < 1.0 {
            return a;
        }
        precision += 1;
    }
}

fn linspace(out: &mut [f32], [first, last]: [f32; 2]) {
    let step = (last - first) / (out.len() - 1) as f32;
    for (i, o) in out.iter_mut().enumerate() {
        *o = first + i as f32 * step;
    }
}

/// Streaming feature extractor: exponential-mean-normalised ERB energies and unit-normalised
/// low-band spectrum.
pub struct Features {
    pub erb_widths: Vec<usize>,
    alpha: f32,
    mean_state: Vec<f32>,
    unit_state: Vec<f32>,
}

impl Features {
    pub fn new(erb_widths: Vec<usize>, nb_df: usize, alpha: f32) -> Self {
        let mut f = Self {
            mean_state: vec![0.0; erb_widths.len()],
            unit_state: vec![0.0; nb_df],
            erb_widths,
            alpha,
        };
        f.reset();
        f
    }

    pub fn reset(&mut self) {
        linspace(&mut self.mean_state, MEAN_NORM_INIT_DB);
        linspace(&mut self.unit_state, UNIT_NORM_INIT);
    }

    /// ERB band energies in dB, mean-normalised and scaled by 1/40 (libDF `feat_erb`).
    pub fn erb(&mut self, spec: &[Complex32], out: &mut [f32]) {
        let a = self.alpha;
        let mut start = 0;
        for ((&w, o), s) in self
            .erb_widths
            .iter()
            .zip(out.iter_mut())
            .zip(&mut self.mean_state)
        {
            let k = 1.0 / w as f32;
            let mut power = 0.0f32;
            for c in &spec[start..start + w] {
                power += (c.re * c.re + c.im * c.im) * k;
            }
            start += w;
            let db = (power + 1e-10).log10() * 10.0;
            *s = db * (1.0 - a) + *s * a;
            *o = (db - *s) / 40.0;
        }
    }

    /// The first `nb_df` bins divided by the square root of their smoothed magnitude, written
    /// as all real parts then all imaginary parts (the `[2, nb_df]` layout of `feat_spec`).
    pub fn complex(&mut self, spec: &[Complex32], out_re_im: &mut [f32]) {
        let a = self.alpha;
        let n = self.unit_state.len();
        let (re, im) = out_re_im.split_at_mut(n);
        for (((c, s), r), i) in spec.iter().zip(&mut self.unit_state).zip(re).zip(im) {
            *s = c.norm() * (1.0 - a) + *s * a;
            let x = *c / s.sqrt();
            *r = x.re;
            *i = x.im;
        }
    }
}

/// Multiplies every bin of each ERB band by that band's gain (libDF `apply_band_gain`).
pub fn apply_erb_gains(spec: &mut [Complex32], gains: &[f32], erb_widths: &[usize]) {
    let mut start = 0;
    for (&w, &g) in erb_widths.iter().zip(gains) {
        for c in &mut spec[start..start + w] {
            *c *= g;
        }
        start += w;
    }
}

/// Deep filtering: `out[f] = sum_k frames[k][f] * coefs[f][k]` for the first `nb_df` bins,
/// with `frames` oldest first and `coefs` laid out `[nb_df, order, (re, im)]`.
pub fn deep_filter(frames: &[Vec<Complex32>], coefs: &[f32], out: &mut [Complex32]) {
    let order = frames.len();
    for (f, o) in out.iter_mut().enumerate() {
        let mut acc = Complex32::default();
        for (k, frame) in frames.iter().enumerate() {
            let c = &coefs[(f * order + k) * 2..(f * order + k) * 2 + 2];
            acc += frame[f] * Complex32::new(c[0], c[1]);
        }
        *o = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erb_bands_cover_all_bins_with_minimum_width() {
        let w = erb_band_widths(48_000, 960, 32, 2);
        assert_eq!(w.len(), 32);
        assert_eq!(w.iter().sum::<usize>(), 481);
        assert!(w.iter().all(|&n| n >= 2));
    }

    #[test]
    fn alpha_for_ten_ms_hop_and_one_second() {
        assert_eq!(norm_alpha(48_000, 480, 1.0), 0.99);
    }
}
