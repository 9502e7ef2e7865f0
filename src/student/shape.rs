//! The shape of a student cut from its teacher ([`Shape`]: blocks, hidden channels, heads,
//! MLP channels) and how `--shape auto` picks one: the largest student whose decoding in
//! llama.cpp a cost model puts at a given speed-up over the teacher.
//!
//! The cost model is measured, not derived: on the 2-core development machine, llama.cpp
//! decodes a token in about `0.15 ms` per block (thread hand-offs between a block's ~20
//! small ops) plus `0.04 ms` per million weights it multiplies (Q8_0 or Q4_1 alike; the
//! output projection counts, the embedding lookup does not). Fitted to `llama-bench tg128`
//! of ten cuts of the default teacher (docs/BENCHMARKS.md): per-block overhead, not weight
//! count, is what makes a deep student slow, so the auto shape cuts depth first.

use serde::{Deserialize, Serialize};

use super::config::StudentConfig;
use crate::gguf::profile::spread;
use crate::{Error, Result};

/// What a pruned student keeps of its teacher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Teacher blocks kept, in order.
    pub layers: Vec<usize>,
    /// Hidden channels kept: the kept heads times the head width.
    pub hidden: usize,
    /// Grouped-query groups kept per block, each with its query heads.
    pub kv_groups: usize,
    /// MLP channels kept per block.
    pub intermediate: usize,
}

impl Shape {
    /// The shape that keeps everything of a teacher config.
    pub fn full(cfg: &StudentConfig) -> Self {
        Self {
            layers: (0..cfg.num_hidden_layers).collect(),
            hidden: cfg.hidden_size,
            kv_groups: cfg.num_key_value_heads,
            intermediate: cfg.intermediate_size,
        }
    }

    /// Check the shape against the teacher it is cut from.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming what does not fit.
    pub fn check(&self, teacher: &StudentConfig) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        let n = teacher.num_hidden_layers;
        if self.layers.is_empty() || self.layers.iter().any(|&l| l >= n) {
            return bad(format!(
                "student blocks '{:?}' must be teacher blocks 0..{}",
                self.layers,
                n.saturating_sub(1)
            ));
        }
        if self.kv_groups == 0 || self.kv_groups > teacher.num_key_value_heads {
            return bad(format!(
                "'{}' key/value groups: the teacher has {}",
                self.kv_groups, teacher.num_key_value_heads
            ));
        }
        let heads = self.kv_groups * teacher.num_attention_heads / teacher.num_key_value_heads;
        if self.hidden != heads * teacher.head_dim() {
            return bad(format!(
                "hidden size '{}' must be the {heads} kept heads times their width {}",
                self.hidden,
                teacher.head_dim()
            ));
        }
        if self.intermediate == 0 || self.intermediate > teacher.intermediate_size {
            return bad(format!(
                "MLP width '{}' must be 1..={}",
                self.intermediate, teacher.intermediate_size
            ));
        }
        Ok(())
    }

    /// The shape in words: `4 blocks (0,10,20,29), hidden 576, 3 KV groups, MLP 1152`.
    pub fn describe(&self) -> String {
        let blocks: Vec<String> = self.layers.iter().map(usize::to_string).collect();
        format!(
            "{} blocks ({}), hidden {}, {} KV groups, MLP {}",
            self.layers.len(),
            blocks.join(","),
            self.hidden,
            self.kv_groups,
            self.intermediate
        )
    }

    /// The student config of this shape.
    pub fn config(&self, teacher: &StudentConfig) -> StudentConfig {
        let heads = self.kv_groups * teacher.num_attention_heads / teacher.num_key_value_heads;
        StudentConfig {
            hidden_size: self.hidden,
            intermediate_size: self.intermediate,
            num_hidden_layers: self.layers.len(),
            num_attention_heads: heads,
            num_key_value_heads: self.kv_groups,
            ..teacher.clone()
        }
    }
}

