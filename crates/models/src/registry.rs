//! The model registry: what models exist, where they come from, and where they are on disk.
//!
//! Every model is described once here (files with upstream URL, sha256 and size; rate, latency,
//! licence). A model is found, in order, at an explicit `--model-path`, in `NOMUSIC_MODEL_DIR`
//! (one or more directories, `:`-separated on Unix), or in the user cache directory where
//! `nomusic models fetch` installs it. A directory holds each model in a sub-directory named
//! after it (`<dir>/dtln/model_1.onnx`), which is also the layout of a checkout's
//! `shared/models`.

use std::path::{Path, PathBuf};

use crate::dfn3::DeepFilterNet3;
use crate::dtln::Dtln;
use crate::gtcrn::Gtcrn;
use crate::{ModelError, Separator};

/// One file of a model, as published upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// File name on disk.
    pub name: &'static str,
    /// Where `nomusic models fetch` downloads it from.
    pub url: &'static str,
    /// Lower-case hex sha256 of the exact bytes.
    pub sha256: &'static str,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// Which runner builds the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    DeepFilterNet3,
    Dtln,
    Gtcrn,
}

/// A model nomusic can run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSpec {
    /// Registry name, also the sub-directory name on disk.
    pub name: &'static str,
    /// Other names accepted on the command line.
    pub aliases: &'static [&'static str],
    pub kind: ModelKind,
    /// One line for `nomusic models`.
    pub description: &'static str,
    pub sample_rate_hz: u32,
    /// Algorithmic latency (window plus look-ahead), in milliseconds.
    pub latency_ms: f32,
    pub licence: &'static str,
    pub files: &'static [ModelFile],
}

impl ModelSpec {
    /// Total download size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size_bytes).sum()
    }
}

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "deepfilternet3";

static MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "deepfilternet3",
        aliases: &["dfn3", "deepfilternet"],
        kind: ModelKind::DeepFilterNet3,
        description: "DeepFilterNet3 full-band speech enhancement (ERB gains + deep filtering)",
        sample_rate_hz: 48_000,
        latency_ms: 40.0,
        licence: "MIT OR Apache-2.0",
        files: &[ModelFile {
            name: "DeepFilterNet3_onnx.tar.gz",
            url: "https://github.com/Rikorose/DeepFilterNet/raw/main/models/DeepFilterNet3_onnx.tar.gz",
            sha256: "c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616",
            size_bytes: 7_983_136,
        }],
    },
    ModelSpec {
        name: "dtln",
        aliases: &[],
        kind: ModelKind::Dtln,
        description: "DTLN two-stage LSTM speech enhancement",
        sample_rate_hz: 16_000,
        latency_ms: 32.0,
        licence: "MIT",
        files: &[
            ModelFile {
                name: "model_1.onnx",
                url: "https://github.com/breizhn/DTLN/raw/master/pretrained_model/model_1.onnx",
                sha256: "22b91cae3855e5a0620e66a917ca6c82c58db0e842c770f58d86751c5e8d4ae3",
                size_bytes: 1_458_237,
            },
            ModelFile {
                name: "model_2.onnx",
                url: "https://github.com/breizhn/DTLN/raw/master/pretrained_model/model_2.onnx",
                sha256: "e20c92f9233fccf29cddf86970d0d0161a03aebccc26d6f4d5639c4d5ec2e639",
                size_bytes: 2_510_010,
            },
        ],
    },
    ModelSpec {
        name: "gtcrn",
        aliases: &[],
        kind: ModelKind::Gtcrn,
        description: "GTCRN ultra-light streaming speech enhancement",
        sample_rate_hz: 16_000,
        latency_ms: 32.0,
        licence: "MIT",
        files: &[ModelFile {
            name: "gtcrn.onnx",
            url: "https://github.com/Xiaobin-Rong/gtcrn/raw/main/stream/onnx_models/gtcrn.onnx",
            sha256: "f648b02f2d7ff96ebcb0eec2219688a08ed12fe7e3d50f248605a90eba8cad17",
            size_bytes: 352_084,
        }],
    },
];

/// Every registered model.
pub fn all() -> &'static [ModelSpec] {
    MODELS
}

/// Looks a model up by name or alias, ignoring case.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| {
        m.name.eq_ignore_ascii_case(name) || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

/// Looks a model up, or says which names exist.
pub fn lookup(name: &str) -> Result<&'static ModelSpec, ModelError> {
    find(name).ok_or_else(|| ModelError::UnknownModel {
        name: name.to_string(),
        known: MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", "),
    })
}

/// Where a model's files are, once found.
#[derive(Debug, Clone, PartialEq)]
pub struct LocatedModel {
    pub spec: &'static ModelSpec,
    /// One path per entry of `spec.files`, in the same order.
    pub files: Vec<PathBuf>,
}

/// Where models are searched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDirs {
    /// Searched in order; the first holding every file of a model wins.
    pub search: Vec<PathBuf>,
    /// Where `fetch` installs models (also searched, last).
    pub cache: PathBuf,
}

