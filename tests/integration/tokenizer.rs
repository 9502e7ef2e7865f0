//! The tokenizer.json built from the teacher GGUF against llama.cpp's own tokenizer.

use distill::gguf::GgufMeta;
use distill::student::tokenizer::{from_gguf, write_tokenizer_json};
use distill::teacher::LlamaTeacher;
use tokenizers::Tokenizer;

use crate::common::{teacher, temp_dir};

/// Plain text, tokenized without special-token parsing on the llama.cpp side.
const PLAIN: &[&str] = &[
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
const TEMPLATED: &[&str] = &[
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
    "<|im_start|>user\n  spaced   content  <|im_end|><|im_start|>assistant",
    "text before<|endoftext|>text after",
    "<|im_start|><|im_end|><|im_start|>",
    "x<|im_start|>y <|im_end|> z",
    "<repo_name>distill<file_sep>src/main.rs\nfn main() {}<|endoftext|>",
    "<|im_start|>user\nWhat does 😀 mean in 日本語?<|im_end|>\n",
];

fn encode(tk: &Tokenizer, text: &str, add_special: bool) -> Vec<u32> {
    tk.encode(text, add_special)
        .expect("encode")
        .get_ids()
        .to_vec()
}

/// Every mismatch between our tokenizer and llama.cpp, as a readable line.
fn mismatches(tk: &Tokenizer, llama: &LlamaTeacher) -> Vec<String> {
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
        }
        let decoded = tk.decode(&got, false).expect("decode");
        if decoded != text || decoded != llama.detokenize(&want) {
            bad.push(format!("{text:?} decodes to {decoded:?}"));
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

#[test]
fn tokenizer_from_gguf_matches_llama_cpp_exactly() {
    let path = teacher();
    let meta = GgufMeta::read(&path).expect("read GGUF");
    let tk = from_gguf(&meta).expect("tokenizer from GGUF");
    let llama = LlamaTeacher::load(&path, String::new()).expect("load teacher");
    assert!(PLAIN.len() + TEMPLATED.len() >= 60);
    let bad = mismatches(&tk, &llama);
    assert!(
        bad.is_empty(),
        "{} of {} strings differ:\n{}",
        bad.len(),
        PLAIN.len() + TEMPLATED.len(),
        bad.join("\n")
    );
    let bad = fuzz_mismatches(&tk, &llama, 5000);
    assert!(
        bad.is_empty(),
        "{} of 5000 random strings differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    // A chat turn is a handful of tokens, with <|im_start|> as one token, not split.
    let ids = encode(&tk, TEMPLATED[0], true);
    assert_eq!(ids[0], tk.token_to_id("<|im_start|>").expect("im_start"));
    assert_eq!(tk.get_vocab_size(true), llama.info.n_vocab);
}

#[test]
fn tokenizer_json_round_trips_through_a_file() {
    let meta = GgufMeta::read(&teacher()).expect("read GGUF");
    let tk = from_gguf(&meta).expect("tokenizer from GGUF");
    let dir = temp_dir("tokenizer_json_round_trip");
    let path = dir.join("tokenizer.json");
    write_tokenizer_json(&meta, &path).expect("write tokenizer.json");
    let back = Tokenizer::from_file(&path).expect("load tokenizer.json");
    for text in PLAIN.iter().chain(TEMPLATED) {
        for special in [false, true] {
            assert_eq!(
                encode(&back, text, special),
                encode(&tk, text, special),
                "{text:?}"
            );
        }
    }
}
