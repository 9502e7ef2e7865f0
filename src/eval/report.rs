//! One `EvalReport` rendered three ways: `report.json` (every figure), `report.md`, and a
//! table on stdout.

use serde::Serialize;

use super::answers::AnswerStats;
use super::metrics::Quality;
use super::speed::Speed;

/// A statistic's name and how to print it from a [`Quality`].
type Row = (&'static str, fn(&Quality) -> String);

/// Evaluation of one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelEval {
    /// Display name.
    pub name: String,
    /// `teacher`, `student` or `compare`.
    pub role: String,
    /// Quality against the teacher (absent for the teacher itself).
    pub quality: Option<Quality>,
    /// Speed in each engine.
    pub speed: Vec<Speed>,
    /// Its free-running answers to the held-out prompts, judged by the teacher.
    #[serde(default)]
    pub answers: Option<AnswerStats>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Corpus directory.
    pub corpus: String,
    /// Teacher file name.
    pub teacher: String,
    /// Teacher perplexity on the corpus text (from its stored log-probs).
    pub ppl_teacher: f64,
    /// Models, teacher first.
    pub models: Vec<ModelEval>,
    /// How KL is computed from the stored top-k.
    pub kl_note: String,
    /// Longest free-running answer, tokens.
    #[serde(default)]
    pub answer_tokens: usize,
    /// The prompts whose free-running answers are quoted, as text.
    #[serde(default)]
    pub prompts: Vec<String>,
}

impl EvalReport {
    /// Decode speed of `m` in llama.cpp over the teacher's, if both were measured.
    pub fn speedup(&self, m: &ModelEval) -> Option<f64> {
        let llama = |m: &ModelEval| {
            m.speed
                .iter()
                .find(|s| s.engine == "llama.cpp")
                .map(|s| s.decode_tok_s)
        };
        Some(llama(m)? / llama(self.models.first()?)?)
    }

    /// The teacher's perplexity of `m`'s free-running answers over that of its own answers.
    pub fn answer_ppl_ratio(&self, m: &ModelEval) -> Option<f64> {
        let own = self.models.first()?.answers.as_ref()?.teacher_ppl;
        Some(m.answers.as_ref()?.teacher_ppl / own)
    }

