//! Classic STOI (Taal et al., 2010/2011) computed the way pystoi 0.4.1 does it, which is what
//! score.py calls: resample to 10 kHz with pystoi's Octave-compatible polyphase filter, drop the
//! frames where the clean speech is more than 40 dB below its loudest frame, 1/3-octave band
//! envelopes from a 512-point STFT, 384 ms (30-frame) segments, clipping at -15 dB SDR, and the
//! mean correlation over segments and bands.

use super::{check_len, to_f64, MetricsError};
use realfft::RealFftPlanner;

/// STOI's internal sample rate.
const STOI_RATE_HZ: u32 = 10_000;
/// Analysis window length (25.6 ms at 10 kHz).
const FRAME_LEN: usize = 256;
/// Hop between analysis frames (50 % overlap).
const HOP: usize = FRAME_LEN / 2;
/// Zero-padded FFT length.
const FFT_LEN: usize = 512;
/// Number of 1/3-octave bands.
const NUM_BANDS: usize = 15;
/// Centre frequency of the lowest band.
const MIN_FREQ_HZ: f64 = 150.0;
/// Frames per intermediate-intelligibility segment (384 ms).
const SEGMENT_FRAMES: usize = 30;
/// Lower bound of the signal-to-distortion ratio, for clipping.
const BETA_DB: f64 = -15.0;
/// Frames this far below the loudest clean frame count as silent.
const DYN_RANGE_DB: f64 = 40.0;
/// numpy's `finfo(float).eps`, which pystoi adds to norms.
const EPS: f64 = f64::EPSILON;

/// What [`stoi`] returns, as pystoi does, when fewer than 30 STFT frames are left after
/// removing silent frames (or the input is shorter than one frame).
pub const STOI_TOO_FEW_FRAMES: f64 = 1e-5;

/// Classic (not extended) STOI of `processed` against `clean`, both at `sample_rate_hz`, as
/// pystoi 0.4.1's `stoi(clean, processed, fs, extended=False)`. The signals must have the same
/// length.
pub fn stoi(clean: &[f32], processed: &[f32], sample_rate_hz: u32) -> Result<f64, MetricsError> {
    check_len("processed signal", clean.len(), processed.len())?;
    if sample_rate_hz == 0 {
        return Err(MetricsError::ZeroSampleRate);
    }
    let (mut x, mut y) = (to_f64(clean), to_f64(processed));
    if sample_rate_hz != STOI_RATE_HZ {
        let resampler = OctaveResampler::new(STOI_RATE_HZ, sample_rate_hz);
        x = resampler.process(&x);
        y = resampler.process(&y);
    }
    let window = matlab_hanning(FRAME_LEN);
    let Some((x, y)) = remove_silent_frames(&x, &y, &window) else {
        return Ok(STOI_TOO_FEW_FRAMES);
    };
    let x_bands = third_octave_envelopes(&x, &window);
    let y_bands = third_octave_envelopes(&y, &window);
    let n_frames = x_bands.len();
    if n_frames < SEGMENT_FRAMES {
        return Ok(STOI_TOO_FEW_FRAMES);
    }
    Ok(mean_segment_correlation(&x_bands, &y_bands))
}

/// pystoi's `resample_oct` (a port of Octave's `resample`): `scipy.signal.resample_poly` with a
/// Kaiser-windowed sinc, normalised to unit sum, zero padding at both ends.
struct OctaveResampler {
    up: usize,
    down: usize,
    /// The filter as resample_poly applies it (already multiplied by `up`).
    taps: Vec<f64>,
    /// Polyphase split of `taps`: `phases[r]` holds taps `r, r + up, r + 2 up, ...`, reversed so
    /// that each output is a plain dot product with consecutive input samples.
    phases: Vec<Vec<f64>>,
}

