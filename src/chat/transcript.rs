//! Saved conversations: both sides' answers and their figures, as JSONL (a header line, then
//! one line per turn) for tools and as Markdown for people. [`Transcript::of`] is pure; the
//! event loop writes the files with [`save`].

use crate::clock::Utc;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::app::{App, ModelState};
use super::conversation::Answer;
use super::stats::{Speedup, millis};
use super::view::pane::params;
use super::view::status::speedup_text;
use crate::record::write_atomic;
use crate::{Error, Result};

/// A model as the transcript names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    /// `teacher` or `student`.
    pub side: &'static str,
    /// File or directory name.
    pub name: String,
    /// `llama.cpp` or `candle`, once loaded.
    pub engine: Option<String>,
    /// Parameter count, once loaded.
    pub params: Option<u64>,
    /// Why it could not load.
    pub error: Option<String>,
}

/// One side's answer with its figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnswerEntry {
    /// `teacher` or `student`.
    pub side: &'static str,
    /// The answer.
    pub text: String,
    /// How it ended.
    pub outcome: String,
    /// Time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Decode tokens/s.
    pub tok_s: Option<f64>,
    /// Tokens written.
    pub tokens: usize,
    /// Seconds from start to end.
    pub elapsed_s: Option<f64>,
    /// Tokens in the templated prompt.
    pub prompt_tokens: Option<usize>,
    /// Prompt tokens reused from the KV cache.
    pub reused_tokens: Option<usize>,
    /// CPU threads.
    pub threads: Option<usize>,
}

/// One turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnEntry {
    /// Always `turn` (the JSONL line kind).
    pub kind: &'static str,
    /// 1-based number.
    pub turn: usize,
    /// `turns` or `race`.
    pub mode: &'static str,
    /// Sampling temperature.
    pub temperature: f32,
    /// Nucleus mass.
    pub top_p: f32,
    /// Token limit.
    pub max_tokens: usize,
    /// Seed.
    pub seed: u64,
    /// System prompt, if set.
    pub system: Option<String>,
    /// The user's message.
    pub user: String,
    /// Each side's answer.
    pub answers: Vec<AnswerEntry>,
    /// The student's speed-up.
    pub speedup: Option<Speedup>,
}

/// A conversation ready to save.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    /// Which conversation of the session (a re-save overwrites its files).
    pub conversation: u64,
    /// The models.
    pub models: Vec<ModelEntry>,
    /// The turns.
    pub turns: Vec<TurnEntry>,
}

fn answer_entry(side: &'static str, a: &Answer) -> AnswerEntry {
    let f = a.figures(a.last);
    AnswerEntry {
        side,
        text: a.text.clone(),
        outcome: a.outcome().unwrap_or_else(|| "in progress".into()),
        ttft_ms: f.and_then(|f| f.ttft).map(|d| d.as_secs_f64() * 1e3),
        tok_s: f.and_then(|f| f.tok_s),
        tokens: a.tokens.max(a.stats.map_or(0, |s| s.tokens)),
        elapsed_s: f.map(|f| f.elapsed.as_secs_f64()),
        prompt_tokens: a.stats.map(|s| s.prompt_tokens),
        reused_tokens: a.stats.map(|s| s.reused_tokens),
        threads: a.stats.map(|s| s.threads),
    }
}

