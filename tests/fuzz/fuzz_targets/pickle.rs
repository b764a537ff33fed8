//! The restricted pickle machine on arbitrary bytes: it must return a value
//! or an error, never panic, hang or allocate without bound. The JSON
//! conversion (used for a checkpoint's `args`) runs on whatever it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = prior_models::import::pickle::unpickle(data, 0, Path::new("fuzz.pkl")) {
        let _ = out.value.to_json();
    }
});
