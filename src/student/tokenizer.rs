//! A Hugging Face `tokenizer.json` built from a teacher GGUF's metadata that tokenizes exactly
//! as llama.cpp does. Byte-level BPE (`tokenizer.ggml.model = gpt2`) only. The regexes are
//! llama.cpp's own per `tokenizer.ggml.pre` (`llm_tokenizer_bpe` in `src/llama-vocab.cpp`),
//! each a `Split(regex, Isolated)` on the previous one's pieces as in `unicode_regex_split`,
//! then `ByteLevel` without its regex. Control, unknown and user-defined tokens (and texts
//! llama.cpp promotes to control by name) become added tokens, matched in text as
//! `tokenizer_st_partition` does with `parse_special = true`.

use std::path::Path;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::gguf::{GgufMeta, Value};
use crate::{Error, Result};

/// GPT-2's regex. llama.cpp's copy lacks the final `|\s+`, but its hand-written matcher
/// (`unicode_regex_split_custom_gpt2`) behaves as if it were there.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's regex as llama.cpp adapts it: `(?i:'s)` spelled `'[sS]`, so no Unicode folding.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen3.5's: Qwen2's with combining marks kept on letters.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Seed-Coder's.
const SEED_CODER: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Punctuation runs split first by the `default` pre-tokenizer.
const DEFAULT_PUNCT: &str = r"[\p{P}\$\+<=>\^~\|]+";
/// Falcon's, which adds the backtick.
const FALCON_PUNCT: &str = r"[\p{P}\$\+<=>\^~\|`]+";
/// Digit runs cut into threes.
const THREE_DIGITS: &str = "[0-9][0-9][0-9]";
/// BLOOM's and Poro's: words up to whitespace or sentence punctuation.
const PORO: &str = r" ?[^(\s|.,!?…。，、।۔،)]+";

/// How llama.cpp pre-tokenizes one family of `tokenizer.ggml.pre` values.
struct PreSpec {
    /// Values of `tokenizer.ggml.pre` in this family, separated by spaces.
    names: &'static str,
    /// Regexes applied in turn, each to the pieces of the one before.
    regexes: &'static [&'static str],
    /// A pre-token that is itself in the vocabulary is emitted whole, merges or not.
    ignore_merges: bool,
    /// Whether BOS is added when the GGUF has no `tokenizer.ggml.add_bos_token`.
    add_bos: bool,
}

const fn family(names: &'static str, regexes: &'static [&'static str]) -> PreSpec {
    PreSpec {
        names,
        regexes,
        ignore_merges: false,
        add_bos: false,
    }
}

/// The supported families, from `llm_tokenizer_bpe` and `llama_vocab::impl::load`.
const FAMILIES: &[PreSpec] = &[
    family("default", &[DEFAULT_PUNCT, GPT2, r"\p{N}+", THREE_DIGITS]),
    family(
        "gpt-2 phi-2 gigachat a.x-4.0 mellum mpt olmo jais trillion granite-docling exaone4",
        &[GPT2],
    ),
    family(
        "smollm starcoder refact command-r codeshell exaone minerva-7b mellum2",
        &[r"\p{N}", GPT2],
    ),
    family("falcon", &[FALCON_PUNCT, GPT2, THREE_DIGITS]),
    PreSpec {
        names: "llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano",
        regexes: &[LLAMA3],
        ignore_merges: true,
        add_bos: true,
    },
    family("dbrx smaug-bpe", &[LLAMA3]),
    family(
        "qwen2 deepseek-r1-qwen kormo f2llmv2 megrez stablelm2 hunyuan solar-open grok-2",
        &[QWEN2],
    ),
    family("qwen35", &[QWEN35]),
    family("seed-coder", &[SEED_CODER]),
    family("poro-chat bloom gpt3-finnish", &[PORO]),
    family("viking", &[PORO, r"\p{N}"]),
];

/// Texts llama.cpp makes control tokens whatever their GGUF type: its end-of-generation list
/// and its fill-in-the-middle markers (`llama_vocab::impl::load`), separated by spaces.
const CONTROL_BY_NAME: &str = "<|eot_id|> <|im_end|> <|end|> <|return|> <|call|> <|flush|> \
    <|calls|> <end_of_turn> <|endoftext|> </s> <|eom_id|> <EOT> _<EOT> [EOT] [EOS] \
    <|end_of_text|> <end_of_utterance> <eos> <turn|> <|tool_response> <｜end▁of▁sentence｜> \
    [e~[ <|fim_prefix|> <fim-prefix> <fim_prefix> <｜fim▁begin｜> <PRE> <|code_prefix|> \
    <|prefix|> <|fim_suffix|> <fim-suffix> <fim_suffix> <｜fim▁hole｜> <SUF> <|code_suffix|> \
    <|suffix|> <|fim_middle|> <fim-middle> <fim_middle> <｜fim▁end｜> <MID> <|code_middle|> \
    <|middle|> <|fim_pad|> <fim-pad> <fim_pad> <PAD> [PAD] <|fim_repo|> <|repo_name|> \
    <fim-repo> <REPO> <reponame> <|file_sep|>";
/// Texts llama.cpp always makes user-defined (gpt-oss), separated by spaces.
const USER_BY_NAME: &str = "<|channel|> <|message|> <|start|> <|constrain|>";

/// A Hugging Face tokenizer equivalent to llama.cpp's for the GGUF described by `meta`.
///
/// `encode(text, false)` gives llama.cpp's `tokenize(text, add_special = false,
/// parse_special = true)`; `encode(text, true)` adds BOS/EOS where llama.cpp would.
///
/// # Errors
/// [`Error::Invalid`] when the vocabulary is not byte-level BPE, its `tokenizer.ggml.pre` is
/// not one this module reproduces, or the tokenizer arrays are missing or inconsistent.
pub fn from_gguf(meta: &GgufMeta) -> Result<Tokenizer> {
    let model = meta.str("tokenizer.ggml.model").unwrap_or("");
    if model != "gpt2" {
        return Err(Error::Invalid(format!(
            "tokenizer model '{model}' is not supported: only byte-level BPE ('gpt2') \
             vocabularies can be exported to tokenizer.json"
        )));
    }
    let spec = pre_spec(meta)?;
    let name = meta.str("general.name").unwrap_or("").to_lowercase();
    if name.contains("phi-3") || name.contains("phi3") {
        let why = "llama.cpp strips spaces after Phi-3's special tokens; this export would not";
        return Err(Error::Invalid(format!("model '{name}': {why}")));
    }
    let tokens = strings(meta, "tokenizer.ggml.tokens")?;
    let types = token_types(meta, tokens.len())?;
    let mut tokenizer = Tokenizer::new(bpe(&tokens, merges(meta)?, spec.ignore_merges)?);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(spec)?));
    // The same settings as the pre-tokenizer's; decoding uses none of them.
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, false)));
    if let Some(post) = post_processor(meta, &tokens, spec)? {
        tokenizer.with_post_processor(Some(post));
    }
    add_special_tokens(&mut tokenizer, &tokens, &types);
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

