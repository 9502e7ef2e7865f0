//! A student that starts from an existing small model sharing the teacher's tokenizer
//! (`--init model:PATH`): the usual fine-tuning workflow, a 7B teacher distilled into a
//! 0.5B model of the same family. The model is a GGUF (llama or qwen2, all its blocks
//! dequantized) or a Hugging Face directory (`config.json` in Llama/Qwen2 naming and one
//! `model.safetensors`). Its tokenizer must be the teacher's: a GGUF by fingerprint, a
//! directory by its `tokenizer.json` vocabulary, token by token.

use std::path::Path;

use tokenizers::Tokenizer;

use super::config::StudentConfig;
use super::io::{self, Weights};
use crate::gguf::{GgufMeta, TeacherProfile};
use crate::{Error, Result};

/// Config and weights of the model at `path`, checked to share `teacher`'s tokenizer.
///
/// # Errors
/// [`Error::Invalid`] for a model with another tokenizer or an unsupported layout.
pub fn from_model(path: &Path, teacher: &GgufMeta) -> Result<(StudentConfig, Weights)> {
    if path.is_dir() {
        return from_hf_dir(path, teacher);
    }
    let model = TeacherProfile::read(path)?;
    if model.fingerprint != teacher.tokenizer_fingerprint() {
        return Err(Error::Invalid(format!(
            "model '{}' has another tokenizer than the teacher '{}' (fingerprints '{}' and '{}'): a student must share its teacher's vocabulary; pick a model of the teacher's family",
            path.display(),
            teacher.path.display(),
            &model.fingerprint[..12],
            &teacher.tokenizer_fingerprint()[..12]
        )));
    }
    let layers: Vec<usize> = (0..model.blocks).collect();
    super::init::from_teacher(path, &layers)
}

fn from_hf_dir(dir: &Path, teacher: &GgufMeta) -> Result<(StudentConfig, Weights)> {
    let (mut cfg, weights) = super::export::read_student(dir).map_err(|e| {
        Error::Invalid(format!(
            "{e} (a Hugging Face directory needs config.json and one model.safetensors)"
        ))
    })?;
    if cfg.model_type == "qwen2" && !cfg.attention_bias {
        cfg = cfg.with_attention_bias(); // Qwen2's config implies its q/k/v biases
        io::check_weights(&cfg, &weights)?;
    }
    let path = dir.join("tokenizer.json");
    let tk = Tokenizer::from_file(&path).map_err(|e| {
        Error::Invalid(format!(
            "'{}': {e}; the directory needs the tokenizer.json its model was trained with",
            path.display()
        ))
    })?;
    check_vocab(&tk, teacher, dir)?;
    Ok((cfg, weights))
}

/// Refuse a tokenizer one of whose tokens differs from the teacher's (ids past the end of
/// the Hugging Face vocabulary are the GGUF's padding and not compared), naming the first.
fn check_vocab(tk: &Tokenizer, teacher: &GgufMeta, dir: &Path) -> Result<()> {
    let ours: Vec<&str> = teacher
        .array("tokenizer.ggml.tokens")
        .unwrap_or_default()
        .iter()
        .map(|v| v.to_string().map_or("", String::as_str))
        .collect();
    let vocab = tk.get_vocab(true);
    let first = vocab
        .iter()
        .filter(|(text, id)| ours.get(**id as usize) != Some(&text.as_str()))
        .min_by_key(|(_, id)| **id);
    match first {
        None => Ok(()),
        Some((text, &id)) => Err(Error::Invalid(format!(
            "the tokenizer of '{}' differs from teacher '{}' at token {id} ('{text}' vs '{}'): a student must share its teacher's vocabulary",
            dir.display(),
            teacher.path.display(),
            ours.get(id as usize).copied().unwrap_or("none"),
        ))),
    }
}
