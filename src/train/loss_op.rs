//! The fused distillation loss as a candle [`CustomOp2`] over `(h, W)` with its own backward.
//!
//! The logits `z = h W^T` ([N, V]) never exist whole, as in Cut Cross-Entropy (Wijmans et al.
//! 2024, "Cut Your Losses in Large-Vocabulary Language Models"): the op walks blocks of
//! `chunk_rows` rows, gets each block's logits from one GEMM, and runs [`row_loss`] on every
//! row (rows split over the cores). When a gradient is wanted, the row, still in cache,
//! becomes `dz = dloss/dz` in place and the block feeds two more GEMMs: `dH[block] = dZ W`
//! and `dW += dZ^T h[block]`. The backward then only scales the stored gradients by the
//! upstream scalar, as Liger Kernel's fused linear cross-entropy does (Hsu et al. 2024):
//! three GEMMs per step where a backward that recomputes the logits needs four. The GEMMs
//! are candle's multi-threaded CPU kernel, run on views of the input storage without copies.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::loss::{LossStats, Targets};
use super::loss_kernel::{Params, RowOut, Scratch, Teacher, row_loss};

/// What one forward leaves for its backward and for the caller's statistics.
#[derive(Debug, Default)]
pub(crate) struct Saved {
    /// Sums over the rows.
    pub stats: LossStats,
    /// `d mean_loss / dh`, [N, H], when `h` wants a gradient.
    dh: Option<Tensor>,
    /// `d mean_loss / dW`, [V, H], when `W` wants a gradient.
    dw: Option<Tensor>,
}

/// The op: the mean loss (a scalar) from `h` [N, H] and `W` [V, H] (f32, on the CPU).
pub(crate) struct KdLossOp {
    targets: Targets,
    params: Params,
    chunk_rows: usize,
    /// Whether `h` and `W` want gradients (computed during the forward).
    want: (bool, bool),
    saved: Arc<Mutex<Saved>>,
}

impl KdLossOp {
    /// An op whose forward fills `saved`; `want` says which of `(h, W)` need gradients.
    pub(crate) fn new(
        targets: Targets,
        params: Params,
        chunk_rows: usize,
        want: (bool, bool),
        saved: Arc<Mutex<Saved>>,
    ) -> Self {
        Self {
            targets,
            params,
            chunk_rows: chunk_rows.max(1),
            want,
            saved,
        }
    }

    /// Rows `r0..r0 + outs.len()` with their logits `z` ([rows, V]); when `grad` is given,
    /// `z` becomes `grad * dloss/dz`.
    fn block(&self, r0: usize, z: &mut [f32], outs: &mut [RowOut], grad: Option<f32>) {
        let (v, k) = (z.len() / outs.len().max(1), self.targets.k);
        for_rows(z, v, outs, 1, |i0, z, outs| {
            let mut scratch = Scratch::default();
            for (i, (zr, out)) in z.chunks_mut(v).zip(outs.iter_mut()).enumerate() {
                let r = r0 + i0 + i;
                let teacher = Teacher {
                    label: self.targets.labels[r],
                    ids: &self.targets.topk_ids[r * k..(r + 1) * k],
                    logprobs: &self.targets.topk_logprobs[r * k..(r + 1) * k],
                };
                *out = row_loss(zr, &teacher, &self.params, grad, &mut scratch);
            }
        });
    }
}