impl ModelDirs {
    /// `NOMUSIC_MODEL_DIR` (a path list) then the user cache directory
    /// (`$XDG_CACHE_HOME/nomusic/models`, `~/.cache/nomusic/models`, or the platform's equivalent).
    pub fn from_env() -> Self {
        let search = std::env::var_os("NOMUSIC_MODEL_DIR")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            search,
            cache: default_cache_dir(),
        }
    }

    /// Every directory searched, in order (the cache last).
    pub fn all(&self) -> impl Iterator<Item = &Path> {
        self.search
            .iter()
            .map(PathBuf::as_path)
            .chain(std::iter::once(self.cache.as_path()))
    }

    /// Finds every file of `spec` under one of the directories.
    pub fn locate(&self, spec: &'static ModelSpec) -> Result<LocatedModel, ModelError> {
        for dir in self.all() {
            if let Some(found) = locate_in(spec, &dir.join(spec.name)) {
                return Ok(found);
            }
        }
        Err(self.not_found(spec))
    }

    /// The error for a model that is nowhere: says exactly how to get it.
    pub fn not_found(&self, spec: &'static ModelSpec) -> ModelError {
        ModelError::NotInstalled {
            name: spec.name.to_string(),
            searched: self
                .all()
                .map(|d| d.join(spec.name).display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            files: spec
                .files
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Resolves an explicit `--model-path`: a directory holding the model's files, or (for a
/// single-file model) the file itself.
pub fn locate_at(spec: &'static ModelSpec, path: &Path) -> Result<LocatedModel, ModelError> {
    if spec.kind == ModelKind::DeepFilterNet3 && path.join("enc.onnx").is_file() {
        // An unpacked DeepFilterNet3 tarball.
        return Ok(LocatedModel {
            spec,
            files: vec![path.to_path_buf()],
        });
    }
    if path.is_dir() {
        if let Some(found) =
            locate_in(spec, path).or_else(|| locate_in(spec, &path.join(spec.name)))
        {
            return Ok(found);
        }
        return Err(ModelError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "directory does not hold every file of {} ({})",
                spec.name,
                spec.files
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    if !path.exists() {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        });
    }
    if spec.files.len() == 1 {
        return Ok(LocatedModel {
            spec,
            files: vec![path.to_path_buf()],
        });
    }
    Err(ModelError::Invalid {
        path: path.to_path_buf(),
        reason: format!(
            "{} has {} files ({}); give the directory that holds them",
            spec.name,
            spec.files.len(),
            spec.files
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// Builds a ready-to-run model from located files.
pub fn build(located: &LocatedModel) -> Result<Box<dyn Separator>, ModelError> {
    let f = &located.files;
    Ok(match located.spec.kind {
        ModelKind::DeepFilterNet3 if f[0].is_dir() => Box::new(DeepFilterNet3::from_dir(&f[0])?),
        ModelKind::DeepFilterNet3 => Box::new(DeepFilterNet3::from_tarball(&f[0])?),
        ModelKind::Dtln => Box::new(Dtln::from_files(&f[0], &f[1])?),
        ModelKind::Gtcrn => Box::new(Gtcrn::from_file(&f[0])?),
    })
}

fn locate_in(spec: &'static ModelSpec, dir: &Path) -> Option<LocatedModel> {
    let files: Vec<PathBuf> = spec.files.iter().map(|f| dir.join(f.name)).collect();
    files
        .iter()
        .all(|p| p.is_file())
        .then_some(LocatedModel { spec, files })
}

fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("nomusic").join("models");
    }
    if cfg!(windows) {
        if let Some(dir) = std::env::var_os("LOCALAPPDATA") {
            return PathBuf::from(dir).join("nomusic").join("models");
        }
    }
    if cfg!(target_os = "macos") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join("Library/Caches/nomusic/models");
        }
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home)
            .join(".cache")
            .join("nomusic")
            .join("models"),
        None => PathBuf::from(".nomusic-models"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_resolve_case_insensitively() {
        assert_eq!(find("DFN3").unwrap().name, "deepfilternet3");
        assert_eq!(find("dtln").unwrap().kind, ModelKind::Dtln);
        assert!(find("htdemucs-nope").is_none());
        let err = lookup("nope").unwrap_err().to_string();
        assert!(
            err.contains("deepfilternet3") && err.contains("gtcrn"),
            "{err}"
        );
    }

    #[test]
    fn default_model_is_registered() {
        assert!(find(DEFAULT_MODEL).is_some());
    }

    #[test]
    fn every_file_has_a_sha256_and_url() {
        for m in all() {
            for f in m.files {
                assert_eq!(f.sha256.len(), 64, "{}", f.name);
                assert!(f.url.starts_with("https://"), "{}", f.url);
            }
        }
    }

    #[test]
    fn missing_model_message_says_how_to_get_it() {
        let dirs = ModelDirs {
            search: vec![PathBuf::from("/nonexistent/a")],
            cache: PathBuf::from("/nonexistent/cache"),
        };
        let spec = find("dtln").unwrap();
        let msg = dirs.locate(spec).unwrap_err().to_string();
        assert!(msg.contains("nomusic models fetch dtln"), "{msg}");
        assert!(msg.contains("/nonexistent/a/dtln"), "{msg}");
        assert!(msg.contains("--model-path"), "{msg}");
    }

    #[test]
    fn finds_models_in_the_shared_layout() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models");
        let dirs = ModelDirs {
            search: vec![shared.clone()],
            cache: PathBuf::from("/nonexistent/cache"),
        };
        for m in all() {
            let found = dirs.locate(m).unwrap();
            assert_eq!(found.files.len(), m.files.len());
            for (path, f) in found.files.iter().zip(m.files) {
                assert_eq!(
                    std::fs::metadata(path).unwrap().len(),
                    f.size_bytes,
                    "{}",
                    f.name
                );
            }
        }
        let dtln = find("dtln").unwrap();
        assert!(locate_at(dtln, &shared.join("dtln")).is_ok());
        assert!(locate_at(dtln, &shared.join("dtln/model_1.onnx")).is_err());
        let gtcrn = find("gtcrn").unwrap();
        assert!(locate_at(gtcrn, &shared.join("gtcrn/gtcrn.onnx")).is_ok());
    }
}
