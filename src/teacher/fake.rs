//! [`FakeTeacher`]: a seeded stand-in for the recorder's unit tests. Its vocabulary is the
//! 256 bytes plus BOS, end-of-turn and a `<|user|>` marker; its next-token distribution is
//! a fixed function of the previous token and the position, so every run gives the same
//! corpus; it writes greedily and ends its turn after a few tokens. Real recording is
//! tested with llama.cpp on real GGUFs (tests/integration/record.rs).

use super::topk::extract_rows;
use super::{Decode, Job, Sequence, SessionParams, Stop, Teacher, TeacherInfo};
use crate::Result;
use crate::corpus::Message;

/// Beginning of a text.
pub const BOS: u32 = 256;
/// End of an assistant turn.
pub const EOT: u32 = 257;
/// Opens a user turn in the fake chat template.
pub const USER: u32 = 258;
/// Vocabulary size.
pub const N_VOCAB: usize = 259;

/// The fake teacher; `answer` is the length at which it ends its turns.
#[derive(Debug, Clone)]
pub struct FakeTeacher {
    info: TeacherInfo,
    answer: usize,
}

impl FakeTeacher {
    /// A fake teacher that answers in `answer` tokens, then end-of-turn.
    pub fn new(answer: usize) -> Self {
        let info = TeacherInfo {
            file: "fake.gguf".into(),
            path: "fake.gguf".into(),
            sha256: "fake-sha256".into(),
            architecture: "fake".into(),
            n_params: 0,
            n_vocab: N_VOCAB,
            tokenizer_fingerprint: "fake-tokenizer".into(),
            chat_template: "<|user|>{content}".into(),
            remote: None,
        };
        Self { info, answer }
    }

    /// Logits after `prev` at `pos`: a peak that moves with both.
    fn logits(prev: u32, pos: usize) -> Vec<f32> {
        let peak = (prev as usize * 31 + pos * 7) % 256;
        (0..N_VOCAB)
            .map(|i| -((i as f32 - peak as f32).abs() / 8.0))
            .collect()
    }
}

impl Teacher for FakeTeacher {
    fn info(&self) -> &TeacherInfo {
        &self.info
    }
    fn tokenize(&self, text: &str, special: bool) -> Vec<u32> {
        let body = text.replace("<|user|>", "\u{1}");
        let mut out: Vec<u32> = Vec::new();
        for b in body.bytes() {
            out.push(if special && b == 1 {
                USER
            } else {
                u32::from(b)
            });
        }
        out
    }
    fn tokenize_text(&self, text: &str) -> Vec<u32> {
        std::iter::once(BOS)
            .chain(text.bytes().map(u32::from))
            .collect()
    }
    fn adds_bos(&self) -> bool {
        true
    }
    fn detokenize(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().filter_map(|&i| u8::try_from(i).ok()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        Ok(messages
            .iter()
            .map(|m| format!("<|user|>{}", m.content))
            .collect())
    }
    fn end_of_turn(&self) -> u32 {
        EOT
    }
    fn n_ctx_train(&self) -> usize {
        1024
    }
    fn decoder(&self, params: SessionParams) -> Result<Box<dyn Decode + '_>> {
        Ok(Box::new(FakeDecoder {
            k: params.k.min(N_VOCAB),
            answer: self.answer,
        }))
    }
}

struct FakeDecoder {
    k: usize,
    answer: usize,
}

impl Decode for FakeDecoder {
    fn run(
        &mut self,
        jobs: &mut [Job],
        done: &mut dyn FnMut(usize, Sequence) -> Result<()>,
    ) -> Result<()> {
        for (i, job) in jobs.iter().enumerate() {
            let mut seq = Sequence {
                tokens: job.prompt.clone(),
                n_prompt: job.prompt.len(),
                ..Sequence::default()
            };
            let stop = match &job.response {
                Some(r) => {
                    seq.tokens.extend_from_slice(r);
                    Stop::Scored
                }
                None => {
                    let limit = self.answer.min(job.max_new_tokens.max(1));
                    for n in 0..limit {
                        let pos = seq.tokens.len();
                        let next = if n + 1 == limit {
                            EOT
                        } else {
                            u32::from(b'a') + (pos % 26) as u32
                        };
                        seq.tokens.push(next);
                    }
                    Stop::EndOfTurn
                }
            };
            for pos in seq.n_prompt - 1..seq.tokens.len() - 1 {
                let z = FakeTeacher::logits(seq.tokens[pos], pos);
                let (mut ids, mut lps) = (vec![0; self.k], vec![0.0; self.k]);
                extract_rows(&[&z], self.k, &mut ids, &mut lps)?;
                seq.topk_ids.extend(ids);
                seq.topk_logprobs.extend(lps);
            }
            seq.stop = Some(stop);
            done(i, seq)?;
        }
        Ok(())
    }
}
