//! The stages of `distill run`, how the time budget is split between them, and how many
//! training steps a budget buys.
//!
//! The split is explicit and configurable (`--split record,train,eval` in percent). Record
//! stages stop at a shard boundary once their share is spent. Training first runs one step
//! and times it (with its validation and checkpoint), then plans the steps the rest of its
//! share fits, so the cosine schedule ends when the budget does; a time cap catches the
//! rest. A slower (or busier) machine records less and trains fewer steps.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A stage of the pipeline, in running order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The teacher answers the held-out prompts (validation and eval corpus).
    RecordValid,
    /// The teacher answers the training prompts until the record share of the budget is spent.
    RecordTrain,
    /// The teacher-initialised student is distilled on the recorded answers.
    Train,
    /// Quality and speed, teacher against student.
    Eval,
}

impl Stage {
    /// Every stage, in running order.
    pub const ALL: [Stage; 4] = [
        Stage::RecordValid,
        Stage::RecordTrain,
        Stage::Train,
        Stage::Eval,
    ];

    /// Short name for the stage list and progress lines.
    pub fn label(self) -> &'static str {
        match self {
            Stage::RecordValid => "record valid",
            Stage::RecordTrain => "record train",
            Stage::Train => "train",
            Stage::Eval => "eval",
        }
    }

    /// Position in [`Stage::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the teacher records in this stage.
    pub fn is_record(self) -> bool {
        matches!(self, Stage::RecordValid | Stage::RecordTrain)
    }
}

/// Default split of the budget in percent: record (both corpora), train, eval. The rest
/// (5%) covers loading models and writing checkpoints.
pub const DEFAULT_SPLIT: [f64; 3] = [50.0, 45.0, 5.0];

/// Most passes over the training windows a planned run makes (more would overfit a small
/// corpus; a fast machine records more instead).
pub const MAX_EPOCHS: f64 = 3.0;

/// Validate and checkpoint every this many steps (independent of the step count, so that
/// the plan can grow after the first, measured step). On 2 cores a validation and a
/// checkpoint of the default student cost about 3.5 s against a 2 s step: every 10 steps
/// that was 16% of the train share, every 25 it is 7%, and a kill loses at most 25 steps
/// (about 50 s there, far less on a GPU).
pub const EVAL_EVERY: usize = 25;

/// Warm-up steps (independent of the step count, like [`EVAL_EVERY`]).
pub const WARMUP: usize = 5;

/// The time budget of a run and its split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Minutes for the whole run.
    pub minutes: f64,
    /// Percent of the budget for recording, training and evaluating.
    pub split: [f64; 3],
}

impl Budget {
    /// A budget of `minutes` split by `split` (percent: record, train, eval).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a non-positive budget or a split that is negative or sums
    /// over 100.
    pub fn new(minutes: f64, split: [f64; 3]) -> Result<Self> {
        if minutes.is_nan() || minutes <= 0.0 || minutes.is_infinite() {
            return Err(Error::Invalid(format!(
                "--minutes '{minutes}' must be a positive number"
            )));
        }
        let sum: f64 = split.iter().sum();
        let bad = |x: f64| x.is_nan() || x < 0.0;
        if split.iter().any(|&x| bad(x)) || sum > 100.0 + 1e-9 || split[0] <= 0.0 {
            return Err(Error::Invalid(format!(
                "--split '{},{},{}' must be three percentages (record, train, eval) with a positive record share, summing to at most 100",
                split[0], split[1], split[2]
            )));
        }
        Ok(Budget { minutes, split })
    }

    /// Seconds for the record stages together (`RecordValid` and `RecordTrain` share them).
    pub fn record_seconds(&self) -> f64 {
        self.seconds_of(0)
    }

    /// Seconds for training.
    pub fn train_seconds(&self) -> f64 {
        self.seconds_of(1)
    }

    /// Seconds planned for evaluation (informational: eval is not cut short).
    pub fn eval_seconds(&self) -> f64 {
        self.seconds_of(2)
    }

    /// Seconds planned for `stage` (the record share for either record stage).
    pub fn stage_seconds(&self, stage: Stage) -> f64 {
        match stage {
            Stage::RecordValid | Stage::RecordTrain => self.record_seconds(),
            Stage::Train => self.train_seconds(),
            Stage::Eval => self.eval_seconds(),
        }
    }

    fn seconds_of(&self, i: usize) -> f64 {
        self.minutes * 60.0 * self.split[i] / 100.0
    }
}

/// What training costs on this machine, measured on the first steps of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCosts {
    /// Seconds per optimizer step.
    pub step: f64,
    /// Seconds per validation pass.
    pub valid: f64,
    /// Seconds per checkpoint.
    pub save: f64,
}

