//! The training loop: student, AdamW, schedule, validation, checkpoints, in one function
//! that reads top to bottom (candle's `llama2-c/training.rs`, nanoGPT's `train.py`).

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, TrainState, start_state};
use super::data::{self, Splits, Stream};
use super::hidden::hidden_loss;
use super::loss::{Divergence, LossConfig, LossStats, kd_loss};
use super::metrics::{StepMetrics, ValidMetrics, metrics_file, validate, write_metric};
use super::on_policy::{self, OnPolicy};
use super::optim::{AdamW, AdamWParams};
use super::schedule::{Schedule, lr_at};
use crate::student::io::{self, Weights};
use crate::student::prune::Cut;
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
    /// Keep the token embeddings and output projection as initialised (the teacher's).
    #[serde(default)]
    pub freeze_embeddings: bool,
    /// Weight of the hidden-state term `1 - cos` (0: off; needs a corpus recorded with
    /// `--hidden`).
    #[serde(default)]
    pub hidden_weight: f32,
    /// Share of the steps, at the end, trained on the teacher's scores of the student's
    /// own answers (0: none; see [`super::on_policy`]).
    #[serde(default)]
    pub on_policy: f64,
    /// Let positions attend across the sequences packed into a window (runs from before
    /// the option did; new runs read each sequence on its own, as the teacher did).
    #[serde(default = "crate::yes")]
    pub cross_attention: bool,
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
    /// The on-policy phase began: the student answered, the teacher scored.
    OnPolicy {
        /// Answers written.
        answers: usize,
        /// Their tokens, now the training targets.
        targets: usize,
        /// Seconds writing and scoring took.
        seconds: f64,
    },
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
    /// When set (from another thread), checkpoint after the step in progress and return
    /// early, skipping the final validation.
    pub stop: Option<&'a AtomicBool>,
    /// What the on-policy phase needs (when `settings.on_policy` is above 0).
    pub on_policy: Option<&'a OnPolicy>,
}

