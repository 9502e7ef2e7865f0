//! Rebuild a lost `manifest.json` from the finished shards themselves: each shard written
//! with an [`Origin`] stamp says which teacher, settings and records it holds and carries a
//! sha256 of its data. A shard that cannot prove itself stops the run (nothing is deleted).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, RecordSettings, ShardInfo};
use super::origin::{self, Origin};
use super::shard::{self, Shard};
use crate::corpus::Source;
use crate::gguf::hex;
use crate::teacher::TeacherInfo;
use crate::{Error, Result};

/// What to tell the user after a rebuild.
pub fn notice(n: usize) -> String {
    format!("manifest.json was missing; rebuilt from {n} finished shards")
}

/// The shard files (`shard-*`) in `dir`, sorted by name.
fn shard_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("shard-") && !name.ends_with(".tmp") {
            names.push(name.into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The finished shards of `dir` (which has no manifest) as manifest entries, after checking
/// that each was recorded by teacher `teacher_sha256` with `settings` from `sources`, that
/// its data is intact, and that together they hold records `0..n` without a gap.
///
/// # Errors
/// [`Error::Corpus`] naming the first shard that cannot prove itself, and what to do.
pub fn finished_shards(
    dir: &Path,
    teacher_sha256: &str,
    settings: &RecordSettings,
    sources: &[Source],
) -> Result<Vec<ShardInfo>> {
    let sources: Vec<String> = sources.iter().map(|s| s.sha256.clone()).collect();
    let mut shards: Vec<ShardInfo> = Vec::new();
    for (i, file) in shard_files(dir)?.into_iter().enumerate() {
        let path = dir.join(&file);
        let refuse = |why: String| refusal(&path, &why);
        if file != shard::file_name(i) {
            return Err(refuse(format!(
                "is not the next shard in order (expected '{}')",
                shard::file_name(i)
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let shard = Shard::from_bytes(&bytes).map_err(|e| refuse(format!("is damaged ({e})")))?;
        let origin = origin::read(&bytes).map_err(&refuse)?.ok_or_else(|| {
            refuse("carries no origin stamp (it was written by an older distill)".into())
        })?;
        let next = shards.last().map_or(0, |s| s.last_record + 1);
        check(&origin, &shard, next, (teacher_sha256, settings, &sources)).map_err(refuse)?;
        shards.push(ShardInfo {
            file,
            sequences: shard.sequences(),
            tokens: shard.tokens.len(),
            targets: shard.targets(),
            first_record: origin.first_record,
            last_record: origin.last_record,
            sha256: hex(&Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
        });
    }
    Ok(shards)
}

/// Whether a stamped shard belongs to this run and continues at record `next`.
fn check(
    origin: &Origin,
    shard: &Shard,
    next: usize,
    (teacher_sha256, settings, sources): (&str, &RecordSettings, &[String]),
) -> std::result::Result<(), String> {
    if origin.teacher_sha256 != teacher_sha256 {
        return Err(format!(
            "was recorded by another teacher (sha256 {})",
            origin.teacher_sha256
        ));
    }
    let diffs = origin.settings.differences(settings);
    if !diffs.is_empty() {
        return Err(format!(
            "was recorded with other settings ({})",
            diffs.join("; ")
        ));
    }
    if origin.sources != sources {
        return Err("was recorded from other or edited prompt files".into());
    }
    if origin.first_record != next || origin.last_record < origin.first_record {
        return Err(format!(
            "holds records {}..={}, but the shards before it end before record {next}",
            origin.first_record, origin.last_record
        ));
    }
    if shard.sequences() != origin.last_record + 1 - origin.first_record {
        return Err(format!(
            "holds {} sequences for records {}..={}",
            shard.sequences(),
            origin.first_record,
            origin.last_record
        ));
    }
    Ok(())
}

fn refusal(path: &Path, why: &str) -> Error {
    let dir = path.parent().map(PathBuf::from).unwrap_or_default();
    Error::Corpus {
        path: path.to_path_buf(),
        reason: format!(
            "manifest.json is missing and this shard {why}, so it cannot be kept; nothing was \
             deleted: restore '{}' from a backup, or move the shard files out of '{}' and record again",
            dir.join(super::manifest::MANIFEST).display(),
            dir.display()
        ),
    }
}

/// Write the manifest of `dir` anew around the proven `shards`.
///
/// # Errors
/// [`Error::Io`].
pub fn manifest(
    dir: &Path,
    teacher: &TeacherInfo,
    settings: &RecordSettings,
    sources: &[Source],
    shards: Vec<ShardInfo>,
) -> Result<Manifest> {
    let mut m = super::recorder::new_manifest(teacher, settings, sources, None);
    m.shards = shards;
    m.write(dir)?;
    Ok(m)
}

/// Without a manifest, the shards in `cfg.out` that prove they belong to this run (an error
/// for any that cannot); with one, nothing to do.
///
/// # Errors
/// As [`finished_shards`].
pub(super) fn unlisted(
    cfg: &super::RecordConfig,
    existing: Option<&Manifest>,
    teacher_sha256: &str,
    sources: &[Source],
) -> Result<Vec<ShardInfo>> {
    match existing {
        Some(_) => Ok(Vec::new()),
        None if cfg.slice.is_some() && !shard_files(&cfg.out)?.is_empty() => {
            // A slice's shards are numbered by their place in the whole grid, with gaps:
            // the rebuild (which wants 0..n) does not apply; keep them and say so.
            Err(Error::Corpus {
                path: cfg.out.clone(),
                reason: format!(
                    "manifest.json is missing in this --shard directory; a slice's manifest \
                     cannot be rebuilt from its shards. Nothing was deleted: restore '{}' \
                     from a backup, or record the slice into a new directory",
                    cfg.out.join(super::manifest::MANIFEST).display()
                ),
            })
        }
        None => finished_shards(&cfg.out, teacher_sha256, &cfg.settings, sources),
    }
}

/// The manifest to resume from: `existing`, or one rebuilt around the shards `found`
/// (written at once, and announced through `on`).
///
/// # Errors
/// [`Error::Io`].
pub(super) fn adopt(
    cfg: &super::RecordConfig,
    teacher: &TeacherInfo,
    sources: &[Source],
    existing: Option<Manifest>,
    found: Vec<ShardInfo>,
    on: &mut dyn FnMut(super::Progress),
) -> Result<Option<Manifest>> {
    if existing.is_some() || found.is_empty() {
        return Ok(existing);
    }
    let n = found.len();
    let m = manifest(&cfg.out, teacher, &cfg.settings, sources, found)?;
    on(super::Progress::Notice(notice(n)));
    Ok(Some(m))
}