impl CustomOp2 for KdLossOp {
    fn name(&self) -> &'static str {
        "distill-kd-loss"
    }

    fn cpu_fwd(
        &self,
        hs: &CpuStorage,
        hl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let ((n, hd), (v, _)) = (hl.shape().dims2()?, wl.shape().dims2()?);
        let wt = wl.transpose(0, 1)?; // [H, V]
        let (want_dh, want_dw) = self.want;
        let grad = (want_dh || want_dw).then_some(1.0 / n as f32);
        let mut dh = vec![0.0f32; if want_dh { n * hd } else { 0 }];
        let mut dw = vec![0.0f32; if want_dw { v * hd } else { 0 }];
        let mut outs = vec![RowOut::default(); n];
        for r0 in (0..n).step_by(self.chunk_rows) {
            let rows = self.chunk_rows.min(n - r0);
            let hc = hl.narrow(0, r0, rows)?; // [rows, H]
            let mut z = matmul(hs, &hc, ws, &wt)?; // [rows, V]
            self.block(r0, &mut z, &mut outs[r0..r0 + rows], grad);
            let (dz, dzl) = (CpuStorage::F32(z), Layout::contiguous((rows, v)));
            if want_dh {
                let part = matmul(&dz, &dzl, ws, wl)?; // [rows, H]
                dh[r0 * hd..(r0 + rows) * hd].copy_from_slice(&part);
            }
            if want_dw {
                add_dw(&mut dw, &dz, &dzl, hs, &hc)?;
            }
        }
        let mean = outs.iter().map(|o| f64::from(o.loss)).sum::<f64>() / n as f64;
        let cpu = candle_core::Device::Cpu;
        let dh = want_dh
            .then(|| Tensor::from_vec(dh, (n, hd), &cpu))
            .transpose()?;
        let dw = want_dw
            .then(|| Tensor::from_vec(dw, (v, hd), &cpu))
            .transpose()?;
        self.save(&outs, dh, dw)?;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = f64::from(grad_res.to_scalar::<f32>()?);
        let saved = lock(&self.saved)?;
        let scale = |t: &Option<Tensor>| {
            t.as_ref()
                .map(|t| if g == 1.0 { Ok(t.clone()) } else { t * g })
                .transpose()
        };
        Ok((scale(&saved.dh)?, scale(&saved.dw)?))
    }
}

impl KdLossOp {
    fn save(&self, outs: &[RowOut], dh: Option<Tensor>, dw: Option<Tensor>) -> Result<()> {
        let mut stats = LossStats {
            rows: outs.len(),
            ..LossStats::default()
        };
        for o in outs {
            stats.ce += o.ce;
            stats.kd += o.kd;
            stats.top1_agree += usize::from(o.top1);
        }
        *lock(&self.saved)? = Saved { stats, dh, dw };
        Ok(())
    }
}

/// `dw += dz^T h` ([V, rows] x [rows, H]), in blocks of vocabulary rows so that each GEMM
/// output is small enough to be reused by the allocator rather than freshly page-faulted.
fn add_dw(
    dw: &mut [f32],
    dz: &CpuStorage,
    dzl: &Layout,
    hs: &CpuStorage,
    hl: &Layout,
) -> Result<()> {
    const BLOCK: usize = 2048;
    let ((_, v), (_, hd)) = (dzl.shape().dims2()?, hl.shape().dims2()?);
    for c0 in (0..v).step_by(BLOCK) {
        let len = BLOCK.min(v - c0);
        let part = matmul(dz, &dzl.narrow(1, c0, len)?.transpose(0, 1)?, hs, hl)?; // [len, H]
        dw[c0 * hd..(c0 + len) * hd]
            .iter_mut()
            .zip(&part)
            .for_each(|(a, b)| *a += b);
    }
    Ok(())
}

/// `a @ b` for rank-2 f32 views, through candle's CPU GEMM (multi-threaded, any strides).
fn matmul(a: &CpuStorage, al: &Layout, b: &CpuStorage, bl: &Layout) -> Result<Vec<f32>> {
    let ((m, k), (k2, n)) = (al.shape().dims2()?, bl.shape().dims2()?);
    if k != k2 {
        bail!("kd_loss: inner dimensions differ ({k} vs {k2})");
    }
    match a.matmul(b, (1, m, n, k), al, bl)? {
        CpuStorage::F32(out) => Ok(out),
        other => bail!("kd_loss: expected f32 from matmul, got {:?}", other.dtype()),
    }
}

/// The shared state, or an error if a panicking thread poisoned it.
pub(crate) fn lock(saved: &Mutex<Saved>) -> Result<std::sync::MutexGuard<'_, Saved>> {
    saved
        .lock()
        .map_err(|_| candle_core::Error::Msg("kd_loss: state lock poisoned by a panic".into()))
}

/// Splits rows over the cores: `f(first_row, rows of a, rows of b)` on disjoint row ranges,
/// where a row is `sa` elements of `a` and `sb` of `b`.
fn for_rows<A: Send, B: Send, F>(a: &mut [A], sa: usize, b: &mut [B], sb: usize, f: F)
where
    F: Fn(usize, &mut [A], &mut [B]) + Sync,
{
    let rows = a.len() / sa.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 {
        return f(0, a, b);
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, (a, b)) in a
            .chunks_mut(per * sa)
            .zip(b.chunks_mut(per * sb))
            .enumerate()
        {
            let f = &f;
            s.spawn(move || f(i * per, a, b));
        }
    });
}
