//! Generation backends and the one streaming decode loop they share.
//!
//! A [`Decoder`] turns tokens into next-token logits and keeps a KV cache across turns
//! (reusing the prefix a new prompt shares with it, as llama.cpp's server does). The
//! vocabulary, and with it the chat template, always comes from a GGUF through llama.cpp
//! (the teacher owns the one vocabulary), so both models see their prompts rendered and
//! tokenized the same way. A [`Generation`] renders, prefills, samples with the recorder's
//! sampler and streams text pieces with timestamps, one token per call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::stats::{GenStats, Stop};
use crate::corpus::{Message, Role};
use crate::teacher::{LlamaTeacher, Rng, Sampling, Session, SessionParams, argmax, topk};
use crate::{Error, Result};

/// One generation request, as a worker receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The conversation to answer, ending with the user's message.
    pub messages: Vec<Message>,
    /// Temperature and top-p.
    pub sampling: Sampling,
    /// Longest answer, in tokens.
    pub max_tokens: usize,
    /// Sampling seed.
    pub seed: u64,
    /// Turn number, which picks the random stream: both sides draw from the same one.
    pub turn: u64,
    /// CPU threads to use.
    pub threads: usize,
}

/// Next-token logits for one sequence with a reusable cache.
pub trait Decoder {
    /// Longest sequence it holds.
    fn n_ctx(&self) -> usize;
    /// Use `n` CPU threads from now on.
    ///
    /// # Errors
    /// When the backend cannot be reconfigured.
    fn set_threads(&mut self, n: usize) -> Result<()>;
    /// Make the cache hold `tokens` and return (tokens reused from the cache, logits after
    /// the last token).
    ///
    /// # Errors
    /// Decode failures.
    fn prefill(&mut self, tokens: &[u32]) -> Result<(usize, &[f32])>;
    /// Append one token and return the logits after it.
    ///
    /// # Errors
    /// Decode failures.
    fn step(&mut self, token: u32) -> Result<&[f32]>;
}

/// What [`generate`] reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Work on the request began.
    Started(Instant),
    /// A piece of text (possibly empty while a character is split across tokens) and the
    /// count of tokens so far.
    Token {
        /// Text to append.
        text: String,
        /// Tokens written so far.
        tokens: usize,
        /// When it was picked.
        at: Instant,
    },
}

/// Joins token bytes into text, holding back an incomplete UTF-8 character.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Add bytes; return the text that is complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        match std::str::from_utf8(&self.pending) {
            Ok(s) => {
                let s = s.to_string();
                self.pending.clear();
                s
            }
            Err(e) if e.error_len().is_none() && self.pending.len() - e.valid_up_to() < 4 => {
                // An incomplete character at the end: keep it for the next token.
                let rest = self.pending.split_off(e.valid_up_to());
                let s = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending = rest;
                s
            }
            Err(_) => self.flush(),
        }
    }

    /// Whatever is left, lossily.
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// The prompt's tokens, dropping the oldest exchanges (never the system prompt or the last
/// user message) until it leaves room for an answer of up to a quarter of the context.
///
/// # Errors
/// [`Error::Invalid`] when even the last message alone does not fit.
pub fn prompt_tokens(
    vocab: &LlamaTeacher,
    messages: &[Message],
    n_ctx: usize,
    max_tokens: usize,
) -> Result<Vec<u32>> {
    let room = max_tokens.min(n_ctx / 4).max(1);
    let mut messages = messages.to_vec();
    loop {
        let tokens = vocab.tokenize(&vocab.render_prompt(&messages)?, true);
        if tokens.len() + room <= n_ctx {
            return Ok(tokens);
        }
        let first = usize::from(messages.first().is_some_and(|m| m.role == Role::System));
        if messages.len() <= first + 1 {
            return Err(Error::Invalid(format!(
                "the prompt is {} tokens and the context holds {n_ctx}: shorten it, start a \
                 new conversation (Ctrl+N) or pass a larger --ctx",
                tokens.len()
            )));
        }
        // Drop the oldest user message and the answer after it.
        let n = if messages
            .get(first + 1)
            .is_some_and(|m| m.role == Role::Assistant)
        {
            2
        } else {
            1
        };
        messages.drain(first..first + n);
    }
}

/// One answer being written, a token per [`Generation::advance`], so that one thread can
/// interleave two models' answers (the chat's race mode). It stops at an end-of-turn token,
/// the token limit, a full context, when the cancel flag is set or when `emit` returns false.
pub struct Generation {
    req: Request,
    t0: Instant,
    prompt: Vec<u32>,
    reused: usize,
    rng: Rng,
    weights: Vec<f32>,
    scratch: Vec<(f32, u32)>,
    utf8: Utf8Stream,
    tokens: usize,
    ttft: Option<std::time::Duration>,
    /// The token picked last, not yet fed to the decoder; `None` before the prefill.
    pending: Option<u32>,
}

impl Generation {
    /// A generation of `req` that starts now.
    pub fn new(req: Request) -> Self {
        Self {
            rng: Rng::for_record(req.seed, req.turn),
            req,
            t0: Instant::now(),
            prompt: Vec::new(),
            reused: 0,
            weights: Vec::new(),
            scratch: Vec::new(),
            utf8: Utf8Stream::default(),
            tokens: 0,
            ttft: None,
            pending: None,
        }
    }

