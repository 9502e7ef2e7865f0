//! Top-k log-probabilities from one row of raw logits, and seeded sampling.
//!
//! Every stored target is `logit - logsumexp(all logits)` for the k largest logits, so the
//! full-vocabulary normaliser is needed even though only k values are kept. Recording calls
//! this for every response position, so the loops are written to vectorise: a polynomial
//! `exp` (Cody-Waite range reduction, degree-6 Taylor, rel. error < 2e-7) in place of libm's
//! scalar one, and a blocked scan that skips blocks whose maximum cannot enter the top k.

use std::cmp::Ordering;

use crate::{Error, Result};

/// Lanes of the vector accumulators; 16 f32 = two AVX2 registers.
const LANES: usize = 16;
/// Block size of the top-k scan.
const BLOCK: usize = 64;

/// `e^x` for `x <= 0` (clamped at -87, where f32 underflows anyway).
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let n = (x * LOG2E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO; // |r| <= ln2/2
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The largest value of `xs` (NaN if any is NaN).
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut nan = false;
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            acc[j] = acc[j].max(c[j]);
            nan |= c[j].is_nan();
        }
    }
    let mut m = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in rest {
        m = m.max(x);
        nan |= x.is_nan();
    }
    if nan { f32::NAN } else { m }
}

