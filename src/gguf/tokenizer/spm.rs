//! SentencePiece vocabularies (`tokenizer.ggml.model = llama`: Gemma, Mistral, Llama 2,
//! TinyLlama) as a Hugging Face BPE model that tokenizes as llama.cpp's `llm_tokenizer_spm`.
//!
//! llama.cpp splits a text into characters, then keeps merging the adjacent pair whose
//! concatenation is a token with the highest score (the leftmost on a tie), and spells
//! characters that are no token as `<0xXX>` byte tokens. A GGUF stores scores, not merges;
//! the equivalent merge list has, for every token, each split into two tokens, ranked by the
//! token's score (what Hugging Face's SentencePiece converter does). Spaces become `▁`, with
//! one `▁` before each text piece when `tokenizer.ggml.add_space_prefix` is set
//! (`llama_vocab::impl::tokenize`); llama.cpp uses no pre-tokenizer regex for these.

use std::collections::HashSet;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use crate::{Error, Result};

/// The escaped space, U+2581.
const SPACE: &str = "\u{2581}";

/// A merge and the rank keys llama.cpp's order implies.
struct Candidate {
    score: f32,
    id: usize,
    split: usize,
    left: String,
    right: String,
}

/// The BPE model for tokens `tokens` with SentencePiece scores `scores`.
///
/// # Errors
/// [`Error::Invalid`] when the arrays disagree or the model cannot be built.
pub(super) fn model(tokens: &[String], scores: &[f32], unk: Option<&str>) -> Result<BPE> {
    if scores.len() != tokens.len() {
        return Err(Error::Invalid(format!(
            "'tokenizer.ggml.scores' has {} entries for {} tokens",
            scores.len(),
            tokens.len()
        )));
    }
    let known: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let mut merges = Vec::new();
    for (id, text) in tokens.iter().enumerate() {
        for (split, _) in text.char_indices().skip(1) {
            let (left, right) = text.split_at(split);
            if known.contains(left) && known.contains(right) {
                merges.push(Candidate {
                    score: scores[id],
                    id,
                    split,
                    left: left.to_string(),
                    right: right.to_string(),
                });
            }
        }
    }
    // Highest score first; a token's own splits stay together, shortest left part first.
    merges.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.id.cmp(&b.id))
            .then(a.split.cmp(&b.split))
    });
    let merges = merges.into_iter().map(|c| (c.left, c.right)).collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(super::bpe::vocab(tokens)?, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk.to_string());
    }
    builder
        .build()
        .map_err(|e| Error::Invalid(format!("cannot build the SentencePiece model: {e}")))
}

/// Spaces to `▁`, and one `▁` before each piece of text with `add_space_prefix`.
///
/// # Errors
/// [`Error::Invalid`] if the replacement pattern does not build (it always does).
pub(super) fn normalizer(add_space_prefix: bool) -> Result<NormalizerWrapper> {
    let replace =
        Replace::new(" ", SPACE).map_err(|e| Error::Invalid(format!("space replacement: {e}")))?;
    if !add_space_prefix {
        return Ok(replace.into());
    }
    Ok(NormalizerSequence::new(vec![Prepend::new(SPACE.into()).into(), replace.into()]).into())
}

/// `▁` back to spaces, byte tokens back to bytes, and the prefix space dropped.
///
/// # Errors
/// As [`normalizer`].
pub(super) fn decoder(add_space_prefix: bool) -> Result<DecoderWrapper> {
    let replace =
        Replace::new(SPACE, " ").map_err(|e| Error::Invalid(format!("space replacement: {e}")))?;
    let mut steps: Vec<DecoderWrapper> = vec![
        replace.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        steps.push(Strip::new(' ', 1, 0).into());
    }
    Ok(DecoderSequence::new(steps).into())
}
