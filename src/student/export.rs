//! Export a student as a GGUF file that llama.cpp (and ollama, LM Studio) load and run.
//!
//! The layout follows llama.cpp's `convert_hf_to_gguf.py` for `LlamaForCausalLM`: tensor
//! names `token_embd`, `blk.{i}.attn_q`..., the `llama.*` hyper-parameter keys, and Q/K rows
//! permuted so that llama.cpp's interleaved RoPE equals Hugging Face's `rotate_half` RoPE.
//! A Qwen2 student's q/k/v biases go in as `blk.{i}.attn_q.bias`..., which llama.cpp's
//! llama architecture loads as optional tensors.
//! The tokenizer (every `tokenizer.*` key, chat template included) is copied from the
//! teacher, whose vocabulary the student shares. Format:
//! <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Tensor};

use super::config::StudentConfig;
use super::init::permute_any;
use super::io::{self, Provenance, Weights};
use crate::gguf::GgufMeta;
use crate::{Error, Result};

/// Storage format of the exported weight matrices (norms always stay F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quant {
    /// 32-bit floats: the student's weights exactly.
    F32,
    /// 16-bit floats (llama.cpp converter's default).
    F16,
    /// Blocks of 32 8-bit integers with one f16 scale: about 8.5 bits a weight.
    #[value(name = "q8_0")]
    Q8_0,
    /// Blocks of 32 4-bit integers with one f16 scale: about 4.5 bits a weight.
    #[value(name = "q4_0")]
    Q4_0,
}

impl Quant {
    /// The ggml type of a matrix in this format.
    pub fn dtype(self) -> GgmlDType {
        match self {
            Quant::F32 => GgmlDType::F32,
            Quant::F16 => GgmlDType::F16,
            Quant::Q8_0 => GgmlDType::Q8_0,
            Quant::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// llama.cpp's `general.file_type` (`enum llama_ftype` in `llama.h`).
    pub fn file_type(self) -> u32 {
        match self {
            Quant::F32 => 0,
            Quant::F16 => 1,
            Quant::Q4_0 => 2,
            Quant::Q8_0 => 7,
        }
    }
}

/// One export request.
#[derive(Debug, Clone)]
pub struct GgufExport {
    /// Student directory written by `distill train`.
    pub student: PathBuf,
    /// Teacher GGUF to take the tokenizer from; `None`: the one in `provenance.json`.
    pub teacher: Option<PathBuf>,
    /// The GGUF file to write.
    pub out: PathBuf,
    /// Format of the weight matrices.
    pub quant: Quant,
}

/// What [`export_gguf`] wrote.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// The teacher whose tokenizer went into the file.
    pub teacher: PathBuf,
    /// Tensors written.
    pub tensors: usize,
    /// Parameters written.
    pub n_params: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Matrices stored as F16 instead of the requested block quantization, because their
    /// rows are not a multiple of the block size (32).
    pub fallback_f16: Vec<String>,
}

/// Tensors by GGUF name, in file order.
pub type GgufTensors = Vec<(String, QTensor)>;

/// (Hugging Face, GGUF) names of one decoder block's tensors, without the `.weight` suffix.
const BLOCK_NAMES: [(&str, &str); 9] = [
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("input_layernorm", "attn_norm"),
    ("post_attention_layernorm", "ffn_norm"),
];

/// Write the student in `job.student` as a GGUF file at `job.out`, atomically.
///
/// # Errors
/// [`Error::Invalid`] for a directory that is not a student, [`Error::Gguf`] for a teacher
/// whose tokenizer differs from the student's (fingerprint or vocabulary size), I/O errors.
pub fn export_gguf(job: &GgufExport) -> Result<ExportSummary> {
    let (cfg, weights) = read_student(&job.student)?;
    let state = Provenance::read(&job.student)?;
    let teacher = resolve_teacher(job, state.as_ref())?;
    let meta = GgufMeta::read(&teacher)?;
    check_teacher(&teacher, &meta, &cfg, state.as_ref())?;
    let mut file = File::open(&teacher).map_err(|e| Error::io(&teacher, e))?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| Error::Gguf {
        path: teacher.clone(),
        reason: e.to_string(),
    })?;
    let name = job
        .student
        .file_name()
        .map_or_else(|| "student".into(), |n| n.to_string_lossy().into_owned());
    let kv = gguf_metadata(&cfg, &name, &content.metadata, job.quant);
    let (tensors, fallback_f16) = gguf_tensors(&cfg, &weights, job.quant)?;
    let bytes = write_gguf(&job.out, &kv, &tensors)?;
    Ok(ExportSummary {
        teacher,
        tensors: tensors.len(),
        n_params: cfg.n_params(),
        bytes,
        fallback_f16,
    })
}

