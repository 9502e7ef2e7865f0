//! The test teachers the suite builds from the default one with the project's own code,
//! once per test binary: a llama teacher of another depth (`distill teacher cut`), and a
//! qwen2 teacher (SmolLM2's blocks in Qwen2's layout, with small q/k/v biases).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use distill::student::init::unpermute;

use crate::common::{distill_ok, teacher, temp_dir};

/// Blocks of the default teacher the depth-cut teacher keeps.
pub const CUT_BLOCKS: &str = "0,4,8,12,16,20,24,29";

/// SmolLM2 cut to 8 of its 30 blocks by `distill teacher cut` (tensors copied as they are).
pub fn cut_teacher() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = temp_dir("teacher-cut").join("smollm2-cut8.gguf");
        let (src, dst) = (teacher().display().to_string(), out.display().to_string());
        let stdout = distill_ok(&[
            "teacher",
            "cut",
            "--teacher",
            &src,
            "--blocks",
            CUT_BLOCKS,
            "--out",
            &dst,
        ]);
        assert!(stdout.contains("8 of 30 blocks"), "{stdout}");
        out
    })
}

/// Blocks of the default teacher the qwen2 teacher is made of.
pub const QWEN2_BLOCKS: [usize; 6] = [0, 6, 12, 18, 24, 29];

/// A qwen2 GGUF built from SmolLM2's blocks [`QWEN2_BLOCKS`] as llama.cpp's converter
/// writes Qwen2 (`convert_hf_to_gguf.py`, `Qwen2Model`): `qwen2.*` keys, Q/K rows in
/// Hugging Face order (llama.cpp runs NEOX RoPE on them; SmolLM2's llama rows are
/// interleaved, so they are unpermuted), and F32 biases `blk.N.attn_{q,k,v}.bias`, here
/// small deterministic values. The block matrices are stored dequantized (F32) and the
/// embedding as F16, so that llama.cpp's arithmetic is close to candle's and a comparison
/// of logits can be tight.
pub fn qwen2_teacher() -> &'static PathBuf {
    static T: OnceLock<PathBuf> = OnceLock::new();
    T.get_or_init(|| {
        let out = temp_dir("teacher-qwen2").join("smollm2-as-qwen2.gguf");
        write_qwen2(&teacher(), &QWEN2_BLOCKS, &out);
        out
    })
}

/// Value `i` of a bias vector: small, nonzero, different per block and vector.
pub fn bias_value(block: usize, salt: usize, i: usize) -> f32 {
    0.08 * ((i * 7 + block * 13 + salt * 31) as f32 * 0.37).sin()
}

fn write_qwen2(src: &Path, blocks: &[usize], out: &Path) {
    let mut file = std::fs::File::open(src).expect("open teacher");
    let content = gguf_file::Content::read(&mut file).expect("read teacher");
    let kv = qwen2_metadata(&content, blocks.len());
    let heads = content.metadata["llama.attention.head_count"]
        .to_u32()
        .expect("heads") as usize;
    let kv_heads = content.metadata["llama.attention.head_count_kv"]
        .to_u32()
        .expect("kv heads") as usize;
    let mut load = |name: &str| content.tensor(&mut file, name, &Device::Cpu).expect(name);
    let embd = load("token_embd.weight")
        .dequantize(&Device::Cpu)
        .expect("embd");
    let embd = QTensor::quantize(&embd, GgmlDType::F16).expect("f16");
    let mut tensors = vec![("token_embd.weight".to_string(), embd)];
    for (i, &b) in blocks.iter().enumerate() {
        for t in [
            "attn_norm",
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_norm",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ] {
            let w = load(&format!("blk.{b}.{t}.weight"))
                .dequantize(&Device::Cpu)
                .expect("dequantize");
            let w = match t {
                "attn_q" | "attn_k" => {
                    let h = if t == "attn_q" { heads } else { kv_heads };
                    let hd = w.dims()[0] / h;
                    unpermute(&w, h, hd).expect("unpermute")
                }
                _ => w,
            };
            let q = QTensor::quantize(&w, GgmlDType::F32).expect("f32");
            let rows = q.shape().dims()[0];
            tensors.push((format!("blk.{i}.{t}.weight"), q));
            if let Some(salt) = ["attn_q", "attn_k", "attn_v"].iter().position(|x| *x == t) {
                let v: Vec<f32> = (0..rows).map(|j| bias_value(i, salt, j)).collect();
                let bias = Tensor::from_vec(v, rows, &Device::Cpu).expect("bias");
                let bias = QTensor::quantize(&bias, GgmlDType::F32).expect("f32");
                tensors.push((format!("blk.{i}.{t}.bias"), bias));
            }
        }
    }
    tensors.push(("output_norm.weight".into(), load("output_norm.weight")));
    distill::student::export::write_gguf(out, &kv, &tensors).expect("write qwen2 GGUF");
}

/// The llama teacher's metadata under `qwen2.*` keys, with `n_blocks` blocks.
fn qwen2_metadata(content: &gguf_file::Content, n_blocks: usize) -> Vec<(String, Value)> {
    let mut kv: Vec<(String, Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| match k.strip_prefix("llama.") {
            Some(rest) => (format!("qwen2.{rest}"), v.clone()),
            None => (k.clone(), v.clone()),
        })
        .collect();
    for (k, v) in &mut kv {
        match k.as_str() {
            "general.architecture" => *v = Value::String("qwen2".into()),
            "qwen2.block_count" => *v = Value::U32(n_blocks as u32),
            _ => {}
        }
    }
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    kv
}
