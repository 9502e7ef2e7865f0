//! `manifest.json`: who recorded the corpus, how, from what, and which shards are finished.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::slice::Slice;
use super::write_atomic;
use crate::teacher::TeacherInfo;
use crate::{Error, Result};

/// Version of the corpus format this build writes. Version 2 added the optional `hidden`
/// tensor (and the `hidden` setting); a version 1 corpus is a version 2 corpus without it,
/// so both are read.
pub const SCHEMA_VERSION: u32 = 2;
/// Oldest version this build reads.
pub const OLDEST_READABLE: u32 = 1;
/// File name of the manifest inside a corpus directory.
pub const MANIFEST: &str = "manifest.json";

/// Whether the teacher wrote the responses or scored given ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The teacher answers each prompt.
    #[default]
    Generate,
    /// The record's own response is teacher-forced.
    Score,
}

/// The settings that shape a corpus. A resumed run must use the same ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordSettings {
    /// generate or score.
    pub mode: Mode,
    /// Log-probabilities stored per target position.
    pub k: usize,
    /// Sampling temperature (generate).
    pub temperature: f32,
    /// Nucleus mass (generate).
    pub top_p: f32,
    /// Seed of the per-record random streams (generate).
    pub seed: u64,
    /// Longest response (generate).
    pub max_new_tokens: usize,
    /// System prompt added to records that have none.
    pub system: Option<String>,
    /// Context length per sequence.
    pub ctx: usize,
    /// Sequences decoded together; part of the settings because batch composition can move
    /// logits in the last bits.
    pub parallel: usize,
    /// Records per shard.
    pub shard_size: usize,
    /// Whether bad lines were skipped.
    pub skip_bad: bool,
    /// CPU threads (informational: does not change results).
    pub threads: usize,
    /// Whether shards hold the teacher's final hidden state at every target (`hidden`).
    #[serde(default)]
    pub hidden: bool,
}

impl RecordSettings {
    /// Names of settings that differ in a way that would change the corpus.
    pub fn differences(&self, other: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: corpus has '{a}', this run asks for '{b}'"));
            }
        };
        check(
            "--mode",
            format!("{:?}", self.mode).to_lowercase(),
            format!("{:?}", other.mode).to_lowercase(),
        );
        check("--top-k", self.k.to_string(), other.k.to_string());
        check(
            "--hidden",
            self.hidden.to_string(),
            other.hidden.to_string(),
        );
        check("--ctx", self.ctx.to_string(), other.ctx.to_string());
        check(
            "--parallel",
            self.parallel.to_string(),
            other.parallel.to_string(),
        );
        check(
            "--shard-size",
            self.shard_size.to_string(),
            other.shard_size.to_string(),
        );
        check(
            "--skip-bad",
            self.skip_bad.to_string(),
            other.skip_bad.to_string(),
        );
        check(
            "--system",
            format!("{:?}", self.system),
            format!("{:?}", other.system),
        );
        if self.mode == Mode::Generate {
            check(
                "--temperature",
                self.temperature.to_string(),
                other.temperature.to_string(),
            );
            check("--top-p", self.top_p.to_string(), other.top_p.to_string());
            check("--seed", self.seed.to_string(), other.seed.to_string());
            check(
                "--max-new-tokens",
                self.max_new_tokens.to_string(),
                other.max_new_tokens.to_string(),
            );
        }
        out
    }
}

/// One prompt file of the corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Path as given.
    pub path: PathBuf,
    /// sha256 of the file.
    pub sha256: String,
    /// Usable records in it.
    pub records: usize,
    /// Bad lines skipped.
    pub skipped: usize,
}

/// One finished shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the corpus directory.
    pub file: String,
    /// Sequences in it.
    pub sequences: usize,
    /// Tokens in it (prompts and responses).
    pub tokens: usize,
    /// Target positions (top-k rows) in it.
    pub targets: usize,
    /// Index of its first record over all sources.
    pub first_record: usize,
    /// Index of its last record.
    pub last_record: usize,
    /// sha256 of the file.
    pub sha256: String,
    /// File size.
    pub bytes: u64,
}

