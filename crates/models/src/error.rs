//! Errors of model loading and inference.

use std::path::PathBuf;

/// Everything that can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file was read but is not what the model needs.
    #[error("invalid model file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The inference runtime failed.
    #[error("inference failed in {model}: {reason}")]
    Inference { model: String, reason: String },
    /// A buffer passed to `process_hop` has the wrong length.
    #[error("expected {expected} frames per hop, got {got}")]
    HopLength { expected: usize, got: usize },
}
