//! The safetensors weight-blob reader on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(blob) =
        prior_models::blob::WeightBlob::from_bytes_at(data, Path::new("fuzz.safetensors"))
    {
        let _ = blob.arch();
        let _ = blob.hparams();
        let _ = blob.noise_range();
    }
});
