//! A teacher served over HTTP: [`RemoteTeacher`] runs the model on a server (llama.cpp's
//! `llama-server`, or an OpenAI-style server such as vLLM) and keeps tokenization, the chat
//! template and token ids local, from the same model's GGUF loaded vocabulary-only
//! (`--tokenizer`). Before any work the server's tokenizer is checked against it with a probe.
//!
//! The recorder sees it as any [`Teacher`]: its [`Decode`] sends each job as one request,
//! `parallel` at a time, and builds the same [`Sequence`]s the in-process session does.

pub mod client;
pub mod llama_server;
pub mod openai;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use client::Client;

use super::{Decode, Job, LlamaTeacher, Sequence, SessionParams, Stop, Teacher, TeacherInfo};
use crate::corpus::Message;
use crate::{Error, Result};

/// The text whose tokens are compared with the server's: words, digits, punctuation,
/// whitespace runs and multi-byte characters, where tokenizers tend to differ.
pub const PROBE: &str =
    "Distill probe: Hello, world! 12345 + 0.5 = ?\n\tcafé naïve — 日本語 🙂  end.";

/// The HTTP API a teacher server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Api {
    /// llama.cpp's llama-server: `/completion` with `n_probs` (generate mode only).
    #[default]
    LlamaServer,
    /// An OpenAI-style `/v1/completions` with token-id prompts (vLLM; score mode needs its
    /// `prompt_logprobs` extension).
    Openai,
}

impl Api {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Api::LlamaServer => "llama-server",
            Api::Openai => "openai",
        }
    }
}

/// Which server answered: stored as `teacher.remote` in the corpus manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteInfo {
    /// The server's base URL.
    pub url: String,
    /// Its API.
    pub api: Api,
    /// The model name the server reports.
    pub model: String,
}

/// The server's most likely next tokens: ids and log-probabilities, best first, and how
/// many prompt tokens its cache reused (0 when it does not say).
#[derive(Debug, Clone, PartialEq)]
pub struct Next {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Their log-probabilities.
    pub logprobs: Vec<f32>,
    /// Prompt tokens the server did not compute again.
    pub cached: usize,
}

/// The server's own account of its work (llama-server's `timings`), summed over requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerTimes {
    /// Requests that reported timings.
    pub requests: u64,
    /// Prompt tokens computed (not taken from its cache) and the milliseconds they took.
    pub prompt: (u64, f64),
    /// Tokens written and the milliseconds they took.
    pub predicted: (u64, f64),
}

impl ServerTimes {
    fn add(&mut self, timings: &Value) {
        let n = |k: &str| timings.get(k).and_then(Value::as_u64).unwrap_or(0);
        let ms = |k: &str| timings.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        self.requests += 1;
        self.prompt.0 += n("prompt_n");
        self.prompt.1 += ms("prompt_ms");
        self.predicted.0 += n("predicted_n");
        self.predicted.1 += ms("predicted_ms");
    }

    /// Prompt and decode tokens per second, by the server's clock (summed over requests
    /// that may have run in parallel slots, so a lower bound on its throughput).
    pub fn rates(&self) -> (f64, f64) {
        let rate = |(n, ms): (u64, f64)| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
        (rate(self.prompt), rate(self.predicted))
    }
}

/// A teacher on a server, with a local vocabulary.
pub struct RemoteTeacher {
    vocab: LlamaTeacher,
    client: Client,
    api: Api,
    model: String,
    info: TeacherInfo,
    times: std::sync::Mutex<ServerTimes>,
}

/// What one request returned, before it becomes a [`Sequence`]: the response tokens and their
/// `[tokens, k]` top-k rows; `cut` when the server's reply ended early (a token without
/// log-probabilities).
#[derive(Debug, Default, Clone)]
pub struct Reply {
    /// Response tokens with a distribution each.
    pub tokens: Vec<u32>,
    /// `[tokens, k]` ids.
    pub ids: Vec<u32>,
    /// `[tokens, k]` log-probabilities.
    pub logprobs: Vec<f32>,
    /// The reply held tokens after the last one kept.
    pub cut: bool,
}

