//! Per-row arithmetic of the fused distillation loss in [`super::loss`].
//!
//! One row is one target position: its student logits `z` over the whole vocabulary, its
//! hard label and the teacher's top-k log-probs. Three passes over `z`: the max `m`; then
//! `e1_j = exp(z_j - m)` and `eT_j = exp((z_j - m) / T)` with their sums (stored when a
//! gradient is wanted: `e1` in place of `z`, `eT` in a scratch row); then, after the
//! divergence is worked out on the k teacher entries in f64, the gradient
//!
//! `dloss/dz_j = alpha * softmax(z)_j + dense_t * softmax(z / T)_j + sparse_j`,
//!
//! where `sparse` is non-zero only at the label and the k teacher ids. A row of 49152 f32 is
//! 192 KiB, so the passes run from L2. Loops run over fixed-width lanes with a branch-free
//! `exp` (Cephes `expf`: range reduction by ln 2, degree-6 polynomial, exponent bits set
//! directly) so that they vectorise.

use super::loss::Divergence;

/// Lanes of the vectorised loops (two AVX registers of f32).
const LANES: usize = 16;

/// Loss settings the kernel needs, already validated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// Weight of hard-label cross-entropy.
    pub alpha: f32,
    /// Distillation temperature `T`.
    pub temperature: f32,
    /// Which divergence `D`.
    pub divergence: Divergence,
}

/// Result of one row.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RowOut {
    /// `alpha * CE + (1 - alpha) * T^2 * D`.
    pub loss: f32,
    /// Cross-entropy against the label.
    pub ce: f64,
    /// The divergence `D`, unscaled.
    pub kd: f64,
    /// Whether the student's argmax is the teacher's top-1 (ties count as agreement).
    pub top1: bool,
}

/// Teacher side of one row.
pub(crate) struct Teacher<'a> {
    /// The hard label (the actual next token).
    pub label: u32,
    /// Top-k token ids, most likely first.
    pub ids: &'a [u32],
    /// Their log-probs at temperature 1.
    pub logprobs: &'a [f32],
}

/// Buffers one thread reuses across rows.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// `exp((z - m) / T)` of the current row.
    exp_t: Vec<f32>,
    /// Gradient coefficients at the label (entry 0) and the k teacher ids.
    sparse: Vec<f32>,
}

/// The divergence on the teacher's k entries: `D`, and `dD/dz = (c * q + s) / T` with `s`
/// written to the k teacher entries.
struct KdPart {
    d: f64,
    c: f64,
}

/// Loss and statistics of one row of logits `z`. When `grad` is given, `z` is replaced by
/// `grad * dloss/dz`.
pub(crate) fn row_loss(
    z: &mut [f32],
    t: &Teacher<'_>,
    p: &Params,
    grad: Option<f32>,
    sc: &mut Scratch,
) -> RowOut {
    let inv_t = 1.0 / p.temperature;
    let m = max(z);
    let top1 = t.ids.first().is_some_and(|&i| z[i as usize] >= m);
    let z_label = f64::from(z[t.label as usize]);
    let zk: Vec<f64> = t
        .ids
        .iter()
        .map(|&i| f64::from(z[i as usize] * inv_t))
        .collect();
    let (s1, s_t) = match grad {
        Some(_) => exp_store(z, m, inv_t, &mut sc.exp_t),
        None => exp_sums(z, m, inv_t),
    };
    let lse1 = f64::from(m) + s1.ln();
    let lse_t = f64::from(m * inv_t) + s_t.ln();
    let ce = lse1 - z_label;
    let kd = divergence(t, &zk, lse_t, p, &mut sc.sparse);
    let (alpha, temp) = (f64::from(p.alpha), f64::from(p.temperature));
    let loss = if p.alpha >= 1.0 {
        ce
    } else {
        alpha * ce + (1.0 - alpha) * temp * temp * kd.d
    };
    if let Some(g) = grad {
        write_grad_row(z, t, p, g, kd.c, (s1, s_t), sc);
    }
    RowOut {
        loss: loss as f32,
        ce,
        kd: kd.d,
        top1,
    }
}

/// `D` on the teacher's k entries; writes `s` (see [`KdPart`]) to `sparse[1..]`.
fn divergence(
    t: &Teacher<'_>,
    zk: &[f64],
    lse_t: f64,
    p: &Params,
    sparse: &mut Vec<f32>,
) -> KdPart {
    let inv_t = 1.0 / f64::from(p.temperature);
    let log_p = log_softmax(t.logprobs.iter().map(|&l| f64::from(l) * inv_t));
    sparse.resize(t.ids.len() + 1, 0.0);
    let s = &mut sparse[1..];
    match p.divergence {
        Divergence::Fkl => fkl(zk, lse_t, &log_p, s),
        Divergence::Rkl => rkl(zk, &log_p, s),
        Divergence::Jsd { beta } => jsd(zk, lse_t, &log_p, f64::from(beta), s),
    }
}

