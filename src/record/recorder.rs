//! `distill record`: run the teacher over prompt files and write the corpus, one shard at a
//! time, resuming after the last finished shard.
//!
//! Shard i holds the records `[first, first + shard_size)` counted from where the previous
//! shard stopped, and each shard is decoded from an empty KV cache with per-record random
//! streams, so a run killed at any moment and started again writes the same bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::jobs::{answer_passes, build_jobs, check_sources};
use super::manifest::{Manifest, Mode, RecordSettings, SCHEMA_VERSION, SourceInfo, now_rfc3339};
use super::origin::Origin;
use super::rebuild;
use super::shard::{self, Shard};
use super::slice::{GridShard, Slice, grid};
use crate::corpus::Source;
use crate::gguf::{GgufMeta, TeacherProfile, hex};
use crate::lock::{DirLock, LOCK_FILE};
use crate::teacher::{
    Decode, Job, LlamaTeacher, Sequence, SessionParams, Stop, Teacher, TeacherInfo,
};
use crate::{Error, Result};

/// Tokens per llama.cpp batch: one ubatch, as llama-bench's prompt test uses.
pub const N_BATCH: usize = 512;

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Teacher GGUF.
    pub teacher: PathBuf,
    /// Prompt JSONL files.
    pub prompts: Vec<PathBuf>,
    /// Corpus directory.
    pub out: PathBuf,
    /// Settings stored in the manifest.
    pub settings: RecordSettings,
    /// Record at most this many prompts (records of the prompt files), each `answers` times.
    pub limit: Option<usize>,
    /// Answers the teacher samples per prompt (generate mode; 1 otherwise). They are
    /// recorded pass after pass: every prompt once, then every prompt again.
    pub answers: usize,
    /// Stop after the first shard that ends past this many minutes of decoding (the corpus
    /// stays resumable: a later run with a larger budget extends it).
    pub minutes: Option<f64>,
    /// When set (from another thread), give up the shard in progress as soon as one of its
    /// sequences finishes and return [`Error::Stopped`]; finished shards are kept.
    pub stop: Option<Arc<AtomicBool>>,
    /// Record only this slice of the shard grid (`--shard I/N`); `None` records it all.
    pub slice: Option<Slice>,
}

/// Events for a progress display.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The teacher is loaded and the plan is known.
    Started {
        /// The teacher.
        teacher: TeacherInfo,
        /// Records this run will hold when complete.
        planned: usize,
        /// Records already recorded by an earlier run.
        done: usize,
    },
    /// A sequence finished.
    Sequence {
        /// Tokens in it (prompt and response).
        tokens: usize,
        /// Response tokens.
        targets: usize,
        /// The response text.
        response: String,
    },
    /// A shard was written.
    Shard {
        /// Records recorded so far, earlier runs included.
        done: usize,
    },
    /// Something the user should know about the corpus directory (shown on stderr).
    Notice(String),
}

/// Figures of a finished run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records in the corpus.
    pub records: usize,
    /// Records recorded by this run.
    pub recorded_now: usize,
    /// Records already there when the run started.
    pub resumed_from: usize,
    /// Tokens this run fed or wrote.
    pub tokens_now: usize,
    /// Target positions this run stored.
    pub targets_now: usize,
    /// Wall time of the decoding, seconds.
    pub seconds: f64,
    /// Corpus target positions in total.
    pub targets: usize,
    /// Corpus bytes in total.
    pub bytes: u64,
    /// Bad lines skipped.
    pub skipped_bad: usize,
    /// Records skipped because they do not fit the context.
    pub skipped_long: usize,
    /// Responses that ended with end-of-turn / hit max tokens / filled the context.
    pub stops: [usize; 3],
}

