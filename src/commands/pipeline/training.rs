//! The train stage of `distill run`: a teacher-initialised student, three measured steps, then
//! as many steps as the rest of the train share fits (fixed in `run.json` from then on), with
//! a time cap and the stop flag as safety nets. A kill resumes from the last checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};

use super::stages::{Job, Outcome};
use crate::cli::RunArgs;
use crate::gguf::{GgufMeta, TeacherProfile};
use crate::pipeline::plan::{EVAL_EVERY, StepCosts, StepPlan, WARMUP, planned_steps};
use crate::pipeline::{Event, RunSettings, Stage};
use crate::student::io::{self, Provenance, Weights};
use crate::student::{Preset, StudentConfig, init, prune};
use crate::train::checkpoint::TrainState;
use crate::train::data::{self, Splits, Stream};
use crate::train::metrics::{StepMetrics, ValidMetrics};
use crate::train::on_policy::{self, OnPolicy};
use crate::train::schedule::Schedule;
use crate::train::{TrainEvent, TrainRun, TrainSettings, train};

/// Steps run before planning: the first is slow (allocations, cold caches), so the plan
/// uses the ones after it; within the warm-up, whose learning rates do not depend on the
/// step count.
const PROBE_STEPS: usize = 3;

/// Seconds an on-policy round spends per training token it provides, over two epochs (the
/// student writes the answers, the teacher scores them), as a share of the seconds the
/// record stage spent per answer token: measured 1.1 on the default teacher (241 s for
/// the 72K tokens of 71 steps; the student seldom ends its answers, so they run long;
/// docs/BENCHMARKS.md).
const ROUND_PER_RECORDED: f64 = 1.1;

/// What every trainer call of the stage shares.
struct Setup {
    dir: PathBuf,
    splits: Splits,
    valid: Stream,
    clock: Instant,
    /// Stage seconds from earlier runs.
    base: f64,
}

/// What one trainer call did.
struct Ran {
    state: TrainState,
    costs: Option<StepCosts>,
    params: usize,
}

impl Job {
    pub(super) fn train(&mut self, stop: &AtomicBool) -> anyhow::Result<Outcome> {
        let a = self.args.clone();
        let load = |name: &str| {
            let dir = a.out.join(name);
            data::load(&dir, 0.0, a.seed)
                .with_context(|| format!("reading corpus '{}'", dir.display()))
        };
        let setup = Setup {
            dir: a.out.join("student"),
            splits: load("train")?,
            valid: load("valid")?.train,
            clock: Instant::now(),
            base: self.state.stage(Stage::Train).seconds,
        };
        let saved = TrainState::read(&setup.dir)?;
        let windows = setup.splits.train.windows(a.seq_len);
        let known = self.state.train_steps.or(a.train_steps);
        self.send(Event::StageStarted {
            stage: Stage::Train,
            note: train_note(
                saved.as_ref(),
                known,
                &self.state.settings.student_init,
                windows,
            ),
            cap: Some(self.train_left(&setup)),
        });
        if saved.is_some() {
            let (steps, valid) = history(&setup.dir);
            self.send(Event::History { steps, valid });
        }
        let mut resume = saved.is_some();
        let steps = match known {
            Some(n) => n,
            None => {
                let Some(n) = self.plan_steps(&setup, resume, windows, stop)? else {
                    return Ok(Outcome::Stopped);
                };
                resume = true;
                n
            }
        };
        self.state.train_steps = Some(steps);
        self.save()?;
        let ran = self.run_trainer(&setup, steps, resume, stop)?;
        if ran.state.step < steps && stop.load(Ordering::Relaxed) {
            return Ok(Outcome::Stopped);
        }
        Ok(Outcome::Done(format!(
            "{} steps{}, {:.1}M params",
            ran.state.step,
            if ran.state.step < steps {
                format!(" of {steps} (time cap)")
            } else {
                String::new()
            },
            ran.params as f64 / 1e6
        )))
    }

