//! `llmbench chat`: the template renders as transformers' apply_chat_template does (golden from
//! tests/fixtures/make_chat_golden.py), and a conversation typed on stdin keeps its history in
//! the KV cache, so a second turn prefills only what is new.

use crate::common::{fixture, llmbench, load, smollm2_gguf};
use llmbench::models::chat_template::{ChatTemplate, Message};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixture("smollm2/chat_template_golden.json")).unwrap(),
    )
    .unwrap()
}

/// SmolLM2's own template, read from the GGUF, renders every golden conversation to
/// transformers' text, and our tokenizer gives transformers' ids for it.
#[test]
fn smollm2_template_renders_as_transformers_apply_chat_template() {
    let golden = golden();
    let resolved =
        llmbench::models::source::resolve(smollm2_gguf().to_str().unwrap(), &Default::default())
            .unwrap();
    let template = ChatTemplate::load(&resolved, None, "<|im_start|>", "<|im_end|>").unwrap();
    assert!(
        template.source.contains("tokenizer.chat_template"),
        "{}",
        template.source
    );
    let tokenizer = load(&smollm2_gguf()).tokenizer;
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
        let text = template
            .render(&messages, case["add_generation_prompt"].as_bool().unwrap())
            .unwrap();
        assert_eq!(
            text,
            case["text"].as_str().unwrap(),
            "case {}",
            case["name"]
        );
        let ids: Vec<u64> = tokenizer
            .encode(&text)
            .unwrap()
            .into_iter()
            .map(u64::from)
            .collect();
        let expected: Vec<u64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ids, expected, "case {}", case["name"]);
    }
}

fn turns(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Typed on stdin as a user would: two turns, /reset, a third. The second turn's prompt is the
/// whole conversation, of which the cache already holds the first prompt and the reply it fed
/// (every generated token but the last): only the rest is prefilled. After /reset nothing is.
#[test]
fn chat_on_stdin_reuses_the_cache_across_turns_and_resets() {
    let out = chat(&smollm2_gguf())
        .args([
            "-n",
            "24",
            "--json",
        ])
        .write_stdin("What is 2+2?\nAnd 3+3?\n/stats\n/reset\nWhat is 2+2?\n/quit\nnever sent\n")
        .assert()
        .success();
    let output = out.get_output();
    let records = turns(&output.stdout);
    assert_eq!(records.len(), 3, "/quit ends the conversation");
    let (first, second, third) = (&records[0], &records[1], &records[2]);
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap();
    assert_eq!(n(first, "reused_tokens"), 0);
    assert_eq!(n(first, "prefill_tokens"), n(first, "prompt_tokens"));
    assert_eq!(
        n(second, "reused_tokens"),
        n(first, "prompt_tokens") + n(first, "generated_tokens") - 1
    );
    assert_eq!(
        n(second, "prefill_tokens"),
        n(second, "prompt_tokens") - n(second, "reused_tokens")
    );

    // The second prompt is the rendered conversation, reply included, as tokenized alone.
    let resolved =
        llmbench::models::source::resolve(smollm2_gguf().to_str().unwrap(), &Default::default())
            .unwrap();
    let template = ChatTemplate::load(&resolved, None, "<|im_start|>", "<|im_end|>").unwrap();
    let tokenizer = load(&smollm2_gguf()).tokenizer;
    let conversation = [
        Message::new("user", "What is 2+2?"),
        Message::new("assistant", first["reply"].as_str().unwrap()),
        Message::new("user", "And 3+3?"),
    ];
    let rendered = template.render(&conversation, true).unwrap();
    assert_eq!(
        tokenizer.encode(&rendered).unwrap().len() as u64,
        n(second, "prompt_tokens")
    );
    // What is new: the rest of the first reply (its end-of-turn token) and the second message
    // with its template framing; far less than the conversation.
    let new_turn = template.render(&conversation[2..], true).unwrap().replace(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
        "",
    );
    let new_tokens = tokenizer.encode(&new_turn).unwrap().len() as u64;
    assert!(
        n(second, "prefill_tokens") <= new_tokens + 3,
        "prefill {} vs new turn {new_tokens}",
        n(second, "prefill_tokens")
    );

    // After /reset the conversation starts over: same prompt as the first turn, nothing reused,
    // the same greedy reply.
    assert_eq!(n(third, "reused_tokens"), 0);
    assert_eq!(n(third, "prompt_tokens"), n(first, "prompt_tokens"));
    assert_eq!(third["reply"], first["reply"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[2 turns |") && stderr.contains("cleared"),
        "{stderr}"
    );
}

/// `llmbench chat` on the CPU with `model`.
fn chat(model: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = llmbench();
    cmd.args(["chat", "--device", "cpu", "--model", model.to_str().unwrap()]);
    cmd
}

/// A model without a chat template is refused with the flag that fixes it; the flag then works.
#[test]
fn a_model_without_a_template_names_the_flag_and_the_flag_works() {
    let model = fixture("tiny-llama");
    let out = chat(&model).args(["--message", "hi"]).assert().code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no chat template") && stderr.contains("--chat-template FILE"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("template.jinja");
    std::fs::write(&file, "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}").unwrap();
    let out = chat(&model).args(["-n", "5", "--json", "--message", "hi there", "--chat-template"]).arg(&file).assert().success();
    let records = turns(&out.get_output().stdout);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["generated_tokens"], 5, "the random model never ends its turn");
    assert_eq!(records[0]["message"], "hi there");
}