impl OctaveResampler {
    fn new(to_hz: u32, from_hz: u32) -> Self {
        let g = gcd(to_hz as usize, from_hz as usize);
        let (up, down) = (to_hz as usize / g, from_hz as usize / g);
        let (p, q) = (up as f64, down as f64);
        // Octave's anti-aliasing filter: 60 dB rejection, roll-off a tenth of the cutoff.
        let log10_rejection = -3.0;
        let stopband_cutoff = 1.0 / (2.0 * p.max(q));
        let roll_off_width = stopband_cutoff / 10.0;
        let rejection_db = -20.0 * log10_rejection;
        let half_len = ((rejection_db - 8.0) / (28.714 * roll_off_width)).ceil() as usize;
        let beta = if (21.0..=50.0).contains(&rejection_db) {
            0.5842 * (rejection_db - 21.0).powf(0.4) + 0.07886 * (rejection_db - 21.0)
        } else if rejection_db > 50.0 {
            0.1102 * (rejection_db - 8.7)
        } else {
            0.0
        };
        let kaiser = kaiser_window(2 * half_len + 1, beta);
        let mut taps: Vec<f64> = kaiser
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let t = i as f64 - half_len as f64;
                w * 2.0 * p * stopband_cutoff * sinc(2.0 * stopband_cutoff * t)
            })
            .collect();
        let sum: f64 = taps.iter().sum();
        for tap in &mut taps {
            *tap = *tap / sum * p;
        }
        let phases = (0..up)
            .map(|r| {
                let mut phase: Vec<f64> = taps.iter().skip(r).step_by(up).copied().collect();
                phase.reverse();
                phase
            })
            .collect();
        Self {
            up,
            down,
            taps,
            phases,
        }
    }

    /// Like `resample_poly(x, up, down, window=taps)`: `ceil(len * up / down)` output samples,
    /// output `m` centred on input time `m * down / up`.
    fn process(&self, x: &[f64]) -> Vec<f64> {
        let (up, down) = (self.up, self.down);
        let half_len = (self.taps.len() - 1) / 2;
        let n_out = (x.len() * up).div_ceil(down);
        // resample_poly pads the filter in front so that output samples land on the centre.
        let pre_pad = down - half_len % down;
        let pre_remove = (half_len + pre_pad) / down;
        (0..n_out)
            .map(|m| {
                // Output m is the upsampled-and-filtered signal at index `(pre_remove + m) * down`,
                // where input i sits at filter tap `base - i * up`: the taps of phase
                // `base % up`, the newest input being `base / up`.
                let base = (pre_remove + m) * down - pre_pad;
                let phase = &self.phases[base % up];
                let newest = base / up;
                // Inputs newest + 1 - phase.len() ..= newest, clipped to the signal.
                let first = (newest + 1).saturating_sub(phase.len());
                let end = (newest + 1).min(x.len());
                if first >= end {
                    return 0.0;
                }
                let skip = first + phase.len() - (newest + 1);
                dot(&phase[skip..skip + (end - first)], &x[first..end])
            })
            .collect()
    }
}

/// A dot product with four running sums (the compiler will not reorder float additions).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in a4.zip(b4) {
        for k in 0..4 {
            acc[k] += ca[k] * cb[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// numpy's `sinc`: sin(pi x) / (pi x), 1 at 0.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let y = std::f64::consts::PI * x;
        y.sin() / y
    }
}

/// Modified Bessel function of the first kind, order 0, by its power series (converges fast for
/// the small arguments of a Kaiser window).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > sum * 1e-17 {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// numpy's `kaiser(len, beta)`.
fn kaiser_window(len: usize, beta: f64) -> Vec<f64> {
    if len == 1 {
        return vec![1.0];
    }
    let alpha = (len - 1) as f64 / 2.0;
    let norm = bessel_i0(beta);
    (0..len)
        .map(|n| {
            let r = (n as f64 - alpha) / alpha;
            bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / norm
        })
        .collect()
}

/// MATLAB's `hanning(len)` (no zero end points), computed as pystoi does:
/// `np.hanning(len + 2)[1:-1]`.
fn matlab_hanning(len: usize) -> Vec<f64> {
    let m = (len + 2) as f64;
    (1..=len)
        .map(|k| {
            let n = 1.0 - m + 2.0 * k as f64;
            0.5 + 0.5 * (std::f64::consts::PI * n / (m - 1.0)).cos()
        })
        .collect()
}

/// Start of every full frame pystoi takes: `range(0, len - FRAME_LEN, HOP)`, which leaves out a
/// frame ending exactly at the end.
fn frame_starts(len: usize) -> impl Iterator<Item = usize> {
    (0..len.saturating_sub(FRAME_LEN)).step_by(HOP)
}

