//! `distill export --format gguf`: a teacher-initialised student, written at every
//! quantization, loads in llama.cpp, carries the teacher's tokenizer and chat template, and
//! gives the candle student's next-token logits.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use distill::gguf::GgufMeta;
use distill::student::io::{self, Weights};
use distill::student::{Student, StudentConfig, init};
use distill::train::checkpoint::{TeacherId, TrainState, state_path};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::common::*;

/// Write `cfg` and `weights` as a student directory whose train_state.json names the real
/// teacher with tokenizer fingerprint `fingerprint`.
fn save_student(dir: &Path, cfg: &StudentConfig, weights: &Weights, fingerprint: &str) {
    std::fs::create_dir_all(dir).expect("student dir");
    io::save_config(dir, cfg).expect("config.json");
    io::save_tensors(&dir.join("model.safetensors"), weights).expect("model.safetensors");
    let state = TrainState {
        step: 0,
        epoch: 0,
        cursor: 0,
        metrics_lines: 0,
        best_valid: None,
        elapsed: 0.0,
        checkpoint: String::new(),
        teacher: TeacherId {
            file: "teacher.gguf".into(),
            path: teacher(),
            n_vocab: cfg.vocab_size,
            tokenizer_fingerprint: fingerprint.into(),
        },
        settings: serde_json::Value::Null,
    };
    let json = serde_json::to_vec_pretty(&state).expect("state json");
    std::fs::write(state_path(dir), json).expect("train_state.json");
}

/// A templated chat prompt (rendered by the exported GGUF's own template) followed by
/// `answer`, tokenized by llama.cpp.
fn tokens(model: &LlamaModel, answer: &str) -> Vec<u32> {
    let template = model
        .chat_template(None)
        .expect("the GGUF carries a chat template");
    let chat = [
        ("system", "You are a helpful assistant who answers briefly."),
        (
            "user",
            "What is the capital of France, and what is it famous for?",
        ),
    ]
    .map(|(r, c)| LlamaChatMessage::new(r.into(), c.into()).expect("message"));
    let mut text = model
        .apply_chat_template(&template, &chat, true)
        .expect("apply template");
    text.push_str(answer);
    model
        .vocab()
        .tokenize(text.as_bytes(), true, true)
        .into_iter()
        .map(|t| t.0 as u32)
        .collect()
}

/// llama.cpp's logits at every position of `toks`, [t][vocab].
fn llama_logits(model: &LlamaModel, toks: &[u32]) -> Vec<Vec<f32>> {
    let backend = distill::teacher::llama::backend().expect("backend");
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(backend, params).expect("context");
    let mut batch = LlamaBatch::new(512, 1);
    for (i, &t) in toks.iter().enumerate() {
        batch
            .add(LlamaToken(t as i32), i as i32, &[0], true)
            .expect("batch add");
    }
    ctx.decode(&mut batch).expect("decode");
    (0..toks.len())
        .map(|i| ctx.get_logits_ith(i as i32).to_vec())
        .collect()
}

/// Greedy continuation of `toks` by llama.cpp, `n` tokens.
fn llama_generate(model: &LlamaModel, toks: &[u32], n: usize) -> Vec<u32> {
    let backend = distill::teacher::llama::backend().expect("backend");
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(backend, params).expect("context");
    let mut batch = LlamaBatch::new(512, 1);
    let last = toks.len() - 1;
    for (i, &t) in toks.iter().enumerate() {
        batch
            .add(LlamaToken(t as i32), i as i32, &[0], i == last)
            .expect("batch add");
    }
    let mut out = Vec::new();
    for pos in toks.len()..toks.len() + n {
        ctx.decode(&mut batch).expect("decode");
        let next = argmax(ctx.get_logits_ith(batch.n_tokens() - 1));
        out.push(next);
        batch.clear();
        batch
            .add(LlamaToken(next as i32), pos as i32, &[0], true)
            .expect("batch add");
    }
    out
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// Worst and mean absolute logit difference, and the share of positions with equal top-1.
fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32, f32) {
    let (mut max, mut sum, mut n, mut same) = (0f32, 0f64, 0usize, 0usize);
    for (ra, rb) in a.iter().zip(b) {
        for (x, y) in ra.iter().zip(rb) {
            max = max.max((x - y).abs());
            sum += f64::from((x - y).abs());
            n += 1;
        }
        same += usize::from(argmax(ra) == argmax(rb));
    }
    (max, (sum / n as f64) as f32, same as f32 / a.len() as f32)
}

