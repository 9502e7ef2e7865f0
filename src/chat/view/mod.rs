//! Drawing, read-only: one `render_*` per part of the screen (ratatui `todo-list` style).
//! [`areas`] is the layout, shared with `update` (scrolling and the mouse need it): panes
//! side by side from [`SIDE_BY_SIDE_MIN_WIDTH`] columns, stacked below, then a status line
//! and the input box, which grows with its text up to a third of the screen.

pub mod input;
pub mod pane;
pub mod popup;
pub mod status;
#[cfg(test)]
mod tests;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};

use super::{App, Side};

/// Narrower terminals stack the panes.
pub const SIDE_BY_SIDE_MIN_WIDTH: u16 = 80;

/// Prose.
pub const TEXT_STYLE: Style = Style::new();
/// The user's name line.
pub const USER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
/// The teacher's name line and accents.
pub const TEACHER: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
/// The student's name line and accents.
pub const STUDENT: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
/// Figures, hints and other secondary text.
pub const DIM: Style = Style::new().fg(Color::DarkGray);
/// Lines inside a code block.
pub const CODE: Style = Style::new().fg(Color::LightBlue).bg(Color::Black);
/// Code fences.
pub const FENCE: Style = Style::new().fg(Color::DarkGray);
/// Errors.
pub const ERROR: Style = Style::new().fg(Color::Red);
/// The border of the focused pane.
pub const FOCUSED: Style = Style::new().fg(Color::White);
/// Other borders.
pub const BORDER: Style = Style::new().fg(Color::Gray);
/// The speed-up.
pub const SPEEDUP: Style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);

/// The style of `side`'s name.
pub fn side_style(side: Side) -> Style {
    match side {
        Side::Teacher => TEACHER,
        Side::Student => STUDENT,
    }
}

/// Where everything goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Areas {
    /// Each pane's rectangle (border included).
    pub panes: Vec<(Side, Rect)>,
    /// The status line.
    pub status: Rect,
    /// The input box (border included).
    pub input: Rect,
}

/// The layout of `app` in `area`.
pub fn areas(app: &App, area: Rect) -> Areas {
    let status_h = u16::from(area.height >= 4);
    let text_rows = app
        .input
        .rows(area.width.saturating_sub(2) as usize)
        .0
        .len();
    let max_input = (area.height / 3).max(3);
    let input_h = (text_rows as u16).saturating_add(2).clamp(3, max_input);
    let input_h = input_h.min(area.height.saturating_sub(status_h));
    let [panes, status, input] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(status_h),
        Constraint::Length(input_h),
    ])
    .areas(area);
    let sides = app.sides();
    let rects: Vec<Rect> = if sides.len() < 2 {
        vec![panes]
    } else if area.width >= SIDE_BY_SIDE_MIN_WIDTH {
        Layout::horizontal([Constraint::Ratio(1, 2); 2])
            .split(panes)
            .to_vec()
    } else {
        Layout::vertical([Constraint::Ratio(1, 2); 2])
            .split(panes)
            .to_vec()
    };
    Areas {
        panes: sides.into_iter().zip(rects).collect(),
        status,
        input,
    }
}

/// Draw the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let a = areas(app, frame.area());
    for (side, rect) in &a.panes {
        pane::render_pane(app, *side, *rect, frame.buffer_mut());
    }
    status::render_status(app, a.status, frame.buffer_mut());
    input::render_input(app, a.input, frame);
    popup::render_popup(app, frame);
}
