//! A student directory (from `distill train`) run in candle: candle-transformers' Llama
//! with its KV cache, as `eval::speed::candle` runs it. The directory holds weights and an
//! HF `config.json` but no chat template, so its vocabulary and template come from the
//! teacher GGUF it was trained against (named in `provenance.json`), loaded vocab-only.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as hf;

use super::ModelInfo;
use super::engine::{Decoder, common_prefix};
use crate::gguf::GgufMeta;
use crate::student::StudentConfig;
use crate::student::io::{self, Provenance};
use crate::{Error, Result};

/// Prompt tokens fed per forward pass (bounds the attention matrix).
const CHUNK: usize = 256;

/// The student's weights, config and caches.
pub struct CandleDecoder {
    model: hf::Llama,
    cfg: hf::Config,
    n_ctx: usize,
    /// The cache after the last prompt and after the last answer, with the tokens each holds.
    after_prompt: Option<(hf::Cache, Vec<u32>)>,
    current: Option<(hf::Cache, Vec<u32>)>,
    logits: Vec<f32>,
    pool: rayon::ThreadPool,
    threads: usize,
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("chat-student-{i}"))
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {threads} threads: {e}")))
}

/// The GGUF whose vocabulary and chat template the student in `dir` uses: the teacher named
/// in its provenance if it is still there, else `fallback` (usually `--teacher`) when
/// its tokenizer matches.
///
/// # Errors
/// [`Error::Invalid`] naming what to pass when no matching GGUF is found.
pub fn vocab_gguf(dir: &Path, fallback: Option<&Path>) -> Result<PathBuf> {
    let state = Provenance::read(dir)?;
    let named = state.as_ref().map(|s| s.path.clone());
    let want = state.as_ref().map(|s| s.tokenizer_fingerprint.clone());
    // Why each candidate was passed over, for the error.
    let mut why = Vec::new();
    for candidate in named.iter().map(PathBuf::as_path).chain(fallback) {
        if !candidate.is_file() {
            why.push(format!("'{}' is missing", candidate.display()));
            continue;
        }
        let meta = match GgufMeta::read(candidate) {
            Ok(meta) => meta,
            Err(e) => {
                why.push(format!("'{}' cannot be read: {e}", candidate.display()));
                continue;
            }
        };
        if want
            .as_ref()
            .is_none_or(|w| *w == meta.tokenizer_fingerprint())
        {
            return Ok(candidate.to_path_buf());
        }
        why.push(format!("'{}' has another tokenizer", candidate.display()));
    }
    if why.is_empty() {
        why.push("provenance.json names no teacher".into());
    }
    Err(Error::Invalid(format!(
        "student '{}' takes its vocabulary and chat template from its teacher GGUF, and none \
         was found ({}): pass --teacher PATH",
        dir.display(),
        why.join("; "),
    )))
}

