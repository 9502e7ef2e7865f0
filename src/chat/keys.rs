//! Keys, mouse and paste, and the commands and scrolling they trigger. Function keys have Ctrl twins for
//! terminals that swallow them. The full list is in the help popup (`view::popup`).

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};
use ratatui::layout::{Position, Rect};

use super::app::{App, Popup, Scroll};
use super::msg::Cmd;
use super::settings::SettingsForm;
use super::transcript::Transcript;
use super::{Mode, Side, view};

/// Rows the mouse wheel scrolls.
const WHEEL_ROWS: isize = 3;

impl App {
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Vec<Cmd> {
        if key.kind == KeyEventKind::Release {
            return vec![];
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'q')) {
            return self.quit();
        }
        if self.popup.is_some() {
            self.on_popup_key(key, ctrl);
            return vec![];
        }
        if let Some(cmds) = self.on_command_key(key, ctrl) {
            return cmds;
        }
        self.on_edit_key(key, ctrl);
        vec![]
    }

    fn quit(&mut self) -> Vec<Cmd> {
        self.should_quit = true;
        self.stop_turn()
    }

    /// Keys that act on the chat rather than the text; `None` when `key` is not one.
    fn on_command_key(&mut self, key: KeyEvent, ctrl: bool) -> Option<Vec<Cmd>> {
        let alt_or_shift = key
            .modifiers
            .intersects(KeyModifiers::ALT | KeyModifiers::SHIFT);
        let none = Some(vec![]);
        match key.code {
            KeyCode::F(1) => self.popup = Some(Popup::Help),
            KeyCode::Char('?') if !ctrl && self.input.is_empty() => self.popup = Some(Popup::Help),
            KeyCode::F(2) => self.open_settings(),
            KeyCode::Char('o') if ctrl => self.open_settings(),
            KeyCode::F(3) => self.toggle_mode(),
            KeyCode::Char('t') if ctrl => self.toggle_mode(),
            KeyCode::Char('n') if ctrl => return Some(self.new_conversation()),
            KeyCode::Char('s') if ctrl => return Some(self.save()),
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return Some(self.quit()),
            KeyCode::Esc if self.is_busy() => {
                self.status = Some("Stopped".into());
                return Some(self.stop_turn());
            }
            KeyCode::Esc => self.status = None,
            KeyCode::Enter if alt_or_shift => self.input.insert("\n"),
            KeyCode::Char('j') if ctrl => self.input.insert("\n"),
            KeyCode::Enter => return Some(self.submit()),
            KeyCode::Tab | KeyCode::BackTab => self.switch_focus(),
            KeyCode::PageUp => self.page(-1),
            KeyCode::PageDown => self.page(1),
            KeyCode::Up if ctrl => self.scroll_by(self.focus, -1),
            KeyCode::Down if ctrl => self.scroll_by(self.focus, 1),
            KeyCode::Home if ctrl => self.scroll_to(self.focus, true),
            KeyCode::End if ctrl => self.scroll_to(self.focus, false),
            _ => return None,
        }
        none
    }

    fn on_edit_key(&mut self, key: KeyEvent, ctrl: bool) {
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let input = &mut self.input;
        match key.code {
            KeyCode::Left if ctrl || alt => input.word_left(),
            KeyCode::Right if ctrl || alt => input.word_right(),
            KeyCode::Left => input.left(),
            KeyCode::Right => input.right(),
            KeyCode::Home => input.home(),
            KeyCode::End => input.end(),
            KeyCode::Up => input.up(),
            KeyCode::Down => input.down(),
            KeyCode::Backspace if ctrl || alt => input.delete_word(),
            KeyCode::Backspace => input.backspace(),
            KeyCode::Char('h') if ctrl => input.backspace(), // what some terminals send
            KeyCode::Delete => input.delete(),
            KeyCode::Char('w') if ctrl => input.delete_word(),
            KeyCode::Char('u') if ctrl => input.delete_to_line_start(),
            KeyCode::Char('k') if ctrl => input.delete_to_line_end(),
            KeyCode::Char('a') if ctrl => input.home(),
            KeyCode::Char('e') if ctrl => input.end(),
            KeyCode::Char(c) if !ctrl => {
                let mut buf = [0u8; 4];
                input.insert(c.encode_utf8(&mut buf));
            }
            _ => {}
        }
    }

    fn open_settings(&mut self) {
        self.popup = Some(Popup::Settings(SettingsForm::new(&self.settings)));
    }

    fn switch_focus(&mut self) {
        let other = match self.focus {
            Side::Teacher => Side::Student,
            Side::Student => Side::Teacher,
        };
        if self.pane(other).is_some() {
            self.focus = other;
        }
    }

    /// Scroll the focused pane by a page.
    fn page(&mut self, dir: isize) {
        let height = self.pane_geometry(self.focus).map_or(1, |(_, h)| h.max(2));
        self.scroll_by(self.focus, dir * (height as isize - 1));
    }

    fn on_popup_key(&mut self, key: KeyEvent, ctrl: bool) {
        let Some(Popup::Settings(form)) = &mut self.popup else {
            self.popup = None; // any key closes the help
            return;
        };
        match key.code {
            KeyCode::Esc => self.popup = None,
            KeyCode::Enter => match form.parse() {
                Ok(s) => {
                    self.status = Some(format!(
                        "Settings: temperature {} · top-p {} · max {} tokens · seed {}{}",
                        s.temperature,
                        s.top_p,
                        s.max_tokens,
                        s.seed,
                        if s.system.is_some() {
                            " · system prompt set"
                        } else {
                            ""
                        }
                    ));
                    self.settings = s;
                    self.popup = None;
                }
                Err(e) => form.error = Some(e),
            },
            KeyCode::Up | KeyCode::BackTab => form.prev(),
            KeyCode::Down | KeyCode::Tab => form.next(),
            KeyCode::Backspace => form.backspace(),
            KeyCode::Char('u') if ctrl => form.clear_field(),
            KeyCode::Char(c) if !ctrl => {
                let mut buf = [0u8; 4];
                form.insert(c.encode_utf8(&mut buf));
            }
            _ => {}
        }
    }

    pub(super) fn on_paste(&mut self, text: &str) {
        match &mut self.popup {
            Some(Popup::Settings(form)) => form.insert(text),
            Some(Popup::Help) => {}
            None => self.input.insert(text),
        }
    }

    pub(super) fn on_mouse(&mut self, m: MouseEvent) {
        let delta = match m.kind {
            MouseEventKind::ScrollUp => -WHEEL_ROWS,
            MouseEventKind::ScrollDown => WHEEL_ROWS,
            _ => return,
        };
        let (w, h) = self.size;
        let areas = view::areas(self, Rect::new(0, 0, w, h));
        let at = Position::new(m.column, m.row);
        if let Some((side, _)) = areas.panes.iter().find(|(_, r)| r.contains(at)) {
            self.scroll_by(*side, delta);
        }
    }

    /// Clear the conversation (the speed-up averages stay: they are about the models).
    pub(super) fn new_conversation(&mut self) -> Vec<Cmd> {
        let cmds = self.stop_turn();
        self.turns.clear();
        self.conversation += 1;
        for p in self.panes.iter_mut().flatten() {
            p.scroll = Scroll::Follow;
        }
        self.status = Some("New conversation".into());
        cmds
    }

    /// Toggle turns/race for the next turn.
    pub(super) fn toggle_mode(&mut self) {
        self.mode = self.mode.toggled();
        let how = match self.mode {
            Mode::Turns => format!("one model at a time, {} threads each", self.threads),
            Mode::Race => format!(
                "both at once, a token of each in turn, {} threads",
                self.threads
            ),
        };
        self.status = Some(format!(
            "Mode {} ({how}) from the next message",
            self.mode.label()
        ));
    }

    /// The transcript to save, if there is anything to save.
    pub(super) fn save(&mut self) -> Vec<Cmd> {
        if self.turns.is_empty() {
            self.status = Some("Nothing to save yet".into());
            return vec![];
        }
        vec![Cmd::Save(Box::new(Transcript::of(self)))]
    }

    /// Rows of `side`'s pane content and its visible height at the current size.
    pub(super) fn pane_geometry(&self, side: Side) -> Option<(usize, usize)> {
        let (w, h) = self.size;
        let areas = view::areas(self, Rect::new(0, 0, w, h));
        let (_, rect) = areas.panes.iter().find(|(s, _)| *s == side)?;
        let inner = view::pane::inner(*rect);
        let rows = view::pane::lines(self, side, inner.width as usize).len();
        Some((rows, inner.height as usize))
    }

    /// Scroll `side`'s pane by `delta` rows; reaching the end follows the tail again.
    pub(super) fn scroll_by(&mut self, side: Side, delta: isize) {
        let Some((rows, height)) = self.pane_geometry(side) else {
            return;
        };
        let max_top = rows.saturating_sub(height);
        let Some(pane) = self.pane_mut(side) else {
            return;
        };
        let top = match pane.scroll {
            Scroll::Follow => max_top,
            Scroll::Top(t) => t.min(max_top),
        };
        let new = top.saturating_add_signed(delta).min(max_top);
        pane.scroll = if new >= max_top {
            Scroll::Follow
        } else {
            Scroll::Top(new)
        };
    }

    /// Show `side`'s first row, or follow its tail.
    pub(super) fn scroll_to(&mut self, side: Side, top: bool) {
        if let Some(p) = self.pane_mut(side) {
            p.scroll = if top { Scroll::Top(0) } else { Scroll::Follow };
        }
        if top {
            self.scroll_by(side, 0); // a pane that fits shows everything: follow
        }
    }
}
