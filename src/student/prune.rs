//! A student cut out of its teacher: fewer blocks, fewer hidden channels, fewer attention
//! heads (whole grouped-query groups) and fewer MLP channels, chosen by [`Importance`], with
//! every matrix sliced consistently so that the result is again a standard Llama model
//! (Minitron-style structured pruning, Muralidharan et al. 2024, arXiv:2407.14679).
//!
//! Hidden channels are sliced through the embedding, every norm, the input columns of Q, K,
//! V, gate and up, and the output rows of O and down; heads through the rows of Q, K, V (and
//! their biases) and the columns of O; MLP channels through gate, up and down. RMSNorm then
//! averages over fewer channels; each norm's weight can be rescaled by rms(kept) / rms(all)
//! of the teacher's residual stream there, measured on the calibration text, so that the
//! student's normed activations keep the teacher's scale.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::StudentConfig;
use super::importance::{Importance, top_indices};
use super::io::Weights;
pub use super::shape::Shape;
use crate::gguf::GgufMeta;
use crate::{Error, Result};

/// Index sets of one pruning, all ascending.
struct Keep {
    hidden: Tensor,
    /// Per student block: query rows, key/value rows, MLP channels.
    blocks: Vec<(Tensor, Tensor, Tensor)>,
}

fn index(ix: &[usize]) -> Result<Tensor> {
    let v: Vec<u32> = ix.iter().map(|&i| i as u32).collect();
    Ok(Tensor::from_vec(v, ix.len(), &Device::Cpu)?)
}

/// Rows of whole heads `heads` of width `hd`.
fn head_rows(heads: &[usize], hd: usize) -> Vec<usize> {
    heads.iter().flat_map(|&h| h * hd..(h + 1) * hd).collect()
}

fn choose(teacher: &StudentConfig, imp: &Importance, shape: &Shape) -> Result<Keep> {
    let hd = teacher.head_dim();
    let per_group = teacher.num_attention_heads / teacher.num_key_value_heads;
    let mut blocks = Vec::new();
    for &l in &shape.layers {
        let missing = || Error::Invalid(format!("no importance measured for teacher block {l}"));
        let heads = imp.heads.get(l).ok_or_else(missing)?;
        let group_score: Vec<f64> = (0..teacher.num_key_value_heads)
            .map(|g| heads[g * per_group..(g + 1) * per_group].iter().sum())
            .collect();
        let groups = top_indices(&group_score, shape.kv_groups);
        let q_heads: Vec<usize> = groups
            .iter()
            .flat_map(|&g| g * per_group..(g + 1) * per_group)
            .collect();
        let mlp = imp.mlp.get(l).ok_or_else(missing)?;
        blocks.push((
            index(&head_rows(&q_heads, hd))?,
            index(&head_rows(&groups, hd))?,
            index(&top_indices(mlp, shape.intermediate))?,
        ));
    }
    Ok(Keep {
        hidden: index(&top_indices(&imp.hidden, shape.hidden))?,
        blocks,
    })
}

/// The factor for the RMSNorm weights of a stream whose per-channel mean squares are `ms`
/// once only the channels `kept` remain: rms(kept) / rms(all), so that the kept channels
/// leave the norm at the scale the teacher's did (1 without measurements).
fn norm_scale(ms: Option<&Vec<f64>>, kept: &[usize]) -> f64 {
    let Some(ms) = ms.filter(|m| !m.is_empty()) else {
        return 1.0;
    };
    let all = ms.iter().sum::<f64>() / ms.len() as f64;
    let part = kept.iter().map(|&c| ms[c]).sum::<f64>() / kept.len().max(1) as f64;
    if all > 0.0 && part > 0.0 {
        (part / all).sqrt()
    } else {
        1.0
    }
}

