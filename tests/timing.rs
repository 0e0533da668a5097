//! Timing-sensitive tests, in their own test binary: cargo runs test binaries one after
//! another, so nothing else competes for the 2 cores while a deliberately slowed run is
//! measured (inside the main binary, parallel tests made "2 threads" no faster than 1).

#[allow(dead_code)]
mod common;

use common::{llmbench, smollm2_gguf};
use std::path::PathBuf;

fn compare(args: &[&str], out: &std::path::Path) -> assert_cmd::assert::Assert {
    llmbench().args(["compare", "--device", "cpu", "--warmup", "0", "--out"]).arg(out).args(args).assert()
}

#[test]
fn diff_against_itself_and_against_a_slowed_run() {
    let gguf = smollm2_gguf();
    let dir = tempfile::tempdir().unwrap();
    let run = |threads: &str, name: &str| -> PathBuf {
        let out = dir.path().join(name);
        compare(
            &["--model", gguf.to_str().unwrap(), "-n", "24", "-r", "6", "--methods", "standard", "--threads", threads]
                .into_iter()
                .chain(["--prompt", "The history of Rome", "--no-charts", "-q"])
                .collect::<Vec<_>>(),
            &out,
        )
        .success();
        out
    };
    let fast = run("2", "fast");
    let slow = run("1", "slow");
    let same = llmbench().arg("diff").arg(&fast).arg(&fast).args(["--fail-on-regression", "1"]).assert().success();
    let text = String::from_utf8_lossy(&same.get_output().stdout).into_owned();
    assert!(text.contains("decode tok/s") && !text.contains("yes"), "{text}");

    let slowed = llmbench().arg("diff").arg(&fast).arg(&slow).args(["--fail-on-regression", "10"]).assert().code(1);
    let text = String::from_utf8_lossy(&slowed.get_output().stdout).into_owned();
    let decode = text.lines().find(|l| l.contains("| decode tok/s |")).unwrap();
    assert!(decode.contains("yes (worse)"), "{text}");
}