    /// Run and time the first [`PROBE_STEPS`] steps, then plan the steps the rest of the share fits;
    /// `None` when stopped meanwhile.
    fn plan_steps(
        &mut self,
        setup: &Setup,
        resume: bool,
        windows: usize,
        stop: &AtomicBool,
    ) -> anyhow::Result<Option<usize>> {
        let first = self.run_trainer(setup, PROBE_STEPS, resume, stop)?;
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let (batch, tokens) = (self.args.batch, self.args.batch * self.args.seq_len);
        let costs = first
            .costs
            .unwrap_or_else(|| fallback_costs(&setup.dir, tokens));
        Ok(Some(planned_steps(&StepPlan {
            seconds: self.train_left(setup),
            costs,
            done: first.state.step,
            windows,
            batch,
            on_policy: self.args.on_policy,
            round: self.round_per_step(setup, tokens),
        })))
    }

    /// Estimated seconds of the on-policy round per on-policy step of `tokens`: each
    /// answer token is trained on [`on_policy::EPOCHS`] times, and costs
    /// [`ROUND_PER_RECORDED`] of what the record stage spent per recorded answer token.
    fn round_per_step(&self, setup: &Setup, tokens: usize) -> f64 {
        if self.args.on_policy <= 0.0 {
            return 0.0;
        }
        let recorded = setup.splits.manifest.totals.targets.max(1) as f64;
        let seconds = self.state.stage(Stage::RecordTrain).seconds;
        // A corpus recorded elsewhere (no seconds here): llama.cpp's usual 100 tok/s.
        let per_token = if seconds > 0.0 {
            seconds / recorded
        } else {
            0.01
        };
        tokens as f64 / on_policy::EPOCHS as f64 * ROUND_PER_RECORDED * per_token
    }

    /// What the on-policy phase needs: the teacher GGUF, the recorded training prompts
    /// and the record stage's longest answer.
    fn on_policy_job(&self) -> anyhow::Result<OnPolicy> {
        let a = &self.args;
        let corpus = a.out.join("train");
        Ok(OnPolicy {
            teacher: a.teacher.clone(),
            prompts: crate::record::prompts::prompts(&corpus, usize::MAX)
                .with_context(|| format!("reading the prompts of '{}'", corpus.display()))?,
            max_tokens: a.max_new_tokens,
            threads: super::super::threads(a.threads),
        })
    }

    /// Seconds of the train share left.
    fn train_left(&self, s: &Setup) -> f64 {
        let spent = s.base + s.clock.elapsed().as_secs_f64();
        (self.state.settings.budget.train_seconds() - spent).max(0.0)
    }

    /// Train up to `steps`, timing the steps, the first validation and checkpoint, and keeping
    /// the stage's seconds in `run.json` current at each checkpoint.
    fn run_trainer(
        &mut self,
        s: &Setup,
        steps: usize,
        resume: bool,
        stop: &AtomicBool,
    ) -> anyhow::Result<Ran> {
        let a = self.args.clone();
        let (cfg, init) = student(&a, &self.state.settings, &s.dir, resume, &s.splits.train)?;
        let mut settings = train_settings(&a, steps);
        // Before the plan, the probe's few steps would reach the on-policy switch of their
        // own count: the phase waits for the planned count (a resume may change the share
        // until then).
        if self.state.train_steps.is_none() {
            settings.on_policy = 0.0;
        }
        // A random student must learn its embeddings.
        settings.freeze_embeddings &= !self.state.settings.layers.is_empty();
        settings.cross_attention = self.state.settings.cross_attention;
        let job = if settings.on_policy > 0.0 {
            Some(self.on_policy_job()?)
        } else {
            None
        };
        let run = TrainRun {
            out: &s.dir,
            data: &s.splits,
            valid: Some(&s.valid),
            config: &cfg,
            init,
            settings: &settings,
            minutes: Some(self.train_left(s) / 60.0),
            resume,
            stop: Some(stop),
            on_policy: job.as_ref(),
        };
        let mut timer = Timer::new((a.batch * a.seq_len) as f64);
        let mut save_error = None;
        let (state, tx, out) = (&mut self.state, &self.tx, &a.out);
        let result = train(run, &mut |e| {
            timer.on(&e);
            match &e {
                TrainEvent::Valid(v) => state.valid = Some(v.clone()),
                TrainEvent::Saved { .. } => {
                    state.stage_mut(Stage::Train).seconds =
                        s.base + s.clock.elapsed().as_secs_f64();
                    if let Err(e) = state.save(out) {
                        save_error.get_or_insert(e);
                    }
                }
                _ => {}
            }
            tx.send(Event::Train(e)).ok();
        });
        self.state.stage_mut(Stage::Train).seconds = s.base + s.clock.elapsed().as_secs_f64();
        if let Some(e) = save_error {
            return Err(e).context("writing the run state");
        }
        let state = result.with_context(|| format!("training into '{}'", s.dir.display()))?;
        Ok(Ran {
            state,
            costs: timer.costs(),
            params: cfg.n_params(),
        })
    }
}

