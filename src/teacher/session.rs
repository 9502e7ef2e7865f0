//! [`Session`]: one llama.cpp context decoding many sequences together in one batch
//! (continuous batching, as llama.cpp's `llama-batched` and server do), turning the logits
//! of every response position into top-k log-probabilities, and timing helpers for eval.
//!
//! `LlamaContext` borrows the model and is not `Send`: a session lives on the thread that
//! made it.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use super::LlamaTeacher;
use super::topk::{self, Rng, Sampling, argmax, extract_rows};
use crate::{Error, Result};

/// Size and threading of a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionParams {
    /// Context length of each sequence.
    pub ctx: usize,
    /// Sequences decoded together.
    pub parallel: usize,
    /// Tokens per llama.cpp batch.
    pub n_batch: usize,
    /// CPU threads.
    pub threads: usize,
    /// Log-probabilities kept per position.
    pub k: usize,
    /// Also keep the teacher's final hidden state (after the output norm) at every target
    /// position: llama.cpp's embeddings output with pooling off.
    pub hidden: bool,
}

/// One sequence to decode.
#[derive(Debug, Clone)]
pub struct Job {
    /// The templated prompt.
    pub prompt: Vec<u32>,
    /// `Some`: teacher-force these tokens (score mode). `None`: let the teacher write.
    pub response: Option<Vec<u32>>,
    /// Longest response the teacher may write.
    pub max_new_tokens: usize,
    /// How to pick tokens when writing.
    pub sampling: Sampling,
    /// The job's own random stream.
    pub rng: Rng,
    /// Keep writing past end-of-turn tokens (benchmarks only).
    pub ignore_eog: bool,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The teacher ended its turn.
    EndOfTurn,
    /// `max_new_tokens` reached.
    Length,
    /// The sequence filled its context.
    Context,
    /// A given response was scored.
    Scored,
}

/// A decoded sequence: prompt then response tokens, and the teacher's top-k at every
/// position whose next token is a response token (`n_targets` rows of `k`).
#[derive(Debug, Clone, Default)]
pub struct Sequence {
    /// Prompt then response.
    pub tokens: Vec<u32>,
    /// Length of the prompt part.
    pub n_prompt: usize,
    /// `[n_targets, k]` token ids, row-major.
    pub topk_ids: Vec<u32>,
    /// `[n_targets, k]` log-probabilities.
    pub topk_logprobs: Vec<f32>,
    /// `[n_targets, n_embd]` final hidden states, when the session keeps them.
    pub hidden: Vec<f32>,
    /// How it ended (`None` while running).
    pub stop: Option<Stop>,
}

impl Sequence {
    /// Number of response tokens, which equals the number of target rows.
    pub fn n_targets(&self) -> usize {
        self.tokens.len() - self.n_prompt
    }
}

#[derive(Default)]
struct Scratch {
    select: Vec<(f32, u32)>,
    weights: Vec<f32>,
}

/// A running sequence in one of the session's slots.
struct Slot {
    job: usize,
    seq: Sequence,
    /// Tokens already in the KV cache.
    fed: usize,
    /// Full length when teacher-forced.
    total: usize,
}

/// A decoding session: one llama.cpp context with `parallel` sequence slots.
pub struct Session<'m> {
    teacher: &'m LlamaTeacher,
    pub(super) ctx: LlamaContext<'m>,
    pub(super) batch: LlamaBatch<'static>,
    pub(super) params: SessionParams,
    scratch: Scratch,
}

impl<'m> Session<'m> {
    /// Wrap a context made by [`LlamaTeacher::session`].
    pub(super) fn new(
        teacher: &'m LlamaTeacher,
        ctx: LlamaContext<'m>,
        params: SessionParams,
    ) -> Self {
        let batch = LlamaBatch::new(params.n_batch, params.parallel as i32);
        Self {
            teacher,
            ctx,
            batch,
            params,
            scratch: Scratch::default(),
        }
    }

    /// The session's settings.
    pub fn params(&self) -> SessionParams {
        self.params
    }

