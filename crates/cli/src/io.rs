//! File I/O for images and arrays: PNG/JPEG/TIFF/BMP through the `image`
//! crate, `.npy` through a small self-contained reader/writer.
//!
//! Everything is loaded into an [`Image`]: planar `f32` data, row-major over
//! `(C, H, W)`. 8-bit images map to `v / 255`, 16-bit images to `v / 65535`.
//! Alpha is dropped (gray+alpha becomes gray, RGBA becomes RGB).
//!
//! Every fallible function returns an [`IoError`] whose message starts with
//! the file's path and says what is wrong with it; nothing here panics on bad
//! input files.
//!
//! All writes are atomic: the bytes go to a temporary file in the target's
//! directory (`.NAME.tmp-PID-N`), which is fsynced and then renamed over the
//! target.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use thiserror::Error;

/// An image or array: planar `f32` values, row-major over `(C, H, W)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Channels (1 = gray, 3 = RGB; `.npy` arrays may have any count).
    pub c: usize,
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
    /// `c * h * w` values; index `(ci * h + y) * w + x`.
    pub data: Vec<f32>,
}

impl Image {
    /// Builds an image, panicking if `data.len() != c * h * w` (a programming
    /// error, not an input error).
    pub fn new(c: usize, h: usize, w: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            c * h * w,
            "Image::new: data has {} values but shape ({c}, {h}, {w}) needs {}",
            data.len(),
            c * h * w
        );
        Image { c, h, w, data }
    }

    /// An image filled with zeros.
    pub fn zeros(c: usize, h: usize, w: usize) -> Self {
        Image {
            c,
            h,
            w,
            data: vec![0.0; c * h * w],
        }
    }

    /// `[c, h, w]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.c, self.h, self.w]
    }

    /// Number of values `c * h * w`.
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// True when the image holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value at `(channel, y, x)`; panics when out of range.
    pub fn get(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.h + y) * self.w + x]
    }

    /// The `h * w` values of one channel.
    pub fn plane(&self, c: usize) -> &[f32] {
        let n = self.h * self.w;
        &self.data[c * n..(c + 1) * n]
    }
}

/// A general `.npy` array converted to `f32`, in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The array's shape as its header gives it (any number of dims; `[]`
    /// for a scalar).
    pub shape: Vec<usize>,
    /// The values, `shape.iter().product()` of them, in C order (last axis
    /// fastest).
    pub data: Vec<f32>,
}

/// Extensions accepted as inputs (lower case).
pub const INPUT_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "bmp", "npy"];
/// Extensions accepted as outputs (lower case).
pub const OUTPUT_EXTENSIONS: &[&str] = &["png", "npy"];

const INPUT_LIST: &str = "png, jpg, jpeg, tif, tiff, bmp, npy";
const OUTPUT_LIST: &str = "png, npy";

