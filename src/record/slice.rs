//! `--shard I/N`: the I-th of N slices of a recording, so that N machines record one corpus
//! at once and `distill merge` joins their directories.
//!
//! A recording is a grid of corpus shards: shard j holds records
//! `[j * shard_size, (j + 1) * shard_size)`. Slice I records the shards j with
//! `j % N == I`, each decoded exactly as a single run decodes it (same jobs, same batch
//! composition, same random streams), so the merged shards equal a single run's byte for
//! byte. Round robin rather than contiguous ranges spreads long and short prompts evenly
//! when a prompt file is sorted by length or topic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which slice of a recording a corpus directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// `I`: 0-based.
    pub index: usize,
    /// `N`: slices in all.
    pub count: usize,
}

impl Slice {
    /// Whether grid shard `j` belongs to this slice.
    pub fn holds(&self, j: usize) -> bool {
        j % self.count == self.index
    }
}

impl fmt::Display for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Slice {
    type Err = String;

    /// `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "give I/N with 0 <= I < N, e.g. --shard 0/4 on the first of four machines";
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not of the form I/N: {usage}"))?;
        let parse = |x: &str, what: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("{what} '{x}' in '{s}' is not a whole number: {usage}"))
        };
        let (index, count) = (parse(i, "I")?, parse(n, "N")?);
        if count == 0 {
            return Err(format!("N is 0 in '{s}': {usage}"));
        }
        if index >= count {
            return Err(format!(
                "I must be below N in '{s}' (slices are numbered 0 to {}): {usage}",
                count - 1
            ));
        }
        Ok(Self { index, count })
    }
}

/// One shard of the grid: its index, first record and last record.
pub type GridShard = (usize, usize, usize);

/// The grid of a recording of `planned` records in shards of `shard_size`.
pub fn grid(planned: usize, shard_size: usize) -> Vec<GridShard> {
    (0..planned.div_ceil(shard_size.max(1)))
        .map(|j| {
            let first = j * shard_size;
            (j, first, (first + shard_size).min(planned) - 1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!("1/3".parse::<Slice>(), Ok(Slice { index: 1, count: 3 }));
        assert_eq!(
            "0/1".parse::<Slice>().map(|s| s.to_string()),
            Ok("0/1".into())
        );
        for (bad, says) in [
            ("3/3", "below N"),
            ("0/0", "N is 0"),
            ("2", "form I/N"),
            ("a/2", "whole number"),
            ("-1/2", "whole number"),
        ] {
            let err = bad.parse::<Slice>().expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn slices_cover_the_grid_once() {
        let g = grid(7, 2);
        assert_eq!(g, [(0, 0, 1), (1, 2, 3), (2, 4, 5), (3, 6, 6)]);
        let n = 3;
        for (j, _, _) in &g {
            let owners = (0..n)
                .filter(|&i| Slice { index: i, count: n }.holds(*j))
                .count();
            assert_eq!(owners, 1);
        }
        assert!(grid(0, 4).is_empty());
    }
}