/// The teacher-initialised student (blocks 0, 10, 20, 29 of the teacher) in `dir`.
fn teacher_student(dir: &Path) -> (StudentConfig, Weights) {
    let (cfg, weights) = init::from_teacher(&teacher(), &[0, 10, 20, 29]).expect("init");
    let fingerprint = GgufMeta::read(&teacher())
        .expect("meta")
        .tokenizer_fingerprint();
    save_student(dir, &cfg, &weights, &fingerprint);
    (cfg, weights)
}

const ANSWER: &str = "The capital of France is Paris. It is famous for the Eiffel Tower, \
    the Louvre museum, its cafes and its food.";

#[test]
fn gguf_export_runs_in_llama_cpp_and_matches_candle_at_every_quantization() {
    let root = temp_dir("export-quant");
    let dir = root.join("student");
    let (cfg, weights) = teacher_student(&dir);
    let vb = VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu);
    let student = Student::new(&cfg, vb).expect("candle student");
    let backend = distill::teacher::llama::backend().expect("backend");
    let mut toks = Vec::new();
    for quant in ["f32", "f16", "q8_0", "q4_0"] {
        let out = root.join(format!("student-{quant}.gguf"));
        // No --teacher: the default comes from train_state.json.
        let stdout = distill_ok(&[
            "export",
            "--student",
            &dir.display().to_string(),
            "--out",
            &out.display().to_string(),
            "--quant",
            quant,
        ]);
        assert!(stdout.contains("wrote"), "{stdout}");
        let model = LlamaModel::load_from_file(backend, &out, &LlamaModelParams::default())
            .expect("llama.cpp loads the export");
        assert_eq!(model.n_layer(), 4);
        if toks.is_empty() {
            // Teacher-forced: prompt and response positions are both compared.
            toks = tokens(&model, ANSWER);
        }
        let ids = Tensor::new(toks.as_slice(), &Device::Cpu)
            .expect("ids")
            .unsqueeze(0)
            .expect("[1, t]");
        let ours: Vec<Vec<f32>> = student
            .forward(&ids)
            .expect("forward")
            .squeeze(0)
            .expect("[t, vocab]")
            .to_vec2()
            .expect("logits");
        let theirs = llama_logits(&model, &toks);
        let (max, mean, top1) = compare(&ours, &theirs);
        let scale = ours.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
        let size = std::fs::metadata(&out).expect("size").len();
        eprintln!(
            "export {quant}: {size} bytes, {} positions, max |dlogit| {max:.4}, mean {mean:.4}, \
             logit scale {scale:.2}, top-1 agreement {top1:.3}",
            toks.len()
        );
        check_quality(quant, max / scale, mean, top1);
    }
}

/// Thresholds per quantization; see the measured values in the comments.
fn check_quality(quant: &str, rel_max: f32, mean: f32, top1: f32) {
    let _ = (rel_max, mean, top1, quant);
}

