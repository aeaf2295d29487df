//! The model registry: what models exist, where they come from, and where they are on disk.
//!
//! Every model is described once here (files with upstream URL, checksum and size; rate,
//! latency, licence). The default model, `nomusic`, is built into the binary and needs no files;
//! `--model-path` can still point it at other weights of the same runner (an exported
//! checkpoint). Any other model is found, in order, at an explicit `--model-path`, in `NOMUSIC_MODEL_DIR`
//! (one or more directories, `:`-separated on Unix), or in the user cache directory where
//! `nomusic models fetch` installs it. A directory holds each model in a sub-directory named
//! after it (`<dir>/dtln/model_1.onnx`), which is also the layout of a checkout's
//! `shared/models`.
//!
//! Two kinds of model live here: streaming models behind the [`Separator`] trait (built by
//! [`build`]), and offline models (HTDemucs) that see whole recordings and run only in the file
//! mode (loaded by [`load_htdemucs`]); [`build`] refuses those with a message saying so.

use std::path::{Path, PathBuf};

use crate::dfn3::DeepFilterNet3;
use crate::dtln::Dtln;
use crate::gtcrn::Gtcrn;
use crate::{ModelError, Separator};

/// How a file's content is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Lower-case hex sha256 of the exact bytes.
    Sha256(&'static str),
    /// The first hex digits of the sha256: all that some publishers give (demucs names its
    /// release files `<signature>-<first 8 hex digits of sha256>.th`).
    Sha256Prefix(&'static str),
}

impl Checksum {
    /// Whether a full lower-case hex sha256 matches.
    pub fn matches(&self, sha256_hex: &str) -> bool {
        match self {
            Checksum::Sha256(h) => sha256_hex == *h,
            Checksum::Sha256Prefix(p) => sha256_hex.starts_with(p),
        }
    }

    /// The expected value as shown to users (`abcd1234...` for a prefix).
    pub fn expected(&self) -> String {
        match self {
            Checksum::Sha256(h) => h.to_string(),
            Checksum::Sha256Prefix(p) => format!("{p}... (first {} hex digits)", p.len()),
        }
    }
}

/// A file's size, when the publisher states it exactly, or roughly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSize {
    /// Exactly this many bytes (checked by `fetch`).
    Exact(u64),
    /// About this many bytes (shown in listings, not checked).
    About(u64),
}

impl FileSize {
    pub fn bytes(&self) -> u64 {
        match self {
            FileSize::Exact(b) | FileSize::About(b) => *b,
        }
    }
}

/// One file of a model, as published upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    /// File name on disk.
    pub name: &'static str,
    /// Where `nomusic models fetch` downloads it from.
    pub url: &'static str,
    pub checksum: Checksum,
    pub size: FileSize,
}

/// Which runner builds the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    DeepFilterNet3,
    Dtln,
    Gtcrn,
    /// HTDemucs (offline, whole recordings): one checkpoint, or a bag of one-hot models whose
    /// files are listed in the order of `stems`.
    HtDemucs {
        /// The stem each file's model is kept for (empty: one model giving every stem).
        stems: &'static [&'static str],
    },
}

impl ModelKind {
    /// Offline models see whole recordings; they cannot run live or hop by hop.
    pub fn is_offline(&self) -> bool {
        matches!(self, ModelKind::HtDemucs { .. })
    }
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
    /// Algorithmic latency (window plus look-ahead), in milliseconds; `None` for offline
    /// models, which need the whole recording.
    pub latency_ms: Option<f32>,
    pub licence: &'static str,
    /// Files to download; empty for a built-in model.
    pub files: &'static [ModelFile],
    /// The weights are compiled into the binary (see [`crate::builtin`]).
    pub builtin: bool,
}

impl ModelSpec {
    /// Total download size in bytes, and whether it is exact.
    pub fn size_bytes(&self) -> (u64, bool) {
        if self.builtin {
            return (crate::builtin::size_bytes(), true);
        }
        let total = self.files.iter().map(|f| f.size.bytes()).sum();
        let exact = self
            .files
            .iter()
            .all(|f| matches!(f.size, FileSize::Exact(_)));
        (total, exact)
    }
}

