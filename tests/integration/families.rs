//! `distill run --no-tui` to a report with each kind of teacher the suite has: Gemma 3 (a
//! base model: raw-text records, SentencePiece, 262k vocabulary, random student), SmolLM2
//! cut to 8 blocks (llama of another depth; then chat in tmux), and the qwen2 teacher (a
//! biased student from its blocks). Small budgets: fixed step counts, tiny corpora, no
//! speed runs. Also the up-front refusals a base teacher gets.

use std::path::{Path, PathBuf};

use crate::chat::{Tmux, chat_command, quit_and_check_restored};
use crate::common::*;
use crate::teachers::{cut_teacher, qwen2_teacher};

/// Raw text for a base teacher (written for this project).
const TEXT: &str = "Knowledge distillation trains a small model to imitate a large one. \
The large model, the teacher, reads a text and gives, at every position, a probability \
for each token that could come next. The small model, the student, learns to give the \
same probabilities, which carry more information than the one token that actually \
follows. A teacher that is unsure between two words teaches the student that both fit.\n\n\
The student is cheaper to run: it has fewer layers, a narrower hidden state, or both. \
On a laptop it answers several times faster than the teacher, and it fits in less \
memory. What it loses in quality depends on how much it has seen and how long it \
trained.\n";

/// Held-out raw text, as JSONL records.
const VALID_TEXT: &str = r#"{"text": "A recipe for bread needs flour, water, salt and yeast. Mix them, let the dough rest for an hour, shape it, and bake it in a hot oven until the crust is brown."}
{"text": "The river runs from the mountains to the sea. In spring it floods the fields along its banks, and in late summer it is shallow enough to cross on foot."}
"#;

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// `distill run` for `teacher` with a fixed, tiny amount of work and a budget no busy
/// machine exhausts.
fn run_args(teacher: &Path, train: &Path, valid: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let s = |p: &Path| p.display().to_string();
    let mut args: Vec<String> = [
        "run",
        "--no-tui",
        "--teacher",
        &s(teacher),
        "--prompts",
        &s(train),
        "--valid-prompts",
        &s(valid),
        "--out",
        &s(out),
        "--minutes",
        "600",
        "--max-new-tokens",
        "12",
        "--train-steps",
        "2",
        "--batch",
        "2",
        "--seq-len",
        "64",
        "--no-speed",
        "--threads",
        "2",
        "--answers-per-prompt",
        "1",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    args.extend(extra.iter().map(|x| x.to_string()));
    args
}

/// Run to the end; check the summary and the report; return run.json.
fn run_to_report(args: &[String], out: &Path) -> serde_json::Value {
    let stdout = distill_ok(args);
    for line in [
        "complete in",
        "record-train",
        "train         2 steps",
        "eval          KLD",
    ] {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }
    let report = json(&out.join("eval/report.json"));
    let student = &report["models"][1];
    assert_eq!(student["role"], "student");
    let kld = student["quality"]["kld"]["mean"].as_f64().expect("KLD");
    assert!(kld.is_finite() && kld >= 0.0, "{kld}");
    assert!(out.join("eval/report.md").is_file());
    json(&out.join("run.json"))
}

/// The first `n` starter prompts as a file in `dir`.
fn prompts(dir: &Path, file: &str, n: usize) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(repo.join("prompts").join(file)).expect("prompts");
    let lines: String = text.lines().take(n).map(|l| format!("{l}\n")).collect();
    write(dir, file, &lines)
}

#[test]
fn gemma_base_teacher_runs_on_raw_text_with_a_random_student() {
    let dir = temp_dir("family-gemma");
    let train = write(&dir, "train.txt", TEXT);
    let valid = write(&dir, "valid.jsonl", VALID_TEXT);
    let out = dir.join("run");
    let state = run_to_report(
        &run_args(&gemma(), &train, &valid, &out, &["--mode", "score"]),
        &out,
    );
    let init = state["settings"]["student_init"]
        .as_str()
        .expect("student_init");
    assert!(
        init.starts_with("random init") && init.contains("'gemma3'"),
        "{init}"
    );
    assert_eq!(state["settings"]["layers"], serde_json::json!([]));
    let cfg = json(&out.join("student/config.json"));
    assert_eq!(cfg["vocab_size"], 262_144);
    // The SentencePiece tokenizer.json was written; the corpus holds every text position.
    assert!(out.join("student/tokenizer.json").is_file());
    let manifest = json(&out.join("train/manifest.json"));
    assert_eq!(manifest["record"]["mode"], "score");
    assert!(manifest["totals"]["targets"].as_u64().expect("targets") > 100);
    std::fs::remove_dir_all(&dir).ok(); // ~1.2 GB: the 262k-token embedding and its moments
}

