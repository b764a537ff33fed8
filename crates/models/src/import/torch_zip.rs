//! The zip `torch.save` format (PyTorch ≥ 1.6): `<prefix>/data.pkl` holds the
//! pickled object, `<prefix>/data/<key>` the raw little-endian bytes of each
//! storage. Entries are stored uncompressed. The prefix is whatever folder
//! name the file was saved under (`archive/`, `model/`, `model_scale0/`, ...).
//!
//! Hostile archives: names are read from the headers without decrypting or
//! inflating anything; an encrypted archive, one without `data.pkl` (its
//! entries are listed) or with more than [`MAX_ENTRIES`] entries is refused;
//! a compressed entry is refused outright (never inflated, so a zip bomb
//! cannot expand), and a stored entry whose declared size differs from its
//! stored size or exceeds the file is refused before its buffer is reserved.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use zip::result::ZipError;
use zip::ZipArchive;

use super::pickle::{self, StorageRef, Value};
use crate::error::ImportError;

/// A zip `torch.save` archive: `<prefix>data.pkl` and one stored entry
/// `<prefix>data/<key>` per storage.
pub struct ZipCheckpoint<'a> {
    archive: ZipArchive<Cursor<&'a [u8]>>,
    /// Folder of `data.pkl` inside the archive, with its trailing `/`.
    pub prefix: String,
    /// The unpickled `data.pkl` (a state_dict or a training dict holding one).
    pub root: Value,
    path: PathBuf,
    cache: HashMap<String, Rc<Vec<u8>>>,
    /// Length of the whole file: no entry can hold more.
    archive_len: u64,
}

/// More entries than any checkpoint has (one per storage, plus a few).
pub const MAX_ENTRIES: usize = 1 << 16;

