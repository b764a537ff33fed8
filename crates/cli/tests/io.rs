//! Tests of prior_cli::io (file formats, atomic writes, input lists, error
//! messages) and prior_cli::metrics (PSNR/SSIM against reference values).

use std::fs;
use std::path::{Path, PathBuf};

use prior_cli::io::{self, Image, IoError};
use prior_cli::metrics;

// ---------------------------------------------------------------------------
// Helpers

/// A fresh, empty directory for one test.
fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("prior-cli-io-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// The shared data folder: `$PRIOR_SHARED` or `<repo>/../shared`.
fn shared_dir() -> PathBuf {
    match std::env::var_os("PRIOR_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared")),
    }
}

/// A shared image, or None (with a notice) when the shared folder is absent.
fn shared_image(rel: &str) -> Option<PathBuf> {
    let p = shared_dir().join("images").join(rel);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} not found (set PRIOR_SHARED to the shared folder)",
            p.display()
        );
        None
    }
}

/// Asserts the error's message names the file and contains `needle`.
fn assert_err_names(err: &IoError, path: &Path, needle: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message {msg:?} does not name {}",
        path.display()
    );
    assert!(
        msg.contains(needle),
        "message {msg:?} does not contain {needle:?}"
    );
    assert_eq!(err.path(), path);
}

/// The bytes of a format-1.0 `.npy` file laid out exactly as numpy's
/// `np.save` does (header padded with spaces to a multiple of 64 bytes).
fn npy_bytes(descr: &str, fortran: bool, shape: &str, payload: &[u8]) -> Vec<u8> {
    let f = if fortran { "True" } else { "False" };
    npy_raw(
        &format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {shape}, }}"),
        payload,
    )
}