impl CandleDecoder {
    /// Load the student in `dir`, checking its vocabulary is `n_vocab` tokens; `ctx` caps
    /// the context.
    ///
    /// # Errors
    /// Unreadable or inconsistent `config.json` or weights.
    pub fn load(dir: &Path, n_vocab: usize, ctx: usize) -> Result<(Self, ModelInfo)> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let hf_cfg: hf::LlamaConfig = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("'{}': {e}", path.display())))?;
        let cfg = hf_cfg.into_config(false);
        if cfg.vocab_size != n_vocab {
            return Err(Error::Invalid(format!(
                "student vocabulary of {} tokens, teacher {n_vocab}",
                cfg.vocab_size
            )));
        }
        let weights = io::load_tensors(&dir.join("model.safetensors"))?;
        // candle's loader panics on a missing tensor: check them all against the config.
        let student_cfg = StudentConfig::read(dir)
            .map_err(|e| Error::Invalid(format!("'{}': {e}", path.display())))?;
        io::check_weights(&student_cfg, &weights)?;
        if student_cfg.attention_bias {
            // candle-transformers' Llama has no q/k/v biases: it would drop them silently.
            return Err(Error::Invalid(format!(
                "student '{}' has Qwen2's q/k/v biases, which the candle chat model lacks: chat with its GGUF export instead (distill export --student {} --out student.gguf, then --student student.gguf)",
                dir.display(),
                dir.display()
            )));
        }
        let params = student_cfg.n_params() as u64;
        let model = hf::Llama::load(
            VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
            &cfg,
        )?;
        let n_ctx = ctx.min(cfg.max_position_embeddings).max(16);
        let info = ModelInfo {
            name: dir
                .file_name()
                .map_or("student".into(), |f| f.to_string_lossy().into_owned()),
            engine: "candle".into(),
            params,
            n_ctx,
        };
        let decoder = Self {
            model,
            cfg,
            n_ctx,
            after_prompt: None,
            current: None,
            logits: Vec::new(),
            pool: pool(1)?,
            threads: 1,
        };
        Ok((decoder, info))
    }

    /// Feed `tokens` at positions `pos..` into `cache`; logits after the last.
    fn feed(&self, cache: &mut hf::Cache, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        let mut logits = Vec::new();
        for (c, chunk) in tokens.chunks(CHUNK).enumerate() {
            let input = Tensor::new(chunk, &Device::Cpu)?.unsqueeze(0)?; // [1, t]
            let out = self
                .pool
                .install(|| self.model.forward(&input, pos + c * CHUNK, cache))?;
            logits = out.squeeze(0)?.to_vec1::<f32>()?; // [vocab]
        }
        Ok(logits)
    }
}

impl Decoder for CandleDecoder {
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    fn set_threads(&mut self, n: usize) -> Result<()> {
        if n.max(1) != self.threads {
            self.pool = pool(n)?;
            self.threads = n.max(1);
        }
        Ok(())
    }

    fn prefill(&mut self, tokens: &[u32]) -> Result<(usize, &[f32])> {
        // candle's cache cannot be cut back: reuse the longest saved cache whose tokens are
        // all a prefix of the new prompt (the last answer, or at least the last prompt).
        let usable = |s: &Option<(hf::Cache, Vec<u32>)>| {
            s.as_ref()
                .filter(|(_, t)| t.len() < tokens.len() && common_prefix(t, tokens) == t.len())
                .cloned()
        };
        let (mut cache, keep) = match usable(&self.current).or_else(|| usable(&self.after_prompt)) {
            Some((cache, t)) => (cache, t.len()),
            None => (
                hf::Cache::new(true, DType::F32, &self.cfg, &Device::Cpu)?,
                0,
            ),
        };
        self.current = None;
        self.logits = self.feed(&mut cache, &tokens[keep..], keep)?;
        self.after_prompt = Some((cache.clone(), tokens.to_vec()));
        self.current = Some((cache, tokens.to_vec()));
        Ok((keep, &self.logits))
    }

    fn step(&mut self, token: u32) -> Result<&[f32]> {
        let (mut cache, mut held) = self
            .current
            .take()
            .ok_or_else(|| Error::Invalid("step before prefill".into()))?;
        self.logits = self.feed(&mut cache, &[token], held.len())?;
        held.push(token);
        self.current = Some((cache, held));
        Ok(&self.logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_a_teacher_gguf_cannot_be_read_stays_in_the_error() {
        let dir = std::env::temp_dir().join(format!("distill-vocab-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).expect("dir");
        let bad = dir.join("teacher.gguf");
        std::fs::write(&bad, b"this is not a model at all").expect("write");
        Provenance {
            file: "teacher.gguf".into(),
            path: bad.clone(),
            sha256: String::new(),
            n_vocab: 64,
            tokenizer_fingerprint: "x".into(),
        }
        .save(&dir)
        .expect("provenance");
        let err = vocab_gguf(&dir, Some(&dir.join("gone.gguf")))
            .expect_err("no usable GGUF")
            .to_string();
        assert!(
            err.contains(&format!("'{}' cannot be read", bad.display()))
                && err.contains("not a GGUF file")
                && err.contains("gone.gguf' is missing")
                && err.contains("--teacher"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
