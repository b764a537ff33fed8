//! Hostile image and `.npy` inputs: declared sizes are checked before memory
//! is reserved (a PNG header declaring 100 000 x 100 000 pixels, `.npy`
//! shapes whose element count overflows or exceeds the data, header lengths
//! past the end), and inputs are recognised by content, not extension.

use std::path::{Path, PathBuf};

use prior_cli::io::{self, Image, IoError};

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hostile-inputs")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A real 1x1 gray PNG whose IHDR is patched to `w` x `h` (CRC fixed up):
/// a few dozen bytes that declare gigabytes of pixels.
fn png_declaring(dir: &Path, w: u32, h: u32) -> Vec<u8> {
    let small = dir.join("small.png");
    io::write_output(&small, &Image::zeros(1, 1, 1)).unwrap();
    let mut b = std::fs::read(&small).unwrap();
    assert_eq!(&b[12..16], b"IHDR");
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn decompression_bombs_are_refused_by_their_header() {
    let d = tmpdir("bomb");
    for (w, h) in [(100_000u32, 100_000u32), (40_000, 1), (1, 40_000)] {
        let p = d.join(format!("bomb_{w}x{h}.png"));
        std::fs::write(&p, png_declaring(&d, w, h)).unwrap();
        let t = std::time::Instant::now();
        let err = io::read_input(&p).unwrap_err();
        println!(
            "{w}x{h} PNG refused in {:.1} ms: {err}",
            t.elapsed().as_secs_f64() * 1e3
        );
        assert!(matches!(err, IoError::Decode { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&p.display().to_string()) && msg.contains("decompression bomb"),
            "{msg}"
        );
    }
}

fn npy(header: &str, payload: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn npy_declared_sizes_are_checked_first() {
    let p = Path::new("hostile.npy");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "shape overflowing usize",
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", &[0; 16]),
            "too large",
        ),
        (
            "2^40 elements over 16 bytes",
            npy("{'descr': '<f8', 'fortran_order': True, 'shape': (1048576, 1048576), }", &[0; 16]),
            "truncated .npy data",
        ),
        (
            "header length past the end (v2, 4 GiB)",
            [b"\x93NUMPY\x02\x00".as_slice(), &0xffff_fff0u32.to_le_bytes(), b"{}"].concat(),
            "header claims",
        ),
        (
            "header nested 10 000 deep",
            npy(&format!("{}{}", "(".repeat(10_000), ")".repeat(10_000)), &[]),
            "nesting too deep",
        ),
        (
            "negative dimension",
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 4), }", &[0; 16]),
            "bad .npy header",
        ),
    ];
    for (what, bytes, want) in cases {
        let t = std::time::Instant::now();
        let err = io::parse_npy(p, &bytes).unwrap_err();
        println!(
            "{what}: refused in {:.1} ms: {err}",
            t.elapsed().as_secs_f64() * 1e3
        );
        let msg = err.to_string();
        assert!(
            msg.contains("hostile.npy") && msg.contains(want),
            "{what}: {msg}"
        );
    }
}

#[test]
fn inputs_are_recognised_by_content() {
    let d = tmpdir("content");
    // A PNG named .npy is read as the image it is.
    let png = d.join("real.png");
    io::write_output(&png, &Image::zeros(1, 3, 5)).unwrap();
    let disguised = d.join("image.npy");
    std::fs::copy(&png, &disguised).unwrap();
    assert_eq!(io::read_input(&disguised).unwrap().shape(), [1, 3, 5]);
    // An array named .png is read as the array it is.
    let arr = d.join("a.npy");
    io::write_output(&arr, &Image::zeros(2, 4, 3)).unwrap();
    let disguised = d.join("array.png");
    std::fs::copy(&arr, &disguised).unwrap();
    assert_eq!(io::read_input(&disguised).unwrap().shape(), [2, 4, 3]);
    // A pickle named .png is called a pickle.
    let p = d.join("evil.png");
    std::fs::write(&p, b"cos\nsystem\n(S'true'\ntR.").unwrap();
    let msg = io::read_input(&p).unwrap_err().to_string();
    assert!(
        msg.contains("not an image or a .npy array: it is a bare pickle stream"),
        "{msg}"
    );
}
