//! Unit tests of the tokenizer builder on tiny in-memory vocabularies.

use super::*;

fn strs(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|t| Value::String((*t).into())).collect())
}

fn gguf(kv: impl Iterator<Item = (String, Value)>) -> GgufMeta {
    GgufMeta {
        path: "tiny.gguf".into(),
        n_tensors: 0,
        kv: kv.collect(),
        tensors: None,
        tensors_error: None,
    }
}

/// A tiny byte-level vocabulary (`Ġ` is the space byte) whose token 0 is a control token.
fn meta(pre: &str, extra: &[(&str, Value)]) -> GgufMeta {
    let tokens = ["<|im_start|>", "a", "b", "c", "Ġ", "1", "2"];
    let tokens = [&tokens[..], &["ab", "Ġa", "Ġab", "abc", "12"]].concat();
    let mut types = vec![Value::I32(1); tokens.len()];
    types[0] = Value::I32(3);
    let base = [
        ("model", Value::String("gpt2".into())),
        ("pre", Value::String(pre.into())),
        ("tokens", strs(&tokens)),
        ("token_type", Value::Array(types)),
        ("merges", strs(&["Ġ a", "a b", "Ġa b", "1 2"])),
        ("bos_token_id", Value::U32(0)),
    ];
    let kv = base.into_iter().chain(extra.iter().cloned());
    gguf(kv.map(|(k, v)| (format!("tokenizer.ggml.{k}"), v)))
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
    assert!(unsupported(&meta("nonsense-pre", &[])).is_some());
    assert!(unsupported(&meta("smollm", &[])).is_none());
    let ugm = meta("smollm", &[("model", Value::String("t5".into()))]);
    let msg = from_gguf(&ugm).expect_err("ugm").to_string();
    assert!(msg.contains("'t5'") && msg.contains("gpt2"), "{msg}");
}

/// A SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, two byte tokens, then pieces whose
/// scores make "▁a" + "b" merge before "a" + "b".
fn spm(prefix: bool) -> GgufMeta {
    let tokens = [
        "<unk>", "<s>", "</s>", "<0x0A>", "<0x21>", "▁", "a", "b", "▁a", "ab", "▁ab", "<t>",
    ];
    let scores = [
        0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -5.0, 0.0,
    ];
    let types = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 4];
    let kv = [
        ("model", Value::String("llama".into())),
        ("tokens", strs(&tokens)),
        ("scores", Value::Array(scores.map(Value::F32).to_vec())),
        ("token_type", Value::Array(types.map(Value::I32).to_vec())),
        ("unknown_token_id", Value::U32(0)),
        ("bos_token_id", Value::U32(1)),
        ("eos_token_id", Value::U32(2)),
        ("add_space_prefix", Value::Bool(prefix)),
    ];
    gguf(
        kv.into_iter()
            .map(|(k, v)| (format!("tokenizer.ggml.{k}"), v)),
    )
}

#[test]
fn sentencepiece_merges_by_score_and_falls_back_to_bytes() {
    let m = spm(false);
    // "ab": the only merge is a+b. " ab": ▁+a (score -4) first, then ▁a+b (▁ab, -5).
    assert_eq!(ids(&m, "ab", false), vec![9]);
    assert_eq!(ids(&m, " ab", false), vec![10]);
    // A newline and '!' are no pieces: byte tokens. BOS by default for SentencePiece.
    assert_eq!(ids(&m, "a\n!", true), vec![1, 6, 3, 4]);
    // A user-defined token is matched in text; the text after it gets no prefix here.
    assert_eq!(ids(&m, "a<t>b", false), vec![6, 11, 7]);
    let tk = from_gguf(&m).expect("tokenizer");
    assert_eq!(tk.decode(&[10, 3, 4], false).expect("decode"), " ab\n!");
}

#[test]
fn sentencepiece_prefix_space_goes_before_each_text_piece() {
    let m = spm(true);
    assert_eq!(ids(&m, "ab", false), vec![10]);
    // After a special token the text is again prefixed, as llama.cpp's is_prev_special.
    assert_eq!(ids(&m, "a<t>ab", true), vec![1, 8, 11, 10]);
    let tk = from_gguf(&m).expect("tokenizer");
    assert_eq!(tk.decode(&[10, 6], false).expect("decode"), "aba");
}
