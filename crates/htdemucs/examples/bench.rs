//! Times `Separator::separate` on the mixture of the clip written by
//! `tools/htdemucs/make_reference.py full` (no shifts, overlap 0.25, as the PyTorch `bench`
//! job runs `apply_model`); prints the time, the real-time factor and the peak RSS in the
//! same format as that job, for `tools/htdemucs/bench.sh`.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p nomusic-htdemucs --example bench -- \
//!     out/htdemucs/htdemucs-random.th out/htdemucs/clip.safetensors
//! ```

use std::time::Instant;

use candle_core::Device;
use nomusic_htdemucs::{SeparateOptions, Separator};

/// `VmHWM` of this process: the peak resident set size, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (ckpt, clip) = match args.as_slice() {
        [_, c, k] => (c, k),
        _ => return Err("usage: bench <checkpoint> <clip.safetensors>".into()),
    };
    let sep = Separator::from_checkpoint(ckpt, &Device::Cpu)?;
    let mix: Vec<Vec<f32>> =
        candle_core::safetensors::load(clip, &Device::Cpu)?["mix"].to_vec2()?;
    let chans: Vec<&[f32]> = mix.iter().map(|c| c.as_slice()).collect();
    let seconds = mix[0].len() as f64 / f64::from(sep.sample_rate_hz());
    let opts = SeparateOptions {
        shifts: 0,
        ..Default::default()
    };
    let t0 = Instant::now();
    let stems = sep.separate(&chans, &opts, |_| true)?;
    let elapsed = t0.elapsed().as_secs_f64();
    std::hint::black_box(&stems);
    println!(
        "nomusic-htdemucs, {} threads: {seconds:.1} s separated in {elapsed:.2} s (RTF {:.3}), \
         peak RSS {:.0} MiB",
        rayon_threads(),
        elapsed / seconds,
        peak_rss_mib()
    );
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
}
