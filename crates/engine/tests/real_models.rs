//! Streaming equals whole-input processing with the real models (tract's pulse property):
//! feeding a file in random chunk sizes gives bit-identical output to one call.

use std::path::Path;

use nomusic_engine::{MixOptions, StreamSeparator};
use nomusic_models::registry::{self, ModelDirs};
use proptest::prelude::*;

fn run(model: &str, x: &[f32], rate: u32, chunks: &[usize]) -> Vec<f32> {
    let dirs = ModelDirs {
        search: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")],
        cache: std::env::temp_dir(),
    };
    let located = dirs.locate(registry::find(model).unwrap()).unwrap();
    let factory = move || registry::build(&located);
    let mut sep = StreamSeparator::new(&factory, rate, 1, MixOptions::default()).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    for c in chunks.iter().cycle() {
        if at >= x.len() {
            break;
        }
        let end = (at + c.max(&1)).min(x.len());
        sep.process(&x[at..end], &mut out, None).unwrap();
        at = end;
    }
    sep.finish(&mut out, None).unwrap();
    out
}

fn dev_mixture(seconds: f32) -> Vec<f32> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/dev/dev_02/mixture.wav");
    let (_, planar) = nomusic_audio_io::read_all(&path).unwrap();
    planar[0][..(16_000.0 * seconds) as usize].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]
    #[test]
    fn dtln_streaming_equals_whole(chunks in proptest::collection::vec(1usize..4000, 1..8)) {
        let x = dev_mixture(3.0);
        prop_assert_eq!(run("dtln", &x, 16_000, &[x.len()]), run("dtln", &x, 16_000, &chunks));
    }

    #[test]
    fn dfn3_streaming_equals_whole_through_resampling(chunks in proptest::collection::vec(1usize..4000, 1..8)) {
        let x = dev_mixture(2.0);
        let whole = run("deepfilternet3", &x, 16_000, &[x.len()]);
        prop_assert_eq!(whole.len(), x.len());
        prop_assert_eq!(whole, run("deepfilternet3", &x, 16_000, &chunks));
    }
}

/// Mean square of `x[from..to]`, in dB.
fn level_db(x: &[f32], from: usize, to: usize) -> f32 {
    let e = x[from..to].iter().map(|v| v * v).sum::<f32>() / (to - from) as f32;
    10.0 * (e + 1e-20).log10()
}

#[test]
fn the_end_of_a_file_comes_out_whole() {
    // The pipeline drains on silence after the last sample. DeepFilterNet3's runner used to
    // gate every silent hop at once (libDF's rule), which zeroed the last 20 ms of every file.
    let x = dev_mixture(2.0);
    let out = run("nomusic", &x, 16_000, &[x.len()]);
    assert_eq!(out.len(), x.len());
    let n = out.len();
    let (last, before) = (
        level_db(&out, n - 320, n),
        level_db(&out, n - 1920, n - 320),
    );
    eprintln!("last 20 ms {last:.1} dB, the 100 ms before {before:.1} dB");
    assert!(out[n - 160..].iter().any(|&v| v != 0.0));
    assert!(
        last > before - 10.0,
        "last 20 ms {last:.1} dB, before {before:.1} dB"
    );
}
