//! `llmbench chat`: a conversation over the engine. Each turn renders the whole conversation
//! with the model's chat template and tokenizes it; the KV cache keeps what it already holds of
//! those tokens (the longest common prefix with what was fed before, where the cache rolls back
//! exactly), so a turn prefills only what is new: the closing of the last reply and the new
//! message. Replies stream to stdout, a metrics line per turn goes to stderr (or one JSON
//! record per turn with `--json`).

use super::{load_model, setup, Outcome};
use crate::cli::chat::ChatArgs;
use crate::decode::DecodeStrategy;
use crate::engine::{Engine, GenerateRequest, Generation};
use crate::input::adaptivocab::{self, PhraseSource};
use crate::input::{Compressor, InputMethod};
use crate::kv::{self, KvCache};
use crate::models::chat_template::{ChatTemplate, Message};
use crate::models::tokenizer::TextTokenizer;
use anyhow::Result;
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};

pub fn run(args: &ChatArgs) -> Result<Outcome> {
    let max_new_tokens = args.generation.max_new_tokens.single("--max-new-tokens")?;
    if max_new_tokens == 0 {
        crate::bail_input!("--max-new-tokens 0: a reply needs at least 1 token");
    }
    if args.message.as_deref().is_some_and(|m| m.trim().is_empty()) {
        crate::bail_input!("--message is empty: give the text to send");
    }
    if args.phrases.is_some() && args.input != InputMethod::AdaptiVocab {
        crate::bail_input!(
            "--phrases without --input adaptivocab: add --input adaptivocab or drop --phrases"
        );
    }
    let sampling = args.generation.sampling();
    sampling.validate()?;
    let kv_options = args.generation.kv_options()?;
    let seed = args.generation.seed;
    let resolved = crate::models::source::resolve(&args.model.model, &args.model.source_options())?;
    let loaded = match args.input {
        InputMethod::AdaptiVocab => {
            // The phrases are the base tokenizer's id runs: build them, then load the model
            // with their rows (the base model is dropped first).
            let base = load_model(&args.model, &args.device, seed)?;
            crate::models::vocab_extension::llama_config(base.model.model.config())?;
            let source = args
                .phrases
                .clone()
                .map_or(PhraseSource::Defaults, PhraseSource::File);
            let extension = adaptivocab::extension(
                &adaptivocab::phrases(&source, &base.model.tokenizer)?,
                &base.model.tokenizer,
            )?;
            drop(base);
            setup::load_model_extended(&args.model, &args.device, seed, &extension)?
        }
        _ => load_model(&args.model, &args.device, seed)?,
    };
    let model = loaded.model.model.as_ref();
    let tokenizer = &loaded.model.tokenizer;
    let config = model.config();
    let template = ChatTemplate::for_model(&resolved, args.chat_template.as_deref(), tokenizer, config)?;
    let strategy = super::generate::decoding_strategy(
        "chat",
        args.decoding,
        &args.contrast,
        model,
        args.generation.repetition_penalty,
    )?;
    let engine = Engine::new(model, &loaded.device);
    let cache = kv::build_with(
        args.generation.kv_cache,
        kv_options,
        config.n_layers(),
        config.context_window(),
    );
    tracing::info!("chat template from {}", template.source);
    let mut session = Session {
        engine: &engine,
        tokenizer,
        template,
        input: args.input,
        system: args.system.clone(),
        history: vec![],
        cache,
        reuses: kv::rolls_back_exactly(args.generation.kv_cache),
        cached: vec![],
        strategy,
        request: (max_new_tokens, sampling),
        turns: vec![],
    };
    let stdout = std::io::stdout();
    let json = args.json;
    if let Some(message) = &args.message {
        let record = session.turn(message, &mut stdout.lock(), json)?;
        report(&record, json, &mut stdout.lock())?;
        return Ok(Outcome::Success);
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "chat with {} ({}); /reset, /stats, /quit",
            loaded.model.spec.id,
            template_source(&session)
        );
    }
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let text = line.trim();
        match text {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                session.reset();
                eprintln!("[conversation and cache cleared]");
            }
            "/stats" => eprintln!("{}", session.stats()),
            _ => match session.turn(text, &mut stdout.lock(), json) {
                Ok(record) => report(&record, json, &mut stdout.lock())?,
                // One bad turn (too long for the context) does not end the conversation.
                Err(e) if crate::error::exit_code(&e) == 2 => eprintln!("error: {e:#}"),
                Err(e) => return Err(e),
            },
        }
        if interactive {
            eprint!("> ");
        }
    }
    Ok(Outcome::Success)
}

