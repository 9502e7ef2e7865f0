//! Tests of the fused distillation loss: hand-computed values, agreement with the stock-op
//! reference and with finite differences, the zero point, the alpha = 1 limit, statistics,
//! and an ignored speed measurement at the real vocabulary size.

use super::*;
use candle_core::Var;
use std::time::Instant;

const DIVERGENCES: [Divergence; 3] = [
    Divergence::Fkl,
    Divergence::Rkl,
    Divergence::Jsd { beta: 0.3 },
];

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 // [0, 1)
    }

    fn vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len)
            .map(|_| (2.0 * self.next() - 1.0) * scale)
            .collect()
    }
}

/// Targets from a random teacher: its k most likely ids with their full-softmax log-probs.
fn random_targets(rng: &mut Rng, n: usize, v: usize, k: usize) -> Targets {
    let mut t = Targets {
        k,
        ..Targets::default()
    };
    for _ in 0..n {
        let logits = rng.vec(v, 3.0);
        let m = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let lse = m + logits.iter().map(|&x| (x - m).exp()).sum::<f32>().ln();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        t.topk_ids.extend(order[..k].iter().map(|&i| i as u32));
        t.topk_logprobs
            .extend(order[..k].iter().map(|&i| logits[i] - lse));
        t.labels.push((rng.next() * v as f32) as u32 % v as u32);
    }
    t
}

fn random_case(seed: u64, n: usize, hd: usize, v: usize, k: usize) -> Result<(Var, Var, Targets)> {
    let mut rng = Rng(seed);
    let h = Var::from_vec(rng.vec(n * hd, 1.5), (n, hd), &Device::Cpu)?;
    let w = Var::from_vec(rng.vec(v * hd, 1.5), (v, hd), &Device::Cpu)?;
    Ok((h, w, random_targets(&mut rng, n, v, k)))
}

fn cfg(alpha: f32, temperature: f32, divergence: Divergence, chunk_rows: usize) -> LossConfig {
    LossConfig {
        alpha,
        temperature,
        divergence,
        chunk_rows,
    }
}

/// Loss and gradients of `h` and `w` from either implementation.
fn loss_and_grads(
    fused: bool,
    h: &Var,
    w: &Var,
    t: &Targets,
    c: &LossConfig,
) -> Result<(f32, Vec<f32>, Vec<f32>)> {
    let loss = if fused {
        kd_loss(h, w, t, c)?.0
    } else {
        kd_loss_reference(h, w, t, c)?
    };
    let grads = loss.backward()?;
    Ok((loss.to_scalar()?, grad_of(&grads, h)?, grad_of(&grads, w)?))
}