/// Errors from reading and writing images and arrays. Each message begins
/// with the file's path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IoError {
    /// The file (or input path) does not exist.
    #[error("{path}: file not found")]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },

    /// Reading the file or listing the directory failed for another reason
    /// than its absence.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// Writing failed (missing directory, permissions, full disk, ...);
    /// the target is left as it was.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The target file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// An extension outside [`INPUT_EXTENSIONS`] or [`OUTPUT_EXTENSIONS`].
    #[error("{path}: unsupported {role} file extension {ext:?} (supported: {supported})")]
    UnsupportedExtension {
        /// The file.
        path: PathBuf,
        /// "input" or "output".
        role: &'static str,
        /// The extension found, lower case (empty when there is none).
        ext: String,
        /// The accepted extensions, comma-separated.
        supported: &'static str,
    },

    /// The `image` crate could not decode the file, or its size exceeds
    /// [`MAX_IMAGE_SIDE`] or [`MAX_IMAGE_ALLOC`].
    #[error("{path}: cannot decode image: {msg}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        msg: String,
    },

    /// Content that is neither an image nor a `.npy` array.
    #[error("{path}: not an image or a .npy array: it is {found}")]
    NotAnInput {
        /// The file.
        path: PathBuf,
        /// What the content was recognised as (a noun phrase, e.g. a
        /// PyTorch checkpoint).
        found: String,
    },

    /// The PNG encoder failed, or the image is too large for PNG.
    #[error("{path}: cannot encode image: {msg}")]
    Encode {
        /// The target file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },

    /// A `.npy` file whose magic, version, header length or header dict is
    /// malformed, or whose shape's size overflows.
    #[error("{path}: bad .npy header: {msg}")]
    BadNpyHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with the header.
        msg: String,
    },

    /// A `.npy` dtype other than little- or big-endian float32/float64.
    #[error(
        "{path}: unsupported .npy dtype '{descr}' (supported: float32 '<f4' and float64 '<f8', \
         or their big-endian forms '>f4', '>f8')"
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The header's `descr` (a structured dtype is shown as parsed).
        descr: String,
    },

    /// A `.npy` file with fewer data bytes than its header's shape needs.
    #[error(
        "{path}: truncated .npy data: shape {shape:?} needs {expected} data bytes but the file \
         holds only {found}"
    )]
    TruncatedNpy {
        /// The file.
        path: PathBuf,
        /// The shape the header declares.
        shape: Vec<usize>,
        /// Data bytes the shape and dtype need.
        expected: usize,
        /// Data bytes after the header.
        found: usize,
    },

    /// A `.npy` array whose number of dims the reader does not accept.
    #[error("{path}: wrong number of dimensions: array has shape {shape:?}, expected {expected}")]
    WrongDims {
        /// The file.
        path: PathBuf,
        /// The array's shape.
        shape: Vec<usize>,
        /// The dims the reader accepts, in words.
        expected: &'static str,
    },

    /// An array or image with no values (a zero dimension), or an empty
    /// batch to write.
    #[error("{path}: empty array or image of shape {shape:?}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// The shape (`[0]` for an empty batch).
        shape: Vec<usize>,
    },

    /// An image to write as PNG with other than 1 or 3 channels.
    #[error(
        "{path}: cannot write a {channels}-channel image as {format} (it needs 1 channel for \
         gray or 3 for RGB)"
    )]
    UnsupportedChannels {
        /// The target file.
        path: PathBuf,
        /// The image's channel count.
        channels: usize,
        /// The output format, e.g. `"PNG"`.
        format: &'static str,
    },

    /// Data whose length is not the product of the shape it is written
    /// with.
    #[error("{path}: data has {len} values but shape {shape:?} needs {expected}")]
    ShapeMismatch {
        /// The target file.
        path: PathBuf,
        /// The shape given.
        shape: Vec<usize>,
        /// The number of values given.
        len: usize,
        /// The number the shape needs (`usize::MAX` when the product
        /// overflows).
        expected: usize,
    },

    /// Images of one batch to write with different shapes.
    #[error("{path}: batch image {index} has shape {other:?} but image 0 has {first:?}")]
    BatchShape {
        /// The target file.
        path: PathBuf,
        /// The 0-based index of the first image whose shape differs.
        index: usize,
        /// Image 0's `[c, h, w]`.
        first: [usize; 3],
        /// Image `index`'s `[c, h, w]`.
        other: [usize; 3],
    },

    /// An output path that names one of the inputs ([`ensure_not_input`]).
    #[error("{path}: refusing to write the output over input file {input}")]
    OutputIsInput {
        /// The output path.
        path: PathBuf,
        /// The input it would overwrite.
        input: PathBuf,
    },

    /// An input directory without a supported, non-hidden file.
    #[error("{path}: directory holds no supported input files ({supported})")]
    NoInputs {
        /// The directory.
        path: PathBuf,
        /// The accepted extensions, comma-separated.
        supported: &'static str,
    },
}

impl IoError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            IoError::NotFound { path }
            | IoError::Read { path, .. }
            | IoError::Write { path, .. }
            | IoError::UnsupportedExtension { path, .. }
            | IoError::Decode { path, .. }
            | IoError::NotAnInput { path, .. }
            | IoError::Encode { path, .. }
            | IoError::BadNpyHeader { path, .. }
            | IoError::UnsupportedDtype { path, .. }
            | IoError::TruncatedNpy { path, .. }
            | IoError::WrongDims { path, .. }
            | IoError::Empty { path, .. }
            | IoError::UnsupportedChannels { path, .. }
            | IoError::ShapeMismatch { path, .. }
            | IoError::BatchShape { path, .. }
            | IoError::OutputIsInput { path, .. }
            | IoError::NoInputs { path, .. } => path,
        }
    }
}