fn template_source(session: &Session) -> String {
    session.template.source.clone()
}

/// What one turn did (the `--json` record).
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    pub turn: usize,
    /// The message as the model got it (after the input method).
    pub message: String,
    pub reply: String,
    /// Tokens of the whole rendered conversation, those already in the cache, and those
    /// prefilled this turn (prompt_tokens - reused_tokens).
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    pub prefill_tokens: usize,
    pub generated_tokens: usize,
    pub ttft_ms: f64,
    pub tpot_ms: f64,
    pub decode_tokens_per_s: f64,
    pub kv_cache_bytes: u64,
    pub stop_reason: crate::engine::StopReason,
}

struct Session<'a> {
    engine: &'a Engine<'a>,
    tokenizer: &'a TextTokenizer,
    template: ChatTemplate,
    input: InputMethod,
    system: Option<String>,
    history: Vec<Message>,
    cache: Box<dyn KvCache>,
    /// Whether the cache can be cut back to a prefix (else every turn starts it afresh).
    reuses: bool,
    /// The tokens whose keys and values the cache holds, in order.
    cached: Vec<u32>,
    strategy: Box<dyn DecodeStrategy>,
    request: (usize, crate::decode::sampling::SamplingConfig),
    turns: Vec<TurnRecord>,
}

