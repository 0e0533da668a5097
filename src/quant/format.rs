//! The weight formats `quantize` compares and `quant:FORMAT` drafts load: dense (f32, f16,
//! bf16), the GGUF block formats candle quantizes on the CPU, and our own integer formats
//! (`int_weights`). Names are llama.cpp's for GGUF types (`q4_0`, `q6_k`), and
//! `int8` / `int4[:G]` for ours.

use super::int_weights::{IntFormat, GROUP_SIZES};
use candle_core::quantized::GgmlDType;
use candle_core::DType;

/// The GGUF block formats candle's CPU quantizer writes, by their llama.cpp names.
pub const GGUF_FORMATS: [(&str, GgmlDType); 10] = [
    ("q2_k", GgmlDType::Q2K),
    ("q3_k", GgmlDType::Q3K),
    ("q4_0", GgmlDType::Q4_0),
    ("q4_1", GgmlDType::Q4_1),
    ("q4_k", GgmlDType::Q4K),
    ("q5_0", GgmlDType::Q5_0),
    ("q5_1", GgmlDType::Q5_1),
    ("q5_k", GgmlDType::Q5K),
    ("q6_k", GgmlDType::Q6K),
    ("q8_0", GgmlDType::Q8_0),
];

/// The llama.cpp name of a GGUF type ("q4_0"), "f32" / "f16" for the float types.
pub fn gguf_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "f32",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        _ => GGUF_FORMATS.iter().find(|(_, f)| *f == dtype).map_or("?", |(n, _)| n),
    }
}

/// Bits per weight of a GGUF type by its definition: block bytes x 8 / values per block.
pub fn gguf_bits_per_weight(dtype: GgmlDType) -> f64 {
    dtype.type_size() as f64 * 8.0 / dtype.block_size() as f64
}

/// One weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// Dense weights in this dtype (f32, f16, bf16); the model computes in it.
    Dense(DType),
    /// A GGUF block format through candle's quantizer (and our kernels for q4_0/q4_1/q8_0).
    Gguf(GgmlDType),
    /// Our integer formats through our kernels.
    Int(IntFormat),
}

impl WeightFormat {
    /// `f32`, `q4_0`, `int8`, `int4` (group `default_group`) or `int4:G`.
    pub fn parse(item: &str, default_group: usize) -> Result<Self, String> {
        let dense = [("f32", DType::F32), ("f16", DType::F16), ("bf16", DType::BF16)];
        if let Some((_, d)) = dense.iter().find(|(n, _)| *n == item) {
            return Ok(Self::Dense(*d));
        }
        if let Some((_, g)) = GGUF_FORMATS.iter().find(|(n, _)| *n == item) {
            return Ok(Self::Gguf(*g));
        }
        if item == "int8" {
            return Ok(Self::Int(IntFormat::Int8));
        }
        let group = match item.strip_prefix("int4") {
            Some("") => default_group,
            Some(rest) => rest
                .strip_prefix(':')
                .map(|g| g.trim_start_matches('g'))
                .and_then(|g| g.parse().ok())
                .ok_or_else(|| format!("`{item}`: write int4 or int4:G with G one of {GROUP_SIZES:?}"))?,
            None => {
                let names: Vec<&str> = dense.iter().map(|(n, _)| *n).chain(GGUF_FORMATS.iter().map(|(n, _)| *n)).collect();
                return Err(format!("unknown format `{item}`; use one of {}, int8, int4, int4:G", names.join(", ")));
            }
        };
        if !GROUP_SIZES.contains(&group) {
            return Err(format!("`{item}`: int4's group size must be one of {GROUP_SIZES:?}, not {group}"));
        }
        Ok(Self::Int(IntFormat::Int4 { group }))
    }

    /// The name `parse` reads back ("int4:g128" for int4).
    pub fn name(&self) -> String {
        match self {
            Self::Dense(DType::F16) => "f16".into(),
            Self::Dense(DType::BF16) => "bf16".into(),
            Self::Dense(_) => "f32".into(),
            Self::Gguf(g) => gguf_name(*g).into(),
            Self::Int(f) => f.name(),
        }
    }

    /// Bits per weight by the format's definition, for rows of `k` inputs.
    pub fn bits_per_weight(&self, k: usize) -> f64 {
        match self {
            Self::Dense(d) => d.size_in_bytes() as f64 * 8.0,
            Self::Gguf(g) => gguf_bits_per_weight(*g),
            Self::Int(f) => f.bits_per_weight(k),
        }
    }

    /// The dtype the model computes in with this format.
    pub fn compute_dtype(&self) -> DType {
        match self {
            Self::Dense(d) => *d,
            _ => DType::F32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's table of bits per weight (ggml.c type traits: block bytes / values), which
    /// candle's type sizes must reproduce.
    #[test]
    fn gguf_bits_per_weight_are_the_formats_definitions() {
        let expected = [
            ("q2_k", 2.625),
            ("q3_k", 3.4375),
            ("q4_0", 4.5),
            ("q4_1", 5.0),
            ("q4_k", 4.5),
            ("q5_0", 5.5),
            ("q5_1", 6.0),
            ("q5_k", 5.5),
            ("q6_k", 6.5625),
            ("q8_0", 8.5),
        ];
        for (name, bpw) in expected {
            let f = WeightFormat::parse(name, 128).unwrap();
            assert_eq!(f.bits_per_weight(4096), bpw, "{name}");
            assert_eq!(f.name(), name);
        }
        assert_eq!(WeightFormat::parse("bf16", 128).unwrap().bits_per_weight(1), 16.0);
    }

    #[test]
    fn parses_int_formats_and_rejects_the_rest() {
        assert_eq!(WeightFormat::parse("int4", 64).unwrap(), WeightFormat::Int(IntFormat::Int4 { group: 64 }));
        assert_eq!(WeightFormat::parse("int4:32", 128).unwrap().name(), "int4:g32");
        assert_eq!(WeightFormat::parse("int4:g32", 128).unwrap().name(), "int4:g32");
        for bad in ["q1_x", "int4:48", "int4:x", "int3", "F32"] {
            assert!(WeightFormat::parse(bad, 128).is_err(), "{bad}");
        }
    }
}
