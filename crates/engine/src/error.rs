//! Errors of the processing pipelines.

use std::path::PathBuf;

/// Everything that can go wrong separating a stream or a file.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] nomusic_models::ModelError),
    #[error(transparent)]
    Resample(#[from] nomusic_dsp::resample::ResampleError),
    #[error(transparent)]
    Audio(#[from] nomusic_audio_io::AudioIoError),
    /// The pipeline was used wrongly or configured impossibly.
    #[error("{0}")]
    Config(String),
    /// Refusing to write an output over an input.
    #[error("refusing to overwrite the input {path}; choose another output path")]
    WouldOverwriteInput { path: PathBuf },
    /// The run was interrupted (Ctrl-C); nothing was left half-written.
    #[error("interrupted")]
    Interrupted,
}