/// Decode time of one block in llama.cpp, ms (the cost model of the module docs).
pub const BLOCK_MS: f64 = 0.15;
/// Decode time per million multiplied weights, ms.
pub const MWEIGHT_MS: f64 = 0.04;

/// Weights of one block of `cfg`.
fn block_weights(cfg: &StudentConfig) -> usize {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let width = cfg.num_attention_heads * cfg.head_dim();
    let kv = cfg.num_key_value_heads * cfg.head_dim();
    2 * h * width + 2 * h * kv + 3 * h * i
}

/// Estimated llama.cpp decode time of a model of sizes `cfg`, ms per token.
pub fn decode_ms(cfg: &StudentConfig) -> f64 {
    let weights = cfg.num_hidden_layers * block_weights(cfg) + cfg.vocab_size * cfg.hidden_size;
    BLOCK_MS * cfg.num_hidden_layers as f64 + MWEIGHT_MS * weights as f64 / 1e6
}

/// MLP widths tried, as fractions of the teacher's (rounded down to multiples of 64).
const MLP_FRACTIONS: [f64; 7] = [1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25];

/// How a teacher-initialised student is cut from its teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ShapeKind {
    /// Blocks and widths chosen for `--speedup` by the decode-cost model; heads, channels
    /// and MLP channels kept by importance measured on the corpus.
    #[default]
    Auto,
    /// The teacher's `--layers` at full width (DistilBERT-style).
    Blocks,
}

/// What the user asked for: a kind, a speed-up for `auto`, and sizes that override it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShapeRequest {
    /// Auto or the teacher's blocks at full width.
    pub kind: ShapeKind,
    /// The decode speed-up `auto` aims for.
    pub speedup: f64,
    /// Teacher blocks to keep (overrides the choice).
    pub layers: Option<Vec<usize>>,
    /// Grouped-query groups to keep (sets the hidden size: groups x heads x head width).
    pub kv_groups: Option<usize>,
    /// MLP channels to keep.
    pub intermediate: Option<usize>,
}

impl ShapeRequest {
    /// The shape of this request for a teacher of sizes `teacher`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad speed-up or sizes the teacher does not have.
    pub fn resolve(&self, teacher: &StudentConfig) -> Result<Shape> {
        let mut shape = match self.kind {
            ShapeKind::Auto => Shape::auto(teacher, self.speedup)?,
            ShapeKind::Blocks => Shape {
                layers: spread(
                    teacher.num_hidden_layers,
                    (teacher.num_hidden_layers as f64 / 5.0).round().max(2.0) as usize,
                ),
                ..Shape::full(teacher)
            },
        };
        if let Some(l) = &self.layers {
            shape.layers = l.clone();
        }
        if let Some(g) = self.kv_groups {
            let per_group = teacher.num_attention_heads / teacher.num_key_value_heads.max(1);
            shape.kv_groups = g;
            shape.hidden = g * per_group * teacher.head_dim();
        }
        if let Some(i) = self.intermediate {
            shape.intermediate = i;
        }
        shape.check(teacher)?;
        Ok(shape)
    }
}