/// Cut a student of `shape` out of the teacher (`teacher` sizes, `w` its weights under
/// Hugging Face names, Q/K rows in HF order) by `imp`. With `rescale_norms`, each norm's
/// weight is rescaled for the channels it lost (see the module documentation).
///
/// # Errors
/// A shape that does not fit the teacher, a missing weight or importance score.
pub fn prune(
    teacher: &StudentConfig,
    w: &Weights,
    imp: &Importance,
    shape: &Shape,
    rescale_norms: bool,
) -> Result<(StudentConfig, Weights)> {
    shape.check(teacher)?;
    let keep = choose(teacher, imp, shape)?;
    let kept = top_indices(&imp.hidden, shape.hidden);
    let scale = |stream: usize| {
        if rescale_norms {
            norm_scale(imp.residual_ms.get(stream), &kept)
        } else {
            1.0
        }
    };
    let get = |name: &str| {
        w.get(name)
            .ok_or_else(|| Error::Invalid(format!("the teacher lacks weight '{name}'")))
    };
    let h = &keep.hidden;
    let mut out = Weights::new();
    let cols = |t: &Tensor, ix: &Tensor| t.index_select(ix, 1);
    let norm = |t: &Tensor, stream: usize| t.index_select(h, 0)? * scale(stream);
    out.insert(
        "model.embed_tokens.weight".into(),
        cols(get("model.embed_tokens.weight")?, h)?,
    );
    let last = teacher.num_hidden_layers;
    out.insert(
        "model.norm.weight".into(),
        norm(get("model.norm.weight")?, last)?,
    );
    if let Some(head) = w.get("lm_head.weight") {
        out.insert("lm_head.weight".into(), cols(head, h)?);
    }
    for (i, (&l, (q, kv, f))) in shape.layers.iter().zip(&keep.blocks).enumerate() {
        let (src, dst) = (format!("model.layers.{l}"), format!("model.layers.{i}"));
        let mut put = |name: &str, t: Tensor| {
            out.insert(format!("{dst}.{name}"), t);
        };
        let tw = |name: &str| get(&format!("{src}.{name}"));
        put(
            "self_attn.q_proj.weight",
            cols(&tw("self_attn.q_proj.weight")?.index_select(q, 0)?, h)?,
        );
        put(
            "self_attn.k_proj.weight",
            cols(&tw("self_attn.k_proj.weight")?.index_select(kv, 0)?, h)?,
        );
        put(
            "self_attn.v_proj.weight",
            cols(&tw("self_attn.v_proj.weight")?.index_select(kv, 0)?, h)?,
        );
        put(
            "self_attn.o_proj.weight",
            cols(&tw("self_attn.o_proj.weight")?.index_select(h, 0)?, q)?,
        );
        for (bias, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            if let Some(b) = w.get(&format!("{src}.self_attn.{bias}.bias")) {
                put(&format!("self_attn.{bias}.bias"), b.index_select(rows, 0)?);
            }
        }
        put(
            "mlp.gate_proj.weight",
            cols(&tw("mlp.gate_proj.weight")?.index_select(f, 0)?, h)?,
        );
        put(
            "mlp.up_proj.weight",
            cols(&tw("mlp.up_proj.weight")?.index_select(f, 0)?, h)?,
        );
        put(
            "mlp.down_proj.weight",
            cols(&tw("mlp.down_proj.weight")?.index_select(h, 0)?, f)?,
        );
        put(
            "input_layernorm.weight",
            norm(tw("input_layernorm.weight")?, l)?,
        );
        put(
            "post_attention_layernorm.weight",
            norm(tw("post_attention_layernorm.weight")?, l)?,
        );
    }
    let cfg = shape.config(teacher);
    super::io::check_weights(&cfg, &out)?;
    Ok((cfg, out))
}

/// Windows of the training corpus importance is measured on (8 x 256 tokens: about ten
/// seconds of the teacher's forward in candle on 2 cores).
pub const CALIBRATION_WINDOWS: usize = 8;

/// The calibration text importance is measured on: the first [`CALIBRATION_WINDOWS`]
/// windows of `seq_len` tokens of a training stream.
pub fn calibration(tokens: &[u32], seq_len: usize) -> Vec<Vec<u32>> {
    tokens
        .chunks(seq_len.max(1))
        .take(CALIBRATION_WINDOWS)
        .map(<[u32]>::to_vec)
        .collect()
}

/// What a cut kept, stored as `shape.json` in the student directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cut {
    /// The shape.
    pub shape: Shape,
    /// The teacher's hidden channels the student kept, ascending (the student's channel
    /// `i` is the teacher's `hidden_channels[i]`).
    pub hidden_channels: Vec<usize>,
    /// The teacher's block influence (ShortGPT), per teacher block.
    pub block_influence: Vec<f64>,
    /// Calibration tokens importance was measured on.
    pub calibration_tokens: usize,
}

impl Cut {
    /// File name in the student directory.
    pub const FILE: &'static str = "shape.json";

    /// Write `dir/shape.json` atomically.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        crate::record::write_atomic(&dir.join(Self::FILE), &serde_json::to_vec_pretty(self)?)
    }

    /// `dir/shape.json`, if the student was cut from its teacher.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn read(dir: &std::path::Path) -> Result<Option<Self>> {
        let path = dir.join(Self::FILE);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }
}

