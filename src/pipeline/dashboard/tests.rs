//! `App::update` fed scripted messages, and `view` drawn into a `TestBackend`.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::*;
use crate::pipeline::plan::DEFAULT_SPLIT;
use crate::pipeline::state::{FileId, RunSettings, StageState};
use crate::record::Progress;
use crate::teacher::TeacherInfo;
use crate::train::TrainEvent;
use crate::train::metrics::{StepMetrics, ValidMetrics};

fn state() -> RunState {
    let id = |p: &str| FileId {
        path: p.into(),
        sha256: "ab".repeat(32),
    };
    RunState {
        schema_version: 1,
        settings: RunSettings {
            teacher: id("models/teacher.gguf"),
            prompts: vec![id("train.jsonl")],
            valid_prompts: vec![id("valid.jsonl")],
            budget: Budget::new(20.0, DEFAULT_SPLIT).expect("budget"),
            train_prompts_limit: None,
            answers: 1,
            valid_prompts_limit: 16,
            max_new_tokens: 256,
            layers: vec![0, 6, 12],
            student_init: "teacher blocks 0,6,12".into(),
            shape: None,
            cross_attention: false,
            mode: crate::record::Mode::Generate,
            lr: 3e-4,
            alpha: 0.0,
            freeze_embeddings: true,
            on_policy: 0.0,
            batch: 4,
            seq_len: 256,
            train_steps: None,
            seed: 42,
            speed: true,
        },
        stages: vec![StageState::default(); 4],
        train_steps: None,
        valid: None,
        eval: Vec::new(),
        created: String::new(),
        updated: String::new(),
    }
}

fn ev(at: f64, event: Event) -> Msg {
    Msg::Event { at, event }
}

