//! DTLN against the ONNX Runtime loop in tools/reference/dtln_ref.py.

use nomusic_models::dtln::Dtln;
use nomusic_models::Separator;

use crate::common::*;

/// Worst SI-SDR accepted between tract and ONNX Runtime (they agree to ~7 digits).
const MIN_SI_SDR_DB: f64 = 40.0;
const SECONDS: usize = 4;

fn model() -> Dtln {
    Dtln::from_files(
        &model_path("dtln/model_1.onnx"),
        &model_path("dtln/model_2.onnx"),
    )
    .expect("load DTLN")
}

fn input() -> Vec<f32> {
    let (x, sr) = read_wav(&dev_mixture());
    assert_eq!(sr, 16_000);
    x[..SECONDS * 16_000].to_vec()
}

#[test]
fn dtln_matches_onnxruntime_reference() {
    let x = input();
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("in.wav"), dir.path().join("ref.wav"));
    write_wav(&src, &x, 16_000);
    run_python(
        &reference_script("dtln_ref.py"),
        &[&model_path("dtln"), &src, &dst],
    );
    let (reference, _) = read_wav(&dst);
    let ours = run_separator(&mut model(), &x);
    let sdr = si_sdr_db(&ours, &reference);
    let err = max_abs_diff(&ours, &reference);
    eprintln!("dtln parity: SI-SDR {sdr:.1} dB, max abs error {err:.2e}");
    assert!(
        sdr >= MIN_SI_SDR_DB,
        "SI-SDR {sdr:.1} dB < {MIN_SI_SDR_DB} dB"
    );
}

#[test]
fn dtln_latency_is_the_speech_delay() {
    let x = input();
    let mut m = model();
    let y = run_separator(&mut m, &x);
    assert_eq!(best_lag(&x, &y, 1024), m.latency_frames());
}

#[test]
fn dtln_reset_is_deterministic() {
    assert_reset_reproduces(&mut model(), &input()[..16_000]);
}