/// Record (or resume) the corpus described by `cfg` with the llama.cpp teacher
/// `cfg.teacher`, reporting through `on`. Everything that can refuse (settings, prompt
/// files, the teacher's profile, an existing corpus of other settings) is checked before the
/// teacher loads.
///
/// # Errors
/// Bad prompts, a bad teacher, a corpus of other settings, llama.cpp and I/O failures.
pub fn record(cfg: &RecordConfig, on: &mut dyn FnMut(Progress)) -> Result<Summary> {
    validate(cfg)?;
    let meta = GgufMeta::read(&cfg.teacher)?;
    let profile = TeacherProfile::from_meta(&meta)?;
    fits_teacher(&cfg.settings, profile.n_vocab, profile.context)?;
    let sources = read_sources(cfg)?;
    check_sources(&profile, cfg.settings.mode, &sources)?;
    let sha = file_sha256(&cfg.teacher)?;
    let _lock = DirLock::acquire(&cfg.out)?;
    let existing = open_dir(&cfg.out)?;
    if let Some(m) = &existing {
        let fingerprint = meta.tokenizer_fingerprint();
        check_resume(m, cfg, (&sha, &fingerprint), None, &sources)?;
    }
    let found = rebuild::unlisted(cfg, existing.as_ref(), &sha, &sources)?;
    let teacher = LlamaTeacher::load(&cfg.teacher, sha)?;
    let existing = rebuild::adopt(cfg, teacher.info(), &sources, existing, found, on)?;
    run_recording(cfg, &teacher, &sources, existing, on)
}

/// [`record`] with a teacher on a server ([`crate::teacher::RemoteTeacher`]), whose chat
/// template and vocabulary come from the `--tokenizer` GGUF at `tokenizer`.
///
/// # Errors
/// As [`record`].
pub fn record_remote(
    cfg: &RecordConfig,
    tokenizer: &Path,
    teacher: &dyn Teacher,
    on: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    validate(cfg)?;
    let profile = TeacherProfile::from_meta(&GgufMeta::read(tokenizer)?)?;
    check_sources(&profile, cfg.settings.mode, &read_sources(cfg)?)?;
    record_with(cfg, teacher, on)
}

/// [`record`] with any [`Teacher`] (`cfg.teacher` is not read): a fake one in unit tests.
///
/// # Errors
/// As [`record`].
pub fn record_with(
    cfg: &RecordConfig,
    teacher: &dyn Teacher,
    on: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    validate(cfg)?;
    fits_teacher(&cfg.settings, teacher.info().n_vocab, teacher.n_ctx_train())?;
    let sources = read_sources(cfg)?;
    let _lock = DirLock::acquire(&cfg.out)?;
    let existing = open_dir(&cfg.out)?;
    if let Some(m) = &existing {
        let id = (
            teacher.info().sha256.as_str(),
            teacher.info().tokenizer_fingerprint.as_str(),
        );
        check_resume(m, cfg, id, teacher.info().remote.as_deref(), &sources)?;
    }
    let found = rebuild::unlisted(cfg, existing.as_ref(), &teacher.info().sha256, &sources)?;
    let existing = rebuild::adopt(cfg, teacher.info(), &sources, existing, found, on)?;
    run_recording(cfg, teacher, &sources, existing, on)
}

/// `--top-k` within the vocabulary and `--ctx` within the context the teacher was trained
/// for (0: the GGUF does not say).
fn fits_teacher(s: &RecordSettings, n_vocab: usize, context: usize) -> Result<()> {
    if s.k > n_vocab {
        return Err(Error::Invalid(format!(
            "--top-k {} is more than the teacher's vocabulary of {n_vocab} tokens: pass at most {n_vocab} (64 keeps ~97% of the mass on the default teacher)",
            s.k
        )));
    }
    if context > 0 && s.ctx > context {
        return Err(Error::Invalid(format!(
            "--ctx {} is longer than the {context} tokens the teacher was trained on: pass at most {context}",
            s.ctx
        )));
    }
    Ok(())
}

fn validate(cfg: &RecordConfig) -> Result<()> {
    let s = &cfg.settings;
    if s.k == 0 || s.parallel == 0 || s.shard_size == 0 || s.ctx < 16 || cfg.answers == 0 {
        return Err(Error::Invalid(
            "--top-k, --parallel, --shard-size and --answers-per-prompt must be at least 1, --ctx at least 16"
                .into(),
        ));
    }
    if cfg.answers > 1 && (s.mode != Mode::Generate || s.temperature <= 0.0) {
        return Err(Error::Invalid(format!(
            "--answers-per-prompt {} asks for several sampled answers per prompt, but {}: pass --answers-per-prompt 1, or --mode generate with a --temperature above 0",
            cfg.answers,
            if s.mode == Mode::Generate {
                "at --temperature 0 every answer is the same greedy one"
            } else {
                "--mode score reads the same given response every time"
            }
        )));
    }
    Ok(())
}

