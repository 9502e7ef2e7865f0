//! A qwen2 teacher (built by [`crate::teachers::qwen2_teacher`] in llama.cpp's qwen2 layout):
//! its profile; a student made of all its blocks, q/k/v biases included, whose candle logits
//! are llama.cpp's; the student's export (llama architecture with bias tensors) that
//! llama.cpp runs with the same logits; and `train --init teacher` without `--layers`.

use distill::gguf::{Family, TeacherProfile};
use distill::student::init;
use distill::student::io::{self, Provenance};

use crate::common::*;
use crate::export::{ANSWER, candle_logits, compare, export, llama_logits, load, tokens};
use crate::teachers::{QWEN2_BLOCKS, qwen2_teacher};

#[test]
fn qwen2_teacher_gives_a_biased_student_with_llama_cpp_logits_that_exports() {
    let path = qwen2_teacher();
    let p = TeacherProfile::read(path).expect("profile");
    assert_eq!((p.family(), p.blocks), (Family::Qwen2, QWEN2_BLOCKS.len()));
    assert!(p.attention_bias && p.init_blocker.is_none(), "{p:?}");
    let all: Vec<usize> = (0..p.blocks).collect();
    let (cfg, weights) = init::from_teacher(path, &all).expect("init from qwen2");
    assert!(cfg.attention_bias);
    assert_eq!(cfg.architectures, ["Qwen2ForCausalLM"]);
    let model = load(path);
    let toks = tokens(&model, ANSWER);
    let theirs = llama_logits(&model, &toks);
    let ours = candle_logits(&cfg, &weights, &toks);
    let d = compare(&ours, &theirs);
    // The biases matter: without them the student is further from llama.cpp.
    let mut no_bias = weights.clone();
    for (name, t) in no_bias.iter_mut().filter(|(n, _)| n.ends_with(".bias")) {
        *t = t.zeros_like().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let d0 = compare(&candle_logits(&cfg, &no_bias, &toks), &theirs);
    // Measured (65 positions): rel max 0.0014, mean 0.005, top-1 1.00; biases zeroed:
    // mean 5.7, top-1 0.03. A wrong RoPE row order shows as top-1 near 0.05.
    eprintln!("qwen2 teacher: candle vs llama.cpp {d:?}; biases zeroed {d0:?}");
    assert!(d.top1 >= 0.95 && d.rel_max < 0.01 && d.mean < 0.02, "{d:?}");
    assert!(d0.mean > 20.0 * d.mean, "biases zeroed {d0:?} vs {d:?}");

    // Exported as f32, the student runs in llama.cpp with the candle logits.
    let root = temp_dir("qwen2-export");
    let dir = root.join("student");
    std::fs::create_dir_all(&dir).expect("dir");
    io::save_config(&dir, &cfg).expect("config");
    io::save_tensors(&dir.join("model.safetensors"), &weights).expect("weights");
    Provenance {
        file: p.file(),
        path: path.clone(),
        sha256: String::new(),
        n_vocab: p.n_vocab,
        tokenizer_fingerprint: p.fingerprint.clone(),
    }
    .save(&dir)
    .expect("provenance");
    let out = root.join("student-f32.gguf");
    assert!(export(&dir, &out, "f32").contains("wrote"));
    let exported = TeacherProfile::read(&out).expect("exported profile");
    assert_eq!(exported.architecture, "llama");
    assert!(exported.attention_bias, "bias tensors written");
    // Measured: rel max 0.0012, mean 0.004, top-1 1.00.
    let e = compare(&ours, &llama_logits(&load(&out), &toks));
    eprintln!("qwen2 student exported f32: llama.cpp vs candle {e:?}");
    assert!(e.rel_max < 0.01 && e.mean < 0.02 && e.top1 >= 0.95, "{e:?}");
    // Read back by the project's own loader: the same weights, biases included.
    let (back_cfg, back) = init::from_teacher(&out, &all).expect("read back");
    assert!(back_cfg.attention_bias);
    assert_eq!(
        compare(&ours, &candle_logits(&back_cfg, &back, &toks)).rel_max,
        0.0
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn train_init_teacher_on_a_qwen2_teacher_needs_no_layers() {
    let root = temp_dir("qwen2-train");
    let prompts = root.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS_EVERY_FORM).expect("prompts");
    let corpus = root.join("corpus");
    let (t, p, c) = (
        qwen2_teacher().display().to_string(),
        prompts.display().to_string(),
        corpus.display().to_string(),
    );
    let args = [
        "record",
        "--teacher",
        &t,
        "--prompts",
        &p,
        "--out",
        &c,
        "--quiet",
        "--max-new-tokens",
        "16",
        "--top-k",
        "8",
    ];
    assert!(distill_ok(&args).contains("records"));
    let out = root.join("student");
    let o = out.display().to_string();
    let stdout = distill_ok(&[
        "train",
        "--corpus",
        &c,
        "--out",
        &o,
        "--init",
        "teacher",
        "--steps",
        "2",
        "--batch",
        "2",
        "--seq-len",
        "32",
        "--quiet",
    ]);
    assert!(stdout.contains("2 steps"), "{stdout}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("config"))
            .expect("json");
    // A fifth of 6 blocks, at least 2: the first and the last.
    assert_eq!(cfg["num_hidden_layers"], 2);
    assert_eq!(cfg["attention_bias"], true);
    assert_eq!(cfg["architectures"][0], "Qwen2ForCausalLM");
    assert!(out.join("tokenizer.json").is_file() && out.join("provenance.json").is_file());
    std::fs::remove_dir_all(&root).ok();
}
