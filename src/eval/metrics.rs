//! Quality of a student against its teacher, with the statistics and names of llama.cpp's
//! `perplexity --kl-divergence` so users can compare figures across tools.
//!
//! The teacher is known only through its stored top-k log-probs. KL(teacher || student)
//! is computed over the top-k tokens plus one bucket for the rest of the vocabulary on each
//! side (teacher tail `1 - sum p_topk`, student tail `1 - sum q_topk`). By the log-sum
//! inequality this is a lower bound on the full-vocabulary KL; the gap is the divergence
//! *within* the tail, which holds little mass at k = 64.

use serde::Serialize;

/// What one target position contributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    /// KL(teacher || student) at this position (nats).
    pub kld: f64,
    /// Student probability of the actual next token minus the teacher's, when the teacher's
    /// is known (the token is in its top-k).
    pub delta_p: Option<f64>,
    /// Whether the student's most likely token is the teacher's.
    pub same_top: bool,
    /// Teacher log-prob of the actual next token (tail-bucket estimate when outside top-k).
    pub teacher_logp: f64,
    /// Student log-prob of the actual next token.
    pub student_logp: f64,
}

/// Score one position: student logits `z` over the full vocabulary, the teacher's top-k
/// `ids`/`logprobs` (temperature 1, descending) and the actual next token `next`.
pub fn score_position(z: &[f32], ids: &[u32], logprobs: &[f32], next: u32) -> Position {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    let q = |id: u32| (z[id as usize] as f64 - lse).exp();
    let (mut kld, mut p_mass, mut q_mass) = (0.0, 0.0, 0.0);
    for (&id, &lp) in ids.iter().zip(logprobs) {
        let p = (lp as f64).exp();
        let qi = q(id).max(1e-30);
        kld += p * (lp as f64 - qi.ln());
        p_mass += p;
        q_mass += qi;
    }
    let (p_tail, q_tail) = ((1.0 - p_mass).max(0.0), (1.0 - q_mass).max(1e-30));
    if p_tail > 0.0 {
        kld += p_tail * (p_tail / q_tail).ln();
    }
    let argmax = z
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| {
            if x > b.1 { (i, x) } else { b }
        })
        .0;
    let teacher_at = ids.iter().position(|&id| id == next);
    let student_logp = z[next as usize] as f64 - lse;
    let teacher_logp = match teacher_at {
        Some(j) => logprobs[j] as f64,
        // Outside the top-k: at most the k-th probability and at most the tail mass.
        None => p_tail
            .min(logprobs.last().map_or(1.0, |&l| (l as f64).exp()))
            .max(1e-30)
            .ln(),
    };
    Position {
        kld: kld.max(0.0),
        delta_p: teacher_at.map(|j| student_logp.exp() - (logprobs[j] as f64).exp()),
        same_top: ids.first().is_some_and(|&t| t as usize == argmax),
        teacher_logp,
        student_logp,
    }
}

/// A distribution summarised the way llama.cpp prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Standard error of the mean.
    pub mean_err: f64,
    /// Root mean square.
    pub rms: f64,
    /// Largest value.
    pub max: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Median.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 1st percentile.
    pub p1: f64,
    /// Smallest value.
    pub min: f64,
}

impl Summary {
    /// Summarise `xs` (any order).
    pub fn of(xs: &[f64]) -> Self {
        if xs.is_empty() {
            return Self::default();
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        // Linear interpolation between closest ranks.
        let q = |p: f64| {
            let r = p * (n - 1.0);
            let (lo, hi) = (r.floor() as usize, r.ceil() as usize);
            v[lo] + (v[hi] - v[lo]) * (r - lo as f64)
        };
        Self {
            mean,
            mean_err: (var / n).sqrt(),
            rms: (v.iter().map(|x| x * x).sum::<f64>() / n).sqrt(),
            max: v[v.len() - 1],
            p99_9: q(0.999),
            p99: q(0.99),
            p95: q(0.95),
            p90: q(0.90),
            median: q(0.5),
            p10: q(0.10),
            p5: q(0.05),
            p1: q(0.01),
            min: v[0],
        }
    }
}

/// Quality of one model against the teacher on a corpus.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Quality {
    /// Target positions scored.
    pub positions: usize,
    /// KL(teacher || model) per position.
    pub kld: Summary,
    /// p_model(next) - p_teacher(next) per position (where the teacher's is known).
    pub delta_p: Summary,
    /// Share of positions whose top-1 matches the teacher's ("Same top p").
    pub same_top: f64,
    /// Its standard error.
    pub same_top_err: f64,
    /// Teacher perplexity on the corpus text.
    pub ppl_teacher: f64,
    /// Model perplexity on the corpus text.
    pub ppl_model: f64,
    /// ppl_model / ppl_teacher.
    pub ppl_ratio: f64,
}

