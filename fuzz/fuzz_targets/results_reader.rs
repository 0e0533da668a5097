//! Fuzz target: the results reader (`plot` and `diff` read files a user hands them) over
//! arbitrary UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = llmbench::results::sink::parse_report(text, Path::new("results.json"));
    }
});
