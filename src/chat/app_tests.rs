//! `App::update` driven by scripted messages: no terminal, no models (gitui drives its app
//! the same way). Shared helpers are `pub(super)` for the view tests.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};

use super::app::{AppConfig, ModelState, Popup, Scroll};
use super::conversation::AnswerState;
use super::settings::Settings;
use super::stats::{GenStats, Stop};
use super::{App, Cmd, Mode, ModelInfo, Msg, ReqId, Side};
use crate::corpus::Role;

pub(super) fn settings() -> Settings {
    Settings {
        temperature: 0.0,
        top_p: 1.0,
        max_tokens: 32,
        seed: 7,
        system: None,
    }
}

pub(super) fn new_app(threads: usize, size: (u16, u16)) -> App {
    App::new(AppConfig {
        teacher: Some("teacher.gguf".into()),
        student: Some("student".into()),
        settings: settings(),
        mode: Mode::Turns,
        threads,
        size,
    })
}

pub(super) fn info(side: Side) -> ModelInfo {
    match side {
        Side::Teacher => ModelInfo {
            name: "teacher.gguf".into(),
            engine: "llama.cpp".into(),
            params: 134_500_000,
            n_ctx: 2048,
        },
        Side::Student => ModelInfo {
            name: "student".into(),
            engine: "candle".into(),
            params: 7_600_000,
            n_ctx: 2048,
        },
    }
}

/// An app with both models loaded.
pub(super) fn ready_app(size: (u16, u16)) -> App {
    let mut app = new_app(4, size);
    for side in Side::ALL {
        app.update(Msg::Loaded {
            side,
            info: info(side),
        });
    }
    app
}

pub(super) fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub(super) fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub(super) fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(KeyCode::Char(c)));
    }
}

/// Type `text`, press Enter, return the commands.
pub(super) fn send(app: &mut App, text: &str) -> Vec<Cmd> {
    type_text(app, text);
    app.update(key(KeyCode::Enter))
}

pub(super) fn stats(tokens: usize, ttft_ms: u64, total_ms: u64) -> GenStats {
    GenStats {
        prompt_tokens: 12,
        reused_tokens: 0,
        tokens,
        ttft: Some(Duration::from_millis(ttft_ms)),
        total: Duration::from_millis(total_ms),
        stop: Stop::EndOfTurn,
        threads: 4,
    }
}

/// The worker's side of one answer: started, `text` as one token per word, done.
pub(super) fn answer(app: &mut App, side: Side, req: ReqId, text: &str, s: GenStats) -> Vec<Cmd> {
    let t0 = Instant::now();
    app.update(Msg::Started { side, req, at: t0 });
    for (i, word) in text.split_inclusive(' ').enumerate() {
        let at = t0 + Duration::from_millis(10 * (i as u64 + 1));
        app.update(Msg::Token {
            side,
            req,
            text: word.into(),
            tokens: i + 1,
            at,
        });
    }
    app.update(Msg::Done {
        side,
        req,
        stats: s,
    })
}

fn generated(cmds: &[Cmd]) -> Vec<(Side, ReqId, usize)> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::Generate { side, req, request } => Some((*side, *req, request.threads)),
            _ => None,
        })
        .collect()
}

#[test]
fn turns_mode_asks_the_teacher_first_then_the_student_with_all_threads() {
    let mut app = ready_app((120, 30));
    let cmds = send(&mut app, "Hi");
    assert_eq!(generated(&cmds), [(Side::Teacher, 1, 4)]);
    let Cmd::Generate { request, .. } = &cmds[0] else {
        panic!("a generate command")
    };
    assert_eq!(request.messages.len(), 1);
    assert_eq!(request.messages[0].content, "Hi");
    assert!(app.input.is_empty());
    let cmds = answer(
        &mut app,
        Side::Teacher,
        1,
        "Hello there",
        stats(11, 200, 2200),
    );
    assert_eq!(generated(&cmds), [(Side::Student, 2, 4)]);
    let cmds = answer(&mut app, Side::Student, 2, "Hey", stats(11, 50, 550));
    assert!(cmds.is_empty());
    assert!(!app.is_busy());
    let turn = &app.turns[0];
    assert_eq!(turn.answer(Side::Teacher).text, "Hello there");
    let s = turn.speedup.expect("both finished");
    assert!((s.decode - 4.0).abs() < 1e-9);
    assert_eq!(app.speedups.average(Mode::Turns).map(|a| a.1), Some(1));
}

