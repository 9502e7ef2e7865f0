//! What a finished run reports: the eval table in a compact form (stored in `run.json`, so
//! a rerun of a finished run shows it again) and the final summary lines, shared by the
//! dashboard's last screen and the non-TTY output.

use serde::{Deserialize, Serialize};

use super::plan::Stage;
use super::state::RunState;
use crate::eval::report::EvalReport;

/// One row of the eval table: a model in an engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Model name.
    pub model: String,
    /// `teacher` or `student`.
    pub role: String,
    /// Engine (`-` when speed was not measured).
    pub engine: String,
    /// Parameters, when measured.
    pub params: Option<u64>,
    /// Mean KL(teacher || model), nats (students only).
    pub kld: Option<f64>,
    /// Top-1 agreement with the teacher (students only).
    pub same_top: Option<f64>,
    /// Perplexity on the held-out answers.
    pub ppl: Option<f64>,
    /// Decoding speed, tokens/s.
    pub decode_tok_s: Option<f64>,
    /// Decoding speed over the teacher's in llama.cpp.
    pub speedup: Option<f64>,
    /// The model's free-running answers as the teacher judged them (first row of a model).
    #[serde(default)]
    pub answers: Option<AnswersRow>,
}

/// Free-running figures of one model (see [`crate::eval::answers`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswersRow {
    /// The teacher's perplexity of the answers.
    pub teacher_ppl: f64,
    /// That over the teacher's perplexity of its own answers.
    pub ratio: Option<f64>,
    /// distinct-2 of the answers.
    pub distinct2: f64,
    /// Answers that ended their turn, and answers.
    pub ended: (usize, usize),
}

/// The eval table of `report`: quality on the first row of each model, one row per engine.
pub fn eval_rows(report: &EvalReport) -> Vec<EvalRow> {
    let mut rows = Vec::new();
    for m in &report.models {
        let q = m.quality.as_ref();
        let ppl = q.map(|q| q.ppl_model).or_else(|| {
            // The teacher's own perplexity comes from its stored log-probs.
            (m.role == "teacher" && report.ppl_teacher > 0.0).then_some(report.ppl_teacher)
        });
        let base = EvalRow {
            model: m.name.clone(),
            role: m.role.clone(),
            engine: "-".into(),
            params: None,
            kld: q.map(|q| q.kld.mean),
            same_top: q.map(|q| q.same_top),
            ppl,
            decode_tok_s: None,
            speedup: None,
            answers: m.answers.as_ref().map(|a| AnswersRow {
                teacher_ppl: a.teacher_ppl,
                ratio: report.answer_ppl_ratio(m).filter(|_| m.role != "teacher"),
                distinct2: a.distinct[1],
                ended: (
                    (a.end_of_turn * a.answers as f64).round() as usize,
                    a.answers,
                ),
            }),
        };
        if m.speed.is_empty() {
            rows.push(base);
            continue;
        }
        for (i, s) in m.speed.iter().enumerate() {
            let llama = s.engine == "llama.cpp";
            let first = i == 0;
            rows.push(EvalRow {
                engine: s.engine.clone(),
                params: Some(s.params),
                decode_tok_s: Some(s.decode_tok_s),
                speedup: if llama { report.speedup(m) } else { None },
                kld: base.kld.filter(|_| first),
                same_top: base.same_top.filter(|_| first),
                ppl: base.ppl.filter(|_| first),
                answers: base.answers.clone().filter(|_| first),
                ..base.clone()
            });
        }
    }
    rows
}

/// `m:ss` (or `h:mm:ss`) of a number of seconds.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// An optional figure, or `-`.
pub fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".to_string(), f)
}

/// The eval table as text lines (header first), columns padded.
pub fn eval_table(rows: &[EvalRow]) -> Vec<String> {
    let mut out = vec![format!(
        "{:<26} {:<8} {:<9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7}",
        "model", "role", "engine", "params", "KLD", "same top", "PPL", "decode/s", "speed"
    )];
    for r in rows {
        out.push(format!(
            "{:<26} {:<8} {:<9} {:>7} {:>7} {:>8} {:>8} {:>8} {:>7}",
            truncate(&r.model, 26),
            r.role,
            r.engine,
            r.params
                .map_or("-".into(), |p| format!("{:.1}M", p as f64 / 1e6)),
            opt(r.kld, |x| format!("{x:.3}")),
            opt(r.same_top, |x| format!("{:.1}%", 100.0 * x)),
            opt(r.ppl, ppl),
            opt(r.decode_tok_s, |x| format!("{x:.0}")),
            opt(r.speedup, |x| format!("{x:.2}x")),
        ));
    }
    out
}

