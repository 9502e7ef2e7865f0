//! Speed of one model in one engine: prompt processing, decoding, time to first token for a
//! short and a long prompt, size and peak memory. Each measurement runs in its own process
//! (`distill bench model`), so peak RSS belongs to that model alone.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama as hf;
use serde::{Deserialize, Serialize};

use crate::student::{StudentConfig, io};
use crate::teacher::{LlamaTeacher, SessionParams};
use crate::{Error, Result};

/// Tokens generated for the decode figure.
pub const GEN_TOKENS: usize = 128;
/// Decode runs timed; the figure is the fastest, since a shared machine only ever slows a
/// run down (as `llama-bench` users read the best of its repetitions).
const DECODE_RUNS: usize = 3;
const SHORT: &str = "Hi! What is a good name for a cat?";
const LONG_PARAGRAPH: &str = "A lighthouse keeper kept a log of every ship that passed, the weather, the state of the lamp \
and the small events of the island: gulls nesting on the gallery, a storm that broke two panes, a visitor who came \
by rowing boat to ask for water. ";

/// Figures of one model in one engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    /// `llama.cpp` or `candle`.
    pub engine: String,
    /// Parameters.
    pub params: u64,
    /// Size of the model file(s), bytes.
    pub file_bytes: u64,
    /// Prompt processing, tokens/s (long prompt).
    pub prompt_tok_s: f64,
    /// Decoding, tokens/s.
    pub decode_tok_s: f64,
    /// Time to first token, short prompt, ms.
    pub ttft_short_ms: f64,
    /// Time to first token, long prompt (~500 tokens), ms.
    pub ttft_long_ms: f64,
    /// Tokens in the long prompt.
    pub long_prompt_tokens: usize,
    /// Peak resident memory of the measuring process, MB.
    pub peak_rss_mb: f64,
    /// Threads used.
    pub threads: usize,
}

fn long_text() -> String {
    LONG_PARAGRAPH.repeat(12)
}

/// Measure a GGUF in llama.cpp.
///
/// # Errors
/// Load or decode failures.
pub fn llama(path: &Path, threads: usize) -> Result<Speed> {
    let t = LlamaTeacher::load(path, String::new())?;
    let mut s = t.session(SessionParams {
        ctx: 2048,
        parallel: 1,
        n_batch: 512,
        threads,
        k: 1,
        hidden: false,
    })?;
    let short = t.tokenize(SHORT, true);
    let mut long = t.tokenize(&long_text(), true);
    long.truncate(500);
    let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let run = |prompt: &[u32], n: usize| s.time_generation(prompt, n);
    protocol(
        "llama.cpp",
        t.info.n_params,
        file_bytes,
        &short,
        &long,
        threads,
        run,
    )
}

/// Measure a student directory in candle (candle-transformers' Llama with a KV cache).
///
/// # Errors
/// Load or forward failures.
pub fn candle(dir: &Path, threads: usize) -> Result<Speed> {
    let cfg = StudentConfig::read(dir)?;
    let hf_cfg: hf::LlamaConfig = serde_json::from_slice(
        &std::fs::read(dir.join("config.json")).map_err(|e| Error::io(dir, e))?,
    )?;
    let hf_cfg = hf_cfg.into_config(false);
    let weights = io::load_tensors(&dir.join("model.safetensors"))?;
    // A Qwen2 student's q/k/v biases are not in candle-transformers' Llama, which ignores
    // them: timing only, and they cost a few additions per token.
    let model = hf::Llama::load(
        VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
        &hf_cfg,
    )?;
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| Error::Invalid(format!("tokenizer.json: {e}")))?;
    let encode = |text: &str| -> Result<Vec<u32>> {
        Ok(tok
            .encode(text, true)
            .map_err(|e| Error::Invalid(format!("tokenize: {e}")))?
            .get_ids()
            .to_vec())
    };
    let short = encode(SHORT)?;
    let mut long = encode(&long_text())?;
    long.truncate(500);
    let run = |prompt: &[u32], n_gen: usize| -> Result<(f64, f64)> {
        let mut cache = hf::Cache::new(true, DType::F32, &hf_cfg, &Device::Cpu)?;
        let clock = Instant::now();
        let input = Tensor::new(prompt, &Device::Cpu)?.unsqueeze(0)?;
        let mut next = crate::teacher::argmax(
            &model
                .forward(&input, 0, &mut cache)?
                .squeeze(0)?
                .to_vec1::<f32>()?,
        );
        let ttft = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        for i in 0..n_gen.saturating_sub(1) {
            let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
            next = crate::teacher::argmax(
                &model
                    .forward(&input, prompt.len() + i, &mut cache)?
                    .squeeze(0)?
                    .to_vec1::<f32>()?,
            );
        }
        Ok((ttft, clock.elapsed().as_secs_f64()))
    };
    let file_bytes = std::fs::metadata(dir.join("model.safetensors")).map_or(0, |m| m.len());
    protocol(
        "candle",
        cfg.n_params() as u64,
        file_bytes,
        &short,
        &long,
        threads,
        run,
    )
}

/// The same protocol for every engine: a warm-up, time to first token for the short and
/// the long prompt, then decoding after the short one (the fastest of [`DECODE_RUNS`]). `run(prompt, n)` returns (seconds
/// to the first token, seconds for the other `n - 1`).
fn protocol(
    engine: &str,
    params: u64,
    file_bytes: u64,
    short: &[u32],
    long: &[u32],
    threads: usize,
    mut run: impl FnMut(&[u32], usize) -> Result<(f64, f64)>,
) -> Result<Speed> {
    run(short, 4)?;
    let (ttft_short, _) = run(short, 1)?;
    let (ttft_long, _) = run(long, 1)?;
    let mut decode = f64::INFINITY;
    for _ in 0..DECODE_RUNS {
        decode = decode.min(run(short, GEN_TOKENS)?.1);
    }
    Ok(Speed {
        engine: engine.into(),
        params,
        file_bytes,
        prompt_tok_s: long.len() as f64 / ttft_long,
        decode_tok_s: (GEN_TOKENS - 1) as f64 / decode,
        ttft_short_ms: ttft_short * 1e3,
        ttft_long_ms: ttft_long * 1e3,
        long_prompt_tokens: long.len(),
        peak_rss_mb: peak_rss_mb(),
        threads,
    })
}

/// Peak resident set size of this process in MB (VmHWM), 0 where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
