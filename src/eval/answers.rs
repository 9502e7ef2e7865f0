//! Free-running evaluation: what a model *says*, not only how it scores the teacher's text.
//!
//! Teacher-forced KLD measures the student on the teacher's own answers; a student can do
//! well there and still ramble once it feeds on its own tokens (exposure bias). Here each
//! model answers the held-out prompts on its own, greedily and up to a bounded length, and
//! the teacher judges the answers teacher-forced: its perplexity of the student's answers
//! beside its perplexity of its own, as in the evaluations of GKD (Agarwal et al. 2024,
//! arXiv:2306.13649) and MiniLLM (Gu et al. 2024, arXiv:2306.08543). Perplexity alone
//! rewards repetition, so distinct-n (Li et al. 2016, arXiv:1510.03055) and the share of
//! answers that end their turn stand beside it.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::teacher::{Job, LlamaTeacher, Rng, Sampling, SessionParams, Stop};
use crate::{Error, Result};

/// Answers a report quotes in full.
pub const SAMPLES: usize = 3;

/// Sequences decoded together while answering.
const PARALLEL: usize = 32;

/// How one model's free-running answers look to the teacher.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerStats {
    /// Prompts answered.
    pub answers: usize,
    /// Answer tokens in all (end-of-turn tokens included).
    pub tokens: usize,
    /// The teacher's perplexity of the answers: exp of the mean negative log-likelihood of
    /// every answer token, the teacher reading prompt and answer.
    pub teacher_ppl: f64,
    /// distinct-1, -2 and -3: per answer, distinct n-grams over all n-grams (end-of-turn
    /// left out), averaged over the answers; 1 = no repetition.
    pub distinct: [f64; 3],
    /// Share of answers that ended their turn within the length limit.
    pub end_of_turn: f64,
    /// Mean answer length in tokens.
    pub mean_tokens: f64,
    /// The first [`SAMPLES`] answers as text.
    pub samples: Vec<String>,
}

/// One model's answers: prompt and answer tokens, and whether it ended its turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The templated prompt.
    pub prompt: Vec<u32>,
    /// What the model wrote.
    pub answer: Vec<u32>,
    /// Whether the answer ended with an end-of-turn token.
    pub ended: bool,
}

/// Let the GGUF at `model` answer every prompt greedily, up to `max_tokens` tokens each.
///
/// # Errors
/// [`Error::Invalid`] for `max_tokens` 0; load and decode failures.
pub fn write_answers(
    model: &Path,
    prompts: &[Vec<u32>],
    max_tokens: usize,
    threads: usize,
) -> Result<Vec<Answer>> {
    let greedy = Sampling {
        temperature: 0.0,
        top_p: 1.0,
    };
    write_sampled(model, prompts, max_tokens, threads, greedy, 0)
}

/// Let the GGUF at `model` answer every prompt, sampling by `sampling` with one random
/// stream per prompt drawn from `seed`, up to `max_tokens` tokens each.
///
/// # Errors
/// [`Error::Invalid`] for `max_tokens` 0; load and decode failures.
pub fn write_sampled(
    model: &Path,
    prompts: &[Vec<u32>],
    max_tokens: usize,
    threads: usize,
    sampling: Sampling,
    seed: u64,
) -> Result<Vec<Answer>> {
    if max_tokens == 0 {
        return Err(Error::Invalid("--answer-tokens must be at least 1".into()));
    }
    let llm = LlamaTeacher::load(model, String::new())?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let params = SessionParams {
        ctx: longest + max_tokens + 1,
        parallel: PARALLEL.min(prompts.len().max(1)),
        n_batch: 512,
        threads,
        k: 1,
        hidden: false,
    };
    let mut session = llm.session(params)?;
    let mut jobs: Vec<Job> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Job {
            prompt: p.clone(),
            response: None,
            max_new_tokens: max_tokens,
            sampling,
            rng: Rng::for_record(seed, i as u64),
            ignore_eog: false,
        })
        .collect();
    let mut out: Vec<Option<Answer>> = vec![None; prompts.len()];
    session.run(&mut jobs, |i, seq| {
        out[i] = Some(Answer {
            answer: seq.tokens[seq.n_prompt..].to_vec(),
            prompt: seq.tokens[..seq.n_prompt].to_vec(),
            ended: seq.stop == Some(Stop::EndOfTurn),
        });
        Ok(())
    })?;
    out.into_iter()
        .map(|a| a.ok_or_else(|| Error::Llama("a prompt was left unanswered".into())))
        .collect()
}

