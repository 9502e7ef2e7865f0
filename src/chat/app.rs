//! The chat's state and its one place of change, [`App::update`]: a message in, commands
//! out, no I/O (the Elm architecture of the ratatui guide). Worker messages carry request
//! ids, so tokens of a request that was cancelled or belongs to a cleared conversation are
//! dropped here (gitui's `AsyncSingleJob` keeps only the newest job the same way).

use std::collections::VecDeque;
use std::time::Instant;

use ratatui::Frame;

use super::conversation::{AnswerState, Turn, history};
use super::engine::Request;
use super::input::Input;
use super::msg::{Cmd, Msg};
use super::settings::{Settings, SettingsForm};
use super::stats::{GenStats, Speedup, Speedups};
use super::{Mode, ModelInfo, ReqId, Side, view};

/// A model's state as the UI knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    /// Loading; the name of what is loading.
    Loading(String),
    /// Ready.
    Ready(ModelInfo),
    /// It could not load or crashed.
    Failed {
        /// What was loading.
        name: String,
        /// Why it failed.
        error: String,
    },
}

/// Where a pane is scrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scroll {
    /// Showing the end, following new text.
    Follow,
    /// Showing from this row.
    Top(usize),
}

/// One model's pane.
#[derive(Debug, Clone, PartialEq)]
pub struct Pane {
    /// Its model.
    pub model: ModelState,
    /// Its scroll position.
    pub scroll: Scroll,
}

/// A popup over the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    /// The keys.
    Help,
    /// The settings form.
    Settings(SettingsForm),
}

/// How the app starts.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Name of the teacher while it loads; `None` for no teacher pane.
    pub teacher: Option<String>,
    /// Name of the student while it loads; `None` for no student pane.
    pub student: Option<String>,
    /// Initial sampling settings.
    pub settings: Settings,
    /// Initial mode.
    pub mode: Mode,
    /// CPU threads in all.
    pub threads: usize,
    /// Terminal size.
    pub size: (u16, u16),
}

/// The whole state of the chat.
#[derive(Debug, Clone)]
pub struct App {
    /// Set when the user quits.
    pub should_quit: bool,
    pub(super) panes: [Option<Pane>; 2],
    pub(super) turns: Vec<Turn>,
    pub(super) input: Input,
    pub(super) settings: Settings,
    pub(super) mode: Mode,
    pub(super) popup: Option<Popup>,
    pub(super) status: Option<String>,
    pub(super) focus: Side,
    pub(super) speedups: Speedups,
    pub(super) threads: usize,
    pub(super) size: (u16, u16),
    pub(super) now: Option<Instant>,
    /// Numbers conversations, so a re-save overwrites the same files.
    pub(super) conversation: u64,
    queue: VecDeque<Side>,
    next_req: ReqId,
    /// Turns sent since start; picks each turn's random stream.
    turn_counter: u64,
}

impl App {
    /// A fresh app with its panes loading.
    pub fn new(cfg: AppConfig) -> Self {
        let pane = |name: Option<String>| {
            name.map(|n| Pane {
                model: ModelState::Loading(n),
                scroll: Scroll::Follow,
            })
        };
        let focus = if cfg.teacher.is_some() {
            Side::Teacher
        } else {
            Side::Student
        };
        Self {
            should_quit: false,
            panes: [pane(cfg.teacher), pane(cfg.student)],
            turns: Vec::new(),
            input: Input::default(),
            settings: cfg.settings,
            mode: cfg.mode,
            popup: None,
            status: None,
            focus,
            speedups: Speedups::default(),
            threads: cfg.threads.max(1),
            size: cfg.size,
            now: None,
            conversation: 0,
            queue: VecDeque::new(),
            next_req: 1,
            turn_counter: 0,
        }
    }

    /// Draw the whole screen (read-only).
    pub fn view(&self, frame: &mut Frame) {
        view::render(self, frame);
    }

