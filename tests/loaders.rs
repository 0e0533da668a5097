//! Bad model files through the CLI: each is an input error (exit 2) with exactly one
//! `error:` line that names the file and says what to do, never a panic. GGUF cases start
//! from a tiny valid llama GGUF (`gguf_writer`) and break one thing; dense cases start from
//! the committed fixtures. Also: the bounded GGUF reader against candle's reader on the real
//! model, and every committed fuzz finding (fuzz/regressions/) replayed through its entry point.

mod gguf_writer;

use crate::common::{fixture, llmbench, smollm2_gguf};
use candle_core::quantized::gguf_file::{self, Value};
use gguf_writer::Gguf;
use llmbench::models::{config::ModelConfig, gguf, gguf_reader, tokenizer::TextTokenizer, weights};
use std::path::{Path, PathBuf};

/// Runs `generate` on `model`; asserts exit 2, one `error:` line naming `names`, no panic,
/// and returns the line.
fn input_error(model: &Path, names: &str) -> String {
    let out = llmbench()
        .args(["generate", "--device", "cpu", "--prompt", "hi", "-n", "2", "--model"])
        .arg(model)
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(names), "the message names {names}: {stderr}");
    stderr
}

/// Writes `g` as `name` and expects an input error containing `needle`.
fn gguf_case(g: &Gguf, name: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = g.write(dir.path(), name);
    let err = input_error(&path, name);
    assert!(err.contains(needle), "{name}: expected `{needle}` in {err}");
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

/// The base of every GGUF case loads and generates: each case then fails for its one change.
#[test]
fn tiny_gguf_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = Gguf::tiny_llama().write(dir.path(), "tiny.gguf");
    let out = llmbench()
        .args(["generate", "--device", "cpu", "--prompt", "hi", "-n", "3", "--ignore-eos", "--json", "--model"])
        .arg(&path)
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("gguf F32"), "{stdout}");
}

#[test]
fn gguf_unsupported_architecture_and_tokenizer() {
    let mut g = Gguf::tiny_llama();
    g.set("general.architecture", Value::String("qwen2".into()));
    gguf_case(&g, "qwen.gguf", "architecture `qwen2` is not supported");
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.model", Value::String("llama".into()));
    gguf_case(&g, "spm.gguf", "tokenizer.ggml.model `llama` is not supported");
}

#[test]
fn gguf_missing_metadata_key() {
    let mut g = Gguf::tiny_llama();
    g.remove("llama.block_count");
    gguf_case(&g, "no-blocks.gguf", "llama.block_count is missing");
    let mut g = Gguf::tiny_llama();
    g.remove("tokenizer.ggml.tokens");
    gguf_case(&g, "no-tokens.gguf", "tokenizer.ggml.tokens is missing");
}

#[test]
fn gguf_token_types_of_wrong_length_or_type() {
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.token_type", Value::Array(vec![Value::I32(1); 7]));
    gguf_case(&g, "types-len.gguf", "token_type has 7 entries for 8 tokens");
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.token_type", strings(&["1"; 8]));
    gguf_case(&g, "types-str.gguf", "token_type[0] is the string \"1\", not an integer");
}

#[test]
fn gguf_merges_of_wrong_type() {
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.merges", Value::U32(5));
    gguf_case(&g, "merges.gguf", "tokenizer.ggml.merges is U32(5), not an array of strings");
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.merges", strings(&["h z"]));
    gguf_case(&g, "merge-oov.gguf", "building the BPE");
}

