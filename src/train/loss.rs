//! The distillation loss: hard-label cross-entropy mixed with a divergence to the teacher's
//! top-k distribution, as in Hinton et al. 2015, "Distilling the Knowledge in a Neural
//! Network" (soft targets at temperature `T`, scaled by `T^2`):
//!
//! `loss_row = alpha * CE(z, y) + (1 - alpha) * T^2 * D(p_T, q_T)`
//!
//! with `z = h W^T` the student logits, `p_T = softmax(l / T)` the teacher's top-k log-probs
//! renormalised over the k entries and `q_T = softmax(z / T)` over the full vocabulary. `D` is
//! forward KL (default), reverse KL on the teacher's support (as in MiniLLM, Gu et al. 2024)
//! or the generalised JSD(beta) of GKD (Agarwal et al. 2024). The loss is the mean over rows.
//!
//! [`kd_loss`] runs as one fused custom op (`loss_op.rs`, per-row math in `loss_kernel.rs`)
//! that never materialises the [N, V] logits; [`kd_loss_reference`] builds the same loss from
//! stock candle ops for tests on small sizes.

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Result, Tensor, bail};
use candle_nn::ops::log_softmax;

use super::loss_kernel::Params;
use super::loss_op::{KdLossOp, Saved, lock};

/// The divergence between the teacher's and the student's tempered distributions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Divergence {
    /// Forward KL(p || q): mass-covering, the classic distillation loss.
    #[default]
    Fkl,
    /// Reverse KL(q~ || p), with `q~` the student's softmax over the k teacher ids only:
    /// outside the top-k `p = 0`, so the reverse KL over the full vocabulary is infinite.
    Rkl,
    /// Generalised Jensen-Shannon: `beta KL(p || M) + (1 - beta) KL(q || M)`,
    /// `M = beta p + (1 - beta) q`, `beta` in (0, 1).
    Jsd {
        /// Weight of the teacher in the mixture `M`.
        beta: f32,
    },
}

/// Settings of the loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// Weight of hard-label cross-entropy: 1 = plain CE, 0 = pure distillation.
    pub alpha: f32,
    /// Distillation temperature `T` (> 0).
    pub temperature: f32,
    /// Which divergence.
    pub divergence: Divergence,
    /// Rows of logits computed at once; bounds the op's memory to about
    /// `chunk_rows * V * 4` bytes.
    pub chunk_rows: usize,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            alpha: 0.5,
            temperature: 1.0,
            divergence: Divergence::Fkl,
            chunk_rows: 256,
        }
    }
}

/// Per-row targets: the hard label and the teacher's top-k, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// The actual next token of each row, [N].
    pub labels: Vec<u32>,
    /// Teacher top-k token ids, most likely first, [N, k].
    pub topk_ids: Vec<u32>,
    /// Their log-probs under the teacher's full softmax at temperature 1, [N, k].
    pub topk_logprobs: Vec<f32>,
    /// Entries per row.
    pub k: usize,
    /// The teacher's final hidden state per row, [N, hidden_size] (empty when not recorded).
    pub hidden: Vec<f32>,
    /// Width of a teacher hidden-state row (0 when not recorded).
    pub hidden_size: usize,
}

/// Statistics of a batch of rows, as **sums** so that batches add up; divide by `rows`
/// (or use [`LossStats::mean_ce`] and friends) for means.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    /// Sum over rows of the cross-entropy against the label.
    pub ce: f64,
    /// Sum over rows of the divergence `D` at temperature `T`, unscaled (no `T^2`).
    pub kd: f64,
    /// Rows where the student's argmax is the teacher's top-1 (ties count as agreement).
    pub top1_agree: usize,
    /// Sum over rows of the hidden-state term `1 - cos` (0 when it is off).
    pub hidden: f64,
    /// Rows counted.
    pub rows: usize,
}

impl LossStats {
    /// Adds another batch's statistics.
    pub fn add(&mut self, other: &Self) {
        self.ce += other.ce;
        self.kd += other.kd;
        self.top1_agree += other.top1_agree;
        self.hidden += other.hidden;
        self.rows += other.rows;
    }

    /// Mean cross-entropy per row (0 when empty).
    pub fn mean_ce(&self) -> f64 {
        self.ce / self.rows.max(1) as f64
    }

    /// Mean divergence per row (0 when empty).
    pub fn mean_kd(&self) -> f64 {
        self.kd / self.rows.max(1) as f64
    }

    /// Share of rows whose argmax agrees with the teacher's top-1 (0 when empty).
    pub fn top1_rate(&self) -> f64 {
        self.top1_agree as f64 / self.rows.max(1) as f64
    }
}

/// The mean distillation loss over N rows, from the student's final hidden states `h`
/// [N, H] and output weight `w` [V, H] (lm_head or tied embeddings), as a scalar tensor with
/// a backward to both, plus the batch statistics (computed in the same pass). The gradients
/// are computed during this call for whichever of `h` and `w` track gradients (Vars or
/// results of tracked ops): pass detached tensors when only the value is needed.
///
/// # Errors
/// Tensors not f32 rank-2 on the CPU, mismatched sizes, ids outside the vocabulary, no rows,
/// or settings out of range (`alpha` outside [0, 1], `temperature <= 0`, `beta` outside (0, 1)).
pub fn kd_loss(
    h: &Tensor,
    w: &Tensor,
    t: &Targets,
    cfg: &LossConfig,
) -> Result<(Tensor, LossStats)> {
    validate(h, w, t, cfg)?;
    let params = Params {
        alpha: cfg.alpha,
        temperature: cfg.temperature,
        divergence: cfg.divergence,
    };
    let saved = Arc::new(Mutex::new(Saved::default()));
    // Gradients are formed during the forward, so only for inputs that will want them.
    let want = (h.track_op(), w.track_op());
    let op = KdLossOp::new(t.clone(), params, cfg.chunk_rows, want, Arc::clone(&saved));
    let loss = h.apply_op2(w, op)?; // scalar
    let stats = lock(&saved)?.stats;
    Ok((loss, stats))
}

