//! Merge bookkeeping with the fake teacher: slices join into the single run's bytes, and
//! every kind of mismatch is refused by name. (tests/integration/shards.rs runs the same
//! flow with llama.cpp.)

use std::path::{Path, PathBuf};

use super::*;
use crate::record::{Mode, RecordConfig, record_with};
use crate::teacher::fake::FakeTeacher;

fn dir(name: &str) -> PathBuf {
    crate::record::recorder::tests::dir(&format!("merge-{name}"))
}

const PROMPTS: &str = "{\"prompt\": \"one\"}\n{\"prompt\": \"two\"}\n{\"prompt\": \"three\"}\n\
    {\"prompt\": \"four\"}\n{\"prompt\": \"five\"}\n{\"prompt\": \"six\"}\n{\"prompt\": \"seven\"}\n";

fn config(prompts: &Path, out: &Path, slice: Option<Slice>) -> RecordConfig {
    RecordConfig {
        slice,
        ..crate::record::recorder::tests::config(prompts, out, Mode::Generate)
    }
}

fn slice(index: usize, count: usize) -> Option<Slice> {
    Some(Slice { index, count })
}

/// Record slices `0..n` of the prompts under `d`; returns their directories.
fn record_slices(d: &Path, prompts: &Path, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let out = d.join(format!("slice-{i}-of-{n}"));
            record_with(
                &config(prompts, &out, slice(i, n)),
                &FakeTeacher::new(5),
                &mut |_| {},
            )
            .expect("record slice");
            out
        })
        .collect()
}

fn listing(dir: &Path) -> Vec<(super::super::ShardInfo, Vec<u8>)> {
    let m = Manifest::read(dir).expect("read").expect("manifest");
    m.shards
        .iter()
        .map(|s| (s.clone(), std::fs::read(dir.join(&s.file)).expect("shard")))
        .collect()
}

#[test]
fn merged_slices_equal_the_single_run() {
    let d = dir("equal");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let whole = d.join("whole");
    record_with(
        &config(&prompts, &whole, None),
        &FakeTeacher::new(5),
        &mut |_| {},
    )
    .expect("record");
    // 7 records in shards of 2: 4 grid shards; 5 slices leave one empty.
    for n in [1, 2, 3, 5] {
        let slices = record_slices(&d, &prompts, n);
        let out = d.join(format!("merged-{n}"));
        let mut shuffled = slices.clone();
        shuffled.reverse();
        let s = merge(&out, &shuffled).expect("merge");
        assert_eq!((s.slices, s.shards, s.records), (n, 4, 7));
        assert_eq!(listing(&out), listing(&whole), "{n} slices");
        let m = Manifest::read(&out).expect("read").expect("manifest");
        assert!(m.complete && m.slice.is_none() && m.planned_records == 7);
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn mismatched_missing_repeated_or_unfinished_slices_are_refused() {
    let d = dir("refuse");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let slices = record_slices(&d, &prompts, 3);
    let err = |inputs: &[PathBuf], out: &str| {
        merge(&d.join(out), inputs)
            .expect_err("refused")
            .to_string()
    };
    let e = err(&slices[..2], "m1");
    assert!(e.contains("slice 2/3 missing"), "{e}");
    let e = err(
        &[slices[0].clone(), slices[1].clone(), slices[1].clone()],
        "m2",
    );
    assert!(e.contains("given twice"), "{e}");
    // Another top-k in slice 1 (a separate recording of 1/3).
    let other = d.join("other-k");
    let mut cfg = config(&prompts, &other, slice(1, 3));
    cfg.settings.k = 3;
    record_with(&cfg, &FakeTeacher::new(5), &mut |_| {}).expect("record");
    let e = err(&[slices[0].clone(), other.clone(), slices[2].clone()], "m3");
    assert!(
        e.contains("record settings differs") && e.contains("--top-k") && e.contains("other-k"),
        "{e}"
    );
    // Another N.
    let two = record_slices(&d.join("two"), &prompts, 2);
    let e = err(
        &[slices[0].clone(), two[1].clone(), slices[2].clone()],
        "m4",
    );
    assert!(e.contains("slice count"), "{e}");
    // Other prompts.
    let edited = d.join("edited.jsonl");
    std::fs::write(&edited, PROMPTS.replace("seven", "eight")).expect("write");
    let changed = d.join("changed");
    record_with(
        &config(&edited, &changed, slice(2, 3)),
        &FakeTeacher::new(5),
        &mut |_| {},
    )
    .expect("record");
    let e = err(&[slices[0].clone(), slices[1].clone(), changed], "m5");
    assert!(e.contains("sources (--prompts) differs"), "{e}");
    // A whole corpus is not a slice, an unfinished slice is not merged.
    let whole = d.join("whole");
    record_with(
        &config(&prompts, &whole, None),
        &FakeTeacher::new(5),
        &mut |_| {},
    )
    .expect("record");
    let e = err(&[whole], "m6");
    assert!(e.contains("not a slice"), "{e}");
    let mut partial = config(&prompts, &d.join("partial"), slice(0, 2));
    partial.limit = Some(7);
    partial.minutes = Some(0.0); // stops after its first shard
    record_with(&partial, &FakeTeacher::new(5), &mut |_| {}).expect("record");
    let e = err(&[d.join("partial"), two[1].clone()], "m7");
    assert!(e.contains("unfinished"), "{e}");
    // The output must be new.
    let e = err(&slices, "whole");
    assert!(e.contains("already holds"), "{e}");
    let e = err(&slices, "slice-0-of-3");
    assert!(e.contains("one of the slices"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_slice_resumes_and_refuses_another_slice() {
    let d = dir("resume");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let out = d.join("s");
    let mut cfg = config(&prompts, &out, slice(0, 2));
    cfg.minutes = Some(0.0);
    let s = record_with(&cfg, &FakeTeacher::new(5), &mut |_| {}).expect("first shard");
    assert_eq!(s.records, 2);
    cfg.minutes = None;
    let s = record_with(&cfg, &FakeTeacher::new(5), &mut |_| {}).expect("resume");
    // Grid shards 0 and 2 of [0-1] [2-3] [4-5] [6]: records 0, 1, 4, 5.
    assert_eq!((s.resumed_from, s.recorded_now, s.records), (2, 2, 4));
    let m = Manifest::read(&out).expect("read").expect("manifest");
    let files: Vec<&str> = m.shards.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(
        files,
        ["shard-00000.safetensors", "shard-00002.safetensors"]
    );
    assert!(m.complete);
    let e = record_with(
        &config(&prompts, &out, slice(1, 2)),
        &FakeTeacher::new(5),
        &mut |_| {},
    )
    .expect_err("other slice");
    assert!(e.to_string().contains("--shard differs"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}
