//! One corpus shard: sequences concatenated, as safetensors (format v1 in DESIGN.md).
//!
//! | tensor | dtype | shape | meaning |
//! |---|---|---|---|
//! | `tokens` | U32 | [N] | every token of every sequence |
//! | `offsets` | U64 | [S+1] | sequence boundaries in `tokens` |
//! | `target_mask` | U8 | [N] | 1 where the next token is a response token |
//! | `topk_ids` | U16 or U32 | [M, k] | teacher's k most likely next tokens, M = sum(mask) |
//! | `topk_logprobs` | F16 | [M, k] | their log-probabilities, descending |
//! | `hidden` (optional, v2) | F16 | [M, H] | teacher's final hidden state (after the output norm) |
//!
//! The header's metadata holds `format` and, in shards written since the stamp existed,
//! `origin` ([`super::origin`]): where the shard came from and a sha256 of its data.

use std::collections::HashMap;
use std::path::Path;

use half::f16;
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use super::manifest::ShardInfo;
use super::origin::{self, Origin};
use super::write_atomic;
use crate::gguf::hex;
use crate::teacher::Sequence;
use crate::{Error, Result};

/// The shard file name for index `i`.
pub fn file_name(i: usize) -> String {
    format!("shard-{i:05}.safetensors")
}

/// A shard in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shard {
    /// Log-probabilities per target row.
    pub k: usize,
    /// All tokens.
    pub tokens: Vec<u32>,
    /// Sequence boundaries, `offsets[0] = 0`.
    pub offsets: Vec<u64>,
    /// 1 where the next token is a target.
    pub target_mask: Vec<u8>,
    /// `[M, k]` ids.
    pub topk_ids: Vec<u32>,
    /// `[M, k]` log-probabilities.
    pub topk_logprobs: Vec<f16>,
    /// `[M, H]` final hidden states, or empty.
    pub hidden: Vec<f16>,
    /// Width `H` of a hidden-state row (0 without them).
    pub hidden_size: usize,
}

