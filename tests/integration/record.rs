//! `distill record` and `distill inspect` on the real teacher.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use distill::record::{Manifest, Shard};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

use crate::common::*;

/// The process's one llama.cpp backend, shared with the library.
fn backend() -> &'static LlamaBackend {
    distill::teacher::llama::backend().expect("backend")
}

fn model() -> &'static LlamaModel {
    static M: OnceLock<LlamaModel> = OnceLock::new();
    M.get_or_init(|| {
        LlamaModel::load_from_file(backend(), teacher(), &LlamaModelParams::default())
            .expect("load")
    })
}

/// llama.cpp's logits at every position of one sequence, decoded alone.
pub fn direct_logits(tokens: &[u32]) -> Vec<Vec<f32>> {
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(2048))
        .with_n_batch(2048)
        .with_n_ubatch(2048)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model().new_context(backend(), params).expect("context");
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    for (p, &t) in tokens.iter().enumerate() {
        batch
            .add(LlamaToken(t as i32), p as i32, &[0], true)
            .expect("batch add");
    }
    ctx.decode(&mut batch).expect("decode");
    (0..tokens.len())
        .map(|p| ctx.get_logits_ith(p as i32).to_vec())
        .collect()
}

/// Full-vocabulary log-softmax (in f64) of [`direct_logits`]: the reference a corpus must
/// agree with.
fn direct_log_softmax(tokens: &[u32]) -> Vec<Vec<f64>> {
    direct_logits(tokens)
        .into_iter()
        .map(|z| {
            let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            z.iter().map(|&x| x as f64 - lse).collect()
        })
        .collect()
}

fn shards(dir: &Path) -> (Manifest, Vec<Shard>) {
    let m = Manifest::read(dir)
        .expect("manifest readable")
        .expect("manifest exists");
    let shards = m
        .shards
        .iter()
        .map(|s| Shard::read(&dir.join(&s.file)).expect("shard"))
        .collect();
    (m, shards)
}

/// Every stored row must be the teacher's true top-k, sorted, within f16 precision.
fn assert_matches_direct(shard: &Shard) {
    let k = shard.k;
    let mut row = 0;
    for s in 0..shard.sequences() {
        let range = shard.sequence(s);
        let tokens = &shard.tokens[range.clone()];
        let reference = direct_log_softmax(tokens);
        for (p, &m) in shard.target_mask[range].iter().enumerate() {
            if m == 0 {
                continue;
            }
            let ids = &shard.topk_ids[row * k..(row + 1) * k];
            let lps: Vec<f64> = shard.topk_logprobs[row * k..(row + 1) * k]
                .iter()
                .map(|x| f64::from(x.to_f32()))
                .collect();
            let want = &reference[p];
            for j in 0..k {
                let truth = want[ids[j] as usize];
                assert!(
                    (lps[j] - truth).abs() <= 2e-3 * truth.abs() + 2e-2,
                    "seq {s} pos {p} rank {j}: stored {} direct {truth}",
                    lps[j]
                );
                if j > 0 {
                    assert!(lps[j] <= lps[j - 1], "row not sorted");
                }
            }
            // Nothing outside the stored top-k is clearly more likely than its last entry.
            let mut sorted = want.clone();
            sorted.sort_by(|a, b| b.partial_cmp(a).expect("finite"));
            assert!(
                lps[k - 1] >= sorted[k] - 2e-2,
                "a token outside the top-k beats the k-th"
            );
            assert!((lps[0] - sorted[0]).abs() <= 2e-3 * sorted[0].abs() + 2e-2);
            let mass: f64 = lps.iter().map(|l| l.exp()).sum();
            assert!(mass <= 1.0 + 1e-3, "mass {mass}");
            row += 1;
        }
    }
    assert_eq!(row, shard.targets());
}

