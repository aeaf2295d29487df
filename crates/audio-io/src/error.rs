//! The one error type of this crate. Every variant names the file it is about and says what the
//! user can do, because these messages reach the command line unchanged.

use std::path::PathBuf;

/// What nomusic can read, for messages about files it cannot.
pub const SUPPORTED_INPUTS: &str =
    "nomusic reads WAV, FLAC, MP3, Ogg Vorbis/Opus, WebM/MKV, MP4/M4A (AAC), AIFF";

/// Errors from decoding and encoding audio files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioIoError {
    /// The input file could not be opened or read at the OS level.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not in a container format nomusic recognises.
    #[error("unsupported format: {} ({extension}): not recognised as audio (damaged, or not an audio file); {SUPPORTED_INPUTS}", path.display())]
    UnsupportedFormat {
        path: PathBuf,
        /// The file's extension with its dot, or "no extension".
        extension: String,
    },

    /// The container was recognised but its audio codec is not supported.
    #[error("unsupported audio codec in {}: {codec}; {SUPPORTED_INPUTS}", path.display())]
    UnsupportedCodec { path: PathBuf, codec: String },

    /// The container holds no audio track (for example a video without sound).
    #[error("no audio track in {}; is it a video without sound?", path.display())]
    NoAudioTrack { path: PathBuf },

    /// The audio data is damaged: undecodable packets, or a stream that ends early.
    #[error("corrupt audio in {} at {position_s:.1} s: {detail}; the file may be damaged or incompletely downloaded", path.display())]
    Corrupt {
        path: PathBuf,
        /// Position in the decoded audio, in seconds, where the problem showed.
        position_s: f64,
        detail: String,
    },

    /// The output directory does not exist.
    #[error("cannot write {}: directory {} does not exist; create it first", path.display(), dir.display())]
    OutputDirMissing { path: PathBuf, dir: PathBuf },

    /// The output (temporary) file could not be created, e.g. no permission.
    #[error("cannot create {}: {source}; check that the directory is writable", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The disk (or quota) is full.
    #[error("disk full while writing {}; free some space or write elsewhere", path.display())]
    DiskFull { path: PathBuf },

    /// Any other write, flush, sync or rename failure.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The encoder settings or the samples passed to it do not fit the output format.
    #[error("cannot write {}: {detail}", path.display())]
    InvalidOutput { path: PathBuf, detail: String },
}

impl AudioIoError {
    /// Maps an I/O error during writing to `DiskFull` or `Write`.
    pub(crate) fn write(path: &std::path::Path, source: std::io::Error) -> Self {
        if is_disk_full(&source) {
            AudioIoError::DiskFull {
                path: path.to_path_buf(),
            }
        } else {
            AudioIoError::Write {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

fn is_disk_full(err: &std::io::Error) -> bool {
    // ENOSPC = 28 and EDQUOT = 122 on Linux; StorageFull covers ENOSPC everywhere.
    err.kind() == std::io::ErrorKind::StorageFull
        || matches!(err.raw_os_error(), Some(28) | Some(122))
}
