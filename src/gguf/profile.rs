//! [`TeacherProfile`]: everything distill needs to know about a teacher GGUF, read once
//! from its metadata before any stage spends time, and the checks each stage makes on it
//! (can a student start from its blocks, has it a chat template, can its tokenizer be
//! written as `tokenizer.json`), each refusal with the reason and the fix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::meta::GgufMeta;
use crate::{Error, Result};

/// Architectures whose blocks a student can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `llama` (Llama, SmolLM, TinyLlama, Mistral...): Q/K rows permuted for interleaved RoPE.
    Llama,
    /// `qwen2` (Qwen2, Qwen2.5): q/k/v biases, rows in Hugging Face order (NEOX RoPE).
    Qwen2,
    /// Any other architecture llama.cpp runs: recorded and distilled, random student init.
    Other,
}

impl Family {
    /// The family of `general.architecture`.
    pub fn of(arch: &str) -> Self {
        match arch {
            "llama" => Family::Llama,
            "qwen2" => Family::Qwen2,
            _ => Family::Other,
        }
    }

    /// Whether the GGUF stores Q/K rows in llama.cpp's interleaved order (llama.cpp's
    /// converter permutes them for `LlamaForCausalLM` only; qwen2 runs NEOX RoPE on HF rows).
    pub fn permuted_qk(self) -> bool {
        self == Family::Llama
    }
}

/// The teacher as distill sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherProfile {
    /// The GGUF file.
    pub path: PathBuf,
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, or the file name.
    pub name: String,
    /// Decoder blocks.
    pub blocks: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Width of the feed-forward layer (0 when not stated).
    pub ffn: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Training context length.
    pub context: usize,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece)...
    pub tokenizer_model: String,
    /// `tokenizer.ggml.pre` (`default` when absent).
    pub pre: String,
    /// The chat template, `None` for a base model.
    pub chat_template: Option<String>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// Whether llama.cpp puts BOS before a text.
    pub add_bos: bool,
    /// Whether the attention has q/k/v biases.
    pub attention_bias: bool,
    /// Whether the output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// sha256 over the tokenizer (see [`GgufMeta::tokenizer_fingerprint`]).
    pub fingerprint: String,
    /// Why a student cannot start from this teacher's blocks; `None` when it can.
    pub init_blocker: Option<String>,
    /// Why `tokenizer.json` cannot be built from this GGUF; `None` when it can.
    pub tokenizer_blocker: Option<String>,
}

