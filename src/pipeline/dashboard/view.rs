//! Drawing the dashboard: a title bar, the stage list on the left, the pane of the shown
//! stage on the right (record: gauge and the latest teacher answer; train: gauge and three
//! charts; eval: steps and table; at the end: the summary), and a key bar.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, Gauge, GraphType, Paragraph};
use unicode_width::UnicodeWidthChar;

use super::{App, Mark};
use crate::pipeline::plan::Stage;
use crate::pipeline::progress::TrainProgress;
use crate::pipeline::summary::{clock, eval_table, opt};

const TITLE: Style = Style::new().fg(Color::Black).bg(Color::Cyan);
const KEYS: Style = Style::new().fg(Color::Black).bg(Color::Gray);
const DIM: Style = Style::new().fg(Color::DarkGray);
const DONE: Style = Style::new().fg(Color::Green);
const RUNNING: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
const BAD: Style = Style::new().fg(Color::Red);
const GAUGE: Style = Style::new().fg(Color::Cyan).bg(Color::Black);
const TRAIN: Color = Color::Cyan;
const VALID: Color = Color::Magenta;
/// Width of the stage list.
const LIST_WIDTH: u16 = 32;

/// Draw `app` into `frame`.
pub(super) fn render(app: &App, frame: &mut Frame) {
    let [title, body, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [list, pane] =
        Layout::horizontal([Constraint::Length(LIST_WIDTH), Constraint::Min(10)]).areas(body);
    render_title(app, frame, title);
    render_stages(app, frame, list);
    match app.shown() {
        Some(s) if s.is_record() => render_record(app, s, frame, pane),
        Some(Stage::Train) => render_train(app, frame, pane),
        Some(_) => render_eval(app, frame, pane),
        None => render_summary(app, frame, pane),
    }
    render_keys(app, frame, keys);
}

fn render_title(app: &App, frame: &mut Frame, area: Rect) {
    let budget = app.budget.map_or(String::new(), |b| {
        format!(" │ budget {}", clock(b.minutes * 60.0))
    });
    let text = format!(
        " distill run │ {} │ teacher {}{budget} │ elapsed {}",
        app.out.display(),
        app.teacher,
        clock(app.now)
    );
    frame.render_widget(Paragraph::new(text).style(TITLE), area);
}

fn render_stages(app: &App, frame: &mut Frame, area: Rect) {
    let width = area.width.saturating_sub(4) as usize;
    let mut lines = Vec::new();
    for stage in Stage::ALL {
        lines.push(stage_line(app, stage, width));
        let summary = &app.stages[stage.index()].summary;
        for l in wrap(summary, width.saturating_sub(2)).into_iter().take(2) {
            if !l.is_empty() {
                lines.push(Line::styled(format!("  {l}"), DIM));
            }
        }
    }
    let chat = if !app.chat {
        ("· chat (off)", DIM)
    } else if app.is_finished() {
        ("▶ chat: press c", RUNNING)
    } else {
        ("· chat", DIM)
    };
    lines.push(Line::styled(chat.0, chat.1));
    if let Some(b) = app.budget {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            format!(
                "split {:.0}/{:.0}/{:.0}% rec/train/eval",
                b.split[0], b.split[1], b.split[2]
            ),
            DIM,
        ));
    }
    let block = Block::bordered().title(" stages ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// A stage's mark, name and time (used, or used/limit while it runs).
fn stage_line(app: &App, stage: Stage, width: usize) -> Line<'static> {
    let row = &app.stages[stage.index()];
    let (mark, style) = match row.mark {
        Mark::Pending => ("·", DIM),
        Mark::Resumable => ("◐", Style::new()),
        Mark::Running => ("▶", RUNNING),
        Mark::Done => ("✓", DONE),
        Mark::Stopped => ("■", RUNNING),
        Mark::Failed => ("✗", BAD),
    };
    let time = match app.stage_limit(stage) {
        _ if row.mark == Mark::Pending => String::new(),
        Some(limit) if row.mark == Mark::Running => {
            format!("{}/{}", clock(app.stage_seconds(stage)), clock(limit))
        }
        _ => clock(app.stage_seconds(stage)),
    };
    let name = format!("{mark} {}", stage.label());
    let pad = width.saturating_sub(name.chars().count() + time.chars().count());
    Line::styled(format!("{name}{}{time}", " ".repeat(pad)), style)
}