fn key(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn teacher() -> TeacherInfo {
    TeacherInfo {
        file: "teacher.gguf".into(),
        path: "models/teacher.gguf".into(),
        sha256: String::new(),
        architecture: "llama".into(),
        n_params: 134_000_000,
        n_vocab: 49152,
        tokenizer_fingerprint: String::new(),
        chat_template: String::new(),
        remote: None,
    }
}

fn started(app: &mut App, stage: Stage, at: f64) {
    app.update(ev(
        at,
        Event::StageStarted {
            stage,
            note: String::new(),
            cap: Some(420.0),
        },
    ));
}

/// A run in the middle of recording the training prompts.
fn recording() -> App {
    let mut app = App::new("data/run".into(), true);
    let mut st = state();
    st.stages[0] = StageState {
        status: Status::Done,
        seconds: 31.0,
        tokens: 4000,
        summary: "16 records, 3 453 answer tokens".into(),
    };
    app.update(ev(
        0.0,
        Event::Plan {
            out: "data/run".into(),
            state: Box::new(st),
        },
    ));
    started(&mut app, Stage::RecordTrain, 1.0);
    app.update(ev(
        2.0,
        Event::Record(Progress::Started {
            teacher: teacher(),
            planned: 444,
            done: 32,
        }),
    ));
    for i in 0..4 {
        app.update(ev(
            10.0 + 4.0 * i as f64,
            Event::Record(Progress::Sequence {
                tokens: 250,
                targets: 200,
                response: format!("To change a flat tire, first remove the wheel. Step {i}."),
            }),
        ));
    }
    app
}

fn step(n: usize) -> Event {
    Event::Train(TrainEvent::Step(StepMetrics {
        hidden: 0.0,
        skipped_batches: 0,
        step: n,
        loss: 6.0 - n as f64 * 0.1,
        ce: 5.0,
        kd: 4.0 - n as f64 * 0.1,
        top1: 0.2 + n as f64 * 0.01,
        lr: 3e-4,
        grad_norm: 1.0,
        tok_s: 130.0,
        elapsed: 0.0,
    }))
}

/// A run in the middle of training.
fn training() -> App {
    let mut app = recording();
    for stage in [Stage::RecordValid, Stage::RecordTrain] {
        app.update(ev(
            100.0,
            Event::StageDone {
                stage,
                state: StageState {
                    status: Status::Done,
                    seconds: 400.0,
                    tokens: 50_000,
                    summary: "200 records".into(),
                },
            },
        ));
    }
    started(&mut app, Stage::Train, 101.0);
    app.update(ev(
        102.0,
        Event::Train(TrainEvent::Started {
            step: 0,
            steps: 60,
            params: 49_600_000,
            windows: 210,
        }),
    ));
    for n in 1..=12 {
        app.update(ev(102.0 + 10.0 * n as f64, step(n)));
    }
    app.update(ev(
        225.0,
        Event::Train(TrainEvent::Valid(ValidMetrics {
            step: 12,
            valid_ce: 4.2,
            valid_kl: 3.1,
            valid_top1: 0.35,
        })),
    ));
    app
}

fn finished(chat: bool) -> App {
    let mut app = training();
    app.chat = chat;
    let mut st = state();
    for s in &mut st.stages {
        s.status = Status::Done;
        s.summary = "done".into();
    }
    app.update(ev(1000.0, Event::Finished(Box::new(st))));
    app
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(140, 40)).expect("terminal");
    terminal.draw(|f| app.view(f)).expect("draw");
    let buf = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn recording_progress_shows_counts_and_the_latest_answer() {
    let app = recording();
    assert_eq!(app.current, Some(Stage::RecordTrain));
    assert_eq!(app.record.done, 36);
    assert_eq!(app.stages[0].mark, Mark::Done);
    assert_eq!(app.stages[1].mark, Mark::Running);
    let s = screen(&app);
    assert!(s.contains("✓ record valid"), "{s}");
    assert!(s.contains("▶ record train     0:21/7:00"), "{s}");
    assert!(s.contains("36/444 records · 1000 tokens"), "{s}");
    assert!(s.contains("latest teacher answer"), "{s}");
    assert!(s.contains("first remove the wheel. Step 3."), "{s}");
    assert!(s.contains("q quit"), "{s}");
}

#[test]
fn training_draws_gauge_stats_and_three_charts() {
    let app = training();
    assert_eq!(app.train.loss.len(), 12);
    assert_eq!(app.train.valid_ce, [(12.0, 4.2)]);
    let s = screen(&app);
    assert!(s.contains("▶ train"), "{s}");
    assert!(s.contains("step 12/60 · 130 tok/s"), "{s}");
    assert!(
        s.contains("valid ce 4.200  KL 3.100  top-1 35.0% (step 12)"),
        "{s}"
    );
    for title in ["loss / valid CE", "KL to the teacher", "top-1 agreement %"] {
        assert!(s.contains(title), "{title}: {s}");
    }
    assert!(s.contains("49.6M params"), "{s}");
}

#[test]
fn q_stops_the_worker_then_leaves_once_it_has() {
    let mut app = training();
    assert_eq!(app.update(key('q')), [Cmd::Stop]);
    assert!(app.stopping && !app.should_quit);
    assert!(screen(&app).contains("stopping"));
    app.update(ev(300.0, Event::Train(TrainEvent::Saved { step: 13 })));
    app.update(ev(301.0, Event::Stopped(Stage::Train)));
    assert!(app.should_quit);
    assert_eq!(app.stages[Stage::Train.index()].mark, Mark::Stopped);
}

#[test]
fn a_second_q_or_q_during_eval_leaves_at_once() {
    let mut app = training();
    app.update(key('q'));
    assert_eq!(app.update(key('q')), [Cmd::Stop]);
    assert!(app.should_quit);
    let mut app = training();
    started(&mut app, Stage::Eval, 500.0);
    assert_eq!(app.update(key('q')), [Cmd::Stop]);
    assert!(app.should_quit);
}

#[test]
fn the_final_screen_offers_the_chat_key() {
    let mut app = finished(true);
    assert!(app.is_finished() && app.worker_done);
    let s = screen(&app);
    assert!(s.contains("done: summary"), "{s}");
    assert!(s.contains("Press c to chat"), "{s}");
    assert!(s.contains("c chat with teacher and student"), "{s}");
    assert_eq!(app.update(key('c')), [Cmd::OpenChat]);
    let mut off = finished(false);
    assert!(off.update(key('c')).is_empty());
    assert!(!screen(&off).contains("Press c"));
    assert!(off.update(key('q')).is_empty());
    assert!(off.should_quit);
}

#[test]
fn the_chat_key_does_nothing_before_the_end() {
    let mut app = training();
    assert!(app.update(key('c')).is_empty());
    assert!(!app.should_quit);
}

#[test]
fn tab_cycles_through_started_stages_and_the_summary() {
    let mut app = training();
    assert_eq!(app.shown(), Some(Stage::Train));
    let tab = || Msg::Key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE));
    for want in [
        Some(Stage::RecordValid),
        Some(Stage::RecordTrain),
        Some(Stage::Train),
        None,
    ] {
        app.update(tab());
        assert_eq!(app.focus, want);
    }
    assert_eq!(
        app.shown(),
        Some(Stage::Train),
        "no focus shows the running stage"
    );
}

#[test]
fn a_failure_is_shown_and_q_leaves() {
    let mut app = training();
    app.update(ev(400.0, Event::Failed("training: loss became NaN".into())));
    assert_eq!(app.stages[Stage::Train.index()].mark, Mark::Failed);
    assert!(screen(&app).contains("failed: training: loss became NaN"));
    assert!(app.update(key('q')).is_empty());
    assert!(app.should_quit);
}