/// A format-1.0 `.npy` file with the given header dict text, padded as numpy does.
fn npy_raw(dict: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

fn f64_le(vals: &[f64]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32_le(vals: &[f32]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Integer hash shared with the Python script that produced the SSIM
/// reference values (see `ssim_reference_values`).
fn hash(c: usize, y: usize, x: usize) -> u32 {
    ((c * 131 + y * 1031 + x * 7) as u32).wrapping_mul(2654435761) >> 16
}

// ---------------------------------------------------------------------------
// PNG / other raster formats

#[test]
fn png_gray_roundtrip_is_exact_for_8bit_values() {
    let d = tmpdir("png-gray");
    let (h, w) = (5, 7);
    let data: Vec<f32> = (0..h * w)
        .map(|i| ((i * 37) % 256) as f32 / 255.0)
        .collect();
    let img = Image::new(1, h, w, data);
    let p = d.join("g.png");
    io::write_output(&p, &img).unwrap();
    let back = io::read_input(&p).unwrap();
    assert_eq!(back, img);
}

#[test]
fn png_rgb_roundtrip_is_exact_for_8bit_values() {
    let d = tmpdir("png-rgb");
    let (h, w) = (4, 6);
    let data: Vec<f32> = (0..3 * h * w)
        .map(|i| ((i * 53 + 11) % 256) as f32 / 255.0)
        .collect();
    let img = Image::new(3, h, w, data);
    let p = d.join("c.PNG"); // extensions are case-insensitive
    io::write_output(&p, &img).unwrap();
    let back = io::read_input(&p).unwrap();
    assert_eq!(back, img);
    // Planar layout: channel 1 of pixel (2, 3).
    assert_eq!(back.get(1, 2, 3), img.data[(h + 2) * w + 3]);
}

#[test]
fn png_write_clamps_and_rounds() {
    let d = tmpdir("png-clamp");
    let img = Image::new(1, 1, 6, vec![-0.5, 1.7, 0.5, f32::NAN, 0.2, 1.0]);
    let p = d.join("q.png");
    io::write_output(&p, &img).unwrap();
    let raw = image::open(&p).unwrap().into_luma8().into_raw();
    // 0.5 * 255 = 127.5 rounds away from zero; 0.2 * 255 = 51.
    assert_eq!(raw, vec![0, 255, 128, 0, 51, 255]);
}

#[test]
fn png16_gray_and_rgba_read_as_v_over_65535() {
    let d = tmpdir("png16");
    let gray: Vec<u16> = vec![0, 1, 32768, 65535, 1000, 54321];
    let p = d.join("g16.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(3, 2, gray.clone())
        .unwrap()
        .save(&p)
        .unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [1, 2, 3]);
    let want: Vec<f32> = gray.iter().map(|&v| v as f32 / 65535.0).collect();
    assert_eq!(img.data, want);

    // RGBA 16-bit: alpha dropped, planar RGB.
    let rgba: Vec<u16> = vec![1, 2, 3, 9, 65535, 0, 300, 7];
    let p = d.join("c16.png");
    image::ImageBuffer::<image::Rgba<u16>, _>::from_raw(2, 1, rgba)
        .unwrap()
        .save(&p)
        .unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [3, 1, 2]);
    let want: Vec<f32> = [1u16, 65535, 2, 0, 3, 300]
        .iter()
        .map(|&v| v as f32 / 65535.0)
        .collect();
    assert_eq!(img.data, want);
}

#[test]
fn gray_alpha_png_reads_as_gray() {
    let d = tmpdir("png-la");
    let p = d.join("la.png");
    image::ImageBuffer::<image::LumaA<u8>, _>::from_raw(2, 1, vec![10u8, 200, 255, 0])
        .unwrap()
        .save(&p)
        .unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [1, 1, 2]);
    assert_eq!(img.data, vec![10.0 / 255.0, 1.0]);
}

#[test]
fn bmp_tiff_jpeg_are_read() {
    let d = tmpdir("formats");
    let rgb: Vec<u8> = (0..4 * 3 * 3).map(|i| (i * 7) as u8).collect();
    let buf = image::RgbImage::from_raw(4, 3, rgb.clone()).unwrap();
    for name in ["a.bmp", "a.tif", "a.tiff"] {
        let p = d.join(name);
        buf.save(&p).unwrap();
        let img = io::read_input(&p).unwrap();
        assert_eq!(img.shape(), [3, 3, 4], "{name}");
        assert_eq!(
            img.get(2, 1, 3),
            rgb[(4 + 3) * 3 + 2] as f32 / 255.0,
            "{name}"
        );
    }
    // 16-bit gray TIFF.
    let p = d.join("g16.tif");
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(2, 2, vec![0u16, 100, 65535, 7])
        .unwrap()
        .save(&p)
        .unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [1, 2, 2]);
    assert_eq!(img.data[2], 1.0);
    // JPEG is lossy: check shape and range only.
    let gray = image::GrayImage::from_fn(16, 8, |x, y| image::Luma([(x * 16 + y) as u8]));
    for name in ["g.jpg", "g.jpeg"] {
        let p = d.join(name);
        gray.save(&p).unwrap();
        let img = io::read_input(&p).unwrap();
        assert_eq!(img.shape(), [1, 8, 16], "{name}");
        assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn content_wins_over_a_wrong_extension() {
    let d = tmpdir("mislabelled");
    let p = d.join("really-a-bmp.png");
    let buf = image::GrayImage::from_raw(2, 2, vec![0, 51, 102, 255]).unwrap();
    buf.save_with_format(&p, image::ImageFormat::Bmp).unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape()[1..], [2, 2]);
}

// ---------------------------------------------------------------------------
// .npy

#[test]
fn npy_f32_hw_roundtrip() {
    let d = tmpdir("npy-hw");
    let data: Vec<f32> = (0..12).map(|i| i as f32 * -1.25 + 3.0).collect();
    let p = d.join("a.npy");
    io::write_npy(&p, &[3, 4], &data).unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img, Image::new(1, 3, 4, data.clone()));
    let arr = io::read_npy(&p).unwrap();
    assert_eq!(arr.shape, vec![3, 4]);
    assert_eq!(arr.data, data);
}

#[test]
fn npy_f32_chw_roundtrip_unclamped() {
    let d = tmpdir("npy-chw");
    let data: Vec<f32> = (0..2 * 3 * 5).map(|i| (i as f32 - 7.0) * 0.37).collect();
    let img = Image::new(2, 3, 5, data);
    let p = d.join("a.npy");
    io::write_output(&p, &img).unwrap();
    assert_eq!(io::read_npy(&p).unwrap().shape, vec![2, 3, 5]);
    assert_eq!(io::read_input(&p).unwrap(), img);
}

