//! The screen under `TestBackend` in the main states: assertions on the buffer's text
//! (and a few styles), after scripted messages.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::Color;

use crate::chat::App;
use crate::chat::app_tests::{answer, ctrl, info, key, new_app, ready_app, send, stats, type_text};
use crate::chat::{Msg, Side};

fn terminal(app: &App) -> Terminal<TestBackend> {
    let (w, h) = app.size;
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    t.draw(|f| app.view(f)).expect("draw");
    t
}

/// The screen's rows as text (wide characters once, their spacer cell dropped).
fn screen(app: &App) -> Vec<String> {
    let t = terminal(app);
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            let mut row = String::new();
            let mut skip = 0;
            for x in 0..buf.area.width {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let sym = buf[(x, y)].symbol();
                skip = unicode_width::UnicodeWidthStr::width(sym).saturating_sub(1);
                row.push_str(sym);
            }
            row
        })
        .collect()
}

fn find(rows: &[String], needle: &str) -> Option<(usize, usize)> {
    rows.iter()
        .enumerate()
        .find_map(|(y, r)| r.find(needle).map(|x| (y, r[..x].chars().count())))
}

fn assert_shows(rows: &[String], needle: &str) {
    assert!(
        find(rows, needle).is_some(),
        "'{needle}' not on screen:\n{}",
        rows.join("\n")
    );
}

#[test]
fn a_finished_turn_shows_both_answers_their_figures_and_the_speedup() {
    let mut app = ready_app((100, 16));
    send(&mut app, "Hi");
    answer(
        &mut app,
        Side::Teacher,
        1,
        "Hello! How can I help?",
        stats(11, 200, 2200),
    );
    answer(&mut app, Side::Student, 2, "Hey there.", stats(11, 50, 550));
    let expected = [
        "┌ Teacher · teacher.gguf ────────────────────────┐┌ Student · student ─────────────────────────────┐",
        "│You                                             ││You                                             │",
        "│Hi                                              ││Hi                                              │",
        "│                                                ││                                                │",
        "│Teacher (llama.cpp)                             ││Student (candle)                                │",
        "│Hello! How can I help?                          ││Hey there.                                      │",
        "│— TTFT 200 ms · 5.0 tok/s · 11 tok · 2.2 s · end││— TTFT 50 ms · 20.0 tok/s · 11 tok · 0.6 s · end│",
        "│of turn                                         ││of turn                                         │",
        "│                                                ││                                                │",
        "│                                                ││                                                │",
        "│                                                ││                                                │",
        "└ TTFT 200 ms · 5.0 tok/s · 11 tok · 2.2 s · done┘└ TTFT 50 ms · 20.0 tok/s · 11 tok · 0.6 s · done┘",
        " Student speed-up ×4.0 tok/s · ×4.0 TTFT · avg ×4.0 over 1 turn (turns)        turns mode · F1 help ",
        "┌ Message ────────────────────────────────────────────── Enter send · Alt+Enter new line · F1 help ┐",
        "│Ask both models something…                                                                        │",
        "└──────────────────────────────────────────────────────────────────────────────────────────────────┘",
    ];
    assert_eq!(screen(&app), expected);
}

#[test]
fn loading_models_and_a_streaming_answer_show_live_state() {
    let mut app = new_app(2, (100, 14));
    let rows = screen(&app);
    assert_shows(&rows, "Loading teacher.gguf…");
    assert_shows(&rows, "Loading student…");
    assert_shows(&rows, "Ask both models something…");
    app.update(Msg::Loaded {
        side: Side::Teacher,
        info: info(Side::Teacher),
    });
    assert_shows(
        &screen(&app),
        "teacher.gguf · llama.cpp · 134.5M params · ctx",
    );
    send(&mut app, "Hi");
    let t0 = std::time::Instant::now();
    app.update(Msg::Started {
        side: Side::Teacher,
        req: 1,
        at: t0,
    });
    app.update(Msg::Token {
        side: Side::Teacher,
        req: 1,
        text: "Hel".into(),
        tokens: 1,
        at: t0 + std::time::Duration::from_millis(120),
    });
    app.update(Msg::Tick(t0 + std::time::Duration::from_millis(1500)));
    let rows = screen(&app);
    assert_shows(&rows, "TTFT 120 ms · - tok/s · 1 tok · 1.5 s · writing");
    assert_shows(&rows, "… waiting for its turn");
    assert_shows(&rows, "answering… Esc stops");
}

