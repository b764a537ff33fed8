//! Limits before allocation: files that declare sizes they do not hold (a
//! tensor of 2^40 elements over a 4-element storage, a zip entry of 4 GiB in
//! a 1 KiB file, a deflated entry, a pickle with a million-deep stack, a
//! safetensors header of 2^60 bytes, ...) are refused with a clear error
//! before any memory is reserved for what they declare. Each case prints how
//! long the refusal took (for the notes; never asserted).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use prior_models::blob::WeightBlob;
use prior_models::error::ImportError;
use prior_models::import::{import_bytes, pickle};

// ---------------------------------------------------------------- builders

/// A pickle program, opcode by opcode.
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn proto2() -> P {
        P(vec![0x80, 2])
    }
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.op(b'X')
            .raw(&(s.len() as u32).to_le_bytes())
            .raw(s.as_bytes())
    }
    fn int(&mut self, n: u64) -> &mut Self {
        if n < 256 {
            self.op(b'K').op(n as u8)
        } else if n < 1 << 31 {
            self.op(b'J').raw(&(n as u32).to_le_bytes())
        } else {
            self.op(0x8a).op(9).raw(&n.to_le_bytes()).op(0)
        }
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    fn tuple(&mut self, items: &[u64]) -> &mut Self {
        self.op(b'(');
        for &i in items {
            self.int(i);
        }
        self.op(b't')
    }
    /// `OrderedDict([(name, tensor)])` for one float32 tensor.
    fn state_dict(
        name: &str,
        key: &str,
        numel: u64,
        offset: u64,
        size: &[u64],
        stride: &[u64],
    ) -> Vec<u8> {
        let mut p = P::proto2();
        p.global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(b'(');
        p.str(name)
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b'(');
        p.op(b'(')
            .str("storage")
            .global("torch", "FloatStorage")
            .str(key)
            .str("cpu")
            .int(numel);
        p.op(b't').op(b'Q');
        p.int(offset).tuple(size).tuple(stride).op(0x89);
        p.global("collections", "OrderedDict").op(b')').op(b'R');
        p.op(b't').op(b'R').op(b'u').op(b'.');
        p.0
    }
}