// ---------------------------------------------------------------------------
// Extensions

fn lower_ext(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// True when `path` has an extension [`read_input`] understands.
pub fn is_supported_input(path: &Path) -> bool {
    INPUT_EXTENSIONS.contains(&lower_ext(path).as_str())
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, IoError> {
    fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            IoError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            IoError::Read {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Reading

/// Reads one image or array, recognised by its content (never by its
/// extension): PNG, JPEG, TIFF or BMP (gray or RGB, 8/16-bit, scaled to
/// `[0, 1]`; alpha dropped; at most [`MAX_IMAGE_SIDE`] pixels a side and
/// [`MAX_IMAGE_ALLOC`] bytes decoded) or `.npy` (float32/float64 shaped
/// `(H, W)`, `(C, H, W)` or `(1, C, H, W)`; values kept as they are). Any
/// other content is refused with an error naming what the file is.
pub fn read_input(path: impl AsRef<Path>) -> Result<Image, IoError> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    parse_input(path, bytes)
}

/// [`read_input`] on bytes already read; `path` is used in errors only.
pub fn parse_input(path: &Path, bytes: Vec<u8>) -> Result<Image, IoError> {
    use prior_models::format::{sniff, Format};
    match sniff(&bytes) {
        Format::Npy => {
            let arr = parse_npy(path, &bytes)?;
            npy_to_image(path, arr)
        }
        Format::Image(_) => decode_image(path, bytes),
        other => Err(IoError::NotAnInput {
            path: path.to_path_buf(),
            found: other.noun(&bytes),
        }),
    }
}

fn npy_to_image(path: &Path, arr: NpyArray) -> Result<Image, IoError> {
    let (c, h, w) = match arr.shape[..] {
        [h, w] => (1, h, w),
        [c, h, w] => (c, h, w),
        [1, c, h, w] => (c, h, w),
        _ => {
            return Err(IoError::WrongDims {
                path: path.to_path_buf(),
                shape: arr.shape,
                expected: "2 (H, W) or 3 (C, H, W) dims (use a batch reader for (N, C, H, W))",
            })
        }
    };
    if c * h * w == 0 {
        return Err(IoError::Empty {
            path: path.to_path_buf(),
            shape: arr.shape,
        });
    }
    Ok(Image {
        c,
        h,
        w,
        data: arr.data,
    })
}

/// Reads a `.npy` batch shaped `(N, C, H, W)`; a `(C, H, W)` or `(H, W)`
/// array gives a batch of one.
pub fn read_npy_batch(path: impl AsRef<Path>) -> Result<Vec<Image>, IoError> {
    let path = path.as_ref();
    let arr = read_npy(path)?;
    let (n, c, h, w) = match arr.shape[..] {
        [h, w] => (1, 1, h, w),
        [c, h, w] => (1, c, h, w),
        [n, c, h, w] => (n, c, h, w),
        _ => {
            return Err(IoError::WrongDims {
                path: path.to_path_buf(),
                shape: arr.shape,
                expected: "4 (N, C, H, W) dims (or 2/3 for a single image)",
            })
        }
    };
    if n * c * h * w == 0 {
        return Err(IoError::Empty {
            path: path.to_path_buf(),
            shape: arr.shape,
        });
    }
    let per = c * h * w;
    Ok(arr
        .data
        .chunks_exact(per)
        .map(|chunk| Image {
            c,
            h,
            w,
            data: chunk.to_vec(),
        })
        .collect())
}

/// The widest and tallest image read (a decompression bomb declares more).
pub const MAX_IMAGE_SIDE: u32 = 1 << 15;
/// The most bytes an image decoder may allocate (an 8-bit RGB image of
/// 18 000 x 18 000 pixels fits; its float32 copy is four times as large).
pub const MAX_IMAGE_ALLOC: u64 = 1 << 30;

fn decode_image(path: &Path, bytes: Vec<u8>) -> Result<Image, IoError> {
    use image::DynamicImage as D;
    let decode_err = |msg: String| IoError::Decode {
        path: path.to_path_buf(),
        msg,
    };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    // Limits checked against the header before the pixel buffer exists.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => decode_err(format!(
            "{l} (at most {MAX_IMAGE_SIDE} pixels a side and {} MiB decoded; a decompression bomb?)",
            MAX_IMAGE_ALLOC >> 20
        )),
        e => decode_err(e.to_string()),
    })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return Err(IoError::Empty {
            path: path.to_path_buf(),
            shape: vec![h, w],
        });
    }
    const S8: f32 = 255.0;
    const S16: f32 = 65535.0;
    let (c, data) = match img {
        D::ImageLuma8(b) => (1, planar(b.as_raw(), 1, 1, |v| v as f32 / S8)),
        D::ImageLumaA8(b) => (1, planar(b.as_raw(), 2, 1, |v| v as f32 / S8)),
        D::ImageRgb8(b) => (3, planar(b.as_raw(), 3, 3, |v| v as f32 / S8)),
        D::ImageRgba8(b) => (3, planar(b.as_raw(), 4, 3, |v| v as f32 / S8)),
        D::ImageLuma16(b) => (1, planar(b.as_raw(), 1, 1, |v| v as f32 / S16)),
        D::ImageLumaA16(b) => (1, planar(b.as_raw(), 2, 1, |v| v as f32 / S16)),
        D::ImageRgb16(b) => (3, planar(b.as_raw(), 3, 3, |v| v as f32 / S16)),
        D::ImageRgba16(b) => (3, planar(b.as_raw(), 4, 3, |v| v as f32 / S16)),
        D::ImageRgb32F(b) => (3, planar(b.as_raw(), 3, 3, |v| v)),
        D::ImageRgba32F(b) => (3, planar(b.as_raw(), 4, 3, |v| v)),
        other => {
            let b = other.to_rgb32f();
            (3, planar(b.as_raw(), 3, 3, |v| v))
        }
    };
    debug_assert_eq!(data.len(), c * h * w);
    Ok(Image { c, h, w, data })
}

