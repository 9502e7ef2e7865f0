//! `distill eval` as a library call: teacher-forced quality of each student on the held-out
//! corpus, what each model says when it answers the held-out prompts on its own, and the
//! speed of every model in every engine (each timed in a child process), written to
//! `report.json` and `report.md`.

use std::path::{Path, PathBuf};

use super::answers::{self, Answer, AnswerStats};
use super::report::{EvalReport, ModelEval};
use super::speed::Speed;
use super::{Model, quality};
use crate::gguf::GgufMeta;
use crate::record::{Manifest, write_atomic};
use crate::student::export::{GgufExport, Quant, export_gguf};
use crate::teacher::LlamaTeacher;
use crate::{Error, Result};

const KL_NOTE: &str = "KLD is KL(teacher || model) in nats over the teacher's stored top-k plus one bucket for the \
rest of the vocabulary on each side: a lower bound on the full-vocabulary KL. Δp is p_model - p_teacher of the \
actual next token, over positions where it is in the teacher's top-k. PPL is on the corpus responses.";

/// What to evaluate and how.
#[derive(Debug, Clone)]
pub struct EvalJob {
    /// Teacher GGUF (the one that recorded `corpus`).
    pub teacher: PathBuf,
    /// The student: a student directory or a GGUF.
    pub student: PathBuf,
    /// More models to put beside it.
    pub compare: Vec<PathBuf>,
    /// Held-out corpus recorded by the teacher.
    pub corpus: PathBuf,
    /// Where report.json and report.md go.
    pub out: PathBuf,
    /// CPU threads for every engine.
    pub threads: usize,
    /// Time every model in every engine.
    pub speed: bool,
    /// Held-out prompts each model answers on its own (0: no free-running section).
    pub answers: usize,
    /// Longest free-running answer, tokens.
    pub answer_tokens: usize,
}

/// Evaluate, reporting progress through `on`, and write report.json and report.md.
///
/// # Errors
/// A corpus of another teacher, missing models, decoding and I/O failures.
pub fn evaluate(job: &EvalJob, on: &mut dyn FnMut(String)) -> Result<EvalReport> {
    let m = Manifest::read(&job.corpus)?.ok_or_else(|| Error::Corpus {
        path: job.corpus.clone(),
        reason: "no manifest.json: not a corpus directory".into(),
    })?;
    let meta = GgufMeta::read(&job.teacher)?;
    if meta.tokenizer_fingerprint() != m.teacher.tokenizer_fingerprint {
        return Err(Error::Corpus {
            path: job.corpus.clone(),
            reason: format!(
                "recorded by teacher '{}', whose tokenizer differs from '{}'",
                m.teacher.file,
                job.teacher.display()
            ),
        });
    }
    let mut models = vec![ModelEval {
        name: m.teacher.file.clone(),
        role: "teacher".into(),
        quality: None,
        speed: Vec::new(),
        answers: None,
    }];
    let paths: Vec<(&Path, &str)> = std::iter::once((job.student.as_path(), "student"))
        .chain(job.compare.iter().map(|p| (p.as_path(), "compare")))
        .collect();
    for (path, role) in &paths {
        if !path.exists() {
            return Err(Error::Invalid(format!(
                "'{}' does not exist: pass a student directory or a GGUF",
                path.display()
            )));
        }
        let model = Model::from_path(path);
        on(format!(
            "scoring {} on {} target positions",
            model.name(),
            m.totals.targets
        ));
        models.push(ModelEval {
            name: model.name(),
            role: (*role).into(),
            quality: Some(quality(
                &model,
                &job.corpus,
                m.teacher.n_vocab,
                job.threads,
            )?),
            speed: Vec::new(),
            answers: None,
        });
    }
    let mut prompts = Vec::new();
    if job.answers > 0 {
        let all: Vec<&Path> = std::iter::once(job.teacher.as_path())
            .chain(paths.iter().map(|(p, _)| *p))
            .collect();
        let (judged, texts) = free_running(job, &all, on)?;
        for (me, stats) in models.iter_mut().zip(judged) {
            me.answers = Some(stats);
        }
        prompts = texts;
    }
    if job.speed {
        let all = std::iter::once(job.teacher.as_path()).chain(paths.iter().map(|(p, _)| *p));
        for (me, path) in models.iter_mut().zip(all) {
            time_model(job, me, path, on)?;
        }
    }
    let ppl_teacher = models
        .get(1)
        .and_then(|x| x.quality.as_ref())
        .map_or(0.0, |q| q.ppl_teacher);
    let report = EvalReport {
        corpus: job.corpus.display().to_string(),
        teacher: m.teacher.file.clone(),
        ppl_teacher,
        models,
        kl_note: KL_NOTE.into(),
        answer_tokens: job.answer_tokens,
        prompts,
    };
    write_report(job, report)
}

