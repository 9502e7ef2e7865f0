//! The messages that drive [`App::update`](super::App::update) and the commands it returns
//! (STYLE.md section 7): terminal input and worker reports in, work for the outside out.

use std::path::PathBuf;
use std::time::Instant;

use ratatui::crossterm::event::{KeyEvent, MouseEvent};

use super::engine::Request;
use super::stats::GenStats;
use super::transcript::Transcript;
use super::{ModelInfo, ReqId, Side};

/// Everything that can change the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    /// A key press.
    Key(KeyEvent),
    /// A mouse event (the wheel scrolls the pane under the pointer).
    Mouse(MouseEvent),
    /// Pasted text (bracketed paste).
    Paste(String),
    /// The terminal's new size.
    Resize(u16, u16),
    /// The clock, for live figures.
    Tick(Instant),
    /// A worker loaded its model.
    Loaded {
        /// Whose.
        side: Side,
        /// What it is.
        info: ModelInfo,
    },
    /// A worker could not load its model, or crashed.
    LoadFailed {
        /// Whose.
        side: Side,
        /// Why.
        error: String,
    },
    /// A worker began a request.
    Started {
        /// Whose.
        side: Side,
        /// Which request.
        req: ReqId,
        /// When.
        at: Instant,
    },
    /// A piece of an answer.
    Token {
        /// Whose.
        side: Side,
        /// Which request.
        req: ReqId,
        /// Text to append.
        text: String,
        /// Tokens written so far.
        tokens: usize,
        /// When it was picked.
        at: Instant,
    },
    /// A request ended.
    Done {
        /// Whose.
        side: Side,
        /// Which request.
        req: ReqId,
        /// Its figures.
        stats: GenStats,
    },
    /// A request failed.
    Failed {
        /// Whose.
        side: Side,
        /// Which request.
        req: ReqId,
        /// Why.
        error: String,
    },
    /// A transcript was written (its files) or not (why).
    Saved(Result<Vec<PathBuf>, String>),
}

/// What `update` asks the outside world to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    /// Start a generation.
    Generate {
        /// Which model.
        side: Side,
        /// Its id.
        req: ReqId,
        /// What to answer and how.
        request: Request,
    },
    /// Stop a generation at its next token.
    Cancel {
        /// Which model.
        side: Side,
        /// Which request.
        req: ReqId,
    },
    /// Write the transcript (JSONL and Markdown).
    Save(Box<Transcript>),
}
