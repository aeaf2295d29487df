//! One forward pass of a full-size model on one segment, with per-stage times
//! (`NOMUSIC_HTDEMUCS_PROFILE=1 RAYON_NUM_THREADS=2 cargo run --release --example profile -- <ckpt>`).

use candle_core::{Device, Tensor};
use nomusic_htdemucs::Checkpoint;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: profile <checkpoint>")?;
    let model = Checkpoint::read(&path)?.into_model(&Device::Cpu)?;
    let seg = model.config().segment_frames();
    let x = (Tensor::randn(0f32, 1.0, (1, 2, seg), &Device::Cpu)? * 0.1)?;
    for run in 0..2 {
        let t0 = std::time::Instant::now();
        model.forward(&x)?;
        println!(
            "run {run}: forward of {seg} frames in {:.2} s",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
