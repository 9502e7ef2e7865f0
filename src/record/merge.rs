//! `distill merge`: join the N slices of a recording (`record --shard I/N`) into the corpus
//! one machine would have written.
//!
//! Every slice must come from the same teacher, settings and prompt files, and the slices
//! must be exactly 0..N of one N, each complete. Their shards are the grid shards of a single
//! run, named by grid index, so merging copies them (checking each sha256 on the way) and
//! writes one manifest listing them in record order.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{MANIFEST, Manifest, now_rfc3339};
use super::shard::file_name;
use super::slice::{Slice, grid};
use super::write_atomic;
use crate::gguf::hex;
use crate::{Error, Result};

/// Figures of a merge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeSummary {
    /// Slices joined.
    pub slices: usize,
    /// Shards in the merged corpus.
    pub shards: usize,
    /// Records in it.
    pub records: usize,
    /// Target positions in it.
    pub targets: usize,
    /// Bytes of its shards.
    pub bytes: u64,
}

/// Merge the slice directories `inputs` into the new corpus directory `out`.
///
/// # Errors
/// [`Error::Corpus`] naming the directory and the field that disagrees, a missing, repeated
/// or unfinished slice, a damaged shard, or an `out` that already holds a corpus.
pub fn merge(out: &Path, inputs: &[PathBuf]) -> Result<MergeSummary> {
    let Some(first_dir) = inputs.first() else {
        return Err(Error::Invalid(
            "merge needs the slice directories written by `record --shard I/N`".into(),
        ));
    };
    let slices = inputs
        .iter()
        .map(|dir| read_slice(dir).map(|(m, s)| (dir.as_path(), m, s)))
        .collect::<Result<Vec<_>>>()?;
    let (_, reference, _) = &slices[0];
    for (dir, m, _) in &slices[1..] {
        agree(reference, first_dir, m, dir)?;
    }
    check_coverage(&slices)?;
    let mut shards: Vec<_> = slices
        .iter()
        .flat_map(|(dir, m, _)| m.shards.iter().map(move |s| (*dir, s.clone())))
        .collect();
    shards.sort_by_key(|(_, s)| s.first_record);
    check_grid(reference, first_dir, &shards)?;
    prepare_out(out, inputs)?;
    let mut merged = reference.clone();
    merged.shards.clear();
    for (dir, info) in shards {
        copy_shard(&dir.join(&info.file), &out.join(&info.file), &info.sha256)?;
        merged.shards.push(info);
    }
    merged.slice = None;
    merged.complete = true;
    merged.created = slices
        .iter()
        .map(|(_, m, _)| m.created.clone())
        .min()
        .unwrap_or_else(now_rfc3339);
    merged.tool_version = env!("CARGO_PKG_VERSION").to_string();
    merged.write(out)?;
    Ok(MergeSummary {
        slices: slices.len(),
        shards: merged.shards.len(),
        records: merged.records(),
        targets: merged.totals.targets,
        bytes: merged.totals.bytes,
    })
}

/// A slice's manifest, refusing a whole corpus and an unfinished slice.
fn read_slice(dir: &Path) -> Result<(Manifest, Slice)> {
    let refuse = |reason: String| Error::Corpus {
        path: dir.to_path_buf(),
        reason,
    };
    let m = Manifest::read(dir)?.ok_or_else(|| {
        refuse("no manifest.json: not a directory written by `record --shard I/N`".into())
    })?;
    let slice = m.slice.ok_or_else(|| {
        refuse("holds a whole corpus, not a slice: merge joins the directories of `record --shard I/N` runs".into())
    })?;
    if !m.complete {
        return Err(refuse(format!(
            "slice {slice} is unfinished ({} records recorded): run its `record --shard {slice}` command again to finish it, then merge",
            m.records()
        )));
    }
    Ok((m, slice))
}