/// Interleaved `(H*W, src_ch)` samples to planar `(keep, H*W)` values.
fn planar<T: Copy>(raw: &[T], src_ch: usize, keep: usize, conv: impl Fn(T) -> f32) -> Vec<f32> {
    let n = raw.len() / src_ch;
    let mut out = vec![0.0f32; keep * n];
    for (i, px) in raw.chunks_exact(src_ch).enumerate() {
        for ch in 0..keep {
            out[ch * n + i] = conv(px[ch]);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// .npy reading

/// Reads any float32/float64 `.npy` file (format 1.0, 2.0 or 3.0) into `f32`
/// values in C order; Fortran-ordered arrays are transposed.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray, IoError> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    parse_npy(path, &bytes)
}

#[derive(Clone, Copy)]
enum Dtype {
    F32 { big: bool },
    F64 { big: bool },
}

/// Parses the bytes of a `.npy` file; `path` is only used in error messages.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray, IoError> {
    let bad = |msg: String| IoError::BadNpyHeader {
        path: path.to_path_buf(),
        msg,
    };
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad(
            "missing the \\x93NUMPY magic string (not a .npy file)".into()
        ));
    }
    if bytes.len() < 10 {
        return Err(bad(format!("file is only {} bytes long", bytes.len())));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad(format!("file is only {} bytes long", bytes.len())));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12usize,
            )
        }
        _ => return Err(bad(format!("unsupported format version {major}.{minor}"))),
    };
    let header_end = header_start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "header claims {header_len} bytes but the file has only {} after the preamble",
                bytes.len().saturating_sub(header_start)
            ))
        })?;
    let raw_header = &bytes[header_start..header_end];
    let header: String = if major == 3 {
        std::str::from_utf8(raw_header)
            .map_err(|_| bad("header is not valid UTF-8".into()))?
            .to_owned()
    } else {
        raw_header.iter().map(|&b| b as char).collect() // latin-1
    };

    // The header as quoted in errors: its first 120 characters.
    let quoted = {
        let h = header.trim_end();
        match h.char_indices().nth(120) {
            Some((i, _)) => format!("{:?}...", &h[..i]),
            None => format!("{h:?}"),
        }
    };
    let dict = match pylit::parse(&header) {
        Ok(pylit::Value::Dict(d)) => d,
        Ok(_) => return Err(bad(format!("header is not a dict: {quoted}"))),
        Err(e) => return Err(bad(format!("{e} in {quoted}"))),
    };
    let get = |key: &str| dict.iter().find(|(k, _)| k == key).map(|(_, v)| v);

    let descr = match get("descr") {
        Some(pylit::Value::Str(s)) => s.clone(),
        Some(other) => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                descr: format!("{other:?} (structured dtype)"),
            })
        }
        None => return Err(bad("no 'descr' key".into())),
    };
    let fortran = match get("fortran_order") {
        Some(pylit::Value::Bool(b)) => *b,
        Some(other) => return Err(bad(format!("'fortran_order' is {other:?}, not a bool"))),
        None => return Err(bad("no 'fortran_order' key".into())),
    };
    let shape: Vec<usize> = match get("shape") {
        Some(pylit::Value::Seq(items)) => {
            let mut s = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    pylit::Value::Int(n) => s.push(*n),
                    other => return Err(bad(format!("'shape' holds {other:?}, not an integer"))),
                }
            }
            s
        }
        Some(other) => return Err(bad(format!("'shape' is {other:?}, not a tuple"))),
        None => return Err(bad("no 'shape' key".into())),
    };

    let dtype = match descr.as_str() {
        "<f4" => Dtype::F32 { big: false },
        ">f4" => Dtype::F32 { big: true },
        "<f8" => Dtype::F64 { big: false },
        ">f8" => Dtype::F64 { big: true },
        _ => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                descr,
            })
        }
    };
    let item = match dtype {
        Dtype::F32 { .. } => 4usize,
        Dtype::F64 { .. } => 8usize,
    };
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n.checked_mul(item).is_some())
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let need = count * item;
    let payload = &bytes[header_end..];
    if payload.len() < need {
        return Err(IoError::TruncatedNpy {
            path: path.to_path_buf(),
            shape,
            expected: need,
            found: payload.len(),
        });
    }
    let payload = &payload[..need];
    let data: Vec<f32> = match dtype {
        Dtype::F32 { big } => payload
            .chunks_exact(4)
            .map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }
            })
            .collect(),
        Dtype::F64 { big } => payload
            .chunks_exact(8)
            .map(|b| {
                let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                (if big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }) as f32
            })
            .collect(),
    };
    let data = if fortran && shape.len() > 1 {
        fortran_to_c(&shape, &data)
    } else {
        data
    };
    Ok(NpyArray { shape, data })
}

