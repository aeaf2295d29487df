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
    /// No model of that name is registered.
    #[error("unknown model '{name}'; known models: {known} (see `nomusic models`)")]
    UnknownModel { name: String, known: String },
    /// A registered model is not on this machine.
    #[error(
        "model '{name}' is not installed (looked in {searched}). Get it with `nomusic models fetch {name}`, \
         or point nomusic at a copy of its files ({files}) with `--model-path DIR` or NOMUSIC_MODEL_DIR"
    )]
    NotInstalled {
        name: String,
        searched: String,
        files: String,
    },
    /// An offline model was asked to stream (live mode, the streaming pipeline).
    #[error(
        "{name} is an offline model (it needs the whole recording); use it with `nomusic \
         separate`, or a streaming model (the default, nomusic) for live"
    )]
    Offline { name: String },
    /// An HTDemucs checkpoint could not be loaded or run.
    #[error(transparent)]
    Demucs(#[from] nomusic_htdemucs::Error),
    /// A download failed or produced the wrong bytes.
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
}
