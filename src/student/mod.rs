//! The student: a small Llama-architecture decoder in candle with the teacher's vocabulary,
//! stored as a Hugging Face model directory.

pub mod config;
pub mod export;
pub mod hf;
pub mod importance;
pub mod init;
pub mod io;
pub mod model;
pub mod pretrained;
pub mod prune;
pub mod shape;

pub use config::{Preset, StudentConfig};
pub use model::Student;
