//! `distill export --format gguf`: students built from the real teacher, written at every
//! quantization, load in llama.cpp, carry the teacher's tokenizer and chat template, and
//! give the candle student's next-token logits.

use std::num::NonZeroU32;
use std::path::Path;

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

pub const ANSWER: &str = "The capital of France is Paris. It is famous for the Eiffel Tower, \
    the Louvre museum, its cafes and its food.";

/// Write a student directory whose train_state.json names the real teacher, with tokenizer
/// fingerprint `fingerprint`.
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
        checkpoint_sha256: None,
        teacher: TeacherId {
            file: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            path: teacher(),
            n_vocab: cfg.vocab_size,
            tokenizer_fingerprint: fingerprint.into(),
        },
        settings: serde_json::Value::Null,
        on_policy: false,
    };
    let json = serde_json::to_vec_pretty(&state).expect("state json");
    std::fs::write(state_path(dir), json).expect("train_state.json");
}

/// A student of the real teacher's tokenizer (any shape), saved in `dir` for export.
pub fn save_teacher_student(dir: &Path, cfg: &StudentConfig, weights: &Weights) {
    let fingerprint = GgufMeta::read(&teacher())
        .expect("meta")
        .tokenizer_fingerprint();
    save_student(dir, cfg, weights, &fingerprint);
}

/// A student made of the teacher's blocks `layers`, saved in `dir`.
fn teacher_student(dir: &Path, layers: &[usize]) -> (StudentConfig, Weights) {
    let (cfg, weights) = init::from_teacher(&teacher(), layers).expect("init");
    let fingerprint = GgufMeta::read(&teacher())
        .expect("meta")
        .tokenizer_fingerprint();
    save_student(dir, &cfg, &weights, &fingerprint);
    (cfg, weights)
}

/// `distill export` of `dir` to `out` (teacher from train_state.json); returns stdout.
pub fn export(dir: &Path, out: &Path, quant: &str) -> String {
    let (dir, out) = (dir.display().to_string(), out.display().to_string());
    distill_ok(&["export", "--student", &dir, "--out", &out, "--quant", quant])
}

pub fn load(path: &Path) -> LlamaModel {
    let backend = distill::teacher::llama::backend().expect("backend");
    LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .expect("llama.cpp loads the export")
}

/// A chat prompt rendered by the model's own template, then `answer`, in llama.cpp tokens.
pub fn tokens(model: &LlamaModel, answer: &str) -> Vec<u32> {
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
    let toks = model.vocab().tokenize(text.as_bytes(), true, true);
    toks.into_iter().map(|t| t.0 as u32).collect()
}

/// A llama.cpp context and a batch holding `toks`, logits requested where `logits(i)`.
pub fn decode<'m>(
    model: &'m LlamaModel,
    toks: &[u32],
    logits: impl Fn(usize) -> bool,
) -> Decoded<'m> {
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
        let tok = LlamaToken(t as i32);
        batch.add(tok, i as i32, &[0], logits(i)).expect("add");
    }
    ctx.decode(&mut batch).expect("decode");
    (ctx, batch)
}

pub type Decoded<'m> = (llama_cpp_2::context::LlamaContext<'m>, LlamaBatch<'static>);

/// llama.cpp's logits at every position of `toks`, [t][vocab].
pub fn llama_logits(model: &LlamaModel, toks: &[u32]) -> Vec<Vec<f32>> {
    let (ctx, _batch) = decode(model, toks, |_| true);
    (0..toks.len())
        .map(|i| ctx.get_logits_ith(i as i32).to_vec())
        .collect()
}

