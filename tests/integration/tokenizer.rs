//! The tokenizer.json built from each test teacher's GGUF against llama.cpp's own
//! tokenizer: SmolLM2 (byte-level BPE), Gemma 3 (SentencePiece, no prefix space), the
//! depth-cut SmolLM2, and Gemma's vocabulary with SentencePiece's prefix space switched on
//! (the Llama 2 / Mistral / TinyLlama convention), loaded by llama.cpp vocab-only.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use distill::gguf::GgufMeta;
use distill::gguf::tokenizer::{from_gguf, write_tokenizer_json};
use distill::teacher::LlamaTeacher;
use tokenizers::Tokenizer;

use crate::common::{gemma, teacher, temp_dir};

/// Plain text, tokenized without special-token parsing on the llama.cpp side.
pub const PLAIN: &[&str] = &[
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "a",
    " ",
    "  ",
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple   spaces   between   words",
    "tab\tseparated\tvalues",
    "\ttab first",
    "line one\nline two",
    "para one\n\npara two\n\n\n",
    "\n\nleading newlines",
    "windows\r\nline endings\r\n",
    "mixed \t \n whitespace \n\t ",
    "don't can't won't it's they're we've I'd you'll",
    "I'M SHOUTING, DON'T YOU SEE? HE'S HERE, THEY'RE GONE, WE'LL GO",
    "'quoted' and \"double quoted\" and `backticks`",
    "Punctuation!!! Really??? Yes... (maybe) [no] {ok} <tag> a/b\\c",
    "email: someone@example.com, cost: $12.50 + 7% = ~$13.38",
    "https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp?x=1&y=2#L42",
    "www.example.org/path_with_underscores-and-dashes",
    "12345678901234567890",
    "3.14159 2.71828 1e-10 -42 +7 0x1F 0b1010",
    "Call 555-0123 or +1 (800) 555-0199 before 2025-01-31T12:00:00Z",
    "1,000,000 and 1.000.000 and 1 000 000",
    "x² + y³ = z½ ① Ⅻ ٣٤٥ ४२",
    "Café résumé naïve façade coöperate jalapeño",
    "Ünïcödé àccénts: ÀÉÎÕÜ çÇ ñÑ ß ø å æ œ",
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "你好，世界！今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트입니다.",
    "ไทย ภาษา",
    "Emoji: 😀 😃 🎉 👍🏽 ❤️ 🇫🇷",
    "family 👨‍👩‍👧‍👦 and flags 🏳️‍🌈",
    "math ∑ ∫ √ ∞ ≠ ≤ ≥ → ← ↔ ∀ ∃",
    "zero\u{200b}width\u{feff}chars and nbsp\u{a0}here\u{3000}ideographic",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo:\n\tdef __init__(self):\n\t\tself.x = {'a': [1, 2, 3]}\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{v:?}\");\n}\n",
    "impl<'a> Iterator for Iter<'a> { type Item = &'a str; }",
    "if (a && b || !c) { x += 1; } else if (y >= 2) { z <<= 3; }",
    "<div class=\"x\">Hello</div><!-- comment -->",
    "SELECT * FROM users WHERE id = 42 AND name LIKE '%bob%';",
    "# Heading\n\n- item one\n- item two\n\n```python\nprint('hi')\n```\n",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "!!!???...,,,;;;:::",
    "The year 1999 and 2024; 10000 steps; 007",
    "über-naïve co-op's \"smart\" quotes — and – dashes … ellipsis",
    "Ⓐ Ⓑ ℃ ℉ ™ © ® § ¶ • ° ± × ÷",
    "tokenizer\n \n  \n   \n",
    "end with newline\n",
    "   ",
    "\n",
    "A mix: naïve café 😀 日本 123 don't\n\tdone.",
];

/// Chat-template text: llama.cpp parses special tokens (and adds BOS if the model wants it).
pub const TEMPLATED: &[&str] = &[
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
    "<|im_start|>user\n  spaced   content  <|im_end|><|im_start|>assistant",
    "text before<|endoftext|>text after",
    "<|im_start|><|im_end|><|im_start|>",
    "x<|im_start|>y <|im_end|> z",
    "<repo_name>distill<file_sep>src/main.rs\nfn main() {}<|endoftext|>",
    "<|im_start|>user\nWhat does 😀 mean in 日本語?<|im_end|>\n",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n",
    "<bos>text after bos<eos>",
    "<table><tr><td>cell</td></tr></table> and <b>bold</b>\t\ttabs  spaces\n\n\n",
];

fn encode(tk: &Tokenizer, text: &str, add_special: bool) -> Vec<u32> {
    tk.encode(text, add_special)
        .expect("encode")
        .get_ids()
        .to_vec()
}

/// Every mismatch between our tokenizer and llama.cpp, as a readable line: the ids, our
/// decoding against llama.cpp's, and (without a prefix space, which SentencePiece adds
/// after every special token) the round trip to the text.
fn mismatches(tk: &Tokenizer, llama: &LlamaTeacher, prefix: bool) -> Vec<String> {
    let cases = PLAIN.iter().map(|t| (*t, false));
    let cases = cases.chain(TEMPLATED.iter().map(|t| (*t, true)));
    let mut bad = Vec::new();
    for (text, special) in cases {
        let want = llama.tokenize(text, special);
        let got = encode(tk, text, special);
        if got != want {
            bad.push(format!(
                "{text:?} (special={special}):\n  llama.cpp {want:?}\n  ours      {got:?}"
            ));
            continue;
        }
        // The BOS the model adds is no part of the text.
        let skip = usize::from(special && llama.adds_bos()).min(got.len());
        let decoded = tk.decode(&got[skip..], false).expect("decode");
        let theirs = llama.detokenize(&want[skip..]);
        // llama.cpp's pieces keep SentencePiece's prefix space; its detokenizer drops it.
        let theirs = match prefix {
            true => theirs.strip_prefix(' ').unwrap_or(&theirs).to_string(),
            false => theirs,
        };
        if decoded != theirs || (!prefix && decoded != text) {
            bad.push(format!(
                "{text:?} decodes to {decoded:?}, llama.cpp's to {theirs:?}"
            ));
        }
    }
    bad
}

