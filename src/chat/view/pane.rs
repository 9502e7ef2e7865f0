//! One model's pane: its model line, the conversation as it saw it (the user's messages and
//! its own answers, code blocks set apart), the figures after each answer, and the live
//! figures of the latest answer in the bottom border.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget};

use super::{BORDER, CODE, DIM, ERROR, FENCE, FOCUSED, TEXT_STYLE, USER, side_style};
use crate::chat::app::{App, ModelState, Scroll};
use crate::chat::conversation::{Answer, AnswerState};
use crate::chat::text::{self, RowKind};
use crate::chat::{ModelInfo, Side};

/// The text area inside a pane's border.
pub fn inner(rect: Rect) -> Rect {
    Block::bordered().inner(rect)
}

fn push_rows(out: &mut Vec<Line<'static>>, text: &str, width: usize) {
    for (kind, row) in text::rows(text, width) {
        let style = match kind {
            RowKind::Text => TEXT_STYLE,
            RowKind::Code => CODE,
            RowKind::Fence => FENCE,
        };
        out.push(Line::styled(row, style));
    }
}

fn push_wrapped(
    out: &mut Vec<Line<'static>>,
    text: &str,
    width: usize,
    style: ratatui::style::Style,
) {
    for line in text::clean(text).split('\n') {
        out.extend(
            text::wrap(line, width)
                .into_iter()
                .map(|r| Line::styled(r, style)),
        );
    }
}

/// `134.5M` or `7.6M`.
pub fn params(n: u64) -> String {
    format!("{:.1}M", n as f64 / 1e6)
}

fn model_line(info: &ModelInfo) -> String {
    format!(
        "{} · {} · {} params · ctx {}",
        info.name,
        info.engine,
        params(info.params),
        info.n_ctx
    )
}

/// All rows of `side`'s pane at `width` columns.
pub fn lines(app: &App, side: Side, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut out = Vec::new();
    match app.pane(side).map(|p| &p.model) {
        Some(ModelState::Loading(name)) => {
            push_wrapped(&mut out, &format!("Loading {name}…"), width, DIM)
        }
        Some(ModelState::Failed { name, error }) => {
            push_wrapped(
                &mut out,
                &format!("✗ Could not load {name}: {error}"),
                width,
                ERROR,
            );
        }
        Some(ModelState::Ready(info)) if app.turns.is_empty() => {
            push_wrapped(&mut out, &model_line(info), width, DIM);
            push_wrapped(
                &mut out,
                "Ready. Type a message below and press Enter.",
                width,
                DIM,
            );
        }
        _ => {}
    }
    for (i, turn) in app.turns.iter().enumerate() {
        if i > 0 || !out.is_empty() {
            out.push(Line::default());
        }
        out.push(Line::styled("You", USER));
        push_rows(&mut out, &turn.user, width);
        out.push(Line::default());
        answer_lines(&mut out, app, side, turn.answer(side), width);
    }
    out
}

fn answer_lines(out: &mut Vec<Line<'static>>, app: &App, side: Side, a: &Answer, width: usize) {
    let name = match app.pane(side).map(|p| &p.model) {
        Some(ModelState::Ready(info)) => format!("{} ({})", side.label(), info.engine),
        _ => side.label().to_string(),
    };
    out.push(Line::styled(name, side_style(side)));
    let text = text::trim_blank_lines(&a.text);
    if !text.is_empty() {
        push_rows(out, text, width);
    }
    let waiting = match &a.state {
        AnswerState::Queued => Some("… waiting for its turn"),
        AnswerState::Running if a.started.is_none() => Some("… starting"),
        AnswerState::Running if a.tokens == 0 => Some("… reading the prompt"),
        _ => None,
    };
    if let Some(w) = waiting {
        push_wrapped(out, w, width, DIM);
    }
    match (&a.state, a.outcome()) {
        (AnswerState::Failed(e), _) => push_wrapped(out, &format!("✗ {e}"), width, ERROR),
        (AnswerState::Skipped(_), Some(o)) => push_wrapped(out, &format!("({o})"), width, DIM),
        (_, Some(outcome)) => {
            let figures = a.figures(app.now).map(|f| format!("{} · ", f.line()));
            let line = format!("— {}{outcome}", figures.unwrap_or_default());
            push_wrapped(out, &line, width, DIM);
        }
        _ => {}
    }
}

/// What the bottom border says: the latest answer's figures and state.
fn footer(app: &App, side: Side) -> Line<'static> {
    let Some(a) = app.turns.last().map(|t| t.answer(side)) else {
        return Line::default();
    };
    let state = match &a.state {
        AnswerState::Queued => "waiting",
        AnswerState::Running => "writing",
        AnswerState::Done => "done",
        AnswerState::Cancelled => "stopped",
        AnswerState::Skipped(_) => "skipped",
        AnswerState::Failed(_) => "failed",
    };
    let figures = a.figures(app.now).map(|f| f.line()).unwrap_or_default();
    let sep = if figures.is_empty() { "" } else { " · " };
    Line::from(vec![
        Span::raw(" "),
        Span::styled(figures, side_style(side)),
        Span::styled(format!("{sep}{state} "), DIM),
    ])
}

/// Draw `side`'s pane into `rect`.
pub fn render_pane(app: &App, side: Side, rect: Rect, buf: &mut Buffer) {
    let Some(pane) = app.pane(side) else { return };
    let title = match &pane.model {
        ModelState::Ready(info) => format!(" {} · {} ", side.label(), info.name),
        ModelState::Loading(name) | ModelState::Failed { name, .. } => {
            format!(" {} · {name} ", side.label())
        }
    };
    let border = if app.focus == side && app.sides().len() > 1 {
        FOCUSED
    } else {
        BORDER
    };
    let mut block = Block::bordered()
        .border_style(border)
        .title(Line::styled(title, side_style(side)))
        .title_bottom(footer(app, side));
    let inner = inner(rect);
    let rows = lines(app, side, inner.width as usize);
    let height = inner.height as usize;
    let max_top = rows.len().saturating_sub(height);
    let top = match pane.scroll {
        Scroll::Follow => max_top,
        Scroll::Top(t) => t.min(max_top),
    };
    if top < max_top {
        let more = max_top - top;
        block = block.title_bottom(
            Line::styled(format!(" ↓ {more} more · Ctrl+End "), DIM).alignment(Alignment::Right),
        );
    }
    let visible: Vec<Line<'static>> = rows.into_iter().skip(top).take(height).collect();
    Paragraph::new(visible).block(block).render(rect, buf);
}
