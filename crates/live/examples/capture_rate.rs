//! Counts the frames a capture device delivers per second for a given cpal buffer size:
//! `cargo run -p nomusic-live --example capture_rate -- DEVICE_ID FRAMES|default SECONDS`.
//! (How the PulseAudio capture buffer size was chosen; see session.rs.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let all = nomusic_live::devices::list(false).expect("devices");
    let dev = nomusic_live::devices::select(&all, &args[1], nomusic_live::devices::Want::Capture)
        .expect("device");
    let buffer_size = match args[2].as_str() {
        "default" => cpal::BufferSize::Default,
        n => cpal::BufferSize::Fixed(n.parse().expect("frames")),
    };
    let secs: f64 = args[3].parse().expect("seconds");
    let cfg = dev.device.default_input_config().expect("config");
    let frames = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let (f2, c2) = (frames.clone(), calls.clone());
    let ch = cfg.channels() as u64;
    let stream = dev
        .device
        .build_input_stream::<f32, _, _>(
            cpal::StreamConfig {
                channels: cfg.channels(),
                sample_rate: cfg.sample_rate(),
                buffer_size,
            },
            move |d: &[f32], _| {
                f2.fetch_add(d.len() as u64 / ch, Ordering::Relaxed);
                c2.fetch_add(1, Ordering::Relaxed);
            },
            |e| eprintln!("error: {e}"),
            None,
        )
        .expect("stream");
    stream.play().expect("play");
    std::thread::sleep(Duration::from_secs(1));
    let (f0, t0) = (frames.load(Ordering::Relaxed), Instant::now());
    let c0 = calls.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(secs));
    let df = frames.load(Ordering::Relaxed) - f0;
    let dc = calls.load(Ordering::Relaxed) - c0;
    let rate = df as f64 / t0.elapsed().as_secs_f64();
    println!(
        "{} {:?}: {rate:.0} frames/s ({:.2}% of {} Hz), {:.1} frames per callback",
        dev.id,
        buffer_size,
        100.0 * rate / cfg.sample_rate() as f64,
        cfg.sample_rate(),
        df as f64 / dc.max(1) as f64
    );
}