impl TeacherProfile {
    /// Read the profile of the GGUF at `path`.
    ///
    /// # Errors
    /// [`Error::Gguf`] for a file that is not a GGUF model or lacks a size distill needs.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_meta(&GgufMeta::read(path)?)
    }

    /// The profile of already-read metadata.
    ///
    /// # Errors
    /// As [`TeacherProfile::read`].
    pub fn from_meta(meta: &GgufMeta) -> Result<Self> {
        let bad = |reason: String| Error::Gguf {
            path: meta.path.clone(),
            reason,
        };
        let arch = meta
            .architecture()
            .ok_or_else(|| bad("it has no 'general.architecture': is it a model GGUF?".into()))?;
        let need = |key: &str| {
            meta.arch_u64(key).map(|x| x as usize).ok_or_else(|| {
                bad(format!(
                    "its metadata lacks '{arch}.{key}'; re-convert it with llama.cpp's convert_hf_to_gguf.py"
                ))
            })
        };
        let (hidden, heads) = (
            need("embedding_length")?,
            need("attention.head_count")?.max(1),
        );
        let n_vocab = meta
            .n_vocab()
            .ok_or_else(|| bad("it has no tokenizer ('tokenizer.ggml.tokens')".into()))?;
        let tok = Tokenizer::of(meta);
        let mut p = Self {
            path: meta.path.clone(),
            architecture: arch.to_string(),
            name: meta
                .str("general.name")
                .map(str::to_string)
                .unwrap_or_else(|| file_name(&meta.path)),
            blocks: need("block_count")?,
            hidden,
            heads,
            kv_heads: meta
                .arch_u64("attention.head_count_kv")
                .map_or(heads, |x| x as usize),
            head_dim: meta
                .arch_u64("attention.key_length")
                .map_or(hidden / heads, |x| x as usize),
            ffn: meta.arch_u64("feed_forward_length").unwrap_or(0) as usize,
            n_vocab,
            context: meta.arch_u64("context_length").unwrap_or(2048) as usize,
            rope_theta: meta.arch_f64("rope.freq_base").unwrap_or(10_000.0),
            rms_eps: meta
                .arch_f64("attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-5),
            add_bos: tok.add_bos,
            tokenizer_model: tok.model,
            pre: tok.pre,
            chat_template: tok.template,
            bos: tok.bos,
            eos: tok.eos,
            attention_bias: meta.has_tensor("blk.0.attn_q.bias"),
            tied_embeddings: !meta.has_tensor("output.weight"),
            fingerprint: meta.tokenizer_fingerprint(),
            init_blocker: None,
            tokenizer_blocker: super::tokenizer::unsupported(meta),
        };
        p.init_blocker = init_blocker(meta, &p);
        Ok(p)
    }

    /// The family of its architecture.
    pub fn family(&self) -> Family {
        Family::of(&self.architecture)
    }

    /// The GGUF's file name.
    pub fn file(&self) -> String {
        file_name(&self.path)
    }

    /// Refuse when a student cannot start from this teacher's blocks.
    ///
    /// # Errors
    /// [`Error::Invalid`] with the reason and the fix (`--init random`).
    pub fn require_init(&self) -> Result<()> {
        match &self.init_blocker {
            None => Ok(()),
            Some(why) => Err(Error::Invalid(format!(
                "--init teacher cannot start a student from '{}': {why}; use --init random (a student of --preset size)",
                self.file()
            ))),
        }
    }

    /// Refuse when the teacher has no chat template (a base model).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `what` needed the template and the alternatives.
    pub fn require_chat_template(&self, what: &str) -> Result<()> {
        if self.chat_template.is_some() {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "teacher '{}' is a base model: it has no chat template, so it cannot {what}; record raw text instead ({{\"text\": ...}} lines or .txt files) with --mode score, which scores it teacher-forced",
            self.file()
        )))
    }

    /// The teacher blocks a student of `n` blocks starts from by default: spread evenly,
    /// the first and the last kept.
    pub fn default_layers(&self, n: usize) -> Vec<usize> {
        spread(self.blocks, n)
    }

    /// How many blocks a teacher-initialised student keeps by default: a fifth of the
    /// teacher's (6 of SmolLM2's 30), at least 2.
    pub fn default_student_blocks(&self) -> usize {
        ((self.blocks as f64 / 5.0).round() as usize)
            .max(2)
            .min(self.blocks)
    }

    /// Refuse a block list that names blocks the teacher lacks.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the bad entry and the teacher's range.
    pub fn check_layers(&self, layers: &[usize]) -> Result<()> {
        if layers.is_empty() {
            return Err(Error::Invalid(
                "--layers is empty: name the teacher blocks to keep, e.g. 0,6,12".into(),
            ));
        }
        match layers.iter().find(|&&l| l >= self.blocks) {
            None => Ok(()),
            Some(bad) => Err(Error::Invalid(format!(
                "--layers names block '{bad}', but teacher '{}' has blocks 0..={} ({} in all); e.g. --layers {}",
                self.file(),
                self.blocks.saturating_sub(1),
                self.blocks,
                join(&self.default_layers(self.default_student_blocks()))
            ))),
        }
    }
}

/// The tokenizer facts of the profile.
struct Tokenizer {
    model: String,
    pre: String,
    template: Option<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
}

