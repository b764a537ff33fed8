//! What a file is, by its content — never by its extension.
//!
//! [`sniff`] looks at the leading bytes (and, for a pickle without a `PROTO`
//! opcode, walks its opcodes without running them) and names the format:
//! a zip archive (what `torch.save` writes since PyTorch 1.6), a legacy
//! `torch.save` stream, a bare pickle stream, a safetensors file, a NumPy
//! `.npy` array, an image, a few other common containers, or nothing known.
//! Readers dispatch on it and put [`Format::describe`] into their errors, so
//! a user who passes the wrong file is told what the file actually is.

use crate::import::{legacy, pickle};

/// The format of a file, as recognised from its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// Zero bytes.
    Empty,
    /// A zip archive (local-file, empty-archive or spanned signature).
    Zip,
    /// The legacy (pre-zip) `torch.save` stream: a pickle of the magic number.
    TorchLegacy,
    /// A pickle stream that is not a `torch.save` file.
    Pickle(pickle::PickleScan),
    /// A safetensors file: a little-endian `u64` header length, then `{`.
    Safetensors {
        /// The header length the file declares.
        header_len: u64,
    },
    /// A NumPy `.npy` array (`\x93NUMPY`).
    Npy,
    /// An image; the name of its format (`PNG`, `JPEG`, ...).
    Image(&'static str),
    /// Another well-known format, described in words (e.g. `a 7z archive`).
    Other(&'static str),
    /// Text (UTF-8 without control characters other than whitespace).
    Text,
    /// Nothing recognised.
    Unknown,
}

/// Recognises the format of `bytes` (see the module docs). Linear in the
/// length at worst (a protocol-0 pickle is walked to its `STOP`).
pub fn sniff(bytes: &[u8]) -> Format {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if bytes.is_empty() {
        return Format::Empty;
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        return Format::Zip;
    }
    if legacy::has_magic(bytes) {
        return Format::TorchLegacy;
    }
    if starts(b"\x93NUMPY") {
        return Format::Npy;
    }
    if let Some(name) = image_format(bytes) {
        return Format::Image(name);
    }
    if let Some(what) = other_format(bytes) {
        return Format::Other(what);
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        return Format::Safetensors { header_len: n };
    }
    // A binary pickle announces its protocol; a protocol-0/1 pickle must be
    // a well-formed opcode stream that reaches STOP.
    let scan = pickle::scan(bytes);
    if (bytes[0] == 0x80 && bytes.get(1).is_some_and(|&p| p <= 5))
        || scan.end.is_ok()
        || starts_with_text_global(bytes)
    {
        return Format::Pickle(scan);
    }
    if looks_like_text(bytes) {
        return Format::Text;
    }
    Format::Unknown
}

/// A protocol-0 `GLOBAL` opcode: `c`, then a module and a name line made of
/// identifier characters (a damaged protocol-0 pickle still starts so).
fn starts_with_text_global(b: &[u8]) -> bool {
    let Some(rest) = b.strip_prefix(b"c") else {
        return false;
    };
    let mut lines = rest.splitn(3, |&c| c == b'\n');
    let ident = |l: Option<&[u8]>| {
        l.is_some_and(|l| {
            !l.is_empty()
                && l.len() < 256
                && l.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
        })
    };
    ident(lines.next()) && ident(lines.next()) && lines.next().is_some()
}

/// Image formats by signature.
fn image_format(b: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| b.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some("PNG")
    } else if starts(&[0xff, 0xd8, 0xff]) {
        Some("JPEG")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("GIF")
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some("TIFF")
    } else if b.len() >= 12 && starts(b"RIFF") && &b[8..12] == b"WEBP" {
        Some("WebP")
    } else if b.len() >= 14
        && starts(b"BM")
        && u32::from_le_bytes([b[2], b[3], b[4], b[5]]) as usize == b.len()
    {
        Some("BMP")
    } else {
        None
    }
}

/// Other containers people mistake for checkpoints.
fn other_format(b: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| b.starts_with(magic);
    Some(if starts(b"7z\xbc\xaf\x27\x1c") {
        "a 7z archive"
    } else if starts(&[0x1f, 0x8b]) {
        "a gzip stream"
    } else if starts(b"BZh") && b.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        "a bzip2 stream"
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "an xz stream"
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "a zstd stream"
    } else if starts(b"Rar!\x1a\x07") {
        "a RAR archive"
    } else if b.len() > 262 && &b[257..262] == b"ustar" {
        "a tar archive (the pre-1.0 tar torch.save format is not supported)"
    } else if starts(b"\x89HDF\r\n\x1a\n") {
        "an HDF5 file (e.g. a Keras .h5 model)"
    } else if starts(b"GGUF") {
        "a GGUF model file"
    } else if starts(b"%PDF-") {
        "a PDF document"
    } else if starts(b"\x7fELF") {
        "an ELF executable"
    } else {
        return None;
    })
}

