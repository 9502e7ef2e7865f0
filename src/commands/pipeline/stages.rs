//! The stage worker of `distill run`: runs each unfinished stage through the library
//! (`record`, `train`, the eval of `distill eval`), keeps `run.json` current, and reports
//! [`Event`]s. It runs on its own OS thread (the teacher must), and stops early when the
//! shared stop flag is set.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc::UnboundedSender;

use crate::cli::{EvalArgs, RunArgs};
use crate::pipeline::summary::eval_rows;
use crate::pipeline::{Event, RunState, Stage, Status};
use crate::record::{self, Progress, RecordConfig, RecordSettings};

/// Most records per shard: a stop, a kill or the time cap costs at most this many records.
/// Each shard is decoded on its own, so it also bounds the batch: [`PARALLEL`] of them.
/// A small set gets smaller shards ([`SHARDS_AT_LEAST`]), so it still resumes part-way.
const SHARD_SIZE: usize = 32;
/// Shards a small prompt set is cut into at least.
const SHARDS_AT_LEAST: usize = 4;
/// Sequences the teacher decodes together: 32 write 30% more tokens a second than 8 on
/// 2 cores (llama.cpp's per-op overhead is shared by the batch; docs/BENCHMARKS.md).
const PARALLEL: usize = 32;
/// Context per sequence: a templated prompt and a 256-token answer fit with room to spare,
/// and 32 KV caches of it take about 0.8 GB for the default teacher.
const CTX: usize = 1024;
/// Log-probabilities stored per target.
const TOP_K: usize = 64;
/// Most of the record share the held-out prompts may take (a large
/// `--valid-prompts-limit` must not eat the training corpus's time).
const VALID_SHARE: f64 = 0.3;

/// Held-out prompts the eval stage lets each model answer on its own, and how long.
const ANSWERS: usize = 12;
const ANSWER_TOKENS: usize = 128;

/// How a stage ended.
pub(super) enum Outcome {
    Done(String),
    Stopped,
}

/// The worker: the arguments, the run directory's state and the channel to the display.
pub(super) struct Job {
    /// The run's arguments, with `teacher` the GGUF (a server's `--tokenizer`).
    pub args: RunArgs,
    /// The teacher server's URL when the corpora are recorded through one.
    pub server: Option<String>,
    pub state: RunState,
    pub tx: UnboundedSender<Event>,
}

impl Job {
    pub(super) fn send(&self, e: Event) {
        // The display may be gone (the user quit during eval): keep working, nobody listens.
        self.tx.send(e).ok();
    }

    pub(super) fn save(&mut self) -> anyhow::Result<()> {
        let out = self.args.out.clone();
        self.state
            .save(&out)
            .with_context(|| format!("writing the run state in '{}'", out.display()))
    }

    /// Run every unfinished stage in order; `Ok(true)` when all are done, `Ok(false)` when
    /// stopped on request.
    pub fn run(&mut self, stop: &Arc<AtomicBool>) -> anyhow::Result<bool> {
        self.send(Event::Plan {
            out: self.args.out.clone(),
            state: Box::new(self.state.clone()),
        });
        for stage in Stage::ALL {
            if self.state.stage(stage).status == Status::Done {
                continue;
            }
            self.state.stage_mut(stage).status = Status::Started;
            self.save()?;
            let outcome = match stage {
                Stage::RecordValid | Stage::RecordTrain => self.record(stage, stop)?,
                Stage::Train => self.train(stop)?,
                Stage::Eval => self.eval()?,
            };
            match outcome {
                Outcome::Stopped => {
                    self.save()?;
                    self.send(Event::Stopped(stage));
                    return Ok(false);
                }
                Outcome::Done(summary) => {
                    let st = self.state.stage_mut(stage);
                    st.status = Status::Done;
                    st.summary = summary;
                    let st = st.clone();
                    self.save()?;
                    self.send(Event::StageDone { stage, state: st });
                }
            }
        }
        self.send(Event::Finished(Box::new(self.state.clone())));
        Ok(true)
    }

    /// What a record stage records: the held-out set is small and fixed (and stops at
    /// [`VALID_SHARE`] of the record share); the training set takes what is left.
    fn record_config(&self, stage: Stage, stop: &Arc<AtomicBool>) -> (RecordConfig, f64) {
        let a = &self.args;
        let valid = stage == Stage::RecordValid;
        let left = self.state.record_seconds_left();
        let cap = if valid { left * VALID_SHARE } else { left };
        let settings = RecordSettings {
            mode: a.mode,
            k: TOP_K,
            temperature: 0.7,
            top_p: 0.9,
            seed: a.seed,
            max_new_tokens: a.max_new_tokens,
            system: None,
            ctx: CTX.max(a.max_new_tokens + 512),
            parallel: PARALLEL,
            shard_size: shard_size(
                if valid { &a.valid_prompts } else { &a.prompts },
                if valid {
                    Some(a.valid_prompts_limit)
                } else {
                    a.train_prompts_limit
                },
            ),
            skip_bad: false,
            threads: super::super::threads(a.threads),
            hidden: a.hidden_weight > 0.0,
        };
        let cfg = RecordConfig {
            teacher: a.teacher.clone(),
            prompts: if valid { &a.valid_prompts } else { &a.prompts }.clone(),
            out: a.out.join(if valid { "valid" } else { "train" }),
            settings,
            limit: if valid {
                Some(a.valid_prompts_limit)
            } else {
                a.train_prompts_limit
            },
            answers: if valid {
                1
            } else {
                self.state.settings.answers
            },
            minutes: Some(cap / 60.0),
            stop: Some(Arc::clone(stop)),
            slice: None,
        };
        (cfg, cap)
    }

