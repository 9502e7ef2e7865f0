//! Initialising a student from its teacher, as DistilBERT (Sanh et al. 2019,
//! arXiv:1910.01108) did: keep the teacher's embeddings, final norm and a chosen subset of
//! its layers, dequantized from the GGUF. Llama and Qwen2 teachers (with their q/k/v
//! biases); [`TeacherProfile::require_init`] names what stops the others.
//!
//! llama.cpp's converter permutes the rows of Q and K of Llama models (not Qwen2's, which
//! run NEOX RoPE on Hugging Face's row order) so that its interleaved RoPE matches Hugging
//! Face's `rotate_half` RoPE; we undo that permutation to get HF weights back.

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use super::config::StudentConfig;
use super::io::Weights;
use crate::gguf::TeacherProfile;
use crate::{Error, Result};

/// The teacher's sizes as a student config with `layers` decoder blocks.
pub fn teacher_config(p: &TeacherProfile, layers: usize) -> StudentConfig {
    let mut cfg = StudentConfig::new(p.n_vocab, p.hidden, layers, p.heads, p.kv_heads, p.ffn);
    cfg.max_position_embeddings = p.context;
    cfg.rms_norm_eps = p.rms_eps;
    cfg.rope_theta = p.rope_theta as f32;
    cfg.bos_token_id = p.bos;
    cfg.eos_token_id = p.eos;
    cfg.tie_word_embeddings = p.tied_embeddings;
    if p.attention_bias {
        cfg = cfg.with_attention_bias();
    }
    cfg
}

/// Config and weights of a student made of the teacher's blocks `layers` (in that order).
///
/// # Errors
/// A teacher the student cannot start from (its profile says why), an unreadable GGUF, a
/// layer index out of range.
pub fn from_teacher(path: &Path, layers: &[usize]) -> Result<(StudentConfig, Weights)> {
    let profile = TeacherProfile::read(path)?;
    profile.require_init()?;
    profile.check_layers(layers)?;
    let cfg = teacher_config(&profile, layers.len());
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
    if !cfg.tie_word_embeddings {
        w.insert("lm_head.weight".into(), load("output.weight")?);
    }
    let permuted = profile.family().permuted_qk();
    for (i, &l) in layers.iter().enumerate() {
        load_block(&mut load, &cfg, (l, i), permuted, &mut w)?;
    }
    super::io::check_weights(&cfg, &w)?;
    Ok((cfg, w))
}

/// Teacher block `src` as student block `dst`: attention (Q/K unpermuted where the GGUF
/// permuted them, biases where the config has them), MLP and norms.
fn load_block(
    load: &mut dyn FnMut(&str) -> Result<Tensor>,
    cfg: &StudentConfig,
    (src, dst): (usize, usize),
    permuted: bool,
    w: &mut Weights,
) -> Result<()> {
    let (src, dst) = (format!("blk.{src}"), format!("model.layers.{dst}"));
    let hd = cfg.head_dim();
    let kinds: &[&str] = if cfg.attention_bias {
        &["weight", "bias"]
    } else {
        &["weight"]
    };
    for (gg, hf, heads) in [
        ("attn_q", "q_proj", cfg.num_attention_heads),
        ("attn_k", "k_proj", cfg.num_key_value_heads),
        ("attn_v", "v_proj", 0),
    ] {
        for kind in kinds {
            let t = load(&format!("{src}.{gg}.{kind}"))?;
            let t = if permuted && heads > 0 {
                unpermute_any(&t, heads, hd)?
            } else {
                t
            };
            w.insert(format!("{dst}.self_attn.{hf}.{kind}"), t);
        }
    }
    for (gg, hf) in [
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
        ("attn_norm", "input_layernorm"),
        ("ffn_norm", "post_attention_layernorm"),
    ] {
        let t = load(&format!("{src}.{gg}.weight"))?;
        w.insert(format!("{dst}.{hf}.weight"), t);
    }
    Ok(())
}

/// [`unpermute`] of a matrix, or of a bias vector (its rows are permuted alike).
fn unpermute_any(t: &Tensor, heads: usize, hd: usize) -> Result<Tensor> {
    match t.dims() {
        [n] => Ok(unpermute(&t.reshape((*n, 1))?, heads, hd)?.reshape(*n)?),
        _ => unpermute(t, heads, hd),
    }
}

/// [`permute`] of a matrix or a bias vector; used by export.
///
/// # Errors
/// As [`permute`].
pub fn permute_any(t: &Tensor, heads: usize, hd: usize) -> Result<Tensor> {
    match t.dims() {
        [n] => Ok(permute(&t.reshape((*n, 1))?, heads, hd)?.reshape(*n)?),
        _ => permute(t, heads, hd),
    }
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
