//! `distill eval` on corpora recorded by the real teacher.

use std::path::Path;

use distill::student::{StudentConfig, io};

use crate::common::*;
use crate::train::{copy_dir, train_args};

fn eval(student: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "eval".to_string(),
        "--teacher".into(),
        teacher().display().to_string(),
        "--student".into(),
        student.display().to_string(),
        "--corpus".into(),
        valid_corpus().display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let stdout = distill_ok(&args);
    assert!(
        stdout.contains("Mean KLD") && out.join("report.md").exists(),
        "{stdout}"
    );
    serde_json::from_slice(&std::fs::read(out.join("report.json")).expect("report.json"))
        .expect("json")
}

fn stat(report: &serde_json::Value, model: usize, path: &[&str]) -> f64 {
    let mut v = &report["models"][model]["quality"];
    for key in path {
        v = &v[*key];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing in {}", report["models"][model]))
}

#[test]
fn the_teacher_against_itself_has_zero_kld_and_full_agreement() {
    let dir = temp_dir("eval-self");
    let r = eval(
        &teacher(),
        &dir.join("report"),
        &["--no-speed", "--answers", "3", "--answer-tokens", "24"],
    );
    assert!(stat(&r, 1, &["kld", "mean"]) < 2e-3, "{}", r["models"][1]);
    // Greedy answers of the same model are the same answers, judged the same.
    let (own, other) = (&r["models"][0]["answers"], &r["models"][1]["answers"]);
    assert_eq!(own["samples"], other["samples"]);
    assert_eq!(own["answers"], 3);
    let ppl = |a: &serde_json::Value| a["teacher_ppl"].as_f64().expect("ppl");
    assert!(
        ppl(own) >= 1.0 && (ppl(own) - ppl(other)).abs() < 1e-6,
        "{own} {other}"
    );
    assert!(stat(&r, 1, &["kld", "max"]) < 5e-2);
    assert!(stat(&r, 1, &["same_top"]) > 0.995);
    assert!((stat(&r, 1, &["ppl_ratio"]) - 1.0).abs() < 0.01);
    assert!(stat(&r, 1, &["delta_p", "rms"]) < 0.01);
}

#[test]
fn longer_training_beats_random_and_every_statistic_is_reported() {
    let dir = temp_dir("eval-students");
    let (short, long) = (dir.join("short"), dir.join("long"));
    distill_ok(&train_args(
        &short,
        &["--steps", "1", "--lr", "1e-9", "--warmup", "0"],
    ));
    distill_ok(&train_args(&long, &["--steps", "60"]));
    let r = eval(
        &long,
        &dir.join("report"),
        &[
            "--compare",
            short.to_str().expect("utf-8"),
            "--answers",
            "4",
            "--answer-tokens",
            "48",
        ],
    );
    // Free-running answers of every model, judged by the teacher: the trained student's
    // read as more likely to the teacher than the untrained one's.
    let answers = |m: usize, key: &str| r["models"][m]["answers"][key].clone();
    let answer_ppl = |m: usize| answers(m, "teacher_ppl").as_f64().expect("teacher_ppl");
    assert!(
        answer_ppl(1) < answer_ppl(2),
        "{} vs {}",
        answer_ppl(1),
        answer_ppl(2)
    );
    for m in 0..3 {
        assert_eq!(answers(m, "answers"), 4);
        assert_eq!(answers(m, "samples").as_array().map(Vec::len), Some(3));
        for d in answers(m, "distinct").as_array().expect("distinct") {
            assert!(d.as_f64().is_some_and(|x| x > 0.0 && x <= 1.0), "{d}");
        }
    }
    let md = std::fs::read_to_string(dir.join("report").join("report.md")).expect("md");
    assert!(
        md.contains("## Free-running answers") && md.contains("**Prompt 1:**"),
        "{md}"
    );
    for key in [
        "mean", "mean_err", "max", "p99_9", "p99", "p95", "p90", "median", "p10", "p5", "p1", "min",
    ] {
        stat(&r, 1, &["kld", key]);
        stat(&r, 1, &["delta_p", key]);
    }
    for key in [
        "same_top",
        "same_top_err",
        "ppl_teacher",
        "ppl_model",
        "ppl_ratio",
    ] {
        stat(&r, 1, &[key]);
    }
    let (trained, random) = (stat(&r, 1, &["kld", "mean"]), stat(&r, 2, &["kld", "mean"]));
    assert!(trained < random, "trained KLD {trained} vs random {random}");
    assert!(stat(&r, 1, &["ppl_model"]) < stat(&r, 2, &["ppl_model"]));
    assert!(
        stat(&r, 1, &["ppl_ratio"]) > 1.0,
        "a small student does worse than its teacher"
    );
    // Speed of the teacher in llama.cpp and of each student in candle, from child processes.
    for m in 0..3 {
        let s = &r["models"][m]["speed"][0];
        for key in [
            "prompt_tok_s",
            "decode_tok_s",
            "ttft_short_ms",
            "ttft_long_ms",
            "peak_rss_mb",
            "file_bytes",
            "params",
        ] {
            assert!(
                s[key].as_f64().is_some_and(|x| x > 0.0),
                "model {m}: {key} in {s}"
            );
        }
    }
    assert_eq!(r["models"][0]["speed"][0]["engine"], "llama.cpp");
    assert_eq!(r["models"][1]["speed"][0]["engine"], "candle");
    // The student also runs in llama.cpp (exported as Q8_0). Which model is faster is a
    // benchmark's question (docs/BENCHMARKS.md), not a test's: tests run side by side on
    // two cores, and contention can slow either process several-fold.
    let student_llama = &r["models"][1]["speed"][1];
    assert_eq!(student_llama["engine"], "llama.cpp");
    for key in ["decode_tok_s", "prompt_tok_s", "ttft_short_ms"] {
        assert!(
            student_llama[key].as_f64().is_some_and(|x| x > 0.0),
            "student in llama.cpp: {key} in {student_llama}"
        );
    }
}

#[test]
fn eval_refuses_other_vocabularies_other_teachers_and_missing_files() {
    let dir = temp_dir("eval-bad");
    let tiny = dir.join("tiny");
    std::fs::create_dir_all(&tiny).expect("dir");
    let cfg = StudentConfig::tiny_test();
    io::save_config(&tiny, &cfg).expect("config");
    io::save_tensors(
        &tiny.join("model.safetensors"),
        &io::random_weights(&cfg, 1).expect("init"),
    )
    .expect("weights");
    let base = |student: &Path, corpus: &Path| {
        vec![
            "eval".to_string(),
            "--teacher".into(),
            teacher().display().to_string(),
            "--student".into(),
            student.display().to_string(),
            "--corpus".into(),
            corpus.display().to_string(),
            "--out".into(),
            dir.join("r").display().to_string(),
            "--no-speed".into(),
        ]
    };
    let err = distill_err(&base(&tiny, valid_corpus()));
    assert!(
        err.contains("vocabulary of 64 tokens") && err.contains("49152"),
        "{err}"
    );
    let other = dir.join("other");
    copy_dir(valid_corpus(), &other);
    let path = other.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    v["teacher"]["tokenizer_fingerprint"] = "f".repeat(64).into();
    v["teacher"]["file"] = "stranger.gguf".into();
    std::fs::write(&path, v.to_string()).expect("write");
    let err = distill_err(&base(&tiny, &other));
    assert!(
        err.contains("stranger.gguf") && err.contains("tokenizer differs"),
        "{err}"
    );
    let err = distill_err(&base(&dir.join("nope"), valid_corpus()));
    assert!(err.contains("does not exist"), "{err}");
}
