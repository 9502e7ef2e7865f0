//! AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101) with its moments in the open, so a
//! checkpoint can save them and a resumed run continues exactly (candle-nn's `AdamW` keeps
//! them private). Decoupled weight decay applies to matrices only, not to norm gains.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// The optimizer: named variables and their moments.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    /// First moments by name.
    pub m: HashMap<String, Tensor>,
    /// Second moments by name.
    pub v: HashMap<String, Tensor>,
    /// Updates applied so far (for bias correction).
    pub t: u64,
    params: AdamWParams,
}

impl AdamW {
    /// Zero moments for `vars`.
    ///
    /// # Errors
    /// Allocation failures.
    pub fn new(mut vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut m = HashMap::new();
        let mut v = HashMap::new();
        for (name, var) in &vars {
            m.insert(name.clone(), var.zeros_like()?);
            v.insert(name.clone(), var.zeros_like()?);
        }
        Ok(Self {
            vars,
            m,
            v,
            t: 0,
            params,
        })
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Gradients of the variables from `grads`, by name (zeros for a variable without one).
    ///
    /// # Errors
    /// Allocation failures.
    pub fn collect(&self, grads: &GradStore) -> Result<Vec<Tensor>> {
        self.vars
            .iter()
            .map(|(_, var)| grads.get(var).cloned().map_or_else(|| var.zeros_like(), Ok))
            .collect()
    }

    /// Global L2 norm of `grads`.
    ///
    /// # Errors
    /// Tensor op failures.
    pub fn grad_norm(grads: &[Tensor]) -> Result<f64> {
        let mut sum = 0f64;
        for g in grads {
            sum += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
        Ok(sum.sqrt())
    }

    /// One update with learning rate `lr` from `grads` (in `vars` order), scaled by `scale`
    /// (gradient clipping and accumulation).
    ///
    /// # Errors
    /// Tensor op failures.
    pub fn step(&mut self, grads: &[Tensor], lr: f64, scale: f64) -> Result<()> {
        self.t += 1;
        let p = self.params;
        let c1 = 1.0 - p.beta1.powi(self.t as i32);
        let c2 = 1.0 - p.beta2.powi(self.t as i32);
        for ((name, var), g) in self.vars.iter().zip(grads) {
            let g = (g * scale)?;
            let m = self
                .m
                .get_mut(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no moment for {name}")))?;
            *m = ((&*m * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            let v = self
                .v
                .get_mut(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("no moment for {name}")))?;
            *v = ((&*v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&*m / c1)? / ((&*v / c2)?.sqrt()? + p.eps)?)?;
            let w = var.as_tensor();
            let decay = if w.rank() >= 2 { p.weight_decay } else { 0.0 };
            var.set(&((w * (1.0 - lr * decay))? - (update * lr)?)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn first_step_moves_each_weight_by_lr_against_its_gradient() {
        // Bias-corrected Adam's first step is lr * g / (|g| + eps) = lr * sign(g).
        let var = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).expect("t"))
            .expect("var");
        let params = AdamWParams {
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), var.clone())], params).expect("opt");
        let g = Tensor::new(&[0.5f32, -0.1, 0.0], &Device::Cpu).expect("g");
        opt.step(&[g], 0.1, 1.0).expect("step");
        let w = var.as_tensor().to_vec1::<f32>().expect("vec");
        assert!(
            (w[0] - 0.9).abs() < 1e-5 && (w[1] + 1.9).abs() < 1e-5 && (w[2] - 3.0).abs() < 1e-5,
            "{w:?}"
        );
    }

    #[test]
    fn minimises_a_quadratic() {
        let var = Var::from_tensor(&Tensor::new(&[[4.0f32, -3.0]], &Device::Cpu).expect("t"))
            .expect("var");
        let mut opt =
            AdamW::new(vec![("w".into(), var.clone())], AdamWParams::default()).expect("opt");
        for _ in 0..300 {
            let loss = var.as_tensor().sqr().expect("sqr").sum_all().expect("sum");
            let grads = opt
                .collect(&loss.backward().expect("backward"))
                .expect("grads");
            opt.step(&grads, 0.05, 1.0).expect("step");
        }
        let w = var
            .as_tensor()
            .flatten_all()
            .expect("flat")
            .to_vec1::<f32>()
            .expect("vec");
        assert!(w.iter().all(|x| x.abs() < 0.05), "{w:?}");
    }
}
