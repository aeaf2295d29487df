//! What the examples share: command-line arguments, the reference clip, peak memory.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

pub type Error = Box<dyn std::error::Error>;
/// The clip's tensors by name, and its mixture (channels x samples).
pub type Clip = (HashMap<String, Tensor>, Vec<Vec<f32>>);

/// `<checkpoint> <clip.safetensors>` from the command line, or a usage error naming `example`.
pub fn checkpoint_and_clip(example: &str) -> Result<(String, String), Error> {
    match std::env::args().collect::<Vec<_>>().as_slice() {
        [_, ckpt, clip] => Ok((ckpt.clone(), clip.clone())),
        _ => Err(format!("usage: {example} <checkpoint> <clip.safetensors>").into()),
    }
}

/// The clip written by `tools/htdemucs/make_reference.py full`.
pub fn load_clip(path: &str) -> Result<Clip, Error> {
    let data = candle_core::safetensors::load(path, &Device::Cpu)?;
    let mix = data
        .get("mix")
        .ok_or_else(|| format!("{path} has no `mix` tensor"))?
        .to_vec2()?;
    Ok((data, mix))
}

/// `VmHWM` of this process: the peak resident set size, in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