#[test]
fn npy_header_matches_numpy() {
    // numpy 2.4: np.save(f, np.zeros((2, 3), np.float32)) writes this
    // 128-byte header (format 1.0, padded with spaces to 64-byte alignment).
    let bytes = io::encode_npy(&[2, 3], &[0.0; 6]);
    let expected_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
    let header = std::str::from_utf8(&bytes[10..128]).unwrap();
    assert_eq!(header.trim_end_matches([' ', '\n']), expected_header);
    assert!(header.ends_with('\n'));
    assert_eq!(bytes.len(), 128 + 24);
    // 1-d and 0-d shapes use Python tuple syntax.
    let one = io::encode_npy(&[5], &[0.0; 5]);
    assert!(std::str::from_utf8(&one[10..64])
        .unwrap()
        .contains("'shape': (5,)"));
    let zero = io::encode_npy(&[], &[1.5]);
    assert!(std::str::from_utf8(&zero[10..64])
        .unwrap()
        .contains("'shape': ()"));
    assert_eq!(zero.len() % 64, 4);
}

#[test]
fn npy_f64_hw_and_chw_are_read() {
    let d = tmpdir("npy-f64");
    let vals: Vec<f64> = (0..6).map(|i| i as f64 * 0.1 + 1e-12).collect();
    let p = d.join("hw.npy");
    fs::write(&p, npy_bytes("<f8", false, "(2, 3)", &f64_le(&vals))).unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [1, 2, 3]);
    let want: Vec<f32> = vals.iter().map(|&v| v as f32).collect();
    assert_eq!(img.data, want);

    let vals: Vec<f64> = (0..24).map(|i| (i as f64).sqrt()).collect();
    let p = d.join("chw.npy");
    fs::write(&p, npy_bytes("<f8", false, "(2, 3, 4)", &f64_le(&vals))).unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [2, 3, 4]);
    assert_eq!(img.get(1, 2, 3), vals[23] as f32);
}

#[test]
fn npy_fortran_order_is_transposed() {
    let d = tmpdir("npy-fortran");
    // The exact bytes numpy writes for
    // np.asfortranarray(np.arange(6, dtype='<f8').reshape(2, 3) * 0.5).
    let payload = [0.0f64, 1.5, 0.5, 2.0, 1.0, 2.5];
    let p = d.join("f.npy");
    fs::write(&p, npy_bytes("<f8", true, "(2, 3)", &f64_le(&payload))).unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [1, 2, 3]);
    assert_eq!(img.data, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);

    // 3-d: element (c, y, x) sits at c + 2*y + 2*3*x in Fortran order.
    let (c, h, w) = (2, 3, 4);
    let mut fdata = vec![0.0f32; c * h * w];
    for ci in 0..c {
        for y in 0..h {
            for x in 0..w {
                fdata[ci + c * y + c * h * x] = (100 * ci + 10 * y + x) as f32;
            }
        }
    }
    let p = d.join("f3.npy");
    fs::write(&p, npy_bytes("<f4", true, "(2, 3, 4)", &f32_le(&fdata))).unwrap();
    let img = io::read_input(&p).unwrap();
    for ci in 0..c {
        for y in 0..h {
            for x in 0..w {
                assert_eq!(img.get(ci, y, x), (100 * ci + 10 * y + x) as f32);
            }
        }
    }
}