#[test]
fn gguf_huge_counts_and_lengths() {
    let mut g = Gguf::tiny_llama();
    g.tensor_count = Some(1 << 40);
    gguf_case(&g, "count.gguf", "claims 1099511627776 tensors");
    // The first key's length field (after magic, version and the two counts) claims 2^60.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Gguf::tiny_llama().bytes();
    bytes[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    let path = dir.path().join("string.gguf");
    std::fs::write(&path, bytes).unwrap();
    let err = input_error(&path, "string.gguf");
    assert!(err.contains("needs 1152921504606846976 bytes"), "{err}");
}

#[test]
fn gguf_tensor_data_offset_overflow_and_bad_alignment() {
    let mut g = Gguf::tiny_llama();
    g.tensor("token_embd.weight").offset = Some(u64::MAX - 31);
    gguf_case(&g, "offset.gguf", "tensor `token_embd.weight` needs 256 bytes at offset 18446744073709551584");
    let mut g = Gguf::tiny_llama();
    g.set("general.alignment", Value::U32(0));
    gguf_case(&g, "align.gguf", "general.alignment 0 is not a non-zero power of two");
}

#[test]
fn gguf_zero_dim_and_wrong_shape_token_embd() {
    let mut g = Gguf::tiny_llama();
    let t = g.tensor("token_embd.weight");
    t.ne = vec![];
    t.data = vec![0; 4];
    gguf_case(&g, "scalar.gguf", "tensor `token_embd.weight` has 0 dimensions");
    let mut g = Gguf::tiny_llama();
    g.tensor("token_embd.weight").ne = vec![64];
    gguf_case(&g, "flat.gguf", "token_embd.weight has shape [64], expected [vocab, 8]");
    let mut g = Gguf::tiny_llama();
    g.tensor("token_embd.weight").ne = vec![4, 16];
    gguf_case(&g, "narrow.gguf", "tensor `token_embd.weight` has shape [16, 4] but the GGUF metadata needs [16, 8]");
    let mut g = Gguf::tiny_llama();
    g.tensor("blk.0.ffn_down.weight").ne = vec![8, 16];
    gguf_case(&g, "down.gguf", "tensor `blk.0.ffn_down.weight` has shape [16, 8] but the GGUF metadata needs [8, 16]");
}

#[test]
fn gguf_token_ids_outside_the_vocabulary() {
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.bos_token_id", Value::U32(100));
    gguf_case(&g, "bos.gguf", "BOS/EOS token id 100 is outside the vocabulary of 8 tokens");
    let mut g = Gguf::tiny_llama();
    g.set("llama.vocab_size", Value::U32(4));
    gguf_case(&g, "small-vocab.gguf", "the GGUF tokenizer has 8 tokens but the model's vocabulary holds 4");
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.eos_token_id", Value::I32(-1));
    gguf_case(&g, "eos.gguf", "tokenizer.ggml.eos_token_id must be a token id (a u32), found I32(-1)");
}

#[test]
fn zero_length_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    std::fs::write(&path, b"").unwrap();
    let err = input_error(&path, "empty.gguf");
    assert!(err.contains("magic needs 4 bytes but only 0 remain"), "{err}");
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, json.to_string()).unwrap();
}

#[test]
fn safetensors_tensor_of_the_wrong_shape() {
    let dir = copy_dir(&fixture("tiny-llama"));
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    // Same bytes, transposed shape: only the shape check can tell.
    let name = "model.layers.0.mlp.down_proj.weight";
    let shape = header[name]["shape"].as_array().unwrap().clone();
    assert_eq!(shape.len(), 2);
    header[name]["shape"] = serde_json::json!([shape[1], shape[0]]);
    let mut text = header.to_string();
    // Padded to 8 bytes, as safetensors writers do.
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(&bytes[8 + n..]);
    std::fs::write(&path, out).unwrap();
    let err = input_error(dir.path(), "model.safetensors");
    assert!(err.contains("tensor `model.layers.0.mlp.down_proj.weight` has shape [128, 64] but config.json needs [64, 128]"), "{err}");
}

#[test]
fn config_with_zero_vocab_or_heads_not_dividing_hidden() {
    let dir = copy_dir(&fixture("tiny-llama"));
    edit_config(dir.path(), |c| c["vocab_size"] = 0.into());
    let err = input_error(dir.path(), "config.json");
    assert!(err.contains("vocab_size must be positive"), "{err}");

    let dir = copy_dir(&fixture("tiny-llama"));
    edit_config(dir.path(), |c| {
        c.as_object_mut().unwrap().remove("head_dim");
        c["num_attention_heads"] = 5.into();
    });
    let err = input_error(dir.path(), "config.json");
    assert!(err.contains("hidden_size 64 is not a multiple of num_attention_heads 5"), "{err}");

    let dir = copy_dir(&fixture("tiny-gpt2"));
    edit_config(dir.path(), |c| c["n_head"] = 0.into());
    let err = input_error(dir.path(), "config.json");
    assert!(err.contains("n_head must be positive"), "{err}");
}