/// `z <- g * dloss/dz`, where `z` holds `exp(z - m)` and `sc.exp_t` holds `exp((z - m) / T)`
/// with sums `s1` and `s_t`, and `sc.sparse[1..]` holds the divergence's `s`:
/// `dloss/dz = alpha (softmax(z) - onehot(y)) + (1 - alpha) T^2 (c q + s) / T`.
fn write_grad_row(
    z: &mut [f32],
    t: &Teacher<'_>,
    p: &Params,
    g: f32,
    c: f64,
    (s1, s_t): (f64, f64),
    sc: &mut Scratch,
) {
    let (alpha, temp, g) = (f64::from(p.alpha), f64::from(p.temperature), f64::from(g));
    sc.sparse[0] = (-alpha * g) as f32;
    // At alpha = 1 the divergence drops out entirely, even where it is not finite.
    let kd_on = p.alpha < 1.0;
    let w_kd = (1.0 - alpha) * temp * g;
    sc.sparse[1..].iter_mut().for_each(|s| {
        *s = if kd_on {
            (f64::from(*s) * w_kd) as f32
        } else {
            0.0
        }
    });
    let a1 = (g * alpha / s1) as f32;
    let a_t = if kd_on { (w_kd * c / s_t) as f32 } else { 0.0 };
    write_grad(z, a1, a_t, sc.exp_t.is_empty(), &sc.exp_t); // empty when T = 1
    let ids = std::iter::once(&t.label).chain(t.ids);
    ids.zip(&sc.sparse).for_each(|(&i, &s)| z[i as usize] += s);
}

/// Forward KL(p || q) on the top-k: `D = sum p (log p - log q)`, `dD/dz = (q - p) / T`.
fn fkl(zk: &[f64], lse_t: f64, log_p: &[f64], s: &mut [f32]) -> KdPart {
    let mut d = 0.0;
    for ((&z, &lp), s) in zk.iter().zip(log_p).zip(s) {
        let pi = lp.exp();
        if pi > 0.0 {
            d += pi * (lp - (z - lse_t));
        }
        *s = -pi as f32;
    }
    KdPart { d, c: 1.0 }
}

/// Reverse KL(q~ || p) with `q~ = softmax(z_topk / T)` renormalised over the teacher's
/// support (outside it `p = 0`, so the full-vocabulary reverse KL would be infinite):
/// `dD/dz_j = q~_j (log(q~_j / p_j) - D) / T` on the top-k, 0 elsewhere.
fn rkl(zk: &[f64], log_p: &[f64], s: &mut [f32]) -> KdPart {
    let log_q = log_softmax(zk.iter().copied());
    let d: f64 = log_q
        .iter()
        .zip(log_p)
        .map(|(&lq, &lp)| lq.exp() * (lq - lp))
        .sum();
    for ((&lq, &lp), s) in log_q.iter().zip(log_p).zip(s) {
        *s = (lq.exp() * (lq - lp - d)) as f32;
    }
    KdPart { d, c: 0.0 }
}

/// Generalised JSD: `M = beta p + (1 - beta) q`, `D = beta KL(p||M) + (1 - beta) KL(q||M)`.
/// Outside the top-k `p = 0`, so each term there is `q_j g_out` with
/// `g_out = (1 - beta) ln(1 / (1 - beta))`, summed in closed form over `q_out = 1 - sum q_topk`.
/// `dD/dq_j = g_j = (1 - beta) ln(q_j / M_j)`; through the softmax
/// `dD/dz_j = q_j (g_j - S) / T`, `S = sum_i q_i g_i`.
fn jsd(zk: &[f64], lse_t: f64, log_p: &[f64], beta: f64, s: &mut [f32]) -> KdPart {
    let (lb, lb1) = (beta.ln(), (1.0 - beta).ln());
    let g_out = -(1.0 - beta) * lb1;
    let (mut d, mut sum_qg, mut sum_q) = (0.0, 0.0, 0.0);
    for ((&z, &lp), s) in zk.iter().zip(log_p).zip(s.iter_mut()) {
        let lq = z - lse_t;
        let (pi, qi) = (lp.exp(), lq.exp());
        let lm = log_add_exp(lb + lp, lb1 + lq);
        if pi > 0.0 {
            d += beta * pi * (lp - lm);
        }
        d += (1.0 - beta) * qi * (lq - lm);
        let g = (1.0 - beta) * (lq - lm);
        sum_qg += qi * g;
        sum_q += qi;
        *s = (qi * (g - g_out)) as f32;
    }
    let q_out = (1.0 - sum_q).max(0.0);
    d += q_out * g_out;
    KdPart {
        d,
        c: g_out - (sum_qg + q_out * g_out),
    }
}

/// Maximum of a non-empty row.
fn max(z: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = z.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = a.max(x);
        }
    }
    let m = acc.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
    tail.iter().fold(m, |m, &x| m.max(x))
}

