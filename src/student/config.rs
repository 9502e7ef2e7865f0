//! Student sizes, stored as a Hugging Face `config.json` in `LlamaConfig` naming so that
//! transformers and candle-transformers load the student directory as it is.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Hyper-parameters of a Llama-architecture student (HF `LlamaConfig` field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudentConfig {
    /// `["LlamaForCausalLM"]`, or `["Qwen2ForCausalLM"]` with attention biases.
    pub architectures: Vec<String>,
    /// `llama`, or `qwen2` with attention biases.
    pub model_type: String,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Vocabulary size: the teacher's.
    pub vocab_size: usize,
    /// Longest sequence RoPE is meant for.
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Whether the output layer reuses the token embeddings.
    pub tie_word_embeddings: bool,
    /// Whether the q/k/v projections have biases (Qwen2's attention). A student with them is
    /// a Hugging Face `Qwen2ForCausalLM`, whose config names the field the same way.
    #[serde(default)]
    pub attention_bias: bool,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token.
    pub eos_token_id: Option<u32>,
    /// Always `float32`.
    pub torch_dtype: String,
}

/// Named student sizes. The body (the blocks) is fixed; the embedding adds
/// vocabulary x hidden parameters on top, which dominates with a large vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Body 0.4M parameters: hidden 128, 2 layers, 2 heads; embedding 128 per token.
    Small,
    /// Body 3.1M: hidden 256, 4 layers, 4 heads (2 KV heads); embedding 256 per token. The
    /// default.
    Base,
    /// Body 9.4M: hidden 384, 6 layers, 6 heads (2 KV heads); embedding 384 per token.
    Large,
}

impl StudentConfig {
    /// A config of the given sizes for a vocabulary of `vocab_size`.
    pub fn new(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
        intermediate: usize,
    ) -> Self {
        Self {
            architectures: vec!["LlamaForCausalLM".into()],
            model_type: "llama".into(),
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            vocab_size,
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
            torch_dtype: "float32".into(),
        }
    }

    /// A preset size.
    pub fn preset(p: Preset, vocab_size: usize) -> Self {
        match p {
            Preset::Small => Self::new(vocab_size, 128, 2, 2, 1, 384),
            Preset::Base => Self::new(vocab_size, 256, 4, 4, 2, 768),
            Preset::Large => Self::new(vocab_size, 384, 6, 6, 2, 1024),
        }
    }

    /// The same sizes with q/k/v biases: a Hugging Face `Qwen2ForCausalLM`.
    pub fn with_attention_bias(mut self) -> Self {
        self.attention_bias = true;
        self.architectures = vec!["Qwen2ForCausalLM".into()];
        self.model_type = "qwen2".into();
        self
    }

    /// A tiny model for unit tests: 2 layers, hidden 32, vocab 64.
    pub fn tiny_test() -> Self {
        Self::new(64, 32, 2, 4, 2, 64)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Parameter count.
    pub fn n_params(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let kv = self.num_key_value_heads * self.head_dim();
        let bias = if self.attention_bias { h + 2 * kv } else { 0 };
        let block = 2 * h * h + 2 * h * kv + 3 * h * i + 2 * h + bias;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * block + h + head
    }

    /// Parameters of the blocks and the final norm: everything but the vocabulary matrices.
    pub fn body_params(&self) -> usize {
        let vocab = self.vocab_size * self.hidden_size;
        let head = if self.tie_word_embeddings { 0 } else { vocab };
        self.n_params() - vocab - head
    }

    /// Check that the sizes fit together.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return bad("hidden size, heads and layers must be at least 1".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads)
            || !self.head_dim().is_multiple_of(2)
        {
            return bad(format!(
                "hidden size '{}' must split into '{}' heads of even width",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_key_value_heads == 0
            || !self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads)
        {
            return bad(format!(
                "key/value heads '{}' must divide the '{}' attention heads",
                self.num_key_value_heads, self.num_attention_heads
            ));
        }
        Ok(())
    }

    /// Read `dir/config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`].
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let cfg: Self = serde_json::from_slice(&bytes)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_bodies_match_their_docs_whatever_the_vocabulary() {
        // The default teacher's vocabulary: base is about 16M in all.
        let n = StudentConfig::preset(Preset::Base, 49_152).n_params();
        assert!((15_000_000..17_000_000).contains(&n), "{n}");
        for vocab in [49_152, 151_936, 262_144] {
            let body = |p| StudentConfig::preset(p, vocab).body_params() as f64 / 1e6;
            let docs = [
                (Preset::Small, 0.4),
                (Preset::Base, 3.1),
                (Preset::Large, 9.4),
            ];
            for (p, m) in docs {
                assert!((body(p) - m).abs() < 0.05, "{p:?} body {}M", body(p));
            }
            let cfg = StudentConfig::preset(Preset::Base, vocab);
            assert_eq!(cfg.n_params() - cfg.body_params(), vocab * 256);
        }
    }

    #[test]
    fn config_json_uses_hf_names_and_loads_in_candle_transformers() {
        let cfg = StudentConfig::preset(Preset::Base, 49_152);
        let json = serde_json::to_string(&cfg).expect("serialize");
        for key in [
            "\"hidden_size\"",
            "\"num_key_value_heads\"",
            "\"LlamaForCausalLM\"",
            "\"tie_word_embeddings\"",
        ] {
            assert!(json.contains(key), "{key}");
        }
        let hf: candle_transformers::models::llama::LlamaConfig =
            serde_json::from_str(&json).expect("LlamaConfig");
        assert_eq!((hf.hidden_size, hf.num_key_value_heads()), (256, 2));
    }

    #[test]
    fn bad_sizes_are_refused() {
        let mut cfg = StudentConfig::tiny_test();
        cfg.num_key_value_heads = 3;
        assert!(
            cfg.validate()
                .expect_err("3 does not divide 4")
                .to_string()
                .contains("'3'")
        );
        cfg = StudentConfig::tiny_test();
        cfg.num_attention_heads = 5;
        assert!(cfg.validate().is_err());
    }
}