#[test]
fn generated_corpus_holds_the_teachers_true_top_k() {
    let dir = temp_dir("record-generate");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let out = dir.join("corpus");
    let stdout = distill_ok(&record_args(
        &prompts,
        &out,
        &["--max-new-tokens", "24", "--parallel", "3", "--top-k", "16"],
    ));
    assert!(stdout.contains("records    6 in corpus"), "{stdout}");
    let (m, shards) = shards(&out);
    assert!(m.complete);
    assert_eq!(
        (m.totals.sequences, m.record.k, m.teacher.n_vocab),
        (6, 16, 49152)
    );
    let shard = &shards[0];
    for s in 0..shard.sequences() {
        let r = shard.sequence(s);
        let n_targets: usize = shard.target_mask[r.clone()]
            .iter()
            .map(|&b| usize::from(b))
            .sum();
        assert!((1..=24).contains(&n_targets), "response length {n_targets}");
        assert_eq!(
            shard.target_mask[r.end - 1],
            0,
            "last position is never a target"
        );
    }
    assert_matches_direct(shard);
}

#[test]
fn scored_corpus_teacher_forces_the_given_responses() {
    let dir = temp_dir("record-score");
    let prompts = write(&dir, "s.jsonl", SCORED_EVERY_FORM);
    let out = dir.join("corpus");
    distill_ok(&record_args(
        &prompts,
        &out,
        &["--mode", "score", "--parallel", "2", "--top-k", "8"],
    ));
    let (m, shards) = shards(&out);
    assert_eq!(m.totals.sequences, 4);
    let shard = &shards[0];
    let texts = [
        "The capital of France is Paris.",
        "Hello there!",
        "Water makes other things wet.",
        "2 + 3 = 5",
    ];
    for (s, text) in texts.iter().enumerate() {
        let r = shard.sequence(s);
        let tokens = &shard.tokens[r.clone()];
        let expect: Vec<u32> = model()
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .iter()
            .map(|t| t.0 as u32)
            .collect();
        let n = expect.len() + 1; // the response, then <|im_end|>
        assert_eq!(
            &tokens[tokens.len() - n..tokens.len() - 1],
            expect.as_slice(),
            "sequence {s}"
        );
        assert!(
            model()
                .vocab()
                .is_eog(LlamaToken(*tokens.last().expect("nonempty") as i32))
        );
        let targets: usize = shard.target_mask[r].iter().map(|&b| usize::from(b)).sum();
        assert_eq!(targets, n);
    }
    assert_matches_direct(shard);
}

#[test]
fn same_seed_same_corpus_and_greedy_matches_argmax() {
    let dir = temp_dir("record-seed");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let args = |out: &str, seed: &str| {
        record_args(
            &prompts,
            &dir.join(out),
            &["--max-new-tokens", "16", "--limit", "3", "--seed", seed],
        )
    };
    distill_ok(&args("a", "5"));
    distill_ok(&args("b", "5"));
    distill_ok(&args("c", "6"));
    let bytes =
        |d: &str| std::fs::read(dir.join(d).join("shard-00000.safetensors")).expect("shard");
    assert_eq!(bytes("a"), bytes("b"));
    assert_ne!(bytes("a"), bytes("c"));
    // Greedy: every response token is the stored top-1 of the position before it.
    let out = dir.join("greedy");
    distill_ok(&record_args(
        &prompts,
        &out,
        &[
            "--max-new-tokens",
            "12",
            "--temperature",
            "0",
            "--limit",
            "2",
        ],
    ));
    let (_, shards) = shards(&out);
    let shard = &shards[0];
    let mut row = 0;
    for p in 0..shard.tokens.len() {
        if shard.target_mask[p] == 1 {
            assert_eq!(shard.topk_ids[row * shard.k], shard.tokens[p + 1]);
            row += 1;
        }
    }
}

/// Sequence `i` of the corpus in `shards`, as (prompt, response) tokens.
fn record_tokens(shards: &[Shard], i: usize) -> (Vec<u32>, Vec<u32>) {
    let mut i = i;
    for shard in shards {
        if i < shard.sequences() {
            let r = shard.sequence(i);
            let mask = &shard.target_mask[r.clone()];
            let start = r.start + mask.iter().position(|&t| t == 1).expect("targets") + 1;
            return (
                shard.tokens[r.start..start].to_vec(),
                shard.tokens[start..r.end].to_vec(),
            );
        }
        i -= shard.sequences();
    }
    panic!("no record {i}");
}

