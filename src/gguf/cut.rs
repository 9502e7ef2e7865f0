//! A teacher with fewer blocks: the GGUF's tensors copied as they are (no requantization),
//! the chosen blocks renumbered from 0, the block count (and any per-block metadata array)
//! cut to match. A teacher of another depth for tests, or a faster, worse teacher to try
//! a pipeline on.

use std::fs::File;
use std::path::Path;

use candle_core::Device;
use candle_core::quantized::QTensor;
use candle_core::quantized::gguf_file::{Content, Value};

use crate::{Error, Result};

/// What [`cut_blocks`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CutSummary {
    /// Blocks of the source.
    pub source_blocks: usize,
    /// Tensors written.
    pub tensors: usize,
    /// File size in bytes.
    pub bytes: u64,
}

/// Write to `out` the GGUF at `src` keeping only blocks `blocks` (in that order).
///
/// # Errors
/// [`Error::Gguf`] for an unreadable source, [`Error::Invalid`] for a block it lacks, I/O.
pub fn cut_blocks(src: &Path, blocks: &[usize], out: &Path) -> Result<CutSummary> {
    let bad = |reason: String| Error::Gguf {
        path: src.to_path_buf(),
        reason,
    };
    let mut file = File::open(src).map_err(|e| Error::io(src, e))?;
    let content = Content::read(&mut file).map_err(|e| bad(e.to_string()))?;
    let arch = match content.metadata.get("general.architecture") {
        Some(Value::String(a)) => a.clone(),
        _ => return Err(bad("it has no 'general.architecture'".into())),
    };
    let count_key = format!("{arch}.block_count");
    let total = content
        .metadata
        .get(&count_key)
        .and_then(|v| v.to_u64().ok())
        .ok_or_else(|| bad(format!("it has no '{count_key}'")))? as usize;
    if blocks.is_empty() || blocks.iter().any(|&b| b >= total) {
        return Err(Error::Invalid(format!(
            "--blocks '{blocks:?}' must name blocks of the {total} in '{}' (0..={})",
            src.display(),
            total.saturating_sub(1)
        )));
    }
    let kv = metadata(&content, &count_key, total, blocks);
    let tensors = tensors(&content, &mut file, total, blocks)?;
    let bytes = crate::student::export::write_gguf(out, &kv, &tensors)?;
    Ok(CutSummary {
        source_blocks: total,
        tensors: tensors.len(),
        bytes,
    })
}

/// The source's metadata, sorted by key, with the block count and per-block arrays cut.
fn metadata(
    content: &Content,
    count_key: &str,
    total: usize,
    blocks: &[usize],
) -> Vec<(String, Value)> {
    let mut kv: Vec<(String, Value)> = content
        .metadata
        .iter()
        // Our writer pads to 32 bytes whatever the source said.
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| {
            let v = match v {
                _ if k == count_key => Value::U32(blocks.len() as u32),
                Value::Array(a) if a.len() == total && !k.starts_with("tokenizer.") => {
                    Value::Array(blocks.iter().map(|&b| a[b].clone()).collect())
                }
                v => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    kv.sort_by(|a, b| a.0.cmp(&b.0));
    kv
}

/// Every tensor outside the blocks, and the kept blocks' tensors renamed, in file order.
fn tensors(
    content: &Content,
    file: &mut File,
    total: usize,
    blocks: &[usize],
) -> Result<Vec<(String, QTensor)>> {
    let mut infos: Vec<(&String, u64)> = content
        .tensor_infos
        .iter()
        .map(|(name, t)| (name, t.offset))
        .collect();
    infos.sort_by_key(|&(_, offset)| offset);
    let mut out = Vec::new();
    for (new, &old) in blocks.iter().enumerate() {
        let prefix = format!("blk.{old}.");
        for (name, _) in infos.iter().filter(|(n, _)| n.starts_with(&prefix)) {
            let t = content.tensor(file, name, &Device::Cpu)?;
            out.push((format!("blk.{new}.{}", &name[prefix.len()..]), t));
        }
    }
    let in_block = |n: &str| (0..total).any(|b| n.starts_with(&format!("blk.{b}.")));
    let mut rest = Vec::new();
    for (name, _) in infos.iter().filter(|(n, _)| !in_block(n)) {
        rest.push(((*name).clone(), content.tensor(file, name, &Device::Cpu)?));
    }
    // Embeddings first, blocks, then the output tensors, as llama.cpp's converter orders them.
    let (head, tail): (Vec<_>, Vec<_>) =
        rest.into_iter().partition(|(n, _)| n.starts_with("token_"));
    Ok(head.into_iter().chain(out).chain(tail).collect())
}
