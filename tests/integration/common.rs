//! Shared helpers: the teacher's path, temp directories, running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use distill::record::{Manifest, Shard};

/// The real teacher: `TEACHER_GGUF` or the default path scripts/setup.sh fills.
pub fn teacher() -> PathBuf {
    let path = std::env::var_os("TEACHER_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "teacher GGUF '{}' missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// The Gemma 3 270M teacher (a base model, SentencePiece vocabulary of 262144 tokens):
/// `GEMMA_GGUF` or the path scripts/setup.sh fills.
pub fn gemma() -> PathBuf {
    let path = std::env::var_os("GEMMA_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gemma-3-270m-q4_k_m.gguf")
        });
    assert!(
        path.exists(),
        "Gemma teacher '{}' missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Write a text file and return its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// The distill binary with `args`.
pub fn distill_cmd<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_distill"));
    cmd.args(args);
    cmd
}

/// Run distill and return its output.
pub fn distill<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    distill_cmd(args).output().expect("run distill")
}

/// Run distill, insist on success, return stdout.
pub fn distill_ok<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = distill(args);
    assert!(
        out.status.success(),
        "distill failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run distill, insist on failure, return stderr.
pub fn distill_err<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = distill(args);
    assert!(
        !out.status.success(),
        "distill should have failed; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `record` arguments for a small, fast corpus.
pub fn record_args(prompts: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "record".into(),
        "--teacher".into(),
        teacher().display().to_string(),
        "--prompts".into(),
        prompts.display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--quiet".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Prompt records in every accepted form, ending where the teacher should answer.
pub const PROMPTS_EVERY_FORM: &str = r#"{"prompt": "Name three primary colors."}
{"messages": [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "What is 2 + 2?"}]}
{"conversations": [{"from": "human", "value": "Hi!"}, {"from": "gpt", "value": "Hello! How can I help?"}, {"from": "human", "value": "Tell me a fun fact about octopuses."}]}
{"instruction": "Translate to French.", "input": "Good morning"}
{"prompt": "Write a haiku about rain.", "system": "You are a poet."}
{"instruction": "List two fruits that are yellow."}
"#;

/// Records with responses in every accepted form, for score mode.
pub const SCORED_EVERY_FORM: &str = r#"{"prompt": "What is the capital of France?", "response": "The capital of France is Paris."}
{"messages": [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Hello there!"}]}
{"conversations": [{"from": "human", "value": "Is water wet?"}, {"from": "gpt", "value": "Water makes other things wet."}]}
{"instruction": "Add the numbers.", "input": "2 and 3", "output": "2 + 3 = 5"}
"#;

/// A small corpus recorded once per test binary from the starter prompts.
pub fn corpus() -> &'static PathBuf {
    static C: OnceLock<PathBuf> = OnceLock::new();
    C.get_or_init(|| {
        let dir = temp_dir("shared-corpus");
        let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/train.jsonl");
        let out = dir.join("corpus");
        distill_ok(&record_args(
            &prompts,
            &out,
            &["--limit", "24", "--max-new-tokens", "48", "--top-k", "16"],
        ));
        out
    })
}

/// A held-out corpus recorded once per test binary from the starter validation prompts.
pub fn valid_corpus() -> &'static PathBuf {
    static C: OnceLock<PathBuf> = OnceLock::new();
    C.get_or_init(|| {
        let dir = temp_dir("shared-valid");
        let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/valid.jsonl");
        let out = dir.join("corpus");
        distill_ok(&record_args(
            &prompts,
            &out,
            &["--limit", "8", "--max-new-tokens", "32", "--top-k", "16"],
        ));
        out
    })
}

/// `scripts/read_corpus.py` on a corpus: the format's Python reader checks every shard and
/// prints the totals it recomputed (python3 with numpy and safetensors: scripts/setup.sh).
pub fn read_corpus_py(corpus: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/read_corpus.py");
    let py = Command::new("python3")
        .arg(&script)
        .arg(corpus)
        .output()
        .expect("python3 with numpy and safetensors (scripts/setup.sh installs them)");
    assert!(
        py.status.success(),
        "read_corpus.py failed:\n{}",
        String::from_utf8_lossy(&py.stderr)
    );
    serde_json::from_slice(&py.stdout).expect("json")
}

/// One corpus sequence, read with the library's reader: tokens, mask, and its top-k rows (ids, f32 log-probs).
pub struct Seq {
    pub tokens: Vec<u32>,
    pub mask: Vec<u8>,
    pub ids: Vec<Vec<u32>>,
    pub logprobs: Vec<Vec<f32>>,
}

pub fn corpus_sequences(dir: &Path) -> Vec<Seq> {
    let m = Manifest::read(dir).expect("read").expect("manifest");
    let mut out = Vec::new();
    for info in &m.shards {
        let shard = Shard::read(&dir.join(&info.file)).expect("shard");
        let k = shard.k;
        let mut row = 0;
        for s in 0..shard.sequences() {
            let r = shard.sequence(s);
            let mask = shard.target_mask[r.clone()].to_vec();
            let n = mask.iter().filter(|&&b| b == 1).count();
            let ids = (row..row + n)
                .map(|i| shard.topk_ids[i * k..(i + 1) * k].to_vec())
                .collect();
            let logprobs = (row..row + n)
                .map(|i| {
                    shard.topk_logprobs[i * k..(i + 1) * k]
                        .iter()
                        .map(|x| x.to_f32())
                        .collect()
                })
                .collect();
            out.push(Seq {
                tokens: shard.tokens[r].to_vec(),
                mask,
                ids,
                logprobs,
            });
            row += n;
        }
    }
    out
}
