//! Checkpoints: weights, optimizer moments and the run's position, committed by one atomic
//! write of `train_state.json`.
//!
//! Tensors go to `checkpoint/step-NNNNNN.{model,optim}.safetensors` first; only then does
//! `train_state.json` name that step. A run killed at any moment leaves the state file
//! pointing at complete files. The top-level `model.safetensors` (the Hugging Face
//! directory's weights) is refreshed after each commit.

use std::path::{Path, PathBuf};

use candle_core::Var;
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use super::trainer::TrainRun;
use crate::record::write_atomic;
use crate::student::io::{self, Weights};
use crate::{Error, Result};

/// The teacher identity a student was trained against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherId {
    /// Teacher GGUF file name.
    pub file: String,
    /// Where the teacher GGUF was when the corpus was recorded.
    #[serde(default)]
    pub path: PathBuf,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Tokenizer fingerprint (see `GgufMeta::tokenizer_fingerprint`).
    pub tokenizer_fingerprint: String,
}

/// Everything needed to continue a run as if it never stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps done.
    pub step: usize,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Index of the next window in that epoch's order.
    pub cursor: usize,
    /// Lines of `metrics.jsonl` written up to `step`.
    pub metrics_lines: usize,
    /// Best validation loss seen.
    pub best_valid: Option<f64>,
    /// Seconds of training so far.
    pub elapsed: f64,
    /// Directory-relative stem of the checkpoint files.
    pub checkpoint: String,
    /// sha256 of the checkpoint's weights and moments files, checked on resume (absent in
    /// states written before checkpoints carried them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_sha256: Option<CheckpointHashes>,
    /// Teacher the corpus came from.
    pub teacher: TeacherId,
    /// The run's settings, as JSON (compared on resume).
    pub settings: serde_json::Value,
    /// Whether the on-policy phase has begun (its data is `on_policy.safetensors`, and
    /// `epoch`/`cursor` count its windows).
    #[serde(default)]
    pub on_policy: bool,
}

/// sha256 of the two files of one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointHashes {
    /// `<stem>.model.safetensors`.
    pub model: String,
    /// `<stem>.optim.safetensors`.
    pub optim: String,
}

/// Path of the state file in a student directory.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("train_state.json")
}

impl TrainState {
    /// Read `dir/train_state.json`, `Ok(None)` if absent.
    ///
    /// # Errors
    /// [`Error::Json`] when damaged.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        match std::fs::read(state_path(dir)) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(state_path(dir), e)),
        }
    }
}

/// Save weights and moments, then commit `state`, then drop older checkpoint files.
///
/// # Errors
/// [`Error::Io`] (a full disk included): the previous checkpoint then stays valid.
pub fn save(dir: &Path, weights: &Weights, opt: &AdamW, state: &mut TrainState) -> Result<()> {
    let ck = dir.join("checkpoint");
    std::fs::create_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
    let stem = format!("checkpoint/step-{:06}", state.step);
    let model = io::save_tensors_hashed(&dir.join(format!("{stem}.model.safetensors")), weights)?;
    let mut moments = Weights::new();
    for (name, m) in &opt.m {
        moments.insert(format!("m.{name}"), m.clone());
    }
    for (name, v) in &opt.v {
        moments.insert(format!("v.{name}"), v.clone());
    }
    moments.insert(
        "t".into(),
        candle_core::Tensor::new(&[opt.t as f32], &candle_core::Device::Cpu)?,
    );
    let optim = io::save_tensors_hashed(&dir.join(format!("{stem}.optim.safetensors")), &moments)?;
    state.checkpoint = stem.clone();
    state.checkpoint_sha256 = Some(CheckpointHashes { model, optim });
    let mut bytes = serde_json::to_vec_pretty(state)?;
    bytes.push(b'\n');
    write_atomic(&state_path(dir), &bytes)?;
    io::save_tensors(&dir.join("model.safetensors"), weights)?;
    for entry in std::fs::read_dir(&ck)
        .map_err(|e| Error::io(&ck, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&stem["checkpoint/".len()..]) {
            std::fs::remove_file(entry.path()).ok();
        }
    }
    Ok(())
}

