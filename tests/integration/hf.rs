//! The student directory as a Hugging Face model: transformers' `AutoModelForCausalLM` and
//! `AutoTokenizer` load it as it is (scripts/check_hf_dir.py), give candle's logits, tokenize
//! as llama.cpp does, render chats as distill did when it recorded the corpus, and stop where
//! the teacher stops. For the default teacher (byte-level BPE, ChatML) with a student of all
//! its blocks, and for Gemma 3 (SentencePiece, base model) with a small random student.

use std::path::Path;
use std::process::Command;

use distill::corpus::{Message, Role};
use distill::gguf::GgufMeta;
use distill::record::file_sha256;
use distill::student::io::{self, Provenance, Weights};
use distill::student::{Preset, StudentConfig, init};
use distill::teacher::{LlamaTeacher, Teacher};
use serde_json::{Value, json};

use crate::common::{gemma, teacher, temp_dir};
use crate::export::{ANSWER, candle_logits};
use crate::tokenizer::{PLAIN, TEMPLATED};

/// A student directory for `teacher_path` made the way `distill train` makes one.
fn student_dir(dir: &Path, teacher_path: &Path, cfg: &StudentConfig, weights: &Weights) {
    let meta = GgufMeta::read(teacher_path).expect("meta");
    let provenance = Provenance {
        file: teacher_path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into(),
        path: teacher_path.to_path_buf(),
        sha256: file_sha256(teacher_path).expect("sha256"),
        n_vocab: cfg.vocab_size,
        tokenizer_fingerprint: meta.tokenizer_fingerprint(),
    };
    let warning = io::create_dir(dir, cfg, &meta, &provenance).expect("student dir");
    assert!(warning.is_none(), "{warning:?}");
    io::save_tensors(&dir.join("model.safetensors"), weights).expect("weights");
}

fn msg(role: Role, content: &str) -> Message {
    Message {
        role,
        content: content.into(),
    }
}

