//! Student weights: random initialisation, the Hugging Face directory on disk, and the
//! candle `VarMap` that training updates.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

use super::config::StudentConfig;
use crate::record::write_atomic;
use crate::teacher::Rng;
use crate::{Error, Result};

/// Weights by Hugging Face name.
pub type Weights = HashMap<String, Tensor>;

/// Every parameter's HF name and shape, in a fixed order.
pub fn param_shapes(cfg: &StudentConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let kv = cfg.num_key_value_heads * cfg.head_dim();
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![h, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, h]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            out.push((format!("{p}.{name}"), shape));
        }
        if cfg.attention_bias {
            for (name, n) in [("q_proj", h), ("k_proj", kv), ("v_proj", kv)] {
                out.push((format!("{p}.self_attn.{name}.bias"), vec![n]));
            }
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, h]));
    }
    out
}

/// Normal(0, 0.02) matrices, unit norms and zero biases, from a seeded generator (candle's CPU device
/// cannot be seeded).
///
/// # Errors
/// Tensor allocation failures.
pub fn random_weights(cfg: &StudentConfig, seed: u64) -> Result<Weights> {
    let mut rng = Rng::for_record(seed, u64::MAX);
    let mut out = Weights::new();
    for (name, shape) in param_shapes(cfg) {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with(".bias") {
            vec![0.0; n]
        } else if shape.len() == 1 {
            vec![1.0; n]
        } else {
            (0..n).map(|_| 0.02 * normal(&mut rng)).collect()
        };
        out.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
    }
    Ok(out)
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f32 {
    let u1 = rng.uniform().max(1e-300);
    let u2 = rng.uniform();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// Check that `weights` has exactly the parameters of `cfg`, with the right shapes.
///
/// # Errors
/// [`Error::Invalid`] naming the first mismatch.
pub fn check_weights(cfg: &StudentConfig, weights: &Weights) -> Result<()> {
    for (name, shape) in param_shapes(cfg) {
        let t = weights
            .get(&name)
            .ok_or_else(|| Error::Invalid(format!("weights lack '{name}'")))?;
        if t.dims() != shape.as_slice() {
            return Err(Error::Invalid(format!(
                "'{name}' has shape {:?}, config wants {shape:?}",
                t.dims()
            )));
        }
    }
    Ok(())
}

/// Trainable variables holding `weights`.
///
/// # Errors
/// Tensor copies failing.
pub fn var_map(weights: &Weights) -> Result<VarMap> {
    let vm = VarMap::new();
    {
        let mut data = vm
            .data()
            .lock()
            .map_err(|_| Error::Invalid("var map lock poisoned".into()))?;
        for (name, t) in weights {
            data.insert(name.clone(), Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
    }
    Ok(vm)
}

/// The current values of a `VarMap`, by name.
///
/// # Errors
/// A poisoned lock.
pub fn weights_of(vm: &VarMap) -> Result<Weights> {
    let data = vm
        .data()
        .lock()
        .map_err(|_| Error::Invalid("var map lock poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

/// Save tensors as safetensors, atomically.
///
/// # Errors
/// [`Error::Io`] or serialization errors.
pub fn save_tensors(path: &Path, tensors: &Weights) -> Result<()> {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.clone(), v)), None)?;
    write_atomic(path, &bytes)
}

/// [`save_tensors`], returning the sha256 of the bytes written (for checkpoints that must
/// prove themselves when read back).
///
/// # Errors
/// [`Error::Io`] or [`Error::Safetensors`].
pub fn save_tensors_hashed(path: &Path, tensors: &Weights) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.clone(), v)), None)?;
    write_atomic(path, &bytes)?;
    Ok(crate::gguf::hex(&Sha256::digest(&bytes)))
}

