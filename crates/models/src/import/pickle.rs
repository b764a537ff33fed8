//! A restricted pickle reader: pickles are treated as data, never as code.
//!
//! The machine understands the opcodes of protocols 0–4 and interprets only a
//! handful of globals (see [`resolve_global`]): `collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor` /
//! `_rebuild_parameter`, the typed `torch.*Storage` classes and
//! `argparse.Namespace`. The authors' own training-statistics classes (listed
//! in [`OPAQUE_CLASSES`]) become inert [`Object`]s whose state is recorded but
//! never acted upon. Any other global refuses the whole file with
//! [`ImportError::UnsupportedGlobal`]. Tensors are not materialised here: a
//! tensor is a [`TensorRef`] (storage key, offset, shape, strides) that the
//! container reader resolves later.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::ImportError;

/// Classes of the authors' training code that appear in training dicts
/// (outside the state_dict) and are kept as opaque objects.
pub const OPAQUE_CLASSES: &[&str] = &[
    "__main__.PerformanceInfo",
    "noise.NoiseLevel",
    "noise.DenoisingError",
    "data.DatasetInfo",
    "networks.model.LogTensor",
];

/// Element type of a torch storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// `torch.float32` (`FloatStorage`).
    F32,
    /// `torch.float64` (`DoubleStorage`).
    F64,
    /// `torch.float16` (`HalfStorage`).
    F16,
    /// `torch.bfloat16` (`BFloat16Storage`).
    BF16,
    /// `torch.int64` (`LongStorage`).
    I64,
    /// `torch.int32` (`IntStorage`).
    I32,
    /// `torch.int16` (`ShortStorage`).
    I16,
    /// `torch.int8` (`CharStorage`).
    I8,
    /// `torch.uint8` (`ByteStorage`).
    U8,
    /// `torch.bool` (`BoolStorage`).
    Bool,
    /// `torch.complex64` (`ComplexFloatStorage`).
    C64,
    /// `torch.complex128` (`ComplexDoubleStorage`).
    C128,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::C64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::C128 => 16,
        }
    }

    /// Floating point (real) element type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// PyTorch's name of the element type.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        }
    }

    /// The element type of `torch.<name>` (e.g. `FloatStorage`).
    pub fn from_storage_class(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            "ComplexFloatStorage" => DType::C64,
            "ComplexDoubleStorage" => DType::C128,
            _ => return None,
        })
    }
}

/// A storage named by a persistent id
/// `('storage', torch.XStorage, key, location, numel[, view_metadata])`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// Key of the root storage: the zip entry `data/<key>` or the legacy key.
    pub key: String,
    /// Element type (from the storage class).
    pub dtype: DType,
    /// Number of elements of the root storage.
    pub numel: usize,
    /// Device it was saved from (`cpu`, `cuda:0`); ignored.
    pub location: String,
    /// Legacy storage views: `(view key, element offset, element count)`
    /// inside the root storage.
    pub view: Option<(String, usize, usize)>,
}

/// A tensor as described by `_rebuild_tensor_v2`: a strided view of a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The storage holding the values.
    pub storage: Rc<StorageRef>,
    /// Element offset inside the storage (or the storage view).
    pub offset: usize,
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// Stride of each dimension, in elements.
    pub stride: Vec<usize>,
}

