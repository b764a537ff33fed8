//! picklescan's test corpus (`../shared/reference/picklescan`, recursive):
//! every file must be refused by the importer and by `WeightBlob::load` (the
//! `-m` path) with an error that names the file and its real format —
//! never a panic, never anything executed. The per-format tally is printed
//! (`cargo test --release -p prior-models --test hostile_files -- --nocapture`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prior_models::blob::WeightBlob;
use prior_models::format::{sniff, Format};
use prior_models::import::import_checkpoint;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/picklescan")
}

fn corpus_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if !matches!(
                p.file_name().and_then(|n| n.to_str()),
                Some("LICENSE" | "README.md")
            ) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&corpus_dir(), &mut out);
    out
}

/// What the refusal of each corpus file must say: a phrase naming its real
/// format, decided here from what the files are (picklescan's own
/// descriptions), not from the sniffer under test.
pub fn expected_phrase(name: &str) -> &'static str {
    match name {
        "bad_pytorch.pt" => "a PNG image",
        "benign_password_protected.zip" | "malicious1_0x1.zip" => "password-protected",
        "malicious1.7z" => "a 7z archive",
        // A zip with a root data.pkl, or a torch zip, or a legacy file: the
        // container is read and its pickle refused for its globals.
        "malicious1.zip" | "malicious1_central_directory.zip" => "unsupported pickle global",
        // Real torch.save files, harmless but not a denoiser: a zip one
        // holding a bare tensor, a legacy one holding DistilBERT's weights.
        "new_pytorch_model.bin" => "no state_dict found: the checkpoint holds a tensor",
        "pytorch_model.bin" => "cannot determine the architecture",
        "malicious1_crc.zip" => "CRC-32 checksum does not match",
        "malicious1_wrong_ext.zip" | "malicious1_0x20.zip" | "malicious1_0x40.zip" => {
            "zip archive without a <folder>/data.pkl"
        }
        "not_a_pickle.bin" => "no known file signature",
        n if n.ends_with(".npy") => "a NumPy .npy array",
        n if n.ends_with(".npz") => "a NumPy .npz archive",
        _ => "a bare pickle stream",
    }
}

#[test]
fn every_picklescan_file_is_refused_naming_its_format() {
    let files = corpus_files();
    assert!(files.len() >= 109, "only {} corpus files", files.len());
    let mut tally: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(path).unwrap();
        *tally.entry(sniff(&bytes).name()).or_default() += 1;
        let want = expected_phrase(name);
        let import = import_checkpoint(path)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let load = WeightBlob::load(path)
            .map(|_| ())
            .map_err(|e| e.to_string());
        for (how, r) in [("import_checkpoint", import), ("WeightBlob::load", load)] {
            match r {
                Ok(()) => failures.push(format!("{name}: {how} accepted it")),
                Err(msg) => {
                    println!("{name}: {how}: {msg}");
                    if !msg.contains(&path.display().to_string()) {
                        failures.push(format!(
                            "{name}: {how}: error does not name the file: {msg}"
                        ));
                    }
                    if !msg.contains(want) {
                        failures.push(format!("{name}: {how}: expected {want:?} in: {msg}"));
                    }
                    if msg.contains("invalid safetensors") {
                        failures.push(format!("{name}: {how}: blames safetensors: {msg}"));
                    }
                }
            }
        }
    }
    println!("{} picklescan files, by sniffed format:", files.len());
    for (k, v) in &tally {
        println!("  {v:3} {k}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bare_pickles_are_named_and_their_globals_listed() {
    let p = corpus_dir().join("data/malicious1_v0.pkl");
    let bytes = std::fs::read(&p).unwrap();
    let Format::Pickle(scan) = sniff(&bytes) else {
        panic!("not sniffed as a pickle")
    };
    assert!(scan.end.is_ok(), "{:?}", scan.end);
    let msg = import_checkpoint(&p).unwrap_err().to_string();
    assert!(
        msg.contains("is not a PyTorch checkpoint: a bare pickle stream")
            && msg.contains("(torch.save writes a zip archive or the legacy format)")
            && msg.contains("__builtin__.eval"),
        "{msg}"
    );
}
