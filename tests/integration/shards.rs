//! `record --shard I/N` on the real teacher, then `distill merge`: the merged corpus must be
//! the one a single run writes, sequence for sequence and byte for byte.

use std::path::{Path, PathBuf};

use distill::record::{Manifest, Shard};

use crate::common::*;

/// Small, fast, sampled (temperature 0.7) so that the per-record random streams matter.
const SETTINGS: &[&str] = &[
    "--max-new-tokens",
    "8",
    "--top-k",
    "4",
    "--shard-size",
    "2",
    "--parallel",
    "2",
    "--ctx",
    "512",
    "--threads",
    "2",
];

fn record(prompts: &Path, out: &Path, extra: &[&str]) {
    let args: Vec<&str> = SETTINGS.iter().chain(extra).copied().collect();
    distill_ok(&record_args(prompts, out, &args));
}

fn record_slices(dir: &Path, prompts: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let out = dir.join(format!("slice-{i}-of-{n}"));
            record(prompts, &out, &["--shard", &format!("{i}/{n}")]);
            out
        })
        .collect()
}

fn merge(out: &Path, slices: &[PathBuf]) -> std::process::Output {
    let mut args = vec!["merge".to_string(), out.display().to_string()];
    args.extend(slices.iter().map(|s| s.display().to_string()));
    distill(&args)
}

/// Every sequence of a corpus, read with the library's reader: tokens, mask, top-k ids and
/// the f16 log-prob bits.
type Sequences = Vec<(Vec<u32>, Vec<u8>, Vec<u32>, Vec<u16>)>;

fn sequences(dir: &Path) -> Sequences {
    let m = Manifest::read(dir).expect("readable").expect("manifest");
    let mut out = Vec::new();
    for info in &m.shards {
        let shard = Shard::read(&dir.join(&info.file)).expect("shard");
        let mut row = 0;
        for s in 0..shard.sequences() {
            let r = shard.sequence(s);
            let rows = shard.target_mask[r.clone()]
                .iter()
                .filter(|&&b| b == 1)
                .count();
            let cells = row * shard.k..(row + rows) * shard.k;
            out.push((
                shard.tokens[r.clone()].to_vec(),
                shard.target_mask[r].to_vec(),
                shard.topk_ids[cells.clone()].to_vec(),
                shard.topk_logprobs[cells]
                    .iter()
                    .map(|x| x.to_bits())
                    .collect(),
            ));
            row += rows;
        }
    }
    out
}

/// (file, records, sha256) of each shard in the manifest.
fn listing(dir: &Path) -> Vec<(String, usize, usize, String, u64)> {
    let m = Manifest::read(dir).expect("readable").expect("manifest");
    assert!(m.complete && m.slice.is_none(), "a whole, complete corpus");
    m.shards
        .iter()
        .map(|s| {
            (
                s.file.clone(),
                s.first_record,
                s.last_record,
                s.sha256.clone(),
                s.bytes,
            )
        })
        .collect()
}

#[test]
fn merged_slices_equal_a_single_run() {
    let dir = temp_dir("shards-equal");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let whole = dir.join("whole");
    record(&prompts, &whole, &[]);
    let single = sequences(&whole);
    assert_eq!(single.len(), 6);
    assert!(
        single.iter().all(|s| !s.2.is_empty()),
        "every sequence has targets"
    );
    // Six records in shards of two: slices of 3 hold one shard each, slices of 2 hold
    // shards {0, 2} and {1}.
    for n in [3, 2] {
        let slices = record_slices(&dir.join(format!("n{n}")), &prompts, n);
        let m = Manifest::read(&slices[0]).expect("read").expect("manifest");
        assert_eq!(m.slice.map(|s| (s.index, s.count)), Some((0, n)));
        let inspect = distill_ok(&["inspect", &slices[0].display().to_string()]);
        assert!(inspect.contains(&format!("slice 0/{n}")), "{inspect}");
        let merged = dir.join(format!("merged-{n}"));
        let out = merge(&merged, &slices);
        assert!(
            out.status.success(),
            "merge failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("6 records in 3 shards"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            sequences(&merged),
            single,
            "{n} slices: same sequences and top-k"
        );
        assert_eq!(
            listing(&merged),
            listing(&whole),
            "{n} slices: same shard bytes"
        );
    }
    let py = read_corpus_py(&dir.join("merged-3"));
    assert_eq!(py["sequences"], 6);
}

#[test]
fn merge_names_a_missing_slice_and_a_disagreeing_setting() {
    let dir = temp_dir("shards-refuse");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let slices = record_slices(&dir, &prompts, 3);
    let out = merge(&dir.join("m1"), &[slices[0].clone(), slices[2].clone()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("slice 1/3 missing"),
        "{err}"
    );
    // Slice 1 recorded with another seed.
    let other = dir.join("other-seed");
    record(&prompts, &other, &["--shard", "1/3", "--seed", "7"]);
    let out = merge(
        &dir.join("m2"),
        &[slices[0].clone(), other.clone(), slices[2].clone()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("record settings differs")
            && err.contains("--seed")
            && err.contains(&other.display().to_string()),
        "{err}"
    );
    assert!(
        !dir.join("m2").join("manifest.json").exists(),
        "nothing written"
    );
    // A slice outside 0..N is refused by name before anything runs.
    let err = distill_err(&record_args(
        &prompts,
        &dir.join("bad"),
        &["--shard", "3/3"],
    ));
    assert!(err.contains("--shard") && err.contains("below N"), "{err}");
}