/// The family of the GGUF's pre-tokenizer; a missing or empty name is llama.cpp's `default`.
fn pre_spec(meta: &GgufMeta) -> Result<&'static PreSpec> {
    let pre = meta
        .str("tokenizer.ggml.pre")
        .filter(|p| !p.is_empty())
        .unwrap_or("default");
    FAMILIES
        .iter()
        .find(|f| f.names.split(' ').any(|n| n == pre))
        .ok_or_else(|| {
            let known: Vec<&str> = FAMILIES.iter().flat_map(|f| f.names.split(' ')).collect();
            Error::Invalid(format!(
                "pre-tokenizer 'tokenizer.ggml.pre' = '{pre}' is not supported; supported: {}",
                known.join(", ")
            ))
        })
}

fn strings(meta: &GgufMeta, key: &str) -> Result<Vec<String>> {
    let Some(Value::Array(items)) = meta.kv.get(key) else {
        return Err(Error::Invalid(format!("GGUF has no string array '{key}'")));
    };
    items
        .iter()
        .map(|v| match v {
            Value::Str(s) => Ok(s.clone()),
            other => Err(Error::Invalid(format!("'{key}' holds {other:?}"))),
        })
        .collect()
}

/// Token types, all normal when the GGUF has none.
fn token_types(meta: &GgufMeta, n: usize) -> Result<Vec<i64>> {
    let Some(Value::Array(items)) = meta.kv.get("tokenizer.ggml.token_type") else {
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
            Value::I64(t) => Ok(*t),
            // Out-of-range types are llama.cpp's "undefined": ordinary text tokens.
            Value::U64(t) => Ok(i64::try_from(*t).unwrap_or(0)),
            other => Err(Error::Invalid(format!(
                "'tokenizer.ggml.token_type' holds {other:?}"
            ))),
        })
        .collect()
}

/// Merges "a b", split at the first space after the first character, as llama.cpp does.
fn merges(meta: &GgufMeta) -> Result<Vec<(String, String)>> {
    let lines = strings(meta, "tokenizer.ggml.merges")?;
    lines
        .iter()
        .map(|line| {
            line.char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| (line[..i].to_string(), line[i + 1..].to_string()))
                .ok_or_else(|| Error::Invalid(format!("merge '{line}' has no space")))
        })
        .collect()
}

/// The BPE model. A text listed twice keeps its last id, as llama.cpp's `token_to_id` does.
fn bpe(tokens: &[String], merges: Vec<(String, String)>, ignore_merges: bool) -> Result<BPE> {
    let mut vocab = Vocab::default();
    for (id, text) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| Error::Invalid("vocabulary too large".into()))?;
        vocab.insert(text.clone(), id);
    }
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot build the BPE model from the GGUF: {e}")))
}

