//! Objective quality metrics (SI-SDR, residual, music-only attenuation, STOI), as defined by the
//! benchmark scorer.
//!
//! The definition lives in `shared/bench/score.py`; this module reproduces it so that the project
//! can score itself without Python (SI-SDR, SI-SDRi, resid and MO-att to 0.01 dB, STOI to 0.005;
//! `crates/dsp/tests/metrics_score_py.rs` checks that on the dev set). Wide-band PESQ, which
//! score.py also reports when the `pesq` package is installed, is not implemented here.
//!
//! Signals come in as `&[f32]` (what the rest of nomusic carries: PCM16 and float32 WAV samples
//! convert to `f32` exactly); everything is computed in `f64`.

mod stoi;
mod summary;

pub use stoi::{stoi, STOI_TOO_FEW_FRAMES};
pub use summary::{summarize, summary_table, Bucket, ScoredItem, Summary, DEV_SMR_BUCKETS_DB};

/// The `eps` score.py adds to both energies in SI-SDR, and to both energies in MO-att.
pub const ENERGY_EPS: f64 = 1e-12;

/// Samples closer than this to a speech segment do not count as music-only.
pub const MUSIC_ONLY_GUARD_S: f64 = 0.05;

/// The floor of the music-only attenuation.
pub const MO_ATTEN_FLOOR_DB: f64 = -60.0;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// Two signals that must be sample-aligned have different lengths.
    #[error("{what} has {got} samples, expected {expected}")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// The sample rate is zero.
    #[error("sample rate must be positive")]
    ZeroSampleRate,
}

/// Per-item metrics, as score.py's `item_metrics` (without PESQ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ItemMetrics {
    /// SI-SDR of the estimate against the clean speech [dB].
    pub si_sdr: f64,
    /// `si_sdr` minus the SI-SDR of the mixture [dB].
    pub si_sdri: f64,
    /// Energy of what is left after removing the scaled speech, relative to the music [dB].
    pub resid_db: f64,
    /// Estimate energy over mixture energy in the music-only samples [dB], floored at
    /// [`MO_ATTEN_FLOOR_DB`]; `None` when the item has no music-only sample.
    pub mo_atten_db: Option<f64>,
    /// Classic STOI of the estimate against the clean speech.
    pub stoi: f64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// SI-SDR in dB of `est` against `reference`, and the scale `a` applied to the reference
/// (`a = <est, ref> / (<ref, ref> + eps)`), with score.py's `eps` ([`ENERGY_EPS`]) added to every
/// energy. Extra samples of the longer signal are ignored; pass equal lengths.
pub fn si_sdr(est: &[f32], reference: &[f32]) -> (f64, f64) {
    let est = to_f64(est);
    let reference = to_f64(reference);
    si_sdr_f64(&est, &reference)
}

fn si_sdr_f64(est: &[f64], reference: &[f64]) -> (f64, f64) {
    let scale = dot(est, reference) / (dot(reference, reference) + ENERGY_EPS);
    let mut target_energy = 0.0;
    let mut error_energy = 0.0;
    for (&e, &r) in est.iter().zip(reference) {
        let t = scale * r;
        target_energy += t * t;
        error_energy += (e - t) * (e - t);
    }
    let db = 10.0 * ((target_energy + ENERGY_EPS) / (error_energy + ENERGY_EPS)).log10();
    (db, scale)
}

/// Which samples are music-only: more than [`MUSIC_ONLY_GUARD_S`] away from every speech segment
/// (`(start_s, end_s)` in seconds). Indexes exactly as score.py: sample indices are truncated
/// toward zero (`int()`), the start is clamped at 0 and the end at `n_samples`. Unlike Python
/// slicing, a segment ending before -50 ms clears nothing (Python would count its negative end
/// from the back); such segments are invalid anyway.
pub fn music_only_mask(
    n_samples: usize,
    speech_segments: &[(f64, f64)],
    sample_rate_hz: u32,
) -> Vec<bool> {
    let rate = f64::from(sample_rate_hz);
    let mut mask = vec![true; n_samples];
    for &(start_s, end_s) in speech_segments {
        // `as` truncates toward zero and saturates, like int() for every finite value here.
        let start = (((start_s - MUSIC_ONLY_GUARD_S) * rate) as i64).max(0);
        let end = ((end_s + MUSIC_ONLY_GUARD_S) * rate) as i64;
        let start = usize::try_from(start).unwrap_or(0).min(n_samples);
        let end = usize::try_from(end).unwrap_or(0).min(n_samples);
        if start < end {
            mask[start..end].fill(false);
        }
    }
    mask
}