fn zip_err(path: &Path, reason: impl Into<String>) -> ImportError {
    ImportError::Zip {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn describe(e: &ZipError) -> String {
    match e {
        ZipError::InvalidArchive(m) => format!("{m} (truncated or damaged file?)"),
        other => other.to_string(),
    }
}

impl<'a> ZipCheckpoint<'a> {
    /// Opens the archive and unpickles `data.pkl`.
    pub fn open(bytes: &'a [u8], path: &Path) -> Result<Self, ImportError> {
        let mut archive = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| zip_err(path, format!("a damaged zip archive: {}", describe(&e))))?;
        if archive.len() > MAX_ENTRIES {
            return Err(zip_err(
                path,
                format!(
                    "the archive lists {} entries; a torch.save file has one per storage, and more than {MAX_ENTRIES} are refused",
                    archive.len()
                ),
            ));
        }
        let mut names = Vec::with_capacity(archive.len());
        let mut encrypted = Vec::new();
        for i in 0..archive.len() {
            // Raw access: reads the headers only, never decrypts or inflates.
            let f = archive
                .by_index_raw(i)
                .map_err(|e| zip_err(path, format!("entry #{i}: {}", describe(&e))))?;
            let name = f
                .name()
                .map_err(|e| zip_err(path, format!("entry #{i}: {}", describe(&e))))?
                .into_owned();
            if f.encrypted() {
                encrypted.push(name.clone());
            }
            names.push(name);
        }
        let listing = |names: &[String]| {
            let mut s = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            if names.len() > 8 {
                s.push_str(&format!(", ... ({} entries in all)", names.len()));
            }
            s
        };
        if !encrypted.is_empty() {
            return Err(zip_err(
                path,
                format!(
                    "a password-protected (encrypted) zip archive: {} of its {} entries are encrypted ({}); torch.save never encrypts",
                    encrypted.len(),
                    names.len(),
                    listing(&encrypted)
                ),
            ));
        }
        let pkl: Vec<&String> = names
            .iter()
            .filter(|n| {
                n.strip_suffix("data.pkl").is_some_and(|p| {
                    p.is_empty() || (p.ends_with('/') && p.matches('/').count() == 1)
                })
            })
            .collect();
        let pkl_name = match pkl.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let what = if names.is_empty() {
                    "an empty zip archive".to_string()
                } else if names.iter().all(|n| n.ends_with(".npy")) {
                    format!("a NumPy .npz archive (it holds {})", listing(&names))
                } else {
                    format!(
                        "a zip archive without a <folder>/data.pkl entry, so not a torch.save file (it holds {})",
                        listing(&names)
                    )
                };
                return Err(ImportError::UnknownFormat {
                    path: path.to_path_buf(),
                    reason: what,
                });
            }
            many => {
                return Err(zip_err(
                    path,
                    format!(
                        "several data.pkl entries: {}",
                        many.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        let prefix = pkl_name
            .strip_suffix("data.pkl")
            .unwrap_or_default()
            .to_string();

        let mut me = ZipCheckpoint {
            archive,
            prefix,
            root: Value::None,
            path: path.to_path_buf(),
            cache: HashMap::new(),
            archive_len: bytes.len() as u64,
        };
        if let Some(order) = me.read_small(&format!("{}byteorder", me.prefix))? {
            let order = String::from_utf8_lossy(&order).trim().to_string();
            if order != "little" {
                return Err(zip_err(
                    path,
                    format!("byteorder is {order:?}; only little-endian checkpoints are supported"),
                ));
            }
        }
        let pkl_bytes = me.read_entry(&pkl_name, None)?;
        let out = pickle::unpickle_in(&pkl_bytes, 0, path, &format!("zip entry {pkl_name}"))?;
        me.root = out.value;
        Ok(me)
    }

    /// A small optional entry (e.g. `byteorder`), `None` if absent.
    fn read_small(&mut self, name: &str) -> Result<Option<Vec<u8>>, ImportError> {
        if self.archive.index_for_name(name).is_none() {
            return Ok(None);
        }
        self.read_entry(name, None).map(Some)
    }

    /// Reads a whole entry (CRC-checked). With `expected_len`, an entry of
    /// another size is an error mentioning `what`.
    fn read_entry(
        &mut self,
        name: &str,
        expected_len: Option<usize>,
    ) -> Result<Vec<u8>, ImportError> {
        let path = self.path.clone();
        let mut f = self.archive.by_name(name).map_err(|e| match e {
            ZipError::FileNotFound => zip_err(&path, format!("missing entry {name}")),
            other => zip_err(&path, format!("entry {name}: {}", describe(&other))),
        })?;
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(zip_err(
                &path,
                format!(
                    "entry {name} is compressed ({}); torch.save stores entries uncompressed, and compressed entries are refused without inflating them (no zip bomb can expand)",
                    match f.compression() {
                        m if m == zip::CompressionMethod::DEFLATE => "deflate".to_string(),
                        other => format!("{other:?}"),
                    }
                ),
            ));
        }
        // Bounds before allocation: a stored entry's declared size must equal
        // its compressed size and fit in the file (a zip bomb declares more).
        let total = self.archive_len;
        if f.size() != f.compressed_size() || f.size() > total {
            return Err(zip_err(
                &path,
                format!(
                    "entry {name} declares {} bytes ({} stored) in a file of {total} bytes",
                    f.size(),
                    f.compressed_size()
                ),
            ));
        }
        let size = usize::try_from(f.size())
            .map_err(|_| zip_err(&path, format!("entry {name} is too large")))?;
        if let Some(expected) = expected_len {
            if size != expected {
                return Err(ImportError::Storage {
                    path,
                    key: name.to_string(),
                    reason: format!(
                        "wrong size: the archive entry holds {size} bytes but the pickle describes {expected} bytes"
                    ),
                });
            }
        }
        let mut out = Vec::with_capacity(size);
        f.read_to_end(&mut out).map_err(|e| {
            let what = if e.to_string().contains("checksum") {
                "its CRC-32 checksum does not match its bytes (a damaged or tampered file)"
                    .to_string()
            } else {
                format!("{e} (truncated or damaged file?)")
            };
            zip_err(&path, format!("reading entry {name}: {what}"))
        })?;
        if out.len() != size {
            return Err(zip_err(
                &path,
                format!("entry {name}: read {} bytes, header says {size}", out.len()),
            ));
        }
        Ok(out)
    }

    /// The bytes of the root storage behind `s`, checked against the size the
    /// pickle gives it.
    pub fn storage_bytes(&mut self, s: &StorageRef) -> Result<Rc<Vec<u8>>, ImportError> {
        if let Some(b) = self.cache.get(&s.key) {
            return Ok(b.clone());
        }
        let expected = s
            .numel
            .checked_mul(s.dtype.size())
            .ok_or_else(|| ImportError::Storage {
                path: self.path.clone(),
                key: s.key.clone(),
                reason: format!("size {} overflows", s.numel),
            })?;
        let name = format!("{}data/{}", self.prefix, s.key);
        if self.archive.index_for_name(&name).is_none() {
            return Err(ImportError::Storage {
                path: self.path.clone(),
                key: s.key.clone(),
                reason: format!("archive has no entry {name}"),
            });
        }
        let bytes = Rc::new(self.read_entry(&name, Some(expected))?);
        self.cache.insert(s.key.clone(), bytes.clone());
        Ok(bytes)
    }
}
