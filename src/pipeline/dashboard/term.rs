//! The event pump (ratatui's component template `tui.rs`): draw, then wait for a key, a
//! worker event or a tick, fold it into the [`App`], hand its commands to the caller. The
//! terminal is set up with `ratatui::try_init` (which also restores it on panic) and always
//! restored before returning.

use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;

use super::{App, Cmd, Msg};
use crate::pipeline::event::Event;
use crate::{Error, Result};

/// Redraw period for clocks and ETAs.
const TICK: Duration = Duration::from_millis(500);

/// Why the dashboard closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user quit (or the run ended and the user left).
    Quit,
    /// The user asked for the chat.
    Chat,
}

/// Run the dashboard until the user leaves; `on_cmd` receives [`Cmd::Stop`]. Returns the
/// final app state with the reason.
///
/// # Errors
/// [`Error::Io`] when the terminal cannot be set up or read.
pub fn run(
    app: App,
    events: UnboundedReceiver<Event>,
    on_cmd: &mut dyn FnMut(Cmd),
) -> Result<(App, Exit)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let mut terminal = ratatui::try_init().map_err(|e| Error::io("terminal", e))?;
    let result = rt.block_on(pump(&mut terminal, app, events, on_cmd));
    ratatui::restore();
    result
}

async fn pump(
    terminal: &mut ratatui::DefaultTerminal,
    mut app: App,
    mut events: UnboundedReceiver<Event>,
    on_cmd: &mut dyn FnMut(Cmd),
) -> Result<(App, Exit)> {
    let clock = Instant::now();
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    loop {
        terminal
            .draw(|f| app.view(f))
            .map_err(|e| Error::io("terminal", e))?;
        let msg = tokio::select! {
            Some(ev) = input.next() => match ev.map_err(|e| Error::io("terminal", e))? {
                TermEvent::Key(k) if k.kind == KeyEventKind::Press => Msg::Key(k),
                TermEvent::Resize(..) => Msg::Resize,
                _ => continue,
            },
            Some(event) = events.recv() => Msg::Event { at: clock.elapsed().as_secs_f64(), event },
            _ = tick.tick() => Msg::Tick(clock.elapsed().as_secs_f64()),
        };
        for cmd in app.update(msg) {
            if cmd == Cmd::OpenChat {
                return Ok((app, Exit::Chat));
            }
            on_cmd(cmd);
        }
        if app.should_quit {
            return Ok((app, Exit::Quit));
        }
    }
}

impl App {
    /// Draw the dashboard (read-only).
    pub fn view(&self, frame: &mut ratatui::Frame) {
        super::view::render(self, frame);
    }
}
