//! The crate's one error type: what went wrong, with the file or tensor it concerns.

use std::path::PathBuf;

/// Errors from loading a checkpoint or running the network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read at all.
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file ends early: an interrupted download or copy.
    #[error("checkpoint {path} is truncated or corrupt ({detail}); download it again")]
    Truncated { path: PathBuf, detail: String },
    /// The sha256 of the file does not match the signature in its name
    /// (demucs names release files `<xp>-<first 8 hex digits of sha256>.th`).
    #[error("checkpoint {path} has the wrong signature: its name says {expected}, its content hashes to {actual}")]
    Signature {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// The file is readable but is not an HTDemucs checkpoint of a supported layout.
    #[error("checkpoint {path} is not a usable HTDemucs checkpoint: {reason}")]
    Format { path: PathBuf, reason: String },
    /// Weights that the configuration needs are absent from the checkpoint.
    #[error("checkpoint {path} misses {} weight(s): {}", missing.len(), missing.join(", "))]
    MissingKeys { path: PathBuf, missing: Vec<String> },
    /// A weight has another shape than the configuration implies.
    #[error("checkpoint {path}: weight {key} has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The model configuration is not supported by this implementation.
    #[error("unsupported HTDemucs configuration: {0}")]
    Config(String),
    /// The audio handed to `separate` cannot be processed.
    #[error("invalid input audio: {0}")]
    Input(String),
    /// The caller's progress callback asked to stop.
    #[error("separation cancelled")]
    Cancelled,
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