impl Transcript {
    /// The conversation of `app`.
    pub fn of(app: &App) -> Self {
        let sides = app.sides();
        let models = sides
            .iter()
            .filter_map(|&side| {
                let (name, engine, n, error) = match &app.pane(side)?.model {
                    ModelState::Loading(n) => (n.clone(), None, None, None),
                    ModelState::Ready(i) => {
                        (i.name.clone(), Some(i.engine.clone()), Some(i.params), None)
                    }
                    ModelState::Failed { name, error } => {
                        (name.clone(), None, None, Some(error.clone()))
                    }
                };
                Some(ModelEntry {
                    side: side.key(),
                    name,
                    engine,
                    params: n,
                    error,
                })
            })
            .collect();
        let turns = app
            .turns
            .iter()
            .enumerate()
            .map(|(i, t)| TurnEntry {
                kind: "turn",
                turn: i + 1,
                mode: t.mode.label(),
                temperature: t.settings.temperature,
                top_p: t.settings.top_p,
                max_tokens: t.settings.max_tokens,
                seed: t.settings.seed,
                system: t.settings.system.clone(),
                user: t.user.clone(),
                answers: sides
                    .iter()
                    .map(|&s| answer_entry(s.key(), t.answer(s)))
                    .collect(),
                speedup: t.speedup,
            })
            .collect();
        Self {
            conversation: app.conversation,
            models,
            turns,
        }
    }

    /// A header line, then one line per turn.
    ///
    /// # Errors
    /// [`Error::Json`] (not expected: every field serialises).
    pub fn jsonl(&self) -> Result<String> {
        let header = serde_json::json!({
            "kind": "chat",
            "conversation": self.conversation,
            "models": self.models,
        });
        let mut out = serde_json::to_string(&header)?;
        out.push('\n');
        for t in &self.turns {
            out.push_str(&serde_json::to_string(t)?);
            out.push('\n');
        }
        Ok(out)
    }

    /// The conversation for reading, figures under each answer's heading.
    pub fn markdown(&self, when: &str) -> String {
        let mut md = format!("# distill chat, {when}\n\n");
        for m in &self.models {
            let what = match (&m.engine, m.params, &m.error) {
                (_, _, Some(e)) => format!("failed to load: {e}"),
                (Some(engine), Some(n), None) => format!("{engine}, {} params", params(n)),
                _ => "not loaded".into(),
            };
            md.push_str(&format!("- **{}**: {} ({what})\n", capital(m.side), m.name));
        }
        for t in &self.turns {
            md.push_str(&format!(
                "\n## Turn {} ({} mode, temperature {}, top-p {}, seed {})\n\n",
                t.turn, t.mode, t.temperature, t.top_p, t.seed
            ));
            if let Some(s) = &t.system {
                md.push_str(&format!("*System:* {s}\n\n"));
            }
            md.push_str(&format!("### You\n\n{}\n", t.user.trim_end()));
            for a in &t.answers {
                let figures = [
                    a.ttft_ms.map(|ms| {
                        format!(
                            "TTFT {}",
                            millis(std::time::Duration::from_secs_f64(ms / 1e3))
                        )
                    }),
                    a.tok_s.map(|r| format!("{r:.1} tok/s")),
                    Some(format!("{} tok", a.tokens)),
                    a.elapsed_s.map(|s| format!("{s:.1} s")),
                    Some(a.outcome.clone()),
                ];
                let figures: Vec<String> = figures.into_iter().flatten().collect();
                md.push_str(&format!(
                    "\n### {}\n\n*{}*\n\n{}\n",
                    capital(a.side),
                    figures.join(" · "),
                    crate::chat::text::trim_blank_lines(&a.text)
                ));
            }
            if let Some(s) = &t.speedup {
                md.push_str(&format!("\n**Student {}**\n", speedup_text(s)));
            }
        }
        md
    }
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Write `dir/chat-<stamp>.jsonl` and `.md` (`stamp` the UTC time of `secs` since the
/// epoch); returns both paths.
///
/// # Errors
/// [`Error::Io`] when the directory or files cannot be written.
pub fn save(dir: &Path, secs: u64, t: &Transcript) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let t0 = Utc::from_epoch(secs);
    let (when, stamp) = (t0.readable(), t0.compact());
    let jsonl = dir.join(format!("chat-{stamp}.jsonl"));
    let md = dir.join(format!("chat-{stamp}.md"));
    write_atomic(&jsonl, t.jsonl()?.as_bytes())?;
    write_atomic(&md, t.markdown(&format!("{when} UTC")).as_bytes())?;
    Ok(vec![jsonl, md])
}