#[test]
fn config_with_token_ids_outside_the_vocabulary() {
    let dir = copy_dir(&fixture("tiny-llama"));
    edit_config(dir.path(), |c| c["eos_token_id"] = serde_json::json!([0, 5000]));
    let err = input_error(dir.path(), "config.json");
    assert!(err.contains("BOS/EOS token id 5000 is outside the vocabulary of 1000 tokens"), "{err}");
    let dir = copy_dir(&fixture("tiny-gpt2"));
    edit_config(dir.path(), |c| c["bos_token_id"] = (1u64 << 33).into());
    let err = input_error(dir.path(), "config.json");
    assert!(err.contains("8589934592 is not a token id"), "{err}");
}

#[test]
fn directory_with_config_but_no_weights() {
    let dir = copy_dir(&fixture("tiny-llama"));
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = input_error(dir.path(), &dir.path().display().to_string());
    assert!(err.contains("no model.safetensors or model.safetensors.index.json"), "{err}");
}

/// On the real model the bounded reader sees exactly what candle's reader sees.
#[test]
fn bounded_reader_matches_candle_on_the_real_model() {
    let path = smollm2_gguf();
    let len = std::fs::metadata(&path).unwrap().len();
    let ours = gguf_reader::read_content(&mut std::io::BufReader::new(std::fs::File::open(&path).unwrap()), len).unwrap();
    let theirs = gguf_file::Content::read(&mut std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(ours.magic, theirs.magic);
    assert_eq!(ours.tensor_data_offset, theirs.tensor_data_offset);
    assert_eq!(ours.metadata.len(), theirs.metadata.len());
    for (k, v) in &theirs.metadata {
        assert_eq!(format!("{:?}", ours.metadata[k]), format!("{v:?}"), "{k}");
    }
    assert_eq!(ours.tensor_infos.len(), theirs.tensor_infos.len());
    assert!(ours.tensor_infos.len() > 100);
    for (name, t) in &theirs.tensor_infos {
        let o = &ours.tensor_infos[name];
        assert_eq!((o.ggml_dtype, o.shape.dims(), o.offset), (t.ggml_dtype, t.shape.dims(), t.offset), "{name}");
    }
}

fn regressions(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.retain(|p| p.file_name().is_some_and(|n| n != "README.md"));
    files.sort();
    files
}

/// Every crash the fuzzers found, through the same entry points the targets drive: each is
/// now refused with an error (a panic fails the test by itself).
#[test]
fn fuzz_regressions_are_errors_not_panics() {
    let mut seen = 0;
    for file in regressions("gguf_reader") {
        let bytes = std::fs::read(&file).unwrap();
        let refused = match gguf_reader::parse_header(&bytes) {
            Err(_) => true,
            Ok(content) => gguf::config_of(&content, &file).is_err(),
        };
        assert!(refused, "{} is accepted", file.display());
        seen += 1;
    }
    for file in regressions("gguf_tokenizer") {
        let bytes = std::fs::read(&file).unwrap();
        let refused = match gguf_reader::parse_header(&bytes) {
            Err(_) => true,
            Ok(content) => TextTokenizer::from_gguf_content(&content, &file).is_err(),
        };
        assert!(refused, "{} is accepted", file.display());
        seen += 1;
    }
    for file in regressions("safetensors_config") {
        let bytes = std::fs::read(&file).unwrap();
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else { continue };
        let (config, st) = rest.split_at((u32::from_le_bytes(*len) as usize).min(rest.len()));
        let config_ok = std::str::from_utf8(config).is_ok_and(|t| ModelConfig::from_json_text(t, &file).is_ok());
        let header_ok = weights::parse_safetensors_header(st).is_ok();
        assert!(!(config_ok && header_ok), "{} is accepted", file.display());
        seen += 1;
    }
    for file in regressions("results_reader") {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(llmbench::results::sink::parse_report(&text, &file).is_err(), "{} is accepted", file.display());
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} regression files under fuzz/regressions/");
}

/// Not a check: writes the committed fuzz seeds (fuzz/corpus/) from the same writer the tests
/// use. Run with `cargo test --test main loaders::write_fuzz_seeds -- --ignored`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let dir = |t: &str| {
        let d = root.join(t);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let reader = dir("gguf_reader");
    let tiny = Gguf::tiny_llama();
    tiny.write(&reader, "tiny-llama.gguf");
    let mut v2 = tiny.bytes();
    v2[4] = 2;
    std::fs::write(reader.join("tiny-llama-v2.gguf"), v2).unwrap();
    // One small tensor of every type candle reads: (type id, block, bytes per block).
    let types = [(0, 1, 4), (1, 1, 2), (30, 1, 2), (2, 32, 18), (3, 32, 20), (6, 32, 22), (7, 32, 24), (8, 32, 34), (10, 256, 84), (11, 256, 110), (12, 256, 144), (13, 256, 176), (14, 256, 210)];
    let mut quant = Gguf::tiny_llama();
    quant.tensors = types
        .iter()
        .map(|&(ty, block, size)| {
            let n = if block == 1 { 32 } else { block };
            let bytes = (n / block) * size;
            let data = (0..bytes).map(|i| (i * 7 % 61) as u8).collect();
            gguf_writer::TensorSpec { name: format!("t{ty}"), ne: vec![n as u64], dtype: ty, data, offset: None }
        })
        .collect();
    quant.write(&reader, "every-type.gguf");
    let mut header_only = Gguf::tiny_llama();
    header_only.tensors.clear();
    header_only.write(&reader, "header-only.gguf");
    header_only.write(&dir("gguf_tokenizer"), "header-only.gguf");
    let mut pre = header_only;
    pre.set("tokenizer.ggml.pre", Value::String("llama-bpe".into()));
    pre.write(&dir("gguf_tokenizer"), "llama-bpe.gguf");
    // Not "GGUF": the structured (arbitrary) half of the tokenizer target.
    std::fs::write(dir("gguf_tokenizer").join("structured.bin"), b"\x01\x02hi\x00h\x00i\x00\x05\x05\x01\x00\x00\x01hello").unwrap();

    // Inputs that crashed the loaders before the bounded reader and the config checks; the
    // replay test keeps them refused. (Hand-made from code review: the fuzz runs found none.)
    let regressions = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let reg = |t: &str| {
        let d = regressions.join(t);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    // candle's Content::read divides by general.alignment.
    let mut g = Gguf::tiny_llama();
    g.set("general.alignment", Value::U32(0));
    g.write(&reg("gguf_reader"), "alignment-zero.gguf");
    // GgufFile::config indexed dims()[0] of a 0-d token_embd.
    let mut g = Gguf::tiny_llama();
    let t = g.tensor("token_embd.weight");
    t.ne = vec![];
    t.data = vec![0; 4];
    g.write(&reg("gguf_reader"), "scalar-token-embd.gguf");
    // GgufFile::open added tensor_data_offset + offset + size unchecked.
    let mut g = Gguf::tiny_llama();
    g.tensor("token_embd.weight").offset = Some(u64::MAX - 31);
    g.write(&reg("gguf_reader"), "offset-overflow.gguf");
    // ... and multiplied dims unchecked (elem_count).
    let mut g = Gguf::tiny_llama();
    g.tensor("output_norm.weight").ne = vec![1 << 32, 1 << 32];
    g.write(&reg("gguf_reader"), "elem-count-overflow.gguf");
    // The tokenizer zipped token types of the wrong length and read strings as type 1.
    let mut g = Gguf::tiny_llama();
    g.tensors.clear();
    g.set("tokenizer.ggml.token_type", strings(&["3"; 3]));
    g.write(&reg("gguf_tokenizer"), "token-type-strings.gguf");
    // GPT-2's default n_inner was 4 * n_embd, unchecked.
    let config = br#"{"model_type":"gpt2","vocab_size":10,"n_positions":8,"n_embd":18446744073709551615,"n_layer":1,"n_head":1}"#;
    let mut seed = (config.len() as u32).to_le_bytes().to_vec();
    seed.extend(config);
    std::fs::write(reg("safetensors_config").join("gpt2-n-embd-overflow.bin"), seed).unwrap();

    let st = dir("safetensors_config");
    let mut header = br#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[4],"data_offsets":[16,24]}}"#.to_vec();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut safetensors = (header.len() as u64).to_le_bytes().to_vec();
    safetensors.extend(&header);
    safetensors.extend((0..24u8).collect::<Vec<_>>());
    for name in ["tiny-gpt2", "tiny-llama", "tiny-llama3"] {
        let config = std::fs::read(fixture(name).join("config.json")).unwrap();
        let mut seed = (config.len() as u32).to_le_bytes().to_vec();
        seed.extend(config);
        seed.extend(&safetensors);
        std::fs::write(st.join(format!("{name}.bin")), seed).unwrap();
    }
}