/// Config and weights of the student directory `dir`, checked against each other.
///
/// # Errors
/// [`Error::Invalid`] when `config.json` or `model.safetensors` is missing or they disagree.
pub fn read_student(dir: &Path) -> Result<(StudentConfig, Weights)> {
    for file in ["config.json", "model.safetensors"] {
        if !dir.join(file).is_file() {
            return Err(Error::Invalid(format!(
                "'{}' is not a student directory: it has no {file}; pass the --out directory of `distill train`",
                dir.display()
            )));
        }
    }
    let cfg = StudentConfig::read(dir)?;
    let weights = io::load_tensors(&dir.join("model.safetensors"))?;
    io::check_weights(&cfg, &weights)?;
    Ok((cfg, weights))
}

/// `--teacher` if given, else the teacher recorded in the student's provenance.
fn resolve_teacher(job: &GgufExport, state: Option<&Provenance>) -> Result<PathBuf> {
    if let Some(path) = &job.teacher {
        return Ok(path.clone());
    }
    match state {
        Some(s) if !s.path.as_os_str().is_empty() => Ok(s.path.clone()),
        _ => Err(Error::Invalid(format!(
            "student '{}' records no teacher (no provenance.json): pass --teacher GGUF, the model whose tokenizer the student was trained with",
            job.student.display()
        ))),
    }
}