impl TensorRef {
    /// Number of elements (the product of `shape`).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Copies the tensor out of its storage's bytes (the whole root storage,
    /// little-endian) into a contiguous row-major `f32` vector, honouring the
    /// storage offset, the strides and legacy storage views. Errors are
    /// plain strings; callers add the file and tensor name.
    pub fn materialize_f32(&self, storage_bytes: &[u8]) -> Result<Vec<f32>, String> {
        if self.storage.dtype != DType::F32 {
            return Err(format!(
                "dtype {} is not supported (only float32 tensors can be imported)",
                self.storage.dtype.name()
            ));
        }
        let (base, avail) = match &self.storage.view {
            None => (0usize, self.storage.numel),
            Some((_, off, size)) => {
                if off
                    .checked_add(*size)
                    .is_none_or(|end| end > self.storage.numel)
                {
                    return Err(format!(
                        "storage view [{off}, {off}+{size}) lies outside storage {} of {} elements",
                        self.storage.key, self.storage.numel
                    ));
                }
                (*off, *size)
            }
        };
        let need = base
            .checked_add(avail)
            .and_then(|n| n.checked_mul(4))
            .ok_or_else(|| format!("storage {} size overflows", self.storage.key))?;
        if storage_bytes.len() < need {
            return Err(format!(
                "storage {} holds {} bytes, fewer than the {need} the view needs",
                self.storage.key,
                storage_bytes.len(),
            ));
        }
        if self.shape.len() != self.stride.len() {
            return Err(format!(
                "size {:?} and stride {:?} have different ranks",
                self.shape, self.stride
            ));
        }
        let numel = self
            .shape
            .iter()
            .try_fold(1usize, |acc, &n| acc.checked_mul(n))
            .ok_or_else(|| format!("size {:?} overflows", self.shape))?;
        if numel == 0 {
            return Ok(Vec::new());
        }
        // Checked before anything is allocated: with zero or overlapping
        // strides a small storage can describe a tensor of any size (the
        // class of bug PyTorch fixed in its weights-only loader). A
        // state_dict's tensors never have more elements than their storage.
        if numel > avail {
            return Err(format!(
                "size {:?} (stride {:?}) has {numel} elements but storage {} holds {avail}; overlapping strides are refused",
                self.shape, self.stride, self.storage.key
            ));
        }
        // Largest element index touched, checked against the storage.
        let mut last = self.offset;
        for (&n, &s) in self.shape.iter().zip(&self.stride) {
            last = (n - 1)
                .checked_mul(s)
                .and_then(|d| last.checked_add(d))
                .ok_or_else(|| {
                    format!("size {:?} stride {:?} overflow", self.shape, self.stride)
                })?;
        }
        if last >= avail {
            return Err(format!(
                "view (offset {}, size {:?}, stride {:?}) reaches element {} but storage {} has {} elements",
                self.offset, self.shape, self.stride, last, self.storage.key, avail
            ));
        }
        let read = |i: usize| {
            let b = (base + i) * 4;
            f32::from_le_bytes([
                storage_bytes[b],
                storage_bytes[b + 1],
                storage_bytes[b + 2],
                storage_bytes[b + 3],
            ])
        };
        // Contiguous fast path.
        let mut expected = 1usize;
        let mut contiguous = true;
        for (&n, &s) in self.shape.iter().zip(&self.stride).rev() {
            if n != 1 && s != expected {
                contiguous = false;
                break;
            }
            expected *= n;
        }
        if contiguous {
            return Ok((0..numel).map(|i| read(self.offset + i)).collect());
        }
        let rank = self.shape.len();
        let mut out = Vec::with_capacity(numel);
        let mut idx = vec![0usize; rank];
        for _ in 0..numel {
            let src = self.offset
                + idx
                    .iter()
                    .zip(&self.stride)
                    .map(|(&i, &s)| i * s)
                    .sum::<usize>();
            out.push(read(src));
            for d in (0..rank).rev() {
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}

/// The interpreted globals.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor`.
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch.<X>Storage` of this element type.
    Storage(DType),
    /// `argparse.Namespace`.
    Namespace,
    /// One of [`OPAQUE_CLASSES`], by qualified name.
    Opaque(String),
}

impl Global {
    /// `module.name` of the global (as a pickle names it).
    pub fn qualified_name(&self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensor => "torch._utils._rebuild_tensor".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::Storage(d) => format!("torch.{:?}Storage", d),
            Global::Namespace => "argparse.Namespace".into(),
            Global::Opaque(n) => n.clone(),
        }
    }
}

/// Maps `module.name` to an interpreted global, or `None` when the global is
/// not allowed.
pub fn resolve_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", n) if n.ends_with("Storage") => DType::from_storage_class(n).map(Global::Storage),
        ("argparse", "Namespace") => Some(Global::Namespace),
        _ => {
            let q = format!("{module}.{name}");
            OPAQUE_CLASSES
                .contains(&q.as_str())
                .then_some(Global::Opaque(q))
        }
    }
}

/// A dict (or OrderedDict): insertion-ordered entries.
#[derive(Debug, Default)]
pub struct Dict {
    /// `(key, value)` pairs in insertion order (a repeated key keeps its first place).
    pub entries: Vec<(Value, Value)>,
    str_index: HashMap<Rc<str>, usize>,
    /// Indices of the entries whose key is not a string (searched linearly;
    /// their number is bounded by [`MAX_OTHER_KEYS`] in the pickle machine).
    other_keys: Vec<usize>,
}

/// The most non-string keys one dict may have: they are compared one by one
/// (a state_dict, a training dict and argparse's namespace have none).
pub const MAX_OTHER_KEYS: usize = 64;

impl Dict {
    /// Sets `key` to `value`: an existing equal key keeps its place and
    /// takes the new value; a new key goes last.
    pub fn insert(&mut self, key: Value, value: Value) {
        if let Value::Str(s) = &key {
            if let Some(&i) = self.str_index.get(s) {
                self.entries[i].1 = value;
            } else {
                self.str_index.insert(s.clone(), self.entries.len());
                self.entries.push((key, value));
            }
            return;
        }
        let found = self
            .other_keys
            .iter()
            .copied()
            .find(|&i| self.entries[i].0.key_eq(&key, 0));
        if let Some(i) = found {
            self.entries[i].1 = value;
        } else {
            self.other_keys.push(self.entries.len());
            self.entries.push((key, value));
        }
    }

    /// Number of entries whose key is not a string.
    pub fn other_key_count(&self) -> usize {
        self.other_keys.len()
    }

    /// Value of a string key.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.str_index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the dict has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// An instance of an interpreted class (`argparse.Namespace`) or an opaque
/// training-statistics object.
#[derive(Debug)]
pub struct Object {
    /// The class.
    pub class: Global,
    /// Arguments given to `NEWOBJ`/`REDUCE`.
    pub args: Vec<Value>,
    /// State given to `BUILD` (`None` if never built).
    pub state: Value,
}

/// A value on the pickle machine's stack.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer that fits in 128 bits.
    Int(i128),
    /// An integer wider than 128 bits (two's complement, little-endian).
    BigInt(Rc<[u8]>),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(Rc<str>),
    /// A `bytes` (or `bytearray`).
    Bytes(Rc<[u8]>),
    /// A tuple.
    Tuple(Rc<[Value]>),
    /// A list (shared, mutable: pickles append to it after memoising).
    List(Rc<RefCell<Vec<Value>>>),
    /// A dict or `OrderedDict`.
    Dict(Rc<RefCell<Dict>>),
    /// A set or frozenset, as its elements.
    Set(Rc<RefCell<Vec<Value>>>),
    /// An allowed global (a class or a function).
    Global(Rc<Global>),
    /// A storage named by a persistent id.
    Storage(Rc<StorageRef>),
    /// A tensor rebuilt by `_rebuild_tensor(_v2)`.
    Tensor(Rc<TensorRef>),
    /// An instance built by `NEWOBJ`/`REDUCE` and `BUILD`.
    Object(Rc<RefCell<Object>>),
}

impl Value {
    /// A short description for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) | Value::BigInt(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::Tuple(_) => "tuple".into(),
            Value::List(_) => "list".into(),
            Value::Dict(_) => "dict".into(),
            Value::Set(_) => "set".into(),
            Value::Global(g) => format!("global {}", g.qualified_name()),
            Value::Storage(_) => "storage".into(),
            Value::Tensor(_) => "tensor".into(),
            Value::Object(o) => format!("object of class {}", o.borrow().class.qualified_name()),
        }
    }

    /// Equality for dict keys (hashable values only). Tuples nested deeper
    /// than 16 levels compare unequal (no recursion without bound).
    fn key_eq(&self, other: &Value, depth: usize) -> bool {
        if depth > 16 {
            return false;
        }
        match (self, other) {
            (Value::None, Value::None) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Bool(a), Value::Int(b)) | (Value::Int(b), Value::Bool(a)) => *b == *a as i128,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::BigInt(a), Value::BigInt(b)) => a == b,
            (Value::Tuple(a), Value::Tuple(b)) => {
                Rc::ptr_eq(a, b)
                    || (a.len() == b.len()
                        && a.iter().zip(b.iter()).all(|(x, y)| x.key_eq(y, depth + 1)))
            }
            _ => false,
        }
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `int` within 128 bits or a `bool` (0 or 1).
    pub fn as_int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i128),
            _ => None,
        }
    }

    /// Converts to JSON (for `prior.args`). Tensors and storages become a
    /// short description; opaque objects `{"__class__": ..., "state": ...}`.
    /// Recursion is bounded (cyclic structures are cut).
    pub fn to_json(&self) -> serde_json::Value {
        let mut budget = JSON_NODE_BUDGET;
        self.to_json_depth(0, &mut budget)
    }

    fn to_json_depth(&self, depth: usize, budget: &mut usize) -> serde_json::Value {
        use serde_json::Value as J;
        if depth > 32 {
            return J::String("<nested too deeply>".into());
        }
        if *budget == 0 {
            return J::String("<truncated>".into());
        }
        *budget -= 1;
        let d = depth + 1;
        match self {
            Value::None => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    J::String(i.to_string())
                }
            }
            Value::BigInt(b) => J::String(format!("<int of {} bytes>", b.len())),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(python_float_repr(*f))),
            Value::Str(s) => J::String(s.to_string()),
            Value::Bytes(b) => J::String(String::from_utf8_lossy(b).into_owned()),
            Value::Tuple(items) => {
                J::Array(items.iter().map(|v| v.to_json_depth(d, budget)).collect())
            }
            Value::List(items) | Value::Set(items) => J::Array(
                items
                    .borrow()
                    .iter()
                    .map(|v| v.to_json_depth(d, budget))
                    .collect(),
            ),
            Value::Dict(dict) => {
                let mut map = serde_json::Map::new();
                for (k, v) in &dict.borrow().entries {
                    let key = match k {
                        Value::Str(s) => s.to_string(),
                        other => match other.to_json_depth(d, budget) {
                            J::String(s) => s,
                            j => j.to_string(),
                        },
                    };
                    map.insert(key, v.to_json_depth(d, budget));
                }
                J::Object(map)
            }
            Value::Global(g) => J::String(g.qualified_name()),
            Value::Storage(s) => J::String(format!("<storage {} {}>", s.key, s.dtype.name())),
            Value::Tensor(t) => {
                J::String(format!("<tensor {} {:?}>", t.storage.dtype.name(), t.shape))
            }
            Value::Object(o) => {
                let o = o.borrow();
                match o.class {
                    Global::Namespace => o.state.to_json_depth(d, budget),
                    _ => {
                        let mut map = serde_json::Map::new();
                        map.insert("__class__".into(), J::String(o.class.qualified_name()));
                        map.insert("state".into(), o.state.to_json_depth(d, budget));
                        J::Object(map)
                    }
                }
            }
        }
    }
}

/// The most values [`Value::to_json`] converts: shared sub-structures (the
/// same list referenced twice, at every level) would otherwise make the
/// conversion exponential in the nesting depth.
pub const JSON_NODE_BUDGET: usize = 100_000;

/// Drops nested containers without recursion: a pickle can nest tuples a
/// million levels deep in a megabyte, and the derived drop would overflow the
/// thread's stack. Children of a container this value owns alone are moved
/// to a heap worklist first.
impl Drop for Value {
    fn drop(&mut self) {
        let mut work = Vec::new();
        self.detach_children(&mut work);
        while let Some(mut v) = work.pop() {
            v.detach_children(&mut work);
        }
    }
}

impl Value {
    fn is_container(&self) -> bool {
        matches!(
            self,
            Value::Tuple(_) | Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::Object(_)
        )
    }

    /// Moves the container children of a uniquely owned container to `work`.
    fn detach_children(&mut self, work: &mut Vec<Value>) {
        let mut take = |v: &mut Value| {
            if v.is_container() {
                work.push(std::mem::replace(v, Value::None));
            }
        };
        match self {
            Value::Tuple(t) => {
                if let Some(items) = Rc::get_mut(t) {
                    items.iter_mut().for_each(take);
                }
            }
            Value::List(l) | Value::Set(l) => {
                if let Some(cell) = Rc::get_mut(l) {
                    cell.get_mut().iter_mut().for_each(take);
                }
            }
            Value::Dict(d) => {
                if let Some(cell) = Rc::get_mut(d) {
                    for (k, v) in cell.get_mut().entries.iter_mut() {
                        take(k);
                        take(v);
                    }
                }
            }
            Value::Object(o) => {
                if let Some(cell) = Rc::get_mut(o) {
                    let o = cell.get_mut();
                    o.args.iter_mut().for_each(&mut take);
                    take(&mut o.state);
                }
            }
            _ => {}
        }
    }
}

fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f > 0.0 {
        "inf".into()
    } else {
        "-inf".into()
    }
}

/// The result of running one pickle program.
pub struct Unpickled {
    /// The value the program returned.
    pub value: Value,
    /// Byte offset just after the STOP opcode.
    pub end: usize,
    /// Protocol announced by PROTO (0 if none).
    pub protocol: u8,
    /// Every storage named by a persistent id, in order of appearance.
    pub storages: Vec<Rc<StorageRef>>,
}

/// Runs the pickle program that starts at `data[start..]` and returns its
/// result. `path` names the file in errors.
pub fn unpickle(data: &[u8], start: usize, path: &Path) -> Result<Unpickled, ImportError> {
    unpickle_in(data, start, path, "the pickle")
}

/// Like [`unpickle`]; `within` says where the pickle is (e.g. `zip entry
/// archive/data.pkl`) in errors.
pub fn unpickle_in(
    data: &[u8],
    start: usize,
    path: &Path,
    within: &str,
) -> Result<Unpickled, ImportError> {
    Machine {
        data,
        pos: start,
        op_pos: start,
        path,
        within,
        ops: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        protocol: 0,
        storages: Vec::new(),
    }
    .run()
}

/// Bounds of the pickle machine, far above what a checkpoint needs (the
/// authors' largest pickle runs 4 581 opcodes, memoises 1 150 values and
/// nests a few levels) and low enough that a hostile pickle is refused in
/// well under a second with memory in the hundreds of megabytes at most.
pub mod limits {
    /// Opcodes one pickle may execute.
    pub const MAX_OPS: usize = 1 << 22;
    /// Values on the stack at once.
    pub const MAX_STACK: usize = 1 << 20;
    /// Open MARKs at once (the nesting depth of MARK-built containers).
    pub const MAX_MARKS: usize = 1 << 12;
    /// Memoised values.
    pub const MAX_MEMO: usize = 1 << 20;
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    path: &'a Path,
    within: &'a str,
    /// Opcodes executed so far.
    ops: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    protocol: u8,
    storages: Vec<Rc<StorageRef>>,
}

type R<T> = Result<T, ImportError>;

impl<'a> Machine<'a> {
    fn err(&self, reason: impl Into<String>) -> ImportError {
        ImportError::Pickle {
            path: self.path.to_path_buf(),
            within: self.within.to_string(),
            offset: self.op_pos,
            reason: reason.into(),
        }
    }

    /// Checks the machine's bounds (see [`limits`]) before the next opcode.
    fn check_limits(&self) -> R<()> {
        use limits::*;
        let over = |what: &str, n: usize, max: usize| {
            self.err(format!(
                "{what} {n} exceeds the limit of {max} (no checkpoint comes near it; refused as hostile)"
            ))
        };
        if self.ops > MAX_OPS {
            return Err(over("opcode count", self.ops, MAX_OPS));
        }
        if self.stack.len() > MAX_STACK {
            return Err(over("stack depth", self.stack.len(), MAX_STACK));
        }
        if self.marks.len() > MAX_MARKS {
            return Err(over("MARK nesting depth", self.marks.len(), MAX_MARKS));
        }
        if self.memo.len() > MAX_MEMO {
            return Err(over("memo size", self.memo.len(), MAX_MEMO));
        }
        Ok(())
    }

    fn path_buf(&self) -> PathBuf {
        self.path.to_path_buf()
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.err(format!(
                "unexpected end of data: needs {n} more bytes, {} left (truncated file?)",
                self.data.len().saturating_sub(self.pos)
            ))),
        }
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&mut self) -> R<i32> {
        Ok(self.u32()? as i32)
    }
    fn u64(&mut self) -> R<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn len64(&mut self) -> R<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err(format!("length {n} too large")))
    }

    /// A `\n`-terminated line (text opcodes), without the newline.
    fn line(&mut self) -> R<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated text line (truncated file?)"))?;
        let line = &rest[..n];
        self.pos += n + 1;
        std::str::from_utf8(line).map_err(|_| self.err("text line is not UTF-8"))
    }

    fn pop(&mut self) -> R<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("stack underflow (pop across a MARK)"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&mut self) -> R<&mut Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.err("stack underflow (top across a MARK)"));
        }
        let err = self.err("stack underflow");
        self.stack.last_mut().ok_or(err)
    }

    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err("MARK expected but none is on the stack"))?;
        if m > self.stack.len() {
            return Err(self.err("corrupt MARK"));
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&self, idx: u64) -> R<Value> {
        self.memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {idx} was never stored")))
    }

    fn memo_put(&mut self, idx: u64) -> R<()> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.err("PUT with an empty stack"))?;
        self.memo.insert(idx, v);
        Ok(())
    }

    fn push_str(&mut self, bytes: &[u8]) -> R<()> {
        let s = std::str::from_utf8(bytes).map_err(|_| self.err("string is not valid UTF-8"))?;
        self.stack.push(Value::Str(Rc::from(s)));
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> R<()> {
        match resolve_global(module, name) {
            Some(g) => {
                self.stack.push(Value::Global(Rc::new(g)));
                Ok(())
            }
            None => Err(ImportError::UnsupportedGlobal {
                path: self.path_buf(),
                within: self.within.to_string(),
                name: format!("{module}.{name}"),
            }),
        }
    }

    fn run(mut self) -> R<Unpickled> {
        loop {
            self.ops += 1;
            self.check_limits()?;
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                // ---- framing
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {p}")));
                    }
                    self.protocol = p;
                }
                0x95 => {
                    // FRAME: an 8-byte length; frames are transparent here.
                    self.u64()?;
                }
                b'.' => {
                    // STOP
                    let value = self.pop()?;
                    return Ok(Unpickled {
                        value,
                        end: self.pos,
                        protocol: self.protocol,
                        storages: std::mem::take(&mut self.storages),
                    });
                }
                // ---- stack manipulation
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    // POP
                    if self.marks.last().is_some_and(|&m| m == self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                // ---- memo
                b'p' => {
                    let l = self.line()?;
                    let idx = l
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.err(format!("bad PUT index {l:?}")))?;
                    self.memo_put(idx)?;
                }
                b'q' => {
                    let i = self.u8()? as u64;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as u64;
                    self.memo_put(i)?;
                }
                0x94 => {
                    // MEMOIZE
                    let i = self.memo.len() as u64;
                    self.memo_put(i)?;
                }
                b'g' => {
                    let l = self.line()?;
                    let idx = l
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| self.err(format!("bad GET index {l:?}")))?;
                    let v = self.memo_get(idx)?;
                    self.stack.push(v);
                }
                b'h' => {
                    let i = self.u8()? as u64;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()? as u64;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                // ---- constants and numbers
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i128));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i128));
                }
                b'J' => {
                    let v = self.i32()?;
                    self.stack.push(Value::Int(v as i128));
                }
                0x8a => {
                    // LONG1
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(decode_long(b));
                }
                0x8b => {
                    // LONG4
                    let n = self.i32()?;
                    if n < 0 {
                        return Err(self.err("negative LONG4 length"));
                    }
                    let b = self.take(n as usize)?;
                    self.stack.push(decode_long(b));
                }
                b'I' => {
                    let l = self.line()?.trim();
                    let v = match l {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => Value::Int(
                            l.parse::<i128>()
                                .map_err(|_| self.err(format!("bad INT {l:?}")))?,
                        ),
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let l = self.line()?.trim().trim_end_matches('L');
                    let v = l
                        .parse::<i128>()
                        .map_err(|_| self.err(format!("bad LONG {l:?}")))?;
                    self.stack.push(Value::Int(v));
                }
                b'F' => {
                    let l = self.line()?.trim();
                    let v =
                        parse_py_float(l).ok_or_else(|| self.err(format!("bad FLOAT {l:?}")))?;
                    self.stack.push(Value::Float(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.stack
                        .push(Value::Float(f64::from_be_bytes(b.try_into().unwrap())));
                }
                // ---- strings and bytes
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                0x8c => {
                    // SHORT_BINUNICODE
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                0x8d => {
                    // BINUNICODE8
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.push_str(b)?;
                }
                b'V' => {
                    // UNICODE (raw-unicode-escape text line)
                    let l = self.line()?;
                    let s = decode_raw_unicode_escape(l)
                        .ok_or_else(|| self.err("bad raw-unicode-escape in UNICODE"))?;
                    self.stack.push(Value::Str(Rc::from(s.as_str())));
                }
                b'T' => {
                    // BINSTRING (Python 2 str): decoded as latin-1 text
                    let n = self.i32()?;
                    if n < 0 {
                        return Err(self.err("negative BINSTRING length"));
                    }
                    let b = self.take(n as usize)?;
                    self.stack.push(Value::Str(Rc::from(latin1(b).as_str())));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Str(Rc::from(latin1(b).as_str())));
                }
                b'S' => {
                    let l = self.line()?;
                    let s = decode_py_string_literal(l)
                        .ok_or_else(|| self.err(format!("bad STRING literal {l:?}")))?;
                    self.stack.push(Value::Str(Rc::from(s.as_str())));
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                0x8e => {
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                0x96 => {
                    // BYTEARRAY8
                    let n = self.len64()?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(Rc::from(b)));
                }
                0x97 | 0x98 => {
                    return Err(self.err("out-of-band buffers (protocol 5) are not supported"))
                }
                // ---- containers
                b')' => self.stack.push(Value::Tuple(Rc::from(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::from(items)));
                }
                0x85 => {
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(Rc::from(vec![a])));
                }
                0x86 => {
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(Rc::from(vec![a, b])));
                }
                0x87 => {
                    let c = self.pop()?;
                    let b = self.pop()?;
                    let a = self.pop()?;
                    self.stack.push(Value::Tuple(Rc::from(vec![a, b, c])));
                }
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => {
                            let t = other.type_name();
                            return Err(self.err(format!("APPEND to a {t}")));
                        }
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => {
                            let t = other.type_name();
                            return Err(self.err(format!("APPENDS to a {t}")));
                        }
                    }
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.dict_from_pairs(items)?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(d))));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.setitems(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.setitems(items)?;
                }
                0x8f => self.stack.push(Value::Set(Rc::default())),
                0x90 => {
                    // ADDITEMS
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::Set(s) => s.borrow_mut().extend(items),
                        other => {
                            let t = other.type_name();
                            return Err(self.err(format!("ADDITEMS to a {t}")));
                        }
                    }
                }
                0x91 => {
                    // FROZENSET
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Set(Rc::new(RefCell::new(items))));
                }
                // ---- globals and object construction
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.global(&module, &name)?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => {
                            let (m, n) = (m.to_string(), n.to_string());
                            self.global(&m, &n)?;
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                0x82..=0x84 => {
                    return Err(self.err("extension-registry opcodes (EXT1/2/4) are not supported"))
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let args = match &args {
                        Value::Tuple(t) => t.to_vec(),
                        other => {
                            return Err(
                                self.err(format!("REDUCE arguments are a {}", other.type_name()))
                            )
                        }
                    };
                    let v = self.call(func, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    // NEWOBJ cls args
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = match &args {
                        Value::Tuple(t) => t.to_vec(),
                        other => {
                            return Err(
                                self.err(format!("NEWOBJ arguments are a {}", other.type_name()))
                            )
                        }
                    };
                    let v = self.new_object(cls, args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    // NEWOBJ_EX cls args kwargs
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let args = match &args {
                        Value::Tuple(t) => t.to_vec(),
                        other => {
                            return Err(self
                                .err(format!("NEWOBJ_EX arguments are a {}", other.type_name())))
                        }
                    };
                    let v = self.new_object(cls, args)?;
                    self.stack.push(v);
                }
                b'i' => {
                    // INST module name: MARK args... -> instance
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    let args = self.pop_mark()?;
                    self.global(&module, &name)?;
                    let cls = self.pop()?;
                    let v = self.new_object(cls, args)?;
                    self.stack.push(v);
                }
                b'o' => {
                    // OBJ: MARK cls args... -> instance
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return Err(self.err("OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let v = self.new_object(cls, items)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    self.build(target, state)?;
                }
                // ---- persistent ids
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                b'P' => {
                    let l = self.line()?;
                    return Err(
                        self.err(format!("text persistent id {l:?} is not a torch storage"))
                    );
                }
                other => {
                    return Err(self.err(format!("unknown opcode 0x{other:02x}")));
                }
            }
        }
    }

    fn dict_from_pairs(&self, items: Vec<Value>) -> R<Dict> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let mut d = Dict::default();
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.insert(k, v);
            self.check_keys(&d)?;
        }
        Ok(d)
    }

    fn check_keys(&self, d: &Dict) -> R<()> {
        if d.other_key_count() > MAX_OTHER_KEYS {
            return Err(self.err(format!(
                "a dict with more than {MAX_OTHER_KEYS} non-string keys (refused: they are compared one by one)"
            )));
        }
        Ok(())
    }

    fn setitems(&mut self, items: Vec<Value>) -> R<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for SETITEMS"));
        }
        let target = self.top()?.clone();
        match &target {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.insert(k, v);
                    self.check_keys(&d)?;
                }
                Ok(())
            }
            other => Err(self.err(format!("SETITEM(S) on a {}", other.type_name()))),
        }
    }

    fn global_of(&self, v: &Value, what: &str) -> R<Rc<Global>> {
        match v {
            Value::Global(g) => Ok(g.clone()),
            other => Err(self.err(format!("{what} on a {}, not a class", other.type_name()))),
        }
    }

    /// REDUCE: calls an interpreted global.
    fn call(&mut self, func: Value, args: Vec<Value>) -> R<Value> {
        let g = self.global_of(&func, "REDUCE")?;
        match &*g {
            Global::OrderedDict => {
                let mut d = Dict::default();
                match args.as_slice() {
                    [] => {}
                    [Value::List(pairs)] => {
                        for p in pairs.borrow().iter() {
                            match p {
                                Value::Tuple(kv) if kv.len() == 2 => {
                                    d.insert(kv[0].clone(), kv[1].clone())
                                }
                                Value::List(kv) if kv.borrow().len() == 2 => {
                                    let kv = kv.borrow();
                                    d.insert(kv[0].clone(), kv[1].clone())
                                }
                                _ => return Err(self.err("OrderedDict items are not pairs")),
                            }
                        }
                    }
                    [Value::Dict(other)] => {
                        for (k, v) in &other.borrow().entries {
                            d.insert(k.clone(), v.clone());
                        }
                    }
                    _ => return Err(self.err("unsupported OrderedDict(...) arguments")),
                }
                self.check_keys(&d)?;
                Ok(Value::Dict(Rc::new(RefCell::new(d))))
            }
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                if args.len() < 4 {
                    return Err(self.err(format!(
                        "{} needs (storage, offset, size, stride, ...), got {} arguments",
                        g.qualified_name(),
                        args.len()
                    )));
                }
                let storage = match &args[0] {
                    Value::Storage(s) => s.clone(),
                    other => {
                        return Err(self.err(format!(
                            "tensor rebuilt from a {}, not a storage",
                            other.type_name()
                        )))
                    }
                };
                let offset = self.usize_of(&args[1], "storage offset")?;
                let shape = self.usize_tuple(&args[2], "size")?;
                let stride = self.usize_tuple(&args[3], "stride")?;
                if shape.len() != stride.len() {
                    return Err(self.err(format!(
                        "tensor size {shape:?} and stride {stride:?} have different ranks"
                    )));
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage,
                    offset,
                    shape,
                    stride,
                })))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.err("_rebuild_parameter without a tensor")),
            },
            Global::Opaque(_) => Ok(Value::Object(Rc::new(RefCell::new(Object {
                class: (*g).clone(),
                args,
                state: Value::None,
            })))),
            Global::Namespace => {
                if args.is_empty() {
                    Ok(Value::Object(Rc::new(RefCell::new(Object {
                        class: Global::Namespace,
                        args,
                        state: Value::Dict(Rc::default()),
                    }))))
                } else {
                    Err(self.err("argparse.Namespace called with positional arguments"))
                }
            }
            Global::Storage(_) => Err(self.err(format!(
                "calling {} directly is not supported (storages must be persistent ids)",
                g.qualified_name()
            ))),
        }
    }

    /// NEWOBJ / INST / OBJ: instantiates an interpreted class without running
    /// any of its code.
    fn new_object(&mut self, cls: Value, args: Vec<Value>) -> R<Value> {
        let g = self.global_of(&cls, "NEWOBJ")?;
        match &*g {
            Global::Namespace | Global::Opaque(_) => {
                Ok(Value::Object(Rc::new(RefCell::new(Object {
                    class: (*g).clone(),
                    args,
                    state: Value::None,
                }))))
            }
            Global::OrderedDict => self.call(cls, args),
            _ => Err(self.err(format!(
                "cannot instantiate {} with NEWOBJ",
                g.qualified_name()
            ))),
        }
    }

    /// BUILD: records state; never calls `__setstate__`.
    fn build(&mut self, target: Value, state: Value) -> R<()> {
        match &target {
            Value::Object(o) => {
                let mut o = o.borrow_mut();
                let merge_into_dict = matches!(o.class, Global::Namespace);
                match (&mut o.state, &state) {
                    // Namespace: attributes accumulate in its dict.
                    // (Merging a dict into itself changes nothing, and
                    // would borrow it twice.)
                    (Value::Dict(existing), Value::Dict(new)) if merge_into_dict => {
                        if !Rc::ptr_eq(existing, new) {
                            let new = new.borrow();
                            let mut ex = existing.borrow_mut();
                            for (k, v) in &new.entries {
                                ex.insert(k.clone(), v.clone());
                            }
                            drop(new);
                            self.check_keys(&ex)?;
                        }
                    }
                    (slot, s) => *slot = s.clone(),
                }
                Ok(())
            }
            // OrderedDict state ({'_metadata': ...}) and tensor state
            // (requires_grad etc.) carry nothing we need.
            Value::Dict(_) | Value::Tensor(_) => Ok(()),
            other => Err(self.err(format!("BUILD on a {}", other.type_name()))),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> R<Value> {
        let items = match &pid {
            Value::Tuple(t) => t.clone(),
            other => {
                return Err(self.err(format!(
                    "persistent id is a {}, expected ('storage', ...)",
                    other.type_name()
                )))
            }
        };
        if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 5 {
            return Err(self.err(
                "unsupported persistent id (expected ('storage', type, key, location, numel[, view]))",
            ));
        }
        let dtype = match &items[1] {
            Value::Global(g) => match &**g {
                Global::Storage(d) => *d,
                other => {
                    return Err(self.err(format!(
                        "persistent id names {}, not a storage type",
                        other.qualified_name()
                    )))
                }
            },
            other => {
                return Err(self.err(format!(
                    "storage type in persistent id is a {}",
                    other.type_name()
                )))
            }
        };
        let key =
            key_string(&items[2]).ok_or_else(|| self.err("storage key is not a str or int"))?;
        let location = items[3].as_str().unwrap_or("").to_string();
        let numel = self.usize_of(&items[4], "storage size")?;
        let view = match items.get(5) {
            None | Some(Value::None) => None,
            Some(Value::Tuple(v)) if v.len() == 3 => {
                let vk = key_string(&v[0]).ok_or_else(|| self.err("bad storage view key"))?;
                let off = self.usize_of(&v[1], "storage view offset")?;
                let size = self.usize_of(&v[2], "storage view size")?;
                Some((vk, off, size))
            }
            Some(other) => {
                return Err(self.err(format!("storage view metadata is a {}", other.type_name())))
            }
        };
        let s = Rc::new(StorageRef {
            key,
            dtype,
            numel,
            location,
            view,
        });
        self.storages.push(s.clone());
        Ok(Value::Storage(s))
    }

    fn usize_of(&self, v: &Value, what: &str) -> R<usize> {
        match v {
            Value::Int(i) => usize::try_from(*i)
                .map_err(|_| self.err(format!("{what} {i} is negative or too large"))),
            other => Err(self.err(format!("{what} is a {}, not an int", other.type_name()))),
        }
    }

    fn usize_tuple(&self, v: &Value, what: &str) -> R<Vec<usize>> {
        let items: Vec<Value> = match v {
            Value::Tuple(t) => t.to_vec(),
            Value::List(l) => l.borrow().clone(),
            other => return Err(self.err(format!("tensor {what} is a {}", other.type_name()))),
        };
        items.iter().map(|x| self.usize_of(x, what)).collect()
    }
}

fn key_string(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Two's-complement little-endian integer (LONG1/LONG4).
fn decode_long(b: &[u8]) -> Value {
    if b.is_empty() {
        return Value::Int(0);
    }
    if b.len() > 16 {
        return Value::BigInt(Rc::from(b));
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xffu8; 16] } else { [0u8; 16] };
    buf[..b.len()].copy_from_slice(b);
    Value::Int(i128::from_le_bytes(buf))
}

fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

fn parse_py_float(s: &str) -> Option<f64> {
    match s {
        "nan" => Some(f64::NAN),
        "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Decodes Python's raw-unicode-escape (only `\uXXXX` and `\UXXXXXXXX` are escapes).
fn decode_raw_unicode_escape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('u') | Some('U')) {
            let n = if chars.next() == Some('u') { 4 } else { 8 };
            let hex: String = chars.by_ref().take(n).collect();
            if hex.len() != n {
                return None;
            }
            out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Decodes a quoted Python 2 string literal (protocol 0 `STRING`).
fn decode_py_string_literal(s: &str) -> Option<String> {
    let s = s.trim_end();
    let q = s.chars().next()?;
    if !(q == '\'' || q == '"') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'x' => {
                let h: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&h, 16).ok()? as char);
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Parses a Python literal (dicts, lists, tuples, strings, numbers, True,
/// False, None, `dict()`) into JSON, e.g. the `network_kwargs` string of the
/// energy checkpoints. Returns `None` for anything else.
pub fn parse_python_literal(s: &str) -> Option<serde_json::Value> {
    let mut p = LitParser {
        s: s.as_bytes(),
        i: 0,
    };
    let v = p.value(0)?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

struct LitParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn seq(&mut self, close: u8, depth: usize) -> Option<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.value(depth + 1)?);
            if !self.eat(b',') {
                return self.eat(close).then_some(out);
            }
        }
    }
    fn value(&mut self, depth: usize) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        if depth > 32 {
            return None;
        }
        self.ws();
        let c = *self.s.get(self.i)?;
        match c {
            b'{' => {
                self.i += 1;
                let mut map = serde_json::Map::new();
                loop {
                    if self.eat(b'}') {
                        return Some(J::Object(map));
                    }
                    let k = match self.value(depth + 1)? {
                        J::String(s) => s,
                        other => other.to_string(),
                    };
                    if !self.eat(b':') {
                        return None;
                    }
                    let v = self.value(depth + 1)?;
                    map.insert(k, v);
                    if !self.eat(b',') {
                        return self.eat(b'}').then_some(J::Object(map));
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.seq(b']', depth).map(J::Array)
            }
            b'(' => {
                self.i += 1;
                self.seq(b')', depth).map(J::Array)
            }
            b'\'' | b'"' => {
                self.i += 1;
                let mut out = Vec::new();
                while let Some(&b) = self.s.get(self.i) {
                    self.i += 1;
                    if b == c {
                        return String::from_utf8(out).ok().map(J::String);
                    }
                    if b == b'\\' {
                        let e = *self.s.get(self.i)?;
                        self.i += 1;
                        out.push(match e {
                            b'n' => b'\n',
                            b't' => b'\t',
                            other => other,
                        });
                    } else {
                        out.push(b);
                    }
                }
                None
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric()
                        || matches!(self.s[self.i], b'.' | b'-' | b'+' | b'_'))
                {
                    self.i += 1;
                }
                let tok = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                match tok {
                    "True" => Some(J::Bool(true)),
                    "False" => Some(J::Bool(false)),
                    "None" => Some(J::Null),
                    "dict" => {
                        (self.eat(b'(') && self.eat(b')')).then(|| J::Object(Default::default()))
                    }
                    _ => {
                        if let Ok(i) = tok.parse::<i64>() {
                            Some(J::from(i))
                        } else {
                            tok.parse::<f64>()
                                .ok()
                                .and_then(serde_json::Number::from_f64)
                                .map(J::Number)
                        }
                    }
                }
            }
        }
    }
}

/// What [`scan`] found in a pickle stream, without running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickleScan {
    /// The protocol announced by a leading `PROTO` opcode.
    pub protocol: Option<u8>,
    /// `module.name` of the globals it imports (`GLOBAL`, `INST`, and
    /// `STACK_GLOBAL` after two string constants), first 8, in order.
    pub globals: Vec<String>,
    /// The byte offset just after `STOP`, or why the walk stopped before it.
    pub end: Result<usize, String>,
}

