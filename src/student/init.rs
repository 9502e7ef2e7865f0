//! Initialising a student from its teacher, as DistilBERT (Sanh et al. 2019,
//! arXiv:1910.01108) did: keep the teacher's embeddings, final norm and a chosen subset of
//! its layers, dequantized from the GGUF.
//!
//! llama.cpp's converter permutes the rows of Q and K so that its interleaved RoPE matches
//! Hugging Face's `rotate_half` RoPE; we undo that permutation to get HF weights back.

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use super::config::StudentConfig;
use super::io::Weights;
use crate::gguf::GgufMeta;
use crate::{Error, Result};

/// The teacher's sizes as a student config with `layers` decoder blocks.
///
/// # Errors
/// [`Error::Gguf`] when the GGUF is not a Llama-architecture model or lacks a size.
pub fn teacher_config(meta: &GgufMeta, path: &Path, layers: usize) -> Result<StudentConfig> {
    let arch = meta.architecture().unwrap_or("");
    let bad = |reason: String| Error::Gguf {
        path: path.to_path_buf(),
        reason,
    };
    if arch != "llama" {
        return Err(bad(format!(
            "--init teacher needs a Llama-architecture teacher, this one is '{arch}'; use --init random"
        )));
    }
    let get = |key: &str| {
        meta.u64(&format!("llama.{key}"))
            .ok_or_else(|| bad(format!("metadata lacks 'llama.{key}'")))
    };
    let f = |key: &str| match meta.kv.get(&format!("llama.{key}")) {
        Some(crate::gguf::Value::F64(x)) => Some(*x),
        _ => None,
    };
    let heads = get("attention.head_count")? as usize;
    let n_vocab = meta
        .n_vocab()
        .ok_or_else(|| bad("metadata lacks the tokenizer vocabulary".into()))?;
    let mut cfg = StudentConfig::new(
        n_vocab,
        get("embedding_length")? as usize,
        layers,
        heads,
        meta.u64("llama.attention.head_count_kv")
            .map_or(heads, |x| x as usize),
        get("feed_forward_length")? as usize,
    );
    cfg.max_position_embeddings = get("context_length")? as usize;
    cfg.rms_norm_eps = f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5);
    cfg.rope_theta = f("rope.freq_base").unwrap_or(10_000.0) as f32;
    cfg.bos_token_id = meta.u64("tokenizer.ggml.bos_token_id").map(|x| x as u32);
    cfg.eos_token_id = meta.u64("tokenizer.ggml.eos_token_id").map(|x| x as u32);
    Ok(cfg)
}

/// Config and weights of a student made of the teacher's blocks `layers` (in that order).
///
/// # Errors
/// An unreadable GGUF, a layer index out of range, an unsupported quantization.
pub fn from_teacher(path: &Path, layers: &[usize]) -> Result<(StudentConfig, Weights)> {
    let meta = GgufMeta::read(path)?;
    let n_layers = meta.u64("llama.block_count").unwrap_or(0) as usize;
    if layers.is_empty() {
        return Err(Error::Invalid(
            "--layers is empty: name the teacher blocks to keep, e.g. 0,6,12".into(),
        ));
    }
    if let Some(&bad) = layers.iter().find(|&&l| l >= n_layers) {
        return Err(Error::Invalid(format!(
            "--layers names block '{bad}', the teacher has blocks 0..{}",
            n_layers.saturating_sub(1)
        )));
    }
    let mut cfg = teacher_config(&meta, path, layers.len())?;
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| Error::Gguf {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut load = |name: &str| -> Result<Tensor> {
        Ok(content
            .tensor(&mut file, name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?)
    };
    let mut w = Weights::new();
    w.insert(
        "model.embed_tokens.weight".into(),
        load("token_embd.weight")?,
    );
    w.insert("model.norm.weight".into(), load("output_norm.weight")?);
    cfg.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
    if !cfg.tie_word_embeddings {
        w.insert("lm_head.weight".into(), load("output.weight")?);
    }
    let hd = cfg.head_dim();
    for (i, &l) in layers.iter().enumerate() {
        let (src, dst) = (format!("blk.{l}"), format!("model.layers.{i}"));
        let q = unpermute(
            &load(&format!("{src}.attn_q.weight"))?,
            cfg.num_attention_heads,
            hd,
        )?;
        let k = unpermute(
            &load(&format!("{src}.attn_k.weight"))?,
            cfg.num_key_value_heads,
            hd,
        )?;
        w.insert(format!("{dst}.self_attn.q_proj.weight"), q);
        w.insert(format!("{dst}.self_attn.k_proj.weight"), k);
        for (gg, hf) in [
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
        ] {
            w.insert(
                format!("{dst}.{hf}.weight"),
                load(&format!("{src}.{gg}.weight"))?,
            );
        }
    }
    super::io::check_weights(&cfg, &w)?;
    Ok((cfg, w))
}

/// Undo llama.cpp's Q/K row permutation: rows are stored per head as (hd/2, 2) interleaved
/// pairs; HF wants (2, hd/2) halves. `w` is [heads * hd, in].
///
/// # Errors
/// A shape that does not split into `heads` heads of width `hd`.
pub fn unpermute(w: &Tensor, heads: usize, hd: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    Ok(w.reshape((heads, hd / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

/// llama.cpp's permutation (HF -> GGUF), the inverse of [`unpermute`]; used by export.
///
/// # Errors
/// As [`unpermute`].
pub fn permute(w: &Tensor, heads: usize, hd: usize) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    Ok(w.reshape((heads, 2, hd / 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_and_unpermute_are_inverse() {
        let w = Tensor::arange(0f32, 2.0 * 8.0 * 3.0, &Device::Cpu)
            .expect("arange")
            .reshape((16, 3))
            .expect("reshape");
        let p = permute(&w, 2, 8).expect("permute");
        assert_ne!(
            p.to_vec2::<f32>().expect("vec"),
            w.to_vec2::<f32>().expect("vec")
        );
        let back = unpermute(&p, 2, 8).expect("unpermute");
        assert_eq!(
            back.to_vec2::<f32>().expect("vec"),
            w.to_vec2::<f32>().expect("vec")
        );
        // Row 1 of head 0 in GGUF order is row hd/2 of head 0 in HF order.
        assert_eq!(
            p.get(1).expect("row").to_vec1::<f32>().expect("v"),
            w.get(4).expect("row").to_vec1::<f32>().expect("v")
        );
    }
}