/// One line on a model's free-running answers.
fn answers_line(r: &EvalRow) -> Option<String> {
    let a = r.answers.as_ref()?;
    let ratio = opt(a.ratio, |x| format!(" ({x:.1}x the teacher's own)"));
    let ratio = if ratio == "-" { String::new() } else { ratio };
    Some(format!(
        "{:<13} {}: teacher PPL {}{ratio}, distinct-2 {:.2}, {}/{} ended their turn",
        "answers",
        truncate(&r.model, 26),
        ppl(a.teacher_ppl),
        a.distinct2,
        a.ended.0,
        a.ended.1
    ))
}

/// Perplexity in at most 8 columns.
fn ppl(x: f64) -> String {
    if x < 1e4 {
        format!("{x:.2}")
    } else if x < 1e7 {
        format!("{x:.0}")
    } else {
        format!("{x:.1e}")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let keep: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{keep}…")
    }
}

/// The student the run's chat opens: eval's Q8_0 export when there is one (in llama.cpp it
/// decodes about 3x faster than the teacher, where the f32 candle model is slower), else
/// the student directory.
pub fn chat_student(out: &std::path::Path) -> std::path::PathBuf {
    let gguf = out.join("eval").join("student.q8_0.gguf");
    if gguf.is_file() {
        gguf
    } else {
        out.join("student")
    }
}

/// The final summary of a run (printed on stdout without a TTY, drawn on the last screen).
pub fn summary_lines(state: &RunState, out: &std::path::Path) -> Vec<String> {
    let spent: f64 = state.stages.iter().map(|s| s.seconds).sum();
    let mut lines = vec![format!(
        "{:<13} {}: {} in {} (budget {})",
        "run",
        out.display(),
        if state.is_complete() {
            "complete"
        } else {
            "incomplete"
        },
        clock(spent),
        clock(state.settings.budget.minutes * 60.0)
    )];
    for stage in Stage::ALL {
        let s = state.stage(stage);
        lines.push(format!(
            "{:<13} {} ({})",
            stage.label().replace(' ', "-"),
            s.summary,
            clock(s.seconds)
        ));
    }
    if let Some(v) = &state.valid {
        lines.push(format!(
            "{:<13} ce {:.3}  kl {:.3}  top-1 agreement {:.1}% (step {})",
            "valid",
            v.valid_ce,
            v.valid_kl,
            100.0 * v.valid_top1,
            v.step
        ));
    }
    if !state.eval.is_empty() {
        lines.push(String::new());
        lines.extend(eval_table(&state.eval));
        lines.extend(state.eval.iter().filter_map(answers_line));
        lines.push(String::new());
        lines.push(format!(
            "{:<13} {}",
            "report",
            out.join("eval").join("report.md").display()
        ));
    }
    lines.push(format!(
        "{:<13} distill chat --teacher {} --student {}",
        "chat",
        state.settings.teacher.path.display(),
        chat_student(out).display()
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_minutes_and_hours() {
        assert_eq!(clock(0.0), "0:00");
        assert_eq!(clock(61.4), "1:01");
        assert_eq!(clock(3725.0), "1:02:05");
        assert_eq!(clock(-3.0), "0:00");
    }

    #[test]
    fn the_eval_table_pads_and_dashes() {
        let rows = [EvalRow {
            model: "student".into(),
            role: "student".into(),
            engine: "candle".into(),
            params: Some(49_600_000),
            kld: Some(0.5123),
            same_top: Some(0.7),
            ppl: None,
            decode_tok_s: Some(150.2),
            speedup: None,
            answers: None,
        }];
        let t = eval_table(&rows);
        assert_eq!(t.len(), 2);
        assert!(t[1].contains("49.6M") && t[1].contains("0.512") && t[1].contains("70.0%"));
        assert!(t[1].contains(" - "), "{}", t[1]);
    }
}
