//! `distill train` on a corpus recorded by the real teacher, and the student directory.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use distill::student::{Student, StudentConfig, init, io};

use crate::common::*;

pub fn metrics(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter(|v| v["kind"] == kind)
        .collect()
}

pub fn train_args(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--corpus"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(corpus().display().to_string());
    a.extend([
        "--out".to_string(),
        out.display().to_string(),
        "--quiet".into(),
    ]);
    // Defaults for a fast run; a flag given in `extra` replaces its default.
    for pair in [
        ["--preset", "small"],
        ["--batch", "4"],
        ["--seq-len", "64"],
        ["--lr", "3e-3"],
        ["--warmup", "5"],
    ] {
        if !extra.contains(&pair[0]) {
            a.extend(pair.iter().map(|s| s.to_string()));
        }
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn training_lowers_the_loss_and_raises_agreement() {
    let out = temp_dir("train-learns").join("student");
    let stdout = distill_ok(&train_args(
        &out,
        &[
            "--steps",
            "80",
            "--eval-every",
            "40",
            "--valid-fraction",
            "0.1",
        ],
    ));
    assert!(stdout.contains("valid"), "{stdout}");
    let steps = metrics(&out, "train");
    assert_eq!(steps.len(), 80);
    let mean = |xs: &[serde_json::Value], key: &str| {
        xs.iter()
            .map(|v| v[key].as_f64().expect("number"))
            .sum::<f64>()
            / xs.len() as f64
    };
    let (first, last) = (&steps[..10], &steps[70..]);
    assert!(
        mean(last, "loss") < 0.7 * mean(first, "loss"),
        "loss {} -> {}",
        mean(first, "loss"),
        mean(last, "loss")
    );
    let (t0, t1) = (mean(first, "top1"), mean(last, "top1"));
    assert!(
        t1 >= 2.0 * t0 && t1 >= t0 + 0.05,
        "top-1 agreement {t0} -> {t1}"
    );
    let valid = metrics(&out, "valid");
    assert_eq!(valid.len(), 2);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "train_state.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    // The directory loads in candle-transformers' Llama and agrees with our forward pass.
    assert_candle_transformers_agrees(&out);
}

fn assert_candle_transformers_agrees(dir: &Path) {
    use candle_transformers::models::llama as hf;
    let cfg = StudentConfig::read(dir).expect("config");
    let weights = io::load_tensors(&dir.join("model.safetensors")).expect("weights");
    let ours = Student::new(
        &cfg,
        VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu),
    )
    .expect("student");
    let hf_cfg: hf::LlamaConfig =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("read"))
            .expect("LlamaConfig");
    let hf_cfg = hf_cfg.into_config(false);
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let model = hf::Llama::load(vb, &hf_cfg).expect("candle-transformers loads the student");
    let mut cache = hf::Cache::new(false, DType::F32, &hf_cfg, &Device::Cpu).expect("cache");
    let ids = Tensor::new(&[[1u32, 520, 33, 9000, 17, 4, 48000, 2]], &Device::Cpu).expect("ids");
    let theirs = model
        .forward(&ids, 0, &mut cache)
        .expect("forward")
        .flatten_all()
        .expect("flat")
        .to_vec1::<f32>()
        .expect("vec");
    let all = ours.forward(&ids).expect("forward");
    let last = all
        .get(0)
        .expect("b")
        .get(7)
        .expect("t")
        .to_vec1::<f32>()
        .expect("vec");
    let diff = last
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-3, "max |logit difference| {diff}");
}

#[test]
fn killed_training_resumes_with_the_same_losses() {
    kill_and_resume("train-resume", &[]);
}

#[test]
fn killed_training_with_frozen_embeddings_resumes_with_them() {
    // Teacher-initialised, so that a resume that left the frozen embeddings at the
    // placeholder (seeded random) weights would show.
    let flags = [
        "--freeze-embeddings",
        "--init",
        "teacher",
        "--shape",
        "blocks",
        "--layers",
        "0,29",
    ];
    let dir = kill_and_resume("train-resume-frozen", &flags);
    let out = dir.join("killed");
    let (_, start) = init::from_teacher(&teacher(), &[0, 29]).expect("teacher blocks");
    let end = io::load_tensors(&out.join("model.safetensors")).expect("weights");
    let name = "model.embed_tokens.weight";
    let diff = (&start[name] - &end[name])
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("diff");
    assert_eq!(diff, 0.0, "frozen embeddings moved");
    let block = "model.layers.0.mlp.up_proj.weight";
    let moved = (&start[block] - &end[block])
        .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
        .expect("diff");
    assert!(moved > 0.0, "the blocks did not train");
}