/// `sum_i exp((xs[i] - shift) * scale)`, for `shift >= max(xs)` and `scale > 0`. Writes each
/// term into `out` when given.
pub fn sum_exp(xs: &[f32], shift: f32, scale: f32, mut out: Option<&mut [f32]>) -> f32 {
    let mut acc = [0f32; LANES];
    let n = xs.len() / LANES * LANES;
    if let Some(out) = out.as_deref_mut() {
        for (c, o) in xs[..n]
            .chunks_exact(LANES)
            .zip(out[..n].chunks_exact_mut(LANES))
        {
            for j in 0..LANES {
                let e = exp_neg((c[j] - shift) * scale);
                o[j] = e;
                acc[j] += e;
            }
        }
    } else {
        for c in xs[..n].chunks_exact(LANES) {
            for j in 0..LANES {
                acc[j] += exp_neg((c[j] - shift) * scale);
            }
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in n..xs.len() {
        let e = exp_neg((xs[i] - shift) * scale);
        if let Some(out) = out.as_deref_mut() {
            out[i] = e;
        }
        s += e;
    }
    s
}

/// Descending by value, then ascending by id: a total order, so ties select deterministically.
fn by_value_desc(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// The `k` largest entries of `xs` as (value, index), sorted by [`by_value_desc`].
/// `scratch` is reused between calls to avoid allocation.
pub fn top_k(xs: &[f32], k: usize, scratch: &mut Vec<(f32, u32)>) {
    let k = k.min(xs.len());
    scratch.clear();
    if k == 0 {
        return;
    }
    let cap = (4 * k).max(256);
    let mut threshold = f32::NEG_INFINITY;
    for (b, block) in xs.chunks(BLOCK).enumerate() {
        let block_max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if block_max < threshold {
            continue;
        }
        let base = (b * BLOCK) as u32;
        for (j, &v) in block.iter().enumerate() {
            if v >= threshold {
                scratch.push((v, base + j as u32));
            }
        }
        if scratch.len() >= cap {
            scratch.select_nth_unstable_by(k - 1, by_value_desc);
            scratch.truncate(k);
            threshold = scratch.iter().map(|c| c.0).fold(f32::INFINITY, f32::min);
        }
    }
    if scratch.len() > k {
        scratch.select_nth_unstable_by(k - 1, by_value_desc);
        scratch.truncate(k);
    }
    scratch.sort_unstable_by(by_value_desc);
}

/// The teacher's distribution at one position: top-k ids and their log-probabilities under
/// the full-vocabulary softmax at temperature 1.
///
/// Returns `None` when the logits hold a NaN or infinity (a broken model or context).
pub fn log_softmax_top_k(
    logits: &[f32],
    k: usize,
    ids: &mut [u32],
    logprobs: &mut [f32],
    scratch: &mut Vec<(f32, u32)>,
) -> Option<()> {
    let m = max(logits);
    if !m.is_finite() {
        return None;
    }
    let lse = m + sum_exp(logits, m, 1.0, None).ln();
    top_k(logits, k, scratch);
    for (i, &(v, id)) in scratch.iter().enumerate() {
        ids[i] = id;
        logprobs[i] = v - lse;
    }
    Some(())
}

/// SplitMix64: a tiny, well-mixed generator; one stream per record keeps sampling
/// independent of batching and resumption.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for record `index` of a run seeded with `seed`.
    pub fn for_record(seed: u64, index: u64) -> Self {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        r.0 ^= r
            .next_u64()
            .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How the teacher picks its next token when it writes a response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 is greedy.
    pub temperature: f32,
    /// Nucleus: sample among the most likely tokens whose mass reaches `top_p`.
    pub top_p: f32,
}

/// Draw the next token from `logits` (whose maximum is `max_logit`). `weights` and
/// `scratch` are reusable buffers.
pub fn sample(
    logits: &[f32],
    max_logit: f32,
    argmax: u32,
    sampling: Sampling,
    rng: &mut Rng,
    weights: &mut Vec<f32>,
    scratch: &mut Vec<(f32, u32)>,
) -> u32 {
    if sampling.temperature <= 0.0 {
        return argmax;
    }
    weights.resize(logits.len(), 0.0);
    let z = sum_exp(logits, max_logit, 1.0 / sampling.temperature, Some(weights));
    let u = rng.uniform() as f32;
    if sampling.top_p >= 1.0 {
        let target = u * z;
        let mut cum = 0.0;
        for (i, &w) in weights.iter().enumerate() {
            cum += w;
            if cum > target {
                return i as u32;
            }
        }
        return argmax;
    }
    // Nucleus: gather the tokens above a weight floor (max weight is 1), sort them, and stop
    // once they hold top_p of the mass; lower the floor only if they do not.
    let need = sampling.top_p * z;
    for floor in [1e-3f32, 1e-6, 0.0] {
        scratch.clear();
        scratch.extend(
            weights
                .iter()
                .enumerate()
                .filter(|(_, w)| **w >= floor && **w > 0.0)
                .map(|(i, &w)| (w, i as u32)),
        );
        scratch.sort_unstable_by(by_value_desc);
        let mut cum = 0.0;
        let mut end = scratch.len();
        for (i, c) in scratch.iter().enumerate() {
            cum += c.0;
            if cum >= need {
                end = i + 1;
                break;
            }
        }
        if cum >= need || floor == 0.0 {
            let target = u * scratch[..end].iter().map(|c| c.0).sum::<f32>();
            let mut acc = 0.0;
            for c in &scratch[..end] {
                acc += c.0;
                if acc > target {
                    return c.1;
                }
            }
            return scratch.get(end.saturating_sub(1)).map_or(argmax, |c| c.1);
        }
    }
    argmax
}

/// Index of the largest logit.
pub fn argmax(z: &[f32]) -> u32 {
    z.iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| {
            if x > b.1 { (i, x) } else { b }
        })
        .0 as u32
}

/// Top-k of every row, split over two threads when there are many rows.
pub(crate) fn extract_rows(
    rows: &[&[f32]],
    k: usize,
    ids: &mut [u32],
    lps: &mut [f32],
) -> Result<()> {
    let work = |rows: &[&[f32]], ids: &mut [u32], lps: &mut [f32]| -> bool {
        let mut scratch = Vec::with_capacity(256);
        rows.iter().enumerate().all(|(i, row)| {
            log_softmax_top_k(
                row,
                k,
                &mut ids[i * k..(i + 1) * k],
                &mut lps[i * k..(i + 1) * k],
                &mut scratch,
            )
            .is_some()
        })
    };
    let ok = if rows.len() >= 16 {
        let half = rows.len() / 2;
        let (ids_a, ids_b) = ids.split_at_mut(half * k);
        let (lps_a, lps_b) = lps.split_at_mut(half * k);
        std::thread::scope(|sc| {
            let h = sc.spawn(|| work(&rows[half..], ids_b, lps_b));
            let a = work(&rows[..half], ids_a, lps_a);
            a & h.join().unwrap_or(false)
        })
    } else {
        work(rows, ids, lps)
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Llama(
            "the teacher produced NaN or infinite logits".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_log_softmax(xs: &[f32]) -> Vec<f64> {
        let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let s: f64 = xs.iter().map(|&x| (x as f64 - m).exp()).sum();
        xs.iter().map(|&x| x as f64 - m - s.ln()).collect()
    }

    fn pseudo_logits(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::for_record(seed, 0);
        (0..n)
            .map(|_| (rng.uniform() as f32 - 0.5) * 30.0)
            .collect()
    }

    #[test]
    fn fast_exp_matches_libm() {
        for i in 0..20000 {
            let x = -(i as f32) * 0.004;
            let (a, b) = (exp_neg(x), x.exp());
            assert!((a - b).abs() <= 4e-7 * b.max(1e-30), "x={x}: {a} vs {b}");
        }
    }

    #[test]
    fn top_k_log_probs_match_a_naive_log_softmax() {
        let logits = pseudo_logits(49152 + 7, 3);
        let reference = naive_log_softmax(&logits);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| {
            logits[b]
                .partial_cmp(&logits[a])
                .expect("finite")
                .then(a.cmp(&b))
        });
        let (mut ids, mut lp, mut scratch) = (vec![0u32; 64], vec![0f32; 64], Vec::new());
        log_softmax_top_k(&logits, 64, &mut ids, &mut lp, &mut scratch).expect("finite");
        for i in 0..64 {
            assert_eq!(ids[i] as usize, order[i]);
            assert!((lp[i] as f64 - reference[order[i]]).abs() < 1e-4);
        }
        let mass: f64 = lp.iter().map(|&l| (l as f64).exp()).sum();
        assert!(mass <= 1.0);
    }

    #[test]
    fn top_k_breaks_ties_by_lowest_id_and_handles_short_rows() {
        let xs = [1.0, 3.0, 3.0, 2.0, 3.0];
        let mut s = Vec::new();
        top_k(&xs, 2, &mut s);
        assert_eq!(s, vec![(3.0, 1), (3.0, 2)]);
        top_k(&xs, 10, &mut s);
        assert_eq!(s.len(), 5);
        assert_eq!(s[4], (1.0, 0));
    }

    #[test]
    fn nan_logits_are_refused() {
        let mut xs = pseudo_logits(100, 1);
        xs[17] = f32::NAN;
        let (mut ids, mut lp, mut s) = (vec![0; 4], vec![0.0; 4], Vec::new());
        assert!(log_softmax_top_k(&xs, 4, &mut ids, &mut lp, &mut s).is_none());
    }

    #[test]
    fn sampling_is_seeded_and_greedy_at_zero_temperature() {
        let logits = pseudo_logits(1000, 9);
        let m = max(&logits);
        let argmax = logits.iter().position(|&x| x == m).expect("max exists") as u32;
        let (mut w, mut s) = (Vec::new(), Vec::new());
        let greedy = Sampling {
            temperature: 0.0,
            top_p: 1.0,
        };
        let mut rng = Rng::for_record(1, 2);
        assert_eq!(
            sample(&logits, m, argmax, greedy, &mut rng, &mut w, &mut s),
            argmax
        );
        let warm = Sampling {
            temperature: 1.0,
            top_p: 0.9,
        };
        let draw = |seed| {
            let mut rng = Rng::for_record(seed, 5);
            let (mut w, mut s) = (Vec::new(), Vec::new());
            (0..20)
                .map(|_| sample(&logits, m, argmax, warm, &mut rng, &mut w, &mut s))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn nucleus_keeps_only_the_head() {
        // Two tokens hold almost all the mass; top_p 0.5 must always pick the first.
        let mut logits = vec![-20.0f32; 100];
        logits[40] = 10.0;
        logits[41] = 9.0;
        let (mut w, mut s) = (Vec::new(), Vec::new());
        let mut rng = Rng::for_record(3, 3);
        let sp = Sampling {
            temperature: 1.0,
            top_p: 0.5,
        };
        for _ in 0..50 {
            assert_eq!(sample(&logits, 10.0, 40, sp, &mut rng, &mut w, &mut s), 40);
        }
    }
}
