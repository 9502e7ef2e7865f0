//! The decoding jobs of a recording: one per chat record (its prompt through the teacher's
//! chat template, and in score mode its response), or one per `--ctx` window of raw text;
//! and the check, before any work, that the teacher can record the prompt files at all.

use super::manifest::{Mode, RecordSettings};
use crate::corpus::{Message, PromptRecord, Role, Source, kinds};
use crate::gguf::TeacherProfile;
use crate::teacher::{Job, Rng, Sampling, Teacher};
use crate::{Error, Result};

/// Refuse, before any work, prompt files this teacher cannot record in `mode`: raw text
/// in generate mode, chat records for a teacher without a chat template.
///
/// # Errors
/// [`Error::Invalid`] naming the file and the fix.
pub fn check_sources(profile: &TeacherProfile, mode: Mode, sources: &[Source]) -> Result<()> {
    let (text, chat) = kinds(sources);
    let first = |want_text: bool| {
        sources
            .iter()
            .find(|s| s.records.iter().any(|r| r.text.is_some() == want_text))
            .map_or(String::new(), |s| s.path.display().to_string())
    };
    if text && mode == Mode::Generate {
        return Err(Error::Invalid(format!(
            "'{}' holds raw text ({{\"text\"}} lines or a .txt file), which the teacher scores rather than answers: pass --mode score",
            first(true)
        )));
    }
    if chat {
        profile.require_chat_template(&format!("format the chat records of '{}'", first(false)))?;
    }
    Ok(())
}

/// One job per usable record, in source order. Records that do not fit the context are an
/// error, or skipped (and counted) with `--skip-bad`.
pub(super) fn build_jobs(
    teacher: &dyn Teacher,
    sources: &[Source],
    s: &RecordSettings,
    skipped: &mut usize,
) -> Result<Vec<Job>> {
    let sampling = Sampling {
        temperature: s.temperature,
        top_p: s.top_p,
    };
    let mut jobs = Vec::new();
    for rec in sources.iter().flat_map(|x| &x.records) {
        if let Some(text) = &rec.text {
            jobs.extend(text_jobs(teacher, text, s, jobs.len()));
            continue;
        }
        let job = match build_job(teacher, rec, s, sampling, jobs.len()) {
            Ok(job) => job,
            Err(Error::Prompt { .. }) if s.skip_bad => {
                *skipped += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        jobs.push(job);
    }
    Ok(jobs)
}

/// The first `pass` jobs answered `answers` times: pass after pass, each answer of a
/// prompt drawn from its own random stream. Pass 0 is the jobs as they are, so a corpus
/// with more answers per prompt extends one with fewer (the first pass is its prefix), and
/// a time cap keeps every prompt's first answer before any prompt's second.
pub(super) fn answer_passes(
    mut jobs: Vec<Job>,
    pass: usize,
    answers: usize,
    seed: u64,
) -> Vec<Job> {
    jobs.truncate(pass);
    let first = jobs.clone();
    for p in 1..answers {
        jobs.extend(first.iter().enumerate().map(|(i, job)| Job {
            rng: Rng::for_record(seed, (p * pass + i) as u64),
            ..job.clone()
        }));
    }
    jobs
}

/// Raw text cut into windows of `ctx` tokens, each scored teacher-forced: every position a
/// target. Windows start with BOS where the model reads documents so (its first target is
/// the text's first token), else with their own first token.
fn text_jobs(teacher: &dyn Teacher, text: &str, s: &RecordSettings, index: usize) -> Vec<Job> {
    let tokens = teacher.tokenize_text(text);
    let bos = teacher
        .adds_bos()
        .then(|| tokens.first().copied())
        .flatten();
    let body = if bos.is_some() {
        &tokens[1..]
    } else {
        &tokens[..]
    };
    let width = if bos.is_some() { s.ctx - 1 } else { s.ctx };
    body.chunks(width)
        .filter(|w| bos.is_some() || w.len() > 1)
        .enumerate()
        .map(|(i, w)| {
            let (prompt, response) = match bos {
                Some(b) => (vec![b], w.to_vec()),
                None => (w[..1].to_vec(), w[1..].to_vec()),
            };
            Job {
                max_new_tokens: 0,
                prompt,
                response: Some(response),
                sampling: Sampling {
                    temperature: 0.0,
                    top_p: 1.0,
                },
                rng: Rng::for_record(s.seed, (index + i) as u64),
                ignore_eog: false,
            }
        })
        .collect()
}

fn build_job(
    teacher: &dyn Teacher,
    rec: &PromptRecord,
    s: &RecordSettings,
    sampling: Sampling,
    index: usize,
) -> Result<Job> {
    let mut messages: Vec<Message> = Vec::new();
    if let Some(system) = &s.system
        && !rec.messages.iter().any(|m| m.role == Role::System)
    {
        messages.push(Message {
            role: Role::System,
            content: system.clone(),
        });
    }
    messages.extend(rec.messages.iter().cloned());
    let with_system = PromptRecord {
        messages,
        ..rec.clone()
    };
    let (context, given) = with_system.split_response();
    let prompt = teacher.tokenize(&teacher.render_prompt(context)?, true);
    let response = match (s.mode, given) {
        (Mode::Score, None) => {
            return Err(rec.error("no response to score: give a 'response', final assistant turn or 'output' (or use --mode generate)"));
        }
        (Mode::Score, Some(text)) => {
            let mut r = teacher.tokenize(text, false);
            r.push(teacher.end_of_turn());
            Some(r)
        }
        (Mode::Generate, _) => None,
    };
    let need = prompt.len() + response.as_ref().map_or(1, Vec::len);
    if need > s.ctx {
        return Err(rec.error(format!(
            "{need} tokens do not fit the context of {} tokens: raise --ctx (the teacher was trained on {}) or shorten the record",
            s.ctx,
            teacher.n_ctx_train()
        )));
    }
    Ok(Job {
        max_new_tokens: s.max_new_tokens.min(s.ctx - prompt.len()),
        prompt,
        response,
        sampling,
        rng: Rng::for_record(s.seed, index as u64),
        ignore_eog: false,
    })
}
