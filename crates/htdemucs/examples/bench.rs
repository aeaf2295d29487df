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

mod common;
use common::{checkpoint_and_clip, load_clip, peak_rss_mib};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (ckpt, clip) = checkpoint_and_clip("bench")?;
    let sep = Separator::from_checkpoint(&ckpt, &Device::Cpu)?;
    let (_, mix) = load_clip(&clip)?;
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