impl Shape {
    /// The `--shape auto` student of a teacher of sizes `teacher`: among cuts with at least
    /// two blocks spread evenly, whole grouped-query groups and MLP widths in eighths,
    /// those the cost model puts at `speedup` or more over the teacher; of those, the one
    /// that keeps the most hidden channels, then the most block weights, then the most
    /// blocks. When none is fast enough, the fastest.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a speed-up that is not a positive number or a teacher with
    /// fewer than two blocks.
    pub fn auto(teacher: &StudentConfig, speedup: f64) -> Result<Shape> {
        if !(speedup.is_finite() && speedup > 0.0) {
            return Err(Error::Invalid(format!(
                "--speedup '{speedup}' must be a positive number"
            )));
        }
        let n = teacher.num_hidden_layers;
        if n < 2 {
            return Err(Error::Invalid(format!(
                "the teacher has {n} block(s); a pruned student keeps at least 2: use --init random"
            )));
        }
        let budget = decode_ms(teacher) / speedup;
        let rank = |shape: &Shape| {
            let cfg = shape.config(teacher);
            let ms = decode_ms(&cfg);
            let weights = cfg.num_hidden_layers * block_weights(&cfg);
            // Fast enough first; then the most kept, or (too slow) the fastest.
            let keeps = (shape.hidden, weights, shape.layers.len());
            (
                ms <= budget,
                if ms <= budget { keeps } else { (0, 0, 0) },
                -ms,
            )
        };
        Self::candidates(teacher)
            .into_iter()
            .max_by(|a, b| {
                let (ra, rb) = (rank(a), rank(b));
                (ra.0, ra.1).cmp(&(rb.0, rb.1)).then(ra.2.total_cmp(&rb.2))
            })
            .ok_or_else(|| Error::Invalid("no student shape fits this teacher".into()))
    }

    /// Every shape [`Shape::auto`] considers.
    fn candidates(teacher: &StudentConfig) -> Vec<Shape> {
        let per_group = teacher.num_attention_heads / teacher.num_key_value_heads.max(1);
        let mut out = Vec::new();
        for blocks in 2..=teacher.num_hidden_layers {
            for kv_groups in 1..=teacher.num_key_value_heads {
                for f in MLP_FRACTIONS {
                    let width = (teacher.intermediate_size as f64 * f) as usize / 64 * 64;
                    out.push(Shape {
                        layers: spread(teacher.num_hidden_layers, blocks),
                        hidden: kv_groups * per_group * teacher.head_dim(),
                        kv_groups,
                        intermediate: width.max(64).min(teacher.intermediate_size),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default teacher's sizes (SmolLM2-135M).
    fn smollm2() -> StudentConfig {
        StudentConfig::new(49_152, 576, 30, 9, 3, 1536)
    }

    #[test]
    fn the_cost_model_reproduces_the_measured_teacher_and_cuts() {
        // llama-bench tg128, 2 threads: teacher ~106 tok/s (9.4 ms), 6 full blocks ~330.
        let t = decode_ms(&smollm2());
        assert!((9.0..11.0).contains(&t), "{t}");
        let six = Shape {
            layers: spread(30, 6),
            ..Shape::full(&smollm2())
        };
        let s = decode_ms(&six.config(&smollm2()));
        assert!((2.7..3.3).contains(&s), "{s}");
    }

    #[test]
    fn auto_keeps_full_width_and_cuts_depth_for_the_default_teacher() {
        let t = smollm2();
        let shape = Shape::auto(&t, 4.5).expect("auto");
        shape.check(&t).expect("fits the teacher");
        assert_eq!(shape.hidden, 576, "{shape:?}");
        assert!(decode_ms(&shape.config(&t)) * 4.5 <= decode_ms(&t));
        assert!(shape.layers.len() >= 3, "{shape:?}");
        // A slower target keeps more.
        let big = Shape::auto(&t, 2.0).expect("auto");
        assert!(big.layers.len() * big.intermediate > shape.layers.len() * shape.intermediate);
        assert!(Shape::auto(&t, 0.0).is_err());
    }

    #[test]
    fn auto_cuts_hidden_channels_when_the_output_projection_alone_is_too_slow() {
        // A Qwen2.5-0.5B-like teacher: vocabulary 151936 x hidden 896 dominates.
        let t = StudentConfig::new(151_936, 896, 24, 14, 2, 4864);
        let shape = Shape::auto(&t, 4.0).expect("auto");
        shape.check(&t).expect("fits");
        assert_eq!((shape.kv_groups, shape.hidden), (1, 448), "{shape:?}");
        assert!(decode_ms(&shape.config(&t)) * 4.0 <= decode_ms(&t));
    }
}