    /// Decode one sequence (slot 0) and hand `f(position, logits)` the full logits at each
    /// position where `wanted[position]` is true.
    ///
    /// # Errors
    /// [`Error::Llama`] when decoding fails or the sequence exceeds the context.
    pub fn logits_at(
        &mut self,
        tokens: &[u32],
        wanted: &[bool],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        if tokens.len() > self.params.ctx {
            return Err(Error::Invalid(format!(
                "sequence of {} tokens exceeds the context of {}",
                tokens.len(),
                self.params.ctx
            )));
        }
        self.ctx.clear_kv_cache();
        for (c, chunk) in tokens.chunks(self.params.n_batch).enumerate() {
            self.batch.clear();
            let base = c * self.params.n_batch;
            for (j, &t) in chunk.iter().enumerate() {
                let out = wanted.get(base + j).copied().unwrap_or(false);
                self.batch
                    .add(LlamaToken(t as i32), (base + j) as i32, &[0], out)
                    .map_err(|e| Error::Llama(format!("batch: {e}")))?;
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| Error::Llama(format!("decode failed: {e}")))?;
            for j in 0..chunk.len() {
                if wanted.get(base + j).copied().unwrap_or(false) {
                    f(base + j, self.ctx.get_logits_ith(j as i32));
                }
            }
        }
        Ok(())
    }

