//! Popups over the panes: the key help and the settings form.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::{DIM, ERROR, USER};
use crate::chat::App;
use crate::chat::app::Popup;
use crate::chat::settings::{FIELDS, SettingsForm};

/// The keys, as the help popup lists them.
pub const KEYS: [(&str, &str); 18] = [
    ("Enter", "send to both models"),
    ("Alt+Enter, Ctrl+J", "new line"),
    ("Esc", "stop the answers"),
    ("Ctrl+N", "new conversation"),
    ("F3, Ctrl+T", "mode: turns (fair) / race"),
    ("F2, Ctrl+O", "settings"),
    ("Ctrl+S", "save transcript (JSONL + Markdown)"),
    ("Tab", "focus the other pane"),
    ("PgUp/PgDn, wheel", "scroll a pane"),
    ("Ctrl+↑/↓", "scroll one line"),
    ("Ctrl+Home/End", "top / follow the end"),
    ("↑/↓", "move a line, or browse sent messages"),
    ("←/→, Home/End", "move the cursor"),
    ("Ctrl+←/→", "move by word"),
    ("Ctrl+W, Ctrl+U, Ctrl+K", "delete word / to start / to end"),
    ("F1, ?", "this help"),
    ("Ctrl+C, Ctrl+Q", "quit"),
    ("Shift+drag", "select text (mouse is captured)"),
];

/// A `w`×`h` rectangle centred in `area`, clamped to it.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// Draw the open popup, if any.
pub fn render_popup(app: &App, frame: &mut Frame) {
    match &app.popup {
        None => {}
        Some(Popup::Help) => render_help(frame),
        Some(Popup::Settings(form)) => render_settings(form, frame),
    }
}

fn render_help(frame: &mut Frame) {
    let key_w = KEYS
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<key_w$}"), USER),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::styled("any key closes", DIM));
    let area = centered(frame.area(), 66, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    let block = Block::bordered().title(" Keys ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_settings(form: &SettingsForm, frame: &mut Frame) {
    let area = centered(frame.area(), 72, 12);
    let label_w = FIELDS.iter().map(|f| f.len()).max().unwrap_or(0) + 2;
    let mut lines = Vec::new();
    for (i, (label, value)) in FIELDS.iter().zip(&form.values).enumerate() {
        let selected = i == form.selected;
        let style = if selected {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        let marker = if selected { "▶ " } else { "  " };
        let shown = if i == 4 && value.is_empty() && !selected {
            "(the chat template's default)".to_string()
        } else {
            value.clone()
        };
        lines.push(Line::from(vec![
            Span::raw(marker),
            Span::styled(format!("{label:<label_w$}"), USER),
            Span::styled(shown, style),
        ]));
    }
    lines.push(Line::default());
    match &form.error {
        Some(e) => lines.push(Line::styled(e.clone(), ERROR)),
        None => lines.push(Line::styled("Applies from the next message.", DIM)),
    }
    lines.push(Line::styled(
        "↑/↓ field · type to edit · Ctrl+U clear · Enter apply · Esc cancel",
        DIM,
    ));
    frame.render_widget(Clear, area);
    let block = Block::bordered().title(" Settings ");
    let inner = block.inner(area);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
    // Cursor at the end of the selected field (when that row is visible).
    let value_w = crate::chat::text::width(&form.values[form.selected]);
    let offset = u16::try_from(2 + label_w + value_w).unwrap_or(u16::MAX);
    let x = inner.x.saturating_add(offset);
    let y = inner.y.saturating_add(form.selected as u16);
    if x < inner.right() && y < inner.bottom() {
        frame.set_cursor_position(Position::new(x, y));
    }
}