/// Train, reporting through `on`; returns the final state.
///
/// # Errors
/// NaN/inf loss (the last good checkpoint is kept), I/O, tensor errors.
pub fn train(run: TrainRun<'_>, on: &mut dyn FnMut(TrainEvent)) -> Result<TrainState> {
    let s = run.settings;
    let vm = io::var_map(&run.init)?;
    let mut student = Student::new(
        run.config,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    if s.freeze_embeddings {
        student.freeze_vocab_weights();
    }
    let vars: Vec<(String, Var)> = vm
        .data()
        .lock()
        .map_err(|_| Error::Invalid("poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let trained = vars
        .iter()
        .filter(|(k, _)| !(s.freeze_embeddings && Student::is_vocab_weight(k)))
        .cloned()
        .collect();
    let mut opt = AdamW::new(
        trained,
        AdamWParams {
            weight_decay: s.weight_decay,
            ..Default::default()
        },
    )?;
    let mut state = start_state(&run, &vars, &mut opt)?;
    let loss_cfg = s.loss_config()?;
    let train: Cow<'_, Stream> = if state.on_policy {
        Cow::Owned(on_policy::load(run.out)?)
    } else {
        Cow::Borrowed(&run.data.train)
    };
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
    let order = data::epoch_order(windows, s.seed, state.epoch);
    let hidden = hidden_term(&run, &train)?;
    let mut stepper = Stepper {
        student: &student,
        opt,
        order,
        data: train,
        windows,
        s,
        loss: loss_cfg,
        out: run.out,
        hidden,
        best_ce: None,
    };
    while state.step < s.steps {
        // `>=`: a resume that moved the switch (more steps, another share) behind the
        // current step starts the phase at once.
        let due = on_policy::switch_step(s.steps, s.on_policy).is_some_and(|w| state.step >= w);
        if due && !state.on_policy {
            metrics.flush().map_err(|e| Error::io(run.out, e))?;
            let event = begin_on_policy(&run, &mut state, &vm, &mut stepper)?;
            on(event);
        }
        let mut m = stepper.step(&mut state)?;
        state.elapsed = base + clock.elapsed().as_secs_f64();
        m.elapsed = state.elapsed;
        write_metric(&mut metrics, "train", &m, &mut state)?;
        on(TrainEvent::Step(m));
        let out_of_time = run
            .minutes
            .is_some_and(|mins| clock.elapsed().as_secs_f64() >= mins * 60.0);
        let stopped = run.stop.is_some_and(|f| f.load(Ordering::Relaxed));
        let last = state.step == s.steps || out_of_time || stopped;
        let eval_now = !stopped && (last || (s.eval_every > 0 && state.step % s.eval_every == 0));
        let held_out = run.valid.unwrap_or(&run.data.valid);
        if eval_now && let Some(v) = validate(&student, held_out, s, state.step)? {
            state.best_valid = Some(
                state
                    .best_valid
                    .map_or(v.valid_ce, |b: f64| b.min(v.valid_ce)),
            );
            write_metric(&mut metrics, "valid", &v, &mut state)?;
            on(TrainEvent::Valid(v));
        }
        if last || (s.save_every > 0 && state.step % s.save_every == 0) {
            metrics.flush().map_err(|e| Error::io(run.out, e))?;
            checkpoint::save(run.out, &io::weights_of(&vm)?, &stepper.opt, &mut state)?;
            on(TrainEvent::Saved { step: state.step });
        }
        if last {
            break;
        }
    }
    Ok(state)
}

/// Start the on-policy phase: commit the student as it stands, let it answer and the
/// teacher score, and train on that from the next step (committed, so a resumed run
/// continues the phase on the same data).
fn begin_on_policy(
    run: &TrainRun<'_>,
    state: &mut TrainState,
    vm: &candle_nn::VarMap,
    stepper: &mut Stepper<'_>,
) -> Result<TrainEvent> {
    let s = run.settings;
    let job = run.on_policy.ok_or_else(|| {
        Error::Invalid("--on-policy needs the teacher and the training prompts".into())
    })?;
    let clock = Instant::now();
    checkpoint::save(run.out, &io::weights_of(vm)?, &stepper.opt, state)?;
    let tokens = (s.steps - state.step) * s.batch * s.seq_len * s.grad_accum.max(1);
    let hidden = stepper.data.hidden_size > 0 && s.hidden_weight > 0.0;
    let shard = on_policy::collect(run.out, job, (stepper.data.k, hidden), tokens, s.seed)?;
    let stream = Stream::of_shard(&shard);
    (state.on_policy, state.epoch, state.cursor) = (true, 0, 0);
    stepper.windows = stream.windows(s.seq_len);
    stepper.order = data::epoch_order(stepper.windows, s.seed, 0);
    stepper.data = Cow::Owned(stream);
    checkpoint::save(run.out, &io::weights_of(vm)?, &stepper.opt, state)?;
    Ok(TrainEvent::OnPolicy {
        answers: shard.sequences(),
        targets: shard.targets(),
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// What one optimizer step needs besides the run state.
struct Stepper<'a> {
    student: &'a Student,
    opt: AdamW,
    order: Vec<usize>,
    data: Cow<'a, Stream>,
    windows: usize,
    s: &'a TrainSettings,
    loss: LossConfig,
    out: &'a Path,
    /// Weight of the hidden-state term and the teacher channels it compares on.
    hidden: Option<(f32, Option<Tensor>)>,
    /// Lowest micro-batch cross-entropy of this process, for telling a runaway loss.
    best_ce: Option<f64>,
}

/// The hidden-state term of a run, when its weight is set: checked against the corpus,
/// with the teacher channels a narrower student kept (from its `shape.json`).
fn hidden_term(run: &TrainRun<'_>, train: &Stream) -> Result<Option<(f32, Option<Tensor>)>> {
    let w = run.settings.hidden_weight;
    if w <= 0.0 {
        return Ok(None);
    }
    if train.hidden_size == 0 {
        return Err(Error::Invalid(format!(
            "--hidden-weight '{w}' needs the teacher's hidden states: record the corpus with --hidden"
        )));
    }
    if train.hidden_size == run.config.hidden_size {
        return Ok(Some((w, None)));
    }
    let cut = Cut::read(run.out)?.ok_or_else(|| {
        Error::Invalid(format!(
            "the student's hidden size {} is not the teacher's {}, and '{}' has no shape.json saying which teacher channels it kept; use --hidden-weight 0",
            run.config.hidden_size,
            train.hidden_size,
            run.out.display()
        ))
    })?;
    let ix: Vec<u32> = cut.hidden_channels.iter().map(|&c| c as u32).collect();
    let n = ix.len();
    Ok(Some((w, Some(Tensor::from_vec(ix, n, &Device::Cpu)?))))
}

impl Stepper<'_> {
    /// Accumulate `grad_accum` micro-batches, clip, update; the step's figures.
    fn step(&mut self, state: &mut TrainState) -> Result<StepMetrics> {
        let s = self.s;
        let t0 = Instant::now();
        let lr = lr_at(state.step, s.steps, s.lr, s.warmup, s.schedule);
        let mut grads: Option<Vec<Tensor>> = None;
        let (mut agg, mut loss_sum, mut tokens) = (LossStats::default(), 0.0, 0);
        let mut skipped = 0;
        for _ in 0..s.grad_accum.max(1) {
            let ws = self.next_batch(state, &mut skipped)?;
            let hidden = self.hidden.as_ref().map(|(w, c)| (*w, c.as_ref()));
            let (loss, stats) = step_loss(
                self.student,
                &self.data,
                &ws,
                s.seq_len,
                &self.loss,
                hidden,
                s.cross_attention,
            )?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(diverged(
                    &format!("loss became {value}"),
                    state,
                    self.out,
                    s.lr,
                ));
            }
            // A runaway: the hard-label loss far above both a uniform guess's ln(vocab) and
            // the best this run has reached. Stopping keeps the last good checkpoint and the
            // time; a fresh student's first steps (often far above ln(vocab)) are not judged.
            let (ce, uniform) = (
                stats.mean_ce(),
                (self.student.output_weight().dim(0)?.max(2) as f64).ln(),
            );
            if let Some(best) = self.best_ce
                && ce > RUNAWAY * best
                && ce > RUNAWAY / 2.0 * uniform
            {
                let why = format!(
                    "loss diverged: cross-entropy {ce:.1}, over {RUNAWAY}x the best {best:.1} of this run and {}x the {uniform:.1} of a uniform guess",
                    RUNAWAY / 2.0
                );
                return Err(diverged(&why, state, self.out, s.lr));
            }
            self.best_ce = Some(self.best_ce.map_or(ce, |b| b.min(ce)));
            let g = self.opt.collect(&loss.backward()?)?;
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
        let accum = s.grad_accum.max(1) as f64;
        let norm = AdamW::grad_norm(&grads)? / accum;
        let clip = if s.grad_clip > 0.0 && norm > s.grad_clip {
            s.grad_clip / norm
        } else {
            1.0
        };
        self.opt.step(&grads, lr, clip / accum)?;
        state.step += 1;
        Ok(StepMetrics {
            step: state.step,
            loss: loss_sum / accum,
            ce: agg.mean_ce(),
            kd: agg.mean_kd(),
            top1: agg.top1_rate(),
            hidden: agg.hidden / agg.rows.max(1) as f64,
            lr,
            grad_norm: norm,
            tok_s: tokens as f64 / t0.elapsed().as_secs_f64(),
            elapsed: 0.0,
            skipped_batches: skipped,
        })
    }

    /// The next batch of windows that holds a target position; batches without one (all
    /// their windows inside long prompts) are skipped, as validation skips them, and
    /// counted in `skipped`.
    fn next_batch(&mut self, state: &mut TrainState, skipped: &mut usize) -> Result<Vec<usize>> {
        // An epoch's worth of empty batches means no window has a target at all.
        for _ in 0..=self.windows {
            let ws = next_windows(&mut self.order, state, self.windows, self.s);
            if self.data.has_targets(&ws, self.s.seq_len) {
                return Ok(ws);
            }
            *skipped += 1;
        }
        Err(Error::Invalid(format!(
            "no training window of {} tokens holds a target position; record responses into the corpus",
            self.s.seq_len
        )))
    }
}

/// How many times the run's best cross-entropy a micro-batch may reach (and half as many
/// times a uniform guess's) before the run counts as diverged.
const RUNAWAY: f64 = 4.0;

/// The error for a loss that became NaN, infinite or runaway (`why`) at the step after
/// `state`: names the last good checkpoint's files, or says that none was saved yet.
fn diverged(why: &str, state: &TrainState, out: &Path, lr: f64) -> Error {
    let kept = if state.checkpoint.is_empty() {
        format!(
            "no checkpoint was saved yet, so '{}' holds no trained weights",
            out.display()
        )
    } else {
        format!(
            "the last good checkpoint ('{}') is kept",
            out.join(format!("{}.model.safetensors", state.checkpoint))
                .display()
        )
    };
    Error::Invalid(format!(
        "{why} at step {}; {kept}; lower --lr (now {lr}) or set --grad-clip",
        state.step + 1
    ))
}

/// The loss of one micro-batch of windows.
fn step_loss(
    student: &Student,
    data: &Stream,
    ws: &[usize],
    seq_len: usize,
    cfg: &LossConfig,
    term: Option<(f32, Option<&Tensor>)>,
    cross: bool,
) -> Result<(Tensor, LossStats)> {
    let (ids, positions, targets) = data.batch(ws, seq_len);
    let ids = Tensor::from_vec(ids, (ws.len(), seq_len), &Device::Cpu)?;
    let h = window_hidden(student, data, ws, &ids, cross)?; // [b, t, hidden]
    let hidden = h.dim(2)?;
    let n = positions.len();
    let rows = Tensor::from_vec(positions, n, &Device::Cpu)?;
    let h = h
        .reshape((ws.len() * seq_len, hidden))?
        .index_select(&rows, 0)?; // [n, hidden]
    let (loss, mut stats) = kd_loss(&h, student.output_weight(), &targets, cfg)?;
    let Some((weight, channels)) = term else {
        return Ok((loss, stats));
    };
    let cos = hidden_loss(&h, &targets, channels)?;
    stats.hidden = f64::from(cos.to_scalar::<f32>()?) * n as f64;
    Ok(((loss + (cos * f64::from(weight))?)?, stats))
}

/// Final hidden states of windows `ws` (ids [b, t]): across their packed sequences, or
/// each sequence on its own.
pub(super) fn window_hidden(
    student: &Student,
    data: &Stream,
    ws: &[usize],
    ids: &Tensor,
    cross: bool,
) -> candle_core::Result<Tensor> {
    if cross {
        return student.hidden(ids);
    }
    let seq_len = ids.dim(1)?;
    let segments: Vec<Vec<usize>> = ws.iter().map(|&w| data.segments(w, seq_len)).collect();
    student.hidden_packed(ids, &segments)
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
