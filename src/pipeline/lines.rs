//! Progress as plain lines, for runs without a terminal (`--no-tui`, scripts, CI): one line
//! per shard, per few training steps, per validation and per stage boundary.

use super::event::Event;
use super::plan::Stage;
use super::progress::{RecordProgress, TrainProgress};
use super::summary::clock;
use crate::train::TrainEvent;

/// Turns worker events into progress lines.
#[derive(Debug, Default)]
pub struct Lines {
    record: RecordProgress,
    train: TrainProgress,
    stage: Option<Stage>,
}

impl Lines {
    /// A printer with nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines to print for `event`, which arrived `at` seconds into the run.
    pub fn on(&mut self, at: f64, event: &Event) -> Vec<String> {
        match event {
            Event::Plan { out, state } => plan_lines(out, state),
            Event::StageStarted { stage, note, cap } => {
                self.stage = Some(*stage);
                if stage.is_record() {
                    self.record = RecordProgress::new(at, *cap);
                } else if *stage == Stage::Train {
                    self.train = TrainProgress::new(at, *cap);
                }
                vec![format!(
                    "[{}/{}] {}: {note}",
                    stage.index() + 1,
                    Stage::ALL.len(),
                    stage.label()
                )]
            }
            Event::Record(p) => {
                self.record.on(at, p);
                self.record_line(p)
            }
            Event::History { steps, valid } => {
                self.train.history(steps, valid);
                Vec::new()
            }
            Event::Train(e) => {
                self.train.on(at, e);
                self.train_line(e)
            }
            Event::Eval(line) => vec![format!("eval: {line}")],
            Event::StageDone { stage, state } => vec![format!(
                "{}: done, {} ({})",
                stage.label(),
                state.summary,
                clock(state.seconds)
            )],
            Event::Finished(_) => Vec::new(),
            Event::Stopped(stage) => vec![format!(
                "stopped during {}: the work so far is kept; run the same command again to resume",
                stage.label()
            )],
            Event::Failed(e) => vec![format!("failed: {e}")],
        }
    }

    fn label(&self) -> &'static str {
        self.stage.map_or("record", Stage::label)
    }

    fn record_line(&self, p: &crate::record::Progress) -> Vec<String> {
        use crate::record::Progress;
        let r = &self.record;
        match p {
            Progress::Started {
                teacher,
                planned,
                done,
            } => vec![format!(
                "{}: teacher {} ({} params, vocab {}), {planned} records planned, {done} recorded before",
                self.label(),
                teacher.file,
                teacher.n_params,
                teacher.n_vocab
            )],
            Progress::Sequence { .. } => Vec::new(),
            Progress::Shard { done } => vec![format!(
                "{}: {done}/{} records, {} tokens, {:.0} tok/s, {}",
                self.label(),
                r.planned,
                r.tokens,
                r.tok_s(),
                r.eta_label()
            )],
            Progress::Notice(line) => vec![format!("{}: {line}", self.label())],
        }
    }

    fn train_line(&self, e: &TrainEvent) -> Vec<String> {
        let t = &self.train;
        match e {
            TrainEvent::Started {
                step,
                steps,
                params,
                windows,
            } => vec![format!(
                "train: student {:.1}M params, {windows} windows, steps {step}..{steps}",
                *params as f64 / 1e6
            )],
            TrainEvent::Step(m) => {
                let every = (t.steps / 20).max(1);
                if m.step % every != 0 && m.step != t.steps && m.step != t.start_step + 1 {
                    return Vec::new();
                }
                vec![format!(
                    "train: step {}/{} loss {:.3} kd {:.3} top-1 {:.1}% | {:.0} tok/s, ETA {}",
                    m.step,
                    t.steps,
                    m.loss,
                    m.kd,
                    100.0 * m.top1,
                    m.tok_s,
                    t.eta().map_or("?".into(), clock)
                )]
            }
            TrainEvent::Valid(v) => vec![format!(
                "train: valid at step {}: ce {:.3} kl {:.3} top-1 {:.1}%",
                v.step,
                v.valid_ce,
                v.valid_kl,
                100.0 * v.valid_top1
            )],
            TrainEvent::Saved { step } => vec![format!("train: checkpoint at step {step}")],
            TrainEvent::OnPolicy {
                answers,
                targets,
                seconds,
            } => vec![format!(
                "train: on-policy: the student wrote {answers} answers ({targets} tokens), the teacher scored them ({seconds:.0} s)"
            )],
        }
    }
}

/// The budget, and the stages an earlier run finished.
fn plan_lines(out: &std::path::Path, state: &super::state::RunState) -> Vec<String> {
    let b = state.settings.budget;
    let mut lines = vec![format!(
        "run: {} | teacher {} | budget {} (record {}, train {}, eval {})",
        out.display(),
        state.settings.teacher.path.display(),
        clock(b.minutes * 60.0),
        clock(b.record_seconds()),
        clock(b.train_seconds()),
        clock(b.eval_seconds())
    )];
    for stage in Stage::ALL {
        let s = state.stage(stage);
        if s.status == super::state::Status::Done {
            lines.push(format!("{}: done earlier, {}", stage.label(), s.summary));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::metrics::StepMetrics;

    #[test]
    fn training_prints_every_few_steps_and_each_validation() {
        let mut l = Lines::new();
        l.on(
            0.0,
            &Event::StageStarted {
                stage: Stage::Train,
                note: "60 steps".into(),
                cap: Some(600.0),
            },
        );
        let started = l.on(
            1.0,
            &Event::Train(TrainEvent::Started {
                step: 0,
                steps: 40,
                params: 2_000_000,
                windows: 10,
            }),
        );
        assert_eq!(
            started,
            ["train: student 2.0M params, 10 windows, steps 0..40"]
        );
        let mut printed = 0;
        for n in 1..=40 {
            let m = StepMetrics {
                hidden: 0.0,
                skipped_batches: 0,
                step: n,
                loss: 1.0,
                ce: 1.0,
                kd: 0.5,
                top1: 0.25,
                lr: 1e-4,
                grad_norm: 1.0,
                tok_s: 50.0,
                elapsed: 0.0,
            };
            printed += l
                .on(1.0 + n as f64, &Event::Train(TrainEvent::Step(m)))
                .len();
        }
        // Steps 1 (first), 2, 4, ..., 40: every second step of 40.
        assert_eq!(printed, 21);
        let stopped = l.on(50.0, &Event::Stopped(Stage::Train));
        assert!(stopped[0].contains("run the same command again"));
    }
}
