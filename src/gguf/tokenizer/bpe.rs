//! Byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`): llama.cpp's regexes per
//! `tokenizer.ggml.pre` (`llm_tokenizer_bpe` in `src/llama-vocab.cpp`), each a
//! `Split(regex, Isolated)` on the previous one's pieces as in `unicode_regex_split`, then
//! `ByteLevel` without its regex, and a BPE model from the GGUF's tokens and merges.

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

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
pub(super) struct PreSpec {
    /// Values of `tokenizer.ggml.pre` in this family, separated by spaces.
    pub names: &'static str,
    /// Regexes applied in turn, each to the pieces of the one before.
    pub regexes: &'static [&'static str],
    /// A pre-token that is itself in the vocabulary is emitted whole, merges or not.
    pub ignore_merges: bool,
    /// Whether BOS is added when the GGUF has no `tokenizer.ggml.add_bos_token`.
    pub add_bos: bool,
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
pub(super) const FAMILIES: &[PreSpec] = &[
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
pub(super) const CONTROL_BY_NAME: &str = "<|eot_id|> <|im_end|> <|end|> <|return|> <|call|> <|flush|> \
    <|calls|> <end_of_turn> <|endoftext|> </s> <|eom_id|> <EOT> _<EOT> [EOT] [EOS] \
    <|end_of_text|> <end_of_utterance> <eos> <turn|> <|tool_response> <｜end▁of▁sentence｜> \
    [e~[ <|fim_prefix|> <fim-prefix> <fim_prefix> <｜fim▁begin｜> <PRE> <|code_prefix|> \
    <|prefix|> <|fim_suffix|> <fim-suffix> <fim_suffix> <｜fim▁hole｜> <SUF> <|code_suffix|> \
    <|suffix|> <|fim_middle|> <fim-middle> <fim_middle> <｜fim▁end｜> <MID> <|code_middle|> \
    <|middle|> <|fim_pad|> <fim-pad> <fim_pad> <PAD> [PAD] <|fim_repo|> <|repo_name|> \
    <fim-repo> <REPO> <reponame> <|file_sep|>";
/// Texts llama.cpp always makes user-defined (gpt-oss), separated by spaces.
pub(super) const USER_BY_NAME: &str = "<|channel|> <|message|> <|start|> <|constrain|>";

/// The family of pre-tokenizer `pre` (`default` when empty).
///
/// # Errors
/// [`Error::Invalid`] listing the supported names.
pub(super) fn pre_spec(pre: &str) -> Result<&'static PreSpec> {
    let pre = if pre.is_empty() { "default" } else { pre };
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

/// Merges "a b", split at the first space after the first character, as llama.cpp does.
pub(super) fn split_merges(lines: &[String]) -> Result<Vec<(String, String)>> {
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
pub(super) fn bpe(
    tokens: &[String],
    merges: Vec<(String, String)>,
    ignore_merges: bool,
) -> Result<BPE> {
    BPE::builder()
        .vocab_and_merges(vocab(tokens)?, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot build the BPE model from the GGUF: {e}")))
}

/// Text to id, the last id of a text listed twice.
pub(super) fn vocab(tokens: &[String]) -> Result<Vocab> {
    let mut vocab = Vocab::default();
    for (id, text) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| Error::Invalid("vocabulary too large".into()))?;
        vocab.insert(text.clone(), id);
    }
    Ok(vocab)
}

/// The family's regexes in turn, then byte-level mapping.
pub(super) fn pre_tokenizer(spec: &PreSpec) -> Result<Sequence> {
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