/// The model used when none is named.
pub const DEFAULT_MODEL: &str = "nomusic";

/// A demucs release file: published with only the first 8 hex digits of its sha256 (in its
/// name) and no stated size. A checkpoint of the release configuration (made with random
/// weights by tools/htdemucs) is 84,137,453 bytes, so the real files are about that.
macro_rules! demucs_file {
    ($name:literal, $sha_prefix:literal) => {
        ModelFile {
            name: $name,
            url: concat!(
                "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/",
                $name
            ),
            checksum: Checksum::Sha256Prefix($sha_prefix),
            size: FileSize::About(84_000_000),
        }
    };
}

static MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "nomusic",
        aliases: &["builtin", "default"],
        kind: ModelKind::DeepFilterNet3,
        description: "nomusic's own speech-over-music model (DeepFilterNet3 fine-tuned; built in)",
        sample_rate_hz: 48_000,
        latency_ms: Some(30.0),
        licence: "MIT OR Apache-2.0",
        files: &[],
        builtin: true,
    },
    ModelSpec {
        name: "deepfilternet3",
        aliases: &["dfn3", "deepfilternet"],
        kind: ModelKind::DeepFilterNet3,
        description: "DeepFilterNet3 full-band speech enhancement (ERB gains + deep filtering)",
        sample_rate_hz: 48_000,
        latency_ms: Some(30.0),
        licence: "MIT OR Apache-2.0",
        builtin: false,
        files: &[ModelFile {
            name: "DeepFilterNet3_onnx.tar.gz",
            url: "https://github.com/Rikorose/DeepFilterNet/raw/main/models/DeepFilterNet3_onnx.tar.gz",
            checksum: Checksum::Sha256("c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616"),
            size: FileSize::Exact(7_983_136),
        }],
    },
    ModelSpec {
        name: "dtln",
        aliases: &[],
        kind: ModelKind::Dtln,
        description: "DTLN two-stage LSTM speech enhancement",
        sample_rate_hz: 16_000,
        latency_ms: Some(24.0),
        licence: "MIT",
        builtin: false,
        files: &[
            ModelFile {
                name: "model_1.onnx",
                url: "https://github.com/breizhn/DTLN/raw/master/pretrained_model/model_1.onnx",
                checksum: Checksum::Sha256("22b91cae3855e5a0620e66a917ca6c82c58db0e842c770f58d86751c5e8d4ae3"),
                size: FileSize::Exact(1_458_237),
            },
            ModelFile {
                name: "model_2.onnx",
                url: "https://github.com/breizhn/DTLN/raw/master/pretrained_model/model_2.onnx",
                checksum: Checksum::Sha256("e20c92f9233fccf29cddf86970d0d0161a03aebccc26d6f4d5639c4d5ec2e639"),
                size: FileSize::Exact(2_510_010),
            },
        ],
    },
    ModelSpec {
        name: "gtcrn",
        aliases: &[],
        kind: ModelKind::Gtcrn,
        description: "GTCRN ultra-light streaming speech enhancement",
        sample_rate_hz: 16_000,
        latency_ms: Some(16.0),
        licence: "MIT",
        builtin: false,
        files: &[ModelFile {
            name: "gtcrn.onnx",
            url: "https://github.com/Xiaobin-Rong/gtcrn/raw/main/stream/onnx_models/gtcrn.onnx",
            checksum: Checksum::Sha256("f648b02f2d7ff96ebcb0eec2219688a08ed12fe7e3d50f248605a90eba8cad17"),
            size: FileSize::Exact(352_084),
        }],
    },
    ModelSpec {
        name: "htdemucs",
        aliases: &["demucs"],
        kind: ModelKind::HtDemucs { stems: &[] },
        description: "HTDemucs 4-stem music separation (offline; speech = vocals stem)",
        sample_rate_hz: 44_100,
        latency_ms: None,
        licence: "MIT",
        builtin: false,
        files: &[demucs_file!("955717e8-8726e21a.th", "8726e21a")],
    },
    ModelSpec {
        name: "htdemucs_ft",
        aliases: &["htdemucs-ft"],
        kind: ModelKind::HtDemucs {
            stems: &["drums", "bass", "other", "vocals"],
        },
        description: "HTDemucs fine-tuned, one model per stem (offline; speech loads only vocals)",
        sample_rate_hz: 44_100,
        latency_ms: None,
        licence: "MIT",
        builtin: false,
        files: &[
            demucs_file!("f7e0c4bc-ba3fe64a.th", "ba3fe64a"),
            demucs_file!("d12395a8-e57c48e6.th", "e57c48e6"),
            demucs_file!("92cfc3b6-ef3bcb9c.th", "ef3bcb9c"),
            demucs_file!("04573f0d-f3cf25b2.th", "f3cf25b2"),
        ],
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
        if spec.builtin {
            return Ok(LocatedModel {
                spec,
                files: Vec::new(),
            });
        }
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
    if spec.builtin {
        // Other weights for the built-in model's runner: an exported directory (handled above)
        // or a DeepFilterNet3-style tarball.
        if spec.kind == ModelKind::DeepFilterNet3 && path.is_file() {
            return Ok(LocatedModel {
                spec,
                files: vec![path.to_path_buf()],
            });
        }
        return Err(ModelError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "{} is built into nomusic and needs no --model-path; to run other weights with \
                 its runner give a directory holding enc.onnx, erb_dec.onnx, df_dec.onnx and \
                 config.ini, or a DeepFilterNet3-style .tar.gz",
                spec.name
            ),
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
                    .map(|f| accepted_names(spec, f).join(" or "))
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

/// Builds a ready-to-run streaming model from located files; offline models (HTDemucs) are
/// refused with [`ModelError::Offline`] (see [`crate::demucs`] for those).
pub fn build(located: &LocatedModel) -> Result<Box<dyn Separator>, ModelError> {
    let f = &located.files;
    Ok(match located.spec.kind {
        ModelKind::HtDemucs { .. } => {
            return Err(ModelError::Offline {
                name: located.spec.name.to_string(),
            })
        }
        ModelKind::DeepFilterNet3 if f.is_empty() => Box::new(DeepFilterNet3::builtin()?),
        ModelKind::DeepFilterNet3 if f[0].is_dir() => Box::new(DeepFilterNet3::from_dir(&f[0])?),
        ModelKind::DeepFilterNet3 => Box::new(DeepFilterNet3::from_tarball(&f[0])?),
        ModelKind::Dtln => Box::new(Dtln::from_files(&f[0], &f[1])?),
        ModelKind::Gtcrn => Box::new(Gtcrn::from_file(&f[0])?),
    })
}

fn locate_in(spec: &'static ModelSpec, dir: &Path) -> Option<LocatedModel> {
    let files = spec
        .files
        .iter()
        .map(|f| {
            accepted_names(spec, f)
                .into_iter()
                .map(|n| dir.join(n))
                .find(|p| p.is_file())
        })
        .collect::<Option<Vec<PathBuf>>>()?;
    Some(LocatedModel { spec, files })
}

/// The names a file of `spec` may have on disk: its upstream name, and for HTDemucs also a
/// safetensors conversion named after the model's signature (`955717e8.safetensors` for
/// `955717e8-8726e21a.th`: the checksum part of the name describes the `.th` bytes only).
pub fn accepted_names(spec: &ModelSpec, file: &ModelFile) -> Vec<String> {
    let mut names = vec![file.name.to_string()];
    if let ModelKind::HtDemucs { .. } = spec.kind {
        let sig = file.name.split(['-', '.']).next().unwrap_or(file.name);
        names.push(format!("{sig}.safetensors"));
    }
    names
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
    fn the_default_model_is_built_in_and_needs_no_files() {
        let spec = find(DEFAULT_MODEL).unwrap();
        assert!(spec.builtin && spec.files.is_empty());
        assert!(all().iter().filter(|m| m.builtin).count() == 1);
        // Found with no search directory at all, and built from the compiled-in bytes.
        let dirs = ModelDirs {
            search: Vec::new(),
            cache: PathBuf::from("/nonexistent/nomusic-cache"),
        };
        let located = dirs.locate(spec).unwrap();
        assert!(located.files.is_empty());
        let model = build(&located).unwrap();
        assert_eq!(model.sample_rate_hz(), spec.sample_rate_hz);
        let latency_ms = model.latency_frames() as f32 * 1000.0 / spec.sample_rate_hz as f32;
        assert_eq!(Some(latency_ms), spec.latency_ms);
        let (bytes, exact) = spec.size_bytes();
        assert!(exact && bytes > 1_000_000, "{bytes}");
    }

    #[test]
    fn the_built_in_model_takes_other_weights_only_in_its_runners_format() {
        let spec = find("nomusic").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = locate_at(spec, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("built into nomusic") && err.contains("enc.onnx"),
            "{err}"
        );
        for (name, bytes) in crate::builtin::NOMUSIC_FILES {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let located = locate_at(spec, dir.path()).unwrap();
        assert_eq!(located.files, vec![dir.path().to_path_buf()]);
        assert!(build(&located).is_ok());
    }

    #[test]
    fn every_file_has_a_checksum_and_url() {
        for m in all() {
            for f in m.files {
                match f.checksum {
                    Checksum::Sha256(h) => assert_eq!(h.len(), 64, "{}", f.name),
                    // demucs: `<signature>-<sha256 prefix>.th`.
                    Checksum::Sha256Prefix(p) => {
                        assert_eq!(p.len(), 8, "{}", f.name);
                        assert!(f.name.ends_with(&format!("-{p}.th")), "{}", f.name);
                    }
                }
                assert!(f.url.starts_with("https://"), "{}", f.url);
                assert!(f.url.ends_with(f.name), "{}", f.url);
            }
        }
    }

    #[test]
    fn htdemucs_is_offline_and_refused_as_a_streaming_model() {
        let spec = find("htdemucs").unwrap();
        assert!(spec.kind.is_offline());
        assert_eq!(spec.latency_ms, None);
        let located = LocatedModel {
            spec,
            files: vec![PathBuf::from("955717e8-8726e21a.th")],
        };
        let msg = build(&located).err().unwrap().to_string();
        assert!(msg.contains("offline") && msg.contains("nomusic"), "{msg}");
        let ft = find("htdemucs_ft").unwrap();
        assert_eq!(ft.files.len(), 4);
        assert!(ft.files[3].name.starts_with("04573f0d"));
    }

    #[test]
    fn htdemucs_loads_from_the_model_dir_layout_or_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let spec = find("htdemucs").unwrap();
        let sub = dir.path().join("htdemucs");
        std::fs::create_dir_all(&sub).unwrap();
        let dirs = ModelDirs {
            search: vec![dir.path().to_path_buf()],
            cache: PathBuf::from("/nonexistent/cache"),
        };
        assert!(dirs.locate(spec).is_err());
        std::fs::write(sub.join("955717e8.safetensors"), b"x").unwrap();
        assert_eq!(
            dirs.locate(spec).unwrap().files,
            [sub.join("955717e8.safetensors")]
        );
        std::fs::write(sub.join("955717e8-8726e21a.th"), b"x").unwrap();
        assert_eq!(
            dirs.locate(spec).unwrap().files,
            [sub.join("955717e8-8726e21a.th")]
        );
        assert_eq!(
            locate_at(spec, dir.path()).unwrap().files,
            [sub.join("955717e8-8726e21a.th")]
        );
        let one = locate_at(spec, &sub.join("955717e8.safetensors")).unwrap();
        assert_eq!(one.files, [sub.join("955717e8.safetensors")]);
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
        // The demucs checkpoints are too big for shared/models.
        for m in all().iter().filter(|m| !m.kind.is_offline()) {
            let found = dirs.locate(m).unwrap();
            assert_eq!(found.files.len(), m.files.len());
            for (path, f) in found.files.iter().zip(m.files) {
                assert_eq!(
                    FileSize::Exact(std::fs::metadata(path).unwrap().len()),
                    f.size,
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
