//! Progress of the running stage, folded from worker events: counts, rates, ETA, chart
//! series. Pure: time comes in as the event's timestamp (seconds since the run began).

use crate::record::Progress;
use crate::train::TrainEvent;
use crate::train::metrics::{StepMetrics, ValidMetrics};

/// Progress of a record stage.
#[derive(Debug, Clone, Default)]
pub struct RecordProgress {
    /// Records the stage will hold when complete (before its time cap).
    pub planned: usize,
    /// Records recorded, earlier runs included (counting finished sequences).
    pub done: usize,
    /// Records already there when this run of the stage began.
    pub done_before: usize,
    /// Tokens processed in this run of the stage.
    pub tokens: usize,
    /// Response targets stored in this run of the stage.
    pub targets: usize,
    /// The latest teacher answer.
    pub answer: String,
    /// When the stage started (after loading the teacher).
    pub started_at: f64,
    /// The latest timestamp seen.
    pub now: f64,
    /// Seconds left before the stage's time cap, at `started_at`.
    pub cap: Option<f64>,
}

impl RecordProgress {
    /// A record stage starting at `at` with `cap` seconds before its time cap.
    pub fn new(at: f64, cap: Option<f64>) -> Self {
        RecordProgress {
            started_at: at,
            now: at,
            cap,
            ..Default::default()
        }
    }

    /// Fold one recorder event in.
    pub fn on(&mut self, at: f64, p: &Progress) {
        self.now = at;
        match p {
            Progress::Started { planned, done, .. } => {
                self.planned = *planned;
                self.done = *done;
                self.done_before = *done;
                self.started_at = at;
            }
            Progress::Sequence {
                tokens,
                targets,
                response,
            } => {
                self.done += 1;
                self.tokens += tokens;
                self.targets += targets;
                self.answer = response.clone();
            }
            Progress::Shard { done } => self.done = self.done.max(*done),
            Progress::Notice(_) => {}
        }
    }

    /// Seconds since the stage started.
    pub fn elapsed(&self) -> f64 {
        (self.now - self.started_at).max(0.0)
    }

    /// Tokens per second in this run of the stage.
    pub fn tok_s(&self) -> f64 {
        self.tokens as f64 / self.elapsed().max(1e-9)
    }

