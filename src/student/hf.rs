//! The Hugging Face files beside the weights that make a student directory usable by
//! transformers as it is: `tokenizer_config.json` (special tokens and the chat template)
//! and `generation_config.json` (which tokens end an answer).
//!
//! The chat template is the one the corpus was rendered with. llama.cpp renders a template
//! containing `<|im_start|>` as its built-in ChatML, which ignores what a Jinja template
//! adds of its own (SmolLM2's adds a default system prompt when there is none); such a
//! template is written as plain ChatML, so that `apply_chat_template` gives the exact text
//! the student was trained on. Other templates are written as the GGUF carries them, and a
//! base model (no template) gets none.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::{Map, Value as Json, json};

use crate::Result;
use crate::gguf::GgufMeta;
use crate::record::write_atomic;
use crate::teacher::LlamaTeacher;

/// ChatML exactly as llama.cpp's built-in `chatml` renders it.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The chat template for transformers: `None` for a base model.
pub fn chat_template(meta: &GgufMeta) -> Option<String> {
    let t = meta
        .str("tokenizer.chat_template")
        .filter(|t| !t.trim().is_empty())?;
    Some(if t.contains("<|im_start|>") {
        CHATML.to_string()
    } else {
        t.to_string()
    })
}

fn token_id(meta: &GgufMeta, key: &str) -> Option<u32> {
    meta.u64(key).and_then(|x| u32::try_from(x).ok())
}

/// The text of token `id`.
fn token_text(meta: &GgufMeta, id: u32) -> Option<String> {
    match meta.array("tokenizer.ggml.tokens")?.get(id as usize)? {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// `tokenizer_config.json` for the teacher's vocabulary; `max_len` is the student's context.
pub fn tokenizer_config(meta: &GgufMeta, max_len: usize) -> Json {
    let mut c = Map::new();
    c.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    for (name, key) in [
        ("bos_token", "bos"),
        ("eos_token", "eos"),
        ("unk_token", "unknown"),
        ("pad_token", "padding"),
    ] {
        let text = token_id(meta, &format!("tokenizer.ggml.{key}_token_id"))
            .and_then(|id| token_text(meta, id));
        if let Some(text) = text {
            c.insert(name.into(), json!(text));
        }
    }
    // BOS is added by tokenizer.json's post-processor, as llama.cpp adds it; these flags
    // say the same for readers that look at them.
    let spm = meta.str("tokenizer.ggml.model") == Some("llama");
    let add_bos = meta.bool("tokenizer.ggml.add_bos_token").unwrap_or(spm);
    c.insert("add_bos_token".into(), json!(add_bos));
    c.insert(
        "add_eos_token".into(),
        json!(meta.bool("tokenizer.ggml.add_eos_token").unwrap_or(false)),
    );
    c.insert("clean_up_tokenization_spaces".into(), json!(false));
    c.insert("model_max_length".into(), json!(max_len));
    if let Some(t) = chat_template(meta) {
        c.insert("chat_template".into(), json!(t));
    }
    Json::Object(c)
}

/// `generation_config.json`: greedy by default, stopping at any of `stops` (llama.cpp's
/// end-of-generation tokens: EOS, end-of-turn, and the others it finds by their text, such
/// as SmolLM2's `<|endoftext|>` and `<file_sep>`).
pub fn generation_config(meta: &GgufMeta, stops: &[u32]) -> Json {
    let mut c = Map::new();
    if let Some(id) = token_id(meta, "tokenizer.ggml.bos_token_id") {
        c.insert("bos_token_id".into(), json!(id));
    }
    match stops {
        [] => {}
        [one] => {
            c.insert("eos_token_id".into(), json!(one));
        }
        many => {
            c.insert("eos_token_id".into(), json!(many));
        }
    }
    if let Some(id) = token_id(meta, "tokenizer.ggml.padding_token_id") {
        c.insert("pad_token_id".into(), json!(id));
    }
    c.insert("do_sample".into(), json!(false));
    Json::Object(c)
}

/// Write both files into the student directory `dir`, for the teacher GGUF `meta` was read
/// from (its vocabulary is loaded for the stop tokens).
///
/// # Errors
/// [`crate::Error::Io`], and the teacher's load errors.
pub fn write_configs(dir: &Path, meta: &GgufMeta, max_len: usize) -> Result<()> {
    let stops = LlamaTeacher::load_vocab(&meta.path)?.eog_ids();
    for (name, value) in [
        ("tokenizer_config.json", tokenizer_config(meta, max_len)),
        ("generation_config.json", generation_config(meta, &stops)),
    ] {
        let mut bytes = serde_json::to_vec_pretty(&value)?;
        bytes.push(b'\n');
        write_atomic(&dir.join(name), &bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kv: Vec<(&str, Value)>) -> GgufMeta {
        GgufMeta {
            path: "tiny.gguf".into(),
            n_tensors: 0,
            kv: kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            tensors: None,
            tensors_error: None,
        }
    }

    fn tokens() -> Value {
        Value::Array(
            ["<unk>", "<|im_start|>", "<|im_end|>", "a"]
                .map(|t| Value::String(t.into()))
                .to_vec(),
        )
    }

    #[test]
    fn a_chatml_teacher_gets_plain_chatml_and_its_special_tokens() {
        let m = meta(vec![
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.tokens", tokens()),
            ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
            ("tokenizer.ggml.padding_token_id", Value::U32(2)),
            (
                "tokenizer.chat_template",
                Value::String("{{ 'You are SmolLM' }}<|im_start|>...".into()),
            ),
        ]);
        let c = tokenizer_config(&m, 2048);
        assert_eq!(c["bos_token"], "<|im_start|>");
        assert_eq!(c["eos_token"], "<|im_end|>");
        assert_eq!(c["pad_token"], "<|im_end|>");
        assert!(c.get("unk_token").is_none());
        assert_eq!(c["add_bos_token"], false);
        assert_eq!(c["chat_template"], CHATML);
        assert_eq!(c["model_max_length"], 2048);
        let g = generation_config(&m, &[2]);
        assert_eq!(g["eos_token_id"], 2);
        assert_eq!(g["bos_token_id"], 1);
    }

    #[test]
    fn a_base_model_has_no_template_and_every_stop_token_is_listed() {
        let m = meta(vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", tokens()),
            ("tokenizer.ggml.unknown_token_id", Value::U32(0)),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ]);
        let c = tokenizer_config(&m, 512);
        assert!(c.get("chat_template").is_none());
        assert_eq!(c["unk_token"], "<unk>");
        assert_eq!(
            c["add_bos_token"], true,
            "SentencePiece adds BOS by default"
        );
        assert_eq!(
            generation_config(&m, &[2, 3])["eos_token_id"],
            json!([2, 3])
        );
    }

    #[test]
    fn a_template_of_another_family_is_kept_as_it_is() {
        let t = "{% for m in messages %}<start_of_turn>{{ m['role'] }}{% endfor %}";
        let m = meta(vec![("tokenizer.chat_template", Value::String(t.into()))]);
        assert_eq!(chat_template(&m).as_deref(), Some(t));
    }
}