/// Corpus-wide sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Sequences.
    pub sequences: usize,
    /// Tokens.
    pub tokens: usize,
    /// Target positions.
    pub targets: usize,
    /// Bytes of all shards.
    pub bytes: u64,
}

/// The manifest of a corpus directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub schema_version: u32,
    /// The teacher that produced the targets.
    pub teacher: TeacherInfo,
    /// How it was recorded.
    pub record: RecordSettings,
    /// The prompt files, in order.
    pub sources: Vec<SourceInfo>,
    /// Finished shards, in order.
    pub shards: Vec<ShardInfo>,
    /// Sums over `shards`.
    pub totals: Totals,
    /// Records the run was asked to record (after `--limit`, times `--answers-per-prompt`).
    pub planned_records: usize,
    /// Prompts per pass of answers, where a prompt is answered more than once
    /// (`--answers-per-prompt`): record `i` answers prompt `i % pass_records`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_records: Option<usize>,
    /// Whether every planned record is in a shard (of a slice: every record of the slice).
    pub complete: bool,
    /// The slice of the recording this directory holds (`record --shard I/N`); `None` for a
    /// whole corpus. `distill merge` joins the N slices into one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<Slice>,
    /// When the corpus was started (UTC, RFC 3339).
    pub created: String,
    /// When the manifest was last written.
    pub updated: String,
    /// Version of `distill` that wrote it.
    pub tool_version: String,
}

impl Manifest {
    /// Read `dir/manifest.json`; `Ok(None)` if there is none.
    ///
    /// # Errors
    /// [`Error::Corpus`] when it exists but cannot be parsed or has another schema version.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Corpus {
                path: path.clone(),
                reason: format!("manifest is not valid JSON: {e}"),
            })?;
        let version = value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64);
        let readable = u64::from(OLDEST_READABLE)..=u64::from(SCHEMA_VERSION);
        if !version.is_some_and(|v| readable.contains(&v)) {
            return Err(Error::Corpus {
                path,
                reason: format!(
                    "schema_version {version:?}, this build reads {OLDEST_READABLE} to {SCHEMA_VERSION}; use a matching distill"
                ),
            });
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| Error::Corpus {
                path,
                reason: format!("manifest does not match format v{SCHEMA_VERSION}: {e}"),
            })
    }

    /// Recompute totals and write `dir/manifest.json` atomically.
    ///
    /// # Errors
    /// [`Error::Io`] (a full disk included).
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        self.totals = Totals {
            sequences: self.shards.iter().map(|s| s.sequences).sum(),
            tokens: self.shards.iter().map(|s| s.tokens).sum(),
            targets: self.shards.iter().map(|s| s.targets).sum(),
            bytes: self.shards.iter().map(|s| s.bytes).sum(),
        };
        self.updated = now_rfc3339();
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        write_atomic(&dir.join(MANIFEST), &bytes)
    }

    /// Index of the first record not yet in a shard.
    pub fn next_record(&self) -> usize {
        self.shards.last().map_or(0, |s| s.last_record + 1)
    }

    /// Records in the listed shards (equal to [`Manifest::next_record`] but for a slice).
    pub fn records(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.last_record + 1 - s.first_record)
            .sum()
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    crate::clock::Utc::now().rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RecordSettings {
        RecordSettings {
            mode: Mode::Generate,
            k: 64,
            temperature: 0.7,
            top_p: 0.9,
            seed: 1,
            max_new_tokens: 256,
            system: None,
            ctx: 2048,
            parallel: 8,
            shard_size: 128,
            skip_bad: false,
            threads: 2,
            hidden: false,
        }
    }

    #[test]
    fn differences_name_the_flags_that_change_the_corpus() {
        let a = settings();
        let mut b = a.clone();
        b.threads = 4;
        assert!(
            a.differences(&b).is_empty(),
            "threads do not change results"
        );
        b.k = 32;
        b.seed = 9;
        let d = a.differences(&b);
        assert_eq!(d.len(), 2);
        assert!(d[0].contains("--top-k") && d[1].contains("--seed"), "{d:?}");
        let mut score = a.clone();
        score.mode = Mode::Score;
        let mut score2 = score.clone();
        score2.seed = 99;
        assert!(
            score.differences(&score2).is_empty(),
            "sampling settings do not matter when scoring"
        );
    }
}
