//! `distill run`: the whole pipeline in one go. The stages (record the held-out and the
//! training prompts, distill a teacher-initialised student, evaluate it) share one time
//! budget ([`plan`]); `run.json` in the run directory ([`state`]) makes every stage
//! resumable and pins the settings. A worker reports [`event::Event`]s, which the
//! [`dashboard`] draws and [`lines`] prints when there is no terminal.

pub mod dashboard;
pub mod event;
pub mod lines;
pub mod plan;
pub mod progress;
pub mod run_log;
pub mod state;
pub mod summary;

pub use event::Event;
pub use plan::{Budget, Stage};
pub use state::{RunSettings, RunState, Status};
