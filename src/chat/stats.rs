//! Speed figures of one answer (time to first token, decode tokens/s, tokens, elapsed) and
//! the student's speed-up over the teacher, per turn and on average. The measurement
//! follows `eval::speed`: TTFT covers templating, tokenizing, prompt processing and the
//! first pick; tokens/s counts the tokens after the first over the time after it.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Mode;

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The model ended its turn.
    EndOfTurn,
    /// The token limit was reached.
    Length,
    /// The conversation filled the context.
    Context,
    /// The user stopped it.
    Cancelled,
}

impl Stop {
    /// Words shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            Stop::EndOfTurn => "end of turn",
            Stop::Length => "token limit",
            Stop::Context => "context full",
            Stop::Cancelled => "stopped",
        }
    }
}

/// What a worker reports when a generation ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenStats {
    /// Tokens in the templated prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV cache was reused from the previous turn.
    pub reused_tokens: usize,
    /// Tokens written (end-of-turn excluded).
    pub tokens: usize,
    /// Time to the first token, `None` if stopped before it.
    pub ttft: Option<Duration>,
    /// Time from the request's start to its end.
    pub total: Duration,
    /// Why it ended.
    pub stop: Stop,
    /// CPU threads it ran with.
    pub threads: usize,
}

impl GenStats {
    /// Decode speed: the tokens after the first over the time after the first.
    pub fn tok_per_s(&self) -> Option<f64> {
        let ttft = self.ttft?;
        decode_rate(self.tokens, self.total.saturating_sub(ttft))
    }
}

fn decode_rate(tokens: usize, after_first: Duration) -> Option<f64> {
    let secs = after_first.as_secs_f64();
    (tokens >= 2 && secs > 0.0).then(|| (tokens - 1) as f64 / secs)
}

/// The figures shown for one answer, live or final.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// Time to first token.
    pub ttft: Option<Duration>,
    /// Decode tokens/s.
    pub tok_s: Option<f64>,
    /// Tokens so far.
    pub tokens: usize,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Figures {
    /// Live figures from timestamps: `started` when the worker took the request, `first` and
    /// `last` the first and latest token, `now` the UI's clock.
    pub fn live(
        started: Instant,
        first: Option<Instant>,
        last: Option<Instant>,
        tokens: usize,
        now: Instant,
    ) -> Self {
        let tok_s = match (first, last) {
            (Some(f), Some(l)) => decode_rate(tokens, l.saturating_duration_since(f)),
            _ => None,
        };
        Self {
            ttft: first.map(|f| f.saturating_duration_since(started)),
            tok_s,
            tokens,
            elapsed: now.saturating_duration_since(started),
        }
    }

    /// Final figures from a worker's report.
    pub fn from_stats(stats: &GenStats) -> Self {
        Self {
            ttft: stats.ttft,
            tok_s: stats.tok_per_s(),
            tokens: stats.tokens,
            elapsed: stats.total,
        }
    }

    /// `TTFT 85 ms · 42.1 tok/s · 120 tok · 3.1 s`, with `-` for what is not known yet.
    pub fn line(&self) -> String {
        let ttft = self.ttft.map_or("-".into(), millis);
        let rate = self.tok_s.map_or("-".into(), |r| format!("{r:.1}"));
        format!(
            "TTFT {ttft} · {rate} tok/s · {} tok · {:.1} s",
            self.tokens,
            self.elapsed.as_secs_f64()
        )
    }
}

/// `85 ms` below ten seconds, `12.3 s` above.
pub fn millis(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The student's speed-up over the teacher in one turn.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Speedup {
    /// Student tokens/s over teacher tokens/s.
    pub decode: f64,
    /// Teacher TTFT over student TTFT.
    pub ttft: Option<f64>,
}

impl Speedup {
    /// The speed-up of `student` over `teacher`, if both decoded at least two tokens.
    pub fn of(teacher: &GenStats, student: &GenStats) -> Option<Self> {
        let decode = student.tok_per_s()? / teacher.tok_per_s()?;
        let ttft = match (teacher.ttft, student.ttft) {
            (Some(t), Some(s)) if s > Duration::ZERO => Some(t.as_secs_f64() / s.as_secs_f64()),
            _ => None,
        };
        Some(Self { decode, ttft })
    }
}

/// Per-turn speed-ups, kept per mode: race-mode figures split the CPU and are not mixed
/// with fair ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Speedups {
    entries: Vec<(Mode, f64)>,
}

impl Speedups {
    /// Record one turn.
    pub fn push(&mut self, mode: Mode, s: Speedup) {
        self.entries.push((mode, s.decode));
    }

    /// Mean decode speed-up and the number of turns in `mode`.
    pub fn average(&self, mode: Mode) -> Option<(f64, usize)> {
        let xs: Vec<f64> = self
            .entries
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, x)| *x)
            .collect();
        (!xs.is_empty()).then(|| (xs.iter().sum::<f64>() / xs.len() as f64, xs.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(tokens: usize, ttft_ms: u64, total_ms: u64) -> GenStats {
        GenStats {
            prompt_tokens: 10,
            reused_tokens: 0,
            tokens,
            ttft: Some(Duration::from_millis(ttft_ms)),
            total: Duration::from_millis(total_ms),
            stop: Stop::EndOfTurn,
            threads: 2,
        }
    }

    #[test]
    fn tokens_per_second_counts_the_tokens_after_the_first() {
        // 11 tokens: the first at 100 ms, ten more in the next second.
        let s = stats(11, 100, 1100);
        assert!((s.tok_per_s().expect("rate") - 10.0).abs() < 1e-9);
        assert_eq!(stats(1, 100, 100).tok_per_s(), None);
    }

    #[test]
    fn speedup_compares_decode_rates_and_ttft() {
        let teacher = stats(11, 200, 2200); // 5 tok/s
        let student = stats(11, 50, 550); // 20 tok/s
        let s = Speedup::of(&teacher, &student).expect("both decoded");
        assert!((s.decode - 4.0).abs() < 1e-9);
        assert!((s.ttft.expect("ttft") - 4.0).abs() < 1e-9);
        let mut all = Speedups::default();
        all.push(Mode::Turns, s);
        all.push(
            Mode::Turns,
            Speedup {
                decode: 2.0,
                ttft: None,
            },
        );
        all.push(
            Mode::Race,
            Speedup {
                decode: 9.0,
                ttft: None,
            },
        );
        assert_eq!(all.average(Mode::Turns), Some((3.0, 2)));
        assert_eq!(all.average(Mode::Race), Some((9.0, 1)));
    }

    #[test]
    fn figures_line_shows_dashes_until_known() {
        let t0 = Instant::now();
        let f = Figures::live(t0, None, None, 0, t0 + Duration::from_millis(1500));
        assert_eq!(f.line(), "TTFT - · - tok/s · 0 tok · 1.5 s");
        let first = t0 + Duration::from_millis(80);
        let f = Figures::live(
            t0,
            Some(first),
            Some(first + Duration::from_secs(1)),
            5,
            first,
        );
        assert_eq!(f.line(), "TTFT 80 ms · 4.0 tok/s · 5 tok · 0.1 s");
    }
}