/// Drops the windowed frames where `x` is more than [`DYN_RANGE_DB`] below its loudest frame (in
/// both signals) and overlap-adds the rest back together. `None` if no frame fits.
fn remove_silent_frames(x: &[f64], y: &[f64], window: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let starts: Vec<usize> = frame_starts(x.len()).collect();
    let energies_db: Vec<f64> = starts
        .iter()
        .map(|&s| {
            let energy: f64 = x[s..s + FRAME_LEN]
                .iter()
                .zip(window)
                .map(|(v, w)| (v * w) * (v * w))
                .sum();
            20.0 * (energy.sqrt() + EPS).log10()
        })
        .collect();
    let loudest = energies_db
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let kept: Vec<usize> = starts
        .iter()
        .zip(&energies_db)
        .filter(|(_, &e)| loudest - DYN_RANGE_DB - e < 0.0)
        .map(|(&s, _)| s)
        .collect();
    if kept.is_empty() {
        return None;
    }
    let out_len = (kept.len() - 1) * HOP + FRAME_LEN;
    let (mut x_out, mut y_out) = (vec![0.0; out_len], vec![0.0; out_len]);
    for (k, &s) in kept.iter().enumerate() {
        let o = k * HOP;
        for j in 0..FRAME_LEN {
            x_out[o + j] += window[j] * x[s + j];
            y_out[o + j] += window[j] * y[s + j];
        }
    }
    Some((x_out, y_out))
}

/// For each band of pystoi's `thirdoct(10000, 512, 15, 150)`, the FFT bins `lo..hi` it sums:
/// the bins nearest to the band's edges, the upper one left out.
fn third_octave_bins() -> [(usize, usize); NUM_BANDS] {
    let n_bins = FFT_LEN / 2 + 1;
    let bin_hz = f64::from(STOI_RATE_HZ) / FFT_LEN as f64;
    let nearest_bin = |freq_hz: f64| {
        let mut best = (0, f64::INFINITY);
        for k in 0..n_bins {
            let d = (k as f64 * bin_hz - freq_hz).powi(2);
            if d < best.1 {
                best = (k, d);
            }
        }
        best.0
    };
    std::array::from_fn(|band| {
        let k = band as f64;
        let low = MIN_FREQ_HZ * 2f64.powf((2.0 * k - 1.0) / 6.0);
        let high = MIN_FREQ_HZ * 2f64.powf((2.0 * k + 1.0) / 6.0);
        (nearest_bin(low), nearest_bin(high))
    })
}

/// The 1/3-octave band envelopes of every STFT frame: `out[frame][band]` is the square root of
/// the band's energy.
fn third_octave_envelopes(x: &[f64], window: &[f64]) -> Vec<[f64; NUM_BANDS]> {
    let bands = third_octave_bins();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FFT_LEN);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0; spectrum.len()];
    frame_starts(x.len())
        .map(|s| {
            input[..FRAME_LEN]
                .iter_mut()
                .zip(&x[s..s + FRAME_LEN])
                .zip(window)
                .for_each(|((dst, v), w)| *dst = w * v);
            input[FRAME_LEN..].fill(0.0);
            fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("buffers come from the same plan");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            bands.map(|(lo, hi)| power[lo..hi].iter().sum::<f64>().sqrt())
        })
        .collect()
}

/// The mean, over every 30-frame segment and every band, of the correlation between the clean
/// envelope and the normalised, clipped processed envelope.
fn mean_segment_correlation(x: &[[f64; NUM_BANDS]], y: &[[f64; NUM_BANDS]]) -> f64 {
    let clip = 1.0 + 10f64.powf(-BETA_DB / 20.0);
    let n_segments = x.len() - SEGMENT_FRAMES + 1;
    let mut xs = [0.0; SEGMENT_FRAMES];
    let mut ys = [0.0; SEGMENT_FRAMES];
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let mut total = 0.0;
    for seg in 0..n_segments {
        for band in 0..NUM_BANDS {
            for t in 0..SEGMENT_FRAMES {
                xs[t] = x[seg + t][band];
                ys[t] = y[seg + t][band];
            }
            // Scale the processed envelope to the clean one's energy, then clip it.
            let scale = norm(&xs) / (norm(&ys) + EPS);
            for (yv, xv) in ys.iter_mut().zip(&xs) {
                *yv = (*yv * scale).min(xv * clip);
            }
            let x_mean = xs.iter().sum::<f64>() / SEGMENT_FRAMES as f64;
            let y_mean = ys.iter().sum::<f64>() / SEGMENT_FRAMES as f64;
            xs.iter_mut().for_each(|v| *v -= x_mean);
            ys.iter_mut().for_each(|v| *v -= y_mean);
            let (x_norm, y_norm) = (norm(&xs) + EPS, norm(&ys) + EPS);
            total += xs
                .iter()
                .zip(&ys)
                .map(|(a, b)| (a / x_norm) * (b / y_norm))
                .sum::<f64>();
        }
    }
    total / (n_segments * NUM_BANDS) as f64
}