#[test]
fn npy_big_endian_and_v2_headers_are_read() {
    let d = tmpdir("npy-be-v2");
    // numpy's bytes for np.arange(6, dtype='>f4').reshape(2, 3).
    let payload: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_be_bytes()).collect();
    let p = d.join("be.npy");
    fs::write(&p, npy_bytes(">f4", false, "(2, 3)", &payload)).unwrap();
    assert_eq!(
        io::read_input(&p).unwrap().data,
        vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    );

    // Format 2.0: 4-byte header length.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 2), }\n";
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&f32_le(&[1.0, 2.0, 3.0, 4.0]));
    let p = d.join("v2.npy");
    fs::write(&p, bytes).unwrap();
    let img = io::read_input(&p).unwrap();
    assert_eq!(img.shape(), [1, 2, 2]);
    assert_eq!(img.data, vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn npy_batch_roundtrip() {
    let d = tmpdir("npy-batch");
    let batch: Vec<Image> = (0..3)
        .map(|n| Image::new(2, 3, 4, (0..24).map(|i| (n * 100 + i) as f32).collect()))
        .collect();
    let p = d.join("b.npy");
    io::write_npy_batch(&p, &batch).unwrap();
    assert_eq!(io::read_npy(&p).unwrap().shape, vec![3, 2, 3, 4]);
    assert_eq!(io::read_npy_batch(&p).unwrap(), batch);

    // read_input takes an (N, C, H, W) file only when N == 1.
    let err = io::read_input(&p).unwrap_err();
    assert!(matches!(err, IoError::WrongDims { .. }));
    assert_err_names(&err, &p, "wrong number of dimensions");
    let p1 = d.join("b1.npy");
    io::write_npy_batch(&p1, &batch[..1]).unwrap();
    assert_eq!(io::read_input(&p1).unwrap(), batch[0]);

    // A single (C, H, W) image reads as a batch of one.
    let p2 = d.join("single.npy");
    io::write_output(&p2, &batch[2]).unwrap();
    assert_eq!(io::read_npy_batch(&p2).unwrap(), vec![batch[2].clone()]);

    // Mixed shapes are refused.
    let mixed = vec![batch[0].clone(), Image::zeros(2, 3, 5)];
    let err = io::write_npy_batch(d.join("mixed.npy"), &mixed).unwrap_err();
    assert_err_names(&err, &d.join("mixed.npy"), "batch image 1");
}

// ---------------------------------------------------------------------------
// Errors

#[test]
fn missing_file_is_named() {
    let p = std::env::temp_dir().join("prior-cli-io-definitely-missing-8f3a.png");
    let err = io::read_input(&p).unwrap_err();
    assert!(matches!(err, IoError::NotFound { .. }), "{err}");
    assert_err_names(&err, &p, "not found");
    let err = io::read_input(p.with_extension("npy")).unwrap_err();
    assert_err_names(&err, &p.with_extension("npy"), "not found");
}

#[test]
fn truncated_npy_is_reported() {
    let d = tmpdir("err-trunc");
    let p = d.join("t.npy");
    fs::write(&p, npy_bytes("<f4", false, "(4, 4)", &f32_le(&[0.0; 10]))).unwrap();
    let err = io::read_input(&p).unwrap_err();
    assert!(
        matches!(
            err,
            IoError::TruncatedNpy {
                expected: 64,
                found: 40,
                ..
            }
        ),
        "{err}"
    );
    assert_err_names(&err, &p, "truncated");

    // A header length that runs past the end of the file.
    let mut bytes = npy_bytes("<f4", false, "(1, 1)", &[]);
    bytes.truncate(40);
    fs::write(&p, bytes).unwrap();
    let err = io::read_input(&p).unwrap_err();
    assert_err_names(&err, &p, "bad .npy header");

    // Only part of the preamble.
    fs::write(&p, b"\x93NUMPY\x01").unwrap();
    assert_err_names(&io::read_input(&p).unwrap_err(), &p, "bad .npy header");
}

#[test]
fn bad_magic_is_reported() {
    let d = tmpdir("err-magic");
    let p = d.join("m.npy");
    fs::write(&p, b"PK\x03\x04 this is a zip, not an npy").unwrap();
    // Inputs are recognised by content: a zip named .npy is called a zip.
    let err = io::read_input(&p).unwrap_err();
    assert!(matches!(err, IoError::NotAnInput { .. }), "{err}");
    assert_err_names(
        &err,
        &p,
        "not an image or a .npy array: it is a zip archive",
    );
    let err = io::read_npy(&p).unwrap_err();
    assert!(matches!(err, IoError::BadNpyHeader { .. }), "{err}");
    assert_err_names(&err, &p, "magic");
    fs::write(&p, b"").unwrap();
    assert_err_names(&io::read_input(&p).unwrap_err(), &p, "an empty file");
    assert_err_names(&io::read_npy(&p).unwrap_err(), &p, "magic");
}

#[test]
fn unsupported_dtype_is_reported() {
    let d = tmpdir("err-dtype");
    for (i, descr) in ["<i8", "|u1", "<f2", "<c8", "|b1"].into_iter().enumerate() {
        let p = d.join(format!("d{i}.npy"));
        fs::write(&p, npy_bytes(descr, false, "(2, 2)", &[0u8; 64])).unwrap();
        let err = io::read_input(&p).unwrap_err();
        assert!(matches!(err, IoError::UnsupportedDtype { .. }), "{err}");
        assert_err_names(&err, &p, &format!("dtype '{descr}'"));
    }
    // Structured dtype: the descr is a list.
    let p = d.join("rec.npy");
    let dict = "{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (2,), }";
    fs::write(&p, npy_raw(dict, &[0u8; 16])).unwrap();
    assert_err_names(
        &io::read_input(&p).unwrap_err(),
        &p,
        "unsupported .npy dtype",
    );
}

#[test]
fn malformed_headers_are_reported() {
    let d = tmpdir("err-header");
    let cases: &[(&str, &str)] = &[
        ("{'descr': '<f4', 'shape': (2, 2), }", "fortran_order"),
        ("{'descr': '<f4', 'fortran_order': False, }", "shape"),
        ("{'fortran_order': False, 'shape': (2, 2), }", "descr"),
        (
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 2), }",
            "fortran_order",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2), }",
            "bad .npy header",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)",
            "bad .npy header",
        ),
        ("[1, 2, 3]", "not a dict"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
            "large",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }",
            "large",
        ),
        ("((((((((((((((((((((((((((((((((((((((((", "deep"),
    ];
    for (i, (dict, needle)) in cases.iter().enumerate() {
        let p = d.join(format!("h{i}.npy"));
        fs::write(&p, npy_raw(dict, &[0u8; 16])).unwrap();
        let err = io::read_input(&p).unwrap_err();
        assert_err_names(&err, &p, needle);
    }
    // Unknown format version.
    let p = d.join("v9.npy");
    fs::write(&p, b"\x93NUMPY\x09\x00\x10\x00{}              \n").unwrap();
    assert_err_names(&io::read_input(&p).unwrap_err(), &p, "version 9.0");
}