/// The teacher's verdict on `answers`, with their repetition and endings.
///
/// # Errors
/// Decoding failures.
pub fn judge(teacher: &LlamaTeacher, answers: &[Answer], threads: usize) -> Result<AnswerStats> {
    let longest = answers
        .iter()
        .map(|a| a.prompt.len() + a.answer.len())
        .max()
        .unwrap_or(1);
    let mut session = teacher.session(SessionParams {
        ctx: longest.max(1),
        parallel: 1,
        n_batch: 512,
        threads,
        k: 1,
        hidden: false,
    })?;
    let (mut nll, mut tokens) = (0.0f64, 0usize);
    for a in answers.iter().filter(|a| !a.answer.is_empty()) {
        let seq = [a.prompt.as_slice(), a.answer.as_slice()].concat();
        let n = a.prompt.len();
        // Logits at position p predict token p + 1: every answer token is predicted.
        let wanted: Vec<bool> = (0..seq.len())
            .map(|p| p + 1 >= n && p + 1 < seq.len())
            .collect();
        session.logits_at(&seq, &wanted, |p, z| {
            nll += neg_log_prob(z, seq[p + 1]);
            tokens += 1;
        })?;
    }
    let n = answers.len().max(1) as f64;
    let eog = |t: &u32| teacher.is_eog(*t);
    let distinct = [1, 2, 3].map(|k| {
        answers
            .iter()
            .map(|a| distinct_n(a.answer.strip_suffix_by(eog), k))
            .sum::<f64>()
            / n
    });
    Ok(AnswerStats {
        answers: answers.len(),
        tokens,
        teacher_ppl: (nll / tokens.max(1) as f64).exp(),
        distinct,
        end_of_turn: answers.iter().filter(|a| a.ended).count() as f64 / n,
        mean_tokens: answers.iter().map(|a| a.answer.len()).sum::<usize>() as f64 / n,
        samples: answers
            .iter()
            .take(SAMPLES)
            .map(|a| teacher.detokenize(a.answer.strip_suffix_by(eog)))
            .collect(),
    })
}

/// The text of a templated prompt that a reader needs: the last turn's content, with the
/// template's control tokens and role names dropped where they can be told apart.
pub fn prompt_text(teacher: &LlamaTeacher, prompt: &[u32]) -> String {
    let plain: Vec<u32> = prompt
        .iter()
        .copied()
        .filter(|&t| !teacher.is_control(t))
        .collect();
    let text = teacher.detokenize(&plain);
    let text = text.trim_end();
    let text = text.strip_suffix("assistant").unwrap_or(text);
    let last = text.rfind("user\n").map_or(text, |i| &text[i + 5..]);
    last.trim().to_string()
}

/// `-log softmax(z)[next]`.
fn neg_log_prob(z: &[f32], next: u32) -> f64 {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    lse - z[next as usize] as f64
}

/// Distinct n-grams over all n-grams of `tokens` (1 when there is none).
pub fn distinct_n(tokens: &[u32], n: usize) -> f64 {
    if n == 0 || tokens.len() < n {
        return 1.0;
    }
    let grams: HashSet<&[u32]> = tokens.windows(n).collect();
    grams.len() as f64 / (tokens.len() + 1 - n) as f64
}

/// Dropping one trailing token that matches a predicate.
trait StripSuffixBy {
    fn strip_suffix_by(&self, f: impl Fn(&u32) -> bool) -> &[u32];
}

impl StripSuffixBy for [u32] {
    fn strip_suffix_by(&self, f: impl Fn(&u32) -> bool) -> &[u32] {
        match self.split_last() {
            Some((last, rest)) if f(last) => rest,
            _ => self,
        }
    }
}

impl StripSuffixBy for Vec<u32> {
    fn strip_suffix_by(&self, f: impl Fn(&u32) -> bool) -> &[u32] {
        self.as_slice().strip_suffix_by(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_n_counts_repeated_ngrams() {
        assert_eq!(distinct_n(&[1, 2, 3, 4], 1), 1.0);
        assert_eq!(distinct_n(&[5, 5, 5, 5], 1), 0.25);
        // 1 2 1 2 1: bigrams 12 21 12 21 -> 2 distinct of 4.
        assert_eq!(distinct_n(&[1, 2, 1, 2, 1], 2), 0.5);
        assert_eq!(distinct_n(&[1], 2), 1.0);
    }

    #[test]
    fn negative_log_prob_is_that_of_the_softmax() {
        let z = [0.0f32, (2.0f32).ln(), 0.0];
        // softmax = [1/4, 1/2, 1/4]
        assert!((neg_log_prob(&z, 1) - 2f64.ln()).abs() < 1e-6);
        assert!((neg_log_prob(&z, 0) - 4f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn one_trailing_end_token_is_dropped() {
        let v = vec![3u32, 4, 9];
        assert_eq!(v.strip_suffix_by(|&t| t == 9), &[3, 4]);
        assert_eq!(v.strip_suffix_by(|&t| t == 7), &[3, 4, 9]);
    }
}