/// A stored zip `torch.save` file: `archive/data.pkl` and `archive/data/<key>`.
fn torch_zip(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opt = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("archive/data.pkl", opt).unwrap();
        z.write_all(pkl).unwrap();
        for (k, b) in storages {
            z.start_file(format!("archive/data/{k}"), opt).unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// Offsets of the central-directory headers (`PK\x01\x02`) of a zip.
fn central_headers(zip: &[u8]) -> Vec<usize> {
    (0..zip.len().saturating_sub(4))
        .filter(|&i| &zip[i..i + 4] == b"PK\x01\x02")
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Runs `f`, prints how long it took, returns its error message.
fn refused<T, E: std::fmt::Display>(what: &str, f: impl FnOnce() -> Result<T, E>) -> String {
    let t = Instant::now();
    let r = f();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => {
            let msg = e.to_string();
            println!("{what}: refused in {ms:.1} ms: {msg}");
            msg
        }
    }
}

const PATH: &str = "hostile.pt";

// ---------------------------------------------------------------- tensors

#[test]
fn zero_and_overlapping_strides_cannot_describe_huge_tensors() {
    let storage = [("0", f32_bytes(&[1.0, 2.0, 3.0, 4.0]))];
    // 2^40 elements, all reading element 0: 4 TiB if materialised.
    let pkl = P::state_dict("w", "0", 4, 0, &[1 << 40], &[0]);
    let bytes = torch_zip(&pkl, &storage);
    let msg = refused("zero stride", || import_bytes(&bytes, Path::new(PATH)));
    assert!(
        msg.contains("overlapping strides") && msg.contains("tensor w"),
        "{msg}"
    );
    // 2^20 x 2^20 over a 4-element storage.
    let pkl = P::state_dict("w", "0", 4, 0, &[1 << 20, 1 << 20], &[0, 0]);
    let bytes = torch_zip(&pkl, &storage);
    let msg = refused("zero strides 2-D", || import_bytes(&bytes, Path::new(PATH)));
    assert!(msg.contains("overlapping strides"), "{msg}");
    // size x stride overflows usize.
    let pkl = P::state_dict("w", "0", 4, 0, &[1 << 40, 2], &[1 << 40, 1]);
    let bytes = torch_zip(&pkl, &storage);
    let msg = refused("size x stride overflow", || {
        import_bytes(&bytes, Path::new(PATH))
    });
    assert!(
        msg.contains("overlapping strides") || msg.contains("overflow"),
        "{msg}"
    );
    // A legitimate strided (transposed) view still imports into a blob's
    // tensors (architecture detection then refuses the toy key name).
    let pkl = P::state_dict("w", "0", 4, 0, &[2, 2], &[1, 2]);
    let bytes = torch_zip(&pkl, &storage);
    let ck = prior_models::import::read_checkpoint(&bytes, Path::new(PATH)).unwrap();
    assert_eq!(ck.tensors["w"].data, vec![1.0, 3.0, 2.0, 4.0]);
}

#[test]
fn storage_sizes_are_checked_against_the_bytes_present() {
    // The pickle declares 2^60 floats; the entry holds 16 bytes.
    let pkl = P::state_dict("w", "0", 1 << 60, 0, &[4], &[1]);
    let bytes = torch_zip(&pkl, &[("0", f32_bytes(&[1.0; 4]))]);
    let msg = refused("storage of 2^60 elements", || {
        import_bytes(&bytes, Path::new(PATH))
    });
    assert!(
        msg.contains("wrong size") && msg.contains("16 bytes"),
        "{msg}"
    );

    // Legacy: the pickle and the file's count agree on 2^61 elements, but
    // the file ends after 16 bytes of data.
    let n = 1u64 << 61;
    let f = torch_legacy(
        &P::state_dict("w", "0", n, 0, &[4], &[1]),
        n,
        &f32_bytes(&[1.0; 4]),
    );
    let msg = refused("legacy storage of 2^61 elements", || {
        import_bytes(&f, Path::new(PATH))
    });
    assert!(
        msg.contains("storage 0") || msg.contains("truncated"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- zip

#[test]
fn zip_entries_declaring_more_than_the_file_holds_are_refused() {
    let pkl = P::state_dict("w", "0", 4, 0, &[4], &[1]);
    let good = torch_zip(&pkl, &[("0", f32_bytes(&[1.0; 4]))]);
    let cds = central_headers(&good);
    assert_eq!(cds.len(), 2);

    // The storage entry's central-directory sizes patched to ~4 GiB
    // (compressed and uncompressed), in a file of a few hundred bytes.
    let mut bomb = good.clone();
    for field in [20, 24] {
        bomb[cds[1] + field..cds[1] + field + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    }
    let msg = refused("stored entry of 4 GiB", || {
        import_bytes(&bomb, Path::new(PATH))
    });
    assert!(msg.contains("zip"), "{msg}");

    // Only the uncompressed size inflated: what a zip bomb declares.
    let mut bomb = good.clone();
    bomb[cds[1] + 24..cds[1] + 28].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let msg = refused("stored entry claiming to expand", || {
        import_bytes(&bomb, Path::new(PATH))
    });
    assert!(msg.contains("zip"), "{msg}");

    // data.pkl marked deflated (method 8) with a 4 GiB uncompressed size:
    // compressed entries are refused, never inflated.
    let mut deflated = good.clone();
    let local = 0; // data.pkl is the first entry
    deflated[local + 8..local + 10].copy_from_slice(&8u16.to_le_bytes());
    deflated[cds[0] + 10..cds[0] + 12].copy_from_slice(&8u16.to_le_bytes());
    deflated[cds[0] + 24..cds[0] + 28].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let msg = refused("deflated data.pkl", || {
        import_bytes(&deflated, Path::new(PATH))
    });
    assert!(msg.contains("compressed") || msg.contains("zip"), "{msg}");
    assert!(msg.contains(PATH), "{msg}");
}

// ---------------------------------------------------------------- pickle

fn unpickle_err(what: &str, data: &[u8]) -> String {
    refused(what, || {
        pickle::unpickle(data, 0, Path::new("hostile.pkl")).map(|_| ())
    })
}

#[test]
fn pickle_machine_bounds() {
    use pickle::limits::*;
    // Stack: one more None than allowed.
    let mut p = vec![b'N'; MAX_STACK + 2];
    p.push(b'.');
    let msg = unpickle_err("stack", &p);
    assert!(
        msg.contains("stack depth") && msg.contains("exceeds the limit"),
        "{msg}"
    );

    // MARK nesting.
    let mut p = vec![b'('; MAX_MARKS + 2];
    p.push(b'.');
    let msg = unpickle_err("marks", &p);
    assert!(msg.contains("MARK nesting depth"), "{msg}");

    // Memo: MEMOIZE the same value again and again.
    let mut p = vec![0x80, 4, b'N'];
    p.extend(std::iter::repeat_n(0x94, MAX_MEMO + 2));
    p.push(b'.');
    let msg = unpickle_err("memo", &p);
    assert!(msg.contains("memo size"), "{msg}");

    // Opcode count: push/pop pairs keep the stack empty.
    let mut p = Vec::with_capacity(MAX_OPS + 4);
    for _ in 0..MAX_OPS / 2 + 2 {
        p.extend_from_slice(b"N0");
    }
    p.extend_from_slice(b"N.");
    let msg = unpickle_err("opcodes", &p);
    assert!(msg.contains("opcode count"), "{msg}");

    // Dicts with many non-string keys (compared one by one).
    let mut p = P::proto2();
    p.op(b'}').op(b'(');
    for i in 0..(pickle::MAX_OTHER_KEYS as u64 + 1) {
        p.int(i).op(b'N');
    }
    p.op(b'u').op(b'.');
    let msg = unpickle_err("non-string keys", &p.0);
    assert!(msg.contains("non-string keys"), "{msg}");
}

#[test]
fn deep_nesting_neither_overflows_the_stack_nor_explodes() {
    // A tuple nested a million levels deep (one byte per level): building,
    // converting to JSON and dropping it must not recurse that deep.
    let mut p = vec![b'N'];
    p.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    p.push(b'.');
    let t = Instant::now();
    let out = pickle::unpickle(&p, 0, Path::new("deep.pkl")).unwrap();
    let json = out.value.to_json().to_string();
    assert!(
        json.contains("<nested too deeply>"),
        "{}",
        &json[..200.min(json.len())]
    );
    drop(out);
    println!(
        "1e6-deep tuple: built, converted and dropped in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // Lists nested 500 000 deep through APPEND.
    let mut p = vec![b']'; 500_000];
    p.extend(std::iter::repeat_n(b'a', 499_999));
    p.push(b'.');
    let out = pickle::unpickle(&p, 0, Path::new("deep_lists.pkl")).unwrap();
    drop(out);

    // Shared sub-structures: t_k = (t_{k-1}, t_{k-1}), 60 levels, so 2^60
    // leaves as a tree; to_json stops at its node budget.
    let mut p = vec![b'N'];
    for _ in 0..60 {
        p.extend_from_slice(&[b'2', 0x86]);
    }
    p.push(b'.');
    let t = Instant::now();
    let out = pickle::unpickle(&p, 0, Path::new("dag.pkl")).unwrap();
    let json = out.value.to_json().to_string();
    assert!(json.contains("<truncated>") || json.contains("<nested too deeply>"));
    println!(
        "2^60-leaf shared tuple converted in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // A list that contains itself, converted to JSON.
    let p = b"]q\x00h\x00a.";
    let out = pickle::unpickle(p, 0, Path::new("cycle.pkl")).unwrap();
    assert!(out
        .value
        .to_json()
        .to_string()
        .contains("<nested too deeply>"));
}

#[test]
fn hostile_pickles_in_checkpoints_name_where_they_are() {
    // A bad opcode inside a zip checkpoint's data.pkl.
    let bytes = torch_zip(b"\x80\x02\xff.", &[]);
    let err = import_bytes(&bytes, Path::new(PATH)).unwrap_err();
    assert!(matches!(err, ImportError::Pickle { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("zip entry archive/data.pkl") && msg.contains("unknown opcode 0xff"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- safetensors

fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn safetensors_sizes_are_checked() {
    let origin = Path::new("hostile.safetensors");
    // Header length 2^60.
    let mut b = (1u64 << 60).to_le_bytes().to_vec();
    b.extend_from_slice(b"{\"w\":{}}");
    let msg = refused("safetensors header of 2^60 bytes", || {
        WeightBlob::from_bytes_at(&b, origin)
    });
    assert!(
        msg.contains("hostile.safetensors") && msg.contains("header"),
        "{msg}"
    );
    // Offsets past the data.
    let b = safetensors(
        r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1099511627776]}}"#,
        &[0; 16],
    );
    let msg = refused("safetensors offsets past the end", || {
        WeightBlob::from_bytes_at(&b, origin)
    });
    assert!(msg.contains("hostile.safetensors"), "{msg}");
    // Shape whose element count overflows, over 16 bytes.
    let b = safetensors(
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
        &[0; 16],
    );
    let msg = refused("safetensors shape overflow", || {
        WeightBlob::from_bytes_at(&b, origin)
    });
    assert!(msg.contains("hostile.safetensors"), "{msg}");
    // Shape disagreeing with the byte range.
    let b = safetensors(
        r#"{"w":{"dtype":"F32","shape":[1000000],"data_offsets":[0,16]}}"#,
        &[0; 16],
    );
    let msg = refused("safetensors shape larger than its bytes", || {
        WeightBlob::from_bytes_at(&b, origin)
    });
    assert!(msg.contains("hostile.safetensors"), "{msg}");
}

#[test]
fn a_namespace_built_twice_with_the_same_dict_is_no_double_borrow() {
    // NEWOBJ argparse.Namespace; BUILD with dict D (memo 0); BUILD with D
    // again: merging D into itself used to borrow its RefCell twice (panic).
    let mut p = P::proto2();
    p.global("argparse", "Namespace").op(b')').op(0x81);
    p.op(b'}')
        .op(b'q')
        .op(0)
        .op(b'b')
        .op(b'h')
        .op(0)
        .op(b'b')
        .op(b'.');
    let out = pickle::unpickle(&p.0, 0, Path::new("ns.pkl")).unwrap();
    assert_eq!(out.value.to_json(), serde_json::json!({}));
}

// ---------------------------------------------------------------- mutations

/// A small legacy `torch.save` file with one 4-float storage.
fn torch_legacy(pkl: &[u8], numel: u64, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80, 2, 0x8a, 10];
    f.extend_from_slice(&0x1950a86a20f9469cfc6cu128.to_le_bytes()[..10]);
    f.push(b'.');
    f.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']);
    f.extend_from_slice(&[0x80, 2, b'}', b'.']);
    f.extend_from_slice(pkl);
    let mut keys = P::proto2();
    keys.op(b']').op(b'(').str("0").op(b'e').op(b'.');
    f.extend_from_slice(&keys.0);
    f.extend_from_slice(&numel.to_le_bytes());
    f.extend_from_slice(data);
    f
}

/// Every single-byte corruption (three values per position) and every
/// truncation of small zip and legacy checkpoints: an error or a result,
/// never a panic. A deterministic complement to the fuzz targets that runs
/// in every `cargo test`.
#[test]
fn every_byte_corruption_and_truncation_is_an_error_not_a_panic() {
    let pkl = P::state_dict("w", "0", 4, 1, &[3], &[1]);
    let data = f32_bytes(&[1.0, 2.0, 3.0, 4.0]);
    let files = [
        ("zip", torch_zip(&pkl, &[("0", data.clone())])),
        ("legacy", torch_legacy(&pkl, 4, &data)),
    ];
    let mut tried = 0usize;
    for (kind, good) in &files {
        let ck = prior_models::import::read_checkpoint(good, Path::new(PATH)).unwrap();
        assert_eq!(ck.tensors["w"].data, vec![2.0, 3.0, 4.0], "{kind}");
        let mut variants: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        for i in 0..good.len() {
            for v in [0x00u8, 0xff, good[i] ^ 0x80] {
                let mut b = good.clone();
                b[i] = v;
                variants.push(b);
            }
        }
        for b in variants {
            tried += 1;
            let r = std::panic::catch_unwind(|| {
                let _ = import_bytes(&b, Path::new(PATH));
                let _ = pickle::unpickle(&b, 0, Path::new(PATH));
                let _ = WeightBlob::from_bytes_at(&b, Path::new(PATH));
            });
            assert!(r.is_ok(), "{kind}: panicked on {b:02x?}");
        }
    }
    println!("{tried} corrupted or truncated checkpoints: no panic");
}