fn render_record(app: &App, stage: Stage, frame: &mut Frame, area: Rect) {
    let [gauge, answer] = Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    let r = &app.record;
    let label = format!(
        "{}/{} records · {} tokens · {:.0} tok/s · {}",
        r.done,
        r.planned,
        r.tokens,
        r.tok_s(),
        r.eta_label()
    );
    let verb = match app.mode {
        crate::record::Mode::Generate => "answers",
        crate::record::Mode::Score => "scores",
    };
    let title = match stage {
        Stage::RecordValid => format!(" record valid: the teacher {verb} the held-out records "),
        _ => format!(" record train: the teacher {verb} the training records "),
    };
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(title))
            .gauge_style(GAUGE)
            .ratio(r.ratio())
            .label(label),
        gauge,
    );
    let inner = answer.height.saturating_sub(2) as usize;
    let text = wrap_tail(&r.answer, answer.width.saturating_sub(2) as usize, inner);
    frame.render_widget(
        Paragraph::new(text.join("\n")).block(Block::bordered().title(" latest teacher answer ")),
        answer,
    );
}

fn render_train(app: &App, frame: &mut Frame, area: Rect) {
    let [gauge, stats, charts] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(2),
        Constraint::Min(6),
    ])
    .areas(area);
    let t = &app.train;
    let label = format!(
        "step {}/{} · {:.0} tok/s · ETA {}{}",
        t.step,
        t.steps,
        t.tok_s,
        t.eta().map_or("?".into(), clock),
        t.saved
            .map_or(String::new(), |s| format!(" · checkpoint at step {s}"))
    );
    frame.render_widget(
        Gauge::default()
            .block(Block::bordered().title(" train: the student learns the teacher's answers "))
            .gauge_style(GAUGE)
            .ratio(t.ratio())
            .label(label),
        gauge,
    );
    frame.render_widget(Paragraph::new(train_stats(t, &app.student_init)), stats);
    let [a, b, c] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(charts);
    let x = [0.0, t.steps.max(t.step).max(1) as f64];
    render_chart(frame, a, " loss / valid CE ", x, &t.loss, &t.valid_ce);
    render_chart(frame, b, " KL to the teacher ", x, &t.kd, &t.valid_kl);
    render_chart(frame, c, " top-1 agreement % ", x, &t.top1, &t.valid_top1);
}

/// The latest training and validation figures, and the student's size.
fn train_stats(t: &TrainProgress, init: &str) -> Vec<Line<'static>> {
    let last = |xs: &[(f64, f64)]| xs.last().map(|p| p.1);
    let valid = t
        .last_valid
        .as_ref()
        .map_or("after the first validation".into(), |v| {
            format!(
                "ce {:.3}  KL {:.3}  top-1 {:.1}% (step {})",
                v.valid_ce,
                v.valid_kl,
                100.0 * v.valid_top1,
                v.step
            )
        });
    vec![
        Line::from(vec![
            Span::styled("train ", Style::new().fg(TRAIN)),
            Span::raw(format!(
                "loss {}  KL {}  top-1 {}",
                opt(last(&t.loss), |x| format!("{x:.3}")),
                opt(last(&t.kd), |x| format!("{x:.3}")),
                opt(last(&t.top1), |x| format!("{x:.1}%"))
            )),
            Span::styled("   valid ", Style::new().fg(VALID)),
            Span::raw(valid),
        ]),
        Line::styled(
            format!(
                "student {:.1}M params ({}) · {} training windows",
                t.params as f64 / 1e6,
                if init.is_empty() {
                    "teacher-initialised"
                } else {
                    init
                },
                t.windows
            ),
            DIM,
        ),
    ]
}

