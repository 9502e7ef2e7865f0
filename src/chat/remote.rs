//! A teacher served over HTTP in the chat: [`RemoteDecoder`] asks the server for the
//! distribution after the conversation so far, one token per request (the server keeps the
//! prompt cached), and hands the chat a logit row that holds the server's [`TOP_K`] most
//! likely tokens. The chat samples from it as from a local model, so temperature, top-p,
//! the seed and race mode work the same; sampling is limited to those tokens, which hold
//! nearly all of a chat model's mass at top-p 0.9.

use super::ModelInfo;
use super::engine::Decoder;
use crate::Result;
use crate::teacher::{RemoteTeacher, Teacher};

/// Tokens asked for per position: what vLLM allows by default (`--max-logprobs` 20).
pub const TOP_K: usize = 20;

/// The chat's decoder for a [`RemoteTeacher`].
pub struct RemoteDecoder {
    teacher: RemoteTeacher,
    ctx: usize,
    tokens: Vec<u32>,
    logits: Vec<f32>,
    filled: Vec<u32>,
}

impl RemoteDecoder {
    /// A decoder over the server behind `teacher`, conversations of up to `ctx` tokens.
    pub fn new(teacher: RemoteTeacher, ctx: usize) -> Self {
        let n_vocab = teacher.info().n_vocab;
        let ctx = ctx.min(teacher.n_ctx_train().max(64)).max(64);
        Self {
            teacher,
            ctx,
            tokens: Vec::new(),
            logits: vec![f32::NEG_INFINITY; n_vocab],
            filled: Vec::new(),
        }
    }

    /// What the chat shows for it: the server's model name, host and port.
    pub fn info(&self) -> ModelInfo {
        let (api, model) = self.teacher.describe();
        // llama-server names its model by the path it loaded.
        let model = model.rsplit(['/', '\\']).next().unwrap_or(model);
        let url = self.teacher.info().remote.as_ref().map_or("", |r| &r.url);
        let host = url.strip_prefix("http://").unwrap_or(url);
        ModelInfo {
            name: format!("{model} @ {host}"),
            engine: api.name().into(),
            params: self.teacher.info().n_params,
            n_ctx: self.ctx,
        }
    }

    /// Ask for the distribution after `self.tokens`; the cached prompt tokens.
    fn ask(&mut self) -> Result<usize> {
        let next = self.teacher.next(&self.tokens, TOP_K)?;
        for &id in &self.filled {
            if let Some(l) = self.logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        self.filled.clear();
        for (&id, &lp) in next.ids.iter().zip(&next.logprobs) {
            if let Some(l) = self.logits.get_mut(id as usize) {
                *l = lp;
                self.filled.push(id);
            }
        }
        Ok(next.cached)
    }
}

impl Decoder for RemoteDecoder {
    fn n_ctx(&self) -> usize {
        self.ctx
    }

    fn set_threads(&mut self, _n: usize) -> Result<()> {
        Ok(()) // the server's threads are its own
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<(usize, &[f32])> {
        self.tokens.clear();
        self.tokens.extend_from_slice(tokens);
        let cached = self.ask()?;
        Ok((cached, &self.logits))
    }

    fn step(&mut self, token: u32) -> Result<&[f32]> {
        self.tokens.push(token);
        self.ask()?;
        Ok(&self.logits)
    }
}
