//! The checkpoint importer (format sniffing, the zip and legacy `torch.save`
//! readers, tensor materialisation, architecture detection) on arbitrary
//! bytes: an error or a blob, never a panic, hang or unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = prior_models::import::import_bytes(data, Path::new("fuzz.pt"));
});