#[test]
fn race_mode_starts_both_at_once_with_all_the_threads() {
    let mut app = new_app(3, (120, 30));
    app.update(key(KeyCode::F(3)));
    assert_eq!(app.mode, Mode::Race);
    let cmds = send(&mut app, "Go");
    assert_eq!(
        generated(&cmds),
        [(Side::Teacher, 1, 3), (Side::Student, 2, 3)]
    );
    // Tokens of both interleave; each lands in its own pane.
    answer(&mut app, Side::Student, 2, "fast", stats(2, 10, 20));
    assert!(app.is_busy());
    answer(&mut app, Side::Teacher, 1, "slow", stats(2, 100, 200));
    assert!(!app.is_busy());
    assert_eq!(app.turns[0].mode, Mode::Race);
    assert!(app.speedups.average(Mode::Turns).is_none());
}

#[test]
fn tokens_of_other_requests_are_dropped() {
    let mut app = ready_app((120, 30));
    send(&mut app, "Hi");
    app.update(Msg::Token {
        side: Side::Teacher,
        req: 99,
        text: "stale".into(),
        tokens: 1,
        at: Instant::now(),
    });
    app.update(Msg::Token {
        side: Side::Student,
        req: 1,
        text: "wrong side".into(),
        tokens: 1,
        at: Instant::now(),
    });
    assert_eq!(app.turns[0].answer(Side::Teacher).text, "");
    assert_eq!(app.turns[0].answer(Side::Student).text, "");
}

#[test]
fn esc_cancels_the_running_answer_and_skips_the_waiting_one() {
    let mut app = ready_app((120, 30));
    send(&mut app, "Tell me a story");
    app.update(Msg::Token {
        side: Side::Teacher,
        req: 1,
        text: "Once".into(),
        tokens: 1,
        at: Instant::now(),
    });
    let cmds = app.update(key(KeyCode::Esc));
    assert_eq!(
        cmds,
        [Cmd::Cancel {
            side: Side::Teacher,
            req: 1
        }]
    );
    assert!(!app.is_busy());
    let turn = &app.turns[0];
    assert_eq!(turn.answer(Side::Teacher).state, AnswerState::Cancelled);
    assert!(matches!(
        turn.answer(Side::Student).state,
        AnswerState::Skipped(_)
    ));
    // Late output of the cancelled request: no text, but its figures are kept.
    app.update(Msg::Token {
        side: Side::Teacher,
        req: 1,
        text: " upon".into(),
        tokens: 2,
        at: Instant::now(),
    });
    let late = GenStats {
        stop: Stop::Cancelled,
        ..stats(2, 100, 300)
    };
    let cmds = app.update(Msg::Done {
        side: Side::Teacher,
        req: 1,
        stats: late,
    });
    assert!(cmds.is_empty());
    let a = app.turns[0].answer(Side::Teacher);
    assert_eq!((a.text.as_str(), a.stats), ("Once", Some(late)));
    // The partial answer stays in the teacher's history; the student never answered.
    let cmds = send(&mut app, "Go on");
    let Cmd::Generate { request, .. } = &cmds[0] else {
        panic!("a generate command")
    };
    assert_eq!(request.messages.len(), 3);
    assert_eq!(request.messages[1].content, "Once");
}

#[test]
fn a_model_that_fails_to_load_is_skipped_while_the_other_answers() {
    let mut app = new_app(2, (120, 30));
    app.update(Msg::Loaded {
        side: Side::Teacher,
        info: info(Side::Teacher),
    });
    app.update(Msg::LoadFailed {
        side: Side::Student,
        error: "'student/config.json': expected value".into(),
    });
    let cmds = send(&mut app, "Hi");
    assert_eq!(generated(&cmds), [(Side::Teacher, 1, 2)]);
    let cmds = answer(&mut app, Side::Teacher, 1, "Hello", stats(3, 10, 30));
    assert!(cmds.is_empty());
    assert!(!app.is_busy());
    assert!(matches!(
        app.turns[0].answer(Side::Student).state,
        AnswerState::Skipped(_)
    ));
    assert!(app.turns[0].speedup.is_none());
}

