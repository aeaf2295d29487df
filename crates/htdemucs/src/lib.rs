//! HTDemucs (Hybrid Transformer Demucs, demucs 4) in pure Rust on candle.
//!
//! Written from the upstream PyTorch code (demucs 4.1.0: `htdemucs.py`, `hdemucs.py`,
//! `transformer.py`, `spec.py`, `apply.py`), one module per block, with weight names equal
//! to the PyTorch `state_dict` keys so that release checkpoints load unchanged.
pub mod apply;
pub mod checkpoint;
pub mod config;
pub mod dconv;
pub mod decoder;
pub mod encoder;
mod error;
mod layers;
pub mod model;
pub mod spec;
pub mod transformer;

pub use apply::{Progress, SeparateOptions, Separator, Stems};
pub use checkpoint::Checkpoint;
pub use config::{HtDemucsConfig, Seconds};
pub use error::{Error, Result};
pub use model::HtDemucs;