impl RemoteTeacher {
    /// Connect to the server at `url` speaking `api`, with the vocabulary of the GGUF at
    /// `tokenizer` (`sha256` is that file's digest); each request is bounded by `timeout`.
    ///
    /// # Errors
    /// [`Error::Gguf`] for a bad tokenizer file, [`Error::Remote`] when the server's
    /// tokenizer differs from it, and the client's errors when the server cannot be reached.
    pub fn connect(
        url: &str,
        api: Api,
        tokenizer: &Path,
        sha256: String,
        timeout: Duration,
    ) -> Result<Self> {
        let mut vocab = LlamaTeacher::load_vocab(tokenizer)?;
        let client = Client::new(url, timeout);
        let models = client.get("/v1/models")?;
        let first = models.pointer("/data/0");
        let model = first
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let remote_err = |reason: String| Error::Remote {
            url: client.base().to_string(),
            reason,
        };
        if let Some(n) = first
            .and_then(|m| m.pointer("/meta/n_vocab"))
            .and_then(Value::as_u64)
            && n as usize != vocab.info.n_vocab
        {
            return Err(remote_err(format!(
                "the server's model '{model}' has a vocabulary of {n}, --tokenizer '{}' one of {}: give the GGUF of the model the server runs",
                tokenizer.display(),
                vocab.info.n_vocab
            )));
        }
        let theirs = match api {
            Api::LlamaServer => client.post(
                "/tokenize",
                &json!({"content": PROBE, "add_special": false, "parse_special": false}),
            )?,
            Api::Openai => {
                let v = client.post(
                    "/tokenize",
                    &json!({"model": model, "prompt": PROBE, "add_special_tokens": false}),
                )?;
                let none = v
                    .get("tokens")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
                if none {
                    // llama-server's OpenAI-compatible side tokenizes `content`.
                    client.post(
                        "/tokenize",
                        &json!({"content": PROBE, "add_special": false, "parse_special": false}),
                    )?
                } else {
                    v
                }
            }
        };
        let theirs: Option<Vec<u32>> = theirs
            .get("tokens")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|t| t.as_u64().map(|t| t as u32)).collect());
        let ours = vocab.tokenize(PROBE, false);
        match theirs {
            Some(t) if t == ours => {}
            Some(t) => {
                let at = t.iter().zip(&ours).take_while(|(a, b)| a == b).count();
                return Err(remote_err(format!(
                    "the server's tokenizer differs from --tokenizer '{}': a probe text gives {} tokens there and {} here, first difference at token {at}; give the GGUF of the model the server runs",
                    tokenizer.display(),
                    t.len(),
                    ours.len()
                )));
            }
            None => {
                return Err(remote_err(
                    "its /tokenize reply holds no 'tokens', so its tokenizer cannot be checked; is --teacher-api right?".into(),
                ));
            }
        }
        vocab.info.sha256 = sha256;
        // A vocabulary-only load counts no weights; llama-server says how many it runs.
        if let Some(n) = first
            .and_then(|m| m.pointer("/meta/n_params"))
            .and_then(Value::as_u64)
        {
            vocab.info.n_params = n;
        }
        let mut info = vocab.info.clone();
        info.remote = Some(Box::new(RemoteInfo {
            url: client.base().to_string(),
            api,
            model: model.clone(),
        }));
        Ok(Self {
            vocab,
            client,
            api,
            model,
            info,
            times: std::sync::Mutex::new(ServerTimes::default()),
        })
    }

    /// What the server reported of its own time so far (none from a server without
    /// `timings`, such as vLLM).
    pub fn times(&self) -> ServerTimes {
        self.times.lock().map(|t| *t).unwrap_or_default()
    }

    fn note_times(&self, reply: &Value) {
        if let (Some(t), Ok(mut times)) = (reply.get("timings"), self.times.lock()) {
            times.add(t);
        }
    }

    /// The API and the model name the server reported.
    pub fn describe(&self) -> (Api, &str) {
        (self.api, &self.model)
    }

    /// The server's distribution over the token after `tokens`: its `k` most likely tokens
    /// with log-probabilities (one request of one greedy token, the server's prompt cache
    /// kept, so a conversation costs one new token per request).
    ///
    /// # Errors
    /// As the client's requests; [`Error::Remote`] for a reply without log-probabilities.
    pub fn next(&self, tokens: &[u32], k: usize) -> Result<Next> {
        let k = k.min(self.info.n_vocab).max(1);
        let remote_err = |reason: String| Error::Remote {
            url: self.client.base().to_string(),
            reason,
        };
        let (reply, cached, picked) = match self.api {
            Api::LlamaServer => {
                let body = json!({
                    "prompt": tokens,
                    "n_predict": 1,
                    "n_probs": k,
                    "post_sampling_probs": false,
                    "temperature": 0.0,
                    "cache_prompt": true,
                    "return_tokens": true,
                    "stream": false,
                });
                let v = self.client.post("/completion", &body)?;
                let cached = v
                    .pointer("/timings/cache_n")
                    .or_else(|| v.get("tokens_cached"))
                    .and_then(Value::as_u64)
                    .map_or(0, |n| n as usize);
                let picked = v
                    .pointer("/tokens/0")
                    .and_then(Value::as_u64)
                    .map(|t| t as u32);
                (
                    llama_server::parse(&v, k).map_err(remote_err)?,
                    cached,
                    picked,
                )
            }
            Api::Openai => {
                let body = json!({
                    "model": self.model,
                    "prompt": tokens,
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "logprobs": k,
                    "return_tokens_as_token_ids": true,
                });
                let v = self
                    .client
                    .post("/v1/completions", &body)
                    .map_err(|e| openai::name_cap(e, k))?;
                let reply = openai::parse_generated(&v, k).map_err(remote_err)?;
                let picked = reply.tokens.first().copied();
                (reply, 0, picked)
            }
        };
        match (reply.tokens.is_empty(), picked) {
            (false, _) => Ok(Next {
                ids: reply.ids,
                logprobs: reply.logprobs,
                cached,
            }),
            // The greedy token ends mid-character and llama-server reports no distribution
            // for it: that token alone.
            (true, Some(t)) => Ok(Next {
                ids: vec![t],
                logprobs: vec![0.0],
                cached,
            }),
            (true, None) => Err(remote_err("the reply holds no next token".into())),
        }
    }

    /// One job as one request: its response tokens and their top-k rows.
    fn answer(&self, job: &Job, params: &SessionParams) -> Result<Sequence> {
        let k = params.k.min(self.info.n_vocab);
        let url = self.client.base().to_string();
        let remote_err = |reason: String| Error::Remote {
            url: url.clone(),
            reason,
        };
        if job.prompt.is_empty() {
            return Err(Error::Invalid("an empty prompt cannot be sent".into()));
        }
        let room = params.ctx.saturating_sub(job.prompt.len());
        let seed = job.rng.clone().next_u64() as u32;
        let reply = match (self.api, &job.response) {
            (Api::LlamaServer, Some(_)) => {
                return Err(remote_err(
                    "llama-server cannot score a given response (its /completion reports log-probabilities only for tokens it writes): use --mode generate, --teacher-api openai on a vLLM server (prompt_logprobs), or the GGUF in-process (--teacher FILE.gguf)".into(),
                ));
            }
            (Api::LlamaServer, None) => {
                let n_predict = job.max_new_tokens.min(room);
                let body = llama_server::request(job, k, n_predict, seed);
                let v = self.client.post("/completion", &body)?;
                self.note_times(&v);
                llama_server::parse(&v, k).map_err(remote_err)?
            }
            (Api::Openai, None) => {
                let n = job.max_new_tokens.min(room);
                let body = openai::generate_request(&self.model, job, k, n, seed);
                let v = self
                    .client
                    .post("/v1/completions", &body)
                    .map_err(|e| openai::name_cap(e, k))?;
                self.note_times(&v);
                openai::parse_generated(&v, k).map_err(remote_err)?
            }
            (Api::Openai, Some(resp)) => {
                let mut all = job.prompt.clone();
                all.extend_from_slice(resp);
                let body = openai::score_request(&self.model, &all, k);
                let v = self
                    .client
                    .post("/v1/completions", &body)
                    .map_err(|e| openai::name_cap(e, k))?;
                let mut reply =
                    openai::parse_scored(&v, job.prompt.len(), all.len(), k).map_err(remote_err)?;
                reply.tokens = resp.clone(); // the rows are those of the given response
                reply
            }
        };
        let mut tokens = job.prompt.clone();
        tokens.extend_from_slice(&reply.tokens);
        let stop = if job.response.is_some() {
            Stop::Scored
        } else if reply.tokens.last().is_some_and(|&t| self.vocab.is_eog(t)) {
            Stop::EndOfTurn
        } else if reply.tokens.len() >= room && room < job.max_new_tokens {
            Stop::Context
        } else {
            Stop::Length
        };
        Ok(Sequence {
            tokens,
            n_prompt: job.prompt.len(),
            topk_ids: reply.ids,
            topk_logprobs: reply.logprobs,
            hidden: Vec::new(),
            stop: Some(stop),
        })
    }
}

