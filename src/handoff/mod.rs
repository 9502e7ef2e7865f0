//! Hand a recorded corpus to a PyTorch distillation trainer: axolotl's KD plugin or
//! DistillKit, as parquet with the columns each reads.
//!
//! The writer is `scripts/export_corpus.py` (embedded in the binary) run with python3 and
//! pyarrow: both trainers live in Python and read parquet through pyarrow already, and the
//! Rust parquet crates would add minutes to every build (docs/DECISIONS.md). The script's
//! docstring is the reference for the row layout and its alignment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::record::Manifest;
use crate::{Error, Result};

/// The writer, run as `python3 - CORPUS FORMAT OUT` with this on stdin.
const SCRIPT: &str = include_str!("../../scripts/export_corpus.py");

/// Which trainer the corpus is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// axolotl's KD plugin: pre-tokenized rows with `target_token_ids`, `target_logprobs`,
    /// `target_mask`, and a sample config.
    Axolotl,
    /// DistillKit: `compressed_logprobs` and `bytepacked_indices` at exact_k = k, with its
    /// `compression_config.yaml` and a sample config.
    Distillkit,
}

impl Format {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Axolotl => "axolotl",
            Format::Distillkit => "distillkit",
        }
    }
}

/// What the export wrote.
#[derive(Debug, Clone, Deserialize)]
pub struct Exported {
    /// Dataset rows (one per sequence with targets).
    pub rows: usize,
    /// Tokens in them.
    pub tokens: usize,
    /// Teacher rows in them.
    pub targets: usize,
    /// The files written (dataset, configs).
    pub files: Vec<PathBuf>,
}

/// Export the corpus at `corpus` in `format` into the directory `out`.
///
/// # Errors
/// [`Error::Corpus`] for a missing, unfinished or sliced corpus; [`Error::Invalid`] when
/// python3 with numpy, safetensors and pyarrow cannot be run or the writer fails.
pub fn export_corpus(corpus: &Path, format: Format, out: &Path) -> Result<Exported> {
    let refuse = |reason: String| Error::Corpus {
        path: corpus.to_path_buf(),
        reason,
    };
    let m = Manifest::read(corpus)?
        .ok_or_else(|| refuse("no manifest.json: not a corpus directory".into()))?;
    if let Some(slice) = m.slice {
        return Err(refuse(format!(
            "holds slice {slice} of a sharded recording: join the slices with `distill merge` first"
        )));
    }
    if !m.complete {
        return Err(refuse(format!(
            "is unfinished ({} of {} records): run its record command again to finish it",
            m.records(),
            m.planned_records
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let mut child = Command::new(&python)
        .arg("-")
        .arg(corpus)
        .arg(format.name())
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Invalid(format!(
                "export-corpus runs '{}' with numpy, safetensors and pyarrow, which failed to start ({e}): install python3 and `pip install numpy safetensors pyarrow` (scripts/setup.sh does)",
                python.to_string_lossy()
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(SCRIPT.as_bytes())
            .map_err(|e| Error::io(PathBuf::from("python3 stdin"), e))?;
    }
    let done = child
        .wait_with_output()
        .map_err(|e| Error::io(PathBuf::from("python3"), e))?;
    if !done.status.success() {
        let stderr = String::from_utf8_lossy(&done.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let hint = if stderr.contains("ModuleNotFoundError") {
            ": `pip install numpy safetensors pyarrow` (scripts/setup.sh does)"
        } else {
            ""
        };
        return Err(Error::Invalid(format!(
            "the {} writer failed{hint}:\n{}",
            format.name(),
            tail.join("\n")
        )));
    }
    Ok(serde_json::from_slice(&done.stdout)?)
}
