//! Errors of the weight importer ([`ImportError`]) and of weight blobs
//! ([`WeightError`]). Every variant names the file it is about and says what
//! is wrong, so that a message printed by the CLI is enough to act on.

use std::path::PathBuf;

/// Reading one of the authors' PyTorch checkpoints failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read (or an output could not be written).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Neither a zip `torch.save` archive nor a legacy `torch.save` stream.
    #[error("{path} is not a PyTorch checkpoint: {reason}")]
    UnknownFormat {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The zip container is damaged (truncated, bad central directory, CRC
    /// mismatch, missing entry), encrypted, or holds a compressed entry or an
    /// entry larger than the file.
    #[error("{path}: cannot read the zip checkpoint: {reason}")]
    Zip {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The legacy stream ends early or its framing is wrong.
    #[error("{path}: corrupt legacy checkpoint: {reason}")]
    Legacy {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The pickle program is malformed or uses something this reader does
    /// not interpret. `offset` is the byte offset of the opcode in the pickle.
    #[error("{path}: bad pickle in {within} at byte {offset}: {reason}")]
    Pickle {
        /// The checkpoint file.
        path: PathBuf,
        /// Where the pickle is (`zip entry archive/data.pkl`, ...).
        within: String,
        /// Byte offset of the opcode in the pickle.
        offset: usize,
        /// What is wrong.
        reason: String,
    },

    /// The pickle names a global that is not on the allow-list. Nothing is
    /// ever executed: the file is refused.
    #[error("unsupported pickle global {name} in {path} ({within} imports it; a weights-only reader refuses the file without running anything)")]
    UnsupportedGlobal {
        /// The checkpoint file.
        path: PathBuf,
        /// Where the pickle is (`zip entry archive/data.pkl`, ...).
        within: String,
        /// The global, `module.name`.
        name: String,
    },

    /// A storage is missing, has the wrong size or an unsupported type.
    #[error("{path}: storage {key}: {reason}")]
    Storage {
        /// The checkpoint file.
        path: PathBuf,
        /// The storage's key (its file name in the archive).
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// A state_dict entry cannot be turned into a float32 tensor.
    #[error("{path}: tensor {name}: {reason}")]
    Tensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The state_dict key.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// No state_dict could be located in the unpickled object.
    #[error("{path}: no state_dict found: {reason}")]
    NoStateDict {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The state_dict's keys and shapes match none of the known architectures
    /// (or match one but are inconsistent).
    #[error("{path}: cannot determine the architecture: {reason}")]
    UnknownArchitecture {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reading, writing or querying a weight blob failed.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The file is not a valid safetensors file.
    #[error("{path}: invalid safetensors weight blob: {reason}")]
    Safetensors {
        /// The blob file (or `<memory>`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A tensor in the blob is not float32.
    #[error("{path}: tensor {name} has dtype {dtype}; weight blobs hold float32 only")]
    DType {
        /// The blob file (or `<memory>`).
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its dtype, as safetensors names it.
        dtype: String,
    },

    /// A tensor the caller needs is absent.
    #[error("{path}: missing tensor {name} (the blob has {count} tensors)")]
    MissingTensor {
        /// The blob file (or `<memory>`).
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// Number of tensors in the blob.
        count: usize,
    },

    /// A tensor has another shape than the caller expects, or its data length
    /// does not match its shape.
    #[error("{path}: tensor {name}: {reason}")]
    Shape {
        /// The blob file (or `<memory>`).
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },

    /// A metadata key the caller needs is absent.
    #[error("{path}: missing metadata key {key}")]
    MissingMeta {
        /// The blob file (or `<memory>`).
        path: PathBuf,
        /// The metadata key.
        key: String,
    },

    /// A metadata value cannot be parsed.
    #[error("{path}: metadata {key}: {reason}")]
    BadMeta {
        /// The blob file (or `<memory>`).
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// Importing a `.pt` checkpoint given to [`crate::blob::WeightBlob::load`] failed.
    #[error(transparent)]
    Import(#[from] ImportError),
}
