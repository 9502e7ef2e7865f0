//! On-policy distillation: the student writes answers to the training prompts, the teacher
//! scores every token of them teacher-forced, and training continues on the teacher's
//! distribution over the student's own text, as in GKD (Agarwal et al. 2024,
//! arXiv:2306.13649) and MiniLLM (Gu et al. 2024, arXiv:2306.08543). Off-policy targets
//! only ever show the student text the teacher would write; here it also learns what the
//! teacher makes of its own mistakes (exposure bias).
//!
//! The phase takes the last `--on-policy` share of the steps. At its first step the student
//! as it stands is exported (F16) and answers in llama.cpp, sampling at temperature 1; the
//! teacher scores the answers in llama.cpp; the result is one shard, `on_policy.safetensors`
//! in the student directory, so a resumed run trains on the same data.

use std::path::{Path, PathBuf};

use super::data::Stream;
use crate::eval::answers::write_sampled;
use crate::record::Shard;
use crate::student::export::{GgufExport, Quant, export_gguf};
use crate::teacher::{Job, LlamaTeacher, Rng, Sampling, SessionParams};
use crate::{Error, Result};

/// The shard of on-policy data in a student directory.
pub const FILE: &str = "on_policy.safetensors";

/// Answers written per needed window's worth of tokens: each answer is trained on twice.
pub const EPOCHS: usize = 2;

/// What the phase needs besides the run.
#[derive(Debug, Clone)]
pub struct OnPolicy {
    /// The teacher GGUF that scores the answers.
    pub teacher: PathBuf,
    /// The training prompts (templated token ids) the student answers, in order.
    pub prompts: Vec<Vec<u32>>,
    /// Longest answer, tokens.
    pub max_tokens: usize,
    /// CPU threads.
    pub threads: usize,
}

/// The step at which a run of `steps` starts its on-policy phase of share `fraction`
/// (`None` for no phase).
pub fn switch_step(steps: usize, fraction: f64) -> Option<usize> {
    (fraction > 0.0).then(|| ((1.0 - fraction) * steps as f64).round() as usize)
}

/// Write, score and save the on-policy data for `tokens` training tokens: the student in
/// `dir` answers the first prompts, the teacher scores the answers with `k` log-probs (and
/// hidden states with `hidden`).
///
/// # Errors
/// Export, load and decode failures; no prompts.
pub fn collect(
    dir: &Path,
    job: &OnPolicy,
    (k, hidden): (usize, bool),
    tokens: usize,
    seed: u64,
) -> Result<Shard> {
    let per_answer = job.max_tokens / 2 + job.prompts.first().map_or(0, Vec::len);
    let n = (tokens / EPOCHS / per_answer.max(1)).clamp(1, job.prompts.len());
    if job.prompts.is_empty() {
        return Err(Error::Invalid(
            "--on-policy needs the training prompts: the corpus holds none".into(),
        ));
    }
    let gguf = dir.join("on_policy.student.gguf.tmp");
    export_gguf(&GgufExport {
        student: dir.to_path_buf(),
        teacher: Some(job.teacher.clone()),
        out: gguf.clone(),
        quant: Quant::F16,
    })?;
    let sampling = Sampling {
        temperature: 1.0,
        top_p: 1.0,
    };
    let answers = write_sampled(
        &gguf,
        &job.prompts[..n],
        job.max_tokens,
        job.threads,
        sampling,
        seed,
    );
    std::fs::remove_file(&gguf).ok();
    let answers = answers?;
    let teacher = LlamaTeacher::load(&job.teacher, String::new())?;
    let longest = answers
        .iter()
        .map(|a| a.prompt.len() + a.answer.len())
        .max()
        .unwrap_or(1);
    let mut session = teacher.session(SessionParams {
        ctx: longest + 1,
        parallel: 32.min(answers.len()),
        n_batch: 512,
        threads: job.threads,
        k,
        hidden,
    })?;
    let mut jobs: Vec<Job> = answers
        .iter()
        .filter(|a| !a.answer.is_empty())
        .map(|a| Job {
            prompt: a.prompt.clone(),
            response: Some(a.answer.clone()),
            max_new_tokens: 0,
            sampling,
            rng: Rng::for_record(seed, 0),
            ignore_eog: false,
        })
        .collect();
    let mut seqs = vec![None; jobs.len()];
    session.run(&mut jobs, |i, seq| {
        seqs[i] = Some(seq);
        Ok(())
    })?;
    let mut shard = Shard::new(k.min(teacher.info.n_vocab));
    for seq in seqs.iter().flatten() {
        shard.push(seq);
    }
    shard.write(&dir.join(FILE), teacher.info.n_vocab)?;
    Ok(shard)
}

/// The on-policy data saved in `dir`, as a training stream.
///
/// # Errors
/// A missing or damaged file.
pub fn load(dir: &Path) -> Result<Stream> {
    Ok(Stream::of_shard(&Shard::read(&dir.join(FILE))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_takes_the_last_share_of_the_steps() {
        assert_eq!(switch_step(100, 0.0), None);
        assert_eq!(switch_step(100, 0.25), Some(75));
        assert_eq!(switch_step(10, 1.0), Some(0));
    }
}
