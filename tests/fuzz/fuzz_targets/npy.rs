//! The CLI's `.npy` reader on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = prior_cli::io::parse_npy(Path::new("fuzz.npy"), data);
});