/// Refuse to extend a corpus that is past its first pass of answers when this run's
/// prompts per pass (`--limit`) differ: its later records would be read as answers to other
/// prompts.
fn check_passes(cfg: &RecordConfig, m: &Manifest, pass: usize) -> Result<()> {
    let was = m.pass_records.unwrap_or(m.planned_records);
    let answered = m.records();
    let passes = cfg.answers > 1 || m.pass_records.is_some();
    if passes && answered > pass.min(was) && was != pass {
        return Err(Error::Corpus {
            path: cfg.out.clone(),
            reason: format!(
                "it holds {answered} records answering {was} prompts per pass, this run asks for {pass} per pass: rerun with the original --limit and prompt files, or choose a new --out directory"
            ),
        });
    }
    Ok(())
}

fn read_sources(cfg: &RecordConfig) -> Result<Vec<Source>> {
    cfg.prompts
        .iter()
        .map(|p| Source::read(p, cfg.settings.skip_bad))
        .collect()
}

/// Build the jobs, then record shard after shard from where the corpus stopped.
fn run_recording(
    cfg: &RecordConfig,
    teacher: &dyn Teacher,
    sources: &[Source],
    existing: Option<Manifest>,
    on: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    let s = &cfg.settings;
    let mut summary = Summary {
        skipped_bad: sources.iter().map(|x| x.skipped).sum(),
        ..Summary::default()
    };
    let jobs = build_jobs(teacher, sources, s, &mut summary.skipped_long)?;
    let pass = cfg.limit.map_or(jobs.len(), |l| l.min(jobs.len()));
    let jobs = answer_passes(jobs, pass, cfg.answers, s.seed);
    let planned = jobs.len();
    let mut manifest =
        existing.unwrap_or_else(|| new_manifest(teacher.info(), s, sources, cfg.slice));
    check_passes(cfg, &manifest, pass)?;
    if cfg.answers > 1 || manifest.pass_records.is_some() {
        manifest.pass_records = Some(pass);
    }
    let (todo, to_hold) = plan(cfg, &manifest, planned)?;
    manifest.planned_records = planned;
    let start = manifest.records();
    summary.resumed_from = start;
    on(Progress::Started {
        teacher: teacher.info().clone(),
        planned: to_hold,
        done: start.min(to_hold),
    });
    let mut decoder = teacher.decoder(SessionParams {
        ctx: s.ctx,
        parallel: s.parallel,
        n_batch: N_BATCH,
        threads: s.threads,
        k: s.k,
        hidden: s.hidden,
    })?;
    let clock = Instant::now();
    for &(j, first, last) in &todo {
        let shard = decode_shard(cfg, teacher, decoder.as_mut(), &jobs[first..=last], on)?;
        write_shard(
            cfg,
            teacher,
            &shard,
            (j, first, last),
            &mut manifest,
            &mut summary,
        )?;
        manifest.complete = manifest.records() >= to_hold;
        manifest.write(&cfg.out)?;
        on(Progress::Shard {
            done: manifest.records(),
        });
        if cfg
            .minutes
            .is_some_and(|m| clock.elapsed().as_secs_f64() >= m * 60.0)
        {
            break; // out of time: the corpus stays resumable
        }
    }
    if todo.is_empty() {
        manifest.complete = true;
        manifest.write(&cfg.out)?;
    }
    summary.seconds = clock.elapsed().as_secs_f64();
    (summary.records, summary.targets) = (manifest.records(), manifest.totals.targets);
    summary.bytes = manifest.totals.bytes;
    Ok(summary)
}