/// Refuse a teacher whose tokenizer is not the one the student was trained with.
fn check_teacher(
    path: &Path,
    meta: &GgufMeta,
    cfg: &StudentConfig,
    state: Option<&Provenance>,
) -> Result<()> {
    let bad = |reason: String| Error::Gguf {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(s) = state {
        let found = meta.tokenizer_fingerprint();
        if found != s.tokenizer_fingerprint {
            return Err(bad(format!(
                "its tokenizer (fingerprint '{}') is not the one the student was trained with ('{}', teacher '{}'); pass that teacher with --teacher",
                short(&found),
                short(&s.tokenizer_fingerprint),
                s.file
            )));
        }
    }
    let n_vocab = meta
        .n_vocab()
        .ok_or_else(|| bad("it has no tokenizer.ggml.tokens to copy".into()))?;
    if n_vocab != cfg.vocab_size {
        return Err(bad(format!(
            "its vocabulary has '{n_vocab}' tokens, the student's '{}'; pass the teacher the student was trained from",
            cfg.vocab_size
        )));
    }
    Ok(())
}

/// The first 12 hex digits of a fingerprint: enough to tell two apart in a message.
fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// llama.cpp's `llama.*` keys for `cfg`, then every `tokenizer.*` key of the teacher (sorted,
/// so that the same inputs give the same bytes). Integer keys are U32 and floats F32: llama.cpp
/// checks the types.
pub fn gguf_metadata(
    cfg: &StudentConfig,
    name: &str,
    teacher: &HashMap<String, Value>,
    quant: Quant,
) -> Vec<(String, Value)> {
    let u = |x: usize| Value::U32(x as u32);
    let mut kv: Vec<(String, Value)> = [
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String(name.into())),
        ("general.file_type", Value::U32(quant.file_type())),
        ("general.quantization_version", Value::U32(2)),
        ("llama.context_length", u(cfg.max_position_embeddings)),
        ("llama.embedding_length", u(cfg.hidden_size)),
        ("llama.block_count", u(cfg.num_hidden_layers)),
        ("llama.feed_forward_length", u(cfg.intermediate_size)),
        ("llama.attention.head_count", u(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv", u(cfg.num_key_value_heads)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("llama.rope.freq_base", Value::F32(cfg.rope_theta)),
        ("llama.rope.dimension_count", u(cfg.head_dim())),
        ("llama.vocab_size", u(cfg.vocab_size)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut tokenizer: Vec<(String, Value)> = teacher
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tokenizer.sort_by(|a, b| a.0.cmp(&b.0));
    kv.extend(tokenizer);
    kv
}

/// The student's tensors under GGUF names, Q/K permuted, in `quant` (1-D tensors in F32);
/// also the names of matrices that fell back to F16.
///
/// # Errors
/// A missing weight or a quantization failure.
pub fn gguf_tensors(
    cfg: &StudentConfig,
    weights: &Weights,
    quant: Quant,
) -> Result<(GgufTensors, Vec<String>)> {
    let hd = cfg.head_dim();
    let mut out = Vec::new();
    let mut fallback = Vec::new();
    for (hf, gg) in tensor_names(cfg) {
        let w = weights
            .get(&hf)
            .ok_or_else(|| Error::Invalid(format!("weights lack '{hf}'")))?
            .to_dtype(DType::F32)?;
        // Biases (Qwen2 students) are permuted like their matrices' rows.
        let w = if hf.contains("q_proj.") {
            permute_any(&w, cfg.num_attention_heads, hd)?
        } else if hf.contains("k_proj.") {
            permute_any(&w, cfg.num_key_value_heads, hd)?
        } else {
            w
        };
        let dtype = tensor_dtype(&w, quant);
        if dtype != quant.dtype() && w.rank() == 2 {
            fallback.push(gg.clone());
        }
        out.push((gg, QTensor::quantize(&w, dtype)?));
    }
    Ok((out, fallback))
}

/// F32 for 1-D tensors; the requested type for matrices whose rows split into its blocks;
/// F16 for the other matrices.
fn tensor_dtype(w: &Tensor, quant: Quant) -> GgmlDType {
    let dtype = quant.dtype();
    match w.dims() {
        [_, row] if row % dtype.block_size() == 0 => dtype,
        [_, _] => GgmlDType::F16,
        _ => GgmlDType::F32,
    }
}

/// (Hugging Face, GGUF) name pairs in llama.cpp's order: embeddings, blocks, norm, output.
fn tensor_names(cfg: &StudentConfig) -> Vec<(String, String)> {
    let mut names = vec![(
        "model.embed_tokens.weight".to_string(),
        "token_embd.weight".to_string(),
    )];
    for l in 0..cfg.num_hidden_layers {
        for (hf, gg) in BLOCK_NAMES {
            names.push((
                format!("model.layers.{l}.{hf}.weight"),
                format!("blk.{l}.{gg}.weight"),
            ));
        }
        // llama.cpp's llama loader takes optional q/k/v biases (`create_tensor_qkv`).
        if cfg.attention_bias {
            for (hf, gg) in &BLOCK_NAMES[..3] {
                names.push((
                    format!("model.layers.{l}.{hf}.bias"),
                    format!("blk.{l}.{gg}.bias"),
                ));
            }
        }
    }
    names.push(("model.norm.weight".into(), "output_norm.weight".into()));
    if !cfg.tie_word_embeddings {
        names.push(("lm_head.weight".into(), "output.weight".into()));
    }
    names
}

/// Stream the GGUF into `<out>.tmp` (creating the directory), sync it, rename it over `out`,
/// sync the directory; returns the file size. A failed write leaves any previous `out` as it was.
///
/// # Errors
/// [`Error::Io`] naming `out`, candle errors from serialisation.
pub fn write_gguf(
    out: &Path,
    kv: &[(String, Value)],
    tensors: &[(String, QTensor)],
) -> Result<u64> {
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let kv: Vec<(&str, &Value)> = kv.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let write = || -> Result<u64> {
        let io = |e: std::io::Error| Error::io(out, e);
        // `parent()` of a bare file name is "", which cannot be opened: that is the cwd.
        let dir = out
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io)?);
        gguf_file::write(&mut w, &kv, &tensors)?;
        w.flush().map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        std::fs::rename(&tmp, out).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(bytes)
    };
    write().inspect_err(|_| {
        std::fs::remove_file(&tmp).ok();
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::student::init::unpermute;
    use candle_core::Device;

    #[test]
    fn tensors_get_gguf_names_f32_norms_f16_fallback_and_permuted_q() {
        // Hidden 48: rows of 48 do not split into Q4_0 blocks of 32; ffn_down's rows of 64 do.
        let cfg = StudentConfig::new(64, 48, 1, 4, 2, 64);
        let w = io::random_weights(&cfg, 1).expect("weights");
        let (t, fallback) = gguf_tensors(&cfg, &w, Quant::Q4_0).expect("tensors");
        let t: HashMap<String, QTensor> = t.into_iter().collect();
        assert_eq!(t.len(), io::param_shapes(&cfg).len());
        assert_eq!(t["blk.0.ffn_down.weight"].dtype(), GgmlDType::Q4_0);
        assert_eq!(t["blk.0.attn_norm.weight"].dtype(), GgmlDType::F32);
        assert_eq!(t["token_embd.weight"].dtype(), GgmlDType::F16);
        assert!(fallback.contains(&"token_embd.weight".to_string()));
        assert!(!fallback.contains(&"blk.0.ffn_down.weight".to_string()));
        let q = t["blk.0.attn_q.weight"]
            .dequantize(&Device::Cpu)
            .expect("q");
        let back = unpermute(&q, 4, 12).expect("unpermute");
        let orig = &w["model.layers.0.self_attn.q_proj.weight"];
        let diff = (back - orig)
            .expect("sub")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max");
        assert!(
            diff.to_scalar::<f32>().expect("f32") < 1e-3,
            "F16 round trip"
        );
    }
}
