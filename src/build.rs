//! Build script (kept under src/ so the top level stays as DESIGN.md fixes it): records the
//! git commit and the candle version for results' provenance.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=LLMBENCH_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let candle = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"candle-core\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LLMBENCH_CANDLE_VERSION={candle}");
    for path in [".git/HEAD", ".git/index", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