/// Times the steps, first validation and first checkpoint of a trainer call from its events.
struct Timer {
    tokens_per_step: f64,
    mark: Instant,
    steps: Vec<f64>,
    valid: Option<f64>,
    save: Option<f64>,
}

impl Timer {
    fn new(tokens_per_step: f64) -> Self {
        Timer {
            tokens_per_step,
            mark: Instant::now(),
            steps: Vec::new(),
            valid: None,
            save: None,
        }
    }

    fn on(&mut self, e: &TrainEvent) {
        let since = self.mark.elapsed().as_secs_f64();
        match e {
            // The step's own figure excludes the metrics write and the callback.
            TrainEvent::Step(m) => {
                self.steps.push(self.tokens_per_step / m.tok_s.max(1e-9));
            }
            TrainEvent::Valid(_) => self.valid = self.valid.or(Some(since)),
            TrainEvent::Saved { .. } => self.save = self.save.or(Some(since)),
            TrainEvent::Started { .. } | TrainEvent::OnPolicy { .. } => {}
        }
        self.mark = Instant::now();
    }

    /// The costs, once a step was seen: a step is the mean of those after the first
    /// (the first alone when there is no other).
    fn costs(&self) -> Option<StepCosts> {
        let warm = self.steps.get(1..).filter(|s| !s.is_empty());
        let step = match warm {
            Some(s) => s.iter().sum::<f64>() / s.len() as f64,
            None => *self.steps.first()?,
        };
        Some(StepCosts {
            step,
            valid: self.valid.unwrap_or(step),
            save: self.save.unwrap_or(0.0),
        })
    }
}

/// What the train stage is about to do.
fn train_note(
    saved: Option<&TrainState>,
    steps: Option<usize>,
    init: &str,
    windows: usize,
) -> String {
    match (saved, steps) {
        (Some(s), Some(n)) => format!("resuming at step {} of {n}", s.step),
        (_, Some(n)) => format!("{n} steps, student from {init}"),
        (_, None) => format!(
            "student from {init}, {windows} windows: timing the first steps to plan the rest"
        ),
    }
}

/// Costs when the first step was timed by an earlier, killed run: its logged speed, and a
/// step's time for each validation and checkpoint.
fn fallback_costs(dir: &Path, tokens_per_step: usize) -> StepCosts {
    let (steps, _) = history(dir);
    let step = steps
        .first()
        .map_or(10.0, |m| tokens_per_step as f64 / m.tok_s.max(1e-9));
    StepCosts {
        step,
        valid: step,
        save: step,
    }
}

