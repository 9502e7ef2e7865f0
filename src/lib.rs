//! `distill`: knowledge distillation of chat LLMs from the terminal.
//!
//! A llama.cpp teacher records its next-token distributions over prompt corpora
//! ([`record`]); later stages train, evaluate and chat with a small student. The binary in
//! `main.rs` only parses arguments and calls [`commands::run`].
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod chat;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod corpus;
pub mod error;
pub mod eval;
pub mod gguf;
pub mod handoff;
pub mod lock;
pub mod pipeline;
pub mod record;
pub mod student;
pub mod teacher;
pub mod train;

pub use error::{Error, Result};

/// `true`, for serde defaults of flags that files written before the flag meant as on.
pub(crate) fn yes() -> bool {
    true
}
