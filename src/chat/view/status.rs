//! The status line: the latest message to the user, or the student's speed-up this turn
//! and on average; the mode and the help key on the right.

use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use super::{DIM, SPEEDUP};
use crate::chat::App;
use crate::chat::app::ModelState;
use crate::chat::stats::Speedup;

/// `speed-up ×7.9 tok/s · ×3.1 TTFT`.
pub fn speedup_text(s: &Speedup) -> String {
    let ttft = s.ttft.map_or(String::new(), |t| format!(" · ×{t:.1} TTFT"));
    format!("speed-up ×{:.1} tok/s{ttft}", s.decode)
}

fn left(app: &App) -> Line<'static> {
    if let Some(msg) = &app.status {
        return Line::raw(format!(" {msg}"));
    }
    let failed = app.sides().iter().any(|s| {
        matches!(
            app.pane(*s).map(|p| &p.model),
            Some(ModelState::Failed { .. })
        )
    });
    if app.sides().len() < 2 || failed {
        return Line::default();
    }
    let last = app.turns.last();
    let mut spans = vec![Span::raw(" ")];
    match last.and_then(|t| t.speedup.map(|s| (t.mode, s))) {
        Some((mode, s)) => {
            spans.push(Span::styled(
                format!("Student {}", speedup_text(&s)),
                SPEEDUP,
            ));
            if let Some((avg, n)) = app.speedups.average(mode) {
                spans.push(Span::raw(format!(
                    " · avg ×{avg:.1} over {n} turn{} ({})",
                    if n == 1 { "" } else { "s" },
                    mode.label()
                )));
            }
        }
        None if app.is_busy() => spans.push(Span::styled("answering…", DIM)),
        None => match app.speedups.average(app.mode) {
            Some((avg, n)) => spans.push(Span::raw(format!(
                "Student speed-up avg ×{avg:.1} over {n} turns ({})",
                app.mode.label()
            ))),
            None => spans.push(Span::styled(
                "Speed-up appears when both have answered",
                DIM,
            )),
        },
    }
    Line::from(spans)
}

/// Draw the status line.
pub fn render_status(app: &App, area: Rect, buf: &mut Buffer) {
    if area.height == 0 {
        return;
    }
    let right = if area.width >= 60 {
        format!("{} mode · F1 help ", app.mode.label())
    } else {
        String::new()
    };
    let right_w = (right.chars().count() as u16).min(area.width);
    let left_area = Rect {
        width: area.width.saturating_sub(right_w.saturating_add(1)),
        ..area
    };
    let right_area = Rect {
        x: area.x + area.width - right_w,
        width: right_w,
        ..area
    };
    Paragraph::new(left(app)).render(left_area, buf);
    Paragraph::new(Line::styled(right, DIM).alignment(Alignment::Right)).render(right_area, buf);
}