/// Reorders column-major (Fortran) data of the given shape into row-major.
fn fortran_to_c(shape: &[usize], src: &[f32]) -> Vec<f32> {
    let nd = shape.len();
    // Fortran strides: stride[k] = prod(shape[..k]).
    let mut fstride = vec![1usize; nd];
    for k in 1..nd {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(src.len());
    if src.is_empty() {
        return out;
    }
    let mut idx = vec![0usize; nd];
    let mut off = 0usize; // Fortran offset of idx
    loop {
        out.push(src[off]);
        // Odometer increment over C order (last axis fastest).
        let mut k = nd;
        loop {
            if k == 0 {
                return out;
            }
            k -= 1;
            idx[k] += 1;
            off += fstride[k];
            if idx[k] < shape[k] {
                break;
            }
            off -= fstride[k] * shape[k];
            idx[k] = 0;
        }
    }
}

/// A tiny parser for the Python-literal subset used in `.npy` headers:
/// dicts, tuples/lists, strings, non-negative integers, `True`/`False`/`None`.
mod pylit {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Dict(Vec<(String, Value)>),
        Seq(Vec<Value>),
        Str(String),
        Int(usize),
        Bool(bool),
        None,
    }

    const MAX_DEPTH: usize = 16;

    pub fn parse(s: &str) -> Result<Value, String> {
        let chars: Vec<char> = s.chars().collect();
        let mut p = Parser { s: &chars, i: 0 };
        let v = p.value(0)?;
        p.ws();
        if p.i != chars.len() {
            return Err(format!("unexpected {:?} after the dict", p.s[p.i]));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [char],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_whitespace() {
                self.i += 1;
            }
        }
        fn peek(&mut self) -> Option<char> {
            self.ws();
            self.s.get(self.i).copied()
        }
        fn expect(&mut self, c: char) -> Result<(), String> {
            match self.peek() {
                Some(x) if x == c => {
                    self.i += 1;
                    Ok(())
                }
                Some(x) => Err(format!("expected {c:?}, found {x:?}")),
                None => Err(format!("expected {c:?}, found the end")),
            }
        }
        fn value(&mut self, depth: usize) -> Result<Value, String> {
            if depth > MAX_DEPTH {
                return Err("nesting too deep".into());
            }
            match self.peek() {
                None => Err("unexpected end".into()),
                Some('{') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    loop {
                        if self.peek() == Some('}') {
                            self.i += 1;
                            return Ok(Value::Dict(items));
                        }
                        let key = match self.value(depth + 1)? {
                            Value::Str(k) => k,
                            other => return Err(format!("dict key {other:?} is not a string")),
                        };
                        self.expect(':')?;
                        let v = self.value(depth + 1)?;
                        items.push((key, v));
                        match self.peek() {
                            Some(',') => self.i += 1,
                            Some('}') => {}
                            Some(x) => return Err(format!("expected ',' or '}}', found {x:?}")),
                            None => return Err("unterminated dict".into()),
                        }
                    }
                }
                Some(open @ ('(' | '[')) => {
                    let close = if open == '(' { ')' } else { ']' };
                    self.i += 1;
                    let mut items = Vec::new();
                    loop {
                        if self.peek() == Some(close) {
                            self.i += 1;
                            return Ok(Value::Seq(items));
                        }
                        items.push(self.value(depth + 1)?);
                        match self.peek() {
                            Some(',') => self.i += 1,
                            Some(x) if x == close => {}
                            Some(x) => {
                                return Err(format!("expected ',' or {close:?}, found {x:?}"))
                            }
                            None => return Err("unterminated tuple".into()),
                        }
                    }
                }
                Some(q @ ('\'' | '"')) => {
                    self.i += 1;
                    let mut out = String::new();
                    loop {
                        match self.s.get(self.i).copied() {
                            None => return Err("unterminated string".into()),
                            Some('\\') => {
                                match self.s.get(self.i + 1).copied() {
                                    Some(c) => out.push(c),
                                    None => return Err("unterminated string".into()),
                                }
                                self.i += 2;
                            }
                            Some(c) if c == q => {
                                self.i += 1;
                                return Ok(Value::Str(out));
                            }
                            Some(c) => {
                                out.push(c);
                                self.i += 1;
                            }
                        }
                    }
                }
                Some(c) if c.is_ascii_digit() => {
                    let mut n: usize = 0;
                    while let Some(d) = self.s.get(self.i).and_then(|c| c.to_digit(10)) {
                        n = n
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(d as usize))
                            .ok_or("integer too large")?;
                        self.i += 1;
                    }
                    // Python 2 long suffix, e.g. (3L, 4L).
                    if matches!(self.s.get(self.i), Some('L' | 'l')) {
                        self.i += 1;
                    }
                    Ok(Value::Int(n))
                }
                Some(c) if c.is_alphabetic() => {
                    let start = self.i;
                    while self
                        .s
                        .get(self.i)
                        .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                    {
                        self.i += 1;
                    }
                    let word: String = self.s[start..self.i].iter().collect();
                    match word.as_str() {
                        "True" => Ok(Value::Bool(true)),
                        "False" => Ok(Value::Bool(false)),
                        "None" => Ok(Value::None),
                        _ => Err(format!("unexpected word {word:?}")),
                    }
                }
                Some(c) => Err(format!("unexpected character {c:?}")),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Writing

/// Writes an image by extension: `.png` as 8-bit gray (c = 1) or RGB (c = 3),
/// values clamped to `[0, 1]` and rounded from `v * 255`; `.npy` as raw
/// little-endian float32 shaped `(C, H, W)` (unclamped). Atomic.
pub fn write_output(path: impl AsRef<Path>, img: &Image) -> Result<(), IoError> {
    let path = path.as_ref();
    check_image(path, img)?;
    let ext = lower_ext(path);
    match ext.as_str() {
        "npy" => write_npy(path, &[img.c, img.h, img.w], &img.data),
        "png" => {
            let bytes = encode_png(path, img)?;
            write_atomic(path, &bytes)
        }
        _ => Err(IoError::UnsupportedExtension {
            path: path.to_path_buf(),
            role: "output",
            ext,
            supported: OUTPUT_LIST,
        }),
    }
}

fn check_image(path: &Path, img: &Image) -> Result<(), IoError> {
    let expected = img.c.checked_mul(img.h).and_then(|n| n.checked_mul(img.w));
    if expected != Some(img.data.len()) {
        return Err(IoError::ShapeMismatch {
            path: path.to_path_buf(),
            shape: img.shape().to_vec(),
            len: img.data.len(),
            expected: expected.unwrap_or(usize::MAX),
        });
    }
    Ok(())
}

/// Quantises a value in `[0, 1]` to 8 bits: `round(clamp(v, 0, 1) * 255)`;
/// NaN becomes 0.
pub fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn encode_png(path: &Path, img: &Image) -> Result<Vec<u8>, IoError> {
    use image::ImageEncoder as _;
    let color = match img.c {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        c => {
            return Err(IoError::UnsupportedChannels {
                path: path.to_path_buf(),
                channels: c,
                format: "PNG",
            })
        }
    };
    if img.h == 0 || img.w == 0 {
        return Err(IoError::Empty {
            path: path.to_path_buf(),
            shape: img.shape().to_vec(),
        });
    }
    let (Ok(w32), Ok(h32)) = (u32::try_from(img.w), u32::try_from(img.h)) else {
        return Err(IoError::Encode {
            path: path.to_path_buf(),
            msg: format!("{}x{} is too large for PNG", img.w, img.h),
        });
    };
    let n = img.h * img.w;
    let mut px = vec![0u8; img.c * n];
    for i in 0..n {
        for ch in 0..img.c {
            px[i * img.c + ch] = to_u8(img.data[ch * n + i]);
        }
    }
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&px, w32, h32, color)
        .map_err(|e| IoError::Encode {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
    Ok(out)
}

/// Writes a little-endian float32 `.npy` file of the given shape (C order).
/// Atomic. `shape` may have any number of dims, including 0 (a scalar).
pub fn write_npy(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), IoError> {
    let path = path.as_ref();
    let expected = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(IoError::ShapeMismatch {
            path: path.to_path_buf(),
            shape: shape.to_vec(),
            len: data.len(),
            expected: expected.unwrap_or(usize::MAX),
        });
    }
    write_atomic(path, &encode_npy(shape, data))
}

/// Writes a batch of equally shaped images as one `(N, C, H, W)` float32
/// `.npy` file. Atomic.
pub fn write_npy_batch(path: impl AsRef<Path>, batch: &[Image]) -> Result<(), IoError> {
    let path = path.as_ref();
    let Some(first) = batch.first() else {
        return Err(IoError::Empty {
            path: path.to_path_buf(),
            shape: vec![0],
        });
    };
    let mut data = Vec::with_capacity(batch.len() * first.len());
    for (index, img) in batch.iter().enumerate() {
        check_image(path, img)?;
        if img.shape() != first.shape() {
            return Err(IoError::BatchShape {
                path: path.to_path_buf(),
                index,
                first: first.shape(),
                other: img.shape(),
            });
        }
        data.extend_from_slice(&img.data);
    }
    write_npy(path, &[batch.len(), first.c, first.h, first.w], &data)
}

/// The bytes of a float32 `.npy` file (format 1.0, or 2.0 when the header
/// does not fit in 64 KiB), header padded to a multiple of 64 bytes as numpy
/// does. The caller guarantees `data.len() == shape.iter().product()`.
pub fn encode_npy(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let shape_str = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_str}, }}");
    let mut out = Vec::with_capacity(128 + data.len() * 4);
    let build = |pre: usize| {
        // Pad with spaces so that preamble + header (ending in '\n') % 64 == 0.
        let unpadded = pre + dict.len() + 1;
        let pad = (64 - unpadded % 64) % 64;
        let mut h = dict.clone();
        h.extend(std::iter::repeat_n(' ', pad));
        h.push('\n');
        h
    };
    let header = build(10);
    out.extend_from_slice(b"\x93NUMPY");
    if header.len() <= u16::MAX as usize {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
    } else {
        let header = build(12);
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
    }
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

static TMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Writes `bytes` to `path` atomically: a temporary file `.NAME.tmp-PID-N` in
/// the same directory is written, fsynced and renamed over `path`. On failure
/// the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), IoError> {
    let path = path.as_ref();
    let werr = |source: std::io::Error| IoError::Write {
        path: path.to_path_buf(),
        source,
    };
    let Some(name) = path.file_name() else {
        return Err(werr(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(werr(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("directory {} does not exist", dir.display()),
        )));
    }
    let pid = std::process::id();
    let (tmp, mut file) = loop {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp-{pid}-{n}"));
        let tmp = dir.join(tmp_name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(werr(e)),
        }
    };
    let result = file
        .write_all(bytes)
        .and_then(|_| file.sync_all())
        .and_then(|_| {
            drop(file);
            fs::rename(&tmp, path)
        });
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(werr(e));
    }
    // Make the rename durable (best effort; not possible on every platform).
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Input lists and output safety

/// Fails with [`IoError::OutputIsInput`] when `out` names the same file as
/// any of `inputs` (compared after canonicalising, and on Unix also by
/// device and inode, so symlinks and hard links are caught).
pub fn ensure_not_input<P: AsRef<Path>>(out: &Path, inputs: &[P]) -> Result<(), IoError> {
    let out_canon = canonical_maybe_missing(out);
    #[cfg(unix)]
    let out_id = file_id(out);
    for input in inputs {
        let input = input.as_ref();
        let same = canonical_maybe_missing(input) == out_canon || {
            #[cfg(unix)]
            {
                out_id.is_some() && file_id(input) == out_id
            }
            #[cfg(not(unix))]
            {
                false
            }
        };
        if same {
            return Err(IoError::OutputIsInput {
                path: out.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Canonical form of a path that may not exist yet: the canonical parent
/// joined with the file name, or failing that the lexically absolute path.
fn canonical_maybe_missing(p: &Path) -> PathBuf {
    if let Ok(c) = fs::canonicalize(p) {
        return c;
    }
    if let (Some(parent), Some(name)) = (p.parent(), p.file_name()) {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(c) = fs::canonicalize(parent) {
            return c.join(name);
        }
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Expands a list of input paths: files are kept in the given order (they
/// must exist and have a supported extension); directories are replaced by
/// their supported files (non-recursive, sorted by name, dotfiles skipped).
/// A directory with no supported file is an error.
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, IoError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = fs::metadata(p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                IoError::NotFound { path: p.clone() }
            } else {
                IoError::Read {
                    path: p.clone(),
                    source: e,
                }
            }
        })?;
        if meta.is_dir() {
            let rd = fs::read_dir(p).map_err(|e| IoError::Read {
                path: p.clone(),
                source: e,
            })?;
            let mut found = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| IoError::Read {
                    path: p.clone(),
                    source: e,
                })?;
                let path = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                // metadata() follows symlinks, so links to files count.
                if !hidden && is_supported_input(&path) && path.is_file() {
                    found.push(path);
                }
            }
            if found.is_empty() {
                return Err(IoError::NoInputs {
                    path: p.clone(),
                    supported: INPUT_LIST,
                });
            }
            found.sort();
            out.extend(found);
        } else if is_supported_input(p) {
            out.push(p.clone());
        } else {
            return Err(IoError::UnsupportedExtension {
                path: p.clone(),
                role: "input",
                ext: lower_ext(p),
                supported: INPUT_LIST,
            });
        }
    }
    Ok(out)
}