/// Load the weights named by `state` into `vars` (every variable, frozen ones included) and
/// the moments into `opt`.
///
/// # Errors
/// Missing or damaged checkpoint files.
pub fn load(dir: &Path, state: &TrainState, vars: &[(String, Var)], opt: &mut AdamW) -> Result<()> {
    let file = |kind: &str| dir.join(format!("{}.{kind}.safetensors", state.checkpoint));
    let (weights, moments) = match &state.checkpoint_sha256 {
        Some(h) => (
            io::load_tensors_checked(&file("model"), &h.model)?,
            io::load_tensors_checked(&file("optim"), &h.optim)?,
        ),
        None => (
            io::load_tensors(&file("model"))?,
            io::load_tensors(&file("optim"))?,
        ),
    };
    let missing =
        |n: &str| Error::Invalid(format!("checkpoint '{}' lacks '{n}'", state.checkpoint));
    for (name, var) in vars {
        var.set(weights.get(name).ok_or_else(|| missing(name))?)?;
    }
    let names: Vec<String> = opt.vars().iter().map(|(n, _)| n.clone()).collect();
    for name in names {
        let m = moments
            .get(&format!("m.{name}"))
            .ok_or_else(|| missing(&name))?
            .clone();
        let v = moments
            .get(&format!("v.{name}"))
            .ok_or_else(|| missing(&name))?
            .clone();
        opt.m.insert(name.clone(), m);
        opt.v.insert(name, v);
    }
    let t = moments
        .get("t")
        .ok_or_else(|| missing("t"))?
        .to_vec1::<f32>()?;
    opt.t = t.first().copied().unwrap_or(0.0) as u64;
    Ok(())
}

/// A fresh state, or the saved one (weights of all `vars` and moments loaded) when resuming.
pub(super) fn start_state(
    run: &TrainRun<'_>,
    vars: &[(String, Var)],
    opt: &mut AdamW,
) -> Result<TrainState> {
    let teacher = TeacherId {
        file: run.data.manifest.teacher.file.clone(),
        path: run.data.manifest.teacher.path.clone(),
        n_vocab: run.data.manifest.teacher.n_vocab,
        tokenizer_fingerprint: run.data.manifest.teacher.tokenizer_fingerprint.clone(),
    };
    let settings = serde_json::to_value(run.settings)?;
    if !run.resume {
        return Ok(TrainState {
            step: 0,
            epoch: 0,
            cursor: 0,
            metrics_lines: 0,
            best_valid: None,
            elapsed: 0.0,
            checkpoint: String::new(),
            checkpoint_sha256: None,
            teacher,
            settings,
            on_policy: false,
        });
    }
    let state = TrainState::read(run.out)?.ok_or_else(|| {
        Error::Invalid(format!(
            "--resume: '{}' has no train_state.json; start without --resume",
            run.out.display()
        ))
    })?;
    if state.teacher.tokenizer_fingerprint != teacher.tokenizer_fingerprint
        || state.teacher.n_vocab != teacher.n_vocab
    {
        return Err(Error::Invalid(format!(
            "the student was trained on a corpus of teacher '{}' (vocab {}), this corpus comes from '{}' (vocab {}): tokenizers differ",
            state.teacher.file, state.teacher.n_vocab, teacher.file, teacher.n_vocab
        )));
    }
    let mut same = state.settings.clone();
    if let (Some(a), Some(b)) = (same.as_object_mut(), settings.as_object()) {
        // The step budget may grow on resume, and the on-policy share change while its
        // phase is still ahead (both only move the switch); everything else must match.
        a.insert("steps".into(), b.get("steps").cloned().unwrap_or_default());
        if !state.on_policy {
            a.insert(
                "on_policy".into(),
                b.get("on_policy").cloned().unwrap_or_default(),
            );
        }
        // Runs from before the option trained their embeddings.
        a.entry("freeze_embeddings").or_insert(false.into());
        // ... and had no hidden-state term, no on-policy phase, and attended across the
        // sequences of a window.
        a.entry("hidden_weight").or_insert(0.0.into());
        a.entry("on_policy").or_insert(0.0.into());
        a.entry("cross_attention").or_insert(true.into());
    }
    if same != settings {
        return Err(Error::Invalid(format!(
            "--resume with other settings than the run in '{}': was {}, now {}",
            run.out.display(),
            state.settings,
            settings
        )));
    }
    load(run.out, &state, vars, opt)?;
    Ok(state)
}
