//! The event loop (ratatui `templates/component` `tui.rs`): terminal events, worker
//! messages and a clock tick are pumped into [`App::update`] through one `tokio::select!`;
//! commands go to the workers or, for saving, to the disk. The terminal is restored on every
//! exit: `ratatui::try_init` installs a restoring panic hook, and ours in front of it keeps
//! a worker's (caught) panic from tearing the screen down while the other model works on.

use std::collections::HashMap;
use std::io::{IsTerminal, stdout};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream, KeyEventKind, MouseEventKind,
};
use ratatui::crossterm::execute;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::MissedTickBehavior;

use super::app::AppConfig;
use super::msg::Cmd;
use super::worker::{ModelSource, THREAD_PREFIX, Workers};
use super::{App, Msg, Side, transcript};

/// Clock tick for live figures while answering.
const TICK: Duration = Duration::from_millis(200);
/// Shortest time between frames while tokens stream in (25 frames/s).
const FRAME: Duration = Duration::from_millis(40);
/// How long quitting waits for the workers to stop.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// What to run the chat with.
#[derive(Debug, Clone)]
pub struct ChatSetup {
    /// The app's starting state (its `size` is replaced by the terminal's).
    pub app: AppConfig,
    /// The models and where they come from.
    pub models: Vec<(Side, ModelSource)>,
    /// Context length per model.
    pub ctx: usize,
    /// How a model without a chat template renders the conversation.
    pub no_template: crate::teacher::NoTemplate,
    /// Where transcripts go.
    pub transcripts: PathBuf,
}

fn to_msg(ev: Event) -> Option<Msg> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => Some(Msg::Key(k)),
        Event::Mouse(m)
            if matches!(
                m.kind,
                MouseEventKind::ScrollUp | MouseEventKind::ScrollDown
            ) =>
        {
            Some(Msg::Mouse(m))
        }
        Event::Paste(text) => Some(Msg::Paste(text)),
        Event::Resize(w, h) => Some(Msg::Resize(w, h)),
        _ => None,
    }
}

/// Run the chat until the user quits.
///
/// # Errors
/// Without a terminal, or when the terminal fails.
pub fn run(setup: ChatSetup) -> std::io::Result<()> {
    if !stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(std::io::Error::other(
            "distill chat needs an interactive terminal (stdin and stdout)",
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let original_hook = std::panic::take_hook();
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            ratatui::restore();
            std::panic::set_hook(original_hook);
            return Err(e);
        }
    };
    let restoring_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with(THREAD_PREFIX));
        if on_worker {
            // Caught by the worker and shown in its pane; the screen stays up.
            tracing::error!("model thread panicked: {info}");
            return;
        }
        let _ = execute!(stdout(), DisableBracketedPaste, DisableMouseCapture);
        restoring_hook(info);
    }));
    let result = execute!(stdout(), EnableMouseCapture, EnableBracketedPaste)
        .and_then(|()| runtime.block_on(chat(&mut terminal, setup)));
    let _ = execute!(stdout(), DisableBracketedPaste, DisableMouseCapture);
    ratatui::restore();
    let _ = std::panic::take_hook();
    std::panic::set_hook(original_hook);
    result
}

async fn chat(terminal: &mut DefaultTerminal, setup: ChatSetup) -> std::io::Result<()> {
    let size = terminal.size()?;
    let mut app = App::new(AppConfig {
        size: (size.width, size.height),
        ..setup.app
    });
    let (tx, mut rx) = unbounded_channel();
    let mut workers = Workers::spawn(
        setup.models,
        (setup.ctx, setup.no_template),
        app.threads_for_next(),
        &tx,
    );
    drop(tx);
    let result = event_loop(
        terminal,
        &mut app,
        &mut workers,
        &mut rx,
        &setup.transcripts,
    )
    .await;
    workers.shutdown(SHUTDOWN_WAIT);
    result
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    workers: &mut Workers,
    rx: &mut UnboundedReceiver<Msg>,
    transcripts: &Path,
) -> std::io::Result<()> {
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // First-save time of each conversation: a re-save overwrites the same files.
    let mut stamps: HashMap<u64, u64> = HashMap::new();
    let mut frames = Frames::default();
    loop {
        frames.draw_if_due(terminal, app, Instant::now())?;
        let wake = frames.pending();
        let msg = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => to_msg(ev),
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
            Some(msg) = rx.recv() => Some(msg),
            _ = tick.tick() => Some(Msg::Tick(Instant::now())),
            () = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now).into()), if wake.is_some() => None,
        };
        let Some(msg) = msg else {
            continue;
        };
        frames.note(&msg, app.is_busy());
        // Take every queued worker message before drawing again: tokens come in bursts.
        let mut batch = vec![msg];
        while let Ok(m) = rx.try_recv() {
            batch.push(m);
        }
        for msg in batch {
            for cmd in app.update(msg) {
                match cmd {
                    Cmd::Generate { side, req, request } => workers.generate(side, req, request),
                    Cmd::Cancel { side, req } => workers.cancel(side, req),
                    Cmd::Save(t) => {
                        let secs = *stamps
                            .entry(t.conversation)
                            .or_insert_with(crate::clock::epoch_secs);
                        let saved =
                            transcript::save(transcripts, secs, &t).map_err(|e| e.to_string());
                        app.update(Msg::Saved(saved));
                    }
                }
            }
        }
        if app.should_quit {
            return Ok(());
        }
    }
}