/// The shards this run records, as (grid index, first record, last record), and the records
/// the corpus (or its slice) holds once they are done. A whole corpus continues after its
/// last shard (so `--limit` may grow); a slice takes its shards of the grid of `planned`.
fn plan(cfg: &RecordConfig, m: &Manifest, planned: usize) -> Result<(Vec<GridShard>, usize)> {
    let size = cfg.settings.shard_size;
    let Some(slice) = cfg.slice else {
        let mut todo = Vec::new();
        let (mut j, mut first) = (m.shards.len(), m.next_record());
        while first < planned {
            let last = (first + size).min(planned) - 1;
            todo.push((j, first, last));
            (j, first) = (j + 1, last + 1);
        }
        return Ok((todo, planned));
    };
    if !m.shards.is_empty() && m.planned_records != planned {
        return Err(Error::Corpus {
            path: cfg.out.clone(),
            reason: format!(
                "slice {slice} was started with {} records planned, this run plans {planned}; every slice must cut the same grid: rerun with the original --limit, --answers-per-prompt and prompt files",
                m.planned_records
            ),
        });
    }
    let mine: Vec<_> = grid(planned, size)
        .into_iter()
        .filter(|&(j, _, _)| slice.holds(j))
        .collect();
    let to_hold = mine.iter().map(|&(_, f, l)| l + 1 - f).sum();
    let todo = mine
        .into_iter()
        .filter(|&(_, f, _)| !m.shards.iter().any(|s| s.first_record == f))
        .collect();
    Ok((todo, to_hold))
}

/// Decode one shard's jobs into its sequences, in job order; stops (with
/// [`Error::Stopped`]) when the stop flag is set as a sequence finishes.
fn decode_shard(
    cfg: &RecordConfig,
    teacher: &dyn Teacher,
    decoder: &mut dyn Decode,
    jobs: &[Job],
    on: &mut dyn FnMut(Progress),
) -> Result<Vec<Sequence>> {
    let mut batch: Vec<Job> = jobs.to_vec();
    let mut seqs = vec![None; batch.len()];
    decoder.run(&mut batch, &mut |i, seq| {
        let response = teacher.detokenize(&seq.tokens[seq.n_prompt..]);
        on(Progress::Sequence {
            tokens: seq.tokens.len(),
            targets: seq.n_targets(),
            response,
        });
        seqs[i] = Some(seq);
        match &cfg.stop {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(Error::Stopped),
            _ => Ok(()),
        }
    })?;
    Ok(seqs.into_iter().flatten().collect())
}

/// Write grid shard `j`, of records `first..=last`, and list it in the manifest.
fn write_shard(
    cfg: &RecordConfig,
    teacher: &dyn Teacher,
    seqs: &[Sequence],
    (j, first, last): GridShard,
    manifest: &mut Manifest,
    summary: &mut Summary,
) -> Result<()> {
    let n_vocab = teacher.info().n_vocab;
    let mut shard = Shard::new(cfg.settings.k.min(n_vocab));
    for seq in seqs {
        shard.push(seq);
        summary.tokens_now += seq.tokens.len();
        summary.targets_now += seq.n_targets();
        match seq.stop {
            Some(Stop::EndOfTurn) => summary.stops[0] += 1,
            Some(Stop::Length) => summary.stops[1] += 1,
            Some(Stop::Context) => summary.stops[2] += 1,
            _ => {}
        }
    }
    let file = shard::file_name(j);
    let sources = manifest.sources.iter().map(|s| s.sha256.clone()).collect();
    let origin = Origin::new(
        &manifest.teacher.sha256,
        &cfg.settings,
        sources,
        (first, last),
    );
    let (sha256, bytes) = shard.write_stamped(&cfg.out.join(&file), n_vocab, &origin)?;
    manifest.shards.push(super::ShardInfo {
        file,
        sequences: shard.sequences(),
        tokens: shard.tokens.len(),
        targets: shard.targets(),
        first_record: first,
        last_record: last,
        sha256,
        bytes,
    });
    summary.recorded_now += last + 1 - first;
    Ok(())
}

