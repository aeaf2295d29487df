//! The built-in model (nomusic's own weights) run by nomusic's Rust runner against the same
//! weights in PyTorch, on the same input: max |rust - torch| <= 1e-4 over every sample.
//!
//! The PyTorch side is recorded in tests/fixtures/nomusic-parity.{json,f32} by
//! training/finetune/parity_ref.py (it needs the training virtualenv with torch), which loads the
//! very files compiled into the binary as trainable modules and runs training's pipeline
//! (STFT, features, graphs, ERB gains, deep filter, local-SNR switches, overlap-add).

use std::f64::consts::PI;
use std::path::Path;

use nomusic_models::builtin::NOMUSIC_FILES;
use nomusic_models::dfn3::DeepFilterNet3;
use nomusic_models::Separator;
use sha2::{Digest, Sha256};

const MAX_ABS_ERROR: f32 = 1e-4;
const RATE: f64 = 48_000.0;
const VOWELS: [[f64; 3]; 3] = [
    [730.0, 1090.0, 2440.0],
    [270.0, 2290.0, 3010.0],
    [300.0, 870.0, 2240.0],
];
const BANDWIDTHS: [f64; 3] = [60.0, 90.0, 120.0];
const SYLLABLE_S: f64 = 0.25;

/// parity_ref.py's `parity_input`, operation for operation: a crude talker (glottal pulses
/// through three formant resonators) over a chord and a little noise.
fn parity_input(n: usize) -> Vec<f32> {
    let mut state: u64 = 12345;
    let mut phase = 0.0f64;
    let (mut y1, mut y2) = ([0.0f64; 3], [0.0f64; 3]);
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE;
            let f0 = 120.0 + 30.0 * (2.0 * PI * 1.5 * t).sin();
            phase += f0 / RATE;
            let mut v = 0.0;
            if phase >= 1.0 {
                phase -= 1.0;
                v = 1.0;
            }
            let syllable = (t / SYLLABLE_S) as usize;
            let formants = VOWELS[syllable % 3];
            for k in 0..3 {
                let r = (-PI * BANDWIDTHS[k] / RATE).exp();
                let a1 = 2.0 * r * (2.0 * PI * formants[k] / RATE).cos();
                let a2 = -r * r;
                let y = (1.0 - r) * v + a1 * y1[k] + a2 * y2[k];
                y2[k] = y1[k];
                y1[k] = y;
                v = y;
            }
            let env = (PI * (t / SYLLABLE_S - syllable as f64)).sin().powi(2);
            let voice = 40.0 * env * v;
            let music = 0.04
                * [440.0, 554.37, 659.25]
                    .iter()
                    .map(|f| (2.0 * PI * f * t).sin())
                    .sum::<f64>();
            state = (state * 1_664_525 + 1_013_904_223) % (1 << 32);
            let noise = 0.005 * ((state >> 8) as f64 / 16_777_216.0 * 2.0 - 1.0);
            (voice + music + noise) as f32
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn built_in_model_matches_pytorch() {
    let meta: serde_json::Value = serde_json::from_slice(&fixture("nomusic-parity.json")).unwrap();
    for (name, bytes) in NOMUSIC_FILES {
        let have: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            meta["sha256"][name].as_str(),
            Some(have.as_str()),
            "the recorded PyTorch output was made with other weights than the built-in {name}: \
             run training/finetune/parity_ref.py"
        );
    }
    let want: Vec<f32> = fixture("nomusic-parity.f32")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(Some(want.len() as u64), meta["samples"].as_u64());

    let x = parity_input(want.len());
    let mut model = DeepFilterNet3::builtin().unwrap();
    assert_eq!(
        Some(model.latency_frames() as u64),
        meta["latency"].as_u64()
    );
    let hop = model.hop_frames();
    let mut got = vec![0.0f32; x.len()];
    for (inp, out) in x.chunks_exact(hop).zip(got.chunks_exact_mut(hop)) {
        model.process_hop(inp, out).unwrap();
    }

    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if (g - w).abs() > worst {
            (worst, at) = ((g - w).abs(), i);
        }
    }
    let rms = |v: &[f32]| (v.iter().map(|s| (s * s) as f64).sum::<f64>() / v.len() as f64).sqrt();
    let diff: Vec<f32> = got.iter().zip(&want).map(|(g, w)| g - w).collect();
    println!(
        "max |rust - torch| {worst:.2e} at sample {at}; output rms {:.4} (torch {:.4}); \
         error rms {:.2e}",
        rms(&got),
        rms(&want),
        rms(&diff)
    );
    // The output is not trivially silent, so the bound says something.
    assert!(rms(&want) > 1e-3 && want.iter().any(|s| s.abs() > 0.02));
    assert!(
        worst <= MAX_ABS_ERROR,
        "max |rust - torch| = {worst:e} at sample {at} (> {MAX_ABS_ERROR:e})"
    );
}
