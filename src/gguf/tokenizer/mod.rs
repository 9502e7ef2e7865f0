//! A Hugging Face `tokenizer.json` built from a teacher GGUF's metadata that tokenizes exactly
//! as llama.cpp does: byte-level BPE (`tokenizer.ggml.model = gpt2`, [`bpe`]) and
//! SentencePiece (`llama`, [`spm`]). Control, unknown and user-defined tokens (and texts
//! llama.cpp promotes to control by name) become added tokens, matched in text as
//! `tokenizer_st_partition` does with `parse_special = true`.

mod bpe;
mod spm;
#[cfg(test)]
mod tests;

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, Tokenizer};

use super::meta::GgufMeta;
use crate::{Error, Result};

/// Why llama.cpp's tokenization of this GGUF cannot be written as `tokenizer.json`, or
/// `None` when it can (checked without building the tokenizer).
pub fn unsupported(meta: &GgufMeta) -> Option<String> {
    let model = meta.str("tokenizer.ggml.model").unwrap_or("");
    let why = match model {
        "gpt2" => bpe::pre_spec(meta.str("tokenizer.ggml.pre").unwrap_or(""))
            .err()
            .map(|e| e.to_string()),
        "llama" => None,
        other => Some(format!(
            "tokenizer model '{other}' is not supported: only byte-level BPE ('gpt2') and SentencePiece ('llama') vocabularies"
        )),
    };
    let name = meta.str("general.name").unwrap_or("").to_lowercase();
    why.or_else(|| {
        (name.contains("phi-3") || name.contains("phi3")).then(|| {
            format!("model '{name}': llama.cpp strips spaces after Phi-3's special tokens; tokenizer.json would not")
        })
    })
}

/// A Hugging Face tokenizer equivalent to llama.cpp's for the GGUF described by `meta`.
///
/// `encode(text, false)` gives llama.cpp's `tokenize(text, add_special = false,
/// parse_special = true)`; `encode(text, true)` adds BOS/EOS where llama.cpp would.
///
/// # Errors
/// [`Error::Invalid`] when [`unsupported`] names a reason, or the tokenizer arrays are
/// missing or inconsistent.
pub fn from_gguf(meta: &GgufMeta) -> Result<Tokenizer> {
    if let Some(why) = unsupported(meta) {
        return Err(Error::Invalid(why));
    }
    let tokens = strings(meta, "tokenizer.ggml.tokens")?;
    let types = token_types(meta, tokens.len())?;
    let mut tokenizer = if meta.str("tokenizer.ggml.model") == Some("llama") {
        sentencepiece(meta, &tokens)?
    } else {
        byte_level(meta, &tokens)?
    };
    let add_bos_default = meta.str("tokenizer.ggml.model") == Some("llama")
        || bpe::pre_spec(meta.str("tokenizer.ggml.pre").unwrap_or(""))?.add_bos;
    if let Some(post) = post_processor(meta, &tokens, add_bos_default)? {
        tokenizer.with_post_processor(Some(post));
    }
    add_special_tokens(&mut tokenizer, &tokens, &types);
    Ok(tokenizer)
}

fn byte_level(meta: &GgufMeta, tokens: &[String]) -> Result<Tokenizer> {
    let spec = bpe::pre_spec(meta.str("tokenizer.ggml.pre").unwrap_or(""))?;
    let merges = bpe::split_merges(&strings(meta, "tokenizer.ggml.merges")?)?;
    let mut tokenizer = Tokenizer::new(bpe::bpe(tokens, merges, spec.ignore_merges)?);
    tokenizer.with_pre_tokenizer(Some(bpe::pre_tokenizer(spec)?));
    // The same settings as the pre-tokenizer's; decoding uses none of them.
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, false)));
    Ok(tokenizer)
}

fn sentencepiece(meta: &GgufMeta, tokens: &[String]) -> Result<Tokenizer> {
    let scores: Vec<f32> = meta
        .array("tokenizer.ggml.scores")
        .ok_or_else(|| Error::Invalid("GGUF has no 'tokenizer.ggml.scores'".into()))?
        .iter()
        .map(|v| {
            v.to_f32()
                .map_err(|e| Error::Invalid(format!("score: {e}")))
        })
        .collect::<Result<_>>()?;
    let unk = meta
        .u64("tokenizer.ggml.unknown_token_id")
        .and_then(|id| tokens.get(id as usize))
        .map(String::as_str);
    let prefix = meta.bool("tokenizer.ggml.add_space_prefix").unwrap_or(true);
    let mut tokenizer = Tokenizer::new(spm::model(tokens, &scores, unk)?);
    tokenizer.with_normalizer(Some(spm::normalizer(prefix)?));
    tokenizer.with_decoder(Some(spm::decoder(prefix)?));
    Ok(tokenizer)
}

