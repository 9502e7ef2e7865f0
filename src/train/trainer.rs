//! The training loop: student, AdamW, schedule, validation, checkpoints, in one function
//! that reads top to bottom (candle's `llama2-c/training.rs`, nanoGPT's `train.py`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, TeacherId, TrainState};
use super::data::{self, Splits, Stream};
use super::loss::{Divergence, LossConfig, LossStats, kd_loss};
use super::optim::{AdamW, AdamWParams};
use super::schedule::{Schedule, lr_at};
use crate::student::io::{self, Weights};
use crate::student::{Student, StudentConfig};
use crate::{Error, Result};

/// Settings of a training run (stored in `train_state.json`; a resume must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    /// Weight of hard-label cross-entropy (1 = no distillation, 0 = pure distillation).
    pub alpha: f32,
    /// Distillation temperature.
    pub temperature: f32,
    /// `fkl`, `rkl` or `jsd`.
    pub loss: String,
    /// JSD mixing weight.
    pub jsd_beta: f32,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Schedule after warm-up.
    pub schedule: Schedule,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    pub grad_clip: f64,
    /// Windows per micro-batch.
    pub batch: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Optimizer steps in total.
    pub steps: usize,
    /// Held-out share of the corpus (when no validation corpus is given).
    pub valid_fraction: f64,
    /// Validate every this many steps (0 = only at the end).
    pub eval_every: usize,
    /// Checkpoint every this many steps (0 = only at the end).
    pub save_every: usize,
    /// Seed of data order and initialisation.
    pub seed: u64,
}

impl TrainSettings {
    /// The loss configuration.
    ///
    /// # Errors
    /// An unknown loss name.
    pub fn loss_config(&self) -> Result<LossConfig> {
        let divergence = match self.loss.as_str() {
            "fkl" => Divergence::Fkl,
            "rkl" => Divergence::Rkl,
            "jsd" => Divergence::Jsd {
                beta: self.jsd_beta,
            },
            other => {
                return Err(Error::Invalid(format!(
                    "unknown --loss '{other}': use fkl, rkl or jsd"
                )));
            }
        };
        Ok(LossConfig {
            alpha: self.alpha,
            temperature: self.temperature,
            divergence,
            chunk_rows: 256,
        })
    }
}

/// What happens during training, for a progress display.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// The run starts (or resumes) at `step` of `steps`.
    Started {
        /// First step of this run.
        step: usize,
        /// Last step.
        steps: usize,
        /// Student parameters.
        params: usize,
        /// Training windows and targets.
        windows: usize,
    },
    /// An optimizer step finished.
    Step(StepMetrics),
    /// A validation pass finished.
    Valid(ValidMetrics),
    /// A checkpoint was committed.
    Saved {
        /// Its step.
        step: usize,
    },
}

/// Figures of one optimizer step (a line of `metrics.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Step number (1-based).
    pub step: usize,
    /// Mixed loss.
    pub loss: f64,
    /// Hard-label cross-entropy.
    pub ce: f64,
    /// Divergence to the teacher (unscaled).
    pub kd: f64,
    /// Share of targets where the student's top-1 is the teacher's.
    pub top1: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens per second of this step.
    pub tok_s: f64,
    /// Seconds since the run began.
    pub elapsed: f64,
}

/// Figures of a validation pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidMetrics {
    /// Step it ran after.
    pub step: usize,
    /// Cross-entropy on the held-out targets.
    pub valid_ce: f64,
    /// KL(teacher top-k || student) at temperature 1.
    pub valid_kl: f64,
    /// Top-1 agreement with the teacher.
    pub valid_top1: f64,
}

/// A run: where, from what, how.
pub struct TrainRun<'a> {
    /// Student directory.
    pub out: &'a Path,
    /// Training (and maybe validation) data.
    pub data: &'a Splits,
    /// Separate validation data, overriding the held-out split.
    pub valid: Option<&'a Stream>,
    /// Student sizes.
    pub config: &'a StudentConfig,
    /// Initial weights (ignored when resuming).
    pub init: Weights,
    /// Settings.
    pub settings: &'a TrainSettings,
    /// Stop after this many minutes (checkpointing first).
    pub minutes: Option<f64>,
    /// Continue from `train_state.json`.
    pub resume: bool,
}