fn looks_like_text(b: &[u8]) -> bool {
    let head = &b[..b.len().min(4096)];
    let s = match std::str::from_utf8(head) {
        Ok(s) => s,
        // A multi-byte character cut at the 4096-byte boundary.
        Err(e) if e.valid_up_to() + 4 >= head.len() && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    !s.is_empty()
        && s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// The first bytes of a file in hex, for messages.
pub fn head_hex(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    head.join(" ")
}

impl Format {
    /// A short name (`zip archive`, `bare pickle stream`, ...), e.g. for tallies.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Empty => "empty file",
            Format::Zip => "zip archive",
            Format::TorchLegacy => "legacy torch.save stream",
            Format::Pickle(_) => "bare pickle stream",
            Format::Safetensors { .. } => "safetensors file",
            Format::Npy => "npy array",
            Format::Image(_) => "image",
            Format::Other(_) => "other known format",
            Format::Text => "text file",
            Format::Unknown => "unrecognised content",
        }
    }

    /// What the file is, in words, without advice (`a zip archive`, `a
    /// bare pickle stream`, `a PNG image`, ...); `bytes` are the file's.
    pub fn noun(&self, bytes: &[u8]) -> String {
        match self {
            Format::Empty => "an empty file".into(),
            Format::Pickle(_) => "a bare pickle stream".into(),
            Format::Safetensors { .. } => "a safetensors file".into(),
            Format::Unknown => format!("of no known format (first bytes {})", head_hex(bytes)),
            other => other.describe(bytes),
        }
    }

    /// What the file is, in words, for an error message about a file that
    /// was expected to be a checkpoint or a weight blob; `bytes` are the
    /// file's bytes (for the first bytes of an unrecognised file).
    pub fn describe(&self, bytes: &[u8]) -> String {
        match self {
            Format::Empty => "the file is empty".into(),
            Format::Zip => "a zip archive".into(),
            Format::TorchLegacy => "a legacy torch.save stream".into(),
            Format::Pickle(scan) => {
                let mut s = match &scan.end {
                    Ok(_) => "a bare pickle stream".to_string(),
                    Err(e) => format!("a bare pickle stream, itself damaged ({e})"),
                };
                if let Some(p) = scan.protocol {
                    s.push_str(&format!(" of protocol {p}"));
                }
                s.push_str(" (torch.save writes a zip archive or the legacy format)");
                if !scan.globals.is_empty() {
                    s.push_str(&format!(
                        "; it imports {} (refused without running anything)",
                        scan.globals.join(", ")
                    ));
                }
                s
            }
            Format::Safetensors { .. } => {
                "a safetensors file (a weight blob: pass it to -m as it is)".into()
            }
            Format::Npy => "a NumPy .npy array".into(),
            Format::Image(name) => format!("a {name} image"),
            Format::Other(what) => (*what).to_string(),
            Format::Text => {
                let head: String = String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                format!("a text file (starting {:?})", head.trim_end())
            }
            Format::Unknown => format!(
                "no known file signature (first bytes {}): neither a zip archive, a legacy torch.save stream, a pickle, safetensors, npy nor an image",
                head_hex(bytes)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(sniff(b""), Format::Empty);
        assert_eq!(sniff(b"PK\x03\x04rest"), Format::Zip);
        assert_eq!(sniff(b"\x93NUMPY\x01\x00"), Format::Npy);
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Format::Image("PNG"));
        assert_eq!(
            sniff(b"7z\xbc\xaf\x27\x1c\0\x04"),
            Format::Other("a 7z archive")
        );
        assert_eq!(
            sniff(b"\x10\0\0\0\0\0\0\0{\"a\":1}        "),
            Format::Safetensors { header_len: 16 }
        );
        assert_eq!(sniff(b"hello world\n"), Format::Text);
        assert_eq!(sniff(&[0x01, 0xfe, 0x00, 0x99]), Format::Unknown);
        // Protocol 0: walked to STOP; its globals are named.
        match sniff(b"cos\nsystem\n(S'true'\ntR.") {
            Format::Pickle(s) => {
                assert_eq!(s.globals, vec!["os.system".to_string()]);
                assert_eq!(s.protocol, None);
                assert_eq!(s.end, Ok(23));
            }
            other => panic!("{other:?}"),
        }
        // Protocol 4 with STACK_GLOBAL.
        let p4 = b"\x80\x04\x95\x15\0\0\0\0\0\0\0\x8c\x05posix\x8c\x06system\x93)R.";
        match sniff(p4) {
            Format::Pickle(s) => {
                assert_eq!(s.globals, vec!["posix.system".to_string()]);
                assert_eq!(s.protocol, Some(4));
            }
            other => panic!("{other:?}"),
        }
        // A binary pickle cut short is still called a pickle.
        assert!(matches!(sniff(b"\x80\x02}q\x00(X"), Format::Pickle(s) if s.end.is_err()));
    }
}