impl Shard {
    /// An empty shard holding `k` log-probabilities per target.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            offsets: vec![0],
            ..Self::default()
        }
    }

    /// Number of sequences.
    pub fn sequences(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of target rows.
    pub fn targets(&self) -> usize {
        self.topk_ids.len() / self.k.max(1)
    }

    /// Append a decoded sequence.
    pub fn push(&mut self, seq: &Sequence) {
        let n = seq.tokens.len();
        self.tokens.extend_from_slice(&seq.tokens);
        self.offsets.push(self.tokens.len() as u64);
        // Position p is a target when token p+1 is a response token.
        self.target_mask
            .extend((0..n).map(|p| u8::from(p + 1 >= seq.n_prompt.max(1) && p + 1 < n)));
        self.topk_ids.extend_from_slice(&seq.topk_ids);
        self.topk_logprobs
            .extend(seq.topk_logprobs.iter().map(|&x| f16::from_f32(x)));
        if !seq.hidden.is_empty() {
            self.hidden_size = seq.hidden.len() / seq.n_targets().max(1);
            self.hidden
                .extend(seq.hidden.iter().map(|&x| f16::from_f32(x)));
        }
    }

    /// The token range of sequence `i`.
    pub fn sequence(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i] as usize..self.offsets[i + 1] as usize
    }

    /// Serialize to safetensors bytes; ids are U16 when the vocabulary allows.
    ///
    /// # Errors
    /// [`Error::Safetensors`] on inconsistent sizes.
    pub fn to_bytes(&self, n_vocab: usize) -> Result<Vec<u8>> {
        let m = self.targets();
        let tokens = le_bytes(&self.tokens, |x| x.to_le_bytes());
        let offsets = le_bytes(&self.offsets, |x| x.to_le_bytes());
        let logprobs = le_bytes(&self.topk_logprobs, |x| x.to_le_bytes());
        let (id_dtype, ids) = if n_vocab <= 1 << 16 {
            (
                Dtype::U16,
                le_bytes(&self.topk_ids, |&x| (x as u16).to_le_bytes()),
            )
        } else {
            (Dtype::U32, le_bytes(&self.topk_ids, |x| x.to_le_bytes()))
        };
        let hidden = le_bytes(&self.hidden, |x| x.to_le_bytes());
        let mut views = vec![
            (
                "tokens",
                TensorView::new(Dtype::U32, vec![self.tokens.len()], &tokens)?,
            ),
            (
                "offsets",
                TensorView::new(Dtype::U64, vec![self.offsets.len()], &offsets)?,
            ),
            (
                "target_mask",
                TensorView::new(Dtype::U8, vec![self.target_mask.len()], &self.target_mask)?,
            ),
            (
                "topk_ids",
                TensorView::new(id_dtype, vec![m, self.k], &ids)?,
            ),
            (
                "topk_logprobs",
                TensorView::new(Dtype::F16, vec![m, self.k], &logprobs)?,
            ),
        ];
        if self.hidden_size > 0 {
            let view = TensorView::new(Dtype::F16, vec![m, self.hidden_size], &hidden)?;
            views.push(("hidden", view));
        }
        // One metadata key only: safetensors keeps metadata in a HashMap, and a single key
        // keeps the header (and so the file) byte-identical between runs.
        let format = if self.hidden_size > 0 {
            "distill-corpus-v2"
        } else {
            "distill-corpus-v1"
        };
        let meta = HashMap::from([("format".to_string(), format.to_string())]);
        Ok(safetensors::serialize(views, Some(meta))?)
    }

    /// Write atomically to `path`; returns (sha256, bytes written).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Safetensors`].
    pub fn write(&self, path: &Path, n_vocab: usize) -> Result<(String, u64)> {
        let bytes = self.to_bytes(n_vocab)?;
        write_atomic(path, &bytes)?;
        Ok((hex(&Sha256::digest(&bytes)), bytes.len() as u64))
    }

    /// Read a shard the manifest lists, first checking its size and sha256 against the
    /// manifest's entry, so that a damaged or replaced file is named instead of read.
    ///
    /// # Errors
    /// [`Error::Corpus`] naming the file when it differs from its entry or is damaged.
    pub fn read_listed(dir: &Path, info: &ShardInfo) -> Result<Self> {
        let path = dir.join(&info.file);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let damaged = |what: String| Error::Corpus {
            path: path.clone(),
            reason: format!(
                "{what}, so the file is damaged or was replaced; delete it and run the same \
                 `distill record` again to record it anew"
            ),
        };
        if bytes.len() as u64 != info.bytes {
            return Err(damaged(format!(
                "{} bytes where manifest.json lists {}",
                bytes.len(),
                info.bytes
            )));
        }
        if hex(&Sha256::digest(&bytes)) != info.sha256 {
            return Err(damaged(
                "its sha256 differs from the one in manifest.json".into(),
            ));
        }
        Self::from_bytes(&bytes).map_err(|reason| Error::Corpus { path, reason })
    }

    /// [`Shard::write`] with the shard's [`Origin`] stamped into its header, so that it can
    /// prove where it came from without the manifest.
    ///
    /// # Errors
    /// As [`Shard::write`].
    pub fn write_stamped(
        &self,
        path: &Path,
        n_vocab: usize,
        origin: &Origin,
    ) -> Result<(String, u64)> {
        let bytes =
            origin::stamp(&self.to_bytes(n_vocab)?, origin).map_err(|reason| Error::Corpus {
                path: path.to_path_buf(),
                reason,
            })?;
        write_atomic(path, &bytes)?;
        Ok((hex(&Sha256::digest(&bytes)), bytes.len() as u64))
    }

    /// Read and check a shard file.
    ///
    /// # Errors
    /// [`Error::Corpus`] naming the file when it is damaged or inconsistent.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|reason| Error::Corpus {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parse safetensors bytes written by [`Shard::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| format!("not a readable safetensors shard: {e}"))?;
        let get = |name: &str| {
            st.tensor(name)
                .map_err(|_| format!("shard lacks tensor '{name}'"))
        };
        let tokens: Vec<u32> = read_le(&get("tokens")?, Dtype::U32, u32::from_le_bytes)?;
        let offsets: Vec<u64> = read_le(&get("offsets")?, Dtype::U64, u64::from_le_bytes)?;
        let target_mask = read_le(&get("target_mask")?, Dtype::U8, |b: [u8; 1]| b[0])?;
        let ids_view = get("topk_ids")?;
        let k = *ids_view.shape().get(1).ok_or("topk_ids is not 2-D")?;
        let topk_ids = match ids_view.dtype() {
            Dtype::U16 => read_le(&ids_view, Dtype::U16, |b| u32::from(u16::from_le_bytes(b)))?,
            _ => read_le(&ids_view, Dtype::U32, u32::from_le_bytes)?,
        };
        let topk_logprobs = read_le(&get("topk_logprobs")?, Dtype::F16, f16::from_le_bytes)?;
        let (hidden, hidden_size) = match st.tensor("hidden") {
            Ok(view) => (
                read_le(&view, Dtype::F16, f16::from_le_bytes)?,
                *view.shape().get(1).ok_or("hidden is not 2-D")?,
            ),
            Err(_) => (Vec::new(), 0),
        };
        let shard = Self {
            k,
            tokens,
            offsets,
            target_mask,
            topk_ids,
            topk_logprobs,
            hidden,
            hidden_size,
        };
        shard.check()?;
        Ok(shard)
    }

    /// Internal consistency: offsets cover the tokens, the mask matches the rows.
    fn check(&self) -> std::result::Result<(), String> {
        let n = self.tokens.len();
        if self.offsets.first() != Some(&0) || self.offsets.last() != Some(&(n as u64)) {
            return Err("offsets do not span the tokens".into());
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err("offsets are not ascending".into());
        }
        let m: usize = self.target_mask.iter().map(|&b| usize::from(b)).sum();
        if self.target_mask.len() != n
            || m != self.targets()
            || self.topk_logprobs.len() != self.topk_ids.len()
        {
            return Err(format!(
                "{m} masked positions but {} top-k rows",
                self.targets()
            ));
        }
        if self.hidden.len() != self.hidden_size * self.targets() {
            return Err(format!(
                "{} hidden values for {} rows of width {}",
                self.hidden.len(),
                self.targets(),
                self.hidden_size
            ));
        }
        Ok(())
    }
}