/// Refuse a slice whose teacher, settings or prompt files differ from the first one's.
fn agree(a: &Manifest, a_dir: &Path, b: &Manifest, b_dir: &Path) -> Result<()> {
    let refuse = |field: &str, detail: String| Error::Corpus {
        path: b_dir.to_path_buf(),
        reason: format!(
            "{field} differs from '{}': {detail}; merge only slices of one recording (the same record command but --shard and --out)",
            a_dir.display()
        ),
    };
    if a.teacher.sha256 != b.teacher.sha256 {
        return Err(refuse(
            "teacher",
            format!(
                "'{}' (sha256 {}) against '{}' (sha256 {})",
                b.teacher.file,
                short(&b.teacher.sha256),
                a.teacher.file,
                short(&a.teacher.sha256)
            ),
        ));
    }
    if a.teacher.tokenizer_fingerprint != b.teacher.tokenizer_fingerprint {
        return Err(refuse(
            "teacher tokenizer fingerprint",
            "same weights, other tokenizer metadata".into(),
        ));
    }
    let diffs = a.record.differences(&b.record);
    if !diffs.is_empty() {
        return Err(refuse("record settings", diffs.join("; ")));
    }
    if a.sources.len() != b.sources.len() {
        return Err(refuse(
            "sources (--prompts)",
            format!(
                "{} prompt files against {}",
                b.sources.len(),
                a.sources.len()
            ),
        ));
    }
    for (x, y) in a.sources.iter().zip(&b.sources) {
        if x.sha256 != y.sha256 || x.records != y.records || x.skipped != y.skipped {
            return Err(refuse(
                "sources (--prompts)",
                format!(
                    "'{}' (sha256 {}) against '{}' (sha256 {})",
                    y.path.display(),
                    short(&y.sha256),
                    x.path.display(),
                    short(&x.sha256)
                ),
            ));
        }
    }
    if a.planned_records != b.planned_records {
        return Err(refuse(
            "planned records (--limit)",
            format!("{} against {}", b.planned_records, a.planned_records),
        ));
    }
    let (sa, sb) = (a.slice.map(|s| s.count), b.slice.map(|s| s.count));
    if sa != sb {
        return Err(refuse(
            "slice count (the N of --shard I/N)",
            format!("{} against {}", fmt_count(sb), fmt_count(sa)),
        ));
    }
    if a.schema_version != b.schema_version {
        return Err(refuse(
            "schema_version",
            format!("{} against {}", b.schema_version, a.schema_version),
        ));
    }
    Ok(())
}

fn fmt_count(n: Option<usize>) -> String {
    n.map_or("none".into(), |n| n.to_string())
}

fn short(sha: &str) -> &str {
    &sha[..12.min(sha.len())]
}

/// Slices 0..N, each once.
fn check_coverage(slices: &[(&Path, Manifest, Slice)]) -> Result<()> {
    let n = slices[0].2.count;
    let mut owner: Vec<Option<&Path>> = vec![None; n];
    for &(dir, _, slice) in slices {
        if let Some(other) = owner[slice.index] {
            return Err(Error::Corpus {
                path: dir.to_path_buf(),
                reason: format!(
                    "slice {slice} is given twice (also '{}'): pass each slice directory once",
                    other.display()
                ),
            });
        }
        owner[slice.index] = Some(dir);
    }
    let missing: Vec<String> = (0..n)
        .filter(|&i| owner[i].is_none())
        .map(|i| format!("{i}/{n}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Corpus {
            path: slices[0].0.to_path_buf(),
            reason: format!(
                "slice {} missing: record it with `record --shard {}` and pass its directory too",
                missing.join(", "),
                missing[0]
            ),
        });
    }
    Ok(())
}

/// The shards, in record order, are exactly the grid of a single run.
fn check_grid(m: &Manifest, dir: &Path, shards: &[(&Path, super::ShardInfo)]) -> Result<()> {
    let want = grid(m.planned_records, m.record.shard_size);
    if shards.len() != want.len() {
        return Err(Error::Corpus {
            path: dir.to_path_buf(),
            reason: format!(
                "the slices hold {} shards, the recording has {}; record the slices again with one distill version",
                shards.len(),
                want.len()
            ),
        });
    }
    for ((from, s), &(j, first, last)) in shards.iter().zip(&want) {
        if s.first_record != first || s.last_record != last || s.file != file_name(j) {
            return Err(Error::Corpus {
                path: from.join(&s.file),
                reason: format!(
                    "shard of records {}..={} is not where a single run puts it; the slice was recorded by another distill, record it again",
                    s.first_record, s.last_record
                ),
            });
        }
    }
    Ok(())
}

/// Create `out`, refusing one that holds a corpus or anything else, or is an input.
fn prepare_out(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|e| Error::io(p, e));
    let out_c = canon(out)?;
    for dir in inputs {
        if canon(dir)? == out_c {
            return Err(Error::Corpus {
                path: out.to_path_buf(),
                reason: "the output is one of the slices: merge into a new directory".into(),
            });
        }
    }
    for entry in std::fs::read_dir(out).map_err(|e| Error::io(out, e))? {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Shards of an earlier merge that stopped before its manifest are written again.
        let leftover = name.ends_with(".tmp")
            || (name.starts_with("shard-") && name.ends_with(".safetensors"));
        if name == MANIFEST || !leftover {
            return Err(Error::Corpus {
                path: out.to_path_buf(),
                reason: format!(
                    "directory already holds '{name}': merge into a new or empty directory"
                ),
            });
        }
    }
    Ok(())
}

/// Copy a shard, checking its sha256 against the slice's manifest.
fn copy_shard(from: &Path, to: &Path, sha256: &str) -> Result<()> {
    let bytes = std::fs::read(from).map_err(|e| Error::io(from, e))?;
    if hex(&Sha256::digest(&bytes)) != sha256 {
        return Err(Error::Corpus {
            path: from.to_path_buf(),
            reason: "shard's sha256 differs from its manifest: the slice is damaged, record that slice again".into(),
        });
    }
    write_atomic(to, &bytes)
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