/// When to draw: at once after the user's input, at most one frame per [`FRAME`] while
/// tokens stream in. Drawing on every token cost a core's worth of time at a few hundred
/// tokens/s, time taken from the model on a small machine (issue 14).
#[derive(Debug)]
struct Frames {
    /// Something changed since the last frame.
    dirty: bool,
    /// The change came from the user, who should see it now.
    urgent: bool,
    last: Option<Instant>,
}

impl Default for Frames {
    fn default() -> Self {
        Self {
            dirty: true,
            urgent: true,
            last: None,
        }
    }
}

impl Frames {
    /// Record what `msg` means for the screen; a clock tick matters only while answering.
    fn note(&mut self, msg: &Msg, busy: bool) {
        // Tokens and the clock may wait for the next frame; the rest is shown at once.
        let streaming = matches!(msg, Msg::Token { .. } | Msg::Tick(_) | Msg::Started { .. });
        if matches!(msg, Msg::Tick(_)) && !busy {
            return;
        }
        self.dirty = true;
        self.urgent |= !streaming;
    }

    /// When a frame is owed but held back: the moment it falls due.
    fn pending(&self) -> Option<Instant> {
        match (self.dirty, self.last) {
            (true, Some(last)) if !self.urgent => Some(last + FRAME),
            _ => None,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.dirty
            && (self.urgent
                || self
                    .last
                    .is_none_or(|last| now.duration_since(last) >= FRAME))
    }

    fn draw_if_due(
        &mut self,
        terminal: &mut DefaultTerminal,
        app: &mut App,
        now: Instant,
    ) -> std::io::Result<()> {
        if self.due(now) {
            terminal.draw(|f| app.view(f))?;
            self.dirty = false;
            self.urgent = false;
            self.last = Some(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(at: Instant) -> Msg {
        Msg::Token {
            side: Side::Teacher,
            req: 1,
            text: "a".into(),
            tokens: 1,
            at,
        }
    }

    /// Marks a frame drawn at `now`, as `draw_if_due` does after drawing.
    fn drawn(f: &mut Frames, now: Instant) {
        assert!(f.due(now));
        f.dirty = false;
        f.urgent = false;
        f.last = Some(now);
    }

    #[test]
    fn tokens_wait_for_the_next_frame_and_keys_do_not() {
        let t0 = Instant::now();
        let mut f = Frames::default();
        assert!(f.due(t0), "the first frame is drawn at once");
        drawn(&mut f, t0);
        assert!(!f.due(t0) && f.pending().is_none(), "nothing changed");
        let soon = t0 + FRAME / 4;
        f.note(&token(soon), true);
        assert!(!f.due(soon), "a token inside the frame waits");
        assert_eq!(f.pending(), Some(t0 + FRAME));
        assert!(f.due(t0 + FRAME));
        f.note(&Msg::Resize(80, 24), true);
        assert!(
            f.due(soon) && f.pending().is_none(),
            "the user's input is drawn now"
        );
    }

    #[test]
    fn an_idle_clock_tick_draws_nothing() {
        let t0 = Instant::now();
        let mut f = Frames::default();
        drawn(&mut f, t0);
        f.note(&Msg::Tick(t0), false);
        assert!(!f.due(t0 + FRAME * 10) && f.pending().is_none());
        f.note(&Msg::Tick(t0), true);
        assert!(f.due(t0 + FRAME));
    }
}