#[test]
fn a_student_that_failed_to_load_shows_its_error_in_its_pane() {
    let mut app = ready_app((100, 14));
    app.update(Msg::LoadFailed {
        side: Side::Student,
        error: "'s/config.json': expected value at line 1".into(),
    });
    send(&mut app, "Hi");
    answer(&mut app, Side::Teacher, 1, "Hello", stats(3, 10, 30));
    let rows = screen(&app);
    let (y, x) = find(&rows, "✗ Could not load student").expect("error shown");
    assert!(x > 50, "in the right-hand pane: {x}");
    assert!(y < 3);
    assert_shows(&rows, "(skipped: the model is unavailable)");
    assert_shows(&rows, "Teacher (llama.cpp)");
    assert_shows(&rows, "of turn");
}

#[test]
fn narrow_terminals_stack_the_panes() {
    let app = ready_app((60, 30));
    let rows = screen(&app);
    let (ty, tx) = find(&rows, "Teacher · teacher.gguf").expect("teacher pane");
    let (sy, sx) = find(&rows, "Student · student").expect("student pane");
    assert_eq!((tx, sx), (2, 2));
    assert!(sy > ty + 5, "student below teacher: {ty} {sy}");
}

#[test]
fn code_blocks_are_drawn_apart_and_wide_characters_whole() {
    let mut app = ready_app((100, 20));
    send(&mut app, "日本語で答えて");
    let text = "Here:\n```python\nprint('hi')\n```\n東京は日本の首都です。東京は日本の首都です。東京は日本の首都です。";
    answer(&mut app, Side::Teacher, 1, text, stats(30, 10, 300));
    let t = terminal(&app);
    let rows = screen(&app);
    let (y, x) = find(&rows, "│ print('hi')").expect("code row");
    let cell = &t.backend().buffer()[(x as u16 + 3, y as u16)];
    assert_eq!(cell.bg, Color::Black, "code has its own background");
    // The 48-column pane holds 24 wide characters a row; none is cut in half.
    let cjk: Vec<String> = rows
        .iter()
        .filter(|r| r.contains('首'))
        .map(|r| {
            r.chars()
                .skip(1)
                .take_while(|c| *c != '│')
                .collect::<String>()
        })
        .collect();
    assert_eq!(cjk.len(), 2, "{cjk:?}");
    assert_eq!(cjk.concat().trim_end(), "東京は日本の首都です。".repeat(3));
    assert_shows(&rows, "日本語で答えて");
}

#[test]
fn help_and_settings_popups_are_drawn_over_the_panes() {
    let mut app = ready_app((100, 30));
    app.update(key(KeyCode::F(1)));
    let rows = screen(&app);
    assert_shows(&rows, "┌ Keys ");
    assert_shows(&rows, "save transcript (JSONL + Markdown)");
    app.update(key(KeyCode::Esc));
    app.update(ctrl('o'));
    let rows = screen(&app);
    assert_shows(&rows, "┌ Settings ");
    assert_shows(&rows, "▶ Temperature    0");
    assert_shows(&rows, "System prompt  (the chat template's default)");
}

#[test]
fn any_size_down_to_nothing_draws_without_panicking() {
    let mut app = ready_app((20, 5));
    send(&mut app, "Hi");
    answer(
        &mut app,
        Side::Teacher,
        1,
        &"word ".repeat(200),
        stats(200, 10, 900),
    );
    type_text(
        &mut app,
        "a message being typed that is longer than the box",
    );
    for popup in [None, Some(KeyCode::F(1)), Some(KeyCode::F(2))] {
        if let Some(k) = popup {
            app.update(key(k));
        }
        for w in 0..=24 {
            for h in 0..=8 {
                app.update(Msg::Resize(w, h));
                screen(&app);
            }
        }
        app.update(key(KeyCode::Esc));
    }
    app.update(Msg::Resize(20, 5));
    let rows = screen(&app);
    assert_eq!(rows.len(), 5);
    assert!(
        rows.iter()
            .all(|r| unicode_width::UnicodeWidthStr::width(r.as_str()) == 20)
    );
}

#[test]
fn a_100_kb_paste_shows_its_end_with_the_cursor() {
    let mut app = ready_app((100, 30));
    let mut big = "lorem ipsum dolor sit amet ".repeat(3_800); // ~100 KB
    big.push_str("\nTHE END");
    app.update(Msg::Paste(big));
    let mut t = terminal(&app);
    let rows = screen(&app);
    let (y, _) = find(&rows, "THE END").expect("the end of the paste is visible");
    assert!(
        y >= 20,
        "the input grew to a third of the screen and shows its end"
    );
    let cursor = t.get_cursor_position().expect("cursor");
    assert_eq!(cursor.y as usize, y);
}
