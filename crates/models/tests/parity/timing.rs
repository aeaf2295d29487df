//! Per-hop processing time of each model, printed, never asserted. Run it optimised and alone:
//! `cargo test --release -p nomusic-models --test parity -- --ignored --nocapture timing`.

use std::time::Instant;

use nomusic_models::dfn3::DeepFilterNet3;
use nomusic_models::dtln::Dtln;
use nomusic_models::gtcrn::Gtcrn;
use nomusic_models::Separator;

use crate::common::*;

fn report(name: &str, model: &mut dyn Separator, seconds: usize) {
    let sr = model.sample_rate_hz() as usize;
    let hop = model.hop_frames();
    // A deterministic speech-like input (no digital silence, which DeepFilterNet3 skips).
    let x: Vec<f32> = (0..sr * seconds)
        .map(|i| {
            let t = i as f32 / sr as f32;
            0.1 * (t * 2.0 * std::f32::consts::PI * 220.0).sin() * (t * 3.0).sin().abs()
                + 0.01 * ((i * 7919 % 1000) as f32 / 1000.0 - 0.5)
        })
        .collect();
    let mut y = vec![0.0; hop];
    // Warm up caches and tract's lazy buffers.
    for xi in x.chunks_exact(hop).take(20) {
        model.process_hop(xi, &mut y).unwrap();
    }
    let hops = x.len() / hop;
    let mut times: Vec<f64> = Vec::with_capacity(hops);
    for xi in x.chunks_exact(hop) {
        let t0 = Instant::now();
        model.process_hop(xi, &mut y).unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let hop_ms = hop as f64 * 1e3 / sr as f64;
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let p95 = times[times.len() * 95 / 100];
    eprintln!(
        "{name}: {mean:.3} ms/hop mean, {p95:.3} ms p95, hop {hop_ms:.0} ms, real-time factor {:.3}",
        mean / hop_ms
    );
}

#[test]
#[ignore = "timing: run explicitly, optimised, on an idle machine"]
fn timing_per_hop() {
    report(
        "dtln",
        &mut Dtln::from_files(
            &model_path("dtln/model_1.onnx"),
            &model_path("dtln/model_2.onnx"),
        )
        .unwrap(),
        10,
    );
    report(
        "gtcrn",
        &mut Gtcrn::from_file(&model_path("gtcrn/gtcrn.onnx")).unwrap(),
        10,
    );
    report(
        "gtcrn_simple",
        &mut Gtcrn::from_file(&model_path("gtcrn/gtcrn_simple.onnx")).unwrap(),
        10,
    );
    report(
        "deepfilternet3",
        &mut DeepFilterNet3::from_tarball(&model_path("deepfilternet3/DeepFilterNet3_onnx.tar.gz"))
            .unwrap(),
        10,
    );
}