/// `est` cut or zero-padded to `len` samples, as score.py aligns an estimate with its mixture.
pub fn fit_to_length(est: &[f32], len: usize) -> Vec<f32> {
    let mut out = est[..est.len().min(len)].to_vec();
    out.resize(len, 0.0);
    out
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MetricsError> {
    if got == expected {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch {
            what,
            expected,
            got,
        })
    }
}

/// All metrics of one item, as score.py computes them. `est` may have any length: it is cut or
/// zero-padded to the mixture's length here (see [`fit_to_length`]). `speech`, `music` and
/// `music_only` (from [`music_only_mask`]) must have the mixture's length.
///
/// `resid_db` divides by the music energy without an `eps`, as score.py does: silent music gives
/// an infinite or NaN value.
pub fn score_item(
    est: &[f32],
    speech: &[f32],
    music: &[f32],
    mixture: &[f32],
    music_only: &[bool],
    sample_rate_hz: u32,
) -> Result<ItemMetrics, MetricsError> {
    let n = mixture.len();
    check_len("speech", n, speech.len())?;
    check_len("music", n, music.len())?;
    check_len("music-only mask", n, music_only.len())?;
    if sample_rate_hz == 0 {
        return Err(MetricsError::ZeroSampleRate);
    }
    let est32 = fit_to_length(est, n);
    let est = to_f64(&est32);
    let speech64 = to_f64(speech);
    let music = to_f64(music);
    let mixture = to_f64(mixture);

    let (si_sdr, scale) = si_sdr_f64(&est, &speech64);
    let si_sdri = si_sdr - si_sdr_f64(&mixture, &speech64).0;

    let resid_energy: f64 = est
        .iter()
        .zip(&speech64)
        .map(|(&e, &s)| {
            let r = e - scale * s;
            r * r
        })
        .sum();
    let resid_db = 10.0 * (resid_energy / dot(&music, &music)).log10();

    let mo_atten_db = music_only.iter().any(|&m| m).then(|| {
        let (mut est_energy, mut mix_energy) = (0.0, 0.0);
        for ((&e, &x), _) in est.iter().zip(&mixture).zip(music_only).filter(|(_, &m)| m) {
            est_energy += e * e;
            mix_energy += x * x;
        }
        let db = 10.0 * ((est_energy + ENERGY_EPS) / (mix_energy + ENERGY_EPS)).log10();
        // f64::max ignores a NaN, as Python's max(-60.0, nan) returns -60.0.
        db.max(MO_ATTEN_FLOOR_DB)
    });

    let stoi = stoi(speech, &est32, sample_rate_hz)?;
    Ok(ItemMetrics {
        si_sdr,
        si_sdri,
        resid_db,
        mo_atten_db,
        stoi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic, roughly speech-like test signal: a few decaying tones with pauses.
    fn test_signal(n: usize, rate_hz: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / rate_hz;
                let envelope = (t * 3.0 * std::f64::consts::PI).sin().abs();
                let tone = (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                    + 0.5 * (2.0 * std::f64::consts::PI * 1250.0 * t).sin()
                    + 0.25 * (2.0 * std::f64::consts::PI * 3100.0 * t).sin();
                (0.2 * envelope * tone) as f32
            })
            .collect()
    }

    fn lcg_noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    #[test]
    fn si_sdr_of_identical_signals_is_huge() {
        let x = test_signal(16_000, 16_000.0);
        let (db, scale) = si_sdr(&x, &x);
        assert!(db > 100.0, "{db}");
        assert!((scale - 1.0).abs() < 1e-9);
    }

    #[test]
    fn si_sdr_of_orthogonal_noise_is_the_energy_ratio() {
        // est = x + n with <x, n> = 0 exactly: SI-SDR = 10 log10(|x|^2 / |n|^2).
        let x: Vec<f32> = (0..1000)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let noise: Vec<f32> = (0..1000)
            .map(|i| if i % 2 == 1 { 0.1 } else { 0.0 })
            .collect();
        let est: Vec<f32> = x.iter().zip(&noise).map(|(a, b)| a + b).collect();
        let (db, scale) = si_sdr(&est, &x);
        let want = 10.0 * (500.0 / (500.0 * f64::from(0.1f32).powi(2))).log10();
        assert!((db - want).abs() < 1e-9, "{db} vs {want}");
        assert!((scale - 1.0).abs() < 1e-12);
    }

    #[test]
    fn si_sdr_is_scale_invariant() {
        let x = test_signal(8000, 16_000.0);
        let noise = lcg_noise(8000, 7);
        let est: Vec<f32> = x.iter().zip(&noise).map(|(a, b)| a + 0.05 * b).collect();
        let (db, _) = si_sdr(&est, &x);
        let scaled: Vec<f32> = est.iter().map(|v| v * 0.25).collect();
        let (db_scaled, scale) = si_sdr(&scaled, &x);
        assert!((db - db_scaled).abs() < 1e-6, "{db} vs {db_scaled}");
        assert!((scale - 0.25).abs() < 0.01, "{scale}");
    }

    #[test]
    fn mask_truncates_like_python_int() {
        // (0.02 - 0.05) * 100 = -3 -> 0; (0.1 + 0.05) * 100 = 15.000000000000002 -> 15.
        let mask = music_only_mask(40, &[(0.02, 0.1), (0.3, 0.31)], 100);
        let cleared: Vec<usize> = (0..40).filter(|&i| !mask[i]).collect();
        // The second end is whatever (0.31 + 0.05) * 100 truncates to in f64, as in Python.
        let second_end = ((0.31f64 + 0.05) * 100.0) as usize;
        let want: Vec<usize> = (0..15).chain(25..second_end).collect();
        assert_eq!(cleared, want);
        assert!(music_only_mask(10, &[(5.0, 6.0)], 100).iter().all(|&m| m));
        assert!(!music_only_mask(10, &[(0.0, 60.0)], 100).iter().any(|&m| m));
    }

    #[test]
    fn score_item_of_the_mixture_is_the_identity() {
        let n = 16_000;
        let speech = test_signal(n, 16_000.0);
        let music: Vec<f32> = lcg_noise(n, 3).iter().map(|v| 0.05 * v).collect();
        let mixture: Vec<f32> = speech.iter().zip(&music).map(|(s, m)| s + m).collect();
        let mask = music_only_mask(n, &[(0.2, 0.8)], 16_000);
        let m = score_item(&mixture, &speech, &music, &mixture, &mask, 16_000).unwrap();
        assert_eq!(m.si_sdri, 0.0);
        assert_eq!(m.mo_atten_db, Some(0.0));
        assert!(m.resid_db.abs() < 0.1, "{}", m.resid_db);
        // A silent estimate hits the floor.
        let m = score_item(&[], &speech, &music, &mixture, &mask, 16_000).unwrap();
        assert_eq!(m.mo_atten_db, Some(MO_ATTEN_FLOOR_DB));
        // No music-only sample: no attenuation.
        let all_speech = vec![false; n];
        let m = score_item(&mixture, &speech, &music, &mixture, &all_speech, 16_000).unwrap();
        assert_eq!(m.mo_atten_db, None);
    }

    #[test]
    fn score_item_rejects_misaligned_references() {
        let x = vec![0.0f32; 100];
        let err = score_item(&x, &x[..99], &x, &x, &[true; 100], 16_000).unwrap_err();
        assert_eq!(
            err,
            MetricsError::LengthMismatch {
                what: "speech",
                expected: 100,
                got: 99
            }
        );
    }

    #[test]
    fn fit_to_length_cuts_and_pads() {
        assert_eq!(fit_to_length(&[1.0, 2.0, 3.0], 2), vec![1.0, 2.0]);
        assert_eq!(fit_to_length(&[1.0], 3), vec![1.0, 0.0, 0.0]);
    }

    pub(super) fn speechlike(n: usize, rate_hz: f64) -> Vec<f32> {
        test_signal(n, rate_hz)
    }

    pub(super) fn noise(n: usize, seed: u64) -> Vec<f32> {
        lcg_noise(n, seed)
    }
}
