//! Helpers shared by the parity tests: audio files, the Python reference, SI-SDR.

use std::path::{Path, PathBuf};
use std::process::Command;

use nomusic_models::Separator;

/// Where the shared, read-only model files live (`<repo>/../shared/models`).
pub fn model_path(rel: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/models"
    ))
    .join(rel)
}

/// A dev-set mixture (16 kHz mono).
pub fn dev_mixture() -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/bench/dev/dev_00/mixture.wav"
    ))
    .to_path_buf()
}

fn repo_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

pub fn reference_script(name: &str) -> PathBuf {
    repo_root().join("tools/reference").join(name)
}

/// The Python interpreter holding the references; fails loudly when it is not configured.
pub fn python() -> PathBuf {
    match std::env::var_os("NOMUSIC_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "NOMUSIC_PYTHON is not set: these parity tests need the Python references; \
             run scripts/test.sh (it installs .venv and sets NOMUSIC_PYTHON)"
        ),
    }
}

/// Runs a reference script with `args`, panicking with its stderr on failure.
pub fn run_python(script: &Path, args: &[&Path]) {
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads a mono WAV (int or float) as f32.
pub fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.channels, 1, "{} is not mono", path.display());
    let x = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.unwrap() as f32 * scale)
                .collect()
        }
    };
    (x, spec.sample_rate)
}

/// Writes a mono float32 WAV.
pub fn write_wav(path: &Path, x: &[f32], sample_rate_hz: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sample_rate_hz,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in x {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Runs a separator over whole hops of `x` (the tail shorter than a hop is dropped).
pub fn run_separator(model: &mut dyn Separator, x: &[f32]) -> Vec<f32> {
    let hop = model.hop_frames();
    let n = x.len() / hop * hop;
    let mut y = vec![0.0; n];
    for (xi, yi) in x[..n].chunks(hop).zip(y.chunks_mut(hop)) {
        model.process_hop(xi, yi).expect("process_hop");
    }
    y
}

/// Scale-invariant SDR of `est` against `reference` in dB.
pub fn si_sdr_db(est: &[f32], reference: &[f32]) -> f64 {
    let n = est.len().min(reference.len());
    let (e, r) = (&est[..n], &reference[..n]);
    let dot: f64 = e.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum();
    let rr: f64 = r.iter().map(|&b| b as f64 * b as f64).sum();
    let alpha = dot / rr;
    let (mut target, mut noise) = (0.0, 0.0);
    for (&a, &b) in e.iter().zip(r) {
        let t = alpha * b as f64;
        target += t * t;
        noise += (a as f64 - t) * (a as f64 - t);
    }
    10.0 * (target / noise.max(1e-30)).log10()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The lag in `0..max_lag` at which `y` best matches `x` (cross-correlation peak).
pub fn best_lag(x: &[f32], y: &[f32], max_lag: usize) -> usize {
    (0..max_lag)
        .max_by(|&a, &b| {
            let c = |d: usize| -> f64 {
                x.iter()
                    .zip(&y[d..])
                    .map(|(&p, &q)| p as f64 * q as f64)
                    .sum()
            };
            c(a).total_cmp(&c(b))
        })
        .unwrap_or(0)
}

/// Determinism: a reset separator reproduces its first run bit for bit.
pub fn assert_reset_reproduces(model: &mut dyn Separator, x: &[f32]) {
    let first = run_separator(model, x);
    model.reset();
    let second = run_separator(model, x);
    assert!(
        first == second,
        "output after reset differs from the first run"
    );
    assert!(first.iter().any(|&s| s != 0.0), "model output is all zeros");
}
