//! Separates the clip written by `tools/htdemucs/make_reference.py full` with a checkpoint
//! and compares every stem with PyTorch's `apply_model` output; prints the relative RMS
//! error per stem, the time taken and the peak memory.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p nomusic-htdemucs --example parity -- \
//!     out/htdemucs/htdemucs-random.th out/htdemucs/clip.safetensors
//! ```

use std::time::Instant;

use candle_core::Device;
use nomusic_htdemucs::{SeparateOptions, Separator};

mod common;
use common::{checkpoint_and_clip, load_clip, peak_rss_mib};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (ckpt, clip) = checkpoint_and_clip("parity")?;
    let t0 = Instant::now();
    let sep = Separator::from_checkpoint(&ckpt, &Device::Cpu)?;
    println!(
        "loaded {ckpt} in {:.2} s (peak RSS {:.0} MiB)",
        t0.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    let (data, mix) = load_clip(&clip)?;
    let want: Vec<Vec<Vec<f32>>> = data["stems"].to_vec3()?;
    let chans: Vec<&[f32]> = mix.iter().map(|c| c.as_slice()).collect();
    let seconds = mix[0].len() as f64 / f64::from(sep.sample_rate_hz());
    let t0 = Instant::now();
    let mut last = Instant::now();
    let stems = sep.separate(&chans, &SeparateOptions::default(), |p| {
        println!(
            "segment {}/{}: {:.2} s, peak RSS {:.0} MiB",
            p.segments_done,
            p.segments_total,
            last.elapsed().as_secs_f64(),
            peak_rss_mib()
        );
        last = Instant::now();
        true
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    println!(
        "separated {seconds:.1} s in {elapsed:.2} s (RTF {:.3}), peak RSS {:.0} MiB",
        elapsed / seconds,
        peak_rss_mib()
    );
    let mut worst = 0f64;
    for (i, name) in stems.names.iter().enumerate() {
        let (mut err, mut energy) = (0f64, 0f64);
        for (got, exp) in stems.audio[i].iter().zip(&want[i]) {
            for (g, e) in got.iter().zip(exp) {
                err += f64::from(g - e).powi(2);
                energy += f64::from(*e).powi(2);
            }
        }
        let rel = (err / energy.max(1e-30)).sqrt();
        worst = worst.max(rel);
        println!("{name}: relative RMS error {rel:.2e}");
    }
    println!(
        "worst relative RMS error {worst:.2e} ({})",
        if worst <= 1e-3 { "PASS" } else { "FAIL" }
    );
    Ok(())
}