    /// Time greedy generation of `n_gen` tokens after `prompt`: returns (seconds to the first
    /// token, i.e. prompt processing plus one pick; seconds for the remaining `n_gen - 1`).
    ///
    /// # Errors
    /// [`Error::Llama`] when decoding fails.
    pub fn time_generation(&mut self, prompt: &[u32], n_gen: usize) -> Result<(f64, f64)> {
        self.ctx.clear_kv_cache();
        let clock = std::time::Instant::now();
        let mut last = 0u32;
        self.logits_at(
            prompt,
            &[vec![false; prompt.len() - 1], vec![true]].concat(),
            |_, z| last = argmax(z),
        )?;
        let ttft = clock.elapsed().as_secs_f64();
        let clock = std::time::Instant::now();
        for i in 0..n_gen.saturating_sub(1) {
            self.batch.clear();
            self.batch
                .add(
                    LlamaToken(last as i32),
                    (prompt.len() + i) as i32,
                    &[0],
                    true,
                )
                .map_err(|e| Error::Llama(format!("batch: {e}")))?;
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| Error::Llama(format!("decode failed: {e}")))?;
            last = argmax(self.ctx.get_logits_ith(0));
        }
        Ok((ttft, clock.elapsed().as_secs_f64()))
    }

    /// Decode `jobs`, up to `parallel` at a time, calling `done(index, sequence)` as each
    /// finishes. The batches formed depend only on `jobs` and the parameters, so the same
    /// jobs give the same logits, however the run was interrupted before.
    ///
    /// # Errors
    /// [`Error::Llama`] if llama.cpp fails to decode or returns non-finite logits.
    pub fn run(
        &mut self,
        jobs: &mut [Job],
        mut done: impl FnMut(usize, Sequence) -> Result<()>,
    ) -> Result<()> {
        let mut slots: Vec<Option<Slot>> = (0..self.params.parallel).map(|_| None).collect();
        let mut next = 0;
        self.ctx.clear_kv_cache();
        loop {
            for (s, slot) in slots.iter_mut().enumerate() {
                if slot.is_none() && next < jobs.len() {
                    self.ctx
                        .clear_kv_cache_seq(Some(s as u32), None, None)
                        .map_err(|e| Error::Llama(e.to_string()))?;
                    *slot = Some(self.start(next, &jobs[next])?);
                    next += 1;
                }
            }
            if slots.iter().all(Option::is_none) {
                return Ok(());
            }
            let rows = self.fill_batch(&mut slots)?;
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| Error::Llama(format!("decode failed: {e}")))?;
            self.consume(&mut slots, &rows, jobs)?;
            for slot in &mut slots {
                if slot.as_ref().is_some_and(|s| s.seq.stop.is_some()) {
                    let s = slot.take().expect("checked is_some above");
                    done(s.job, s.seq)?;
                }
            }
        }
    }

    fn start(&self, index: usize, job: &Job) -> Result<Slot> {
        let mut tokens = job.prompt.clone();
        let total = match &job.response {
            Some(r) => {
                tokens.extend_from_slice(r);
                tokens.len()
            }
            None => job.prompt.len(),
        };
        if job.prompt.is_empty() || total > self.params.ctx {
            return Err(Error::Invalid(format!(
                "sequence of {total} tokens does not fit the context of {}",
                self.params.ctx
            )));
        }
        let seq = Sequence {
            tokens,
            n_prompt: job.prompt.len(),
            ..Sequence::default()
        };
        Ok(Slot {
            job: index,
            seq,
            fed: 0,
            total,
        })
    }

    /// Put the next tokens of every slot into the batch: first one token for each writing
    /// slot, then prompt chunks while room is left. Returns, per logits row in batch order,
    /// its slot and its position in the batch.
    fn fill_batch(&mut self, slots: &mut [Option<Slot>]) -> Result<Vec<(usize, i32)>> {
        self.batch.clear();
        let mut rows = Vec::new();
        let cap = self.params.n_batch;
        let add = |batch: &mut LlamaBatch, tok: u32, pos: usize, s: usize, logits: bool| {
            batch
                .add(LlamaToken(tok as i32), pos as i32, &[s as i32], logits)
                .map_err(|e| Error::Llama(format!("batch: {e}")))
        };
        // Writing slots: the last sampled token, whose logits pick the next one.
        for (s, slot) in slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.fed > 0 && slot.fed < slot.seq.tokens.len() && slot.fed >= slot.total {
                rows.push((s, self.batch.n_tokens()));
                add(
                    &mut self.batch,
                    slot.seq.tokens[slot.fed],
                    slot.fed,
                    s,
                    true,
                )?;
                slot.fed += 1;
            }
        }
        for (s, slot) in slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            while slot.fed < slot.total && (self.batch.n_tokens() as usize) < cap {
                let pos = slot.fed;
                // Logits wherever the next token is a response token.
                let wants =
                    pos + 1 >= slot.seq.n_prompt && pos + 1 < slot.total.max(slot.seq.n_prompt + 1);
                if wants {
                    rows.push((s, self.batch.n_tokens()));
                }
                add(&mut self.batch, slot.seq.tokens[pos], pos, s, wants)?;
                slot.fed += 1;
            }
        }
        Ok(rows)
    }

    /// Turn each logits row into top-k log-probs; let writing slots pick their next token.
    fn consume(
        &mut self,
        slots: &mut [Option<Slot>],
        rows: &[(usize, i32)],
        jobs: &mut [Job],
    ) -> Result<()> {
        let k = self.params.k.min(self.teacher.info.n_vocab);
        let logits: Vec<&[f32]> = rows
            .iter()
            .map(|&(_, pos)| self.ctx.get_logits_ith(pos))
            .collect();
        let mut ids = vec![0u32; rows.len() * k];
        let mut lps = vec![0f32; rows.len() * k];
        extract_rows(&logits, k, &mut ids, &mut lps)?;
        for (i, &(s, _)) in rows.iter().enumerate() {
            let slot = slots[s].as_mut().expect("a row belongs to a live slot");
            slot.seq
                .topk_ids
                .extend_from_slice(&ids[i * k..(i + 1) * k]);
            slot.seq
                .topk_logprobs
                .extend_from_slice(&lps[i * k..(i + 1) * k]);
            if self.params.hidden {
                let h = self.ctx.embeddings_ith(rows[i].1).map_err(|_| {
                    Error::Llama("llama.cpp returned no hidden state for a target row".into())
                })?;
                slot.seq.hidden.extend_from_slice(h);
            }
            if slot.fed < slot.total {
                continue; // teacher-forced: more prompt or response to feed
            }
            let job = &mut jobs[slot.job];
            if job.response.is_some() {
                slot.seq.stop = Some(Stop::Scored);
                continue;
            }
            let row = logits[i];
            let argmax = ids[i * k];
            let m = row[argmax as usize];
            let next = topk::sample(
                row,
                m,
                argmax,
                job.sampling,
                &mut job.rng,
                &mut self.scratch.weights,
                &mut self.scratch.select,
            );
            slot.seq.tokens.push(next);
            let written = slot.seq.n_targets();
            slot.seq.stop = if self.teacher.is_eog(next) && !job.ignore_eog {
                Some(Stop::EndOfTurn)
            } else if written >= job.max_new_tokens {
                Some(Stop::Length)
            } else if slot.seq.tokens.len() >= self.params.ctx {
                Some(Stop::Context)
            } else {
                None
            };
        }
        Ok(())
    }
}