/// What the rest of a training budget buys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// Seconds of the train share still unspent.
    pub seconds: f64,
    /// Measured costs.
    pub costs: StepCosts,
    /// Steps already done.
    pub done: usize,
    /// Training windows in the corpus.
    pub windows: usize,
    /// Windows per step.
    pub batch: usize,
    /// Share of the steps trained on-policy at the end (0: none).
    pub on_policy: f64,
    /// Seconds the on-policy round (the student writes, the teacher scores) costs per
    /// on-policy step.
    pub round: f64,
}

/// Optimizer steps in total for `plan`: those done, plus what the rest of the budget fits
/// at the measured costs (a validation and a checkpoint every [`EVAL_EVERY`] steps and at
/// the end, and the on-policy round's share), with at most [`MAX_EPOCHS`] passes over the
/// recorded corpus before the on-policy phase (which trains on its own data).
pub fn planned_steps(plan: &StepPlan) -> usize {
    let c = plan.costs;
    let f = plan.on_policy.clamp(0.0, 1.0);
    let per_step = c.step + (c.valid + c.save) / EVAL_EVERY as f64 + f * plan.round.max(0.0);
    let seconds = plan.seconds - c.valid - c.save;
    let more = (seconds.max(0.0) / per_step.max(1e-9)).floor() as usize;
    let passes = (plan.windows as f64 * MAX_EPOCHS) / plan.batch.max(1) as f64;
    let epoch_cap = if f < 1.0 {
        (passes / (1.0 - f)).ceil().max(1.0) as usize
    } else {
        usize::MAX
    };
    (plan.done + more).min(epoch_cap).max(plan.done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_divides_the_budget() {
        let b = Budget::new(20.0, DEFAULT_SPLIT).expect("valid");
        assert!((b.record_seconds() - 600.0).abs() < 1e-9);
        assert!((b.train_seconds() - 540.0).abs() < 1e-9);
        assert!((b.eval_seconds() - 60.0).abs() < 1e-9);
        assert_eq!(b.stage_seconds(Stage::RecordValid), b.record_seconds());
    }

    #[test]
    fn bad_budgets_are_refused() {
        assert!(Budget::new(0.0, DEFAULT_SPLIT).is_err());
        assert!(Budget::new(f64::NAN, DEFAULT_SPLIT).is_err());
        assert!(Budget::new(5.0, [60.0, 50.0, 10.0]).is_err());
        assert!(Budget::new(5.0, [0.0, 50.0, 10.0]).is_err());
        assert!(Budget::new(5.0, [-1.0, 50.0, 10.0]).is_err());
    }

    /// 600 s left at 10 s a step, with a 15 s validation and a 5 s checkpoint, after one
    /// step, over 1000 windows at 4 a step; no on-policy phase.
    fn plan() -> StepPlan {
        StepPlan {
            seconds: 600.0,
            costs: StepCosts {
                step: 10.0,
                valid: 15.0,
                save: 5.0,
            },
            done: 1,
            windows: 1000,
            batch: 4,
            on_policy: 0.0,
            round: 0.0,
        }
    }

    #[test]
    fn steps_fill_the_budget_at_the_measured_costs_within_the_epoch_cap() {
        let plan = plan();
        // (600 - 20) s at 10 + 20/25 s a step = 53 more steps.
        assert_eq!(planned_steps(&plan), 54);
        let tiny_corpus = StepPlan { windows: 8, ..plan };
        assert_eq!(
            planned_steps(&tiny_corpus),
            6,
            "3 epochs of 8 windows at 4 a step"
        );
        let spent = StepPlan {
            seconds: 5.0,
            ..plan
        };
        assert_eq!(planned_steps(&spent), 1, "never fewer than done");
    }

    #[test]
    fn the_on_policy_round_costs_steps_and_lifts_the_epoch_cap() {
        let plan = StepPlan {
            on_policy: 0.5,
            round: 8.0,
            ..plan()
        };
        // Each step now also pays half of an 8 s round: 580 / (10 + 0.8 + 4) = 39 more.
        assert_eq!(planned_steps(&plan), 40);
        let tiny_corpus = StepPlan { windows: 8, ..plan };
        assert_eq!(
            planned_steps(&tiny_corpus),
            12,
            "6 off-policy steps (3 epochs) and as many on-policy"
        );
        let all = StepPlan {
            windows: 8,
            on_policy: 1.0,
            ..plan
        };
        // 580 / (10 + 0.8 + 8) = 30 more.
        assert_eq!(planned_steps(&all), 31, "no corpus pass to cap");
    }

    #[test]
    fn stages_are_listed_in_running_order() {
        for (i, s) in Stage::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        assert!(Stage::RecordValid.is_record() && !Stage::Train.is_record());
    }
}
