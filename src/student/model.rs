//! The student network: a Llama decoder (Touvron et al. 2023, arXiv:2302.13971) — RMSNorm,
//! rotary position embeddings in the Hugging Face `rotate_half` layout, grouped-query
//! attention (with Qwen2's optional q/k/v biases), SwiGLU MLP — shaped after
//! candle-transformers' `models/llama.rs`.
//!
//! Unlike that file, `forward` returns logits for every position (training needs them) and
//! every op is differentiable: candle's fused `rms_norm`, `rope` and `softmax_last_dim` have
//! no backward, so they are spelled out here from elementary ops.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::config::StudentConfig;

/// Where a forward pass shows its activations to a [`Probe`] (importance estimation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The residual stream entering block `layer` ([b, t, hidden]; `layer` = blocks: the
    /// stream after the last block).
    Residual,
    /// The normed input of attention or of the MLP, [b, t, hidden].
    NormedIn,
    /// Every head's attention output before `o_proj`, [b, heads, t, head_dim].
    Heads,
    /// The SwiGLU activation `silu(gate) * up`, [b, t, intermediate].
    MlpAct,
}

/// Something that watches a forward pass: [`Student::hidden_probed`] calls it at every
/// [`Site`] of every block.
pub trait Probe {
    /// See activation `xs` at `site` of block `layer`.
    ///
    /// # Errors
    /// Tensor errors.
    fn see(&mut self, layer: usize, site: Site, xs: &Tensor) -> Result<()>;
}

/// The probe of a forward pass and the block it is in.
type Watch<'a, 'p> = Option<(&'a mut (dyn Probe + 'p), usize)>;

fn show(watch: &mut Watch<'_, '_>, site: Site, xs: &Tensor) -> Result<()> {
    match watch {
        Some((p, layer)) => p.see(*layer, site, xs),
        None => Ok(()),
    }
}

