//! Shell completions and the man page are generated from the same clap definitions as the
//! flags, so they name every subcommand and a flag added to any of them.

use crate::common::llmbench;

fn stdout_of(args: &[&str]) -> String {
    String::from_utf8(llmbench().args(args).assert().success().get_output().stdout.clone()).unwrap()
}

#[test]
fn completions_and_man_page_cover_every_subcommand_and_their_flags() {
    let subcommands = ["generate", "compare", "kvcache", "specdec", "quantize", "evaluate", "sled", "plot", "diff", "completions", "man"];
    let bash = stdout_of(&["completions", "bash"]);
    assert!(bash.contains("_llmbench()") && bash.contains("complete -F _llmbench"), "not a bash completion script");
    for flag in ["--plan", "--kv-cache", "--strategies", "--fail-on-regression", "--formats", "--group-size", "--hypotheses", "--data", "--ignore-eos", "--variant", "--bootstrap"] {
        assert!(bash.contains(flag), "bash completion lacks {flag}");
    }
    let zsh = stdout_of(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef llmbench"), "{}", &zsh[..zsh.len().min(80)]);
    let fish = stdout_of(&["completions", "fish"]);
    let man = stdout_of(&["man"]);
    assert!(man.starts_with(".ie") || man.starts_with(".TH"), "{}", &man[..man.len().min(80)]);
    assert!(man.contains(".TH llmbench"), "no title header");
    for sub in subcommands {
        assert!(bash.contains(sub) && zsh.contains(sub) && fish.contains(sub) && man.contains(sub), "{sub} missing");
    }
}
