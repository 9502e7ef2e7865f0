//! The prompts of a recorded corpus, as token ids: what a model answers in eval's
//! free-running section and in on-policy distillation.

use std::path::Path;

use super::{Manifest, Shard};
use crate::{Error, Result};

/// The prompts of the first `limit` sequences of a recorded corpus: every token up to and
/// including the one after which the response begins.
///
/// # Errors
/// An unreadable corpus, or one with no sequence that has a response.
pub fn prompts(corpus: &Path, limit: usize) -> Result<Vec<Vec<u32>>> {
    let m = Manifest::read(corpus)?.ok_or_else(|| Error::Corpus {
        path: corpus.to_path_buf(),
        reason: "no manifest.json: not a corpus directory".into(),
    })?;
    let mut out = Vec::new();
    for info in &m.shards {
        let shard = Shard::read_listed(corpus, info)?;
        for s in 0..shard.sequences() {
            if out.len() == limit {
                return Ok(out);
            }
            let r = shard.sequence(s);
            if let Some(first) = shard.target_mask[r.clone()].iter().position(|&b| b == 1) {
                out.push(shard.tokens[r.start..=r.start + first].to_vec());
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Corpus {
            path: corpus.to_path_buf(),
            reason: "no sequence with a response to take a prompt from".into(),
        });
    }
    Ok(out)
}
