//! Token-by-token decoding of one sequence in a [`Session`], for interactive chat: the
//! caller keeps track of what the KV cache holds, cuts it back to the prefix a new prompt
//! shares with it, and feeds the rest (llama.cpp's `server` reuses its cache the same way).

use llama_cpp_2::token::LlamaToken;

use super::Session;
use crate::{Error, Result};

impl Session<'_> {
    /// Forget sequence 0's cache from position `keep` on.
    ///
    /// # Errors
    /// [`Error::Llama`] when llama.cpp cannot remove part of the cache.
    pub fn truncate(&mut self, keep: usize) -> Result<()> {
        let keep = u32::try_from(keep).map_err(|_| Error::Llama("position too large".into()))?;
        match self.ctx.clear_kv_cache_seq(Some(0), Some(keep), None) {
            Ok(true) => Ok(()),
            Ok(false) => {
                // Partial removal unsupported by this cache type: start over.
                self.ctx.clear_kv_cache();
                Err(Error::Llama("cannot cut the KV cache back".into()))
            }
            Err(e) => Err(Error::Llama(e.to_string())),
        }
    }

    /// Decode `tokens` of sequence 0 at positions `pos..` (the cache must hold exactly `pos`
    /// tokens) and return the logits after the last one.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty input or one past the context, [`Error::Llama`] when
    /// decoding fails.
    pub fn extend(&mut self, tokens: &[u32], pos: usize) -> Result<&[f32]> {
        if tokens.is_empty() || pos + tokens.len() > self.params.ctx {
            return Err(Error::Invalid(format!(
                "{} tokens after {pos} do not fit the context of {}",
                tokens.len(),
                self.params.ctx
            )));
        }
        let n_batch = self.params.n_batch.max(1);
        let mut last_row = 0;
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            self.batch.clear();
            let base = pos + c * n_batch;
            let is_last_chunk = (c + 1) * n_batch >= tokens.len();
            for (j, &t) in chunk.iter().enumerate() {
                let wants = is_last_chunk && j + 1 == chunk.len();
                self.batch
                    .add(LlamaToken(t as i32), (base + j) as i32, &[0], wants)
                    .map_err(|e| Error::Llama(format!("batch: {e}")))?;
            }
            self.ctx
                .decode(&mut self.batch)
                .map_err(|e| Error::Llama(format!("decode failed: {e}")))?;
            last_row = chunk.len() - 1;
        }
        Ok(self.ctx.get_logits_ith(last_row as i32))
    }
}
