//! Loading weights: safetensors files (with the model configuration as JSON in the `config`
//! metadata entry) and the demucs release `.th` files, which are `torch.save` zip archives of
//! a pickled dict `{"klass", "args", "kwargs", "state", ...}` (demucs/states.py), usually with
//! a half-precision state.
//!
//! Every failure names what is wrong: a truncated file, a content that does not match the
//! signature in the file name, a missing weight, a wrong shape.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::HtDemucsConfig;
use crate::{Error, HtDemucs, Result};

/// A checkpoint read into memory: the configuration and the PyTorch `state_dict`.
pub struct Checkpoint {
    pub path: PathBuf,
    pub config: HtDemucsConfig,
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Reads a `.th` (zip) or safetensors checkpoint, recognised by content.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        check_signature(&path, &bytes)?;
        if bytes.starts_with(b"PK\x03\x04") {
            read_th(path, &bytes)
        } else if bytes.len() >= 8 {
            read_safetensors(path, &bytes, None)
        } else {
            Err(Error::Truncated {
                path,
                detail: format!("{} bytes", bytes.len()),
            })
        }
    }

    /// Reads a safetensors file whose config is given by the caller (files without a
    /// `config` metadata entry, e.g. conversions made by other tools).
    pub fn read_safetensors_with(path: impl AsRef<Path>, config: HtDemucsConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        read_safetensors(path, &bytes, Some(config))
    }

    /// Builds the network; fails with the list of weights the checkpoint misses.
    pub fn into_model(self, device: &Device) -> Result<HtDemucs> {
        let problems = Arc::new(Mutex::new(Problems::default()));
        let backend = Recorder {
            tensors: self.tensors,
            problems: problems.clone(),
        };
        let backend: Box<dyn SimpleBackend> = Box::new(backend);
        let vb = VarBuilder::from_backend(backend, DType::F32, device.clone());
        let model = HtDemucs::load(vb, &self.config);
        let mut problems = problems.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, expected, found)) = problems.shape.take() {
            return Err(Error::Shape {
                path: self.path,
                key,
                expected,
                found,
            });
        }
        if !problems.missing.is_empty() {
            return Err(Error::MissingKeys {
                path: self.path,
                missing: std::mem::take(&mut problems.missing),
            });
        }
        model
    }
}

#[derive(Default)]
struct Problems {
    missing: Vec<String>,
    shape: Option<(String, Vec<usize>, Vec<usize>)>,
}

