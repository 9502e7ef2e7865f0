//! Training data from a recorded corpus: every sequence's tokens packed into one stream and
//! cut into fixed windows (nanoGPT-style packing: no padding, sequences may share a window),
//! with the teacher's top-k row attached to each target position.

use std::path::Path;

use super::loss::Targets;
use crate::record::{Manifest, Shard};
use crate::teacher::Rng;
use crate::{Error, Result};

/// Marks a stream position that is not a training target.
const NO_TARGET: u32 = u32::MAX;

/// A token stream with its targets.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Tokens, sequences back to back.
    pub tokens: Vec<u32>,
    /// Per position: index of its top-k row, or `NO_TARGET`.
    row_of: Vec<u32>,
    /// Teacher top-k ids, [rows, k].
    topk_ids: Vec<u32>,
    /// Teacher top-k log-probs, [rows, k].
    topk_logprobs: Vec<f32>,
    /// Log-probs per row.
    pub k: usize,
    /// Teacher final hidden states, [rows, hidden_size] (empty when not recorded).
    hidden: Vec<half::f16>,
    /// Width of a hidden-state row (0 when not recorded).
    pub hidden_size: usize,
    /// Where each sequence starts in `tokens`, ascending.
    starts: Vec<usize>,
}

impl Stream {
    /// Append sequence `i` of `shard`.
    fn push(&mut self, shard: &Shard, i: usize, first_row: usize) {
        let range = shard.sequence(i);
        self.starts.push(self.tokens.len());
        let mut row = first_row;
        for p in range.clone() {
            self.tokens.push(shard.tokens[p]);
            if shard.target_mask[p] == 1 {
                self.row_of.push((self.topk_ids.len() / self.k) as u32);
                let r = row * shard.k..(row + 1) * shard.k;
                self.topk_ids.extend_from_slice(&shard.topk_ids[r.clone()]);
                self.topk_logprobs
                    .extend(shard.topk_logprobs[r].iter().map(|x| x.to_f32()));
                if shard.hidden_size > 0 {
                    let h = shard.hidden_size;
                    self.hidden_size = h;
                    self.hidden
                        .extend_from_slice(&shard.hidden[row * h..(row + 1) * h]);
                }
                row += 1;
            } else {
                self.row_of.push(NO_TARGET);
            }
        }
    }

    /// Every sequence of `shard`, in order, as one stream.
    pub fn of_shard(shard: &Shard) -> Self {
        let mut stream = Stream {
            k: shard.k,
            ..Stream::default()
        };
        let mut row = 0;
        for i in 0..shard.sequences() {
            stream.push(shard, i, row);
            row += shard.target_mask[shard.sequence(i)]
                .iter()
                .filter(|&&m| m == 1)
                .count();
        }
        stream
    }

    /// Number of target positions.
    pub fn targets(&self) -> usize {
        self.topk_ids.len() / self.k.max(1)
    }

    /// Where sequences start inside window `w` of `seq_len` tokens, relative to the window
    /// (always beginning with 0: the window's first tokens continue or start one).
    pub fn segments(&self, w: usize, seq_len: usize) -> Vec<usize> {
        let (start, end) = (w * seq_len, (w + 1) * seq_len);
        let from = self.starts.partition_point(|&s| s <= start);
        std::iter::once(0)
            .chain(
                self.starts[from..]
                    .iter()
                    .take_while(|&&s| s < end)
                    .map(|&s| s - start),
            )
            .collect()
    }

    /// Whether any of windows `ws` holds a target position (a window inside a long prompt
    /// holds none).
    pub fn has_targets(&self, ws: &[usize], seq_len: usize) -> bool {
        ws.iter().any(|&w| {
            let start = (w * seq_len).min(self.row_of.len());
            let end = (start + seq_len).min(self.row_of.len());
            self.row_of[start..end].iter().any(|&r| r != NO_TARGET)
        })
    }

    /// Number of windows of `seq_len` tokens.
    pub fn windows(&self, seq_len: usize) -> usize {
        self.tokens.len().div_ceil(seq_len)
    }

    /// Inputs and targets of windows `ws`: ids [b * seq_len] (zero-padded), the flat
    /// positions of the targets, and the targets themselves.
    pub fn batch(&self, ws: &[usize], seq_len: usize) -> (Vec<u32>, Vec<u32>, Targets) {
        let mut ids = vec![0u32; ws.len() * seq_len];
        let mut positions = Vec::new();
        let mut t = Targets {
            labels: Vec::new(),
            topk_ids: Vec::new(),
            topk_logprobs: Vec::new(),
            k: self.k,
            hidden: Vec::new(),
            hidden_size: self.hidden_size,
        };
        for (b, &w) in ws.iter().enumerate() {
            let start = w * seq_len;
            let end = (start + seq_len).min(self.tokens.len());
            ids[b * seq_len..b * seq_len + end - start].copy_from_slice(&self.tokens[start..end]);
            for p in start..end {
                let row = self.row_of[p];
                // A target's label is the next token, always inside its own sequence.
                if row != NO_TARGET {
                    positions.push((b * seq_len + p - start) as u32);
                    t.labels.push(self.tokens[p + 1]);
                    let r = row as usize * self.k..(row as usize + 1) * self.k;
                    t.topk_ids.extend_from_slice(&self.topk_ids[r.clone()]);
                    t.topk_logprobs.extend_from_slice(&self.topk_logprobs[r]);
                    let h = self.hidden_size;
                    if h > 0 {
                        let r = row as usize * h..(row as usize + 1) * h;
                        t.hidden.extend(self.hidden[r].iter().map(|x| x.to_f32()));
                    }
                }
            }
        }
        (ids, positions, t)
    }
}