    /// Apply one message; return what the outside world must do.
    pub fn update(&mut self, msg: Msg) -> Vec<Cmd> {
        match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Mouse(m) => {
                self.on_mouse(m);
                vec![]
            }
            Msg::Paste(text) => {
                self.on_paste(&text);
                vec![]
            }
            Msg::Resize(w, h) => {
                self.size = (w, h);
                vec![]
            }
            Msg::Tick(at) => {
                self.now = Some(at);
                vec![]
            }
            Msg::Loaded { side, info } => {
                if let Some(p) = self.pane_mut(side) {
                    p.model = ModelState::Ready(info);
                }
                vec![]
            }
            Msg::LoadFailed { side, error } => self.on_load_failed(side, error),
            Msg::Started { side, req, at } => {
                if let Some(a) = self.running(side, req) {
                    a.started = Some(at);
                }
                vec![]
            }
            Msg::Token {
                side,
                req,
                text,
                tokens,
                at,
            } => {
                if let Some(a) = self.running(side, req) {
                    a.text.push_str(&text);
                    a.tokens = tokens;
                    a.first.get_or_insert(at);
                    a.last = Some(at);
                }
                vec![]
            }
            Msg::Done { side, req, stats } => self.on_done(side, req, stats),
            Msg::Failed { side, req, error } => {
                match self.running(side, req) {
                    Some(a) => a.state = AnswerState::Failed(error),
                    None => return vec![],
                }
                self.advance()
            }
            Msg::Saved(Ok(files)) => {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                self.status = Some(format!("Saved {}", names.join(" and ")));
                vec![]
            }
            Msg::Saved(Err(e)) => {
                self.status = Some(format!("Could not save: {e}"));
                vec![]
            }
        }
    }

    pub(super) fn pane(&self, side: Side) -> Option<&Pane> {
        self.panes[side.index()].as_ref()
    }

    pub(super) fn pane_mut(&mut self, side: Side) -> Option<&mut Pane> {
        self.panes[side.index()].as_mut()
    }

    /// Sides that have a pane, in order.
    pub(super) fn sides(&self) -> Vec<Side> {
        Side::ALL
            .into_iter()
            .filter(|s| self.pane(*s).is_some())
            .collect()
    }

    /// The answer of `side` in the last turn, if it is `req` and still streaming.
    fn running(&mut self, side: Side, req: ReqId) -> Option<&mut super::conversation::Answer> {
        let a = self.turns.last_mut()?.answer_mut(side);
        (a.req == Some(req) && a.state == AnswerState::Running).then_some(a)
    }

    /// Whether the last turn is still being answered.
    pub fn is_busy(&self) -> bool {
        self.turns
            .last()
            .is_some_and(|t| t.answers.iter().any(|a| a.is_pending()))
    }

    fn on_done(&mut self, side: Side, req: ReqId, stats: GenStats) -> Vec<Cmd> {
        let Some(turn) = self.turns.last_mut() else {
            return vec![];
        };
        let a = turn.answer_mut(side);
        if a.req != Some(req) {
            return vec![];
        }
        a.stats = Some(stats);
        if a.state != AnswerState::Running {
            return vec![]; // cancelled earlier: keep the figures, nothing else changes
        }
        a.state = if stats.stop == super::stats::Stop::Cancelled {
            AnswerState::Cancelled
        } else {
            AnswerState::Done
        };
        self.advance()
    }

    fn on_load_failed(&mut self, side: Side, error: String) -> Vec<Cmd> {
        let Some(pane) = self.pane_mut(side) else {
            return vec![];
        };
        let name = match &pane.model {
            ModelState::Loading(n) => n.clone(),
            ModelState::Ready(info) => info.name.clone(),
            ModelState::Failed { name, .. } => name.clone(),
        };
        pane.model = ModelState::Failed {
            name,
            error: error.clone(),
        };
        self.queue.retain(|s| *s != side);
        if let Some(turn) = self.turns.last_mut() {
            let a = turn.answer_mut(side);
            if a.is_pending() {
                a.state = AnswerState::Failed(error);
            }
        }
        self.advance()
    }

    fn model_failed(&self, side: Side) -> bool {
        matches!(
            self.pane(side).map(|p| &p.model),
            Some(ModelState::Failed { .. })
        )
    }

    /// Send the input as a new turn.
    pub(super) fn submit(&mut self) -> Vec<Cmd> {
        if self.input.text().trim().is_empty() {
            return vec![];
        }
        if self.is_busy() {
            self.status = Some("Still answering: Esc stops it".into());
            return vec![];
        }
        let live: Vec<Side> = self
            .sides()
            .into_iter()
            .filter(|s| !self.model_failed(*s))
            .collect();
        if live.is_empty() {
            self.status = Some("No model could be loaded: see the error in the pane".into());
            return vec![];
        }
        let mut turn = Turn::new(self.input.submit(), self.mode, self.settings.clone());
        for side in Side::ALL {
            if !live.contains(&side) {
                let why = if self.pane(side).is_some() {
                    "the model is unavailable"
                } else {
                    "no model"
                };
                turn.answer_mut(side).state = AnswerState::Skipped(why.into());
            }
        }
        self.turns.push(turn);
        self.turn_counter += 1;
        self.status = None;
        for p in self.panes.iter_mut().flatten() {
            p.scroll = Scroll::Follow;
        }
        match self.mode {
            Mode::Turns => {
                self.queue = live.into();
                self.advance()
            }
            Mode::Race => live.into_iter().map(|s| self.start(s)).collect(),
        }
    }

    /// CPU threads each model gets in the mode set now (for the warm-up). Both models run
    /// on one engine thread, so even a race gives each answer all of them in turn.
    pub fn threads_for_next(&self) -> usize {
        self.threads
    }

    fn start(&mut self, side: Side) -> Cmd {
        let req = self.next_req;
        self.next_req += 1;
        let settings = self
            .turns
            .last()
            .map_or(self.settings.clone(), |t| t.settings.clone());
        let request = Request {
            messages: history(&self.turns, side, settings.system.as_deref()),
            sampling: settings.sampling(),
            max_tokens: settings.max_tokens,
            seed: settings.seed,
            turn: self.turn_counter,
            threads: self.threads,
        };
        if let Some(turn) = self.turns.last_mut() {
            let a = turn.answer_mut(side);
            a.state = AnswerState::Running;
            a.req = Some(req);
        }
        Cmd::Generate { side, req, request }
    }

    /// After an answer ends: start the next queued side (turns mode), or close the turn.
    fn advance(&mut self) -> Vec<Cmd> {
        let running = self
            .turns
            .last()
            .is_some_and(|t| t.answers.iter().any(|a| a.state == AnswerState::Running));
        if running {
            return vec![];
        }
        if let Some(side) = self.queue.pop_front() {
            return vec![self.start(side)];
        }
        if let Some(turn) = self.turns.last_mut() {
            let [t, s] = &turn.answers;
            turn.speedup = match (&t.state, &s.state, t.stats, s.stats) {
                (AnswerState::Done, AnswerState::Done, Some(ts), Some(ss)) => Speedup::of(&ts, &ss),
                _ => None,
            };
            if let Some(s) = turn.speedup {
                self.speedups.push(turn.mode, s);
            }
        }
        vec![]
    }

    /// Stop the turn: cancel what runs, skip what waits.
    pub(super) fn stop_turn(&mut self) -> Vec<Cmd> {
        self.queue.clear();
        let Some(turn) = self.turns.last_mut() else {
            return vec![];
        };
        let mut cmds = Vec::new();
        for side in Side::ALL {
            let a = turn.answer_mut(side);
            match (&a.state, a.req) {
                (AnswerState::Running, Some(req)) => {
                    a.state = AnswerState::Cancelled;
                    cmds.push(Cmd::Cancel { side, req });
                }
                (AnswerState::Queued, _) => a.state = AnswerState::Skipped("stopped".into()),
                _ => {}
            }
        }
        cmds
    }
}
