//! Training the student on a recorded corpus: data windows, the distillation loss, AdamW,
//! the schedule, checkpoints and the loop.

pub mod checkpoint;
pub mod data;
pub mod hidden;
pub mod loss;
mod loss_kernel;
mod loss_op;
pub mod metrics;
pub mod on_policy;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use trainer::{TrainEvent, TrainRun, TrainSettings, train};