impl Session<'_> {
    fn reset(&mut self) {
        self.history.clear();
        self.cache.reset();
        self.cached.clear();
    }

    fn messages(&self) -> Vec<Message> {
        self.system
            .iter()
            .map(|s| Message::new("system", s))
            .chain(self.history.iter().cloned())
            .collect()
    }

    /// Sends `text`, streams the reply to `out` (unless `json`), and records the turn.
    fn turn(&mut self, text: &str, out: &mut dyn Write, json: bool) -> Result<TurnRecord> {
        let compressor = Compressor {
            engine: self.engine,
            tokenizer: self.tokenizer,
        };
        let message = self.input.apply(text, Some(&compressor))?;
        let mut messages = self.messages();
        messages.push(Message::new("user", &message));
        let prompt = self
            .tokenizer
            .encode(&self.template.render(&messages, true)?)?;
        if prompt.is_empty() {
            crate::bail_input!("{}: the template renders the conversation to nothing; check the template", self.template.source);
        }
        let (max_new_tokens, sampling) = self.request;
        let window = self.engine.model.config().context_window();
        if prompt.len() + max_new_tokens > window {
            crate::bail_input!(
                "the conversation is {} tokens and a reply may add {max_new_tokens}: that passes the context window of {window}; /reset to start over, or lower --max-new-tokens",
                prompt.len()
            );
        }
        // Keep what the cache holds of this prompt, and at least one token to feed.
        let common = self
            .cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let reused = if self.reuses {
            common.min(prompt.len() - 1)
        } else {
            0
        };
        if reused == 0 {
            self.cache.reset();
        } else {
            self.cache.truncate(reused)?;
        }
        let request = GenerateRequest {
            prompt_ids: &prompt,
            max_new_tokens,
            sampling,
            stop_at_eos: true,
        };
        let eos = self.engine.model.config().eos_token_ids().to_vec();
        let mut streamed: Vec<u32> = vec![];
        let mut printed = 0usize;
        let mut write_error = None;
        let tokenizer = self.tokenizer;
        let generation: Generation = self.engine.generate_continuing(
            self.strategy.as_mut(),
            self.cache.as_mut(),
            &request,
            &mut |id| {
                if json || eos.contains(&id) {
                    return;
                }
                streamed.push(id);
                // Print only complete characters: a token can end inside a multi-byte one.
                if let Ok(text) = tokenizer.decode(&streamed) {
                    if !text.ends_with('\u{FFFD}') && text.len() > printed {
                        if let Err(e) =
                            write!(out, "{}", &text[printed..]).and_then(|_| out.flush())
                        {
                            write_error.get_or_insert(e);
                        }
                        printed = text.len();
                    }
                }
            },
        )?;
        if let Some(e) = write_error {
            return Err(e.into());
        }
        let reply_ids: Vec<u32> = generation
            .generated_ids
            .iter()
            .copied()
            .filter(|id| !eos.contains(id))
            .collect();
        let reply = self.tokenizer.decode(&reply_ids)?;
        if !json {
            // The streamed text is a prefix of the reply's; a decoder that rewrote earlier text
            // would break that, and then nothing more is printed rather than a panic.
            write!(out, "{}", reply.get(printed..).unwrap_or(""))?;
        }
        // What the cache now holds: the prompt, then the replies' tokens it was fed.
        let fed: Vec<u32> = prompt
            .iter()
            .chain(&generation.generated_ids)
            .copied()
            .collect();
        self.cached = fed[..self.cache.seq_len().min(fed.len())].to_vec();
        self.history.push(Message::new("user", &message));
        self.history.push(Message::new("assistant", &reply));
        let timings = generation.timings();
        let record = TurnRecord {
            turn: self.turns.len() + 1,
            message,
            reply,
            prompt_tokens: prompt.len(),
            reused_tokens: reused,
            prefill_tokens: prompt.len() - reused,
            generated_tokens: generation.generated_ids.len(),
            ttft_ms: timings.ttft_ms,
            tpot_ms: timings.tpot_ms,
            decode_tokens_per_s: timings.decode_tokens_per_s,
            kv_cache_bytes: generation.kv.kv_cache_bytes,
            stop_reason: generation.stop_reason,
        };
        self.turns.push(record.clone());
        Ok(record)
    }

    fn stats(&self) -> String {
        let sum = |f: fn(&TurnRecord) -> usize| self.turns.iter().map(f).sum::<usize>();
        let decode: Vec<f64> = self
            .turns
            .iter()
            .map(|t| t.decode_tokens_per_s)
            .filter(|v| *v > 0.0)
            .collect();
        format!(
            "[{} turns | {} tokens prefilled, {} reused from the cache | {} generated at {:.1} tok/s mean | cache holds {} tokens ({:.2} MiB)]",
            self.turns.len(),
            sum(|t| t.prefill_tokens),
            sum(|t| t.reused_tokens),
            sum(|t| t.generated_tokens),
            if decode.is_empty() { 0.0 } else { decode.iter().sum::<f64>() / decode.len() as f64 },
            self.cache.seq_len(),
            self.cache.stats().kv_cache_bytes as f64 / (1u64 << 20) as f64,
        )
    }
}

/// The turn's record on stdout (`--json`), else the end of the streamed reply on stdout and
/// the metrics line on stderr.
fn report(record: &TurnRecord, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string(record)?)?;
    } else {
        writeln!(out)?;
        out.flush()?;
        eprintln!(
            "[turn {} | prefill {} of {} tokens ({} reused from the cache), TTFT {:.1} ms | {} tokens at {:.1} tok/s | KV {:.2} MiB]",
            record.turn,
            record.prefill_tokens,
            record.prompt_tokens,
            record.reused_tokens,
            record.ttft_ms,
            record.generated_tokens,
            record.decode_tokens_per_s,
            record.kv_cache_bytes as f64 / (1u64 << 20) as f64
        );
    }
    Ok(())
}
