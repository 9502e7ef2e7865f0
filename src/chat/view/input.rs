//! The input box: the message being written, scrolled to keep the cursor in view, with the
//! keys that matter now in its border.

use ratatui::Frame;
use ratatui::layout::{Alignment, Position, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use super::{BORDER, DIM, FOCUSED};
use crate::chat::App;

/// Draw the input box and place the terminal cursor in it.
pub fn render_input(app: &App, area: Rect, frame: &mut Frame) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let hint = if app.is_busy() {
        " answering… Esc stops "
    } else {
        " Enter send · Alt+Enter new line · F1 help "
    };
    let mut block = Block::bordered()
        .border_style(if app.popup.is_none() { FOCUSED } else { BORDER })
        .title(" Message ");
    if area.width as usize >= hint.chars().count() + 12 {
        block = block.title(Line::styled(hint, DIM).alignment(Alignment::Right));
    }
    let inner = block.inner(area);
    let (rows, (row, col)) = app.input.rows(inner.width as usize);
    let height = (inner.height as usize).max(1);
    // Scroll so the cursor's row is the last visible one when it is below the box.
    let top = (row + 1).saturating_sub(height);
    let visible: Vec<Line> = rows
        .into_iter()
        .skip(top)
        .take(height)
        .map(Line::raw)
        .collect();
    let text = if app.input.is_empty() {
        vec![Line::styled("Ask both models something…", DIM)]
    } else {
        visible
    };
    frame.render_widget(Paragraph::new(text).block(block), area);
    if app.popup.is_none() && inner.width > 0 && inner.height > 0 {
        let x = inner.x + (col as u16).min(inner.width.saturating_sub(1));
        let y = inner.y + ((row - top) as u16).min(inner.height - 1);
        frame.set_cursor_position(Position::new(x, y));
    }
}
