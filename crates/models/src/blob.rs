//! Weight blobs: float32 tensors plus string metadata, stored as safetensors
//! (see `weights/README.md` for the layout and the `prior.*` metadata keys).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, View};
use safetensors::SafeTensors;

use crate::arch::Arch;
use crate::error::WeightError;
use crate::hparams::Hparams;

/// Metadata keys written by the importer.
pub mod keys {
    /// Blob format version ([`FORMAT_VERSION`](super::FORMAT_VERSION)).
    pub const FORMAT: &str = "prior.format";
    /// Architecture name ([`Arch`](crate::arch::Arch)).
    pub const ARCH: &str = "prior.arch";
    /// Free-form provenance of the variant (`universal`, `bias_free`, ...).
    pub const VARIANT: &str = "prior.variant";
    /// Hyper-parameters, a JSON object ([`Hparams`](crate::hparams::Hparams)).
    pub const HPARAMS: &str = "prior.hparams";
    /// Training noise range on the 0–255 scale (e.g. `0-100`), when known.
    pub const NOISE_RANGE: &str = "prior.noise_range";
    /// File name of the source checkpoint.
    pub const SOURCE: &str = "prior.source";
    /// SHA-256 of the source checkpoint, hex.
    pub const SOURCE_SHA256: &str = "prior.source_sha256";
    /// JSON of the checkpoint's `args` namespace, when it has one.
    pub const ARGS: &str = "prior.args";
}

/// Value of `prior.format` written by this version.
pub const FORMAT_VERSION: &str = "1";

/// A dense, contiguous, row-major float32 tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorF32 {
    /// Size of each dimension, outermost first.
    pub shape: Vec<usize>,
    /// The values, row-major (`shape.iter().product()` of them).
    pub data: Vec<f32>,
}

impl TensorF32 {
    /// Panics if `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "TensorF32::new: shape {shape:?} does not match {} values",
            data.len()
        );
        TensorF32 { shape, data }
    }

    /// A tensor of `shape` filled with zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        TensorF32 {
            shape,
            data: vec![0.0; n],
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Row-major element access; `None` when the index is out of range or of
    /// the wrong rank.
    pub fn get(&self, index: &[usize]) -> Option<f32> {
        if index.len() != self.shape.len() {
            return None;
        }
        let mut flat = 0usize;
        for (&i, &n) in index.iter().zip(&self.shape) {
            if i >= n {
                return None;
            }
            flat = flat * n + i;
        }
        self.data.get(flat).copied()
    }

    fn le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() * 4);
        for v in &self.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// A tensor ready for `safetensors::serialize` (data already little-endian).
struct LeTensor<'a> {
    shape: &'a [usize],
    bytes: Vec<u8>,
}

impl View for LeTensor<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The weights of one model: named float32 tensors and `prior.*` metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightBlob {
    /// Tensors by name: the checkpoint's state_dict keys, less a leading
    /// `module.`.
    pub tensors: BTreeMap<String, TensorF32>,
    /// Metadata (`prior.*` keys, see [`keys`]).
    pub meta: BTreeMap<String, String>,
    /// Where the blob came from (a file path, or `<memory>`); used in error
    /// messages only, never written.
    pub origin: PathBuf,
}

impl WeightBlob {
    /// An empty blob with `prior.format`, `prior.arch`, `prior.variant` and
    /// `prior.hparams` set (for weights built in code, e.g. random weights);
    /// the architecture is that of `hparams`.
    pub fn new(variant: &str, hparams: &Hparams) -> Self {
        let mut meta = BTreeMap::new();
        meta.insert(keys::FORMAT.to_string(), FORMAT_VERSION.to_string());
        meta.insert(keys::ARCH.to_string(), hparams.arch().to_string());
        meta.insert(keys::VARIANT.to_string(), variant.to_string());
        meta.insert(keys::HPARAMS.to_string(), hparams.to_string());
        WeightBlob {
            tensors: BTreeMap::new(),
            meta,
            origin: PathBuf::from("<memory>"),
        }
    }