/// Train, reporting through `on`; returns the final state.
///
/// # Errors
/// NaN/inf loss (the last good checkpoint is kept), I/O, tensor errors.
pub fn train(run: TrainRun<'_>, on: &mut dyn FnMut(TrainEvent)) -> Result<TrainState> {
    let s = run.settings;
    let vm = io::var_map(&run.init)?;
    let student = Student::new(
        run.config,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    let vars = vm
        .data()
        .lock()
        .map_err(|_| Error::Invalid("poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(
        vars,
        AdamWParams {
            weight_decay: s.weight_decay,
            ..Default::default()
        },
    )?;
    let mut state = start_state(&run, &mut opt)?;
    let loss_cfg = s.loss_config()?;
    let train = &run.data.train;
    let windows = train.windows(s.seq_len);
    let mut metrics = metrics_file(run.out, state.metrics_lines)?;
    on(TrainEvent::Started {
        step: state.step,
        steps: s.steps,
        params: run.config.n_params(),
        windows,
    });
    let clock = Instant::now();
    let base = state.elapsed;
    let mut order = data::epoch_order(windows, s.seed, state.epoch);
    while state.step < s.steps {
        let t0 = Instant::now();
        let lr = lr_at(state.step, s.steps, s.lr, s.warmup, s.schedule);
        let mut grads: Option<Vec<Tensor>> = None;
        let mut agg = LossStats::default();
        let mut loss_sum = 0.0;
        let mut tokens = 0;
        for _ in 0..s.grad_accum {
            let ws = next_windows(&mut order, &mut state, windows, s);
            let (loss, stats) = step_loss(&student, train, &ws, s.seq_len, &loss_cfg)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(Error::Invalid(format!(
                    "loss became {value} at step {}; the last good checkpoint ('{}') is kept in '{}'; lower --lr (now {}) or set --grad-clip",
                    state.step + 1,
                    state.checkpoint,
                    run.out.display(),
                    s.lr
                )));
            }
            let g = opt.collect(&loss.backward()?)?;
            grads = Some(match grads {
                None => g,
                Some(acc) => acc
                    .iter()
                    .zip(&g)
                    .map(|(a, b)| a + b)
                    .collect::<candle_core::Result<_>>()?,
            });
            loss_sum += value;
            tokens += ws.len() * s.seq_len;
            agg.add(&stats);
        }
        let grads =
            grads.ok_or_else(|| Error::Invalid("--grad-accum must be at least 1".into()))?;
        let norm = AdamW::grad_norm(&grads)? / s.grad_accum as f64;
        let clip = if s.grad_clip > 0.0 && norm > s.grad_clip {
            s.grad_clip / norm
        } else {
            1.0
        };
        opt.step(&grads, lr, clip / s.grad_accum as f64)?;
        state.step += 1;
        state.elapsed = base + clock.elapsed().as_secs_f64();
        let m = StepMetrics {
            step: state.step,
            loss: loss_sum / s.grad_accum as f64,
            ce: agg.ce / agg.rows.max(1) as f64,
            kd: agg.kd / agg.rows.max(1) as f64,
            top1: agg.top1_agree as f64 / agg.rows.max(1) as f64,
            lr,
            grad_norm: norm,
            tok_s: tokens as f64 / t0.elapsed().as_secs_f64(),
            elapsed: state.elapsed,
        };
        write_metric(
            &mut metrics,
            &serde_json::json!({"kind": "train", "m": m}),
            &mut state,
        )?;
        on(TrainEvent::Step(m));
        let last = state.step == s.steps
            || run
                .minutes
                .is_some_and(|mins| clock.elapsed().as_secs_f64() >= mins * 60.0);
        if last || (s.eval_every > 0 && state.step % s.eval_every == 0) {
            let v = validate(
                &student,
                run.valid.unwrap_or(&run.data.valid),
                s,
                state.step,
            )?;
            if let Some(v) = v {
                state.best_valid = Some(
                    state
                        .best_valid
                        .map_or(v.valid_ce, |b: f64| b.min(v.valid_ce)),
                );
                write_metric(
                    &mut metrics,
                    &serde_json::json!({"kind": "valid", "m": v}),
                    &mut state,
                )?;
                on(TrainEvent::Valid(v));
            }
        }
        if last || (s.save_every > 0 && state.step % s.save_every == 0) {
            metrics.flush().map_err(|e| Error::io(run.out, e))?;
            checkpoint::save(run.out, &io::weights_of(&vm)?, &opt, &mut state)?;
            on(TrainEvent::Saved { step: state.step });
        }
        if last {
            break;
        }
    }
    Ok(state)
}

/// The loss of one micro-batch of windows.
fn step_loss(
    student: &Student,
    data: &Stream,
    ws: &[usize],
    seq_len: usize,
    cfg: &LossConfig,
) -> Result<(Tensor, LossStats)> {
    let (ids, positions, targets) = data.batch(ws, seq_len);
    let ids = Tensor::from_vec(ids, (ws.len(), seq_len), &Device::Cpu)?;
    let h = student.hidden(&ids)?; // [b, t, hidden]
    let hidden = h.dim(2)?;
    let n = positions.len();
    let rows = Tensor::from_vec(positions, n, &Device::Cpu)?;
    let h = h
        .reshape((ws.len() * seq_len, hidden))?
        .index_select(&rows, 0)?; // [n, hidden]
    Ok(kd_loss(&h, student.output_weight(), &targets, cfg)?)
}

/// The next `batch` windows of the data order, moving to a new epoch when one runs out.
fn next_windows(
    order: &mut Vec<usize>,
    state: &mut TrainState,
    windows: usize,
    s: &TrainSettings,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(s.batch);
    while out.len() < s.batch {
        if state.cursor >= order.len() {
            state.epoch += 1;
            state.cursor = 0;
            *order = data::epoch_order(windows, s.seed, state.epoch);
        }
        out.push(order[state.cursor]);
        state.cursor += 1;
    }
    out
}

/// Validation on detached outputs: CE, KL to the teacher at T = 1, top-1 agreement.
fn validate(
    student: &Student,
    data: &Stream,
    s: &TrainSettings,
    step: usize,
) -> Result<Option<ValidMetrics>> {
    if data.targets() == 0 {
        return Ok(None);
    }
    let cfg = LossConfig {
        alpha: 0.0,
        temperature: 1.0,
        divergence: Divergence::Fkl,
        chunk_rows: 256,
    };
    let mut agg = LossStats::default();
    let all: Vec<usize> = (0..data.windows(s.seq_len)).collect();
    for ws in all.chunks(s.batch.max(1)) {
        let (ids, positions, targets) = data.batch(ws, s.seq_len);
        if positions.is_empty() {
            continue;
        }
        let ids = Tensor::from_vec(ids, (ws.len(), s.seq_len), &Device::Cpu)?;
        let h = student.hidden(&ids)?.detach();
        let hidden = h.dim(2)?;
        let rows = Tensor::from_vec(positions.clone(), positions.len(), &Device::Cpu)?;
        let h = h
            .reshape((ws.len() * s.seq_len, hidden))?
            .index_select(&rows, 0)?;
        let (_, stats) = kd_loss(&h, &student.output_weight().detach(), &targets, &cfg)?;
        agg.add(&stats);
    }
    let n = agg.rows.max(1) as f64;
    Ok(Some(ValidMetrics {
        step,
        valid_ce: agg.ce / n,
        valid_kl: agg.kd / n,
        valid_top1: agg.top1_agree as f64 / n,
    }))
}

/// A fresh state, or the saved one (weights and moments loaded) when resuming.
fn start_state(run: &TrainRun<'_>, opt: &mut AdamW) -> Result<TrainState> {
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
            teacher,
            settings,
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
        // The step budget may grow on resume; everything else must match.
        a.insert("steps".into(), b.get("steps").cloned().unwrap_or_default());
    }
    if same != settings {
        return Err(Error::Invalid(format!(
            "--resume with other settings than the run in '{}': was {}, now {}",
            run.out.display(),
            state.settings,
            settings
        )));
    }
    checkpoint::load(run.out, &state, opt)?;
    Ok(state)
}

/// Open `metrics.jsonl` for appending, cut back to `keep` lines (a resumed run rewrites
/// the steps after its checkpoint).
fn metrics_file(dir: &Path, keep: usize) -> Result<std::io::BufWriter<std::fs::File>> {
    let path: PathBuf = dir.join("metrics.jsonl");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let kept: String = old.lines().take(keep).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, kept).map_err(|e| Error::io(&path, e))?;
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    Ok(std::io::BufWriter::new(f))
}

fn write_metric(w: &mut impl Write, v: &serde_json::Value, state: &mut TrainState) -> Result<()> {
    let mut line = v["m"].clone();
    if let Some(obj) = line.as_object_mut() {
        obj.insert("kind".into(), v["kind"].clone());
    }
    writeln!(w, "{line}").map_err(|e| Error::io("metrics.jsonl", e))?;
    state.metrics_lines += 1;
    Ok(())
}