#[test]
fn a_base_teacher_is_refused_up_front_where_it_needs_a_template() {
    let dir = temp_dir("family-gemma-refusals");
    let chat = prompts(&dir, "train.jsonl", 3);
    let g = gemma().display().to_string();
    let (c, out) = (chat.display().to_string(), dir.join("corpus"));
    let o = out.display().to_string();
    let err = distill_err(&["record", "--teacher", &g, "--prompts", &c, "--out", &o]);
    assert!(
        err.contains("base model") && err.contains("--mode score"),
        "{err}"
    );
    assert!(!out.join("manifest.json").exists(), "nothing recorded");
    let text = write(&dir, "t.txt", TEXT).display().to_string();
    let err = distill_err(&["record", "--teacher", &g, "--prompts", &text, "--out", &o]);
    assert!(
        err.contains("raw text") && err.contains("--mode score"),
        "{err}"
    );
    let run = dir.join("run");
    let err = distill_err(&run_args(&gemma(), &chat, &chat, &run, &[]));
    assert!(err.contains("base model"), "{err}");
    assert!(!run.join("run.json").exists(), "no stage started");
    let txt = write(&dir, "v.txt", TEXT);
    let layers = ["--mode", "score", "--layers", "0,5"];
    let err = distill_err(&run_args(&gemma(), &txt, &txt, &run, &layers));
    assert!(
        err.contains("--layers") && err.contains("'gemma3'"),
        "{err}"
    );
    let err = distill_err(&["train", "--corpus", &o, "--out", &o]);
    assert!(err.contains("manifest.json"), "{err}");
    // A raw-text corpus records; a student cannot start from Gemma's blocks.
    let (t, c) = (write(&dir, "doc.txt", TEXT), dir.join("text"));
    let (t, c) = (t.display().to_string(), c.display().to_string());
    #[rustfmt::skip]
    let record = ["record", "--teacher", &g, "--prompts", &t, "--out", &c, "--mode", "score", "--quiet"];
    distill_ok(&record);
    let student = dir.join("student").display().to_string();
    let err = distill_err(&[
        "train", "--corpus", &c, "--out", &student, "--init", "teacher",
    ]);
    assert!(
        err.contains("'gemma3'") && err.contains("--init random"),
        "{err}"
    );
    assert!(
        !dir.join("student").exists(),
        "refused before anything is written"
    );
    let err = distill_err(&["chat", "--teacher", &g]);
    assert!(
        err.contains("--template chatml") && err.contains("--template none"),
        "{err}"
    );
}

#[test]
fn depth_cut_llama_teacher_runs_to_a_report_and_chats_in_tmux() {
    let dir = temp_dir("family-cut");
    let train = prompts(&dir, "train.jsonl", 8);
    let valid = prompts(&dir, "valid.jsonl", 2);
    let out = dir.join("run");
    let state = run_to_report(&run_args(cut_teacher(), &train, &valid, &out, &[]), &out);
    // A fifth of 8 blocks, at least 2: the first and the last.
    assert_eq!(state["settings"]["layers"], serde_json::json!([0, 7]));
    let chat_dir = dir.join("chat");
    std::fs::create_dir_all(&chat_dir).expect("chat dir");
    let args: Vec<String> = [
        "--teacher",
        &cut_teacher().display().to_string(),
        "--student",
        &out.join("student").display().to_string(),
        "--transcripts",
        &chat_dir.join("t").display().to_string(),
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tmux = Tmux::start("cut", &chat_command(&chat_dir, &args), 160, 40);
    tmux.wait_for("both models to load", |s| s.matches("Ready.").count() == 2);
    tmux.type_text("Say hello.");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("both answers", |s| s.contains("speed-up ×"));
    assert!(screen.contains("smollm2-cut8.gguf"), "{screen}");
    quit_and_check_restored(&tmux, &chat_dir);
}

#[test]
fn qwen2_teacher_runs_to_a_report_with_a_biased_student() {
    let dir = temp_dir("family-qwen2");
    let train = prompts(&dir, "train.jsonl", 8);
    let valid = prompts(&dir, "valid.jsonl", 2);
    let out = dir.join("run");
    let state = run_to_report(&run_args(qwen2_teacher(), &train, &valid, &out, &[]), &out);
    assert_eq!(state["settings"]["layers"], serde_json::json!([0, 5]));
    let cfg = json(&out.join("student/config.json"));
    assert_eq!(cfg["attention_bias"], true);
}

#[test]
fn chat_with_a_base_teacher_continues_plain_text_with_template_none() {
    let dir = temp_dir("family-gemma-chat");
    #[rustfmt::skip]
    let args: Vec<String> = [
        "--teacher", &gemma().display().to_string(), "--template", "none",
        "--transcripts", &dir.join("t").display().to_string(),
        "--max-tokens", "12", "--temperature", "0", "--threads", "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tmux = Tmux::start("gemma", &chat_command(&dir, &args), 120, 30);
    tmux.wait_for("the teacher to load", |s| s.contains("Ready."));
    tmux.type_text("The capital of France is");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the continuation", |s| s.contains("done"));
    assert!(screen.contains("gemma-3-270m-q4_k_m.gguf"), "{screen}");
    let answer = screen
        .lines()
        .skip_while(|l| !l.contains("Teacher (llama.cpp)"))
        .nth(1)
        .unwrap_or_else(|| panic!("no answer:\n{screen}"));
    assert!(answer.chars().any(char::is_alphabetic), "{screen}");
    quit_and_check_restored(&tmux, &dir);
}
