//! Importing the authors' PyTorch checkpoints without Python.
//!
//! [`import_checkpoint`] reads a zip or legacy `torch.save` file, interprets
//! its pickle as data ([`pickle`]), finds the state_dict (plain, `state_dict`
//! of a training dict, or the one-element `model` list of the legacy training
//! dicts), materialises its float32 tensors (honouring storage offsets and
//! strides), strips a leading `module.`, drops non-float entries
//! (`num_batches_tracked`), identifies the architecture ([`detect`]) and
//! returns a [`WeightBlob`] with the `prior.*` metadata of `weights/README.md`.

pub mod detect;
pub mod legacy;
pub mod pickle;
pub mod torch_zip;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::blob::{keys, TensorF32, WeightBlob, FORMAT_VERSION};
use crate::error::ImportError;
use pickle::{Dict, Global, TensorRef, Value};

pub use detect::Detected;

/// The container format of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// Zip `torch.save`; `prefix` is the folder holding `data.pkl` (e.g. `archive/`).
    Zip {
        /// The folder of `data.pkl`, with its trailing `/`.
        prefix: String,
    },
    /// Legacy (pre-zip) `torch.save` stream.
    Legacy,
}

/// A checkpoint's state_dict and arguments, before architecture detection.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The container it was read from.
    pub format: CheckpointFormat,
    /// Float32 tensors, names stripped of a leading `module.`.
    pub tensors: BTreeMap<String, TensorF32>,
    /// Names in the state_dict's own order.
    pub order: Vec<String>,
    /// Non-float state_dict entries that were dropped (e.g. `num_batches_tracked`).
    pub dropped: Vec<String>,
    /// The checkpoint's `args` namespace as JSON, when it has one.
    pub args: Option<serde_json::Value>,
}

/// Whether `bytes` look like a PyTorch checkpoint (zip or legacy), as
/// opposed to a safetensors blob.
pub fn looks_like_torch_checkpoint(bytes: &[u8]) -> bool {
    matches!(
        crate::format::sniff(bytes),
        crate::format::Format::Zip | crate::format::Format::TorchLegacy
    )
}

/// Imports a checkpoint file into a weight blob (see the module docs).
pub fn import_checkpoint(path: &Path) -> Result<WeightBlob, ImportError> {
    let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    import_bytes(&bytes, path)
}

/// Imports a checkpoint held in memory; `path` is used for the `prior.source`
/// name, the noise range found in a file name like `0-100.pt`, and errors.
pub fn import_bytes(bytes: &[u8], path: &Path) -> Result<WeightBlob, ImportError> {
    let ckpt = read_checkpoint(bytes, path)?;
    let shapes: BTreeMap<String, Vec<usize>> = ckpt
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let det = detect::detect(&shapes, ckpt.args.as_ref()).map_err(|reason| {
        ImportError::UnknownArchitecture {
            path: path.to_path_buf(),
            reason,
        }
    })?;

    let mut meta = BTreeMap::new();
    meta.insert(keys::FORMAT.to_string(), FORMAT_VERSION.to_string());
    meta.insert(keys::ARCH.to_string(), det.arch().to_string());
    meta.insert(keys::VARIANT.to_string(), det.variant.clone());
    meta.insert(keys::HPARAMS.to_string(), det.hparams.to_string());
    if let Some(r) = detect::noise_range(ckpt.args.as_ref(), path) {
        meta.insert(keys::NOISE_RANGE.to_string(), r);
    }
    let source = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    meta.insert(keys::SOURCE.to_string(), source);
    meta.insert(keys::SOURCE_SHA256.to_string(), sha256_hex(bytes));
    if let Some(a) = &ckpt.args {
        meta.insert(keys::ARGS.to_string(), a.to_string());
    }
    Ok(WeightBlob {
        tensors: ckpt.tensors,
        meta,
        origin: path.to_path_buf(),
    })
}

