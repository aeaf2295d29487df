//! HTDemucs (Hybrid Transformer Demucs, demucs 4) in pure Rust on candle.
//!
//! Written from the upstream PyTorch code (demucs 4.1.0: `htdemucs.py`, `hdemucs.py`,
//! `transformer.py`, `spec.py`, `apply.py`, `states.py`), one module per block, with weight
//! names equal to the PyTorch `state_dict` keys so that release checkpoints load unchanged.
//!
//! # Public API (for the CLI / models integration)
//!
//! ```no_run
//! use candle_core::Device;
//! use nomusic_htdemucs::{SeparateOptions, Separator};
//!
//! # fn main() -> nomusic_htdemucs::Result<()> {
//! // A release `.th` (e.g. `955717e8-8726e21a.th`; the sha256 prefix in the name is checked)
//! // or a safetensors file with the config as JSON in its `config` metadata entry.
//! let sep = Separator::from_checkpoint("955717e8-8726e21a.th", &Device::Cpu)?;
//! assert_eq!(sep.sample_rate_hz(), 44_100); // resample other rates in and back out
//! assert_eq!(sep.audio_channels(), 2); // duplicate mono, downmix more channels
//! let (left, right) = (vec![0.0f32; 44_100], vec![0.0f32; 44_100]);
//! let opts = SeparateOptions { shifts: 0, ..Default::default() };
//! let stems = sep.separate(&[&left, &right], &opts, |p| {
//!     eprintln!("{}/{} segments", p.segments_done, p.segments_total);
//!     true // false cancels with Error::Cancelled
//! })?;
//! let vocals = stems.get("vocals").unwrap(); // [channel][frame], same length as the input
//! # let _ = vocals; Ok(()) }
//! ```
//!
//! * [`Separator::separate_streaming`] hands finished blocks to a sink in order; memory
//!   stays bounded (about 650 MB peak for the release model on CPU, dominated by one 7.8 s
//!   segment's activations) whatever the input length; shifted passes run in lock-step.
//! * [`Separator::separate_source`] reads the input from a [`FrameSource`] as segments need
//!   it, with [`MixStats`] measured beforehand (e.g. [`MixStatsBuilder`] over a first pass),
//!   so a long file is never in memory whole.
//! * `htdemucs_ft` is a bag of four models with one-hot weights (drums, bass, other, vocals):
//!   for speech load only the vocals model (`04573f0d`), and take its "vocals" stem.
//! * Inference follows `demucs.api.Separator` + `apply_model`: the input is normalised by the
//!   mean and std of its mono downmix, cut into segments of the model's `segment` (7.8 s)
//!   with 25 % overlap and triangular blending, optional random `shifts` averaged.
//! * Errors ([`Error`]) name what is wrong: truncated file, wrong signature, missing weights
//!   (all of them listed), wrong shapes, unsupported configurations.
//! * The `cuda` feature enables candle's CUDA backend; pass a CUDA [`candle_core::Device`].
//!
//! # Parity
//!
//! `tests/layers.rs` compares every block with PyTorch on a small model (fixture made by
//! `tools/htdemucs/make_reference.py fixtures`, no PyTorch needed to run the tests).
//! The full-size check: `bash tools/htdemucs/setup.sh`, then
//! `.venv-htdemucs/bin/python tools/htdemucs/make_reference.py full` and
//! `cargo run --release -p nomusic-htdemucs --example parity -- out/htdemucs/htdemucs-random.th out/htdemucs/clip.safetensors`.
pub mod apply;
pub mod checkpoint;
pub mod config;
mod cpu;
pub mod dconv;
pub mod decoder;
pub mod encoder;
mod error;
mod layers;
pub mod model;
pub mod spec;
pub mod transformer;

pub use apply::{
    FrameSource, MixStats, MixStatsBuilder, Progress, SeparateOptions, Separator, SliceSource,
    Stems,
};
/// The tensor crate, re-exported so that callers name the same `Device` type.
pub use candle_core;
pub use checkpoint::Checkpoint;
pub use config::{HtDemucsConfig, Seconds};
pub use error::{Error, Result};
pub use model::HtDemucs;