/// A student of `shape` cut from the teacher GGUF at `path`, importance measured on the
/// calibration `windows` (token ids): its config, weights, and what it kept.
///
/// # Errors
/// As [`super::init::from_teacher`], [`super::importance::measure`] and [`prune`].
pub fn cut_from_teacher(
    path: &std::path::Path,
    shape: &Shape,
    windows: &[Vec<u32>],
    rescale_norms: bool,
) -> Result<(StudentConfig, Weights, Cut)> {
    let meta = GgufMeta::read(path)?;
    let arch = meta.architecture().unwrap_or("llama");
    let n = meta.u64(&format!("{arch}.block_count")).unwrap_or(0) as usize;
    let all: Vec<usize> = (0..n).collect();
    let (cfg, w) = super::init::from_teacher(path, &all)?;
    let teacher = super::Student::new(
        &cfg,
        candle_nn::VarBuilder::from_tensors(w.clone(), candle_core::DType::F32, &Device::Cpu),
    )?;
    let imp = super::importance::measure(&teacher, windows)?;
    drop(teacher);
    let (scfg, sw) = prune(&cfg, &w, &imp, shape, rescale_norms)?;
    let cut = Cut {
        shape: shape.clone(),
        hidden_channels: top_indices(&imp.hidden, shape.hidden),
        block_influence: imp.block.clone(),
        calibration_tokens: imp.tokens,
    };
    Ok((scfg, sw, cut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::student::importance::measure;
    use crate::student::{Student, io};
    use candle_core::DType;
    use candle_nn::VarBuilder;

    fn tiny() -> (StudentConfig, Weights, Importance) {
        // 4 heads in 2 groups of width 8, hidden 32.
        let cfg = StudentConfig::tiny_test();
        let w = io::random_weights(&cfg, 7).expect("init");
        let s = Student::new(
            &cfg,
            VarBuilder::from_tensors(w.clone(), DType::F32, &Device::Cpu),
        )
        .expect("student");
        let imp = measure(&s, &[vec![3, 1, 4, 1, 5, 9, 2, 6]]).expect("importance");
        (cfg, w, imp)
    }

    fn logits(cfg: &StudentConfig, w: &Weights) -> Vec<f32> {
        let s = Student::new(
            cfg,
            VarBuilder::from_tensors(w.clone(), DType::F32, &Device::Cpu),
        )
        .expect("student");
        let ids = Tensor::new(&[[2u32, 7, 1, 8]], &Device::Cpu).expect("ids");
        s.forward(&ids)
            .expect("forward")
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("v")
    }

    #[test]
    fn keeping_everything_gives_the_teacher_back() {
        let (cfg, w, imp) = tiny();
        let (pcfg, pw) = prune(&cfg, &w, &imp, &Shape::full(&cfg), false).expect("prune");
        assert_eq!(pcfg, cfg);
        assert_eq!(logits(&pcfg, &pw), logits(&cfg, &w));
    }

    #[test]
    fn a_pruned_student_has_the_shape_it_asked_for_and_runs() {
        let (cfg, w, imp) = tiny();
        let shape = Shape {
            layers: vec![1],
            hidden: 16,
            kv_groups: 1,
            intermediate: 24,
        };
        let (pcfg, pw) = prune(&cfg, &w, &imp, &shape, true).expect("prune");
        assert_eq!(
            (
                pcfg.hidden_size,
                pcfg.num_attention_heads,
                pcfg.num_key_value_heads
            ),
            (16, 2, 1)
        );
        assert_eq!((pcfg.num_hidden_layers, pcfg.intermediate_size), (1, 24));
        assert_eq!(pw["model.embed_tokens.weight"].dims(), &[64, 16]);
        assert_eq!(
            pw["model.layers.0.self_attn.q_proj.weight"].dims(),
            &[16, 16]
        );
        assert_eq!(
            pw["model.layers.0.self_attn.k_proj.weight"].dims(),
            &[8, 16]
        );
        assert_eq!(pw["model.layers.0.mlp.down_proj.weight"].dims(), &[16, 24]);
        assert!(logits(&pcfg, &pw).iter().all(|x| x.is_finite()));
        // The block kept is the teacher's block 1, sliced: its first kept MLP row is a
        // teacher row restricted to the kept hidden columns.
        let keep = top_indices(&imp.hidden, 16);
        let ff = top_indices(&imp.mlp[1], 24);
        let teacher_row = w["model.layers.1.mlp.up_proj.weight"]
            .get(ff[0])
            .expect("row")
            .to_vec1::<f32>()
            .expect("v");
        let ours = pw["model.layers.0.mlp.up_proj.weight"]
            .get(0)
            .expect("row")
            .to_vec1::<f32>()
            .expect("v");
        let want: Vec<f32> = keep.iter().map(|&c| teacher_row[c]).collect();
        assert_eq!(ours, want);
    }

    #[test]
    fn shapes_that_do_not_fit_the_teacher_are_refused() {
        let (cfg, w, imp) = tiny();
        let bad = [
            Shape {
                layers: vec![2],
                ..Shape::full(&cfg)
            },
            Shape {
                hidden: 24,
                ..Shape::full(&cfg)
            },
            Shape {
                kv_groups: 3,
                ..Shape::full(&cfg)
            },
            Shape {
                intermediate: 0,
                ..Shape::full(&cfg)
            },
        ];
        for s in bad {
            let err = prune(&cfg, &w, &imp, &s, false)
                .expect_err("refused")
                .to_string();
            assert!(err.contains('\''), "{err}");
        }
    }

    #[test]
    fn norm_rescaling_follows_the_lost_channels() {
        // Channel 1 carries all of the stream: keeping only it raises the rms by sqrt(2).
        let ms = vec![0.0, 4.0];
        assert!((norm_scale(Some(&ms), &[1]) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(norm_scale(None, &[1]), 1.0);
        assert_eq!(norm_scale(Some(&ms), &[0]), 1.0);
    }
}
