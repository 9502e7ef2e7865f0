//! How much each part of the teacher matters, measured on recorded text, for choosing what a
//! pruned student keeps. Activation importance as in Minitron (Muralidharan et al. 2024,
//! "Compact Language Models via Pruning and Knowledge Distillation", arXiv:2407.14679):
//! a hidden channel scores the mean |activation| of the normed inputs of every attention and
//! MLP, an attention head the mean L2 norm of its output, an MLP channel the mean
//! |silu(gate) * up|. A block scores its influence as in ShortGPT (Men et al. 2024,
//! arXiv:2403.03853): the mean `1 - cos(x_in, x_out)` of the residual stream across it.

use candle_core::{D, Device, Tensor};

use super::model::{Probe, Site, Student};
use crate::Result;

/// Importance scores of one model's parts (means over the calibration tokens).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Importance {
    /// Per hidden channel, [hidden].
    pub hidden: Vec<f64>,
    /// Per block and attention head, [layers][heads].
    pub heads: Vec<Vec<f64>>,
    /// Per block and MLP channel, [layers][intermediate].
    pub mlp: Vec<Vec<f64>>,
    /// Block influence, [layers].
    pub block: Vec<f64>,
    /// Mean square of each channel of the residual stream entering each block, and after
    /// the last one, [layers + 1][hidden].
    pub residual_ms: Vec<Vec<f64>>,
    /// Calibration tokens seen.
    pub tokens: usize,
}

/// Sums while the forward pass runs.
#[derive(Default)]
struct Sums {
    imp: Importance,
    previous: Option<Tensor>,
}

/// Add `xs` summed over all but its last dimension to `acc` (grown on first use).
fn add_channels(acc: &mut Vec<f64>, xs: &Tensor) -> Result<()> {
    let c = xs.dim(D::Minus1)?;
    let v = xs.reshape(((), c))?.sum(0)?.to_vec1::<f32>()?;
    if acc.is_empty() {
        acc.resize(c, 0.0);
    }
    for (a, x) in acc.iter_mut().zip(v) {
        *a += f64::from(x);
    }
    Ok(())
}

/// The slot for block `layer` in a per-block list, grown as needed.
fn slot(list: &mut Vec<Vec<f64>>, layer: usize) -> &mut Vec<f64> {
    if list.len() <= layer {
        list.resize(layer + 1, Vec::new());
    }
    &mut list[layer]
}

impl Probe for Sums {
    fn see(&mut self, layer: usize, site: Site, xs: &Tensor) -> candle_core::Result<()> {
        let r = match site {
            Site::NormedIn => add_channels(&mut self.imp.hidden, &xs.abs()?),
            Site::MlpAct => add_channels(slot(&mut self.imp.mlp, layer), &xs.abs()?),
            Site::Heads => {
                // [b, heads, t, hd] -> per-position head norms [b, t, heads].
                let norms = xs.sqr()?.sum(D::Minus1)?.sqrt()?.transpose(1, 2)?;
                add_channels(slot(&mut self.imp.heads, layer), &norms.contiguous()?)
            }
            Site::Residual => self.residual(layer, xs),
        };
        r.map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

impl Sums {
    fn residual(&mut self, layer: usize, xs: &Tensor) -> Result<()> {
        if layer == 0 {
            let (b, t, _) = xs.dims3()?;
            self.imp.tokens += b * t;
        }
        add_channels(slot(&mut self.imp.residual_ms, layer), &xs.sqr()?)?;
        if let Some(prev) = self.previous.take() {
            let dot = (&prev * xs)?.sum(D::Minus1)?;
            let norms = (prev.sqr()?.sum(D::Minus1)? * xs.sqr()?.sum(D::Minus1)?)?.sqrt()?;
            let cos = (dot / (norms + 1e-12)?)?;
            // Summed over positions: sum(1 - cos).
            let influence = cos.elem_count() as f64 - f64::from(cos.sum_all()?.to_scalar::<f32>()?);
            if self.imp.block.len() < layer {
                self.imp.block.resize(layer, 0.0);
            }
            self.imp.block[layer - 1] += influence;
        }
        self.previous = Some(xs.clone());
        Ok(())
    }
}

/// Importance of `model`'s parts over the calibration `windows` (token ids, one forward
/// each).
///
/// # Errors
/// Tensor errors, or no calibration tokens.
pub fn measure(model: &Student, windows: &[Vec<u32>]) -> Result<Importance> {
    let mut sums = Sums::default();
    for w in windows.iter().filter(|w| !w.is_empty()) {
        let ids = Tensor::from_vec(w.clone(), (1, w.len()), &Device::Cpu)?;
        sums.previous = None;
        model.hidden_probed(&ids, &mut sums)?;
    }
    let mut imp = sums.imp;
    if imp.tokens == 0 {
        return Err(crate::Error::Invalid(
            "importance needs calibration tokens: the corpus is empty".into(),
        ));
    }
    let n = imp.tokens as f64;
    let layers = imp.block.len();
    // Each hidden channel was seen at two normed inputs per block.
    imp.hidden
        .iter_mut()
        .for_each(|x| *x /= n * 2.0 * layers.max(1) as f64);
    for v in imp
        .heads
        .iter_mut()
        .chain(imp.mlp.iter_mut())
        .chain(imp.residual_ms.iter_mut())
    {
        v.iter_mut().for_each(|x| *x /= n);
    }
    imp.block.iter_mut().for_each(|x| *x /= n);
    Ok(imp)
}

/// Indices of the `keep` highest `scores`, in ascending index order (ties: lower index).
pub fn top_indices(scores: &[f64], keep: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::student::{StudentConfig, io};
    use candle_core::DType;
    use candle_nn::VarBuilder;

    #[test]
    fn every_part_gets_a_finite_score() {
        let cfg = StudentConfig::tiny_test();
        let w = io::random_weights(&cfg, 3).expect("init");
        let s = Student::new(&cfg, VarBuilder::from_tensors(w, DType::F32, &Device::Cpu))
            .expect("student");
        let imp = measure(&s, &[vec![1, 2, 3, 4, 5], vec![9, 8, 7]]).expect("measure");
        assert_eq!(imp.tokens, 8);
        assert_eq!(imp.hidden.len(), cfg.hidden_size);
        assert_eq!(imp.block.len(), cfg.num_hidden_layers);
        assert_eq!(imp.heads.len(), cfg.num_hidden_layers);
        assert!(imp.heads.iter().all(|h| h.len() == cfg.num_attention_heads));
        assert!(imp.mlp.iter().all(|m| m.len() == cfg.intermediate_size));
        let all = imp
            .hidden
            .iter()
            .chain(imp.block.iter())
            .chain(imp.mlp.iter().flatten());
        for x in all.chain(imp.heads.iter().flatten()) {
            assert!(x.is_finite() && *x >= 0.0, "{x}");
        }
        // Random small weights barely turn the residual stream: low influence.
        assert!(imp.block.iter().all(|&b| b < 0.5), "{:?}", imp.block);
    }

    #[test]
    fn top_indices_keeps_the_largest_in_order() {
        assert_eq!(top_indices(&[0.1, 5.0, 3.0, 5.0, 0.0], 3), vec![1, 2, 3]);
        assert_eq!(top_indices(&[1.0, 1.0, 1.0], 2), vec![0, 1]);
        assert!(top_indices(&[1.0], 0).is_empty());
    }
}