/// The decoder of a [`RemoteTeacher`]: `parallel` requests in flight.
struct RemoteDecoder<'t> {
    teacher: &'t RemoteTeacher,
    params: SessionParams,
}

impl Decode for RemoteDecoder<'_> {
    fn run(
        &mut self,
        jobs: &mut [Job],
        done: &mut dyn FnMut(usize, Sequence) -> Result<()>,
    ) -> Result<()> {
        let jobs: &[Job] = jobs;
        let next = AtomicUsize::new(0);
        let abort = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Result<Sequence>)>();
        let workers = self.params.parallel.clamp(1, jobs.len().max(1));
        let (teacher, params) = (self.teacher, self.params);
        std::thread::scope(|s| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, abort) = (&next, &abort);
                s.spawn(move || {
                    while !abort.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else { break };
                        if tx.send((i, teacher.answer(job, &params))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut first_err = None;
            for (i, seq) in rx {
                if first_err.is_some() {
                    continue; // drain: the workers stop after their request in flight
                }
                if let Err(e) = seq.and_then(|seq| done(i, seq)) {
                    abort.store(true, Ordering::Relaxed);
                    first_err = Some(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })
    }
}

impl Teacher for RemoteTeacher {
    fn info(&self) -> &TeacherInfo {
        &self.info
    }
    fn tokenize(&self, text: &str, special: bool) -> Vec<u32> {
        self.vocab.tokenize(text, special)
    }
    fn tokenize_text(&self, text: &str) -> Vec<u32> {
        self.vocab.tokenize_text(text)
    }
    fn adds_bos(&self) -> bool {
        self.vocab.adds_bos()
    }
    fn detokenize(&self, ids: &[u32]) -> String {
        self.vocab.detokenize(ids)
    }
    fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        self.vocab.render_prompt(messages)
    }
    fn end_of_turn(&self) -> u32 {
        self.vocab.end_of_turn()
    }
    fn n_ctx_train(&self) -> usize {
        self.vocab.n_ctx_train()
    }
    fn decoder(&self, params: SessionParams) -> Result<Box<dyn Decode + '_>> {
        if params.hidden {
            return Err(Error::Remote {
                url: self.client.base().to_string(),
                reason: "a server does not return hidden states: drop --hidden, or record with the GGUF in-process".into(),
            });
        }
        Ok(Box::new(RemoteDecoder {
            teacher: self,
            params,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_times_add_up_to_per_slot_rates() {
        let mut t = ServerTimes::default();
        t.add(
            &json!({"prompt_n": 40, "prompt_ms": 100.0, "predicted_n": 10, "predicted_ms": 100.0}),
        );
        t.add(&json!({"prompt_n": 0, "prompt_ms": 0.0, "predicted_n": 30, "predicted_ms": 300.0}));
        assert_eq!(t.requests, 2);
        assert_eq!(t.rates(), (400.0, 100.0));
        assert_eq!(ServerTimes::default().rates(), (0.0, 0.0));
    }
}
