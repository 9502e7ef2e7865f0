//! The `distill run` dashboard, Elm-style (ratatui's TEA guide): [`App::update`] folds a
//! [`Msg`] into the state and returns [`Cmd`]s for the runtime, without I/O; `view` only
//! draws; [`term::run`] pumps terminal input, worker events and ticks.

pub mod term;
mod view;

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::event::Event;
use super::plan::{Budget, Stage};
use super::progress::{RecordProgress, TrainProgress};
use super::state::{RunState, Status};
use super::summary::{EvalRow, summary_lines};

/// Everything that can change the dashboard.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key was pressed.
    Key(KeyEvent),
    /// The terminal was resized.
    Resize,
    /// Time passes (seconds since the run began).
    Tick(f64),
    /// The stage worker reported, `at` seconds into the run.
    Event {
        /// Seconds since the run began.
        at: f64,
        /// What happened.
        event: Event,
    },
}

/// What the dashboard asks of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Ask the worker to stop (it keeps its work: the record stage drops only the shard in
    /// progress, training writes a checkpoint).
    Stop,
    /// Leave the dashboard and open the chat with teacher and student.
    OpenChat,
}

/// How a stage looks in the stage list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Not started.
    Pending,
    /// Started in an earlier run; this run resumes it.
    Resumable,
    /// Running now.
    Running,
    /// Finished.
    Done,
    /// Stopped on request.
    Stopped,
    /// Failed.
    Failed,
}

/// One line of the stage list.
#[derive(Debug, Clone)]
pub struct StageRow {
    /// Its mark.
    pub mark: Mark,
    /// Its summary once done.
    pub summary: String,
    /// Seconds it used in earlier runs, or in total once done.
    pub seconds: f64,
    /// When it started in this run.
    pub started_at: Option<f64>,
}

/// The dashboard's state.
#[derive(Debug, Clone)]
pub struct App {
    /// Run directory.
    pub out: PathBuf,
    /// Teacher file.
    pub teacher: String,
    /// Budget, once the plan arrived.
    pub budget: Option<Budget>,
    /// How the student starts, in words (from the plan).
    pub student_init: String,
    /// Whether the teacher answers prompts or scores given text (from the plan).
    pub mode: crate::record::Mode,
    /// The stage list, in [`Stage::ALL`] order.
    pub stages: Vec<StageRow>,
    /// The running stage.
    pub current: Option<Stage>,
    /// The stage whose pane is shown (`None`: the running one, or the summary at the end).
    pub focus: Option<Stage>,
    /// Recording progress (of the latest record stage).
    pub record: RecordProgress,
    /// Training progress.
    pub train: TrainProgress,
    /// Evaluation steps so far.
    pub eval_log: Vec<String>,
    /// The eval table.
    pub eval: Vec<EvalRow>,
    /// The final summary, once every stage is done.
    pub summary: Vec<String>,
    /// The worker's error, if it failed.
    pub error: Option<String>,
    /// A stop was requested and the worker is finishing its unit of work.
    pub stopping: bool,
    /// The worker has ended (finished, stopped or failed).
    pub worker_done: bool,
    /// Whether the chat key is offered at the end.
    pub chat: bool,
    /// Seconds since the run began.
    pub now: f64,
    /// The runtime should leave.
    pub should_quit: bool,
}

impl App {
    /// A dashboard for the run in `out`; `chat` offers the chat key at the end.
    pub fn new(out: PathBuf, chat: bool) -> Self {
        App {
            out,
            teacher: String::new(),
            budget: None,
            student_init: String::new(),
            mode: crate::record::Mode::Generate,
            stages: Stage::ALL
                .iter()
                .map(|_| StageRow {
                    mark: Mark::Pending,
                    summary: String::new(),
                    seconds: 0.0,
                    started_at: None,
                })
                .collect(),
            current: None,
            focus: None,
            record: RecordProgress::default(),
            train: TrainProgress::default(),
            eval_log: Vec::new(),
            eval: Vec::new(),
            summary: Vec::new(),
            error: None,
            stopping: false,
            worker_done: false,
            chat,
            now: 0.0,
            should_quit: false,
        }
    }

    /// Whether every stage finished and the summary is up.
    pub fn is_finished(&self) -> bool {
        !self.summary.is_empty()
    }

