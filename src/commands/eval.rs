//! `distill eval`: the arguments become an [`EvalJob`]; progress goes to stderr, the report
//! to stdout. `distill bench model` (one model's speed as JSON) lives here too: eval runs
//! it in a child process for each model.

use crate::cli::{BenchModelArgs, EvalArgs};
use crate::eval::evaluate::{EvalJob, evaluate};
use crate::eval::report::EvalReport;
use crate::eval::speed;

pub fn run(a: &EvalArgs) -> anyhow::Result<()> {
    let report = job_report(a)?;
    println!("{}", report.markdown());
    println!(
        "wrote {} and {}",
        a.out.join("report.json").display(),
        a.out.join("report.md").display()
    );
    Ok(())
}

fn job_report(a: &EvalArgs) -> anyhow::Result<EvalReport> {
    Ok(evaluate(&job(a), &mut |line| eprintln!("eval: {line}"))?)
}

/// The library's job for these arguments.
pub(crate) fn job(a: &EvalArgs) -> EvalJob {
    EvalJob {
        teacher: a.teacher.clone(),
        student: a.student.clone(),
        compare: a.compare.clone(),
        corpus: a.corpus.clone(),
        out: a.out.clone(),
        threads: super::threads(a.threads),
        speed: !a.no_speed,
        answers: a.answers,
        answer_tokens: a.answer_tokens,
    }
}

/// `distill bench model`: one model's speed as JSON.
pub fn bench_model(a: &BenchModelArgs) -> anyhow::Result<()> {
    let s = if a.model.is_dir() {
        speed::candle(&a.model, a.threads)?
    } else {
        speed::llama(&a.model, a.threads)?
    };
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}
