//! `distill chat`: the teacher and the student answer the same conversation side by side,
//! streaming, with time to first token, tokens/s and the student's speed-up live.
//!
//! The shape is the Elm architecture of the ratatui guide: [`app::App`] holds all state and
//! changes only in [`app::App::update`], which does no I/O and returns [`app::Cmd`]s;
//! `view` only draws. One engine thread hosts both models ([`worker`]) and streams
//! [`app::Msg`]s back over a tokio channel; [`tui`] pumps terminal events, worker messages
//! and ticks into `update` (ratatui `templates/component`, oatmeal's two channels).

pub mod app;
#[cfg(test)]
mod app_tests;
pub mod conversation;
pub mod engine;
pub mod input;
mod keys;
pub mod msg;
pub mod remote;
pub mod settings;
pub mod stats;
pub mod student;
pub mod text;
pub mod transcript;
pub mod tui;
pub mod view;
pub mod worker;

pub use app::App;
pub use msg::{Cmd, Msg};

/// Which model a pane, a request or a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The llama.cpp teacher.
    Teacher,
    /// The distilled student.
    Student,
}

impl Side {
    /// Both sides, in the order they answer in turns mode.
    pub const ALL: [Side; 2] = [Side::Teacher, Side::Student];

    /// Index into per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Teacher => 0,
            Side::Student => 1,
        }
    }

    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            Side::Teacher => "Teacher",
            Side::Student => "Student",
        }
    }

    /// Lower-case name for files.
    pub fn key(self) -> &'static str {
        match self {
            Side::Teacher => "teacher",
            Side::Student => "student",
        }
    }
}

/// How the two models share the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One model at a time, each with every thread: a fair speed comparison.
    #[default]
    Turns,
    /// Both at once, interleaved a token at a time on the one engine thread.
    Race,
}

impl Mode {
    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Turns => "turns",
            Mode::Race => "race",
        }
    }

    /// The other mode.
    pub fn toggled(self) -> Self {
        match self {
            Mode::Turns => Mode::Race,
            Mode::Race => Mode::Turns,
        }
    }
}

/// Identifies one generation request; tokens of superseded requests are dropped.
pub type ReqId = u64;

/// What a loaded model reports about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// File or directory name.
    pub name: String,
    /// `llama.cpp` or `candle`.
    pub engine: String,
    /// Parameter count.
    pub params: u64,
    /// Longest conversation it can hold, in tokens.
    pub n_ctx: usize,
}