/// Run scripts/check_hf_dir.py on `dir` with `cases`; its JSON verdict.
fn check(dir: &Path, cases: &Value) -> Value {
    let path = dir.join("cases.json");
    std::fs::write(&path, serde_json::to_vec(cases).expect("json")).expect("cases");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_hf_dir.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .arg(&path)
        .output()
        .expect("python3 with torch and transformers (scripts/setup.sh installs them)");
    assert!(
        out.status.success(),
        "check_hf_dir.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("verdict json");
    eprintln!("transformers on {}: {v}", dir.display());
    v
}

/// Tokenization cases: llama.cpp's tokens of every test text, special tokens parsed.
fn texts(vocab: &LlamaTeacher) -> Vec<Value> {
    PLAIN
        .iter()
        .chain(TEMPLATED)
        .map(|t| json!({"text": t, "ids": vocab.tokenize(t, true)}))
        .collect()
}

/// Write candle's logits for `ids` where the script reads them.
fn logits_case(dir: &Path, cfg: &StudentConfig, weights: &Weights, ids: &[u32]) -> Value {
    let rows = candle_logits(cfg, weights, ids);
    let bytes: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let file = dir.join("candle-logits.f32");
    std::fs::write(&file, bytes).expect("logits");
    json!({"ids": ids, "file": file})
}

/// The tokens where llama.cpp ends a generation, sorted.
fn eog(vocab: &LlamaTeacher) -> Vec<u64> {
    let mut ids: Vec<u64> = (0..vocab.info().n_vocab as u32)
        .filter(|&t| vocab.is_eog(t))
        .map(u64::from)
        .collect();
    ids.sort_unstable();
    ids
}

/// generation_config.json's stop tokens as transformers read them (one id or a list), sorted.
fn stops(v: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = match &v["eos_token_id"] {
        Value::Array(a) => a.iter().filter_map(Value::as_u64).collect(),
        one => one.as_u64().into_iter().collect(),
    };
    ids.sort_unstable();
    ids
}

fn assert_agrees(v: &Value) {
    // transformers 5 names its tokenizers-backed class TokenizersBackend.
    let class = v["tokenizer_class"].as_str().unwrap_or("");
    assert!(
        ["PreTrainedTokenizerFast", "TokenizersBackend"].contains(&class),
        "{v}"
    );
    assert_eq!(v["n_token_mismatches"], 0, "{v}");
    assert_eq!(v["chat_mismatches"], json!([]), "{v}");
    let l = &v["logits"];
    assert!(l["rel_max"].as_f64().expect("rel_max") < 1e-3, "{l}");
    assert!(l["top1"].as_f64().expect("top1") >= 0.99, "{l}");
}

#[test]
fn transformers_loads_the_student_of_the_default_teacher_and_agrees_with_candle_and_llama_cpp() {
    let root = temp_dir("hf-smollm2");
    let dir = root.join("student");
    let (cfg, weights) =
        init::from_teacher(&teacher(), &(0..30).collect::<Vec<_>>()).expect("init");
    student_dir(&dir, &teacher(), &cfg, &weights);
    for file in ["tokenizer_config.json", "generation_config.json"] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let vocab = LlamaTeacher::load_vocab(&teacher()).expect("vocab");
    let question = "What is the capital of France, and what is it famous for?";
    let chats = [
        vec![msg(Role::User, question)],
        vec![
            msg(
                Role::System,
                "You are a helpful assistant who answers briefly.",
            ),
            msg(Role::User, question),
        ],
        vec![
            msg(Role::User, "Hi!"),
            msg(Role::Assistant, "Hello! How can I help?"),
            msg(Role::User, "Name a fruit."),
        ],
    ];
    let chats: Vec<Value> = chats
        .iter()
        .map(|m| {
            let messages: Vec<Value> = m
                .iter()
                .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                .collect();
            json!({"messages": messages, "prompt": vocab.render_prompt(m).expect("render")})
        })
        .collect();
    let prompt = vocab.tokenize(
        &vocab
            .render_prompt(&[msg(Role::User, question)])
            .expect("render"),
        true,
    );
    let mut scored = prompt.clone();
    scored.extend(vocab.tokenize(ANSWER, false));
    let cases = json!({
        "texts": texts(&vocab),
        "chats": chats,
        "logits": logits_case(&root, &cfg, &weights, &scored),
        "generate": {"messages": [{"role": "user", "content": question}], "ids": prompt, "n": 12},
    });
    let v = check(&dir, &cases);
    assert_agrees(&v);
    assert_eq!(v["model_class"], "LlamaForCausalLM", "{v}");
    assert_eq!(v["chat_template"], true, "{v}");
    assert_eq!(stops(&v), eog(&vocab), "llama.cpp's stop tokens: {v}");
    assert_eq!(v["generate_prompt_matches"], true, "{v}");
    let said = v["generated"].as_str().expect("generated");
    assert!(
        said.contains("Paris"),
        "transformers' greedy answer: {said:?}"
    );
    std::fs::remove_dir_all(&root).ok(); // ~550 MB
}

#[test]
fn transformers_reads_a_gemma_student_with_its_sentencepiece_vocabulary() {
    let root = temp_dir("hf-gemma");
    let dir = root.join("student");
    let vocab = LlamaTeacher::load_vocab(&gemma()).expect("vocab");
    let cfg = StudentConfig::preset(Preset::Small, vocab.info().n_vocab);
    let weights = io::random_weights(&cfg, 7).expect("weights");
    student_dir(&dir, &gemma(), &cfg, &weights);
    let ids = vocab.tokenize("The capital of France is Paris. Gemma reads it too.", true);
    let cases = json!({
        "texts": texts(&vocab),
        "logits": logits_case(&root, &cfg, &weights, &ids),
    });
    let v = check(&dir, &cases);
    assert_agrees(&v);
    assert_eq!(v["chat_template"], false, "a base model has none: {v}");
    assert_eq!(stops(&v), eog(&vocab), "llama.cpp's stop tokens: {v}");
    std::fs::remove_dir_all(&root).ok();
}