    /// Seconds to go: the records left at this run's pace, or the time cap if sooner.
    pub fn eta(&self) -> Option<f64> {
        let now_done = self.done.saturating_sub(self.done_before);
        let by_rate = (now_done > 0).then(|| {
            self.planned.saturating_sub(self.done) as f64 * self.elapsed() / now_done as f64
        });
        let by_cap = self.cap.map(|c| (c - self.elapsed()).max(0.0));
        match (by_rate, by_cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the time cap, not the prompt count, ends the stage (as things look now).
    pub fn capped(&self) -> bool {
        let now_done = self.done.saturating_sub(self.done_before);
        match (self.cap, now_done) {
            (Some(c), n) if n > 0 => {
                self.planned.saturating_sub(self.done) as f64 * self.elapsed() / n as f64
                    > (c - self.elapsed()).max(0.0)
            }
            _ => false,
        }
    }

    /// Whether the time cap has passed: the stage ends with the shard in progress.
    pub fn cap_reached(&self) -> bool {
        self.cap.is_some_and(|c| self.elapsed() >= c)
    }

    /// Share of the stage done: by time when an ETA is known, else by records; never
    /// full before the stage ends.
    pub fn ratio(&self) -> f64 {
        let r = match self.eta() {
            Some(eta) if self.done > self.done_before => {
                self.elapsed() / (self.elapsed() + eta).max(1e-9)
            }
            _ => self.done as f64 / self.planned.max(1) as f64,
        };
        r.clamp(0.0, 0.99)
    }

    /// ETA and whether the time cap decides it, for a label.
    pub fn eta_label(&self) -> String {
        if self.cap_reached() {
            return "time cap reached: finishing the shard in progress".into();
        }
        format!(
            "ETA {}{}",
            self.eta().map_or("?".into(), super::summary::clock),
            if self.capped() { " (time cap)" } else { "" }
        )
    }
}

/// Progress of training, with the series the charts draw.
#[derive(Debug, Clone, Default)]
pub struct TrainProgress {
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub steps: usize,
    /// First step of this run of the stage.
    pub start_step: usize,
    /// Student parameters.
    pub params: usize,
    /// Training windows.
    pub windows: usize,
    /// Tokens/s of the latest step.
    pub tok_s: f64,
    /// Last checkpoint's step.
    pub saved: Option<usize>,
    /// (step, mixed loss).
    pub loss: Vec<(f64, f64)>,
    /// (step, divergence to the teacher).
    pub kd: Vec<(f64, f64)>,
    /// (step, top-1 agreement in percent).
    pub top1: Vec<(f64, f64)>,
    /// (step, validation cross-entropy).
    pub valid_ce: Vec<(f64, f64)>,
    /// (step, validation KL).
    pub valid_kl: Vec<(f64, f64)>,
    /// (step, validation top-1 agreement in percent).
    pub valid_top1: Vec<(f64, f64)>,
    /// The latest validation figures.
    pub last_valid: Option<ValidMetrics>,
    /// When the stage started.
    pub started_at: f64,
    /// The latest timestamp seen.
    pub now: f64,
    /// Seconds left before the time cap, at `started_at`.
    pub cap: Option<f64>,
}

impl TrainProgress {
    /// Training starting at `at` with `cap` seconds before its time cap.
    pub fn new(at: f64, cap: Option<f64>) -> Self {
        TrainProgress {
            started_at: at,
            now: at,
            cap,
            ..Default::default()
        }
    }

    /// Add the figures of earlier runs.
    pub fn history(&mut self, steps: &[StepMetrics], valid: &[ValidMetrics]) {
        for m in steps {
            self.step_point(m);
        }
        for v in valid {
            self.valid_point(v);
        }
    }

    /// Fold one trainer event in.
    pub fn on(&mut self, at: f64, e: &TrainEvent) {
        self.now = at;
        match e {
            TrainEvent::Started {
                step,
                steps,
                params,
                windows,
            } => {
                self.step = *step;
                self.start_step = *step;
                self.steps = *steps;
                self.params = *params;
                self.windows = *windows;
                self.started_at = at;
            }
            TrainEvent::Step(m) => {
                self.step = m.step;
                self.tok_s = m.tok_s;
                self.step_point(m);
            }
            TrainEvent::Valid(v) => self.valid_point(v),
            TrainEvent::Saved { step } => self.saved = Some(*step),
            TrainEvent::OnPolicy { .. } => {}
        }
    }

    fn step_point(&mut self, m: &StepMetrics) {
        let x = m.step as f64;
        self.loss.push((x, m.loss));
        self.kd.push((x, m.kd));
        self.top1.push((x, 100.0 * m.top1));
    }

    fn valid_point(&mut self, v: &ValidMetrics) {
        let x = v.step as f64;
        self.valid_ce.push((x, v.valid_ce));
        self.valid_kl.push((x, v.valid_kl));
        self.valid_top1.push((x, 100.0 * v.valid_top1));
        self.last_valid = Some(v.clone());
    }

    /// Seconds since the stage started.
    pub fn elapsed(&self) -> f64 {
        (self.now - self.started_at).max(0.0)
    }

    /// Seconds to go: steps left at this run's pace, or the time cap if sooner.
    pub fn eta(&self) -> Option<f64> {
        let done = self.step.saturating_sub(self.start_step);
        let by_rate = (done > 0)
            .then(|| self.steps.saturating_sub(self.step) as f64 * self.elapsed() / done as f64);
        let by_cap = self.cap.map(|c| (c - self.elapsed()).max(0.0));
        match (by_rate, by_cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Share of the planned steps done.
    pub fn ratio(&self) -> f64 {
        (self.step as f64 / self.steps.max(1) as f64).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: usize, loss: f64) -> TrainEvent {
        TrainEvent::Step(StepMetrics {
            hidden: 0.0,
            skipped_batches: 0,
            step: n,
            loss,
            ce: loss,
            kd: loss / 2.0,
            top1: 0.5,
            lr: 1e-4,
            grad_norm: 1.0,
            tok_s: 100.0,
            elapsed: 0.0,
        })
    }

    #[test]
    fn record_eta_follows_the_pace_or_the_time_cap() {
        let mut r = RecordProgress::new(0.0, Some(1000.0));
        let teacher = crate::teacher::TeacherInfo {
            file: "t.gguf".into(),
            path: "t.gguf".into(),
            sha256: String::new(),
            architecture: "llama".into(),
            n_params: 1,
            n_vocab: 8,
            tokenizer_fingerprint: String::new(),
            chat_template: String::new(),
            remote: None,
        };
        let started = |done| Progress::Started {
            teacher: teacher.clone(),
            planned: 100,
            done,
        };
        r.on(10.0, &started(20));
        for i in 0..10 {
            r.on(
                20.0 + 2.0 * i as f64,
                &Progress::Sequence {
                    tokens: 100,
                    targets: 80,
                    response: format!("answer {i}"),
                },
            );
        }
        // 10 records in 28 s since start; 70 left -> 196 s.
        assert_eq!(r.done, 30);
        assert!((r.eta().expect("eta") - 196.0).abs() < 1e-9);
        assert_eq!(r.answer, "answer 9");
        assert!(!r.capped());
        r.cap = Some(50.0);
        assert!((r.eta().expect("eta") - 22.0).abs() < 1e-9);
        assert!(r.capped());
        assert_eq!(r.eta_label(), "ETA 0:22 (time cap)");
        r.cap = Some(20.0);
        assert_eq!(
            r.eta_label(),
            "time cap reached: finishing the shard in progress"
        );
        assert!(r.ratio() < 1.0, "full only when the stage ends");
        assert!((r.tok_s() - 1000.0 / 28.0).abs() < 1e-9);
    }

    #[test]
    fn train_progress_collects_series_and_eta() {
        let mut t = TrainProgress::new(0.0, None);
        t.on(
            5.0,
            &TrainEvent::Started {
                step: 10,
                steps: 30,
                params: 1000,
                windows: 50,
            },
        );
        t.on(15.0, &step(11, 3.0));
        t.on(25.0, &step(12, 2.5));
        assert_eq!(t.loss, [(11.0, 3.0), (12.0, 2.5)]);
        assert_eq!(t.top1[0].1, 50.0);
        // 2 steps in 20 s, 18 left -> 180 s.
        assert!((t.eta().expect("eta") - 180.0).abs() < 1e-9);
        assert!((t.ratio() - 0.4).abs() < 1e-9);
    }
}