#[cfg(test)]
mod tests {
    use super::super::tests::{noise, speechlike};
    use super::*;

    #[test]
    fn stoi_of_identical_signals_is_one() {
        let x = speechlike(32_000, 16_000.0);
        let d = stoi(&x, &x, 16_000).unwrap();
        assert!((d - 1.0).abs() < 1e-6, "{d}");
    }

    #[test]
    fn stoi_drops_with_noise() {
        let x = speechlike(32_000, 16_000.0);
        let n = noise(32_000, 11);
        let light: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + 0.01 * b).collect();
        let heavy: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + 0.3 * b).collect();
        let d_light = stoi(&x, &light, 16_000).unwrap();
        let d_heavy = stoi(&x, &heavy, 16_000).unwrap();
        assert!(d_light > d_heavy, "{d_light} <= {d_heavy}");
        assert!(d_light < 1.0 && d_heavy > 0.0);
    }

    #[test]
    fn short_input_gives_the_sentinel() {
        let x = speechlike(3000, 16_000.0);
        assert_eq!(stoi(&x, &x, 16_000).unwrap(), STOI_TOO_FEW_FRAMES);
        assert_eq!(stoi(&[], &[], 16_000).unwrap(), STOI_TOO_FEW_FRAMES);
    }

    #[test]
    fn resampler_matches_pystoi_filter_length_and_gain() {
        let r = OctaveResampler::new(10_000, 16_000);
        assert_eq!((r.up, r.down), (5, 8));
        // L = ceil(52 / (28.714 * 0.00625)) = 290 taps each side.
        assert_eq!(r.taps.len(), 581);
        let sum: f64 = r.taps.iter().sum();
        assert!((sum - 5.0).abs() < 1e-12);
        // A constant comes out constant away from the edges.
        let y = r.process(&vec![1.0; 1600]);
        assert_eq!(y.len(), 1000);
        assert!(y[300..700].iter().all(|v| (v - 1.0).abs() < 1e-3));
    }

    #[test]
    fn polyphase_equals_direct_upfirdn() {
        for (to_hz, from_hz) in [(10_000, 16_000), (10_000, 44_100), (10_000, 8_000)] {
            let r = OctaveResampler::new(to_hz, from_hz);
            let x: Vec<f64> = noise(2001, 5).iter().map(|&v| f64::from(v)).collect();
            let y = r.process(&x);
            // scipy's upfirdn on the zero-padded filter, then its slice.
            let half_len = (r.taps.len() - 1) / 2;
            let pre_pad = r.down - half_len % r.down;
            let pre_remove = (half_len + pre_pad) / r.down;
            assert_eq!(y.len(), (x.len() * r.up).div_ceil(r.down));
            for (m, &got) in y.iter().enumerate() {
                let k = (pre_remove + m) * r.down;
                let want: f64 = (0..x.len())
                    .filter_map(|i| {
                        let j = k.checked_sub(i * r.up + pre_pad)?;
                        Some(r.taps.get(j)? * x[i])
                    })
                    .sum();
                assert!((got - want).abs() < 1e-12, "{to_hz}/{from_hz} [{m}]");
            }
        }
    }

    #[test]
    fn third_octave_bands_are_contiguous_and_increasing() {
        let bands = third_octave_bins();
        assert_eq!(bands[0], (7, 9));
        for pair in bands.windows(2) {
            assert!(pair[0].1 <= pair[1].0 + 1 && pair[0].0 < pair[1].0);
        }
        assert!(bands[NUM_BANDS - 1].1 <= FFT_LEN / 2);
    }
}