/// Characters that stress the pre-tokenizer: contraction letters, every whitespace kind,
/// digits of several scripts, combining marks, emoji joiners, control characters.
const FUZZ_CHARS: &str = "aZ09 \t\n\r'’\".,!?-_/\\<>|$+=^~`é漢字ह😀\u{200d}\u{fe0f}²½Ⅻ٣\u{a0}\
    \u{3000}\u{85}\u{301}ſK\u{1c}\u{7f}\u{0}xyzIMSTDLLVER";

/// Mismatches on `n` random strings of 1..=24 characters from [`FUZZ_CHARS`] (fixed seed),
/// half of them with special-token parsing.
fn fuzz_mismatches(tk: &Tokenizer, llama: &LlamaTeacher, n: usize) -> Vec<String> {
    let pool: Vec<char> = FUZZ_CHARS.chars().collect();
    let mut state: u64 = 42;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut bad = Vec::new();
    for i in 0..n {
        let len = 1 + next() % 24;
        let text: String = (0..len).map(|_| pool[next() % pool.len()]).collect();
        let (want, got) = (
            llama.tokenize(&text, i % 2 == 0),
            encode(tk, &text, i % 2 == 0),
        );
        if want != got {
            bad.push(format!("{text:?}: llama.cpp {want:?}, ours {got:?}"));
        }
    }
    bad
}

/// Whether llama.cpp puts a space before text (SentencePiece's `add_space_prefix`).
fn prefix_space(llama: &LlamaTeacher) -> bool {
    llama
        .detokenize(&llama.tokenize("a", false))
        .starts_with(' ')
}

/// Our tokenizer for the GGUF at `path` against llama.cpp's: the test set, 5000 random
/// strings, and the vocabulary size.
fn check_teacher(path: &Path, fuzz: usize) {
    let meta = GgufMeta::read(path).expect("read GGUF");
    let tk = from_gguf(&meta).expect("tokenizer from GGUF");
    let llama = LlamaTeacher::load_vocab(path).expect("load vocabulary");
    assert!(PLAIN.len() + TEMPLATED.len() >= 60);
    let bad = mismatches(&tk, &llama, prefix_space(&llama));
    assert!(
        bad.is_empty(),
        "{}: {} of {} strings differ:\n{}",
        path.display(),
        bad.len(),
        PLAIN.len() + TEMPLATED.len(),
        bad.join("\n")
    );
    let bad = fuzz_mismatches(&tk, &llama, fuzz);
    assert!(
        bad.is_empty(),
        "{}: {} of {fuzz} random strings differ:\n{}",
        path.display(),
        bad.len(),
        bad.join("\n")
    );
    assert_eq!(tk.get_vocab_size(true), llama.info.n_vocab);
}

#[test]
fn tokenizer_from_gguf_matches_llama_cpp_exactly() {
    check_teacher(&teacher(), 5000);
    // A chat turn is a handful of tokens, with <|im_start|> as one token, not split.
    let tk = from_gguf(&GgufMeta::read(&teacher()).expect("meta")).expect("tokenizer");
    let ids = encode(&tk, TEMPLATED[0], true);
    assert_eq!(ids[0], tk.token_to_id("<|im_start|>").expect("im_start"));
}

#[test]
fn sentencepiece_tokenizer_of_gemma_matches_llama_cpp_exactly() {
    check_teacher(&gemma(), 5000);
}

#[test]
fn tokenizer_of_the_depth_cut_teacher_matches_llama_cpp_exactly() {
    check_teacher(crate::teachers::cut_teacher(), 1000);
}

/// Gemma's vocabulary with `add_space_prefix` on, as Llama 2, Mistral and TinyLlama GGUFs
/// have it: a metadata-only GGUF that llama.cpp loads vocab-only.
#[test]
fn sentencepiece_tokenizer_with_a_prefix_space_matches_llama_cpp_exactly() {
    let dir = temp_dir("tokenizer-spm-prefix");
    let path = dir.join("gemma-prefix-vocab.gguf");
    let mut meta = GgufMeta::read(&gemma()).expect("meta");
    meta.kv
        .insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(true));
    let mut kv: Vec<(String, Value)> = meta.kv.into_iter().collect();
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    distill::student::export::write_gguf(&path, &kv, &[]).expect("write vocab GGUF");
    check_teacher(&path, 1000);
    let llama = LlamaTeacher::load_vocab(&path).expect("vocab");
    assert!(prefix_space(&llama), "the prefix space is on");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn tokenizer_json_round_trips_through_a_file() {
    for path in [teacher(), gemma()] {
        let meta = GgufMeta::read(&path).expect("read GGUF");
        let tk = from_gguf(&meta).expect("tokenizer from GGUF");
        let dir = temp_dir("tokenizer_json_round_trip");
        let file = dir.join("tokenizer.json");
        write_tokenizer_json(&meta, &file).expect("write tokenizer.json");
        let back = Tokenizer::from_file(&file).expect("load tokenizer.json");
        for text in PLAIN.iter().chain(TEMPLATED) {
            for special in [false, true] {
                assert_eq!(
                    encode(&back, text, special),
                    encode(&tk, text, special),
                    "{}: {text:?}",
                    path.display()
                );
            }
        }
    }
}