/// The student to train: the saved one (weights come from the checkpoint), or a fresh one
/// as [`plan_student`] chose, written with its config, provenance and tokenizer.
fn student(
    a: &RunArgs,
    run: &RunSettings,
    dir: &Path,
    resume: bool,
    corpus: &Stream,
) -> anyhow::Result<(StudentConfig, Weights)> {
    if resume {
        let cfg = StudentConfig::read(dir)?;
        let w = io::random_weights(&cfg, a.seed)?; // replaced by the checkpoint
        return Ok((cfg, w));
    }
    let meta = GgufMeta::read(&a.teacher)?;
    let profile = TeacherProfile::from_meta(&meta)?;
    let (cfg, w) = match &run.shape {
        None if run.layers.is_empty() => {
            let mut cfg = StudentConfig::preset(Preset::Base, profile.n_vocab);
            cfg.max_position_embeddings = cfg.max_position_embeddings.max(a.seq_len);
            (cfg.bos_token_id, cfg.eos_token_id) = (profile.bos, profile.eos);
            let w = io::random_weights(&cfg, a.seed)?;
            (cfg, w)
        }
        // A run file from before pruning: the teacher's blocks at full width.
        None => init::from_teacher(&a.teacher, &run.layers)
            .context("initialising the student from the teacher")?,
        Some(shape) => {
            let windows = prune::calibration(&corpus.tokens, a.seq_len);
            let (cfg, w, cut) = prune::cut_from_teacher(&a.teacher, shape, &windows, true)
                .context("cutting the student from the teacher")?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating '{}'", dir.display()))?;
            cut.save(dir)?;
            (cfg, w)
        }
    };
    if a.seq_len > cfg.max_position_embeddings {
        bail!(
            "--seq-len {} exceeds the student's max_position_embeddings {}",
            a.seq_len,
            cfg.max_position_embeddings
        );
    }
    let provenance = Provenance {
        file: profile.file(),
        path: a.teacher.clone(),
        sha256: run.teacher.sha256.clone(),
        n_vocab: profile.n_vocab,
        tokenizer_fingerprint: profile.fingerprint.clone(),
    };
    // A tokenizer llama.cpp's cannot be matched for leaves a warning in the log, not a
    // failed run: distill tokenizes with the teacher.
    if let Some(warning) = io::create_dir(dir, &cfg, &meta, &provenance)? {
        tracing::warn!("{warning}");
    }
    Ok((cfg, w))
}

/// Settings that do not depend on the step count except `steps` itself, so that the run
/// started with one measured step resumes with the planned count.
fn train_settings(a: &RunArgs, steps: usize) -> TrainSettings {
    TrainSettings {
        alpha: a.alpha,
        temperature: 1.0,
        loss: "fkl".into(),
        jsd_beta: 0.5,
        lr: a.lr,
        warmup: WARMUP,
        schedule: Schedule::Cosine,
        weight_decay: 0.1,
        grad_clip: 1.0,
        batch: a.batch,
        seq_len: a.seq_len,
        grad_accum: 1,
        steps,
        valid_fraction: 0.0,
        eval_every: EVAL_EVERY,
        save_every: EVAL_EVERY,
        seed: a.seed,
        freeze_embeddings: !a.train_embeddings,
        hidden_weight: a.hidden_weight,
        on_policy: a.on_policy,
        cross_attention: false,
    }
}

/// Steps and validations of earlier runs, from `metrics.jsonl` (cut back to the last
/// checkpoint's line count; unreadable lines are skipped).
fn history(dir: &Path) -> (Vec<StepMetrics>, Vec<ValidMetrics>) {
    let keep = TrainState::read(dir)
        .ok()
        .flatten()
        .map_or(0, |s| s.metrics_lines);
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    let (mut steps, mut valid) = (Vec::new(), Vec::new());
    for line in text.lines().take(keep) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("train") => steps.extend(serde_json::from_value(v).ok()),
            Some("valid") => valid.extend(serde_json::from_value(v).ok()),
            _ => {}
        }
    }
    (steps, valid)
}