#[test]
fn several_answers_per_prompt_are_sampled_pass_after_pass_and_grow_on_resume() {
    let dir = temp_dir("record-answers");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let out = dir.join("c");
    let args = |answers: &str| {
        record_args(
            &prompts,
            &out,
            &[
                "--max-new-tokens",
                "16",
                "--limit",
                "3",
                "--shard-size",
                "3",
                "--answers-per-prompt",
                answers,
            ],
        )
    };
    distill_ok(&args("1"));
    let (_, once) = shards(&out);
    distill_ok(&args("3"));
    let (m, all) = shards(&out);
    assert_eq!(
        (m.planned_records, m.pass_records, m.complete),
        (9, Some(3), true)
    );
    assert_eq!(all[0].tokens, once[0].tokens, "the first pass is kept");
    for pass in 1..3 {
        let mut differ = 0;
        for i in 0..3 {
            let (prompt, answer) = record_tokens(&all, i);
            let (p, a) = record_tokens(&all, pass * 3 + i);
            assert_eq!(p, prompt, "record {} answers prompt {i}", pass * 3 + i);
            differ += usize::from(a != answer);
        }
        assert!(
            differ > 0,
            "pass {pass} copies the first one: one random stream per prompt"
        );
    }
    // Greedy answers would all be the same: refused, and the corpus is kept.
    let mut greedy = args("2");
    greedy.extend(["--temperature".into(), "0".into()]);
    let err = distill_err(&greedy);
    assert!(
        err.contains("--answers-per-prompt 2") && err.contains("--temperature"),
        "{err}"
    );
    assert_eq!(shards(&out).0.records(), 9);
}