fn grad_of(grads: &candle_core::backprop::GradStore, v: &Var) -> Result<Vec<f32>> {
    let g = grads
        .get(v)
        .ok_or_else(|| candle_core::Error::Msg("no gradient".into()))?;
    g.flatten_all()?.to_vec1()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// The expected loss of one row in f64 with plain loops over the full vocabulary:
/// `alpha * (lse(z) - z_y) + (1 - alpha) T^2 D`, with `p = softmax(l / T)` over the top-k
/// (0 elsewhere) and `q = softmax(z / T)`; FKL `sum p ln(p/q)`; RKL `sum q~ ln(q~/p)` with
/// `q~ = softmax(z_topk / T)`; JSD `beta sum p ln(p/M) + (1-beta) sum q ln(q/M)` over all V
/// with `M = beta p + (1 - beta) q` and `0 ln 0 = 0`.
fn expected_row(z: &[f64], y: usize, ids: &[usize], l: &[f64], c: &LossConfig) -> f64 {
    let t = f64::from(c.temperature);
    let lse = |xs: &[f64]| xs.iter().map(|x| x.exp()).sum::<f64>().ln();
    let ce = lse(z) - z[y];
    let zt: Vec<f64> = z.iter().map(|x| x / t).collect();
    let q: Vec<f64> = zt.iter().map(|x| (x - lse(&zt)).exp()).collect();
    let lt: Vec<f64> = l.iter().map(|x| x / t).collect();
    let mut p = vec![0.0; z.len()];
    for (&i, &x) in ids.iter().zip(&lt) {
        p[i] = (x - lse(&lt)).exp();
    }
    let d: f64 = match c.divergence {
        Divergence::Fkl => ids.iter().map(|&i| p[i] * (p[i] / q[i]).ln()).sum(),
        Divergence::Rkl => {
            let zk: Vec<f64> = ids.iter().map(|&i| zt[i]).collect();
            ids.iter()
                .zip(&zk)
                .map(|(&i, &x)| (x - lse(&zk)).exp() * ((x - lse(&zk)).exp() / p[i]).ln())
                .sum()
        }
        Divergence::Jsd { beta } => {
            let b = f64::from(beta);
            let xlog = |a: f64, m: f64| if a > 0.0 { a * (a / m).ln() } else { 0.0 };
            (0..z.len())
                .map(|j| {
                    let m = b * p[j] + (1.0 - b) * q[j];
                    b * xlog(p[j], m) + (1.0 - b) * xlog(q[j], m)
                })
                .sum()
        }
    };
    let a = f64::from(c.alpha);
    a * ce + (1.0 - a) * t * t * d
}

#[test]
fn loss_matches_hand_computed_values() -> Result<()> {
    // W = I, so the logits are h: rows [1, 2, 0.5, -1] and [0, -0.5, 3, 1].
    let z = [[1.0, 2.0, 0.5, -1.0], [0.0, -0.5, 3.0, 1.0]];
    let t = Targets {
        labels: vec![0, 3],
        topk_ids: vec![1, 0, 2, 3],
        topk_logprobs: vec![-0.4, -1.6, -0.3, -2.0],
        k: 2,
        ..Targets::default()
    };
    let h =
        Tensor::from_iter(z.iter().flatten().map(|&x| x as f32), &Device::Cpu)?.reshape((2, 4))?;
    let w = Tensor::eye(4, DType::F32, &Device::Cpu)?;
    for d in DIVERGENCES {
        for (alpha, temp) in [(0.0, 1.0), (0.5, 2.0), (1.0, 1.0), (0.0, 0.5), (0.5, 1.0)] {
            let c = cfg(alpha, temp, d, 1);
            let want = (0..2)
                .map(|r| {
                    let ids = [t.topk_ids[2 * r] as usize, t.topk_ids[2 * r + 1] as usize];
                    let l = [
                        f64::from(t.topk_logprobs[2 * r]),
                        f64::from(t.topk_logprobs[2 * r + 1]),
                    ];
                    expected_row(&z[r], t.labels[r] as usize, &ids, &l, &c)
                })
                .sum::<f64>()
                / 2.0;
            let got = f64::from(kd_loss(&h, &w, &t, &c)?.0.to_scalar::<f32>()?);
            let reference = f64::from(kd_loss_reference(&h, &w, &t, &c)?.to_scalar::<f32>()?);
            assert!(
                (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{c:?}: fused {got} vs {want}"
            );
            assert!(
                (reference - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{c:?}: reference {reference} vs {want}"
            );
        }
    }
    Ok(())
}

#[test]
fn fused_matches_reference_in_value_and_gradients() -> Result<()> {
    let (h, w, t) = random_case(7, 7, 5, 50, 4)?;
    for d in DIVERGENCES {
        for (alpha, temp) in [(0.0, 1.0), (0.5, 2.0), (1.0, 1.0), (0.3, 0.7)] {
            let c = cfg(alpha, temp, d, 3);
            let (lf, hf, wf) = loss_and_grads(true, &h, &w, &t, &c)?;
            let (lr, hr, wr) = loss_and_grads(false, &h, &w, &t, &c)?;
            assert_close(&[lf], &[lr], 1e-5, &format!("loss {c:?}"));
            assert_close(&hf, &hr, 1e-4, &format!("dh {c:?}"));
            assert_close(&wf, &wr, 1e-4, &format!("dw {c:?}"));
        }
    }
    Ok(())
}

#[test]
fn gradients_match_finite_differences() -> Result<()> {
    let (n, hd, v) = (3, 4, 12);
    let (h, w, t) = random_case(11, n, hd, v, 3)?;
    for d in DIVERGENCES {
        let c = cfg(0.3, 1.5, d, 2);
        let (_, dh, dw) = loss_and_grads(true, &h, &w, &t, &c)?;
        let (hv, wv) = (
            h.flatten_all()?.to_vec1::<f32>()?,
            w.flatten_all()?.to_vec1::<f32>()?,
        );
        let loss_at = |hv: &[f32], wv: &[f32]| -> Result<f32> {
            let h = Tensor::from_slice(hv, (n, hd), &Device::Cpu)?;
            let w = Tensor::from_slice(wv, (v, hd), &Device::Cpu)?;
            kd_loss(&h, &w, &t, &c)?.0.to_scalar::<f32>()
        };
        // Central differences: (L(x + e) - L(x - e)) / 2e.
        let eps = 1e-2;
        for (which, base, grad) in [(0, &hv, &dh), (1, &wv, &dw)] {
            for i in 0..base.len() {
                let (mut up, mut down) = (base.clone(), base.clone());
                up[i] += eps;
                down[i] -= eps;
                let (lu, ld) = if which == 0 {
                    (loss_at(&up, &wv)?, loss_at(&down, &wv)?)
                } else {
                    (loss_at(&hv, &up)?, loss_at(&hv, &down)?)
                };
                let fd = (lu - ld) / (2.0 * eps);
                assert!(
                    (fd - grad[i]).abs() < 2e-3 + 1e-2 * fd.abs(),
                    "{d:?} input {which} [{i}]: fd {fd} vs {}",
                    grad[i]
                );
            }
        }
    }
    Ok(())
}

#[test]
fn gradients_scale_with_upstream_and_skip_untracked_inputs() -> Result<()> {
    let (h, w, t) = random_case(9, 5, 4, 30, 3)?;
    let c = cfg(0.4, 1.7, Divergence::Jsd { beta: 0.6 }, 2);
    let (_, dh, dw) = loss_and_grads(true, &h, &w, &t, &c)?;
    let grads = (kd_loss(&h, &w, &t, &c)?.0 * 3.0)?.backward()?;
    let three = |xs: &[f32]| xs.iter().map(|x| 3.0 * x).collect::<Vec<f32>>();
    assert_close(&grad_of(&grads, &h)?, &three(&dh), 1e-6, "3 dh");
    assert_close(&grad_of(&grads, &w)?, &three(&dw), 1e-6, "3 dw");
    let grads = kd_loss(&h.as_tensor().detach(), &w, &t, &c)?.0.backward()?;
    assert!(grads.get(&h).is_none());
    assert_close(&grad_of(&grads, &w)?, &dw, 1e-6, "dw without dh");
    Ok(())
}

#[test]
fn kd_is_zero_when_student_matches_teacher() -> Result<()> {
    // V = k and z = l + c per row, so softmax(z / T) equals the renormalised teacher exactly.
    let l = [-0.2f32, -1.9, -3.0, -4.5, -0.7, -1.1, -2.2, -6.0];
    let t = Targets {
        labels: vec![0, 1],
        topk_ids: vec![0, 1, 2, 3, 0, 1, 2, 3],
        topk_logprobs: l.to_vec(),
        k: 4,
        ..Targets::default()
    };
    let shifted: Vec<f32> = l
        .iter()
        .enumerate()
        .map(|(i, &x)| x + if i < 4 { 0.8 } else { -1.3 })
        .collect();
    let h = Var::from_vec(shifted, (2, 4), &Device::Cpu)?;
    let w = Var::from_tensor(&Tensor::eye(4, DType::F32, &Device::Cpu)?)?;
    for d in DIVERGENCES {
        for temp in [1.0, 2.0, 0.5] {
            let (loss, dh, dw) = loss_and_grads(true, &h, &w, &t, &cfg(0.0, temp, d, 1))?;
            assert!(loss.abs() < 1e-6, "{d:?} T={temp}: loss {loss}");
            assert_close(&dh, &[0.0; 8], 1e-6, "dh");
            assert_close(&dw, &[0.0; 16], 1e-6, "dw");
        }
    }
    Ok(())
}

#[test]
fn alpha_one_is_plain_cross_entropy() -> Result<()> {
    let (h, w, t) = random_case(3, 9, 6, 40, 5)?;
    let z = h.matmul(&w.t()?)?;
    let labels = Tensor::from_slice(&t.labels, t.labels.len(), &Device::Cpu)?;
    let want = candle_nn::loss::cross_entropy(&z, &labels)?.to_scalar::<f32>()?;
    for d in DIVERGENCES {
        let (loss, stats) = kd_loss(&h, &w, &t, &cfg(1.0, 2.0, d, 4))?;
        assert_close(&[loss.to_scalar::<f32>()?], &[want], 1e-5, "loss");
        assert_close(&[stats.mean_ce() as f32], &[want], 1e-5, "stats.ce");
    }
    Ok(())
}

#[test]
fn stats_count_top1_agreement() -> Result<()> {
    // Row argmaxes are 2, 0, 3; teacher top-1 ids are 2, 1, 3: two rows agree.
    let z = [
        0.1f32, 0.2, 3.0, -1.0, 2.0, 1.0, 0.0, 0.0, -1.0, 0.5, 0.2, 4.0,
    ];
    let t = Targets {
        labels: vec![0, 0, 0],
        topk_ids: vec![2, 0, 1, 0, 3, 2],
        topk_logprobs: vec![-0.1, -2.5, -0.3, -1.4, -0.2, -1.8],
        k: 2,
        ..Targets::default()
    };
    let h = Tensor::from_slice(&z, (3, 4), &Device::Cpu)?;
    let w = Tensor::eye(4, DType::F32, &Device::Cpu)?;
    let (_, stats) = kd_loss(&h, &w, &t, &cfg(0.5, 1.0, Divergence::Fkl, 2))?;
    assert_eq!((stats.top1_agree, stats.rows), (2, 3));
    let mut total = LossStats::default();
    total.add(&stats);
    total.add(&stats);
    assert_eq!((total.top1_agree, total.rows), (4, 6));
    assert!((total.mean_ce() - stats.mean_ce()).abs() < 1e-12);
    Ok(())
}

#[test]
fn bad_inputs_are_refused() -> Result<()> {
    let (h, w, mut t) = random_case(5, 2, 3, 10, 2)?;
    assert!(kd_loss(&h, &w, &t, &cfg(1.5, 1.0, Divergence::Fkl, 4)).is_err());
    assert!(kd_loss(&h, &w, &t, &cfg(0.5, 0.0, Divergence::Fkl, 4)).is_err());
    assert!(kd_loss(&h, &w, &t, &cfg(0.5, 1.0, Divergence::Jsd { beta: 1.0 }, 4)).is_err());
    t.labels[1] = 10;
    assert!(kd_loss(&h, &w, &t, &cfg(0.5, 1.0, Divergence::Fkl, 4)).is_err());
    Ok(())
}

/// Best of `reps` wall-clock seconds of `f`.
fn best_secs(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let clock = Instant::now();
        f()?;
        best = best.min(clock.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Peak resident memory since the last reset, in MB (Linux; 0 elsewhere), then resets it.
fn take_peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    kb.unwrap_or(0.0) / 1024.0
}

/// `cargo test --release --lib train::loss::tests::speed -- --ignored --nocapture`
#[test]
#[ignore = "speed measurement at the real vocabulary size; takes a minute"]
fn speed_at_teacher_vocabulary() -> Result<()> {
    let (n, hd, v, k) = (2048, 256, 49152, 64);
    let (h, w, t) = random_case(1, n, hd, v, k)?;
    let gemm = 2.0 * (n * hd * v) as f64 / 1e9;
    let secs = best_secs(3, || h.matmul(&w.t()?).map(|_| ()))?;
    let rate = gemm / secs;
    println!("matmul [{n}x{hd}] @ [{hd}x{v}]: {secs:.3} s = {rate:.1} GFLOP/s");
    let sq = Tensor::from_vec(Rng(2).vec(2048 * 2048, 1.0), (2048, 2048), &Device::Cpu)?;
    let secs = best_secs(3, || sq.matmul(&sq).map(|_| ()))?;
    println!(
        "matmul [2048x2048] @ [2048x2048]: {:.1} GFLOP/s",
        2.0 * 2048f64.powi(3) / secs / 1e9
    );
    let (h_const, w_const) = (h.as_tensor().detach(), w.as_tensor().detach());
    take_peak_rss_mb();
    for chunk_rows in [256, 512] {
        for d in DIVERGENCES {
            let c = cfg(0.5, 2.0, d, chunk_rows);
            let fwd = best_secs(2, || kd_loss(&h_const, &w_const, &t, &c).map(|_| ()))?;
            let both = best_secs(2, || kd_loss(&h, &w, &t, &c)?.0.backward().map(|_| ()))?;
            println!(
                "fused {d:?} chunk_rows {chunk_rows}: forward only {fwd:.2} s, forward+backward {both:.2} s (3 GEMMs at the rate above: {:.2} s)",
                3.0 * gemm / rate
            );
        }
    }
    println!("fused peak RSS {:.0} MB", take_peak_rss_mb());
    let c = cfg(0.5, 2.0, Divergence::Fkl, 256);
    let secs = best_secs(1, || {
        kd_loss_reference(&h, &w, &t, &c)?.backward().map(|_| ())
    })?;
    println!(
        "stock-op reference Fkl: forward+backward {secs:.2} s, peak RSS {:.0} MB",
        take_peak_rss_mb()
    );
    Ok(())
}