    /// The report as a Markdown document (also printed as the table).
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# Evaluation\n\nCorpus `{}`, teacher `{}` (PPL {:.3}).\n\n",
            self.corpus, self.teacher, self.ppl_teacher
        );
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        let header = |title: &str| {
            format!(
                "| {title} | {} |\n|---|{}\n",
                names.join(" | "),
                "---:|".repeat(names.len())
            )
        };
        out += "## Quality (vs teacher)\n\n";
        out += &header("statistic");
        let q = |f: &dyn Fn(&Quality) -> String| -> String {
            self.models
                .iter()
                .map(|m| m.quality.as_ref().map_or("-".to_string(), f))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let rows: [Row; 25] = [
            ("Mean KLD", |q| {
                format!("{:.4} ± {:.4}", q.kld.mean, q.kld.mean_err)
            }),
            ("Maximum KLD", |q| format!("{:.4}", q.kld.max)),
            ("99.9% KLD", |q| format!("{:.4}", q.kld.p99_9)),
            ("99.0% KLD", |q| format!("{:.4}", q.kld.p99)),
            ("95.0% KLD", |q| format!("{:.4}", q.kld.p95)),
            ("90.0% KLD", |q| format!("{:.4}", q.kld.p90)),
            ("Median KLD", |q| format!("{:.4}", q.kld.median)),
            ("10.0% KLD", |q| format!("{:.4}", q.kld.p10)),
            ("5.0% KLD", |q| format!("{:.4}", q.kld.p5)),
            ("1.0% KLD", |q| format!("{:.4}", q.kld.p1)),
            ("Minimum KLD", |q| format!("{:.4}", q.kld.min)),
            ("Mean Δp", |q| {
                format!(
                    "{:.3}% ± {:.3}%",
                    100.0 * q.delta_p.mean,
                    100.0 * q.delta_p.mean_err
                )
            }),
            ("RMS Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.rms)),
            ("Maximum Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.max)),
            ("99.9% Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.p99_9)),
            ("99.0% Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.p99)),
            ("95.0% Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.p95)),
            ("Median Δp", |q| {
                format!("{:.3}%", 100.0 * q.delta_p.median)
            }),
            ("5.0% Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.p5)),
            ("1.0% Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.p1)),
            ("Minimum Δp", |q| format!("{:.3}%", 100.0 * q.delta_p.min)),
            ("Same top p", |q| {
                format!(
                    "{:.3} ± {:.3} %",
                    100.0 * q.same_top,
                    100.0 * q.same_top_err
                )
            }),
            ("PPL", |q| format!("{:.3}", q.ppl_model)),
            ("PPL ratio", |q| format!("{:.3}", q.ppl_ratio)),
            ("positions", |q| q.positions.to_string()),
        ];
        for (name, f) in &rows {
            out += &format!("| {name} | {} |\n", q(f));
        }
        out += &self.answers_markdown();
        if self.models.iter().any(|m| !m.speed.is_empty()) {
            out += "\n## Speed\n\n| model | engine | params | file | prompt tok/s | decode tok/s | TTFT short | TTFT long | peak RSS | speed-up |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
            for m in &self.models {
                for s in &m.speed {
                    let up = if s.engine == "llama.cpp" {
                        self.speedup(m).map_or("-".into(), |x| format!("{x:.2}x"))
                    } else {
                        "-".into()
                    };
                    out += &format!(
                        "| {} | {} | {:.1}M | {:.1} MB | {:.0} | {:.1} | {:.0} ms | {:.0} ms ({} tok) | {:.0} MB | {up} |\n",
                        m.name,
                        s.engine,
                        s.params as f64 / 1e6,
                        s.file_bytes as f64 / 1e6,
                        s.prompt_tok_s,
                        s.decode_tok_s,
                        s.ttft_short_ms,
                        s.ttft_long_ms,
                        s.long_prompt_tokens,
                        s.peak_rss_mb
                    );
                }
            }
        }
        out += &format!("\n{}\n", self.kl_note);
        out
    }

    /// The free-running section: figures per model, then the quoted answers.
    fn answers_markdown(&self) -> String {
        let Some(n) = self.models.iter().find_map(|m| m.answers.as_ref()) else {
            return String::new();
        };
        let mut out = format!(
            "\n## Free-running answers\n\nEach model answers {} held-out prompts on its own (greedy, up to {} tokens); the teacher reads every answer teacher-forced.\n\n| figure | {} |\n|---|{}\n",
            n.answers,
            self.answer_tokens,
            self.models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(" | "),
            "---:|".repeat(self.models.len())
        );
        let cell = |f: &dyn Fn(&ModelEval, &AnswerStats) -> String| -> String {
            self.models
                .iter()
                .map(|m| m.answers.as_ref().map_or("-".into(), |a| f(m, a)))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let rows: [AnswerRow<'_>; 7] = [
            ("teacher PPL of the answers", &|_, a| {
                format!("{:.3}", a.teacher_ppl)
            }),
            ("over the teacher's own", &|m, _| {
                self.answer_ppl_ratio(m)
                    .map_or("-".into(), |x| format!("{x:.2}x"))
            }),
            ("distinct-1", &|_, a| format!("{:.3}", a.distinct[0])),
            ("distinct-2", &|_, a| format!("{:.3}", a.distinct[1])),
            ("distinct-3", &|_, a| format!("{:.3}", a.distinct[2])),
            ("ended with end-of-turn", &|_, a| {
                format!("{:.0}%", 100.0 * a.end_of_turn)
            }),
            ("mean length, tokens", &|_, a| {
                format!("{:.1}", a.mean_tokens)
            }),
        ];
        for (name, f) in rows {
            out += &format!("| {name} | {} |\n", cell(f));
        }
        for (i, prompt) in self.prompts.iter().enumerate() {
            out += &format!("\n**Prompt {}:** {}\n", i + 1, one_line(prompt));
            for m in &self.models {
                if let Some(text) = m.answers.as_ref().and_then(|a| a.samples.get(i)) {
                    out += &format!("\n- *{}*: {}\n", m.name, one_line(text));
                }
            }
        }
        out
    }
}

/// A free-running figure's name and how to print it.
type AnswerRow<'a> = (&'a str, &'a dyn Fn(&ModelEval, &AnswerStats) -> String);

/// Text on one Markdown line: newlines become spaces.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