impl Quality {
    /// Aggregate scored positions.
    pub fn of(ps: &[Position]) -> Self {
        let n = ps.len().max(1) as f64;
        let kld: Vec<f64> = ps.iter().map(|p| p.kld).collect();
        let dp: Vec<f64> = ps.iter().filter_map(|p| p.delta_p).collect();
        let same = ps.iter().filter(|p| p.same_top).count() as f64 / n;
        let ppl_teacher = (-ps.iter().map(|p| p.teacher_logp).sum::<f64>() / n).exp();
        let ppl_model = (-ps.iter().map(|p| p.student_logp).sum::<f64>() / n).exp();
        Self {
            positions: ps.len(),
            kld: Summary::of(&kld),
            delta_p: Summary::of(&dp),
            same_top: same,
            same_top_err: (same * (1.0 - same) / n).sqrt(),
            ppl_teacher,
            ppl_model,
            ppl_ratio: ppl_model / ppl_teacher,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_softmax(z: &[f32]) -> Vec<f32> {
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + z.iter().map(|&x| (x - m).exp()).sum::<f32>().ln();
        z.iter().map(|&x| x - lse).collect()
    }

    #[test]
    fn a_model_scored_against_its_own_top_k_has_zero_kld_and_full_agreement() {
        let z = [2.0f32, 0.5, -1.0, 1.0, 0.0, -3.0];
        let lp = log_softmax(&z);
        let ids = [0u32, 3, 1];
        let lps: Vec<f32> = ids.iter().map(|&i| lp[i as usize]).collect();
        let p = score_position(&z, &ids, &lps, 3);
        assert!(p.kld.abs() < 1e-6, "{}", p.kld);
        assert!(p.same_top);
        assert!(p.delta_p.expect("known").abs() < 1e-6);
        assert!((p.teacher_logp - p.student_logp).abs() < 1e-6);
    }

    #[test]
    fn kld_matches_a_hand_computed_two_bucket_value() {
        // Teacher: p = [0.5, 0.3] on ids [0, 1], tail 0.2. Student: uniform over 4 tokens.
        // KL = 0.5 ln(0.5/0.25) + 0.3 ln(0.3/0.25) + 0.2 ln(0.2/0.5)
        let z = [0.0f32; 4];
        let p = score_position(&z, &[0, 1], &[0.5f32.ln(), 0.3f32.ln()], 2);
        let want = 0.5 * (2.0f64).ln() + 0.3 * (1.2f64).ln() + 0.2 * (0.4f64).ln();
        assert!((p.kld - want).abs() < 1e-6, "{} vs {want}", p.kld);
        assert_eq!(p.delta_p, None, "next token outside the teacher's top-k");
    }

    #[test]
    fn percentiles_follow_llama_cpp_conventions() {
        let xs: Vec<f64> = (0..=100).map(f64::from).collect();
        let s = Summary::of(&xs);
        assert_eq!(
            (s.min, s.median, s.max, s.p90, s.p1),
            (0.0, 50.0, 100.0, 90.0, 1.0)
        );
        assert!((s.mean - 50.0).abs() < 1e-12);
        let q = Quality::of(&[
            Position {
                kld: 0.1,
                delta_p: Some(0.0),
                same_top: true,
                teacher_logp: -1.0,
                student_logp: -2.0,
            },
            Position {
                kld: 0.3,
                delta_p: None,
                same_top: false,
                teacher_logp: -1.0,
                student_logp: -2.0,
            },
        ]);
        assert_eq!(q.same_top, 0.5);
        assert!((q.ppl_ratio - std::f64::consts::E).abs() < 1e-9);
    }
}
