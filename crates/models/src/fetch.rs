//! Downloads model files: resumable, verified by sha256 (the whole digest, or the prefix that
//! demucs publishes), installed atomically.
//!
//! Files are downloaded into a staging directory `<cache>/<model>.partial/` as `<file>.part`;
//! an interrupted download resumes with an HTTP range request. Each file is checked against
//! the registry's size (where it is known exactly) and checksum, and only when every file of the model is verified is the
//! staging directory renamed to `<cache>/<model>/`. A model directory therefore either holds
//! every verified file or does not exist: nothing is ever half-installed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::registry::{FileSize, ModelFile, ModelSpec};
use crate::ModelError;

/// What a progress callback is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEvent<'a> {
    /// A file starts (or resumes at `resumed_from` bytes).
    Start {
        file: &'a str,
        /// The expected size (approximate where the registry does not know it exactly).
        total_bytes: u64,
        resumed_from: u64,
    },
    /// `done_bytes` of the current file are on disk.
    Progress { file: &'a str, done_bytes: u64 },
    /// The file is complete and verified.
    Verified { file: &'a str },
}

/// Where to download from: the registry's upstream URLs, or a mirror holding
/// `<mirror>/<model>/<file>` (used for offline installs and tests).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    Upstream,
    Mirror(String),
}

impl Source {
    /// `NOMUSIC_MODEL_MIRROR` if set, else upstream.
    pub fn from_env() -> Self {
        match std::env::var("NOMUSIC_MODEL_MIRROR") {
            Ok(m) if !m.is_empty() => Source::Mirror(m),
            _ => Source::Upstream,
        }
    }

    fn url(&self, spec: &ModelSpec, file: &ModelFile) -> String {
        match self {
            Source::Upstream => file.url.to_string(),
            Source::Mirror(base) => {
                format!("{}/{}/{}", base.trim_end_matches('/'), spec.name, file.name)
            }
        }
    }
}

/// Downloads every file of `spec` into `cache_dir/<name>/`, returning that directory.
/// A model already installed and intact is left alone.
pub fn fetch(
    spec: &ModelSpec,
    cache_dir: &Path,
    source: &Source,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<PathBuf, ModelError> {
    let final_dir = cache_dir.join(spec.name);
    if spec
        .files
        .iter()
        .all(|f| verify(&final_dir.join(f.name), f).is_ok())
    {
        for f in spec.files {
            progress(FetchEvent::Verified { file: f.name });
        }
        return Ok(final_dir);
    }
    let staging = cache_dir.join(format!("{}.partial", spec.name));
    fs::create_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    for file in spec.files {
        let done = staging.join(file.name);
        if verify(&done, file).is_ok() {
            progress(FetchEvent::Verified { file: file.name });
            continue;
        }
        let part = staging.join(format!("{}.part", file.name));
        let url = source.url(spec, file);
        download(&url, &part, file, progress)?;
        if let Err(reason) = verify(&part, file) {
            // A wrong download cannot be resumed into a right one: start over next time.
            let _ = fs::remove_file(&part);
            return Err(ModelError::Download {
                url,
                reason: format!("{reason}; the partial file was deleted, run the command again"),
            });
        }
        fs::rename(&part, &done).map_err(|e| io_err(&done, e))?;
        progress(FetchEvent::Verified { file: file.name });
    }
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).map_err(|e| io_err(&final_dir, e))?;
    }
    fs::rename(&staging, &final_dir).map_err(|e| io_err(&final_dir, e))?;
    Ok(final_dir)
}

/// Checks size (where known exactly) and sha256 of a file on disk against the registry.
pub fn verify(path: &Path, file: &ModelFile) -> Result<(), String> {
    let len = fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if let FileSize::Exact(size) = file.size {
        if len != size {
            return Err(format!(
                "{} has {len} bytes, expected {size} (truncated or wrong file)",
                file.name
            ));
        }
    }
    let got = sha256_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !file.checksum.matches(&got) {
        return Err(format!(
            "{} has sha256 {got}, expected {} (truncated or corrupted download, or a changed \
             upstream file)",
            file.name,
            file.checksum.expected()
        ));
    }
    Ok(())
}

/// The most bytes a download may bring: the exact size, or four times an approximate one.
fn max_bytes(file: &ModelFile) -> u64 {
    match file.size {
        FileSize::Exact(b) => b,
        FileSize::About(b) => b.saturating_mul(4),
    }
}

/// Lower-case hex sha256 of a file, read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn download(
    url: &str,
    part: &Path,
    file: &ModelFile,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<(), ModelError> {
    let dl_err = |reason: String| ModelError::Download {
        url: url.to_string(),
        reason,
    };
    let mut have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > max_bytes(file) {
        fs::remove_file(part).map_err(|e| io_err(part, e))?;
        have = 0;
    }
    let mut request = ureq::get(url);
    if have > 0 {
        request = request.header("Range", &format!("bytes={have}-"));
    }
    let mut response = request.call().map_err(|e| dl_err(e.to_string()))?;
    let resumed = response.status().as_u16() == 206;
    if !resumed {
        have = 0;
    }
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .map_err(|e| io_err(part, e))?;
    progress(FetchEvent::Start {
        file: file.name,
        total_bytes: file.size.bytes(),
        resumed_from: have,
    });
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(max_bytes(file) + 1)
        .reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = have;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                out.flush().map_err(|e| io_err(part, e))?;
                return Err(dl_err(format!(
                    "connection lost after {done} of {} bytes ({e}); run the command again to resume",
                    file.size.bytes()
                )));
            }
        };
        out.write_all(&buf[..n]).map_err(|e| io_err(part, e))?;
        done += n as u64;
        progress(FetchEvent::Progress {
            file: file.name,
            done_bytes: done,
        });
    }
    out.sync_all().map_err(|e| io_err(part, e))?;
    Ok(())
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}