#[test]
fn wrong_dims_and_empty_arrays_are_reported() {
    let d = tmpdir("err-dims");
    for (i, shape) in ["(4,)", "()", "(2, 1, 1, 1, 2)"].into_iter().enumerate() {
        let p = d.join(format!("w{i}.npy"));
        fs::write(&p, npy_bytes("<f4", false, shape, &[0u8; 64])).unwrap();
        let err = io::read_input(&p).unwrap_err();
        assert!(matches!(err, IoError::WrongDims { .. }), "{shape}: {err}");
        assert_err_names(&err, &p, "wrong number of dimensions");
    }
    let p = d.join("5d.npy");
    fs::write(&p, npy_bytes("<f4", false, "(1, 1, 1, 1, 1)", &[0u8; 4])).unwrap();
    assert_err_names(
        &io::read_npy_batch(&p).unwrap_err(),
        &p,
        "wrong number of dimensions",
    );
    let p = d.join("empty.npy");
    fs::write(&p, npy_bytes("<f4", false, "(0, 5)", &[])).unwrap();
    assert_err_names(&io::read_input(&p).unwrap_err(), &p, "empty");
}

#[test]
fn unsupported_extensions_are_reported() {
    let d = tmpdir("err-ext");
    let p = d.join("x.gif");
    fs::write(&p, b"GIF89a").unwrap();
    // Inputs are read by content; GIF is not a supported image format.
    let err = io::read_input(&p).unwrap_err();
    assert!(matches!(err, IoError::Decode { .. }), "{err}");
    assert_err_names(&err, &p, "cannot decode image");
    let p = d.join("noext");
    assert_err_names(&io::read_input(&p).unwrap_err(), &p, "file not found");

    let img = Image::zeros(1, 2, 2);
    let p = d.join("out.jpg");
    let err = io::write_output(&p, &img).unwrap_err();
    assert_err_names(&err, &p, "unsupported output file extension \"jpg\"");
    assert!(!p.exists());
}

#[test]
fn corrupt_images_are_reported() {
    let d = tmpdir("err-corrupt");
    let p = d.join("bad.png");
    fs::write(&p, b"\x89PNG\r\n\x1a\n then garbage").unwrap();
    let err = io::read_input(&p).unwrap_err();
    assert!(matches!(err, IoError::Decode { .. }), "{err}");
    assert_err_names(&err, &p, "cannot decode image");
    let p = d.join("bad.jpg");
    fs::write(&p, b"").unwrap();
    assert_err_names(&io::read_input(&p).unwrap_err(), &p, "an empty file");
    // A truncated real PNG.
    let good = d.join("good.png");
    io::write_output(&good, &Image::zeros(3, 16, 16)).unwrap();
    let bytes = fs::read(&good).unwrap();
    let p = d.join("cut.png");
    fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    assert_err_names(&io::read_input(&p).unwrap_err(), &p, "cannot decode image");
}

#[test]
fn png_output_needs_one_or_three_channels() {
    let d = tmpdir("err-channels");
    for c in [2usize, 4, 5] {
        let p = d.join(format!("c{c}.png"));
        let err = io::write_output(&p, &Image::zeros(c, 2, 2)).unwrap_err();
        assert!(matches!(err, IoError::UnsupportedChannels { channels, .. } if channels == c));
        assert_err_names(&err, &p, &format!("{c}-channel"));
        assert!(!p.exists());
        // .npy takes any channel count.
        io::write_output(p.with_extension("npy"), &Image::zeros(c, 2, 2)).unwrap();
    }
    let p = d.join("empty.png");
    assert_err_names(
        &io::write_output(&p, &Image::zeros(1, 0, 3)).unwrap_err(),
        &p,
        "empty",
    );
}