    /// Pick one more token (the first call also renders and prefills the prompt) and emit
    /// it; the statistics once the answer is over.
    ///
    /// # Errors
    /// Template, tokenizer or decode failures.
    pub fn advance(
        &mut self,
        vocab: &LlamaTeacher,
        dec: &mut dyn Decoder,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Event) -> bool,
    ) -> Result<Option<GenStats>> {
        let n_ctx = dec.n_ctx();
        let logits = match self.pending {
            None => {
                if !emit(Event::Started(self.t0)) {
                    return Err(Error::Invalid("the chat window closed".into()));
                }
                self.prompt = prompt_tokens(vocab, &self.req.messages, n_ctx, self.req.max_tokens)?;
                let (reused, logits) = dec.prefill(&self.prompt)?;
                self.reused = reused;
                logits
            }
            Some(token) => dec.step(token)?,
        };
        if cancel.load(Ordering::Relaxed) {
            return Ok(Some(self.finish(Stop::Cancelled, emit)));
        }
        let best = argmax(logits);
        let best_logit = logits.get(best as usize).copied().unwrap_or(0.0);
        let next = topk::sample(
            logits,
            best_logit,
            best,
            self.req.sampling,
            &mut self.rng,
            &mut self.weights,
            &mut self.scratch,
        );
        let at = Instant::now();
        self.ttft.get_or_insert(at - self.t0);
        self.pending = Some(next);
        if vocab.is_eog(next) {
            return Ok(Some(self.finish(Stop::EndOfTurn, emit)));
        }
        self.tokens += 1;
        let text = self.utf8.push(&vocab.piece_bytes(next));
        let tokens = self.tokens;
        let stop = if !emit(Event::Token { text, tokens, at }) {
            Some(Stop::Cancelled)
        } else if tokens >= self.req.max_tokens {
            Some(Stop::Length)
        } else if self.prompt.len() + tokens >= n_ctx {
            Some(Stop::Context)
        } else {
            None
        };
        Ok(stop.map(|stop| self.finish(stop, emit)))
    }

    /// The request being answered.
    pub fn request(&self) -> &Request {
        &self.req
    }

    fn finish(&mut self, stop: Stop, emit: &mut dyn FnMut(Event) -> bool) -> GenStats {
        let tail = self.utf8.flush();
        if !tail.is_empty() {
            emit(Event::Token {
                text: tail,
                tokens: self.tokens,
                at: Instant::now(),
            });
        }
        GenStats {
            prompt_tokens: self.prompt.len(),
            reused_tokens: self.reused,
            tokens: self.tokens,
            ttft: self.ttft,
            total: self.t0.elapsed(),
            stop,
            threads: self.req.threads,
        }
    }
}

/// Length of the common prefix of `a` and `b`.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A GGUF model (the teacher, or an exported student) in llama.cpp.
pub struct LlamaDecoder<'m> {
    model: &'m LlamaTeacher,
    session: Option<Session<'m>>,
    cached: Vec<u32>,
    ctx: usize,
    threads: usize,
}

impl<'m> LlamaDecoder<'m> {
    /// A decoder over `model` with a context of `ctx` tokens (capped at the model's own).
    pub fn new(model: &'m LlamaTeacher, ctx: usize) -> Self {
        let ctx = ctx.min(model.n_ctx_train().max(64)).max(64);
        Self {
            model,
            session: None,
            cached: Vec::new(),
            ctx,
            threads: 1,
        }
    }

    fn session(&mut self) -> Result<&mut Session<'m>> {
        if self.session.is_none() {
            self.cached.clear();
            self.session = Some(self.model.session(SessionParams {
                ctx: self.ctx,
                parallel: 1,
                n_batch: 512,
                threads: self.threads,
                k: 1,
                hidden: false,
            })?);
        }
        self.session
            .as_mut()
            .ok_or_else(|| Error::Llama("no session".into()))
    }
}

impl Decoder for LlamaDecoder<'_> {
    fn n_ctx(&self) -> usize {
        self.ctx
    }

    fn set_threads(&mut self, n: usize) -> Result<()> {
        if n.max(1) != self.threads {
            // llama.cpp fixes the thread count when it makes a context: make a new one.
            self.threads = n.max(1);
            self.session = None;
        }
        Ok(())
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<(usize, &[f32])> {
        self.session()?; // a new session starts with an empty cache
        // Feed at least the last token: its logits pick the first answer token.
        let mut keep = common_prefix(&self.cached, tokens).min(tokens.len().saturating_sub(1));
        self.cached.clear();
        self.cached.extend_from_slice(tokens);
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| Error::Llama("no session".into()))?;
        if session.truncate(keep).is_err() {
            keep = 0;
        }
        match session.extend(&tokens[keep..], keep) {
            Ok(logits) => Ok((keep, logits)),
            Err(e) => {
                self.cached.clear();
                Err(e)
            }
        }
    }

    fn step(&mut self, token: u32) -> Result<&[f32]> {
        let pos = self.cached.len();
        self.cached.push(token);
        let session = self
            .session
            .as_mut()
            .ok_or_else(|| Error::Llama("step before prefill".into()))?;
        match session.extend(&[token], pos) {
            Ok(logits) => Ok(logits),
            Err(e) => {
                self.cached.clear(); // the next prefill starts over
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_holds_back_split_characters() {
        let mut s = Utf8Stream::default();
        let bytes = "é日".as_bytes(); // c3 a9 e6 97 a5
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..]), "日");
        assert_eq!(s.push(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(s.push(&[0xe6]), "");
        assert_eq!(s.flush(), "\u{fffd}");
    }

    #[test]
    fn common_prefix_counts_equal_leading_tokens() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