fn le_bytes<T, const N: usize>(xs: &[T], f: impl Fn(&T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * N);
    for x in xs {
        out.extend_from_slice(&f(x));
    }
    out
}

fn read_le<T, const N: usize>(
    view: &TensorView<'_>,
    want: Dtype,
    f: impl Fn([u8; N]) -> T,
) -> std::result::Result<Vec<T>, String> {
    if view.dtype() != want {
        return Err(format!(
            "tensor has dtype {:?}, expected {want:?}",
            view.dtype()
        ));
    }
    Ok(view
        .data()
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks_exact yields N bytes")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(prompt: &[u32], response: &[u32], k: usize) -> Sequence {
        let m = response.len();
        Sequence {
            tokens: [prompt, response].concat(),
            n_prompt: prompt.len(),
            topk_ids: (0..m * k).map(|i| i as u32 % 70_000).collect(),
            topk_logprobs: (0..m * k).map(|i| -(i as f32) * 0.25).collect(),
            stop: None,
            hidden: Vec::new(),
        }
    }

    #[test]
    fn write_then_read_round_trips() {
        for n_vocab in [49_152, 100_000] {
            let mut shard = Shard::new(3);
            shard.push(&seq(&[1, 2, 3], &[4, 5], 3));
            shard.push(&seq(&[7], &[8, 9, 10], 3));
            let bytes = shard.to_bytes(n_vocab).expect("serialize");
            let back = Shard::from_bytes(&bytes).expect("parse");
            let mut expect = shard.clone();
            if n_vocab <= 1 << 16 {
                expect.topk_ids.iter_mut().for_each(|x| *x %= 1 << 16);
            }
            assert_eq!(back, expect);
            assert_eq!(back.target_mask, [0, 0, 1, 1, 0, 1, 1, 1, 0]);
            assert_eq!((back.sequences(), back.targets()), (2, 5));
            assert_eq!(
                bytes,
                shard.to_bytes(n_vocab).expect("again"),
                "serialization is deterministic"
            );
        }
    }

    #[test]
    fn damaged_shards_are_refused() {
        let mut shard = Shard::new(2);
        shard.push(&seq(&[1, 2], &[3], 2));
        let bytes = shard.to_bytes(100).expect("serialize");
        assert!(Shard::from_bytes(&bytes[..bytes.len() - 4]).is_err());
        shard.target_mask[0] = 1;
        let bad = shard.to_bytes(100).expect("serialize");
        assert!(
            Shard::from_bytes(&bad)
                .expect_err("inconsistent")
                .contains("top-k rows")
        );
    }
}
