//! The zip `torch.save` format (PyTorch ≥ 1.6): `<prefix>/data.pkl` holds the
//! pickled object, `<prefix>/data/<key>` the raw little-endian bytes of each
//! storage. Entries are stored uncompressed. The prefix is whatever folder
//! name the file was saved under (`archive/`, `model/`, `model_scale0/`, ...).

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use zip::result::ZipError;
use zip::ZipArchive;

use super::pickle::{self, StorageRef, Value};
use crate::error::ImportError;

pub struct ZipCheckpoint<'a> {
    archive: ZipArchive<Cursor<&'a [u8]>>,
    /// Folder of `data.pkl` inside the archive, with its trailing `/`.
    pub prefix: String,
    pub root: Value,
    path: PathBuf,
    cache: HashMap<String, Rc<Vec<u8>>>,
}

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
        let mut archive =
            ZipArchive::new(Cursor::new(bytes)).map_err(|e| zip_err(path, describe(&e)))?;
        let mut names = Vec::with_capacity(archive.len());
        for i in 0..archive.len() {
            let f = archive
                .by_index(i)
                .map_err(|e| zip_err(path, format!("entry #{i}: {}", describe(&e))))?;
            let name = f
                .name()
                .map_err(|e| zip_err(path, format!("entry #{i}: {}", describe(&e))))?
                .into_owned();
            names.push(name);
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
                return Err(zip_err(
                    path,
                    format!(
                        "no <folder>/data.pkl entry (entries: {})",
                        names.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
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
        let prefix = pkl_name.strip_suffix("data.pkl").unwrap().to_string();

        let mut me = ZipCheckpoint {
            archive,
            prefix,
            root: Value::None,
            path: path.to_path_buf(),
            cache: HashMap::new(),
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
        let out = pickle::unpickle(&pkl_bytes, 0, path)?;
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
                    "entry {name} is compressed ({:?}); torch.save stores entries uncompressed",
                    f.compression()
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
            zip_err(
                &path,
                format!("reading entry {name}: {e} (truncated or damaged file?)"),
            )
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