#[test]
fn shape_mismatches_are_reported_on_write() {
    let d = tmpdir("err-shape");
    let p = d.join("s.npy");
    let err = io::write_npy(&p, &[2, 3], &[0.0; 5]).unwrap_err();
    assert_err_names(&err, &p, "5 values");
    let bad = Image {
        c: 1,
        h: 2,
        w: 2,
        data: vec![0.0; 3],
    };
    let p = d.join("s.png");
    assert_err_names(&io::write_output(&p, &bad).unwrap_err(), &p, "needs 4");
    assert!(
        fs::read_dir(&d).unwrap().next().is_none(),
        "nothing is written"
    );
}

// ---------------------------------------------------------------------------
// Atomic writes and output safety

#[test]
fn writes_are_atomic_and_leave_no_temp_files() {
    let d = tmpdir("atomic");
    let p = d.join("o.npy");
    fs::write(&p, b"old contents").unwrap();
    io::write_npy(&p, &[2], &[1.0, 2.0]).unwrap();
    assert_eq!(io::read_npy(&p).unwrap().data, vec![1.0, 2.0]);
    io::write_output(d.join("o.png"), &Image::zeros(1, 3, 3)).unwrap();
    let names: Vec<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["o.npy", "o.png"], "stray files: {names:?}");

    // A missing directory: the error names the file, nothing is created.
    let p = d.join("no-such-dir").join("x.png");
    let err = io::write_output(&p, &Image::zeros(1, 2, 2)).unwrap_err();
    assert!(matches!(err, IoError::Write { .. }));
    assert_err_names(&err, &p, "cannot write");

    // Writing over a directory fails cleanly and removes the temp file.
    let sub = d.join("sub.npy");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("keep"), b"x").unwrap();
    let err = io::write_npy(&sub, &[1], &[0.0]).unwrap_err();
    assert_err_names(&err, &sub, "cannot write");
    assert!(sub.join("keep").exists());
    assert_eq!(fs::read_dir(&d).unwrap().count(), 3);
}

#[test]
fn relative_output_paths_work() {
    // A bare file name (no parent component) writes into the current dir;
    // use write_atomic through a path relative to the temp dir instead of
    // changing the process's current directory (tests run in parallel).
    let d = tmpdir("relative");
    let p = d.join(".").join("r.npy");
    io::write_npy(&p, &[1, 1], &[4.0]).unwrap();
    assert_eq!(io::read_input(d.join("r.npy")).unwrap().data, vec![4.0]);
}

#[test]
fn ensure_not_input_catches_the_same_file() {
    let d = tmpdir("not-input");
    let input = d.join("in.png");
    io::write_output(&input, &Image::zeros(1, 2, 2)).unwrap();
    let other = d.join("other.png");
    io::write_output(&other, &Image::zeros(1, 2, 2)).unwrap();
    let inputs = vec![other.clone(), input.clone()];

    let err = io::ensure_not_input(&input, &inputs).unwrap_err();
    assert!(matches!(err, IoError::OutputIsInput { .. }));
    assert_err_names(&err, &input, "refusing to write");
    // Another spelling of the same path.
    let alias = d.join("sub").join("..").join("in.png");
    fs::create_dir(d.join("sub")).unwrap();
    assert!(io::ensure_not_input(&alias, &inputs).is_err());
    assert!(io::ensure_not_input(&d.join(".").join("in.png"), &inputs).is_err());
    // Different or not-yet-existing outputs are fine.
    io::ensure_not_input(&d.join("out.png"), &inputs).unwrap();
    io::ensure_not_input(&d.join("in.npy"), &inputs).unwrap();
    io::ensure_not_input(&d.join("missing-dir").join("in.png"), &inputs).unwrap();
    io::ensure_not_input::<PathBuf>(&input, &[]).unwrap();

    #[cfg(unix)]
    {
        let link = d.join("link.png");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        assert!(
            io::ensure_not_input(&link, &inputs).is_err(),
            "symlink to an input"
        );
        let hard = d.join("hard.png");
        fs::hard_link(&input, &hard).unwrap();
        assert!(
            io::ensure_not_input(&hard, &inputs).is_err(),
            "hard link to an input"
        );
    }
}