/// llama.cpp's greedy continuation of `toks`, `n` tokens, as text.
fn llama_generate(model: &LlamaModel, toks: &[u32], n: usize) -> String {
    let (mut ctx, mut batch) = decode(model, toks, |i| i + 1 == toks.len());
    let mut text = Vec::new();
    for pos in toks.len()..toks.len() + n {
        let next = LlamaToken(argmax(ctx.get_logits_ith(batch.n_tokens() - 1)) as i32);
        text.extend(model.vocab().token_to_piece(next, true, None));
        batch.clear();
        batch.add(next, pos as i32, &[0], true).expect("add");
        ctx.decode(&mut batch).expect("decode");
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The candle student's logits at every position of `toks`, [t][vocab].
pub fn candle_logits(cfg: &StudentConfig, weights: &Weights, toks: &[u32]) -> Vec<Vec<f32>> {
    let vb = VarBuilder::from_tensors(weights.clone(), DType::F32, &Device::Cpu);
    let student = Student::new(cfg, vb).expect("candle student");
    let ids = Tensor::new(toks, &Device::Cpu).expect("ids").unsqueeze(0);
    let logits = student.forward(&ids.expect("[1, t]")).expect("forward");
    logits
        .squeeze(0)
        .expect("[t, vocab]")
        .to_vec2()
        .expect("logits")
}

pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

/// How far two [t][vocab] logit tables are apart.
#[derive(Debug)]
pub struct Diff {
    /// Largest |a - b| relative to the largest |a| (the logit scale).
    pub rel_max: f32,
    /// Mean |a - b|.
    pub mean: f32,
    /// Share of positions with the same argmax.
    pub top1: f32,
}

pub fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> Diff {
    let (mut max, mut scale, mut sum, mut n, mut same) = (0f32, 0f32, 0f64, 0usize, 0usize);
    for (ra, rb) in a.iter().zip(b) {
        for (x, y) in ra.iter().zip(rb) {
            max = max.max((x - y).abs());
            scale = scale.max(x.abs());
            sum += f64::from((x - y).abs());
            n += 1;
        }
        same += usize::from(argmax(ra) == argmax(rb));
    }
    let mean = (sum / n as f64) as f32;
    let top1 = same as f32 / a.len() as f32;
    Diff {
        rel_max: max / scale,
        mean,
        top1,
    }
}

/// Measured on the 4-layer student below (65 positions, logit scale ~33, x86-64 AVX2):
///
/// | quant | size    | llama.cpp vs stored weights    | llama.cpp vs f32 student |
/// |-------|---------|--------------------------------|--------------------------|
/// | f32   | 172 MB  | rel max 0.0013, mean 0.005, 1.00 | same                   |
/// | f16   |  87 MB  | rel max 0.0026, mean 0.012, 1.00 | mean 0.016, 1.00       |
/// | q8_0  |  47 MB  | rel max 0.11, mean 0.42, 0.85  | mean 0.59, 0.80          |
/// | q4_0  |  26 MB  | rel max 0.10, mean 0.40, 0.89  | mean 4.47, 0.15          |
///
/// "Stored weights" is the candle student rebuilt from the GGUF itself, so the middle
/// column is llama.cpp's arithmetic alone: its KV cache is f16, and with q8_0/q4_0 weights it
/// also quantizes activations to 8 bits. This layer-skipping student is far more sensitive to
/// quantization than the full model (next test), hence the low right-hand column. A block
/// layout that ggml reads differently from candle would show in the middle column; a wrong
/// Q/K permutation (the read-back undoes whatever was done) shows against the f32 student:
/// with it disabled, f32 top-1 fell to 0.06, mean 4.8. The bounds leave about 2x margin.
fn check_against_stored(quant: &str, d: &Diff) {
    let (rel_max, mean, top1) = match quant {
        "f32" => (0.01, 0.02, 0.95),
        "f16" => (0.02, 0.05, 0.95),
        _ => (0.25, 1.0, 0.7),
    };
    assert!(
        d.rel_max < rel_max && d.mean < mean && d.top1 >= top1,
        "{quant}: {d:?}"
    );
}

#[test]
fn gguf_export_runs_in_llama_cpp_and_matches_candle_at_every_quantization() {
    let root = temp_dir("export-quant");
    let dir = root.join("student");
    let (cfg, weights) = teacher_student(&dir, &[0, 10, 20, 29]);
    let mut toks = Vec::new();
    let mut reference = Vec::new();
    for quant in ["f32", "f16", "q8_0", "q4_0"] {
        let out = root.join(format!("student-{quant}.gguf"));
        assert!(export(&dir, &out, quant).contains("wrote"));
        assert!(!root.join(format!("student-{quant}.gguf.tmp")).exists());
        let model = load(&out);
        assert_eq!(model.n_layer(), 4);
        if toks.is_empty() {
            // Teacher-forced: prompt and response positions are both compared.
            toks = tokens(&model, ANSWER);
            reference = candle_logits(&cfg, &weights, &toks);
        }
        // The GGUF read back by candle: dequantized, Q/K unpermuted, as llama.cpp sees it.
        let (scfg, stored) = init::from_teacher(&out, &[0, 1, 2, 3]).expect("read back");
        assert_eq!(
            (scfg.hidden_size, scfg.vocab_size),
            (cfg.hidden_size, cfg.vocab_size)
        );
        let ours = candle_logits(&scfg, &stored, &toks);
        let theirs = llama_logits(&model, &toks);
        let (vs_stored, vs_f32) = (compare(&ours, &theirs), compare(&reference, &theirs));
        let size = std::fs::metadata(&out).expect("size").len();
        eprintln!(
            "export {quant}: {size} bytes; llama.cpp vs stored {vs_stored:?}, vs f32 {vs_f32:?}"
        );
        check_against_stored(quant, &vs_stored);
        match quant {
            "f32" => assert_eq!(compare(&reference, &ours).rel_max, 0.0, "exact round trip"),
            "f16" => assert!(vs_f32.mean < 0.05 && vs_f32.top1 >= 0.95, "{vs_f32:?}"),
            _ => {}
        }
    }
    std::fs::remove_dir_all(&root).ok(); // ~330 MB
}

/// The whole teacher (all 30 blocks, dequantized from Q4_1) exported again: a model that
/// writes sensible text. Measured: q8_0 145 MB, top-1 agreement with the f32 candle model
/// 0.985, mean |dlogit| 0.30; q4_0 78 MB, 0.69 and 3.2 (re-quantizing Q4_1 weights to the
/// coarser, symmetric Q4_0 grid costs ~9% relative weight error). The bounds leave margin.
#[test]
fn gguf_export_of_a_sane_model_keeps_tokenizer_template_and_answers() {
    let root = temp_dir("export-full");
    let dir = root.join("student");
    let (cfg, weights) = teacher_student(&dir, &(0..30).collect::<Vec<_>>());
    let read = |p: &Path| {
        let mut f = std::fs::File::open(p).expect("open");
        gguf_file::Content::read(&mut f).expect("gguf")
    };
    let theirs = read(&teacher());
    for (quant, min_top1) in [("q8_0", 0.9), ("q4_0", 0.55)] {
        let out = root.join(format!("student-{quant}.gguf"));
        export(&dir, &out, quant);
        let ours = read(&out);
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
        let model = load(&out);
        let toks = tokens(&model, ANSWER);
        let d = compare(
            &candle_logits(&cfg, &weights, &toks),
            &llama_logits(&model, &toks),
        );
        let text = llama_generate(&model, &tokens(&model, ""), 8);
        eprintln!("full model {quant}: {d:?}, generates {text:?}");
        assert!(d.top1 >= min_top1, "{quant}: {d:?}");
        if quant == "q8_0" {
            assert!(text.contains("Paris"), "{text:?}");
        }
    }
    std::fs::remove_dir_all(&root).ok(); // ~800 MB
}

#[test]
fn export_refuses_a_teacher_with_another_tokenizer_and_non_students() {
    let root = temp_dir("export-refuse");
    let dir = root.join("student");
    let cfg = StudentConfig::tiny_test();
    let weights = io::random_weights(&cfg, 7).expect("weights");
    let out = root.join("out.gguf");
    let (d, o, t) = (
        dir.display().to_string(),
        out.display().to_string(),
        teacher().display().to_string(),
    );
    save_student(&dir, &cfg, &weights, "0123456789abcdef-not-the-teacher");
    let err = distill_err(&["export", "--student", &d, "--out", &o]);
    assert!(
        err.contains("tokenizer") && err.contains("0123456789ab"),
        "{err}"
    );
    // Without train_state.json: no recorded teacher, then the vocabulary check.
    std::fs::remove_file(state_path(&dir)).expect("rm state");
    let err = distill_err(&["export", "--student", &d, "--out", &o]);
    assert!(err.contains("--teacher"), "{err}");
    let err = distill_err(&["export", "--student", &d, "--out", &o, "--teacher", &t]);
    assert!(
        err.contains("'49152' tokens") && err.contains("'64'"),
        "{err}"
    );
    let empty = root.join("empty").display().to_string();
    let err = distill_err(&["export", "--student", &empty, "--out", &o, "--teacher", &t]);
    assert!(err.contains("not a student directory"), "{err}");
    assert!(!out.exists());
}
