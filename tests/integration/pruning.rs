//! Students cut from the real teacher (pruned blocks, hidden channels, heads and MLP
//! channels) run in llama.cpp as they do in candle; the teacher's recorded hidden states
//! are its own; training uses them.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use distill::record::{Manifest, Shard};
use distill::student::prune::{self, Cut, Shape};
use distill::student::{Student, StudentConfig, init};

use crate::common::*;
use crate::export::{llama_logits, load, save_teacher_student, tokens};

/// The training corpus's first windows, as importance calibration.
fn calibration() -> Vec<Vec<u32>> {
    let m = Manifest::read(corpus()).expect("manifest").expect("exists");
    let shard = Shard::read(&corpus().join(&m.shards[0].file)).expect("shard");
    prune::calibration(&shard.tokens, 128)
}

fn candle_logits(
    cfg: &StudentConfig,
    w: &distill::student::io::Weights,
    toks: &[u32],
) -> Vec<Vec<f32>> {
    let s = Student::new(
        cfg,
        VarBuilder::from_tensors(w.clone(), DType::F32, &Device::Cpu),
    )
    .expect("student");
    let ids = Tensor::new(toks, &Device::Cpu)
        .expect("ids")
        .unsqueeze(0)
        .expect("[1, t]");
    s.forward(&ids)
        .expect("forward")
        .squeeze(0)
        .expect("[t, v]")
        .to_vec2()
        .expect("logits")
}

#[test]
fn a_student_cut_in_every_dimension_runs_in_llama_cpp_as_in_candle() {
    let dir = temp_dir("prune-export");
    // Two of three GQA groups (hidden 384), 768 of 1536 MLP channels, 3 of 30 blocks.
    let shape = Shape {
        layers: vec![0, 15, 29],
        hidden: 384,
        kv_groups: 2,
        intermediate: 768,
    };
    let (cfg, w, cut) =
        prune::cut_from_teacher(&teacher(), &shape, &calibration(), true).expect("cut");
    assert_eq!(
        (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads
        ),
        (384, 6, 2)
    );
    assert_eq!(cut.hidden_channels.len(), 384);
    assert_eq!(cut.block_influence.len(), 30);
    // Block 0 turns the embedding into the residual stream: by far the most influential.
    let most = (0..30)
        .max_by(|&a, &b| cut.block_influence[a].total_cmp(&cut.block_influence[b]))
        .expect("blocks");
    assert_eq!(most, 0, "{:?}", cut.block_influence);
    let student = dir.join("student");
    save_teacher_student(&student, &cfg, &w);
    let out = dir.join("cut.f32.gguf");
    distill_ok(&[
        "export",
        "--student",
        student.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--quant",
        "f32",
    ]);
    let model = load(&out);
    assert_eq!((model.n_layer(), model.n_embd()), (3, 384));
    let toks = tokens(&model, "Paris is the capital of France.");
    let (ours, theirs) = (candle_logits(&cfg, &w, &toks), llama_logits(&model, &toks));
    let (mut worst, mut scale, mut same) = (0f32, 0f32, 0usize);
    for (a, b) in ours.iter().zip(&theirs) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
            scale = scale.max(x.abs());
        }
        same += usize::from(distill::teacher::argmax(a) == distill::teacher::argmax(b));
    }
    eprintln!(
        "cut student: llama.cpp vs candle max |dz| {worst} (scale {scale}), top-1 {same}/{}",
        ours.len()
    );
    assert!(worst / scale < 0.01, "{worst} of {scale}");
    assert_eq!(same, ours.len());
}

/// The teacher itself as a candle model (every block), for its final hidden states.
fn teacher_hidden(toks: &[u32]) -> Vec<Vec<f32>> {
    let all: Vec<usize> = (0..30).collect();
    let (cfg, w) = init::from_teacher(&teacher(), &all).expect("teacher");
    let s = Student::new(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu))
        .expect("teacher as a student");
    let ids = Tensor::new(toks, &Device::Cpu)
        .expect("ids")
        .unsqueeze(0)
        .expect("[1, t]");
    s.hidden(&ids)
        .expect("hidden")
        .squeeze(0)
        .expect("[t, h]")
        .to_vec2()
        .expect("rows")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn recorded_hidden_states_are_the_teachers_and_leave_the_top_k_alone() {
    let dir = temp_dir("record-hidden");
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/valid.jsonl");
    let record = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec!["--limit", "3", "--max-new-tokens", "24", "--top-k", "8"];
        args.extend_from_slice(extra);
        distill_ok(&record_args(&prompts, &out, &args));
        let m = Manifest::read(&out).expect("manifest").expect("exists");
        let shard = Shard::read(&out.join(&m.shards[0].file)).expect("shard");
        (m, shard)
    };
    let (plain_m, plain) = record("plain", &[]);
    let (m, hidden) = record("hidden", &["--hidden"]);
    assert_eq!((m.schema_version, m.record.hidden), (2, true));
    assert!(!plain_m.record.hidden && plain.hidden.is_empty());
    assert_eq!(
        (&hidden.tokens, &hidden.topk_ids, &hidden.topk_logprobs),
        (&plain.tokens, &plain.topk_ids, &plain.topk_logprobs),
        "keeping hidden states changes nothing else"
    );
    assert_eq!(hidden.hidden_size, 576);
    let mut row = 0;
    for s in 0..hidden.sequences() {
        let r = hidden.sequence(s);
        let reference = teacher_hidden(&hidden.tokens[r.clone()]);
        for (p, &mask) in hidden.target_mask[r].iter().enumerate() {
            if mask == 1 {
                let stored: Vec<f32> = hidden.hidden[row * 576..(row + 1) * 576]
                    .iter()
                    .map(|x| x.to_f32())
                    .collect();
                let c = cosine(&stored, &reference[p]);
                assert!(c > 0.99, "seq {s} pos {p}: cos {c}");
                row += 1;
            }
        }
    }
    assert_eq!(row, hidden.targets());
    // The format's Python reader checks the new tensor too.
    let totals = read_corpus_py(&dir.join("hidden"));
    assert_eq!(totals["hidden_width"], 576);
    // A hidden-state corpus trains with the cosine term; a plain one says what is missing.
    let student = dir.join("student");
    let corpus = dir.join("hidden").display().to_string();
    let args = |out: &Path, c: &str| {
        vec![
            "train".to_string(),
            "--corpus".into(),
            c.to_string(),
            "--out".into(),
            out.display().to_string(),
            "--init".into(),
            "teacher".into(),
            "--steps".into(),
            "4".into(),
            "--batch".into(),
            "2".into(),
            "--seq-len".into(),
            "32".into(),
            "--hidden-weight".into(),
            "0.5".into(),
            "--quiet".into(),
            "--valid-fraction".into(),
            "0".into(),
        ]
    };
    distill_ok(&args(&student, &corpus));
    assert!(Cut::read(&student).expect("shape.json").is_some());
    let metrics = std::fs::read_to_string(student.join("metrics.jsonl")).expect("metrics");
    let first: serde_json::Value =
        serde_json::from_str(metrics.lines().next().expect("a step")).expect("json");
    let term = first["hidden"].as_f64().expect("hidden term");
    assert!(term > 0.0 && term < 2.0, "{first}");
    let err = distill_err(&args(
        &dir.join("nope"),
        &dir.join("plain").display().to_string(),
    ));
    assert!(err.contains("--hidden"), "{err}");
}
