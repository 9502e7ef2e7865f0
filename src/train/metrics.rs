//! Per-step and validation figures, and `metrics.jsonl`, the run's log (one JSON object a
//! line, `kind` = `train` or `valid`), which plots and dashboards read.

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::checkpoint::TrainState;
use super::data::Stream;
use super::loss::{Divergence, LossConfig, LossStats, kd_loss};
use super::trainer::TrainSettings;
use crate::student::Student;
use crate::{Error, Result};

/// Figures of one optimizer step (a line of `metrics.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Step number (1-based).
    pub step: usize,
    /// Mixed loss.
    pub loss: f64,
    /// Hard-label cross-entropy.
    pub ce: f64,
    /// Divergence to the teacher (unscaled).
    pub kd: f64,
    /// Share of targets where the student's top-1 is the teacher's.
    pub top1: f64,
    /// Hidden-state term `1 - cos` (0 when off).
    #[serde(default)]
    pub hidden: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens per second of this step.
    pub tok_s: f64,
    /// Seconds since the run began.
    pub elapsed: f64,
    /// Batches drawn for this step and skipped because they held no target position.
    #[serde(default)]
    pub skipped_batches: usize,
}

/// Figures of a validation pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValidMetrics {
    /// Step it ran after.
    pub step: usize,
    /// Cross-entropy on the held-out targets.
    pub valid_ce: f64,
    /// KL(teacher top-k || student) at temperature 1.
    pub valid_kl: f64,
    /// Top-1 agreement with the teacher.
    pub valid_top1: f64,
}

/// Validation on detached outputs: CE, KL to the teacher at T = 1, top-1 agreement.
pub(super) fn validate(
    student: &Student,
    data: &Stream,
    s: &TrainSettings,
    step: usize,
) -> Result<Option<ValidMetrics>> {
    if data.targets() == 0 {
        return Ok(None);
    }
    let cfg = LossConfig {
        alpha: 0.0,
        temperature: 1.0,
        divergence: Divergence::Fkl,
        chunk_rows: 256,
    };
    let mut agg = LossStats::default();
    let all: Vec<usize> = (0..data.windows(s.seq_len)).collect();
    for ws in all.chunks(s.batch.max(1)) {
        let (ids, positions, targets) = data.batch(ws, s.seq_len);
        if positions.is_empty() {
            continue;
        }
        let ids = Tensor::from_vec(ids, (ws.len(), s.seq_len), &Device::Cpu)?;
        let h = super::trainer::window_hidden(student, data, ws, &ids, s.cross_attention)?.detach();
        let hidden = h.dim(2)?;
        let rows = Tensor::from_vec(positions.clone(), positions.len(), &Device::Cpu)?;
        let h = h
            .reshape((ws.len() * s.seq_len, hidden))?
            .index_select(&rows, 0)?;
        let (_, stats) = kd_loss(&h, &student.output_weight().detach(), &targets, &cfg)?;
        agg.add(&stats);
    }
    let n = agg.rows.max(1) as f64;
    Ok(Some(ValidMetrics {
        step,
        valid_ce: agg.ce / n,
        valid_kl: agg.kd / n,
        valid_top1: agg.top1_agree as f64 / n,
    }))
}

/// Open `metrics.jsonl` for appending, cut back to `keep` lines (a resumed run rewrites
/// the steps after its checkpoint). The cut is an atomic rewrite, so a crash keeps the old
/// file or the new one; a file that cannot be read is left as it is and refused.
pub(super) fn metrics_file(dir: &Path, keep: usize) -> Result<std::io::BufWriter<std::fs::File>> {
    let path: PathBuf = dir.join("metrics.jsonl");
    let old = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(Error::Invalid(format!(
                "cannot read '{}' to resume the run ({e}); it was left as it is: fix or move it aside (a resumed run then starts a new one), then run again",
                path.display()
            )));
        }
    };
    // The first `keep` lines, byte for byte, each ending in a newline.
    let mut kept: Vec<u8> = old
        .split_inclusive(|&b| b == b'\n')
        .take(keep)
        .flatten()
        .copied()
        .collect();
    if kept.last().is_some_and(|&b| b != b'\n') {
        kept.push(b'\n');
    }
    if kept != old || old.is_empty() {
        crate::record::write_atomic(&path, &kept)?;
    }
    let f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    Ok(std::io::BufWriter::new(f))
}

pub(super) fn write_metric(
    w: &mut impl Write,
    kind: &str,
    m: &impl Serialize,
    state: &mut TrainState,
) -> Result<()> {
    let mut line = serde_json::to_value(m)?;
    if let Some(obj) = line.as_object_mut() {
        obj.insert("kind".into(), kind.into());
    }
    writeln!(w, "{line}").map_err(|e| Error::io("metrics.jsonl", e))?;
    state.metrics_lines += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("distill-metrics-{}-{name}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn a_resumed_run_cuts_the_metrics_back_to_its_checkpoint() {
        let d = dir("cut");
        let path = d.join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n").expect("write");
        let mut f = metrics_file(&d, 2).expect("open");
        writeln!(f, "{{\"step\":3}}").expect("append");
        drop(f);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n");
        assert!(
            !d.join("metrics.tmp").exists(),
            "rewritten through a temporary file"
        );
        metrics_file(&d, 0).expect("fresh");
        assert_eq!(std::fs::read(&path).expect("read"), b"");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn an_unreadable_metrics_file_is_kept_and_refused() {
        let d = dir("unreadable");
        let path = d.join("metrics.jsonl");
        // A directory in its place: reading it fails.
        std::fs::create_dir_all(path.join("inside")).expect("dir");
        let err = metrics_file(&d, 3).expect_err("unreadable").to_string();
        assert!(
            err.contains("metrics.jsonl") && err.contains("left as it is"),
            "{err}"
        );
        assert!(path.join("inside").is_dir(), "nothing was wiped");
        std::fs::remove_dir_all(&d).ok();
    }
}