fn render_chart(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    x: [f64; 2],
    train: &[(f64, f64)],
    valid: &[(f64, f64)],
) {
    let ys = train.iter().chain(valid).map(|p| p.1);
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
        (l.min(y), h.max(y))
    });
    let (lo, hi) = if lo.is_finite() {
        let pad = ((hi - lo) * 0.05).max(1e-3);
        ((lo - pad).max(0.0), hi + pad)
    } else {
        (0.0, 1.0)
    };
    let datasets = vec![
        Dataset::default()
            .name("train")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(TRAIN))
            .data(train),
        Dataset::default()
            .name("valid")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(VALID))
            .data(valid),
    ];
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(title.to_string()))
        .x_axis(
            Axis::default()
                .bounds(x)
                .labels([format!("{:.0}", x[0]), format!("{:.0}", x[1])])
                .style(DIM),
        )
        .y_axis(
            Axis::default()
                .bounds([lo, hi])
                .labels([format!("{lo:.2}"), format!("{hi:.2}")])
                .style(DIM),
        );
    frame.render_widget(chart, area);
}

fn render_eval(app: &App, frame: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = app
        .eval_log
        .iter()
        .map(|l| Line::raw(format!("· {l}")))
        .collect();
    if !app.eval.is_empty() {
        lines.push(Line::raw(""));
        lines.extend(eval_table(&app.eval).into_iter().map(Line::raw));
    }
    let block = Block::bordered().title(" eval: quality and speed, teacher vs student ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_summary(app: &App, frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = if app.summary.is_empty() {
        let what = app.error.as_ref().map_or(
            "starting: reading the run directory and hashing the teacher…",
            |e| e,
        );
        vec![Line::raw(what.to_string())]
    } else {
        let mut l: Vec<Line> = app.summary.iter().map(|s| Line::raw(s.clone())).collect();
        if app.chat {
            l.push(Line::raw(""));
            l.push(Line::styled(
                "Press c to chat with the teacher and the student side by side.",
                RUNNING,
            ));
        }
        l
    };
    let block = Block::bordered().title(" done: summary ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_keys(app: &App, frame: &mut Frame, area: Rect) {
    let text = if let Some(e) = &app.error {
        format!(" failed: {e}   q quit")
    } else if app.stopping {
        " stopping: keeping the work done so far… (q again: quit now)".to_string()
    } else if app.is_finished() {
        if app.chat {
            " c chat with teacher and student   tab panes   q quit".to_string()
        } else {
            " tab panes   q quit".to_string()
        }
    } else {
        " q quit (the work so far is kept: run the same command to resume)   tab panes".to_string()
    };
    let style = if app.error.is_some() { BAD } else { KEYS };
    frame.render_widget(Paragraph::new(text).style(style), area);
}

/// Word-wrap `text` to `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut cols = 0;
        for word in para.split(' ') {
            let w: usize = word.chars().map(|c| c.width().unwrap_or(0)).sum();
            if cols > 0 && cols + 1 + w > width {
                out.push(std::mem::take(&mut line));
                cols = 0;
            }
            if cols > 0 {
                line.push(' ');
                cols += 1;
            }
            for ch in word.chars() {
                let cw = ch.width().unwrap_or(0);
                if cols + cw > width {
                    out.push(std::mem::take(&mut line));
                    cols = 0;
                }
                line.push(ch);
                cols += cw;
            }
        }
        out.push(line);
    }
    out
}

/// The last `height` lines of `text` wrapped to `width`: the answer scrolls as it grows.
fn wrap_tail(text: &str, width: usize, height: usize) -> Vec<String> {
    let lines = wrap(text, width);
    let skip = lines.len().saturating_sub(height);
    lines.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_and_keeps_the_tail() {
        assert_eq!(wrap("aaa bbb ccc", 7), ["aaa bbb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("a\nb", 10), ["a", "b"]);
        assert_eq!(wrap_tail("one two three four", 9, 1), ["four"]);
    }
}