impl Tokenizer {
    fn of(meta: &GgufMeta) -> Self {
        let token = |key: &str| meta.u64(key).and_then(|x| u32::try_from(x).ok());
        let model = meta.str("tokenizer.ggml.model").unwrap_or("").to_string();
        Self {
            // llama.cpp's default: SentencePiece vocabularies add BOS.
            add_bos: meta
                .bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(model == "llama"),
            model,
            pre: meta
                .str("tokenizer.ggml.pre")
                .filter(|p| !p.is_empty())
                .unwrap_or("default")
                .to_string(),
            template: meta
                .str("tokenizer.chat_template")
                .filter(|t| !t.trim().is_empty())
                .map(str::to_string),
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
        }
    }
}

/// `n` indices out of `0..total`, evenly spread: every `total / (n - 1)`-th from 0, and the
/// last one (30 blocks, 6 kept: 0,6,12,18,24,29).
pub fn spread(total: usize, n: usize) -> Vec<usize> {
    let n = n.min(total);
    match n {
        0 => Vec::new(),
        1 => vec![0],
        _ => (0..n - 1)
            .map(|i| i * total / (n - 1))
            .chain(std::iter::once(total - 1))
            .collect(),
    }
}

/// `0,6,12` from `[0, 6, 12]`.
pub fn join(layers: &[usize]) -> String {
    let s: Vec<String> = layers.iter().map(usize::to_string).collect();
    s.join(",")
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}

/// Why a student cannot start from the teacher's blocks, or `None`.
fn init_blocker(meta: &GgufMeta, p: &TeacherProfile) -> Option<String> {
    if p.family() == Family::Other {
        return Some(format!(
            "its architecture '{}' is not one the student reproduces (llama, qwen2)",
            p.architecture
        ));
    }
    if let Some(e) = &meta.tensors_error {
        return Some(format!(
            "candle cannot read its tensors ({e}); requantize it to Q8_0 or Q4_K_M"
        ));
    }
    if p.head_dim * p.heads != p.hidden {
        return Some(format!(
            "its attention is {} heads of {}, not the hidden size {}",
            p.heads, p.head_dim, p.hidden
        ));
    }
    let has = |t: &str| meta.has_tensor(&format!("blk.0.{t}"));
    if has("attn_qkv.weight") {
        return Some("its Q/K/V projections are fused into one tensor".into());
    }
    let extra = [
        "attn_output.bias",
        "ffn_up.bias",
        "ffn_down.bias",
        "ffn_gate.bias",
    ];
    if let Some(t) = extra.iter().find(|t| has(t)) {
        return Some(format!("it has a '{t}' tensor the student lacks"));
    }
    if p.attention_bias != (has("attn_k.bias") && has("attn_v.bias")) {
        return Some("it has biases on some of Q, K and V but not all three".into());
    }
    let scaling = meta
        .str(&format!("{}.rope.scaling.type", p.architecture))
        .unwrap_or("none");
    if meta.has_tensor("rope_freqs.weight") || !matches!(scaling, "none" | "") {
        return Some(format!(
            "it scales RoPE ('{scaling}', or per-frequency factors), which the student does not"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_the_first_and_last_block() {
        assert_eq!(spread(30, 6), vec![0, 6, 12, 18, 24, 29]);
        assert_eq!(spread(24, 5), vec![0, 6, 12, 18, 23]);
        assert_eq!(spread(18, 4), vec![0, 6, 12, 17]);
        assert_eq!(spread(6, 5), vec![0, 1, 3, 4, 5]);
        assert_eq!(spread(4, 9), vec![0, 1, 2, 3]);
        assert_eq!(spread(5, 1), vec![0]);
        assert_eq!(join(&[0, 6, 12]), "0,6,12");
    }

    #[test]
    fn families_and_their_row_order() {
        assert_eq!(Family::of("llama"), Family::Llama);
        assert_eq!(Family::of("qwen2"), Family::Qwen2);
        assert_eq!(Family::of("gemma3"), Family::Other);
        assert!(Family::Llama.permuted_qk() && !Family::Qwen2.permuted_qk());
    }
}