// ---------------------------------------------------------------------------
// Input lists

#[test]
fn collect_inputs_expands_directories() {
    let d = tmpdir("collect");
    let dir = d.join("imgs");
    fs::create_dir(&dir).unwrap();
    for name in [
        "b.png",
        "a.npy",
        "C.JPG",
        "d.tiff",
        "notes.txt",
        ".hidden.png",
        "noext",
    ] {
        fs::write(dir.join(name), b"x").unwrap();
    }
    fs::create_dir(dir.join("sub.png")).unwrap(); // a directory, skipped
    fs::write(d.join("single.bmp"), b"x").unwrap();

    let got = io::collect_inputs(&[d.join("single.bmp"), dir.clone()]).unwrap();
    let want: Vec<PathBuf> = ["C.JPG", "a.npy", "b.png", "d.tiff"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    assert_eq!(got[0], d.join("single.bmp"));
    assert_eq!(got[1..], want[..]);

    let missing = d.join("nope.png");
    let err = io::collect_inputs(std::slice::from_ref(&missing)).unwrap_err();
    assert_err_names(&err, &missing, "not found");
    let txt = dir.join("notes.txt");
    assert_err_names(
        &io::collect_inputs(std::slice::from_ref(&txt)).unwrap_err(),
        &txt,
        "extension",
    );
    let empty = d.join("empty");
    fs::create_dir(&empty).unwrap();
    assert_err_names(
        &io::collect_inputs(std::slice::from_ref(&empty)).unwrap_err(),
        &empty,
        "no supported",
    );
}

// ---------------------------------------------------------------------------
// Real images

#[test]
fn real_gray_and_color_images_are_read() {
    let Some(gray) = shared_image("gray/Set12/01.png") else {
        return;
    };
    let img = io::read_input(&gray).unwrap();
    assert_eq!(img.shape(), [1, 256, 256]);
    assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
    let mean = img.data.iter().map(|&v| v as f64).sum::<f64>() / img.len() as f64;
    assert!((0.1..0.9).contains(&mean), "mean {mean}");
    // Every value is an exact k/255.
    assert!(img.data.iter().all(|&v| (v * 255.0).round() / 255.0 == v));

    // PNG round trip of a real image is lossless.
    let d = tmpdir("real");
    let out = d.join("01.png");
    io::ensure_not_input(&out, std::slice::from_ref(&gray)).unwrap();
    io::write_output(&out, &img).unwrap();
    assert_eq!(io::read_input(&out).unwrap(), img);
    assert!(io::ensure_not_input(&gray, std::slice::from_ref(&gray)).is_err());

    let Some(color) = shared_image("color/Set5/baby.png") else {
        return;
    };
    let img = io::read_input(&color).unwrap();
    assert_eq!(img.shape(), [3, 512, 512]);

    let set12 = gray.parent().unwrap().to_path_buf();
    let list = io::collect_inputs(&[set12]).unwrap();
    assert_eq!(list.len(), 12);
    assert_eq!(list[0].file_name().unwrap(), "01.png");
}

// ---------------------------------------------------------------------------
// Metrics

#[test]
fn mse_psnr_max_abs_diff() {
    let a = [0.0f32, 0.5, 1.0, 0.25];
    let b = [0.1f32, 0.4, 1.0, 0.25];
    let m = metrics::mse(&a, &b);
    let d01 = 0.1f32 as f64;
    let d2 = 0.5f64 - 0.4f32 as f64;
    assert!((m - (d01 * d01 + d2 * d2) / 4.0).abs() < 1e-15);
    assert!((metrics::max_abs_diff(&a, &b) - d01.max(d2)).abs() < 1e-15);
    assert_eq!(metrics::psnr(&a, &a, 1.0), f64::INFINITY);
    assert_eq!(metrics::mse(&a, &a), 0.0);
    assert_eq!(metrics::max_abs_diff(&a, &a), 0.0);
    // A constant error of 0.25 (exact in f32): MSE 1/16, PSNR 10 log10(16).
    let c: Vec<f32> = a.iter().map(|v| v + 0.25).collect();
    assert!((metrics::psnr(&a, &c, 1.0) - 10.0 * 16f64.log10()).abs() < 1e-12);
    assert!(
        (metrics::psnr(&a, &c, 255.0) - 10.0 * (16.0 * 255.0f64 * 255.0).log10()).abs() < 1e-12
    );
    assert!(metrics::max_abs_diff(&[f32::NAN], &[0.0]).is_nan());
    assert_eq!(metrics::mse(&[], &[]), 0.0);
}

#[test]
fn ssim_identity_and_small_images() {
    let img = Image::new(
        2,
        12,
        13,
        (0..2 * 12 * 13)
            .map(|i| ((i * 7) % 11) as f32 / 10.0)
            .collect(),
    );
    assert!((metrics::ssim(&img, &img) - 1.0).abs() < 1e-12);
    let small = Image::zeros(1, 10, 30);
    assert!(metrics::ssim(&small, &small).is_nan());
}

/// Case A: RGB 3×20×24, exact multiples of 1/64.
fn case_a() -> (Image, Image) {
    let (c, h, w) = (3, 20, 24);
    let mut a = Image::zeros(c, h, w);
    let mut b = Image::zeros(c, h, w);
    for ci in 0..c {
        for y in 0..h {
            for x in 0..w {
                let i = (ci * h + y) * w + x;
                a.data[i] = ((x * 3 + y * 5 + ci * 7) % 17) as f32 / 16.0;
                b.data[i] = a.data[i] + ((hash(ci, y, x) % 9) as f32 - 4.0) / 64.0;
            }
        }
    }
    (a, b)
}

/// Case B: gray 32×40, values k/255.
fn case_b() -> (Image, Image) {
    let (h, w) = (32, 40);
    let mut a = Image::zeros(1, h, w);
    let mut b = Image::zeros(1, h, w);
    for y in 0..h {
        for x in 0..w {
            let ka = ((x * x + 3 * y) % 256) as i64;
            let kb = (ka + (hash(0, y, x) % 61) as i64 - 30).clamp(0, 255);
            a.data[y * w + x] = ka as f32 / 255.0;
            b.data[y * w + x] = kb as f32 / 255.0;
        }
    }
    (a, b)
}

/// Case C: a real image and a copy with hash noise in [-20, 20] (8-bit).
fn case_c(a: &Image) -> Image {
    let mut b = a.clone();
    for y in 0..a.h {
        for x in 0..a.w {
            let i = y * a.w + x;
            let k = (a.data[i] * 255.0).round() as i64;
            let kb = (k + (hash(0, y, x) % 41) as i64 - 20).clamp(0, 255);
            b.data[i] = kb as f32 / 255.0;
        }
    }
    b
}

/// Reference values from scikit-image 0.26.0 (numpy 2.4, scipy 1.17), on
/// the same data built in Python with the same integer hash and cast to
/// float64:
///
/// ```python
/// structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
///     use_sample_covariance=False, data_range=1,
///     channel_axis=0)            # channel_axis only for case A
/// peak_signal_noise_ratio(a, b, data_range=1)
/// ```
///
/// A direct numpy implementation (scipy.ndimage.correlate1d with the
/// normalised 11-tap Gaussian, SSIM map cropped by 5 on each side) gave the
/// same values to all printed digits.
#[test]
fn ssim_reference_values() {
    let (a, b) = case_a();
    assert!((metrics::ssim(&a, &b) - 0.9914329593411387).abs() < 1e-10);
    assert!((metrics::psnr(&a.data, &b.data, 1.0) - 27.93227470989988).abs() < 1e-9);
    assert_eq!(metrics::max_abs_diff(&a.data, &b.data), 0.0625);

    let (a, b) = case_b();
    assert!((metrics::ssim(&a, &b) - 0.9277393404418576).abs() < 1e-10);
    assert!((metrics::psnr(&a.data, &b.data, 1.0) - 23.4281576248135).abs() < 1e-9);
    assert!((metrics::max_abs_diff(&a.data, &b.data) - 0.11764708161354065).abs() < 1e-12);

    // SSIM is symmetric.
    assert!((metrics::ssim(&b, &a) - 0.9277393404418576).abs() < 1e-10);
}

#[test]
fn ssim_reference_value_on_a_real_image() {
    let Some(p) = shared_image("gray/Set12/01.png") else {
        return;
    };
    let a = io::read_input(&p).unwrap();
    let b = case_c(&a);
    assert!((metrics::ssim(&a, &b) - 0.573972690278417).abs() < 1e-10);
    assert!((metrics::psnr(&a.data, &b.data, 1.0) - 26.809016809156468).abs() < 1e-9);
    assert!((metrics::max_abs_diff(&a.data, &b.data) - 0.0784313976764679).abs() < 1e-12);
}
