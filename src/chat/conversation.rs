//! The conversation: the user's turns, shared by both models, and each model's own answers.
//! Each side sees its own history (as in side-by-side arenas): the user's messages and the
//! answers *it* gave, so the two conversations drift apart as they would in separate chats.

use std::time::Instant;

use super::settings::Settings;
use super::stats::{Figures, GenStats, Speedup, Stop};
use super::{Mode, ReqId, Side};
use crate::corpus::{Message, Role};

/// Where one side's answer to a turn stands.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerState {
    /// Waiting for its turn (turns mode) or for the model to load.
    Queued,
    /// Tokens are streaming.
    Running,
    /// Finished; the worker's figures are in `stats`.
    Done,
    /// Stopped by the user (the partial text stays).
    Cancelled,
    /// Never started: the user stopped the turn first, or the model is unavailable.
    Skipped(String),
    /// The model failed.
    Failed(String),
}

/// One side's answer to one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Where it stands.
    pub state: AnswerState,
    /// The request producing it.
    pub req: Option<ReqId>,
    /// Text so far.
    pub text: String,
    /// Tokens so far.
    pub tokens: usize,
    /// When the worker took the request.
    pub started: Option<Instant>,
    /// When the first token arrived.
    pub first: Option<Instant>,
    /// When the latest token arrived.
    pub last: Option<Instant>,
    /// The worker's final figures.
    pub stats: Option<GenStats>,
}

impl Answer {
    /// A fresh answer in `state`.
    pub fn new(state: AnswerState) -> Self {
        Self {
            state,
            req: None,
            text: String::new(),
            tokens: 0,
            started: None,
            first: None,
            last: None,
            stats: None,
        }
    }

    /// Whether it may still change (queued or streaming).
    pub fn is_pending(&self) -> bool {
        matches!(self.state, AnswerState::Queued | AnswerState::Running)
    }

    /// Figures to show: the worker's when final, else live ones measured against `now`.
    pub fn figures(&self, now: Option<Instant>) -> Option<Figures> {
        if let Some(stats) = &self.stats {
            return Some(Figures::from_stats(stats));
        }
        let started = self.started?;
        let now = match (now, self.last) {
            (Some(n), Some(l)) => n.max(l),
            (Some(n), None) => n.max(started),
            (None, l) => l.unwrap_or(started),
        };
        Some(Figures::live(
            started,
            self.first,
            self.last,
            self.tokens,
            now,
        ))
    }

    /// Why it ended, in words, once it has.
    pub fn outcome(&self) -> Option<String> {
        match &self.state {
            AnswerState::Queued | AnswerState::Running => None,
            AnswerState::Done => Some(
                self.stats
                    .map_or(Stop::EndOfTurn, |s| s.stop)
                    .label()
                    .into(),
            ),
            AnswerState::Cancelled => Some(Stop::Cancelled.label().into()),
            AnswerState::Skipped(why) => Some(format!("skipped: {why}")),
            AnswerState::Failed(e) => Some(format!("failed: {e}")),
        }
    }
}

/// One user message and the answers to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// What the user wrote.
    pub user: String,
    /// Teacher's and student's answers, indexed by [`Side::index`].
    pub answers: [Answer; 2],
    /// How the models shared the CPU.
    pub mode: Mode,
    /// The settings it was generated with.
    pub settings: Settings,
    /// The student's speed-up, once both finished.
    pub speedup: Option<Speedup>,
}

impl Turn {
    /// A new turn, both answers queued.
    pub fn new(user: String, mode: Mode, settings: Settings) -> Self {
        Self {
            user,
            answers: [
                Answer::new(AnswerState::Queued),
                Answer::new(AnswerState::Queued),
            ],
            mode,
            settings,
            speedup: None,
        }
    }

    /// The answer of `side`.
    pub fn answer(&self, side: Side) -> &Answer {
        &self.answers[side.index()]
    }

    /// The answer of `side`, mutably.
    pub fn answer_mut(&mut self, side: Side) -> &mut Answer {
        &mut self.answers[side.index()]
    }
}

/// The messages `side` answers next: the system prompt, then every earlier turn it answered
/// (partial answers included), then the last turn's user message.
pub fn history(turns: &[Turn], side: Side, system: Option<&str>) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2 * turns.len() + 1);
    if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
        messages.push(Message {
            role: Role::System,
            content: s.to_string(),
        });
    }
    let Some((last, earlier)) = turns.split_last() else {
        return messages;
    };
    for turn in earlier {
        let answer = turn.answer(side);
        let answered = matches!(answer.state, AnswerState::Done | AnswerState::Cancelled);
        if answered && !answer.text.trim().is_empty() {
            messages.push(Message {
                role: Role::User,
                content: turn.user.clone(),
            });
            messages.push(Message {
                role: Role::Assistant,
                content: answer.text.trim().to_string(),
            });
        }
    }
    messages.push(Message {
        role: Role::User,
        content: last.user.clone(),
    });
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(user: &str) -> Turn {
        let settings = Settings {
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 8,
            seed: 1,
            system: None,
        };
        Turn::new(user.into(), Mode::Turns, settings)
    }

    fn done(text: &str) -> Answer {
        Answer {
            text: text.into(),
            ..Answer::new(AnswerState::Done)
        }
    }

    #[test]
    fn each_side_sees_its_own_answers_and_skips_turns_it_did_not_answer() {
        let mut t1 = turn("Hi");
        t1.answers = [done("Hello from T"), done("Hello from S")];
        let mut t2 = turn("Again");
        t2.answers = [
            done("T again"),
            Answer::new(AnswerState::Failed("boom".into())),
        ];
        let t3 = turn("Third");
        let turns = [t1, t2, t3];
        let roles = |m: &[Message]| m.iter().map(|m| m.content.clone()).collect::<Vec<_>>();
        assert_eq!(
            roles(&history(&turns, Side::Teacher, Some("Be brief."))),
            [
                "Be brief.",
                "Hi",
                "Hello from T",
                "Again",
                "T again",
                "Third"
            ]
        );
        assert_eq!(
            roles(&history(&turns, Side::Student, None)),
            ["Hi", "Hello from S", "Third"]
        );
        assert_eq!(
            history(&turns, Side::Student, None)[1].role,
            Role::Assistant
        );
    }
}