/// x / sqrt(mean(x^2) + eps) * w, over the last dimension.
fn rms_norm(xs: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = xs.sqr()?.mean_keepdim(D::Minus1)?;
    xs.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// Softmax over the last dimension from differentiable ops (the max is a constant shift).
fn softmax(xs: &Tensor) -> Result<Tensor> {
    let max = xs.max_keepdim(D::Minus1)?.detach();
    let e = xs.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

/// [x1, x2] -> [-x2, x1] over the last dimension's halves.
fn rotate_half(xs: &Tensor) -> Result<Tensor> {
    let half = xs.dim(D::Minus1)? / 2;
    let x1 = xs.narrow(D::Minus1, 0, half)?;
    let x2 = xs.narrow(D::Minus1, half, half)?;
    Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)
}

/// Precomputed RoPE tables, [max_pos, head_dim] each.
#[derive(Debug, Clone)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(cfg: &StudentConfig, dev: &Device) -> Result<Self> {
        let hd = cfg.head_dim();
        let inv: Vec<f32> = (0..hd / 2)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / hd as f32))
            .collect();
        let n = cfg.max_position_embeddings;
        let inv = Tensor::from_vec(inv, (1, hd / 2), dev)?;
        let pos = Tensor::arange(0u32, n as u32, dev)?
            .to_dtype(DType::F32)?
            .reshape((n, 1))?;
        let freqs = pos.broadcast_mul(&inv)?; // [n, hd/2]
        let freqs = Tensor::cat(&[&freqs, &freqs], D::Minus1)?; // [n, hd]
        Ok(Self {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
        })
    }

    /// Rotate `xs` [b, heads, t, hd] for positions offset..offset+t.
    fn apply(&self, xs: &Tensor, offset: usize) -> Result<Tensor> {
        let t = xs.dim(2)?;
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        xs.broadcast_mul(&cos)? + rotate_half(xs)?.broadcast_mul(&sin)?
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &StudentConfig, vb: VarBuilder) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let kv = cfg.num_key_value_heads * hd;
        let bias = cfg.attention_bias; // Qwen2: q/k/v biases, none on the output
        Ok(Self {
            q: candle_nn::linear_b(h, h, bias, vb.pp("q_proj"))?,
            k: candle_nn::linear_b(h, kv, bias, vb.pp("k_proj"))?,
            v: candle_nn::linear_b(h, kv, bias, vb.pp("v_proj"))?,
            o: candle_nn::linear_no_bias(h, h, vb.pp("o_proj"))?,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: hd,
        })
    }

    /// [b, t, heads * hd] -> [b, heads, t, hd]
    fn split(&self, xs: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        xs.reshape((b, t, heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Repeat each key/value head for the query heads that share it.
    fn repeat_kv(&self, xs: Tensor) -> Result<Tensor> {
        let n = self.heads / self.kv_heads;
        if n == 1 {
            return Ok(xs);
        }
        let (b, kvh, t, hd) = xs.dims4()?;
        xs.unsqueeze(2)?
            .broadcast_as((b, kvh, n, t, hd))?
            .reshape((b, kvh * n, t, hd))
    }

    fn forward(
        &self,
        xs: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        w: &mut Watch<'_, '_>,
    ) -> Result<Tensor> {
        let (b, t, _) = xs.dims3()?;
        let q = rope.apply(&self.split(&self.q.forward(xs)?, self.heads)?, 0)?;
        let k = rope.apply(&self.split(&self.k.forward(xs)?, self.kv_heads)?, 0)?;
        let v = self.split(&self.v.forward(xs)?, self.kv_heads)?;
        let (k, v) = (
            self.repeat_kv(k)?.contiguous()?,
            self.repeat_kv(v)?.contiguous()?,
        );
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let att = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?; // [b, heads, t, t]
        let y = softmax(&att)?.matmul(&v)?; // [b, heads, t, hd]
        show(w, Site::Heads, &y)?;
        let width = self.heads * self.head_dim;
        self.o.forward(&y.transpose(1, 2)?.reshape((b, t, width))?)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn new(cfg: &StudentConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate: candle_nn::linear_no_bias(h, i, vb.pp("gate_proj"))?,
            up: candle_nn::linear_no_bias(h, i, vb.pp("up_proj"))?,
            down: candle_nn::linear_no_bias(i, h, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, xs: &Tensor, w: &mut Watch<'_, '_>) -> Result<Tensor> {
        let act = (self.gate.forward(xs)?.silu()? * self.up.forward(xs)?)?;
        show(w, Site::MlpAct, &act)?;
        self.down.forward(&act)
    }
}

#[derive(Debug, Clone)]
struct Block {
    attn: Attention,
    mlp: Mlp,
    norm1: Tensor,
    norm2: Tensor,
    eps: f64,
}

impl Block {
    fn new(cfg: &StudentConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            attn: Attention::new(cfg, vb.pp("self_attn"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            norm1: vb.pp("input_layernorm").get(h, "weight")?,
            norm2: vb.pp("post_attention_layernorm").get(h, "weight")?,
            eps: cfg.rms_norm_eps,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        rope: &Rope,
        mask: &Tensor,
        w: &mut Watch<'_, '_>,
    ) -> Result<Tensor> {
        show(w, Site::Residual, xs)?;
        let normed = rms_norm(xs, &self.norm1, self.eps)?;
        show(w, Site::NormedIn, &normed)?;
        let xs = (xs + self.attn.forward(&normed, rope, mask, w)?)?;
        let normed = rms_norm(&xs, &self.norm2, self.eps)?;
        show(w, Site::NormedIn, &normed)?;
        &xs + self.mlp.forward(&normed, w)?
    }
}

/// The student: token ids in, next-token logits at every position out.
#[derive(Debug, Clone)]
pub struct Student {
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Tensor,
    rope: Rope,
    eps: f64,
}

impl Student {
    /// Build from weights under Hugging Face names (`model.layers.{i}.self_attn.q_proj.weight`...).
    ///
    /// # Errors
    /// A weight is missing or has the wrong shape.
    pub fn new(cfg: &StudentConfig, vb: VarBuilder) -> Result<Self> {
        let m = vb.pp("model");
        let embed = candle_nn::embedding(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        let blocks = (0..cfg.num_hidden_layers)
            .map(|i| Block::new(cfg, m.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.embeddings().clone()
        } else {
            vb.pp("lm_head")
                .get((cfg.vocab_size, cfg.hidden_size), "weight")?
        };
        Ok(Self {
            norm: m.pp("norm").get(cfg.hidden_size, "weight")?,
            rope: Rope::new(cfg, vb.device())?,
            eps: cfg.rms_norm_eps,
            embed,
            blocks,
            lm_head,
        })
    }

    /// Final-normed hidden states, [b, t, hidden], for ids [b, t].
    ///
    /// # Errors
    /// Shape errors, or a sequence longer than `max_position_embeddings`.
    pub fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        self.forward_blocks(ids, &causal_mask(t, ids.device())?, None)
    }

    /// [`Student::hidden`] for packed windows: `segments[b]` lists where the sequences
    /// packed into window `b` start (first entry 0), and no position attends across a
    /// start, so each sequence is read as the teacher read it, on its own.
    ///
    /// # Errors
    /// As [`Student::hidden`]; a `segments` list per window is required.
    pub fn hidden_packed(&self, ids: &Tensor, segments: &[Vec<usize>]) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if segments.len() != b {
            candle_core::bail!("{} segment lists for {b} windows", segments.len());
        }
        let mut mask = Vec::with_capacity(b * t * t);
        for starts in segments {
            // Segment of each position: how many starts lie at or before it, minus one.
            let seg: Vec<usize> = (0..t)
                .map(|p| starts.partition_point(|&s| s <= p).saturating_sub(1))
                .collect();
            for i in 0..t {
                mask.extend((0..t).map(|j| {
                    if j > i || seg[j] != seg[i] {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                }));
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), ids.device())?;
        self.forward_blocks(ids, &mask, None)
    }

    /// [`Student::hidden`], showing every block's activations to `probe`.
    ///
    /// # Errors
    /// As [`Student::hidden`], and whatever the probe reports.
    pub fn hidden_probed(&self, ids: &Tensor, probe: &mut dyn Probe) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        self.forward_blocks(ids, &causal_mask(t, ids.device())?, Some(probe))
    }

    /// The blocks under `mask` ([t, t], or [b, 1, t, t] per window), then the final norm.
    fn forward_blocks(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        mut probe: Option<&mut dyn Probe>,
    ) -> Result<Tensor> {
        let mut xs = self.embed.forward(ids)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let mut w: Watch<'_, '_> = probe.as_deref_mut().map(|p| (p, i));
            xs = block.forward(&xs, &self.rope, mask, &mut w)?;
        }
        if let Some(p) = probe {
            p.see(self.blocks.len(), Site::Residual, &xs)?;
        }
        rms_norm(&xs, &self.norm, self.eps)
    }

    /// Stop gradients to the token embeddings and the output projection: they stay as
    /// initialised, and training skips their largest GEMM and their optimizer state.
    pub fn freeze_vocab_weights(&mut self) {
        let hidden = self.embed.hidden_size();
        self.embed = Embedding::new(self.embed.embeddings().detach(), hidden);
        self.lm_head = self.lm_head.detach();
    }

    /// Whether a weight name is one of the [vocab, hidden] matrices
    /// [`Student::freeze_vocab_weights`] freezes.
    pub fn is_vocab_weight(name: &str) -> bool {
        matches!(name, "model.embed_tokens.weight" | "lm_head.weight")
    }

    /// The output projection, [vocab, hidden] (the embeddings when tied).
    pub fn output_weight(&self) -> &Tensor {
        &self.lm_head
    }

    /// Logits at every position, [b, t, vocab].
    ///
    /// # Errors
    /// As [`Student::hidden`].
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.hidden(ids)?.broadcast_matmul(&self.lm_head.t()?)
    }
}

/// 0 on and below the diagonal, -inf above: [t, t].
fn causal_mask(t: usize, dev: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, t), dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::student::io;
    use candle_nn::VarMap;

    fn tiny() -> (StudentConfig, VarMap, Student) {
        tiny_of(StudentConfig::tiny_test())
    }

    fn tiny_of(cfg: StudentConfig) -> (StudentConfig, VarMap, Student) {
        let vm = io::var_map(&io::random_weights(&cfg, 5).expect("init")).expect("vars");
        let s = Student::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
            .expect("student");
        (cfg, vm, s)
    }

    /// A scalar that depends on every logit: sum(logits * fixed pseudo-random weights).
    fn probe(s: &Student, ids: &Tensor) -> Tensor {
        let logits = s.forward(ids).expect("forward");
        let n = logits.elem_count();
        let w: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 17) as f32 / 17.0 - 0.5)
            .collect();
        let w = Tensor::from_vec(w, logits.shape(), &Device::Cpu).expect("w");
        (logits * w).expect("mul").sum_all().expect("sum")
    }

    fn ids() -> Tensor {
        Tensor::new(
            &[[1u32, 5, 9, 33, 2, 63], [7, 7, 0, 12, 40, 3]],
            &Device::Cpu,
        )
        .expect("ids")
    }

    #[test]
    fn forward_returns_logits_for_every_position() {
        let (cfg, _, s) = tiny();
        assert_eq!(
            s.forward(&ids()).expect("forward").dims(),
            &[2, 6, cfg.vocab_size]
        );
    }

    #[test]
    fn packed_sequences_are_read_each_on_its_own() {
        let (_, _, s) = tiny();
        let ids = Tensor::new(&[[1u32, 5, 9, 33, 2, 63]], &Device::Cpu).expect("ids");
        let rows = |t: Tensor| t.squeeze(0).expect("[t, h]").to_vec2::<f32>().expect("v");
        // One segment: the plain causal forward.
        let whole = rows(s.hidden(&ids).expect("hidden"));
        assert_eq!(
            rows(s.hidden_packed(&ids, &[vec![0]]).expect("packed")),
            whole
        );
        // Two: positions 3.. are what the second sequence gives alone (at its positions).
        let packed = rows(s.hidden_packed(&ids, &[vec![0, 3]]).expect("packed"));
        let second = Tensor::new(&[[33u32, 2, 63]], &Device::Cpu).expect("ids");
        let alone = rows(s.hidden(&second).expect("hidden"));
        assert_eq!(&packed[..3], &whole[..3]);
        for (p, a) in packed[3..].iter().zip(&alone) {
            // RoPE makes attention depend on relative positions only: equal up to rounding.
            for (x, y) in p.iter().zip(a) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
        assert!(
            packed[3] != whole[3],
            "isolation changes what the second sequence sees"
        );
    }

    #[test]
    fn every_parameter_receives_a_gradient() {
        every_parameter_receives_a_gradient_in(StudentConfig::tiny_test());
        let biased = StudentConfig::tiny_test().with_attention_bias();
        every_parameter_receives_a_gradient_in(biased);
    }

    fn every_parameter_receives_a_gradient_in(cfg: StudentConfig) {
        let (cfg, vm, s) = tiny_of(cfg);
        let n_vars = vm.data().lock().expect("lock").len();
        let grads = probe(&s, &ids()).backward().expect("backward");
        for (name, var) in vm.data().lock().expect("lock").iter() {
            let g = grads
                .get(var)
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let norm = g
                .sqr()
                .expect("sqr")
                .sum_all()
                .expect("sum")
                .to_scalar::<f32>()
                .expect("scalar");
            assert!(norm > 0.0, "zero gradient for {name}");
        }
        assert_eq!(n_vars, io::param_shapes(&cfg).len());
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (_, vm, s) = tiny();
        let ids = ids();
        let grads = probe(&s, &ids).backward().expect("backward");
        let data = vm.data().lock().expect("lock");
        for name in [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.mlp.down_proj.weight",
            "model.norm.weight",
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
        ] {
            let var = &data[name];
            let g = grads
                .get(var)
                .expect("grad")
                .flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("vec");
            let w0 = var
                .as_tensor()
                .flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("vec");
            // The largest-gradient entry: clear of float noise.
            let i = (0..g.len())
                .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
                .expect("nonempty");
            let eps = 1e-2;
            let at = |delta: f32| {
                let mut w = w0.clone();
                w[i] += delta;
                var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).expect("t"))
                    .expect("set");
                probe(&s, &ids).to_scalar::<f32>().expect("scalar")
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            at(0.0);
            assert!(
                (numeric - g[i]).abs() <= 0.05 * g[i].abs() + 1e-3,
                "{name}[{i}]: autograd {} vs numeric {numeric}",
                g[i]
            );
        }
    }
}
