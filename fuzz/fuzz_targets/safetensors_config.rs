//! Fuzz target: a config.json and a safetensors file, as the dense loader reads them. The
//! input is split in two: a little-endian u32 length, that many bytes of config.json text
//! (`ModelConfig::from_json_text`, which validates), and the rest as the safetensors file
//! (our header check, then candle's own safetensors parse of what the check accepted).
#![no_main]

use candle_core::Device;
use libfuzzer_sys::fuzz_target;
use llmbench::models::config::ModelConfig;
use llmbench::models::weights;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else { return };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (config, safetensors) = rest.split_at(len);
    if let Ok(text) = std::str::from_utf8(config) {
        let _ = ModelConfig::from_json_text(text, Path::new("config.json"));
    }
    if weights::parse_safetensors_header(safetensors).is_ok() {
        let _ = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu);
    }
});
