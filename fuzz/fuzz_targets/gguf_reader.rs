//! Fuzz target: the bounded GGUF header reader over arbitrary bytes (magic, counts, metadata,
//! tensor infos, alignment, data offsets), then what the loader does with what it accepted:
//! the llama config from the metadata, and every tensor read and dequantized.
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use llmbench::models::{gguf, gguf_reader};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(content) = gguf_reader::parse_header(data) else { return };
    let _ = gguf::config_of(&content, Path::new("fuzz.gguf"));
    // The reader promised every tensor's bytes lie inside the input: reading must not fail
    // for lack of data, and nothing may panic.
    let mut cursor = std::io::Cursor::new(data);
    for name in content.tensor_infos.keys() {
        if let Ok(q) = content.tensor(&mut cursor, name, &Device::Cpu) {
            let _ = q.dequantize(&Device::Cpu);
        }
    }
});
