//! What the stage worker reports while a run goes on. The dashboard and the progress lines
//! read the same events; neither talks back to the worker except through its stop flag.

use std::path::PathBuf;

use super::plan::Stage;
use super::state::{RunState, StageState};
use crate::record::Progress;
use crate::train::TrainEvent;
use crate::train::metrics::{StepMetrics, ValidMetrics};

/// An event from the stage worker.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run directory's state as found (finished stages are skipped).
    Plan {
        /// The run directory.
        out: PathBuf,
        /// Its state.
        state: Box<RunState>,
    },
    /// A stage starts (or resumes).
    StageStarted {
        /// The stage.
        stage: Stage,
        /// What it will do, e.g. where it resumes.
        note: String,
        /// Seconds it may still take before its time cap, if it has one.
        cap: Option<f64>,
    },
    /// Recording progress.
    Record(Progress),
    /// Figures of earlier runs of a resumed training (from `metrics.jsonl`).
    History {
        /// Training steps.
        steps: Vec<StepMetrics>,
        /// Validation passes.
        valid: Vec<ValidMetrics>,
    },
    /// Training progress.
    Train(TrainEvent),
    /// An evaluation step.
    Eval(String),
    /// A stage finished.
    StageDone {
        /// The stage.
        stage: Stage,
        /// Its record in `run.json`.
        state: StageState,
    },
    /// Every stage finished.
    Finished(Box<RunState>),
    /// The run stopped on request during `stage`; a rerun resumes it.
    Stopped(Stage),
    /// The run failed (the message has its context chain).
    Failed(String),
}
