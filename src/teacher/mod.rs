//! The teacher: a llama.cpp model that writes or scores responses and reports its top-k
//! next-token distribution at every response position. The recorder sees it through the
//! [`Teacher`] trait: [`LlamaTeacher`] is the real one, [`fake::FakeTeacher`] a seeded
//! stand-in for fast unit tests.

pub mod fake;
pub mod llama;
pub mod remote;
pub mod session;
mod step;
pub mod topk;

pub use llama::{LlamaTeacher, NoTemplate, TeacherInfo};
pub use remote::{Api, Next, RemoteInfo, RemoteTeacher, ServerTimes};
pub use session::{Job, Sequence, Session, SessionParams, Stop};
pub use topk::argmax;
pub use topk::{Rng, Sampling};

use crate::Result;
use crate::corpus::Message;

/// What recording needs from a teacher: identity, tokenizer, chat template, and a decoder
/// that runs batches of jobs.
pub trait Teacher {
    /// Identity and vocabulary facts (stored in the corpus manifest).
    fn info(&self) -> &TeacherInfo;
    /// Tokens of `text`; `special` adds BOS where the model wants one and parses control
    /// tokens (right for templated prompts, wrong for plain content).
    fn tokenize(&self, text: &str, special: bool) -> Vec<u32>;
    /// Tokens of raw text: BOS where the model wants one, special-token texts as text.
    fn tokenize_text(&self, text: &str) -> Vec<u32>;
    /// Whether the model reads a text after BOS.
    fn adds_bos(&self) -> bool;
    /// Text of a token sequence.
    fn detokenize(&self, ids: &[u32]) -> String;
    /// The conversation in the chat template, ending where the assistant's answer begins.
    ///
    /// # Errors
    /// No template, or one that cannot be applied.
    fn render_prompt(&self, messages: &[Message]) -> Result<String>;
    /// The token that closes an assistant turn.
    fn end_of_turn(&self) -> u32;
    /// Training context length.
    fn n_ctx_train(&self) -> usize;
    /// A decoder with `params`.
    ///
    /// # Errors
    /// The decoder cannot be made (llama.cpp: out of memory).
    fn decoder(&self, params: SessionParams) -> Result<Box<dyn Decode + '_>>;
}

/// Runs jobs, as [`Session::run`] does: `done(index, sequence)` as each finishes; the same
/// jobs give the same sequences however they were batched before.
pub trait Decode {
    /// Decode `jobs`.
    ///
    /// # Errors
    /// Decoding failures, or what `done` returns.
    fn run(
        &mut self,
        jobs: &mut [Job],
        done: &mut dyn FnMut(usize, Sequence) -> Result<()>,
    ) -> Result<()>;
}

impl Decode for Session<'_> {
    fn run(
        &mut self,
        jobs: &mut [Job],
        done: &mut dyn FnMut(usize, Sequence) -> Result<()>,
    ) -> Result<()> {
        Session::run(self, jobs, done)
    }
}

impl Teacher for LlamaTeacher {
    fn info(&self) -> &TeacherInfo {
        &self.info
    }
    fn tokenize(&self, text: &str, special: bool) -> Vec<u32> {
        LlamaTeacher::tokenize(self, text, special)
    }
    fn tokenize_text(&self, text: &str) -> Vec<u32> {
        LlamaTeacher::tokenize_text(self, text)
    }
    fn adds_bos(&self) -> bool {
        LlamaTeacher::adds_bos(self)
    }
    fn detokenize(&self, ids: &[u32]) -> String {
        LlamaTeacher::detokenize(self, ids)
    }
    fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        LlamaTeacher::render_prompt(self, messages)
    }
    fn end_of_turn(&self) -> u32 {
        LlamaTeacher::end_of_turn(self)
    }
    fn n_ctx_train(&self) -> usize {
        LlamaTeacher::n_ctx_train(self)
    }
    fn decoder(&self, params: SessionParams) -> Result<Box<dyn Decode + '_>> {
        Ok(Box::new(self.session(params)?))
    }
}