/// Fills `prior.format`, `prior.arch`, `prior.variant` and `prior.hparams`
/// of a blob that lacks `prior.arch` (e.g. a safetensors file written by
/// another tool with the authors' key names), by detecting the architecture
/// from its tensors. Blobs that already name their architecture are left as
/// they are.
pub fn annotate(blob: &mut WeightBlob) -> Result<(), ImportError> {
    if blob.meta.contains_key(keys::ARCH) {
        return Ok(());
    }
    let shapes: BTreeMap<String, Vec<usize>> = blob
        .tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape.clone()))
        .collect();
    let args = blob.args().ok().flatten();
    let det = detect::detect(&shapes, args.as_ref()).map_err(|reason| {
        ImportError::UnknownArchitecture {
            path: blob.origin.clone(),
            reason,
        }
    })?;
    blob.meta
        .entry(keys::FORMAT.to_string())
        .or_insert_with(|| FORMAT_VERSION.to_string());
    blob.meta
        .insert(keys::ARCH.to_string(), det.arch().to_string());
    blob.meta.insert(keys::VARIANT.to_string(), det.variant);
    blob.meta
        .insert(keys::HPARAMS.to_string(), det.hparams.to_string());
    Ok(())
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

enum Container<'a> {
    Zip(torch_zip::ZipCheckpoint<'a>),
    Legacy(legacy::LegacyCheckpoint<'a>),
}

/// Reads a checkpoint's state_dict and args without detecting the architecture.
pub fn read_checkpoint(bytes: &[u8], path: &Path) -> Result<Checkpoint, ImportError> {
    let (mut container, root, format) = match crate::format::sniff(bytes) {
        crate::format::Format::Zip => {
            let z = torch_zip::ZipCheckpoint::open(bytes, path)?;
            let root = z.root.clone();
            let format = CheckpointFormat::Zip {
                prefix: z.prefix.clone(),
            };
            (Container::Zip(z), root, format)
        }
        crate::format::Format::TorchLegacy => {
            let l = legacy::LegacyCheckpoint::open(bytes, path)?;
            let root = l.root.clone();
            (Container::Legacy(l), root, CheckpointFormat::Legacy)
        }
        other => {
            return Err(ImportError::UnknownFormat {
                path: path.to_path_buf(),
                reason: other.describe(bytes),
            })
        }
    };

    let (sd, args) = locate_state_dict(&root).map_err(|reason| ImportError::NoStateDict {
        path: path.to_path_buf(),
        reason,
    })?;
    let entries: Vec<(String, Rc<TensorRef>)> = {
        let sd = sd.borrow();
        sd.entries
            .iter()
            .map(|(k, v)| match (k, v) {
                (Value::Str(k), Value::Tensor(t)) => Ok((k.to_string(), t.clone())),
                _ => unreachable!("checked by locate_state_dict"),
            })
            .collect::<Result<_, ImportError>>()?
    };

    let mut tensors = BTreeMap::new();
    let mut order = Vec::new();
    let mut dropped = Vec::new();
    for (key, t) in entries {
        let name = key.strip_prefix("module.").unwrap_or(&key).to_string();
        let dtype = t.storage.dtype;
        if !dtype.is_float() {
            dropped.push(name);
            continue;
        }
        let tensor_err = |reason: String| ImportError::Tensor {
            path: path.to_path_buf(),
            name: key.clone(),
            reason,
        };
        if dtype != pickle::DType::F32 {
            return Err(tensor_err(format!(
                "dtype {} is not supported; only float32 tensors can be imported",
                dtype.name()
            )));
        }
        let data = match &mut container {
            Container::Zip(z) => {
                let b = z.storage_bytes(&t.storage)?;
                t.materialize_f32(&b)
            }
            Container::Legacy(l) => {
                let b = l.storage_bytes(&t.storage)?;
                t.materialize_f32(b)
            }
        }
        .map_err(tensor_err)?;
        if tensors.contains_key(&name) {
            return Err(ImportError::Tensor {
                path: path.to_path_buf(),
                name: key.clone(),
                reason: format!(
                    "two state_dict entries are named {name} once `module.` is stripped"
                ),
            });
        }
        order.push(name.clone());
        tensors.insert(
            name,
            TensorF32 {
                shape: t.shape.clone(),
                data,
            },
        );
    }
    Ok(Checkpoint {
        format,
        tensors,
        order,
        dropped,
        args: args.map(|a| a.to_json()),
    })
}

/// Keys of training dicts that may hold the state_dict, in order of preference.
const STATE_DICT_KEYS: &[&str] = &["state_dict", "model_state_dict", "model", "net", "network"];

/// Finds the state_dict in the unpickled object and the `args` beside it.
fn locate_state_dict(root: &Value) -> Result<(Rc<RefCell<Dict>>, Option<Value>), String> {
    let Value::Dict(top) = root else {
        return Err(format!(
            "the checkpoint holds a {}, not a dict",
            root.type_name()
        ));
    };
    if is_state_dict(top)? {
        return Ok((top.clone(), None));
    }
    let t = top.borrow();
    let args = t
        .get_str("args")
        .cloned()
        .filter(|a| !matches!(a, Value::None));
    for key in STATE_DICT_KEYS {
        let Some(v) = t.get_str(key) else { continue };
        let candidate = match v {
            Value::Dict(d) => Some(d.clone()),
            // Legacy training dicts: `model` is a one-element list.
            Value::List(l) if l.borrow().len() == 1 => match &l.borrow()[0] {
                Value::Dict(d) => Some(d.clone()),
                _ => None,
            },
            _ => None,
        };
        if let Some(d) = candidate {
            if is_state_dict(&d)? {
                return Ok((d, args));
            }
        }
    }
    let keys: Vec<String> = t
        .entries
        .iter()
        .take(12)
        .map(|(k, _)| match k {
            Value::Str(s) => s.to_string(),
            other => other.type_name(),
        })
        .collect();
    Err(format!(
        "the checkpoint is a dict with keys [{}] but none of {} holds a dict of tensors",
        keys.join(", "),
        STATE_DICT_KEYS.join("/")
    ))
}

/// A state_dict: string keys, at least one tensor, and nothing but tensors.
/// A dict of tensors with any other value in it is an error (for instance an
/// opaque training-statistics object inside the state_dict).
fn is_state_dict(d: &Rc<RefCell<Dict>>) -> Result<bool, String> {
    let d = d.borrow();
    let tensors = d
        .entries
        .iter()
        .filter(|(_, v)| matches!(v, Value::Tensor(_)))
        .count();
    if tensors == 0 {
        return Ok(false);
    }
    for (k, v) in &d.entries {
        let Value::Str(name) = k else {
            return Err(format!("state_dict key {} is not a string", k.type_name()));
        };
        match v {
            Value::Tensor(_) => {}
            Value::Object(o) if matches!(o.borrow().class, Global::Opaque(_)) => {
                return Err(format!(
                    "state_dict entry {name} is an opaque {} object; such objects are only skipped outside the state_dict",
                    o.borrow().class.qualified_name()
                ))
            }
            other => {
                return Err(format!(
                    "state_dict entry {name} is a {}, not a tensor",
                    other.type_name()
                ))
            }
        }
    }
    Ok(true)
}

/// A readable, unique file stem for the blob of `checkpoint`: the path below
/// a `checkpoints/` folder joined with `-`, without the extension, e.g.
/// `bias_free_denoising-dncnn-bias_free-0-100` or
/// `universal_inverse_problem-BSD400_gray` (a generic `model` stem is
/// dropped). Outside a `checkpoints/` folder: the parent folder and the stem.
pub fn default_blob_name(checkpoint: &Path) -> String {
    let parts: Vec<String> = checkpoint
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let mut parts: Vec<String> = match parts.iter().rposition(|p| p == "checkpoints") {
        Some(i) if i + 1 < parts.len() => parts[i + 1..].to_vec(),
        _ => parts[parts.len().saturating_sub(2)..].to_vec(),
    };
    if let Some(last) = parts.last_mut() {
        for ext in [".pth.tar", ".pt", ".pth", ".tar", ".pkl", ".ckpt", ".bin"] {
            if let Some(s) = last.strip_suffix(ext) {
                *last = s.to_string();
                break;
            }
        }
    }
    if parts.len() > 1 && parts.last().map(String::as_str) == Some("model") {
        parts.pop();
    }
    let name = parts.join("-");
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "weights".into()
    } else {
        clean
    }
}