    /// Loads a weight blob. `.safetensors` files are read as they are;
    /// PyTorch checkpoints (zip or legacy `torch.save`, whatever the
    /// extension: `.pt`, `.pth`, `.tar`, ...) are imported in memory.
    pub fn load(path: impl AsRef<Path>) -> Result<WeightBlob, WeightError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        use crate::format::Format;
        match crate::format::sniff(&bytes) {
            Format::Zip | Format::TorchLegacy => Ok(crate::import::import_bytes(&bytes, path)?),
            Format::Safetensors { .. } => Self::from_bytes_at(&bytes, path),
            other => Err(WeightError::Import(
                crate::error::ImportError::UnknownFormat {
                    path: path.to_path_buf(),
                    reason: other.describe(&bytes),
                },
            )),
        }
    }

    /// Parses a safetensors weight blob held in memory. A blob without
    /// `prior.arch` gets its architecture detected from its keys and shapes
    /// when they are recognised (see [`crate::import::annotate`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<WeightBlob, WeightError> {
        Self::from_bytes_at(bytes, Path::new("<memory>"))
    }

    /// Like [`WeightBlob::from_bytes`], naming `origin` in errors.
    pub fn from_bytes_at(bytes: &[u8], origin: &Path) -> Result<WeightBlob, WeightError> {
        let bad = |reason: String| WeightError::Safetensors {
            path: origin.to_path_buf(),
            reason,
        };
        // The declared header length against the file, before the crate
        // parses anything (its own error for this is a bare "header too large").
        let Some(len) = bytes.get(..8) else {
            return Err(bad(format!(
                "the file is {} bytes long, shorter than the 8-byte header length",
                bytes.len()
            )));
        };
        let n = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
        if n > (bytes.len() - 8) as u64 {
            return Err(bad(format!(
                "the header claims {n} bytes but the file holds {} after the 8-byte length (truncated, or not a safetensors file)",
                bytes.len() - 8
            )));
        }
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let meta: BTreeMap<String, String> = metadata
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let mut tensors = BTreeMap::new();
        for (name, view) in st.iter() {
            if view.dtype() != Dtype::F32 {
                return Err(WeightError::DType {
                    path: origin.to_path_buf(),
                    name: name.to_string(),
                    dtype: format!("{:?}", view.dtype()),
                });
            }
            let data: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.insert(
                name.to_string(),
                TensorF32 {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        let mut blob = WeightBlob {
            tensors,
            meta,
            origin: origin.to_path_buf(),
        };
        if !blob.meta.contains_key(keys::ARCH) {
            // A blob from another tool: name its architecture if the keys
            // are recognised; otherwise `arch()` reports the missing key.
            let _ = crate::import::annotate(&mut blob);
        }
        Ok(blob)
    }

    /// Serialises the blob as safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WeightError> {
        for (name, t) in &self.tensors {
            if t.shape.iter().product::<usize>() != t.data.len() {
                return Err(WeightError::Shape {
                    path: self.origin.clone(),
                    name: name.clone(),
                    reason: format!(
                        "shape {:?} needs {} values but the tensor holds {}",
                        t.shape,
                        t.shape.iter().product::<usize>(),
                        t.data.len()
                    ),
                });
            }
        }
        let views: Vec<(&str, LeTensor<'_>)> = self
            .tensors
            .iter()
            .map(|(name, t)| {
                (
                    name.as_str(),
                    LeTensor {
                        shape: &t.shape,
                        bytes: t.le_bytes(),
                    },
                )
            })
            .collect();
        let meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        safetensors::serialize(views, Some(meta)).map_err(|e| WeightError::Safetensors {
            path: self.origin.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes the blob to `path` atomically: a temporary file in the same
    /// directory, synced, then renamed over `path`. Creates the directory.
    pub fn save_atomic(&self, path: impl AsRef<Path>) -> Result<(), WeightError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        write_atomic(path, &bytes).map_err(|source| WeightError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.meta.get(key).map(String::as_str)
    }

    /// A metadata value that must be present.
    pub fn require_meta(&self, key: &str) -> Result<&str, WeightError> {
        self.meta(key).ok_or_else(|| WeightError::MissingMeta {
            path: self.origin.clone(),
            key: key.to_string(),
        })
    }

    /// `prior.arch`; an unknown name is an error naming the file.
    pub fn arch(&self) -> Result<Arch, WeightError> {
        let name = self.require_meta(keys::ARCH)?;
        name.parse()
            .map_err(|e: crate::arch::UnknownArch| WeightError::BadMeta {
                path: self.origin.clone(),
                key: keys::ARCH.to_string(),
                reason: e.to_string(),
            })
    }

    /// `prior.variant` (free-form provenance), if present.
    pub fn variant(&self) -> Option<&str> {
        self.meta(keys::VARIANT)
    }

    /// `prior.hparams`, parsed as the hyper-parameters of [`Self::arch`]: a
    /// missing or unknown key is an error naming the file and the key.
    pub fn hparams(&self) -> Result<Hparams, WeightError> {
        let arch = self.arch()?;
        let s = self.require_meta(keys::HPARAMS)?;
        let bad = |reason: String| WeightError::BadMeta {
            path: self.origin.clone(),
            key: keys::HPARAMS.to_string(),
            reason,
        };
        let v: serde_json::Value =
            serde_json::from_str(s).map_err(|e| bad(format!("not JSON: {e}")))?;
        Hparams::from_json(arch, v).map_err(|e| bad(format!("{arch} hyper-parameters: {e}")))
    }

    /// `prior.args` (the checkpoint's argparse namespace), parsed, if present.
    pub fn args(&self) -> Result<Option<serde_json::Value>, WeightError> {
        match self.meta(keys::ARGS) {
            None => Ok(None),
            Some(s) => serde_json::from_str(s)
                .map(Some)
                .map_err(|e| WeightError::BadMeta {
                    path: self.origin.clone(),
                    key: keys::ARGS.to_string(),
                    reason: format!("not JSON: {e}"),
                }),
        }
    }

    /// `prior.noise_range` as `(low, high)` on the 0–255 scale, if present.
    pub fn noise_range(&self) -> Result<Option<(f32, f32)>, WeightError> {
        let Some(s) = self.meta(keys::NOISE_RANGE) else {
            return Ok(None);
        };
        let bad = || WeightError::BadMeta {
            path: self.origin.clone(),
            key: keys::NOISE_RANGE.to_string(),
            reason: format!("expected LOW-HIGH, got {s:?}"),
        };
        let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
        let lo: f32 = lo.trim().parse().map_err(|_| bad())?;
        let hi: f32 = hi.trim().parse().map_err(|_| bad())?;
        Ok(Some((lo, hi)))
    }

    /// The tensor called `name`; the error names the key and the file.
    pub fn tensor(&self, name: &str) -> Result<&TensorF32, WeightError> {
        self.tensors
            .get(name)
            .ok_or_else(|| WeightError::MissingTensor {
                path: self.origin.clone(),
                name: name.to_string(),
                count: self.tensors.len(),
            })
    }

    /// The tensor called `name`, which must have shape `shape`.
    pub fn tensor_shaped(&self, name: &str, shape: &[usize]) -> Result<&TensorF32, WeightError> {
        let t = self.tensor(name)?;
        if t.shape != shape {
            return Err(WeightError::Shape {
                path: self.origin.clone(),
                name: name.to_string(),
                reason: format!("expected shape {shape:?}, found {:?}", t.shape),
            });
        }
        Ok(t)
    }

    /// Whether a tensor called `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Total number of parameters (elements over all tensors).
    pub fn param_count(&self) -> usize {
        self.tensors.values().map(TensorF32::numel).sum()
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so that readers never see a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "output path has no file name",
            )
        })?
        .to_string_lossy()
        .into_owned();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{nanos}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