/// A VarBuilder backend that, instead of stopping at the first missing weight, records every
/// missing or misshapen one (returning zeros) so that the error can list them all.
struct Recorder {
    tensors: HashMap<String, Tensor>,
    problems: Arc<Mutex<Problems>>,
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        match self.tensors.get(name) {
            Some(t) if t.shape() == &s => t.to_dtype(dtype)?.to_device(dev),
            Some(t) => {
                p.shape
                    .get_or_insert((name.to_string(), s.dims().to_vec(), t.dims().to_vec()));
                Tensor::zeros(s, dtype, dev)
            }
            None => {
                p.missing.push(name.to_string());
                Tensor::zeros(s, dtype, dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.tensors.get(name) {
            Some(t) => t.to_dtype(dtype)?.to_device(dev),
            None => candle_core::bail!("cannot find tensor {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

/// demucs names release files `<xp signature>-<first 8 hex digits of sha256>.th`
/// (`save_with_checksum`); when the name has that form the content must match.
fn check_signature(path: &Path, bytes: &[u8]) -> Result<()> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let Some((_, sig)) = stem.rsplit_once('-') else {
        return Ok(());
    };
    if sig.len() != 8 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let digest = Sha256::digest(bytes);
    let actual: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    if actual != sig.to_ascii_lowercase() {
        return Err(Error::Signature {
            path: path.to_path_buf(),
            expected: sig.to_string(),
            actual,
        });
    }
    Ok(())
}

fn read_safetensors(
    path: PathBuf,
    bytes: &[u8],
    config: Option<HtDemucsConfig>,
) -> Result<Checkpoint> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    if header_len
        .checked_add(8)
        .is_none_or(|end| end > bytes.len())
    {
        return Err(Error::Truncated {
            path,
            detail: format!(
                "safetensors header of {header_len} bytes, file of {}",
                bytes.len()
            ),
        });
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| match e {
        safetensors::SafeTensorError::MetadataIncompleteBuffer => Error::Truncated {
            path: path.clone(),
            detail: "tensor data ends early".into(),
        },
        e => Error::Format {
            path: path.clone(),
            reason: format!("not a safetensors file: {e}"),
        },
    })?;
    let data_len = meta
        .tensors()
        .values()
        .map(|t| t.data_offsets.1)
        .max()
        .unwrap_or(0);
    if 8 + header_len + data_len > bytes.len() {
        return Err(Error::Truncated {
            path,
            detail: format!(
                "{} bytes of tensor data, {} present",
                data_len,
                bytes.len() - 8 - header_len
            ),
        });
    }
    let config = match config {
        Some(c) => c,
        None => {
            let json = meta
                .metadata()
                .as_ref()
                .and_then(|m| m.get("config"))
                .ok_or_else(|| Error::Format {
                    path: path.clone(),
                    reason: "no \"config\" metadata entry: pass the configuration explicitly"
                        .into(),
                })?;
            HtDemucsConfig::from_json(json)?
        }
    };
    let tensors =
        candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| Error::Format {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    Ok(Checkpoint {
        path,
        config,
        tensors,
    })
}

fn truncated(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Truncated {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

fn read_th(path: PathBuf, bytes: &[u8]) -> Result<Checkpoint> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| truncated(&path, e))?;
    let pkl_name = zip
        .file_names()
        .filter_map(|n| n.ok())
        .find(|n| n.ends_with("data.pkl"))
        .map(|n| n.into_owned())
        .ok_or_else(|| Error::Format {
            path: path.clone(),
            reason: "zip archive without data.pkl".into(),
        })?;
    let dir = pkl_name.trim_end_matches(".pkl").to_string();
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)
        .and_then(|mut f| f.read_to_end(&mut pkl).map_err(Into::into))
        .map_err(|e| truncated(&path, e))?;
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut Cursor::new(&pkl))
        .map_err(|e| Error::Format {
            path: path.clone(),
            reason: format!("unreadable pickle: {e}"),
        })?;
    let top = stack.finalize().map_err(|e| Error::Format {
        path: path.clone(),
        reason: format!("unreadable pickle: {e}"),
    })?;
    let format = |reason: String| Error::Format {
        path: path.clone(),
        reason,
    };
    let Object::Dict(entries) = top else {
        return Err(format(
            "the pickle is not a dict (expected demucs' klass/args/kwargs/state package)".into(),
        ));
    };
    let mut fields: HashMap<String, Object> = HashMap::new();
    for (k, v) in entries {
        if let Object::Unicode(k) = k {
            fields.insert(k, v);
        }
    }
    if let Some(Object::Class {
        module_name,
        class_name,
    }) = fields.get("klass")
    {
        if class_name != "HTDemucs" {
            return Err(format(format!(
                "model class {module_name}.{class_name}, not HTDemucs"
            )));
        }
    }
    let mut kwargs = match fields.remove("kwargs") {
        Some(obj) => to_json(obj).map_err(|e| format(format!("kwargs: {e}")))?,
        None => return Err(format("no \"kwargs\" entry".into())),
    };
    if let (Some(Object::List(args) | Object::Tuple(args)), Value::Object(map)) =
        (fields.remove("args"), &mut kwargs)
    {
        // HTDemucs(sources, ...) may receive the sources positionally.
        if let Some(first) = args.into_iter().next() {
            map.insert(
                "sources".into(),
                to_json(first).map_err(|e| format(format!("args: {e}")))?,
            );
        }
    }
    let config: HtDemucsConfig = serde_json::from_value(kwargs)
        .map_err(|e| format(format!("kwargs do not describe HTDemucs: {e}")))?;
    config.validate()?;
    let Some(Object::Dict(state)) = fields.remove("state") else {
        return Err(format("no \"state\" dict".into()));
    };
    let mut tensors = HashMap::new();
    for (name, value) in state {
        if name == Object::Unicode("__quantized".into()) {
            return Err(format(
                "quantized (diffq) checkpoints are not supported".into(),
            ));
        }
        let info = value
            .into_tensor_info(name, Path::new(&dir))
            .map_err(|e| format(format!("state entry: {e}")))?;
        let Some(info) = info else { continue };
        let tensor = read_storage(&mut zip, &info).map_err(|e| match e {
            StorageError::Truncated(detail) => Error::Truncated {
                path: path.clone(),
                detail,
            },
            StorageError::Other(reason) => format(format!("{}: {reason}", info.name)),
        })?;
        tensors.insert(info.name.clone(), tensor);
    }
    Ok(Checkpoint {
        path,
        config,
        tensors,
    })
}

enum StorageError {
    Truncated(String),
    Other(String),
}

fn read_storage(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    info: &candle_core::pickle::TensorInfo,
) -> Result<Tensor, StorageError> {
    let mut file = zip.by_name(&info.path).map_err(|e| {
        StorageError::Truncated(format!("storage {} of {}: {e}", info.path, info.name))
    })?;
    let mut data = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut data).map_err(|e| {
        StorageError::Truncated(format!("storage {} of {}: {e}", info.path, info.name))
    })?;
    let elem = info.dtype.size_in_bytes();
    if data.len() < info.storage_size * elem {
        return Err(StorageError::Truncated(format!(
            "storage of {} has {} bytes, expected {}",
            info.name,
            data.len(),
            info.storage_size * elem
        )));
    }
    let layout = &info.layout;
    let dims = layout.shape().dims().to_vec();
    let storage = Tensor::from_raw_buffer(
        &data[..info.storage_size * elem],
        info.dtype,
        &[info.storage_size],
        &Device::Cpu,
    )
    .map_err(|e| StorageError::Other(e.to_string()))?;
    // A strided view into the storage, as torch's `_rebuild_tensor_v2` makes it.
    let n: usize = dims.iter().product();
    let strides = layout.stride();
    let start = layout.start_offset();
    let contiguous = layout.is_contiguous();
    let t = if contiguous {
        storage
            .narrow(0, start, n)
            .and_then(|t| t.reshape(dims.as_slice()))
    } else {
        let idx: Vec<u32> = (0..n)
            .map(|mut i| {
                let mut off = start;
                for (d, s) in dims.iter().zip(strides).rev() {
                    off += (i % d) * s;
                    i /= d;
                }
                off as u32
            })
            .collect();
        Tensor::new(idx, &Device::Cpu)
            .and_then(|idx| storage.index_select(&idx, 0))
            .and_then(|t| t.reshape(dims.as_slice()))
    };
    t.map_err(|e| StorageError::Other(e.to_string()))
}

/// The plain-data part of a pickle as JSON; `fractions.Fraction` becomes `"num/den"`.
fn to_json(obj: Object) -> std::result::Result<Value, String> {
    Ok(match obj {
        Object::Int(i) => Value::from(i),
        Object::Long(i) => Value::from(i),
        Object::Float(f) => Value::from(f),
        Object::Unicode(s) => Value::from(s),
        Object::Bool(b) => Value::from(b),
        Object::None => Value::Null,
        Object::List(v) | Object::Tuple(v) => {
            Value::Array(v.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Object::Dict(kv) => {
            let mut map = serde_json::Map::new();
            for (k, v) in kv {
                let Object::Unicode(k) = k else {
                    return Err(format!("non-string key {k:?}"));
                };
                map.insert(k, to_json(v)?);
            }
            Value::Object(map)
        }
        Object::Reduce { callable, args } => match (*callable, *args) {
            // Fraction.__reduce__ gives (Fraction, (num, den)) or, before Python 3.12,
            // (Fraction, ("num/den",)).
            (
                Object::Class {
                    module_name,
                    class_name,
                },
                Object::Tuple(a),
            ) if module_name == "fractions" && class_name == "Fraction" => {
                let int = |o: &Object| match o {
                    Object::Int(i) => Some(i64::from(*i)),
                    Object::Long(i) => Some(*i),
                    _ => None,
                };
                match a.as_slice() {
                    [Object::Unicode(s)] => Value::from(s.clone()),
                    [n, d] if int(n).is_some() && int(d).is_some() => {
                        Value::from(format!("{}/{}", int(n).unwrap_or(0), int(d).unwrap_or(1)))
                    }
                    other => return Err(format!("Fraction of {other:?}")),
                }
            }
            (c, _) => return Err(format!("unsupported object {c:?}")),
        },
        other => return Err(format!("unsupported object {other:?}")),
    })
}