fn pre_tokenizer(spec: &PreSpec) -> Result<Sequence> {
    let split = |re: &&str| {
        Split::new(
            SplitPattern::Regex(re.to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::from)
        .map_err(|e| Error::Invalid(format!("pre-tokenizer regex '{re}': {e}")))
    };
    let mut steps = spec.regexes.iter().map(split).collect::<Result<Vec<_>>>()?;
    steps.push(ByteLevel::new(false, true, false).into());
    Ok(Sequence::new(steps))
}

fn flag(meta: &GgufMeta, key: &str) -> Option<bool> {
    match meta.kv.get(key)? {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

/// BOS/EOS around the text where llama.cpp adds them; `None` when it adds neither.
fn post_processor(
    meta: &GgufMeta,
    tokens: &[String],
    spec: &PreSpec,
) -> Result<Option<TemplateProcessing>> {
    let bos = flag(meta, "tokenizer.ggml.add_bos_token").unwrap_or(spec.add_bos);
    let eos = flag(meta, "tokenizer.ggml.add_eos_token").unwrap_or(false);
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
        if by_name(USER_BY_NAME) || (ty == 4 && !by_name(CONTROL_BY_NAME)) {
            user.push(AddedToken::from(text.clone(), false).normalized(false));
        } else if ty == 2 || ty == 3 || by_name(CONTROL_BY_NAME) {
            special.push(AddedToken::from(text.clone(), true).normalized(false));
        }
    }
    tokenizer.add_special_tokens(&special);
    tokenizer.add_tokens(&user);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|t| Value::Str((*t).into())).collect())
    }

    /// A tiny byte-level vocabulary (`Ġ` is the space byte) whose token 0 is a control token.
    fn meta(pre: &str, extra: &[(&str, Value)]) -> GgufMeta {
        let tokens = ["<|im_start|>", "a", "b", "c", "Ġ", "1", "2"];
        let tokens = [&tokens[..], &["ab", "Ġa", "Ġab", "abc", "12"]].concat();
        let mut types = vec![Value::I64(1); tokens.len()];
        types[0] = Value::I64(3);
        let base = [
            ("model", Value::Str("gpt2".into())),
            ("pre", Value::Str(pre.into())),
            ("tokens", strs(&tokens)),
            ("token_type", Value::Array(types)),
            ("merges", strs(&["Ġ a", "a b", "Ġa b", "1 2"])),
            ("bos_token_id", Value::U64(0)),
        ];
        let kv = base.into_iter().chain(extra.iter().cloned());
        let kv = kv.map(|(k, v)| (format!("tokenizer.ggml.{k}"), v));
        let kv = kv.collect();
        GgufMeta {
            version: 3,
            n_tensors: 0,
            kv,
        }
    }

    fn ids(meta: &GgufMeta, text: &str, add_special: bool) -> Vec<u32> {
        let tk = from_gguf(meta).expect("tokenizer");
        tk.encode(text, add_special)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    #[test]
    fn smollm_merges_words_splits_digits_and_parses_control_tokens() {
        let m = meta("smollm", &[]);
        // "ab", " ab", "c", "1", "2", control; "12" is a token but smollm splits every digit.
        let text = "ab abc12<|im_start|>";
        assert_eq!(ids(&m, text, false), vec![7, 9, 3, 5, 6, 0]);
        // No add_bos_token key, and smollm adds no BOS by default.
        assert_eq!(ids(&m, text, true), ids(&m, text, false));
        let tk = from_gguf(&m).expect("tokenizer");
        assert_eq!(
            tk.decode(&ids(&m, text, false), false).expect("decode"),
            text
        );
    }

    #[test]
    fn pre_type_decides_digits_whole_words_and_bos() {
        assert_eq!(ids(&meta("gpt-2", &[]), "12", false), vec![11]);
        // No merge makes "abc"; llama3's ignore_merges takes it whole, and adds BOS.
        let llama3 = meta("llama-bpe", &[]);
        assert_eq!(ids(&llama3, "abc", true), vec![0, 10]);
        assert_eq!(ids(&meta("smollm", &[]), "abc", false), vec![7, 3]);
        let no_bos = meta("llama-bpe", &[("add_bos_token", Value::Bool(false))]);
        assert_eq!(ids(&no_bos, "abc", true), vec![10]);
        let bos = meta("smollm", &[("add_bos_token", Value::Bool(true))]);
        assert_eq!(ids(&bos, "ab", true), vec![0, 7]);
        assert_eq!(ids(&bos, "ab", false), vec![7]);
    }

    #[test]
    fn unsupported_pre_type_or_model_is_named_in_the_error() {
        let err = from_gguf(&meta("nonsense-pre", &[])).expect_err("unknown pre");
        let msg = err.to_string();
        assert!(matches!(err, Error::Invalid(_)), "{msg}");
        assert!(
            msg.contains("'nonsense-pre'") && msg.contains("smollm"),
            "{msg}"
        );
        let spm = meta("smollm", &[("model", Value::Str("llama".into()))]);
        let msg = from_gguf(&spm).expect_err("spm").to_string();
        assert!(msg.contains("'llama'") && msg.contains("gpt2"), "{msg}");
    }
}
