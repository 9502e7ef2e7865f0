//! `distill eval`: how close a student is to its teacher (quality on a held-out corpus the
//! teacher recorded) and how much faster it runs (speed in every engine it runs in).

pub mod answers;
pub mod evaluate;
pub mod metrics;
pub mod report;
pub mod speed;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::record::{Manifest, Shard};
use crate::student::{Student, StudentConfig, io};
use crate::teacher::{LlamaTeacher, SessionParams};
use crate::{Error, Result};
use metrics::Quality;

/// A model to evaluate: a student directory (candle) or a GGUF (llama.cpp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// A Hugging Face student directory, run by candle.
    Dir(std::path::PathBuf),
    /// A GGUF file, run by llama.cpp.
    Gguf(std::path::PathBuf),
}

impl Model {
    /// A directory is a student directory; a file is a GGUF.
    pub fn from_path(p: &Path) -> Self {
        if p.is_dir() {
            Model::Dir(p.to_path_buf())
        } else {
            Model::Gguf(p.to_path_buf())
        }
    }

    /// Display name: the file or directory name.
    pub fn name(&self) -> String {
        let p = match self {
            Model::Dir(p) | Model::Gguf(p) => p,
        };
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }
}

/// Walk every target position of a corpus: `f(tokens, wanted)` must return the logits rows
/// at the wanted positions in order; each is scored against the stored teacher top-k. Every
/// shard's ids are checked against the model's `n_vocab` rows first.
fn score_corpus(
    corpus: &Path,
    n_vocab: usize,
    mut logits_of: impl FnMut(&[u32], &[bool], &mut dyn FnMut(usize, &[f32])) -> Result<()>,
) -> Result<Quality> {
    let m = Manifest::read(corpus)?.ok_or_else(|| Error::Corpus {
        path: corpus.to_path_buf(),
        reason: "no manifest.json: not a corpus directory".into(),
    })?;
    let mut positions = Vec::new();
    for info in &m.shards {
        let path = corpus.join(&info.file);
        let shard = Shard::read_listed(corpus, info)?;
        check_ids(&shard, n_vocab, &path)?;
        let k = shard.k;
        let mut row = 0;
        for s in 0..shard.sequences() {
            let r = shard.sequence(s);
            let tokens = &shard.tokens[r.clone()];
            let wanted: Vec<bool> = shard.target_mask[r].iter().map(|&b| b == 1).collect();
            // Rows arrive in position order, so the j-th call is the j-th target row.
            let mut j = row;
            logits_of(tokens, &wanted, &mut |p, z| {
                let ids = &shard.topk_ids[j * k..(j + 1) * k];
                let lps: Vec<f32> = shard.topk_logprobs[j * k..(j + 1) * k]
                    .iter()
                    .map(|x| x.to_f32())
                    .collect();
                positions.push(metrics::score_position(z, ids, &lps, tokens[p + 1]));
                j += 1;
            })?;
            row += wanted.iter().filter(|&&w| w).count();
        }
    }
    Ok(Quality::of(&positions))
}

/// Quality of `model` against the teacher that recorded `corpus`.
///
/// # Errors
/// A model of another vocabulary, unreadable files, decoding failures.
pub fn quality(model: &Model, corpus: &Path, n_vocab: usize, threads: usize) -> Result<Quality> {
    match model {
        Model::Dir(dir) => {
            let cfg = StudentConfig::read(dir)?;
            check_vocab(cfg.vocab_size, n_vocab, &model.name())?;
            let w = io::load_tensors(&dir.join("model.safetensors"))?;
            let student =
                Student::new(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu))?;
            score_corpus(corpus, n_vocab, |tokens, wanted, f| {
                let n = tokens.len().min(cfg.max_position_embeddings);
                logit_rows(&student, &tokens[..n], wanted, ROWS, f)
            })
        }
        Model::Gguf(path) => {
            let t = LlamaTeacher::load(path, String::new())?;
            check_vocab(t.info.n_vocab, n_vocab, &model.name())?;
            let recorded = Manifest::read(corpus)?.map_or(0, |m| m.record.ctx);
            let ctx = eval_ctx(recorded, t.n_ctx_train());
            let params = SessionParams {
                ctx,
                parallel: 1,
                n_batch: 512,
                threads,
                k: 1,
                hidden: false,
            };
            let mut session = t.session(params)?;
            score_corpus(corpus, n_vocab, |tokens, wanted, f| {
                // As for a student: a sequence longer than the model's context is scored
                // up to it.
                let n = tokens.len().min(ctx);
                session.logits_at(&tokens[..n], &wanted[..n], |p, z| f(p, z))
            })
        }
    }
}

/// The context of a llama.cpp eval session: the recording context (no corpus sequence is
/// longer), within the model's training context.
fn eval_ctx(recorded: usize, n_ctx_train: usize) -> usize {
    let need = if recorded == 0 { 4096 } else { recorded };
    match n_ctx_train {
        0 => need,
        train => need.min(train),
    }
    .max(16)
}

