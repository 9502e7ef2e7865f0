//! `distill eval`: quality of each student against the teacher on a held-out corpus, speed
//! of every model in every engine (each in a child process), report.json + report.md.

use std::path::Path;

use anyhow::{Context, bail};

use crate::cli::{BenchModelArgs, EvalArgs};
use crate::eval::report::{EvalReport, ModelEval};
use crate::eval::speed::{self, Speed};
use crate::eval::{Model, quality};
use crate::gguf::GgufMeta;
use crate::record::Manifest;
use crate::student::export::{GgufExport, Quant, export_gguf};

const KL_NOTE: &str = "KLD is KL(teacher || model) in nats over the teacher's stored top-k plus one bucket for the \
rest of the vocabulary on each side: a lower bound on the full-vocabulary KL. Δp is p_model - p_teacher of the \
actual next token, over positions where it is in the teacher's top-k. PPL is on the corpus responses.";

pub fn run(a: &EvalArgs) -> anyhow::Result<()> {
    let report = evaluate(a, &mut |line| eprintln!("eval: {line}"))?;
    println!("{}", report.markdown());
    println!(
        "wrote {} and {}",
        a.out.join("report.json").display(),
        a.out.join("report.md").display()
    );
    Ok(())
}

/// Evaluate as `distill eval` does, reporting progress through `on`, and write
/// report.json and report.md into `a.out`.
pub(crate) fn evaluate(a: &EvalArgs, on: &mut dyn FnMut(String)) -> anyhow::Result<EvalReport> {
    let threads = super::threads(a.threads);
    let m = Manifest::read(&a.corpus)?.with_context(|| {
        format!(
            "'{}' has no manifest.json: not a corpus directory",
            a.corpus.display()
        )
    })?;
    let meta = GgufMeta::read(&a.teacher)?;
    if meta.tokenizer_fingerprint() != m.teacher.tokenizer_fingerprint {
        bail!(
            "corpus '{}' was recorded by teacher '{}', whose tokenizer differs from '{}'",
            a.corpus.display(),
            m.teacher.file,
            a.teacher.display()
        );
    }
    let mut models = vec![ModelEval {
        name: m.teacher.file.clone(),
        role: "teacher".into(),
        quality: None,
        speed: Vec::new(),
    }];
    for (path, role) in
        std::iter::once((&a.student, "student")).chain(a.compare.iter().map(|p| (p, "compare")))
    {
        if !path.exists() {
            bail!(
                "'{}' does not exist: pass a student directory or a GGUF",
                path.display()
            );
        }
        let model = Model::from_path(path);
        on(format!(
            "scoring {} on {} target positions",
            model.name(),
            m.totals.targets
        ));
        let q = quality(&model, &a.corpus, m.teacher.n_vocab, threads)
            .with_context(|| format!("evaluating '{}'", path.display()))?;
        models.push(ModelEval {
            name: model.name(),
            role: role.into(),
            quality: Some(q),
            speed: Vec::new(),
        });
    }
    if !a.no_speed {
        let paths: Vec<&Path> = std::iter::once(a.teacher.as_path())
            .chain(std::iter::once(a.student.as_path()))
            .chain(a.compare.iter().map(|p| p.as_path()))
            .collect();
        for (me, path) in models.iter_mut().zip(paths) {
            on(format!("timing {}", me.name));
            me.speed.push(measure(path, threads)?);
            if path.is_dir() {
                // The same student in llama.cpp, exported as Q8_0 with the teacher's tokenizer.
                let gguf = a.out.join(format!("{}.q8_0.gguf", me.name));
                on(format!("timing {} as Q8_0 in llama.cpp", me.name));
                std::fs::create_dir_all(&a.out)
                    .with_context(|| format!("creating '{}'", a.out.display()))?;
                let job = GgufExport {
                    student: path.to_path_buf(),
                    teacher: Some(a.teacher.clone()),
                    out: gguf.clone(),
                    quant: Quant::Q8_0,
                };
                export_gguf(&job)
                    .with_context(|| format!("exporting '{}' for llama.cpp", path.display()))?;
                me.speed.push(measure(&gguf, threads)?);
            }
        }
    }
    let ppl_teacher = models
        .get(1)
        .and_then(|x| x.quality.as_ref())
        .map_or(0.0, |q| q.ppl_teacher);
    let report = EvalReport {
        corpus: a.corpus.display().to_string(),
        teacher: m.teacher.file.clone(),
        ppl_teacher,
        models,
        kl_note: KL_NOTE.into(),
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating '{}'", a.out.display()))?;
    let md = report.markdown();
    crate::record::write_atomic(
        &a.out.join("report.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    crate::record::write_atomic(&a.out.join("report.md"), md.as_bytes())?;
    Ok(report)
}

/// Run `distill bench model` on `path` in a child process and parse its JSON.
fn measure(path: &Path, threads: usize) -> anyhow::Result<Speed> {
    let exe = std::env::current_exe().context("locating the distill binary")?;
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
        .context("running distill bench model")?;
    if !out.status.success() {
        bail!(
            "timing '{}' failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing the timing")
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
