//! The hidden-state term of the loss: `1 - cos(h_student, h_teacher)` per target row,
//! averaged, where `h` is each model's final hidden state after its output norm: the
//! vector both feed to the shared output projection. DistilBERT (Sanh et al. 2019,
//! arXiv:1910.01108) added this cosine-embedding loss to the soft-target loss; here it
//! carries what the stored top-k does not, the direction that fixes all of the teacher's
//! logits, at one dot product per row.
//!
//! A student cut to fewer hidden channels compares on the teacher's channels it kept
//! (`shape.json`), in the same order.

use candle_core::{D, Device, Result, Tensor};

use super::loss::Targets;

/// The mean `1 - cos` between the student's rows `h` [N, H_s] and the teacher's in `t`
/// (restricted to `channels` of the teacher's when given), as a differentiable scalar.
///
/// # Errors
/// Targets without hidden states, or widths that do not match.
pub fn hidden_loss(h: &Tensor, t: &Targets, channels: Option<&Tensor>) -> Result<Tensor> {
    let (n, width) = h.dims2()?;
    if t.hidden_size == 0 || t.hidden.len() != n * t.hidden_size {
        candle_core::bail!(
            "the corpus holds no teacher hidden states for these rows: record it with --hidden"
        );
    }
    let teacher = Tensor::from_slice(&t.hidden, (n, t.hidden_size), &Device::Cpu)?;
    let teacher = match channels {
        Some(ix) => teacher.index_select(ix, 1)?,
        None => teacher,
    };
    if teacher.dim(1)? != width {
        candle_core::bail!(
            "the student's hidden size {width} differs from the teacher's {} it is compared on",
            teacher.dim(1)?
        );
    }
    let dot = (h * &teacher)?.sum(D::Minus1)?;
    let norms = (h.sqr()?.sum(D::Minus1)? * teacher.sqr()?.sum(D::Minus1)?)?.sqrt()?;
    let cos = (dot / (norms + 1e-12)?)?;
    (1.0 - cos)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn targets(rows: &[[f32; 3]]) -> Targets {
        Targets {
            hidden: rows.iter().flatten().copied().collect(),
            hidden_size: 3,
            ..Targets::default()
        }
    }

    #[test]
    fn parallel_rows_cost_nothing_and_opposite_ones_two() {
        let t = targets(&[[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]]);
        let same = Tensor::new(&[[2.0f32, 4.0, 6.0], [0.0, 5.0, 0.0]], &Device::Cpu).expect("h");
        let v = hidden_loss(&same, &t, None)
            .expect("loss")
            .to_scalar::<f32>()
            .expect("s");
        assert!(v.abs() < 1e-6, "{v}");
        let opposite =
            Tensor::new(&[[-1.0f32, -2.0, -3.0], [0.0, -1.0, 0.0]], &Device::Cpu).expect("h");
        let v = hidden_loss(&opposite, &t, None)
            .expect("loss")
            .to_scalar::<f32>()
            .expect("s");
        assert!((v - 2.0).abs() < 1e-6, "{v}");
    }

    #[test]
    fn the_gradient_turns_the_student_toward_the_teacher() {
        let t = targets(&[[1.0, 0.0, 0.0]]);
        let h = Var::new(&[[0.0f32, 1.0, 0.0]], &Device::Cpu).expect("h");
        let g = hidden_loss(h.as_tensor(), &t, None)
            .expect("loss")
            .backward()
            .expect("backward");
        let g = g.get(&h).expect("grad").to_vec2::<f32>().expect("v");
        // Descending the gradient grows the first component.
        assert!(g[0][0] < 0.0, "{g:?}");
    }

    #[test]
    fn a_narrower_student_compares_on_its_channels() {
        let t = targets(&[[5.0, 1.0, 2.0]]);
        let ix = Tensor::new(&[0u32, 2], &Device::Cpu).expect("ix");
        let h = Tensor::new(&[[5.0f32, 2.0]], &Device::Cpu).expect("h");
        let v = hidden_loss(&h, &t, Some(&ix))
            .expect("loss")
            .to_scalar::<f32>()
            .expect("s");
        assert!(v.abs() < 1e-6, "{v}");
        assert!(hidden_loss(&h, &t, None).is_err());
        assert!(hidden_loss(&h, &Targets::default(), Some(&ix)).is_err());
    }
}
