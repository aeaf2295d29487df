//! GTCRN against the ONNX Runtime loop in tools/reference/gtcrn_ref.py.

use nomusic_models::gtcrn::Gtcrn;
use nomusic_models::Separator;

use crate::common::*;

/// Worst SI-SDR accepted between tract and ONNX Runtime.
const MIN_SI_SDR_DB: f64 = 40.0;
const SECONDS: usize = 4;

fn model() -> Gtcrn {
    Gtcrn::from_file(&model_path("gtcrn/gtcrn.onnx")).expect("load GTCRN")
}

fn input() -> Vec<f32> {
    let (x, sr) = read_wav(&dev_mixture());
    assert_eq!(sr, 16_000);
    x[..SECONDS * 16_000].to_vec()
}

#[test]
fn gtcrn_matches_onnxruntime_reference() {
    let x = input();
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.wav"), dir.path().join("ref.wav"));
    write_wav(&src, &x, 16_000);
    run_python(
        &reference_script("gtcrn_ref.py"),
        &[&model_path("gtcrn/gtcrn.onnx"), &src, &dst],
    );
    let (reference, _) = read_wav(&dst);
    let ours = run_separator(&mut model(), &x);
    assert_eq!(ours.len(), reference.len());
    let sdr = si_sdr_db(&ours, &reference);
    let err = max_abs_diff(&ours, &reference);
    eprintln!("gtcrn parity: SI-SDR {sdr:.1} dB, max abs error {err:.2e}");
    assert!(
        sdr >= MIN_SI_SDR_DB,
        "SI-SDR {sdr:.1} dB < {MIN_SI_SDR_DB} dB"
    );
}

#[test]
fn gtcrn_simple_export_matches_full_export() {
    let x = &input()[..16_000];
    let mut simple = Gtcrn::from_file(&model_path("gtcrn/gtcrn_simple.onnx")).expect("load");
    let a = run_separator(&mut simple, x);
    let b = run_separator(&mut model(), x);
    let sdr = si_sdr_db(&a, &b);
    assert!(
        sdr >= MIN_SI_SDR_DB,
        "simple vs full export: SI-SDR {sdr:.1} dB"
    );
}

#[test]
fn gtcrn_latency_is_the_speech_delay() {
    let x = input();
    let mut m = model();
    let y = run_separator(&mut m, &x);
    assert_eq!(best_lag(&x, &y, 1024), m.latency_frames());
}

#[test]
fn gtcrn_reset_is_deterministic() {
    assert_reset_reproduces(&mut model(), &input()[..16_000]);
}