/// Load a safetensors file onto the CPU after checking that its sha256 is `sha256`.
///
/// # Errors
/// [`Error::Io`] when missing, [`Error::Invalid`] naming the file when it differs.
pub fn load_tensors_checked(path: &Path, sha256: &str) -> Result<Weights> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if crate::gguf::hex(&Sha256::digest(&bytes)) != sha256 {
        return Err(Error::Invalid(format!(
            "checkpoint file '{}' does not match the sha256 train_state.json recorded for it \
             (damaged or replaced); restore it, or start the run again without --resume",
            path.display()
        )));
    }
    Ok(candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?)
}

/// Load a safetensors file onto the CPU.
///
/// # Errors
/// [`Error::Io`] when missing, candle errors when damaged.
pub fn load_tensors(path: &Path) -> Result<Weights> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        ));
    }
    Ok(candle_core::safetensors::load(path, &Device::Cpu)?)
}

/// Write `config.json` atomically.
///
/// # Errors
/// [`Error::Io`].
pub fn save_config(dir: &Path, cfg: &StudentConfig) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(cfg)?;
    bytes.push(b'\n');
    write_atomic(&dir.join("config.json"), &bytes)
}

/// Where a student came from: its teacher, whose tokenizer it shares. Written as
/// `provenance.json` into the student directory, read by export and chat to find the
/// tokenizer and chat template again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// Teacher GGUF file name.
    pub file: String,
    /// Where the teacher GGUF was when the student was made.
    pub path: std::path::PathBuf,
    /// sha256 of the teacher GGUF.
    #[serde(default)]
    pub sha256: String,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Tokenizer fingerprint ([`crate::gguf::GgufMeta::tokenizer_fingerprint`]).
    pub tokenizer_fingerprint: String,
}

/// Path of the provenance file in a student directory.
pub fn provenance_path(dir: &Path) -> std::path::PathBuf {
    dir.join("provenance.json")
}

impl Provenance {
    /// Write `dir/provenance.json` atomically.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_atomic(&provenance_path(dir), &bytes)
    }

    /// Read the provenance of the student in `dir`: `provenance.json`, or for a directory
    /// written before it existed, the `teacher` of its `train_state.json`; `Ok(None)` when
    /// neither is there.
    ///
    /// # Errors
    /// [`Error::Json`] for a damaged file.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        if let Ok(bytes) = std::fs::read(provenance_path(dir)) {
            return Ok(Some(serde_json::from_slice(&bytes)?));
        }
        let Ok(bytes) = std::fs::read(dir.join("train_state.json")) else {
            return Ok(None);
        };
        let state: serde_json::Value = serde_json::from_slice(&bytes)?;
        match state.get("teacher") {
            Some(t) => Ok(Some(serde_json::from_value(t.clone())?)),
            None => Ok(None),
        }
    }
}

/// Start a student directory: `config.json`, `provenance.json`, and the Hugging Face
/// tokenizer files built from the teacher's GGUF (`tokenizer.json`, `tokenizer_config.json`,
/// `generation_config.json`). Returns a warning when that tokenizer cannot be reproduced (the
/// directory is still usable by distill; only Hugging Face tools need the file).
///
/// # Errors
/// [`Error::Io`] and serialisation errors.
pub fn create_dir(
    dir: &Path,
    cfg: &StudentConfig,
    teacher: &crate::gguf::GgufMeta,
    provenance: &Provenance,
) -> Result<Option<String>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    save_config(dir, cfg)?;
    provenance.save(dir)?;
    super::hf::write_configs(dir, teacher, cfg.max_position_embeddings)?;
    let path = dir.join("tokenizer.json");
    match crate::gguf::tokenizer::write_tokenizer_json(teacher, &path) {
        Ok(()) => Ok(None),
        Err(Error::Invalid(why)) => Ok(Some(format!(
            "no tokenizer.json in '{}': {why}. distill itself does not need it (it tokenizes with the teacher); Hugging Face tools do",
            dir.display()
        ))),
        Err(e) => Err(e),
    }
}
