//! The legacy (pre-zip) `torch.save` format: a sequence of pickles — the magic
//! number `0x1950a86a20f9469cfc6c`, the protocol version `1001`, a sys-info
//! dict, the main object (storages as persistent ids), the list of storage
//! keys — followed, for each key in that list's order, by a little-endian
//! `u64` element count and the raw little-endian data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::pickle::{self, DType, StorageRef, Value};
use crate::error::ImportError;

/// The magic number that starts every legacy `torch.save` file.
pub const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The only legacy protocol version PyTorch ever wrote.
pub const PROTOCOL_VERSION: i128 = 1001;

/// A legacy (pre-zip) `torch.save` stream: magic number, protocol and
/// system-info pickles, the object pickle, the storage keys, then the raw
/// storages.
pub struct LegacyCheckpoint<'a> {
    /// The unpickled object (a state_dict or a training dict holding one).
    pub root: Value,
    bytes: &'a [u8],
    /// key → (byte offset of the data, element count, dtype)
    storages: HashMap<String, (usize, usize, DType)>,
    path: PathBuf,
}

fn legacy_err(path: &Path, reason: impl Into<String>) -> ImportError {
    ImportError::Legacy {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether `bytes` starts like a legacy checkpoint (`PROTO 2`, `LONG1` of 10
/// bytes: the magic number).
pub fn has_magic(bytes: &[u8]) -> bool {
    bytes.len() >= 14
        && bytes[0] == 0x80
        && bytes[2] == 0x8a
        && bytes[3] == 10
        && bytes[4..14] == MAGIC.to_le_bytes()[..10]
}

impl<'a> LegacyCheckpoint<'a> {
    /// Parses the stream in `bytes` (`path` names it in errors): checks the
    /// magic number and protocol, unpickles the object and locates each
    /// storage of the key list that follows it, without copying any.
    pub fn open(bytes: &'a [u8], path: &Path) -> Result<Self, ImportError> {
        let magic = pickle::unpickle_in(bytes, 0, path, "the legacy stream's magic-number pickle")?;
        if magic.value.as_int() != Some(MAGIC) {
            return Err(ImportError::UnknownFormat {
                path: path.to_path_buf(),
                reason: "a pickle stream, but it does not start with the torch.save magic number"
                    .into(),
            });
        }
        let proto = pickle::unpickle_in(
            bytes,
            magic.end,
            path,
            "the legacy stream's protocol pickle",
        )?;
        if proto.value.as_int() != Some(PROTOCOL_VERSION) {
            return Err(legacy_err(
                path,
                format!(
                    "unsupported legacy protocol version {:?} (expected 1001)",
                    proto.value.to_json()
                ),
            ));
        }
        let sys = pickle::unpickle_in(
            bytes,
            proto.end,
            path,
            "the legacy stream's sys-info pickle",
        )?;
        if let Value::Dict(d) = &sys.value {
            if let Some(Value::Bool(false)) = d.borrow().get_str("little_endian") {
                return Err(legacy_err(
                    path,
                    "saved on a big-endian machine; only little-endian checkpoints are supported",
                ));
            }
        } else {
            return Err(legacy_err(
                path,
                format!(
                    "sys-info record is a {}, expected a dict",
                    sys.value.type_name()
                ),
            ));
        }
        let main = pickle::unpickle_in(bytes, sys.end, path, "the legacy stream's main pickle")?;
        let keys = pickle::unpickle_in(
            bytes,
            main.end,
            path,
            "the legacy stream's storage-key pickle",
        )?;
        let key_list: Vec<String> = match &keys.value {
            Value::List(l) => l
                .borrow()
                .iter()
                .map(|k| match k {
                    Value::Str(s) => Ok(s.to_string()),
                    Value::Int(i) => Ok(i.to_string()),
                    other => Err(legacy_err(
                        path,
                        format!("storage key list holds a {}", other.type_name()),
                    )),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(legacy_err(
                    path,
                    format!(
                        "storage key list is a {}, expected a list",
                        other.type_name()
                    ),
                ))
            }
        };

        // What the main pickle says about each root storage.
        let mut described: HashMap<String, (DType, usize)> = HashMap::new();
        for s in &main.storages {
            match described.get(&s.key) {
                Some(&(d, n)) if d != s.dtype || n != s.numel => {
                    return Err(ImportError::Storage {
                        path: path.to_path_buf(),
                        key: s.key.clone(),
                        reason: format!(
                            "described twice, as {} x {} and as {} x {}",
                            n,
                            d.name(),
                            s.numel,
                            s.dtype.name()
                        ),
                    })
                }
                _ => {
                    described.insert(s.key.clone(), (s.dtype, s.numel));
                }
            }
        }

        let mut storages = HashMap::new();
        let mut pos = keys.end;
        for key in &key_list {
            let &(dtype, numel) = described.get(key).ok_or_else(|| ImportError::Storage {
                path: path.to_path_buf(),
                key: key.clone(),
                reason: "listed in the storage key list but never referenced by the pickle (element size unknown)".into(),
            })?;
            let Some(count) = bytes
                .get(pos..pos.saturating_add(8))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
            else {
                return Err(legacy_err(
                    path,
                    format!(
                        "file ends at byte {} inside the header of storage {key} (truncated file?)",
                        bytes.len()
                    ),
                ));
            };
            if count != numel as u64 {
                return Err(ImportError::Storage {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    reason: format!(
                        "wrong size: the file holds {count} elements but the pickle describes {numel} x {}",
                        dtype.name()
                    ),
                });
            }
            let len = numel
                .checked_mul(dtype.size())
                .ok_or_else(|| ImportError::Storage {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    reason: format!("size {numel} overflows"),
                })?;
            let start = pos + 8;
            if start.checked_add(len).is_none_or(|end| end > bytes.len()) {
                return Err(legacy_err(
                    path,
                    format!(
                        "storage {key} needs {len} bytes at byte {start} but the file ends at byte {} (truncated file?)",
                        bytes.len()
                    ),
                ));
            }
            storages.insert(key.clone(), (start, numel, dtype));
            pos = start + len;
        }
        Ok(LegacyCheckpoint {
            root: main.value,
            bytes,
            storages,
            path: path.to_path_buf(),
        })
    }

    /// The bytes of the root storage behind `s`.
    pub fn storage_bytes(&self, s: &StorageRef) -> Result<&'a [u8], ImportError> {
        let &(start, numel, dtype) =
            self.storages
                .get(&s.key)
                .ok_or_else(|| ImportError::Storage {
                    path: self.path.clone(),
                    key: s.key.clone(),
                    reason: "referenced by a tensor but absent from the storage key list".into(),
                })?;
        if dtype != s.dtype || numel != s.numel {
            return Err(ImportError::Storage {
                path: self.path.clone(),
                key: s.key.clone(),
                reason: format!(
                    "holds {numel} x {} but the tensor expects {} x {}",
                    dtype.name(),
                    s.numel,
                    s.dtype.name()
                ),
            });
        }
        start
            .checked_add(numel.saturating_mul(dtype.size()))
            .and_then(|end| self.bytes.get(start..end))
            .ok_or_else(|| ImportError::Storage {
                path: self.path.clone(),
                key: s.key.clone(),
                reason: "lies outside the file".into(),
            })
    }
}