/// Logits rows computed at once. With a 262k vocabulary a row is 1 MB: the [n, vocab]
/// logits of a 2048-token sequence would be 2 GB, a block of 64 rows is 64 MB.
const ROWS: usize = 64;

/// `f(position, logits)` at each wanted position of `tokens`, the output projection applied
/// to `rows` hidden states at a time.
fn logit_rows(
    student: &Student,
    tokens: &[u32],
    wanted: &[bool],
    rows: usize,
    f: &mut dyn FnMut(usize, &[f32]),
) -> Result<()> {
    let n = tokens.len();
    let ids = Tensor::from_vec(tokens.to_vec(), (1, n), &Device::Cpu)?;
    let hidden = student.hidden(&ids)?.get(0)?; // [n, hidden]
    let head = student.output_weight().t()?; // [hidden, vocab]
    let at: Vec<u32> = (0..n).filter(|&p| wanted[p]).map(|p| p as u32).collect();
    for chunk in at.chunks(rows.max(1)) {
        let idx = Tensor::new(chunk, &Device::Cpu)?;
        let logits = hidden.index_select(&idx, 0)?.matmul(&head)?; // [chunk, vocab]
        for (i, &p) in chunk.iter().enumerate() {
            f(p as usize, &logits.get(i)?.to_vec1::<f32>()?);
        }
    }
    Ok(())
}

/// Every token and top-k id of `shard` must index a row of a `n_vocab`-token model.
fn check_ids(shard: &Shard, n_vocab: usize, path: &Path) -> Result<()> {
    let bad = shard
        .tokens
        .iter()
        .chain(&shard.topk_ids)
        .find(|&&id| id as usize >= n_vocab);
    match bad {
        None => Ok(()),
        Some(id) => Err(Error::Corpus {
            path: path.to_path_buf(),
            reason: format!(
                "holds token id '{id}', outside the model's vocabulary of {n_vocab}: the shard is corrupt or was recorded by a teacher of another vocabulary; evaluate on a corpus this model's teacher recorded (or record it again)"
            ),
        }),
    }
}

fn check_vocab(model: usize, teacher: usize, name: &str) -> Result<()> {
    if model != teacher {
        return Err(Error::Invalid(format!(
            "'{name}' has a vocabulary of {model} tokens, the corpus teacher {teacher}: a student must share its teacher's tokenizer"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::student::io;

    #[test]
    fn the_eval_context_fits_the_corpus_within_the_models_training_context() {
        assert_eq!(eval_ctx(8192, 8192), 8192, "beyond the old fixed 4096");
        assert_eq!(eval_ctx(512, 8192), 512, "no larger than needed");
        assert_eq!(
            eval_ctx(8192, 2048),
            2048,
            "no larger than the model was trained for"
        );
        assert_eq!(eval_ctx(1024, 0), 1024, "a model that does not say");
    }

    #[test]
    fn ids_outside_the_vocabulary_are_refused_naming_the_shard() {
        let mut shard = Shard::new(2);
        shard.tokens = vec![1, 2, 3];
        shard.offsets = vec![0, 3];
        shard.target_mask = vec![0, 1, 0];
        shard.topk_ids = vec![4, 5];
        let path = Path::new("corpus/shard-00000.safetensors");
        check_ids(&shard, 64, path).expect("in range");
        shard.topk_ids[1] = 64;
        let err = check_ids(&shard, 64, path)
            .expect_err("64 is outside 0..64")
            .to_string();
        assert!(
            err.contains("shard-00000") && err.contains("'64'") && err.contains("corrupt"),
            "{err}"
        );
        shard.topk_ids[1] = 5;
        shard.tokens[0] = 1000;
        assert!(check_ids(&shard, 64, path).is_err());
    }

    #[test]
    fn logits_in_row_blocks_equal_the_full_forward() {
        let cfg = StudentConfig::tiny_test();
        let w = io::random_weights(&cfg, 3).expect("weights");
        let student =
            Student::new(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu)).expect("s");
        let tokens = [1u32, 5, 9, 33, 2, 63, 7];
        let wanted = [false, true, true, false, true, true, true];
        let ids = Tensor::new(&tokens[..], &Device::Cpu)
            .expect("ids")
            .unsqueeze(0)
            .expect("b");
        let full = student
            .forward(&ids)
            .expect("forward")
            .get(0)
            .expect("[n, v]");
        let mut seen = Vec::new();
        logit_rows(&student, &tokens, &wanted, 2, &mut |p, z| {
            let want = full.get(p).expect("row").to_vec1::<f32>().expect("vec");
            let diff = want
                .iter()
                .zip(z)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-4, "position {p}: {diff}");
            seen.push(p);
        })
        .expect("rows");
        assert_eq!(seen, vec![1, 2, 4, 5, 6]);
    }
}