#[test]
fn on_policy_training_scores_the_students_answers_and_resumes_inside_the_phase() {
    // The last half of 24 steps trains on the teacher's scores of the student's answers;
    // the kill comes after the switch at step 12, so the resume reads the saved answers.
    let dir = kill_and_resume_at("train-on-policy", &["--on-policy", "0.5"], 14);
    let out = dir.join("killed");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("train_state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(state["on_policy"], true);
    let shard = distill::record::Shard::read(&out.join("on_policy.safetensors")).expect("shard");
    assert!(
        shard.sequences() >= 2 && shard.targets() > 0,
        "{}",
        shard.targets()
    );
    let whole = distill::record::Shard::read(&dir.join("whole").join("on_policy.safetensors"))
        .expect("whole's shard");
    assert_eq!(
        whole.tokens, shard.tokens,
        "the same student writes the same answers"
    );
}

/// Train 24 steps whole, and again killed after step 8 and resumed: the losses match.
fn kill_and_resume(name: &str, extra: &[&str]) -> std::path::PathBuf {
    kill_and_resume_at(name, extra, 8)
}

/// [`kill_and_resume`] with the kill after step `at`.
fn kill_and_resume_at(name: &str, extra: &[&str], at: u64) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let whole = dir.join("whole");
    let args = |out: &Path| {
        let mut flags = vec!["--steps", "24", "--save-every", "4", "--eval-every", "0"];
        flags.extend(extra);
        train_args(out, &flags)
    };
    distill_ok(&args(&whole));
    let killed = dir.join("killed");
    let mut child = distill_cmd(&args(&killed)).spawn().expect("spawn");
    let clock = Instant::now();
    while clock.elapsed() < Duration::from_secs(120) {
        let saved = std::fs::read_to_string(killed.join("train_state.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
        if saved.is_some_and(|v| v["step"].as_u64().is_some_and(|s| s >= at))
            || child.try_wait().expect("poll").is_some()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        metrics(&killed, "train").len() < 24,
        "the kill came too late"
    );
    let mut resume = args(&killed);
    resume.push("--resume".into());
    distill_ok(&resume);
    let (a, b) = (metrics(&whole, "train"), metrics(&killed, "train"));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let (lx, ly) = (
            x["loss"].as_f64().expect("loss"),
            y["loss"].as_f64().expect("loss"),
        );
        assert!(
            (lx - ly).abs() <= 1e-4 * lx.abs().max(1.0),
            "step {}: {lx} vs {ly}",
            x["step"]
        );
    }
    let err = distill_err(&args(&killed));
    assert!(err.contains("--resume"), "{err}");
    dir
}

#[test]
fn teacher_initialised_student_with_all_layers_matches_llama_cpp() {
    let all: Vec<usize> = (0..30).collect();
    let (cfg, w) = init::from_teacher(&teacher(), &all).expect("from teacher");
    assert_eq!(
        (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size),
        (576, 30, 49152)
    );
    let student =
        Student::new(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu)).expect("student");
    let t = distill::teacher::LlamaTeacher::load(&teacher(), String::new()).expect("teacher");
    let ids = t.tokenize(
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        true,
    );
    let input = Tensor::from_vec(ids.clone(), (1, ids.len()), &Device::Cpu).expect("ids");
    let logits = student
        .forward(&input)
        .expect("forward")
        .get(0)
        .expect("b")
        .to_vec2::<f32>()
        .expect("vec");
    let reference = crate::record::direct_logits(&ids);
    let mut same_top1 = 0;
    for (ours, theirs) in logits.iter().zip(&reference) {
        let am = |v: &[f32]| {
            v.iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                .0
        };
        same_top1 += usize::from(am(ours) == am(theirs));
    }
    assert!(
        same_top1 * 10 >= ids.len() * 9,
        "top-1 agrees on {same_top1} of {} positions",
        ids.len()
    );
}