/// Build the tokenizer for `meta` and save it as a pretty-printed `tokenizer.json` at `path`.
///
/// # Errors
/// As [`from_gguf`], plus [`Error::Io`] when the file cannot be written.
pub fn write_tokenizer_json(meta: &GgufMeta, path: &Path) -> Result<()> {
    let json = from_gguf(meta)?
        .to_string(true)
        .map_err(|e| Error::Invalid(format!("cannot serialise the tokenizer: {e}")))?;
    std::fs::write(path, json).map_err(|e| Error::io(path, e))
}

fn strings(meta: &GgufMeta, key: &str) -> Result<Vec<String>> {
    let items = meta
        .array(key)
        .ok_or_else(|| Error::Invalid(format!("GGUF has no string array '{key}'")))?;
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(Error::Invalid(format!("'{key}' holds {other:?}"))),
        })
        .collect()
}

/// Token types, all normal when the GGUF has none.
fn token_types(meta: &GgufMeta, n: usize) -> Result<Vec<i64>> {
    let Some(items) = meta.array("tokenizer.ggml.token_type") else {
        return Ok(vec![1; n]);
    };
    if items.len() != n {
        return Err(Error::Invalid(format!(
            "'tokenizer.ggml.token_type' has {} entries for {n} tokens",
            items.len()
        )));
    }
    items
        .iter()
        .map(|v| match v {
            Value::I32(t) => Ok(i64::from(*t)),
            Value::I64(t) => Ok(*t),
            // Out-of-range types are llama.cpp's "undefined": ordinary text tokens.
            v => v
                .to_u64()
                .map(|t| i64::try_from(t).unwrap_or(0))
                .map_err(|_| Error::Invalid(format!("'tokenizer.ggml.token_type' holds {v:?}"))),
        })
        .collect()
}

/// BOS/EOS around the text where llama.cpp adds them; `None` when it adds neither.
fn post_processor(
    meta: &GgufMeta,
    tokens: &[String],
    add_bos_default: bool,
) -> Result<Option<TemplateProcessing>> {
    let bos = meta
        .bool("tokenizer.ggml.add_bos_token")
        .unwrap_or(add_bos_default);
    let eos = meta.bool("tokenizer.ggml.add_eos_token").unwrap_or(false);
    if !bos && !eos {
        return Ok(None);
    }
    let specials = [(bos, "bos"), (eos, "eos")]
        .into_iter()
        .filter(|(add, _)| *add)
        .map(|(_, role)| special_token(meta, tokens, role))
        .collect::<Result<Vec<_>>>()?;
    // Template pieces name keys of `specials`, not token texts: `<|x:y|>` would not parse.
    let (b, e) = (if bos { "bos " } else { "" }, if eos { " eos" } else { "" });
    let template_err = |e: String| Error::Invalid(format!("BOS/EOS template: {e}"));
    TemplateProcessing::builder()
        .try_single(format!("{b}$A{e}"))
        .and_then(|t| t.try_pair(format!("{b}$A{e} {b}$B:1{e}")))
        .map_err(template_err)?
        .special_tokens(specials)
        .build()
        .map(Some)
        .map_err(|e| template_err(e.to_string()))
}

/// The BOS or EOS token (`role` is `bos` or `eos`), keyed by its role.
fn special_token(meta: &GgufMeta, tokens: &[String], role: &str) -> Result<SpecialToken> {
    let key = format!("tokenizer.ggml.{role}_token_id");
    let id = meta
        .u64(&key)
        .and_then(|id| u32::try_from(id).ok())
        .filter(|&id| (id as usize) < tokens.len())
        .ok_or_else(|| Error::Invalid(format!("GGUF adds {role} but '{key}' is not a token")))?;
    SpecialToken::new(role.into(), vec![id], vec![tokens[id as usize].clone()])
        .map_err(|e| Error::Invalid(format!("{role} token: {e}")))
}

/// Control and unknown tokens become special added tokens (matched in text, skipped by
/// `decode(.., true)`); user-defined ones become plain added tokens, which llama.cpp matches
/// even without `parse_special`.
fn add_special_tokens(tokenizer: &mut Tokenizer, tokens: &[String], types: &[i64]) {
    let mut special = Vec::new();
    let mut user = Vec::new();
    for (text, &ty) in tokens.iter().zip(types).filter(|(t, _)| !t.is_empty()) {
        let by_name = |list: &str| list.split_whitespace().any(|t| t == text);
        // GGUF token types: 2 unknown, 3 control, 4 user-defined.
        if by_name(bpe::USER_BY_NAME) || (ty == 4 && !by_name(bpe::CONTROL_BY_NAME)) {
            user.push(AddedToken::from(text.clone(), false).normalized(false));
        } else if ty == 2 || ty == 3 || by_name(bpe::CONTROL_BY_NAME) {
            special.push(AddedToken::from(text.clone(), true).normalized(false));
        }
    }
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user);
}