/// sha256 of a file, streamed.
///
/// # Errors
/// [`Error::Io`].
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Prepare the output directory: create it, or read its manifest and drop what a killed run
/// left behind (temporary files, shards not yet in the manifest). Without a manifest, shard
/// files stay for [`rebuild`] to check.
fn open_dir(dir: &Path) -> Result<Option<Manifest>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let manifest = Manifest::read(dir)?;
    let listed: Vec<&str> = manifest
        .iter()
        .flat_map(|m| m.shards.iter().map(|s| s.file.as_str()))
        .collect();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let shard = name.starts_with("shard-");
        let leftover = name.ends_with(".tmp")
            || (shard && manifest.is_some() && !listed.contains(&name.as_str()));
        if leftover {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
        } else if manifest.is_none() && !shard && name != LOCK_FILE {
            return Err(Error::Corpus {
                path: dir.to_path_buf(),
                reason: format!(
                    "directory holds '{name}' but no manifest.json; pick an empty or new --out directory"
                ),
            });
        }
    }
    if let Some(m) = &manifest {
        for s in &m.shards {
            let path = dir.join(&s.file);
            let len = std::fs::metadata(&path).map(|md| md.len()).ok();
            let why = if len.is_none() {
                "is listed in manifest.json but missing"
            } else if len != Some(s.bytes) || file_sha256(&path)? != s.sha256 {
                "does not match its size and sha256 in manifest.json (damaged or replaced)"
            } else {
                continue;
            };
            return Err(Error::Corpus {
                path,
                reason: format!(
                    "{why}; to keep the shards before it, move this shard and the ones after \
                     it out of the directory and delete manifest.json: the same `distill \
                     record` command then rebuilds the manifest from the shards that remain \
                     and records the rest again"
                ),
            });
        }
    }
    Ok(manifest)
}

/// Refuse to extend a corpus made by another teacher, other settings or other prompts, or
/// holding another slice.
fn check_resume(
    m: &Manifest,
    cfg: &RecordConfig,
    (sha, fp): (&str, &str),
    remote: Option<&crate::teacher::RemoteInfo>,
    sources: &[Source],
) -> Result<()> {
    let s = &cfg.settings;
    let refuse = |reason: String| Error::Corpus {
        path: cfg.out.clone(),
        reason: format!(
            "{reason}; rerun with the original settings to resume, or choose a new --out directory"
        ),
    };
    if m.teacher.sha256 != sha {
        let what = if fp == m.teacher.tokenizer_fingerprint {
            "same tokenizer, other weights"
        } else {
            "other tokenizer"
        };
        return Err(refuse(format!(
            "it was recorded by teacher '{}' (sha256 {}), not this one (sha256 {sha}, {what})",
            m.teacher.file,
            &m.teacher.sha256[..12.min(m.teacher.sha256.len())]
        )));
    }
    // A server's numbers agree with the GGUF's only within quantisation noise, so one corpus
    // is written by one route (a server may move to another URL).
    if m.teacher.remote.as_ref().map(|r| r.api) != remote.map(|r| r.api) {
        let name = |r: Option<&crate::teacher::RemoteInfo>| {
            r.map_or("in-process".into(), |r| {
                format!("a {} server ({})", r.api.name(), r.url)
            })
        };
        return Err(refuse(format!(
            "it was recorded by {} teacher, this run uses {}",
            name(m.teacher.remote.as_deref()),
            name(remote)
        )));
    }
    if m.slice != cfg.slice {
        let name =
            |x: Option<Slice>| x.map_or("the whole recording".into(), |x| format!("slice {x}"));
        return Err(refuse(format!(
            "--shard differs: the directory holds {}, this run asks for {}",
            name(m.slice),
            name(cfg.slice)
        )));
    }
    let diffs = m.record.differences(s);
    if !diffs.is_empty() {
        return Err(refuse(format!("settings differ: {}", diffs.join("; "))));
    }
    let same_sources = m.sources.len() == sources.len()
        && m.sources
            .iter()
            .zip(sources)
            .all(|(a, b)| a.sha256 == b.sha256);
    if !same_sources {
        let was: Vec<String> = m
            .sources
            .iter()
            .map(|x| x.path.display().to_string())
            .collect();
        return Err(refuse(format!(
            "the prompt files differ from the ones recorded ({}) or were edited",
            was.join(", ")
        )));
    }
    Ok(())
}

pub(super) fn new_manifest(
    teacher: &TeacherInfo,
    s: &RecordSettings,
    sources: &[Source],
    slice: Option<Slice>,
) -> Manifest {
    let now = now_rfc3339();
    Manifest {
        schema_version: SCHEMA_VERSION,
        teacher: teacher.clone(),
        record: s.clone(),
        sources: sources
            .iter()
            .map(|x| SourceInfo {
                path: x.path.clone(),
                sha256: x.sha256.clone(),
                records: x.records.len(),
                skipped: x.skipped,
            })
            .collect(),
        shards: Vec::new(),
        totals: Default::default(),
        planned_records: 0,
        pass_records: None,
        complete: false,
        slice,
        created: now.clone(),
        updated: now,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
pub(crate) mod tests;