#[test]
fn killed_run_resumes_to_an_identical_corpus() {
    let dir = temp_dir("record-resume");
    let prompts = write(&dir, "p.jsonl", &PROMPTS_EVERY_FORM.repeat(2));
    let args = |out: &Path| {
        record_args(
            &prompts,
            out,
            &[
                "--max-new-tokens",
                "20",
                "--shard-size",
                "3",
                "--parallel",
                "2",
            ],
        )
    };
    let whole = dir.join("whole");
    distill_ok(&args(&whole));

    let killed = dir.join("killed");
    // Kill once while the first shard is being decoded, once after a shard is finished.
    for wait_for_shard in [false, true] {
        let mut child = distill_cmd(&args(&killed)).spawn().expect("spawn");
        let clock = Instant::now();
        loop {
            let m = Manifest::read(&killed).ok().flatten();
            let ready = if wait_for_shard {
                m.is_some_and(|m| !m.shards.is_empty() && !m.complete)
            } else {
                clock.elapsed() > Duration::from_millis(800)
            };
            if ready || child.try_wait().expect("poll").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    let m = Manifest::read(&killed)
        .expect("readable")
        .expect("a shard was finished before the kill");
    assert!(!m.complete, "the kill came too late to test resumption");
    let stdout = distill_ok(&args(&killed));
    assert!(stdout.contains("from an earlier run"), "{stdout}");
    let (mw, _) = shards(&whole);
    let (mk, _) = shards(&killed);
    assert_eq!(mw.shards, mk.shards);
    for s in &mw.shards {
        assert_eq!(
            std::fs::read(whole.join(&s.file)).expect("a"),
            std::fs::read(killed.join(&s.file)).expect("b")
        );
    }
    assert!(!std::fs::read_dir(&killed).expect("dir").any(|e| {
        e.expect("entry")
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")
    }));
    // A complete corpus reruns as a no-op.
    let again = distill_ok(&args(&killed));
    assert!(again.contains("0 this run"), "{again}");
}

#[test]
fn another_teacher_settings_or_prompts_are_refused() {
    let dir = temp_dir("record-mismatch");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let out = dir.join("corpus");
    distill_ok(&record_args(
        &prompts,
        &out,
        &["--max-new-tokens", "8", "--limit", "2"],
    ));
    // Same tokenizer, other bytes: a different teacher file.
    let other = dir.join("other.gguf");
    let mut bytes = std::fs::read(teacher()).expect("teacher");
    bytes.extend_from_slice(&[0u8; 32]);
    std::fs::write(&other, bytes).expect("copy");
    let mut args = record_args(&prompts, &out, &["--max-new-tokens", "8", "--limit", "4"]);
    args[2] = other.display().to_string();
    let err = distill_err(&args);
    assert!(
        err.contains("recorded by teacher")
            && err.contains("same tokenizer")
            && err.contains("new --out"),
        "{err}"
    );
    let err = distill_err(&record_args(
        &prompts,
        &out,
        &["--max-new-tokens", "8", "--top-k", "32"],
    ));
    assert!(
        err.contains("--top-k: corpus has '64', this run asks for '32'"),
        "{err}"
    );
    let edited = write(
        &dir,
        "p.jsonl",
        &format!("{PROMPTS_EVERY_FORM}{{\"prompt\": \"one more\"}}\n"),
    );
    let err = distill_err(&record_args(&edited, &out, &["--max-new-tokens", "8"]));
    assert!(err.contains("prompt files differ"), "{err}");
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = temp_dir("record-bad");
    let out = dir.join("corpus");
    let good = write(&dir, "good.jsonl", PROMPTS_EVERY_FORM);
    let empty = write(&dir, "empty.jsonl", "\n");
    let err = distill_err(&record_args(&empty, &out, &[]));
    assert!(err.contains("holds no records"), "{err}");

    let bad = write(
        &dir,
        "bad.jsonl",
        "{\"prompt\": \"ok\"}\n{\"prompt\": \"unterminated\n{\"prompt\": \"fine\"}\n",
    );
    let err = distill_err(&record_args(&bad, &out, &[]));
    assert!(
        err.contains("bad.jsonl:2:") && err.contains("invalid JSON") && err.contains("--skip-bad"),
        "{err}"
    );
    let stdout = distill_ok(&record_args(
        &bad,
        &dir.join("skipped"),
        &["--skip-bad", "--max-new-tokens", "4"],
    ));
    assert!(
        stdout.contains("records    2 in corpus") && stdout.contains("1 bad lines"),
        "{stdout}"
    );

    let long = write(
        &dir,
        "long.jsonl",
        &format!("{{\"prompt\": \"{}\"}}\n", "word ".repeat(200)),
    );
    let err = distill_err(&record_args(&long, &out, &["--ctx", "64"]));
    assert!(
        err.contains("long.jsonl:1:")
            && err.contains("do not fit the context of 64")
            && err.contains("--ctx"),
        "{err}"
    );

    let err = distill_err(&record_args(&good, &out, &["--mode", "score"]));
    assert!(
        err.contains("good.jsonl:1:") && err.contains("no response to score"),
        "{err}"
    );

    let mut args = record_args(&good, &out, &[]);
    args[2] = dir.join("missing.gguf").display().to_string();
    let err = distill_err(&args);
    assert!(
        err.contains("missing.gguf") && err.contains("scripts/setup.sh"),
        "{err}"
    );
    args[2] = good.display().to_string();
    let err = distill_err(&args);
    assert!(err.contains("not a GGUF file"), "{err}");

    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).expect("dir");
    write(&foreign, "notes.txt", "mine");
    let err = distill_err(&record_args(&good, &foreign, &[]));
    assert!(err.contains("'notes.txt' but no manifest.json"), "{err}");
    assert!(
        foreign.join("notes.txt").exists(),
        "nothing of the user's is deleted"
    );
}

#[test]
fn inspect_and_python_read_the_corpus() {
    let dir = temp_dir("record-inspect");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let out = dir.join("corpus");
    distill_ok(&record_args(
        &prompts,
        &out,
        &["--max-new-tokens", "16", "--shard-size", "4"],
    ));
    let text = distill_ok(&[
        "inspect".to_string(),
        out.display().to_string(),
        "--verify".into(),
        "--sample".into(),
        "4".into(),
    ]);
    for want in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "6 sequences in 2 shards (complete)",
        "bytes per target token",
        "all 2 shards match",
        "teacher's top-5",
        "haiku",
    ] {
        assert!(text.contains(want), "missing '{want}' in:\n{text}");
    }
    let err = distill_err(&["inspect", dir.to_str().expect("utf-8 path")]);
    assert!(err.contains("not a corpus directory"), "{err}");

    let totals = read_corpus_py(&out);
    let (m, _) = shards(&out);
    assert_eq!(totals["sequences"], 6);
    assert_eq!(totals["targets"].as_u64(), Some(m.totals.targets as u64));
}

#[test]
fn bench_teacher_reports_all_three_speeds() {
    let out = distill_ok(&[
        "bench",
        "teacher",
        "--teacher",
        teacher().to_str().expect("utf-8"),
        "--json",
        "--gen-tokens",
        "8",
        "--score-tokens",
        "512",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for key in ["score_tok_s", "generate1_tok_s", "generate8_tok_s"] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
    }
}