/// `(sum exp(z - m), sum exp((z - m) / T))`; the second equals the first when `T = 1`.
fn exp_sums(z: &[f32], m: f32, inv_t: f32) -> (f64, f64) {
    let (mut a1, mut a_t) = ([0.0f64; LANES], [0.0f64; LANES]);
    let chunks = z.chunks_exact(LANES);
    let tail = chunks.remainder();
    if inv_t == 1.0 {
        for c in chunks {
            a1.iter_mut()
                .zip(c)
                .for_each(|(a, &x)| *a += f64::from(fast_exp(x - m)));
        }
    } else {
        for c in chunks {
            for ((a, b), &x) in a1.iter_mut().zip(a_t.iter_mut()).zip(c) {
                *a += f64::from(fast_exp(x - m));
                *b += f64::from(fast_exp((x - m) * inv_t));
            }
        }
    }
    let (mut s1, mut s_t) = (a1.iter().sum::<f64>(), a_t.iter().sum::<f64>());
    for &x in tail {
        s1 += f64::from(fast_exp(x - m));
        s_t += f64::from(fast_exp((x - m) * inv_t));
    }
    if inv_t == 1.0 { (s1, s1) } else { (s1, s_t) }
}

/// As [`exp_sums`], but keeps the terms: `z <- exp(z - m)`, `exp_t <- exp((z - m) / T)`
/// (left empty when `T = 1`).
fn exp_store(z: &mut [f32], m: f32, inv_t: f32, exp_t: &mut Vec<f32>) -> (f64, f64) {
    exp_t.clear();
    if inv_t != 1.0 {
        exp_t.extend(z.iter().map(|&x| fast_exp((x - m) * inv_t)));
    }
    z.iter_mut().for_each(|x| *x = fast_exp(*x - m));
    let s1 = lane_sum(z);
    if inv_t == 1.0 {
        (s1, s1)
    } else {
        (s1, lane_sum(exp_t))
    }
}

/// `z <- a1 * z + a_t * exp_t` (with `exp_t` standing for `z` itself when `same`, i.e. T = 1).
fn write_grad(z: &mut [f32], a1: f32, a_t: f32, same: bool, exp_t: &[f32]) {
    if same || a_t == 0.0 {
        let a = if same { a1 + a_t } else { a1 };
        z.iter_mut().for_each(|x| *x *= a);
    } else {
        z.iter_mut()
            .zip(exp_t)
            .for_each(|(x, &e)| *x = a1 * *x + a_t * e);
    }
}

/// Sum in `LANES` f64 partial sums (vectorises; exact enough for 10^5 terms).
fn lane_sum(xs: &[f32]) -> f64 {
    let mut acc = [0.0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(x)).sum();
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, &x)| *a += f64::from(x));
    }
    acc.iter().sum::<f64>() + tail
}

/// `a * b + c`, fused where the CPU has FMA (the build targets the native CPU).
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    if cfg!(target_feature = "fma") {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x` to about 2 ulp, branch-free so that loops over it vectorise (Cephes `expf`).
/// Inputs below -88 give 0 (or a tiny normal), above 88 saturate.
#[inline(always)]
pub(crate) fn fast_exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-88.0, 88.0);
    let t = fma(x, std::f32::consts::LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = fma(n, 2.121_944_4e-4, fma(n, -0.693_359_4, x)); // x - n ln 2, in two parts
    let mut y = 1.987_569_1e-4f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        y = fma(y, r, c);
    }
    let y = fma(y, r * r, r + 1.0);
    let e = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32) + 127;
    y * f32::from_bits((e.max(0) as u32) << 23)
}

/// `log_softmax` of a short sequence, in f64.
pub(crate) fn log_softmax(xs: impl Iterator<Item = f64>) -> Vec<f64> {
    let xs: Vec<f64> = xs.collect();
    let m = xs.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    let lse = m + xs.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
    xs.iter().map(|&x| x - lse).collect()
}

/// `ln(e^a + e^b)` without overflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    if m == f64::NEG_INFINITY {
        m
    } else {
        m + ((a - m).exp() + (b - m).exp()).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std_exp() {
        for i in -8800..=8800 {
            let x = i as f32 * 0.01;
            let (got, want) = (fast_exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4e-7 * want + 1e-37,
                "exp({x}): {got} vs {want}"
            );
        }
        assert_eq!(fast_exp(-1e4), 0.0);
    }

    #[test]
    fn lane_loops_handle_ragged_rows() {
        let z: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let m = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        assert_eq!(max(&z), m);
        let want: f64 = z.iter().map(|&x| f64::from((x - m) * 0.5).exp()).sum();
        let (_, s_t) = exp_sums(&z, m, 0.5);
        let (mut zz, mut e) = (z.clone(), Vec::new());
        let (_, s_t2) = exp_store(&mut zz, m, 0.5, &mut e);
        assert!((s_t - want).abs() < 1e-5 && (s_t2 - want).abs() < 1e-5);
    }
}