#[test]
fn a_model_failing_mid_turn_hands_over_to_the_next() {
    let mut app = new_app(2, (120, 30));
    send(&mut app, "Hi"); // sent while both still load
    let cmds = app.update(Msg::LoadFailed {
        side: Side::Teacher,
        error: "no such file".into(),
    });
    assert_eq!(generated(&cmds), [(Side::Student, 2, 2)]);
    assert!(matches!(
        app.turns[0].answer(Side::Teacher).state,
        AnswerState::Failed(_)
    ));
    assert!(matches!(
        app.pane(Side::Teacher).map(|p| &p.model),
        Some(ModelState::Failed { .. })
    ));
    // A generation error is shown in the answer; the turn ends.
    let cmds = app.update(Msg::Failed {
        side: Side::Student,
        req: 2,
        error: "the prompt is 9000 tokens".into(),
    });
    assert!(cmds.is_empty());
    assert!(!app.is_busy());
}

#[test]
fn each_side_is_sent_its_own_history_and_the_system_prompt() {
    let mut app = ready_app((120, 30));
    app.settings.system = Some("Be brief.".into());
    send(&mut app, "Hi");
    answer(&mut app, Side::Teacher, 1, "T one", stats(2, 1, 2));
    answer(&mut app, Side::Student, 2, "S one", stats(2, 1, 2));
    let cmds = send(&mut app, "Again");
    let Cmd::Generate { request, .. } = &cmds[0] else {
        panic!("a generate command")
    };
    let texts: Vec<&str> = request
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(texts, ["Be brief.", "Hi", "T one", "Again"]);
    assert_eq!(request.messages[0].role, Role::System);
    assert_eq!(request.turn, 2);
    let cmds = answer(&mut app, Side::Teacher, 3, "T two", stats(2, 1, 2));
    let Cmd::Generate { request, .. } = &cmds[0] else {
        panic!("a generate command")
    };
    assert_eq!(request.messages[2].content, "S one");
}

#[test]
fn enter_while_answering_keeps_the_text_and_says_why() {
    let mut app = ready_app((120, 30));
    send(&mut app, "Hi");
    let cmds = send(&mut app, "next question");
    assert!(cmds.is_empty());
    assert_eq!(app.input.text(), "next question");
    assert!(app.status.as_deref().is_some_and(|s| s.contains("Esc")));
    // Alt+Enter adds a line instead of sending.
    app.update(Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT)));
    assert_eq!(app.input.text(), "next question\n");
}

#[test]
fn settings_apply_only_when_every_field_is_valid() {
    let mut app = ready_app((120, 30));
    app.update(key(KeyCode::F(2)));
    assert!(matches!(app.popup, Some(Popup::Settings(_))));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    app.update(ctrl('u'));
    type_text(&mut app, "x");
    app.update(key(KeyCode::Enter));
    let Some(Popup::Settings(form)) = &app.popup else {
        panic!("the form stays open on an error")
    };
    assert!(
        form.error
            .as_deref()
            .is_some_and(|e| e.starts_with("Max tokens 'x'"))
    );
    app.update(key(KeyCode::Backspace));
    type_text(&mut app, "64");
    app.update(key(KeyCode::Enter));
    assert!(app.popup.is_none());
    assert_eq!(app.settings.max_tokens, 64);
    let cmds = send(&mut app, "Hi");
    let Cmd::Generate { request, .. } = &cmds[0] else {
        panic!("a generate command")
    };
    assert_eq!(request.max_tokens, 64);
    // Esc leaves the settings as they were.
    app.update(key(KeyCode::F(2)));
    app.update(key(KeyCode::Esc));
    assert!(app.popup.is_none());
    assert_eq!(app.settings.max_tokens, 64);
}

#[test]
fn paging_up_stops_following_and_ctrl_end_follows_again() {
    let mut app = ready_app((120, 20));
    send(&mut app, "Count");
    let long: String = (1..=60).map(|i| format!("line {i}\n")).collect();
    answer(&mut app, Side::Teacher, 1, &long, stats(60, 1, 60));
    app.update(key(KeyCode::PageUp));
    let top = match app.pane(Side::Teacher).map(|p| p.scroll) {
        Some(Scroll::Top(t)) => t,
        other => panic!("scrolled up, got {other:?}"),
    };
    app.update(Msg::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 10,
        row: 5,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(
        app.pane(Side::Teacher).map(|p| p.scroll),
        Some(Scroll::Top(top - 3))
    );
    app.update(Msg::Key(KeyEvent::new(KeyCode::End, KeyModifiers::CONTROL)));
    assert_eq!(
        app.pane(Side::Teacher).map(|p| p.scroll),
        Some(Scroll::Follow)
    );
    // Paging down to the end follows again too; the student pane fits and stays put.
    app.update(key(KeyCode::PageUp));
    for _ in 0..10 {
        app.update(key(KeyCode::PageDown));
    }
    assert_eq!(
        app.pane(Side::Teacher).map(|p| p.scroll),
        Some(Scroll::Follow)
    );
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::PageUp));
    assert_eq!(
        app.pane(Side::Student).map(|p| p.scroll),
        Some(Scroll::Follow)
    );
}