#[test]
fn bad_training_inputs_get_clear_errors() {
    let dir = temp_dir("train-bad");
    let err = distill_err(&[
        "train",
        "--corpus",
        dir.to_str().expect("utf-8"),
        "--out",
        dir.join("s").to_str().expect("utf-8"),
    ]);
    assert!(err.contains("no manifest.json"), "{err}");
    // A validation corpus from a teacher with another tokenizer.
    let other = dir.join("other");
    copy_dir(corpus(), &other);
    let path = other.join("manifest.json");
    let text = std::fs::read_to_string(&path).expect("manifest");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["teacher"]["tokenizer_fingerprint"] = "0".repeat(64).into();
    v["teacher"]["file"] = "other-teacher.gguf".into();
    std::fs::write(&path, v.to_string()).expect("write");
    let err = distill_err(&train_args(
        &dir.join("s1"),
        &[
            "--steps",
            "2",
            "--valid-corpus",
            other.to_str().expect("utf-8"),
        ],
    ));
    assert!(
        err.contains("other-teacher.gguf")
            && err.contains("SmolLM2")
            && err.contains("tokenizers differ"),
        "{err}"
    );
    let err = distill_err(&{
        let mut a = train_args(&dir.join("s2"), &["--steps", "2"]);
        a[2] = other.display().to_string();
        a
    });
    assert!(err.contains("another tokenizer"), "{err}");
    // An absurd learning rate: the loss blows up and the run stops, naming the fix and the
    // checkpoint that is kept (or that there is none yet).
    for save_every in ["1", "0"] {
        let out = dir.join(format!("nan-{save_every}"));
        let err = distill_err(&train_args(
            &out,
            &[
                "--steps",
                "30",
                "--lr",
                "10",
                "--grad-clip",
                "0",
                "--save-every",
                save_every,
                "--warmup",
                "0",
                "--eval-every",
                "0",
            ],
        ));
        assert!(
            (err.contains("loss became") || err.contains("loss diverged")) && err.contains("--lr"),
            "{err}"
        );
        assert!(!err.contains("('')"), "{err}");
        let state = std::fs::read_to_string(out.join("train_state.json"));
        if save_every == "0" || err.contains("at step 1;") {
            assert!(state.is_err(), "no checkpoint before the first save");
            assert!(err.contains("no checkpoint was saved yet"), "{err}");
            continue;
        }
        let state: serde_json::Value = serde_json::from_str(&state.expect("state")).expect("json");
        let stem = state["checkpoint"].as_str().expect("checkpoint stem");
        let kept = out.join(format!("{stem}.model.safetensors"));
        assert!(kept.is_file(), "{}", kept.display());
        assert!(
            err.contains(&format!("last good checkpoint ('{}')", kept.display())),
            "{err}"
        );
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn init_model_starts_from_a_small_model_that_shares_the_teachers_tokenizer() {
    let root = temp_dir("train-init-model");
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
    };
    // A GGUF of the teacher's family and tokenizer: the depth-cut teacher, 8 blocks.
    let from_gguf = root.join("from-gguf");
    let model = format!("model:{}", crate::teachers::cut_teacher().display());
    let steps = ["--steps", "2", "--freeze-embeddings", "--eval-every", "0"];
    let stdout = distill_ok(&train_args(
        &from_gguf,
        &[&["--init", &model][..], &steps].concat(),
    ));
    assert!(stdout.contains("2 steps"), "{stdout}");
    assert_eq!(json(&from_gguf.join("config.json"))["num_hidden_layers"], 8);
    // A Hugging Face directory with its tokenizer.json: the student just written.
    let from_dir = root.join("from-dir");
    let model = format!("model:{}", from_gguf.display());
    distill_ok(&train_args(
        &from_dir,
        &[&["--init", &model][..], &steps].concat(),
    ));
    assert_eq!(json(&from_dir.join("config.json"))["hidden_size"], 576);
    // Another tokenizer is refused, and so is a malformed value.
    let model = format!("model:{}", gemma().display());
    let err = distill_err(&train_args(&root.join("x"), &["--init", &model]));
    assert!(err.contains("another tokenizer"), "{err}");
    let err = distill_err(&train_args(&root.join("y"), &["--init", "modle:x"]));
    assert!(
        err.contains("'modle:x'") && err.contains("model:PATH"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).ok();
}