    fn record(&mut self, stage: Stage, stop: &Arc<AtomicBool>) -> anyhow::Result<Outcome> {
        let (cfg, cap) = self.record_config(stage, stop);
        let dir = cfg.out.clone();
        self.send(Event::StageStarted {
            stage,
            note: record_note(stage, cap, self.args.mode, cfg.answers),
            cap: Some(cap),
        });
        let clock = Instant::now();
        let base = self.state.stage(stage).seconds;
        let (mut pending, mut planned) = (0, 0);
        let mut save_error = None;
        let out = self.args.out.clone();
        let remote = match &self.server {
            Some(url) => Some(super::super::connect_remote(url, &self.args.remote)?),
            None => None,
        };
        let (state, tx) = (&mut self.state, &self.tx);
        let mut on = |p: Progress| {
            match &p {
                Progress::Started { planned: n, .. } => planned = *n,
                Progress::Sequence { tokens, .. } => pending += tokens,
                Progress::Shard { .. } => {
                    let st = state.stage_mut(stage);
                    st.tokens += std::mem::take(&mut pending);
                    st.seconds = base + clock.elapsed().as_secs_f64();
                    if let Err(e) = state.save(&out) {
                        save_error.get_or_insert(e);
                    }
                }
                Progress::Notice(line) => tracing::warn!("{line}"),
            }
            tx.send(Event::Record(p)).ok();
        };
        let result = match &remote {
            Some((teacher, tokenizer)) => record::record_remote(&cfg, tokenizer, teacher, &mut on),
            None => record::record(&cfg, &mut on),
        };
        self.state.stage_mut(stage).seconds = base + clock.elapsed().as_secs_f64();
        if let Some(e) = save_error {
            return Err(e).context("writing the run state");
        }
        let summary = match result {
            Err(crate::Error::Stopped) => return Ok(Outcome::Stopped),
            other => other.with_context(|| format!("recording into '{}'", dir.display()))?,
        };
        let capped = summary.records < planned;
        Ok(Outcome::Done(format!(
            "{} records, {} answer tokens{}",
            summary.records,
            summary.targets,
            if capped { " (time cap)" } else { "" }
        )))
    }

    fn eval(&mut self) -> anyhow::Result<Outcome> {
        let a = &self.args;
        let args = EvalArgs {
            teacher: a.teacher.clone(),
            student: a.out.join("student"),
            compare: Vec::new(),
            corpus: a.out.join("valid"),
            out: a.out.join("eval"),
            threads: a.threads,
            no_speed: a.no_speed,
            answers: a.valid_prompts_limit.min(ANSWERS),
            answer_tokens: ANSWER_TOKENS,
        };
        let note = if a.no_speed {
            "quality on the held-out answers".to_string()
        } else {
            "quality on the held-out answers, then speed of each model".to_string()
        };
        self.send(Event::StageStarted {
            stage: Stage::Eval,
            note,
            cap: None,
        });
        let clock = Instant::now();
        let base = self.state.stage(Stage::Eval).seconds;
        let tx = &self.tx;
        let report =
            crate::eval::evaluate::evaluate(&super::super::eval::job(&args), &mut |line| {
                tx.send(Event::Eval(line)).ok();
            });
        self.state.stage_mut(Stage::Eval).seconds = base + clock.elapsed().as_secs_f64();
        let report = report.context("evaluating the student")?;
        self.state.eval = eval_rows(&report);
        let student = self.state.eval.iter().find(|r| r.role == "student");
        let kld = student.and_then(|r| r.kld).unwrap_or(f64::NAN);
        let top = student.and_then(|r| r.same_top).unwrap_or(f64::NAN);
        let up = self
            .state
            .eval
            .iter()
            .filter(|r| r.role == "student")
            .find_map(|r| r.speedup)
            .map_or(String::new(), |x| format!(", {x:.1}x teacher speed"));
        Ok(Outcome::Done(format!(
            "KLD {kld:.3}, same top-1 {:.1}%{up}",
            100.0 * top
        )))
    }
}

/// Records per shard for these prompt files: [`SHARD_SIZE`], or less where the files hold
/// fewer than [`SHARDS_AT_LEAST`] shards of it. The same files and limit give the same size,
/// so a resumed stage agrees with its manifest. Unreadable files get [`SHARD_SIZE`]: the
/// record stage then names the problem.
fn shard_size(prompts: &[std::path::PathBuf], limit: Option<usize>) -> usize {
    let records: Option<usize> = prompts
        .iter()
        .map(|p| {
            crate::corpus::Source::read(p, false)
                .ok()
                .map(|s| s.records.len())
        })
        .sum();
    let Some(records) = records else {
        return SHARD_SIZE;
    };
    let records = limit.map_or(records, |l| l.min(records));
    records.div_ceil(SHARDS_AT_LEAST).clamp(1, SHARD_SIZE)
}

/// What a record stage is about to do, given its time cap.
fn record_note(stage: Stage, cap: f64, mode: crate::record::Mode, answers: usize) -> String {
    let which = if stage == Stage::RecordValid {
        "held-out"
    } else {
        "training"
    };
    let verb = match mode {
        crate::record::Mode::Generate => "answers",
        crate::record::Mode::Score => "scores",
    };
    if cap < 1.0 {
        format!("the record share is spent: the teacher {verb} one shard of {which} records")
    } else {
        let times = if answers > 1 {
            format!(", up to {answers} times each,")
        } else {
            String::new()
        };
        format!(
            "the teacher {verb} the {which} records{times} for up to {}",
            crate::pipeline::summary::clock(cap)
        )
    }
}