#[test]
fn saving_needs_a_turn_and_carries_both_sides_with_figures() {
    let mut app = ready_app((120, 30));
    assert!(app.update(ctrl('s')).is_empty());
    assert_eq!(app.status.as_deref(), Some("Nothing to save yet"));
    send(&mut app, "Hi");
    answer(&mut app, Side::Teacher, 1, "Hello", stats(11, 200, 2200));
    answer(&mut app, Side::Student, 2, "Hey", stats(11, 50, 550));
    let cmds = app.update(ctrl('s'));
    let [Cmd::Save(t)] = cmds.as_slice() else {
        panic!("one save command, got {cmds:?}")
    };
    assert_eq!(t.turns.len(), 1);
    let answers = &t.turns[0].answers;
    assert_eq!((answers[0].side, answers[1].side), ("teacher", "student"));
    assert_eq!(answers[1].tok_s, Some(20.0));
    let jsonl = t.jsonl().expect("json");
    assert_eq!(jsonl.lines().count(), 2);
    assert!(jsonl.contains(r#""temperature":0.0"#), "{jsonl}");
    let md = t.markdown("now");
    assert!(md.contains("### Student\n\n*TTFT 50 ms · 20.0 tok/s · 11 tok · 0.6 s · end of turn*"));
    assert!(
        md.contains("**Student speed-up ×4.0 tok/s · ×4.0 TTFT**"),
        "{md}"
    );
    app.update(Msg::Saved(Err("disk full".into())));
    assert_eq!(app.status.as_deref(), Some("Could not save: disk full"));
}

#[test]
fn quitting_cancels_what_runs() {
    let mut app = ready_app((120, 30));
    send(&mut app, "Hi");
    let cmds = app.update(ctrl('c'));
    assert!(app.should_quit);
    assert_eq!(
        cmds,
        [Cmd::Cancel {
            side: Side::Teacher,
            req: 1
        }]
    );
}

#[test]
fn a_new_conversation_forgets_the_turns_and_drops_late_tokens() {
    let mut app = ready_app((120, 30));
    send(&mut app, "Hi");
    let cmds = app.update(ctrl('n'));
    assert_eq!(cmds.len(), 1);
    assert!(app.turns.is_empty());
    app.update(Msg::Token {
        side: Side::Teacher,
        req: 1,
        text: "late".into(),
        tokens: 1,
        at: Instant::now(),
    });
    assert!(app.turns.is_empty());
    let cmds = send(&mut app, "Fresh");
    let Cmd::Generate { request, req, .. } = &cmds[0] else {
        panic!("a generate command")
    };
    assert_eq!((*req, request.messages.len()), (2, 1));
}

#[test]
fn paste_and_history_edit_the_input() {
    let mut app = ready_app((120, 30));
    let big = "word ".repeat(20_000); // 100 KB
    app.update(Msg::Paste(big.clone()));
    assert_eq!(app.input.text().len(), big.len());
    let cmds = app.update(key(KeyCode::Enter));
    let Cmd::Generate { request, .. } = &cmds[0] else {
        panic!("a generate command")
    };
    assert_eq!(request.messages[0].content.len(), big.len());
    app.update(key(KeyCode::Esc));
    app.update(key(KeyCode::Up));
    assert_eq!(app.input.text().len(), big.len());
    app.update(key(KeyCode::Down));
    assert!(app.input.is_empty());
    // '?' opens help only on an empty input; any key closes it.
    app.update(key(KeyCode::Char('?')));
    assert_eq!(app.popup, Some(Popup::Help));
    app.update(key(KeyCode::Char('x')));
    assert!(app.popup.is_none());
    assert!(app.input.is_empty());
}
