//! Shared helpers: fixture paths, the reference signal read independently with hound, and the
//! similarity measures the lossy-format tests use.

use std::path::PathBuf;

/// Frames in the source fixture (0.5 s at 44.1 kHz).
pub const SOURCE_FRAMES: usize = 22_050;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The source signal, planar, read with hound (not with the decoder under test).
pub fn source() -> Vec<Vec<f32>> {
    let mut reader = hound::WavReader::open(fixture("source.wav")).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 44_100, 16)
    );
    let mut planar = vec![Vec::new(), Vec::new()];
    for (i, s) in reader.samples::<i16>().enumerate() {
        planar[i % 2].push(f32::from(s.unwrap()) / 32768.0);
    }
    assert_eq!(planar[0].len(), SOURCE_FRAMES);
    planar
}

/// Normalised correlation of `a[n + lag]` with `b[n]` over their overlap.
pub fn correlation_at(a: &[f32], b: &[f32], lag: isize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (n, &y) in b.iter().enumerate() {
        let i = n as isize + lag;
        if i < 0 || i as usize >= a.len() {
            continue;
        }
        let x = f64::from(a[i as usize]);
        let y = f64::from(y);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// The lag in `-max_lag..=max_lag` with the highest correlation, and that correlation.
pub fn best_lag(a: &[f32], b: &[f32], max_lag: isize) -> (isize, f64) {
    (-max_lag..=max_lag)
        .map(|lag| (lag, correlation_at(a, b, lag)))
        .fold(
            (0, f64::MIN),
            |best, cur| if cur.1 > best.1 { cur } else { best },
        )
}

/// Band-limited resampling by windowed-sinc interpolation (upsampling only), good enough to
/// compare a 48 kHz Opus decode with the 44.1 kHz source sample by sample.
pub fn resample(x: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    const HALF_TAPS: isize = 32;
    let ratio = f64::from(from_hz) / f64::from(to_hz);
    let out_len = (x.len() as f64 / ratio).round() as usize;
    (0..out_len)
        .map(|m| {
            let t = m as f64 * ratio;
            let centre = t.floor() as isize;
            let mut acc = 0.0f64;
            for k in centre - HALF_TAPS + 1..=centre + HALF_TAPS {
                if k < 0 || k as usize >= x.len() {
                    continue;
                }
                let d = t - k as f64;
                let sinc = if d == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * d).sin() / (std::f64::consts::PI * d)
                };
                let w = 0.5 + 0.5 * (std::f64::consts::PI * d / HALF_TAPS as f64).cos();
                acc += f64::from(x[k as usize]) * sinc * w;
            }
            acc as f32
        })
        .collect()
}