/// Every model answers the held-out prompts; the teacher judges each set. Also returns the
/// text of the prompts whose answers the report quotes.
fn free_running(
    job: &EvalJob,
    models: &[&Path],
    on: &mut dyn FnMut(String),
) -> Result<(Vec<AnswerStats>, Vec<String>)> {
    let prompts = crate::record::prompts::prompts(&job.corpus, job.answers)?;
    let teacher = LlamaTeacher::load(&job.teacher, String::new())?;
    let texts = prompts
        .iter()
        .take(answers::SAMPLES)
        .map(|p| answers::prompt_text(&teacher, p))
        .collect();
    let mut out = Vec::new();
    for path in models {
        let name = Model::from_path(path).name();
        on(format!(
            "{name} answers {} held-out prompts (greedy, up to {} tokens)",
            prompts.len(),
            job.answer_tokens
        ));
        let written = with_gguf(job, path, Quant::F16, |gguf| {
            answers::write_answers(gguf, &prompts, job.answer_tokens, job.threads)
        })?;
        on(format!("the teacher judges {name}'s answers"));
        out.push(answers::judge(&teacher, &written, job.threads)?);
    }
    Ok((out, texts))
}

/// Run `f` on a GGUF of the model at `path`: the file itself, or the student directory
/// exported with the teacher's tokenizer at `quant` (a temporary file in `out`).
fn with_gguf(
    job: &EvalJob,
    path: &Path,
    quant: Quant,
    f: impl FnOnce(&Path) -> Result<Vec<Answer>>,
) -> Result<Vec<Answer>> {
    if !path.is_dir() {
        return f(path);
    }
    let tmp = job.out.join(format!(
        "{}.{quant:?}.answers.gguf.tmp",
        Model::from_path(path).name()
    ));
    std::fs::create_dir_all(&job.out).map_err(|e| Error::io(&job.out, e))?;
    export_gguf(&GgufExport {
        student: path.to_path_buf(),
        teacher: Some(job.teacher.clone()),
        out: tmp.clone(),
        quant,
    })?;
    let result = f(&tmp);
    std::fs::remove_file(&tmp).ok();
    result
}

/// Time `path` in its engine; a student directory also as its Q8_0 export in llama.cpp.
fn time_model(
    job: &EvalJob,
    me: &mut ModelEval,
    path: &Path,
    on: &mut dyn FnMut(String),
) -> Result<()> {
    on(format!("timing {}", me.name));
    me.speed.push(measure(path, job.threads)?);
    if path.is_dir() {
        let gguf = job.out.join(format!("{}.q8_0.gguf", me.name));
        on(format!("timing {} as Q8_0 in llama.cpp", me.name));
        std::fs::create_dir_all(&job.out).map_err(|e| Error::io(&job.out, e))?;
        export_gguf(&GgufExport {
            student: path.to_path_buf(),
            teacher: Some(job.teacher.clone()),
            out: gguf.clone(),
            quant: Quant::Q8_0,
        })?;
        me.speed.push(measure(&gguf, job.threads)?);
    }
    Ok(())
}

fn write_report(job: &EvalJob, report: EvalReport) -> Result<EvalReport> {
    std::fs::create_dir_all(&job.out).map_err(|e| Error::io(&job.out, e))?;
    write_atomic(
        &job.out.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    write_atomic(&job.out.join("report.md"), report.markdown().as_bytes())?;
    Ok(report)
}

/// Run `distill bench model` on `path` in a child process and parse its JSON, so that the
/// peak memory measured is the model's own.
fn measure(path: &Path, threads: usize) -> Result<Speed> {
    let failed =
        |reason: String| Error::Invalid(format!("timing '{}' failed: {reason}", path.display()));
    let exe = std::env::current_exe().map_err(|e| failed(format!("no distill binary: {e}")))?;
    let out = std::process::Command::new(exe)
        .args([
            "bench",
            "model",
            "--threads",
            &threads.to_string(),
            "--model",
        ])
        .arg(path)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