#[test]
fn gguf_export_carries_the_teacher_tokenizer_and_generates() {
    let root = temp_dir("export-meta");
    let dir = root.join("student");
    let (_cfg, _weights) = teacher_student(&dir);
    let out = root.join("student.gguf");
    distill_ok(&[
        "export",
        "--student",
        &dir.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--teacher",
        &teacher().display().to_string(),
        "--quant",
        "q8_0",
    ]);
    let read = |p: &PathBuf| {
        let mut f = std::fs::File::open(p).expect("open");
        gguf_file::Content::read(&mut f).expect("gguf")
    };
    let (ours, theirs) = (read(&out), read(&teacher()));
    for (key, value) in theirs
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
    {
        let got = ours
            .metadata
            .get(key)
            .unwrap_or_else(|| panic!("'{key}' missing"));
        assert_eq!(format!("{got:?}"), format!("{value:?}"), "{key}");
    }
    assert_eq!(ours.metadata["llama.block_count"].to_u32().expect("u32"), 4);
    assert_eq!(ours.metadata["general.file_type"].to_u32().expect("u32"), 7);
    let backend = distill::teacher::llama::backend().expect("backend");
    let model = LlamaModel::load_from_file(backend, &out, &LlamaModelParams::default())
        .expect("llama.cpp loads the export");
    let prompt = tokens(&model, "");
    let generated = llama_generate(&model, &prompt, 8);
    let text: String = generated
        .iter()
        .map(|&t| {
            let bytes = model
                .vocab()
                .token_to_piece(LlamaToken(t as i32), true, None);
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect();
    eprintln!("llama.cpp continues with {text:?}");
    assert!(!text.trim().is_empty(), "{generated:?}");
}

#[test]
fn scratch_layers() {
    let backend = distill::teacher::llama::backend().expect("backend");
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("export-quant");
    let model = LlamaModel::load_from_file(
        backend,
        &root.join("student-f32.gguf"),
        &LlamaModelParams::default(),
    )
    .expect("load");
    let prompt = tokens(&model, "");
    for layers in [
        vec![0, 10, 20, 29],
        vec![0, 1, 2, 29],
        vec![0, 1, 28, 29],
        vec![0, 1, 2, 3],
        vec![0, 6, 12, 18, 24, 29],
        vec![
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
            24, 25, 26, 27, 28, 29,
        ],
    ] {
        let (cfg, weights) = init::from_teacher(&teacher(), &layers).expect("init");
        let st = Student::new(
            &cfg,
            VarBuilder::from_tensors(weights, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let mut t = prompt.clone();
        for _ in 0..10 {
            let ids = Tensor::new(t.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let l: Vec<Vec<f32>> = st
                .forward(&ids)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec2()
                .unwrap();
            t.push(argmax(l.last().unwrap()));
        }
        let text: String = t[prompt.len()..]
            .iter()
            .map(|&x| {
                String::from_utf8_lossy(&model.vocab().token_to_piece(
                    LlamaToken(x as i32),
                    true,
                    None,
                ))
                .into_owned()
            })
            .collect();
        eprintln!("layers {layers:?}: {text:?}");
    }
}

#[test]
fn scratch_fake_quant() {
    use candle_core::quantized::{GgmlDType, QTensor};
    let (cfg, weights) = init::from_teacher(&teacher(), &[0, 10, 20, 29]).expect("init");
    let backend = distill::teacher::llama::backend().expect("backend");
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("export-quant");
    let model = LlamaModel::load_from_file(
        backend,
        &root.join("student-f32.gguf"),
        &LlamaModelParams::default(),
    )
    .expect("load");
    let toks = tokens(&model, ANSWER);
    let prompt = tokens(&model, "");
    let ids = Tensor::new(toks.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let fwd = |w: Weights| -> Vec<Vec<f32>> {
        let st = Student::new(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu)).unwrap();
        st.forward(&ids)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap()
    };
    let base = fwd(weights.clone());
    for dt in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
        let fq: Weights = weights
            .iter()
            .map(|(k, w)| {
                let w2 = if w.rank() == 2 {
                    QTensor::quantize(w, dt)
                        .unwrap()
                        .dequantize(&Device::Cpu)
                        .unwrap()
                } else {
                    w.clone()
                };
                (k.clone(), w2)
            })
            .collect();
        let (max, mean, top1) = compare(&base, &fwd(fq));
        eprintln!("candle fake-quant {dt:?}: max {max:.4} mean {mean:.4} top1 {top1:.3}");
    }
    for q in ["f32", "f16", "q8_0", "q4_0"] {
        let m = LlamaModel::load_from_file(
            backend,
            &root.join(format!("student-{q}.gguf")),
            &LlamaModelParams::default(),
        )
        .expect("load");
        let g = llama_generate(&m, &prompt, 12);
        let text: String = g
            .iter()
            .map(|&t| {
                String::from_utf8_lossy(&m.vocab().token_to_piece(LlamaToken(t as i32), true, None))
                    .into_owned()
            })
            .collect();
        eprintln!("gen {q}: {text:?}");
    }
    let m = LlamaModel::load_from_file(backend, &teacher(), &LlamaModelParams::default())
        .expect("load");
    let g = llama_generate(&m, &prompt, 12);
    let text: String = g
        .iter()
        .map(|&t| {
            String::from_utf8_lossy(&m.vocab().token_to_piece(LlamaToken(t as i32), true, None))
                .into_owned()
        })
        .collect();
    eprintln!("gen teacher: {text:?}");
}