    /// Fold `msg` into the state; the commands for the runtime.
    pub fn update(&mut self, msg: Msg) -> Vec<Cmd> {
        match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Resize => Vec::new(),
            Msg::Tick(at) => {
                self.tick(at);
                Vec::new()
            }
            Msg::Event { at, event } => {
                self.tick(at);
                self.on_event(at, event);
                Vec::new()
            }
        }
    }

    fn tick(&mut self, at: f64) {
        if self.worker_done {
            return; // the clocks stop with the run
        }
        self.now = at;
        self.record.now = self.record.now.max(at);
        self.train.now = self.train.now.max(at);
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit(),
            _ if ctrl_c => self.quit(),
            KeyCode::Char('c') if self.is_finished() && self.chat => {
                self.should_quit = true;
                vec![Cmd::OpenChat]
            }
            KeyCode::Tab | KeyCode::Right => {
                self.cycle_focus(1);
                Vec::new()
            }
            KeyCode::BackTab | KeyCode::Left => {
                self.cycle_focus(Stage::ALL.len());
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// q: nothing to wait for, or a second q, leaves now; otherwise ask the worker to stop
    /// and leave once it has (eval keeps nothing partial, so it is not waited for).
    fn quit(&mut self) -> Vec<Cmd> {
        if self.worker_done || self.stopping || self.current.is_none_or(|s| s == Stage::Eval) {
            self.should_quit = true;
            return if self.worker_done {
                Vec::new()
            } else {
                vec![Cmd::Stop]
            };
        }
        self.stopping = true;
        vec![Cmd::Stop]
    }

    /// Move the shown pane among the stages that have something to show, then the summary.
    fn cycle_focus(&mut self, by: usize) {
        let shown: Vec<Option<Stage>> = Stage::ALL
            .iter()
            .filter(|s| self.stages[s.index()].mark != Mark::Pending)
            .map(|&s| Some(s))
            .chain(std::iter::once(None))
            .collect();
        let here = shown.iter().position(|&f| f == self.focus).unwrap_or(0);
        self.focus = shown[(here + by) % shown.len()];
    }

    fn on_event(&mut self, at: f64, event: Event) {
        match event {
            Event::Plan { out, state } => self.on_plan(out, &state),
            Event::StageStarted { stage, cap, .. } => {
                self.current = Some(stage);
                let row = &mut self.stages[stage.index()];
                row.mark = Mark::Running;
                row.started_at = Some(at);
                if stage.is_record() {
                    self.record = RecordProgress::new(at, cap);
                } else if stage == Stage::Train {
                    self.train = TrainProgress::new(at, cap);
                }
            }
            Event::Record(p) => self.record.on(at, &p),
            Event::History { steps, valid } => self.train.history(&steps, &valid),
            Event::Train(e) => self.train.on(at, &e),
            Event::Eval(line) => self.eval_log.push(line),
            Event::StageDone { stage, state } => {
                let row = &mut self.stages[stage.index()];
                row.mark = Mark::Done;
                row.summary = state.summary;
                row.seconds = state.seconds;
                row.started_at = None;
            }
            Event::Finished(state) => {
                self.worker_done = true;
                self.current = None;
                self.eval = state.eval.clone();
                self.summary = summary_lines(&state, &self.out);
                self.focus = None;
                self.on_plan(self.out.clone(), &state);
            }
            Event::Stopped(stage) => {
                self.worker_done = true;
                self.stages[stage.index()].mark = Mark::Stopped;
                self.should_quit |= self.stopping;
            }
            Event::Failed(e) => {
                self.worker_done = true;
                if let Some(s) = self.current {
                    self.stages[s.index()].mark = Mark::Failed;
                }
                self.error = Some(e);
                self.should_quit |= self.stopping;
            }
        }
    }

    fn on_plan(&mut self, out: PathBuf, state: &RunState) {
        self.out = out;
        self.teacher = state
            .settings
            .teacher
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        self.budget = Some(state.settings.budget);
        self.student_init = state.settings.student_init.clone();
        self.mode = state.settings.mode;
        for stage in Stage::ALL {
            let s = state.stage(stage);
            let row = &mut self.stages[stage.index()];
            row.seconds = s.seconds;
            row.summary = s.summary.clone();
            row.mark = match s.status {
                Status::Done => Mark::Done,
                Status::Started => Mark::Resumable,
                Status::Pending => Mark::Pending,
            };
        }
        if !state.eval.is_empty() {
            self.eval = state.eval.clone();
        }
    }

    /// The stage whose pane is shown, `None` for the summary (or the plan before any).
    pub fn shown(&self) -> Option<Stage> {
        self.focus.or(self.current)
    }

    /// Seconds `stage` may use in all: its earlier seconds plus the time cap it started
    /// with (record train, train), the planned eval share, nothing for record valid.
    pub fn stage_limit(&self, stage: Stage) -> Option<f64> {
        let earlier = self.stages[stage.index()].seconds;
        match stage {
            Stage::RecordValid => None,
            Stage::RecordTrain => self.record.cap.map(|c| earlier + c),
            Stage::Train => self.train.cap.map(|c| earlier + c),
            Stage::Eval => self.budget.map(|b| b.eval_seconds()),
        }
    }

    /// Seconds `stage` has used, this run included.
    pub fn stage_seconds(&self, stage: Stage) -> f64 {
        let row = &self.stages[stage.index()];
        row.seconds + row.started_at.map_or(0.0, |t| (self.now - t).max(0.0))
    }
}

#[cfg(test)]
mod tests;