/// Walks the opcodes of the pickle at the start of `data` (like Python's
/// `pickletools.genops`) without executing anything: each opcode's argument
/// is skipped by its declared length, checked against the data. Used to tell
/// a bare pickle from other content and to say which globals it would
/// import. Linear time, memory bounded by the eight names it keeps.
pub fn scan(data: &[u8]) -> PickleScan {
    const MAX_GLOBALS: usize = 8;
    let mut out = PickleScan {
        protocol: None,
        globals: Vec::new(),
        end: Err("no STOP opcode".into()),
    };
    let mut pos = 0usize;
    // The last two string constants, for STACK_GLOBAL.
    let mut strs: [Option<String>; 2] = [None, None];
    let add_global = |out: &mut PickleScan, g: String| {
        if out.globals.len() < MAX_GLOBALS && !out.globals.contains(&g) {
            out.globals.push(g);
        }
    };
    let take = |pos: &mut usize, n: u64| -> Result<&[u8], String> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| pos.checked_add(n))
            .filter(|&e| e <= data.len())
            .ok_or_else(|| format!("an argument of {n} bytes at byte {pos} runs past the end"))?;
        let s = &data[*pos..end];
        *pos = end;
        Ok(s)
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64);
    let line = |pos: &mut usize| -> Result<&[u8], String> {
        let rest = &data[*pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("unterminated text argument at byte {pos}"))?;
        *pos += n + 1;
        Ok(&rest[..n])
    };
    let result: Result<usize, String> = (|| loop {
        let at = pos;
        let op = *take(&mut pos, 1)
            .map_err(|_| format!("ends at byte {} without a STOP opcode", data.len()))?
            .first()
            .unwrap_or(&0);
        let mut string: Option<String> = None;
        match op {
            b'.' => return Ok(pos),
            b'('
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | b')'
            | b't'
            | b']'
            | b'l'
            | b'a'
            | b'e'
            | b'}'
            | b'd'
            | b's'
            | b'u'
            | b'R'
            | b'b'
            | b'o'
            | b'Q'
            | 0x81
            | 0x85..=0x89
            | 0x8f..=0x92
            | 0x94
            | 0x97
            | 0x98 => {}
            0x93 => {
                if let [Some(m), Some(n)] = &strs {
                    add_global(&mut out, format!("{m}.{n}"));
                } else {
                    add_global(&mut out, "<a STACK_GLOBAL>".into());
                }
            }
            0x80 => {
                let p = take(&mut pos, 1)?[0];
                if at == 0 {
                    out.protocol = Some(p);
                }
                if p > 5 {
                    return Err(format!("unknown protocol {p}"));
                }
            }
            b'K' | b'q' | b'h' | 0x82 => {
                take(&mut pos, 1)?;
            }
            b'M' | 0x83 => {
                take(&mut pos, 2)?;
            }
            b'J' | b'r' | b'j' | 0x84 => {
                take(&mut pos, 4)?;
            }
            b'G' | 0x95 => {
                take(&mut pos, 8)?;
            }
            0x8a | 0x8c | b'U' | b'C' => {
                let n = take(&mut pos, 1)?[0] as u64;
                let b = take(&mut pos, n)?;
                if op == 0x8c || op == b'U' {
                    string = Some(String::from_utf8_lossy(b).into_owned());
                }
            }
            b'X' | b'B' | b'T' | 0x8b => {
                let n = le(take(&mut pos, 4)?);
                if n > i32::MAX as u64 && op != b'X' && op != b'B' {
                    return Err(format!("negative length at byte {at}"));
                }
                let b = take(&mut pos, n)?;
                if op == b'X' || op == b'T' {
                    string = Some(String::from_utf8_lossy(b).into_owned());
                }
            }
            0x8d | 0x8e | 0x96 => {
                let n = le(take(&mut pos, 8)?);
                let b = take(&mut pos, n)?;
                if op == 0x8d {
                    string = Some(String::from_utf8_lossy(b).into_owned());
                }
            }
            b'p' | b'g' | b'I' | b'L' | b'F' | b'P' => {
                line(&mut pos)?;
            }
            b'V' | b'S' => {
                let l = String::from_utf8_lossy(line(&mut pos)?).into_owned();
                string = Some(l.trim_matches(|c| c == '\'' || c == '"').to_string());
            }
            b'c' | b'i' => {
                let m = String::from_utf8_lossy(line(&mut pos)?).into_owned();
                let n = String::from_utf8_lossy(line(&mut pos)?).into_owned();
                add_global(&mut out, format!("{m}.{n}"));
            }
            other => return Err(format!("unknown opcode 0x{other:02x} at byte {at}")),
        }
        if let Some(s) = string {
            strs = [strs[1].take(), Some(s)];
        } else if !matches!(op, b'q' | b'r' | b'p' | 0x94 | 0x95) {
            // Memo stores and frames keep the last strings; anything else
            // breaks a STACK_GLOBAL's pair.
            strs = [None, None];
        }
    })();
    out.end = result;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_decoding() {
        assert_eq!(decode_long(&[0xff]).as_int(), Some(-1));
        assert_eq!(decode_long(&[0x00, 0x01]).as_int(), Some(256));
        // The legacy magic number.
        let magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        assert_eq!(decode_long(&magic).as_int(), Some(0x1950a86a20f9469cfc6c));
    }

    #[test]
    fn python_literals() {
        let v = parse_python_literal(
            "{'num_scales':3,'group_size':1,'x':(1, 2.5),'s':\"a\",'t':True,'n':None}",
        )
        .unwrap();
        assert_eq!(v["num_scales"], 3);
        assert_eq!(v["x"][1], 2.5);
        assert_eq!(v["t"], true);
        assert!(v["n"].is_null());
        assert_eq!(
            parse_python_literal("dict()").unwrap(),
            serde_json::json!({})
        );
        assert!(parse_python_literal("WhiteGaussianSampler()").is_none());
    }

    #[test]
    fn strided_view_is_materialised_row_major() {
        let storage = Rc::new(StorageRef {
            key: "0".into(),
            dtype: DType::F32,
            numel: 8,
            location: "cpu".into(),
            view: None,
        });
        let bytes: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
        // A transposed 2x3 view starting at element 1: rows read columns.
        let t = TensorRef {
            storage,
            offset: 1,
            shape: vec![3, 2],
            stride: vec![1, 3],
        };
        assert_eq!(
            t.materialize_f32(&bytes).unwrap(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        let too_far = TensorRef {
            offset: 3,
            ..t.clone()
        };
        assert!(too_far.materialize_f32(&bytes).is_err());
    }
}