/// A corpus split into training and validation streams.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Training stream.
    pub train: Stream,
    /// Held-out stream (may be empty).
    pub valid: Stream,
    /// The corpus manifest (teacher identity).
    pub manifest: Manifest,
}

/// Read a corpus and hold out `valid_fraction` of its sequences (chosen by `seed`).
///
/// # Errors
/// [`Error::Corpus`] when the directory is not a corpus or a shard is damaged.
pub fn load(dir: &Path, valid_fraction: f64, seed: u64) -> Result<Splits> {
    let manifest = Manifest::read(dir)?.ok_or_else(|| Error::Corpus {
        path: dir.to_path_buf(),
        reason: "no manifest.json: record one first with `distill record`".into(),
    })?;
    if manifest.totals.targets == 0 {
        return Err(Error::Corpus {
            path: dir.to_path_buf(),
            reason: "the corpus holds no target tokens".into(),
        });
    }
    let shards = manifest
        .shards
        .iter()
        .map(|s| Shard::read_listed(dir, s))
        .collect::<Result<Vec<_>>>()?;
    let k = shards.first().map_or(1, |s| s.k);
    // Sequence ids with their first top-k row, shuffled once to pick the held-out set.
    let mut seqs = Vec::new();
    for (si, shard) in shards.iter().enumerate() {
        let mut row = 0;
        for i in 0..shard.sequences() {
            seqs.push((si, i, row));
            row += shard.target_mask[shard.sequence(i)]
                .iter()
                .filter(|&&m| m == 1)
                .count();
        }
    }
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    shuffle(&mut order, &mut Rng::for_record(seed, 1 << 40));
    let n_valid = ((seqs.len() as f64) * valid_fraction).round() as usize;
    let n_valid = n_valid.min(seqs.len().saturating_sub(1));
    let mut valid_set = vec![false; seqs.len()];
    order[..n_valid].iter().for_each(|&i| valid_set[i] = true);
    let (mut train, mut valid) = (
        Stream {
            k,
            ..Stream::default()
        },
        Stream {
            k,
            ..Stream::default()
        },
    );
    for (j, &(si, i, row)) in seqs.iter().enumerate() {
        let stream = if valid_set[j] { &mut valid } else { &mut train };
        stream.push(&shards[si], i, row);
    }
    Ok(Splits {
        train,
        valid,
        manifest,
    })
}

/// Fisher-Yates shuffle.
pub fn shuffle<T>(xs: &mut [T], rng: &mut Rng) {
    for i in (1..xs.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        xs.swap(i, j);
    }
}

/// The window order of epoch `epoch`: a permutation fixed by (seed, epoch).
pub fn epoch_order(n_windows: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n_windows).collect();
    shuffle(&mut order, &mut Rng::for_record(seed, epoch));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::Sequence;

    fn shard() -> Shard {
        let mut s = Shard::new(2);
        for (prompt, resp) in [(vec![1, 2], vec![3, 4]), (vec![5], vec![6, 7, 8])] {
            let m = resp.len();
            s.push(&Sequence {
                tokens: [prompt.clone(), resp].concat(),
                n_prompt: prompt.len(),
                topk_ids: (0..m * 2).map(|i| 100 + i as u32).collect(),
                topk_logprobs: vec![-0.5; m * 2],
                stop: None,
                hidden: Vec::new(),
            });
        }
        s
    }

    #[test]
    fn segments_mark_where_sequences_start_in_a_window() {
        // Sequences of 4 and 4 tokens, packed: [1 2 3 4 | 5 6 7 8].
        let st = Stream::of_shard(&shard());
        assert_eq!(st.tokens.len(), 8);
        assert_eq!(st.segments(0, 3), vec![0]);
        assert_eq!(st.segments(1, 3), vec![0, 1]);
        assert_eq!(st.segments(0, 8), vec![0, 4]);
        assert_eq!(st.segments(1, 4), vec![0]);
    }

    #[test]
    fn windows_carry_labels_and_teacher_rows() {
        let sh = shard();
        let mut st = Stream {
            k: 2,
            ..Stream::default()
        };
        st.push(&sh, 0, 0);
        st.push(&sh, 1, 2);
        assert_eq!(st.tokens, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(st.targets(), 5);
        assert_eq!(st.windows(3), 3);
        let (ids, pos, t) = st.batch(&[0, 2], 3);
        assert_eq!(ids, [1, 2, 3, 7, 8, 0]);
        // window 0: positions 1 (->3) and 2 (->4); window 2: position 6 (->8), at flat 3.
        assert_eq!(pos, [1, 2, 3]);
        assert_eq!(t.labels, [3, 4, 8]);
        assert_eq!(&t.topk_ids[..2], &[100, 101]);
        assert_eq!(
            &t.topk_ids[4..],
            &[104, 105],
            "third row of the second sequence"
        );
    }

    #[test]
    fn windows_inside_prompts_have_no_targets() {
        // Targets at positions 1, 2 (first sequence) and 4, 5, 6 (second).
        let st = Stream::of_shard(&shard());
        assert!(!st.has_targets(&[0, 3, 7], 1));
        assert!(st.has_targets(&[0, 1], 1));
        assert!(st.has_targets(&[1], 4) && !st.has_targets(&[9], 4));
        let (_, positions, _) = st.batch(&[0, 3], 1);
        assert!(positions.is_empty());
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(50, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(50, 1, 0));
        assert_ne!(a, epoch_order(50, 1, 1));
    }
}