fn validate(h: &Tensor, w: &Tensor, t: &Targets, cfg: &LossConfig) -> Result<()> {
    let ((n, hd), (v, hd2)) = (h.dims2()?, w.dims2()?);
    if h.dtype() != DType::F32 || w.dtype() != DType::F32 {
        bail!(
            "kd_loss needs f32 'h' and 'w', got '{:?}' and '{:?}'",
            h.dtype(),
            w.dtype()
        );
    }
    if !matches!(h.device(), Device::Cpu) || !matches!(w.device(), Device::Cpu) {
        bail!("kd_loss runs on the CPU only; move 'h' and 'w' to Device::Cpu");
    }
    if hd != hd2 || n == 0 || t.k == 0 {
        bail!(
            "kd_loss: 'h' is [{n}, {hd}] and 'w' is [{v}, {hd2}]; need N > 0, equal H, k > 0 (k = '{}')",
            t.k
        );
    }
    if t.labels.len() != n || t.topk_ids.len() != n * t.k || t.topk_logprobs.len() != n * t.k {
        bail!(
            "kd_loss: targets hold {} labels and {} top-k entries; need {n} and {n} x {}",
            t.labels.len(),
            t.topk_ids.len(),
            t.k
        );
    }
    if let Some(bad) = t
        .labels
        .iter()
        .chain(&t.topk_ids)
        .find(|&&i| i as usize >= v)
    {
        bail!("kd_loss: token id '{bad}' is outside the vocabulary of {v}");
    }
    let beta_ok = match cfg.divergence {
        Divergence::Jsd { beta } => beta > 0.0 && beta < 1.0,
        _ => true,
    };
    let temperature_ok = cfg.temperature.is_finite() && cfg.temperature > 0.0;
    if !(0.0..=1.0).contains(&cfg.alpha) || !temperature_ok || !beta_ok {
        bail!("kd_loss: need alpha in [0, 1], temperature > 0 and JSD beta in (0, 1); got {cfg:?}");
    }
    Ok(())
}

/// The same loss as [`kd_loss`] built from stock candle ops (full [N, V] logits, autograd
/// through matmul, `log_softmax` and `gather`), for checking the fused op on small sizes.
///
/// # Errors
/// As [`kd_loss`], and any candle op error.
pub fn kd_loss_reference(h: &Tensor, w: &Tensor, t: &Targets, cfg: &LossConfig) -> Result<Tensor> {
    validate(h, w, t, cfg)?;
    let n = t.labels.len();
    let temp = f64::from(cfg.temperature);
    let z = h.matmul(&w.t()?)?; // [N, V]
    let labels = Tensor::from_slice(&t.labels, (n, 1), h.device())?;
    let ids = Tensor::from_slice(&t.topk_ids, (n, t.k), h.device())?;
    let l = Tensor::from_slice(&t.topk_logprobs, (n, t.k), h.device())?;
    let ce = log_softmax(&z, D::Minus1)?
        .gather(&labels, 1)?
        .squeeze(1)?
        .neg()?; // [N]
    let log_p = log_softmax(&(l / temp)?, D::Minus1)?; // [N, k]
    let log_q = log_softmax(&(&z / temp)?, D::Minus1)?; // [N, V]
    let kd = match cfg.divergence {
        Divergence::Fkl => (log_p.exp()? * (&log_p - log_q.gather(&ids, 1)?)?)?.sum(1)?,
        Divergence::Rkl => {
            let log_qt = log_softmax(&(z.gather(&ids, 1)? / temp)?, D::Minus1)?; // [N, k]
            (log_qt.exp()? * (log_qt - log_p)?)?.sum(1)?
        }
        Divergence::Jsd { beta } => jsd_reference(&log_p, &log_q, &ids, f64::from(beta))?,
    };
    let alpha = f64::from(cfg.alpha);
    if cfg.alpha >= 1.0 {
        return ce.mean_all();
    }
    ((ce * alpha)? + (kd * ((1.0 - alpha) * temp * temp))?)?.mean_all()
}

/// JSD over the full vocabulary with the teacher scattered into a dense [N, V] `p`.
fn jsd_reference(log_p: &Tensor, log_q: &Tensor, ids: &Tensor, beta: f64) -> Result<Tensor> {
    let q = log_q.exp()?; // [N, V]
    let p = q.zeros_like()?.scatter_add(ids, &log_p.exp()?, 1)?.detach(); // [N, V]
    let m = ((&p * beta)? + (&q * (1.0 - beta))?)?;
    let log_m = m.log()?;
    // p = 0 off the top-k, so beta KL(p||M) needs only the k teacher entries.
    let kl_pm = (log_p.exp()? * (log_p - log_m.gather(ids, 1)?)?)?.sum(1)?;
    let kl_qm = (q * (log_q - log_m)?)?.sum(1)?;
    (kl_pm * beta)? + (kl_qm * (1.0 - beta))?
}

#[cfg(test)]
#[path = "loss_tests.rs"]
mod tests;
