//! Fast tests of the recorder's bookkeeping with the fake teacher: shards, stop and resume,
//! raw-text windows, refusals. (The same flows run with llama.cpp in
//! tests/integration/record.rs.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::record::{Mode, Progress};
use crate::teacher::fake::FakeTeacher;

/// A fresh temp directory for one test.
pub(crate) fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distill-rec-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("dir");
    d
}

/// A fake-teacher recording of `prompts` into `out`: k 4, greedy, shards of 2.
pub(crate) fn config(prompts: &Path, out: &Path, mode: Mode) -> RecordConfig {
    RecordConfig {
        teacher: "fake.gguf".into(),
        prompts: vec![prompts.to_path_buf()],
        out: out.to_path_buf(),
        settings: RecordSettings {
            mode,
            k: 4,
            temperature: 0.0,
            top_p: 1.0,
            seed: 1,
            max_new_tokens: 8,
            system: None,
            ctx: 64,
            parallel: 2,
            shard_size: 2,
            skip_bad: false,
            threads: 1,
            hidden: false,
        },
        limit: None,
        minutes: None,
        stop: None,
        slice: None,
    }
}

fn shard_bytes(out: &Path) -> Vec<Vec<u8>> {
    let m = Manifest::read(out).expect("read").expect("manifest");
    m.shards
        .iter()
        .map(|s| std::fs::read(out.join(&s.file)).expect("shard"))
        .collect()
}

const PROMPTS: &str = "{\"prompt\": \"one\"}\n{\"prompt\": \"two\"}\n{\"prompt\": \"three\"}\n\
    {\"prompt\": \"four\"}\n{\"prompt\": \"five\"}\n";

#[test]
fn a_stopped_recording_resumes_to_the_same_bytes() {
    let d = dir("resume");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let teacher = FakeTeacher::new(5);
    let whole = d.join("whole");
    let s = record_with(
        &config(&prompts, &whole, Mode::Generate),
        &teacher,
        &mut |_| {},
    )
    .expect("record");
    assert_eq!((s.records, shard_bytes(&whole).len()), (5, 3));
    // Stop as the second shard starts; then run the same command again.
    let part = d.join("part");
    let mut cfg = config(&prompts, &part, Mode::Generate);
    let flag = Arc::new(AtomicBool::new(false));
    cfg.stop = Some(Arc::clone(&flag));
    let stopped = record_with(&cfg, &teacher, &mut |p| {
        if matches!(p, Progress::Shard { .. }) {
            flag.store(true, Ordering::Relaxed);
        }
    });
    assert!(matches!(stopped, Err(Error::Stopped)), "{stopped:?}");
    assert_eq!(shard_bytes(&part).len(), 1);
    cfg.stop = None;
    let s = record_with(&cfg, &teacher, &mut |_| {}).expect("resume");
    assert_eq!((s.resumed_from, s.recorded_now), (2, 3));
    assert_eq!(shard_bytes(&part), shard_bytes(&whole));
    // Other settings are refused, naming the difference.
    let mut other = config(&prompts, &part, Mode::Generate);
    other.settings.k = 8;
    let err = record_with(&other, &teacher, &mut |_| {}).expect_err("other k");
    assert!(err.to_string().contains("settings differ"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn raw_text_is_cut_into_context_windows_that_start_with_bos() {
    let d = dir("text");
    let text = d.join("book.txt");
    std::fs::write(&text, "x".repeat(100)).expect("write");
    let out = d.join("corpus");
    let s = record_with(
        &config(&text, &out, Mode::Score),
        &FakeTeacher::new(5),
        &mut |_| {},
    )
    .expect("record");
    // 100 bytes in windows of 63 after BOS: 2 windows, every byte a target.
    assert_eq!((s.records, s.targets), (2, 100));
    let m = Manifest::read(&out).expect("read").expect("manifest");
    let shard = Shard::read(&out.join(&m.shards[0].file)).expect("shard");
    assert_eq!(shard.tokens[0], crate::teacher::fake::BOS);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_lost_manifest_is_rebuilt_from_the_stamped_shards() {
    let d = dir("rebuild");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let teacher = FakeTeacher::new(5);
    let whole = d.join("whole");
    record_with(
        &config(&prompts, &whole, Mode::Generate),
        &teacher,
        &mut |_| {},
    )
    .expect("record");
    let part = d.join("part");
    let mut cfg = config(&prompts, &part, Mode::Generate);
    cfg.limit = Some(4);
    record_with(&cfg, &teacher, &mut |_| {}).expect("first four");
    let before = shard_bytes(&part);
    std::fs::remove_file(part.join("manifest.json")).expect("lose the manifest");
    cfg.limit = None;
    let mut notices = Vec::new();
    let s = record_with(&cfg, &teacher, &mut |p| {
        if let Progress::Notice(line) = p {
            notices.push(line);
        }
    })
    .expect("resume without a manifest");
    assert_eq!(
        notices,
        ["manifest.json was missing; rebuilt from 2 finished shards"]
    );
    assert_eq!((s.resumed_from, s.recorded_now), (4, 1));
    assert_eq!(shard_bytes(&part)[..2], before[..]);
    assert_eq!(shard_bytes(&part), shard_bytes(&whole));
    let (a, b) = (
        Manifest::read(&whole).expect("a").expect("a"),
        Manifest::read(&part).expect("b").expect("b"),
    );
    assert_eq!(
        (a.shards, a.totals, a.complete),
        (b.shards, b.totals, b.complete)
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn shards_that_cannot_prove_themselves_are_refused_and_kept() {
    let d = dir("unproven");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let teacher = FakeTeacher::new(5);
    let out = d.join("corpus");
    let cfg = config(&prompts, &out, Mode::Generate);
    record_with(&cfg, &teacher, &mut |_| {}).expect("record");
    std::fs::remove_file(out.join("manifest.json")).expect("lose the manifest");
    let second = out.join("shard-00001.safetensors");
    let stamped = std::fs::read(&second).expect("read");
    let refused = |cfg: &RecordConfig| {
        let err = record_with(cfg, &teacher, &mut |_| {}).expect_err("refused");
        let first = out.join("shard-00000.safetensors");
        assert!(first.exists() && !out.join("manifest.json").exists());
        err.to_string()
    };
    // Other settings than the shards were recorded with.
    let mut other = config(&prompts, &out, Mode::Generate);
    other.settings.k = 8;
    let err = refused(&other);
    assert!(
        err.contains("shard-00000.safetensors") && err.contains("--top-k"),
        "{err}"
    );
    // A shard as older versions wrote it: no stamp.
    let shard = Shard::read(&second).expect("shard");
    std::fs::write(
        &second,
        shard.to_bytes(teacher.info().n_vocab).expect("bytes"),
    )
    .expect("old");
    let err = refused(&cfg);
    assert!(
        err.contains("shard-00001.safetensors")
            && err.contains("no origin stamp")
            && err.contains("restore")
            && err.contains("nothing was deleted"),
        "{err}"
    );
    // Damaged data.
    let mut damaged = stamped.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    std::fs::write(&second, &damaged).expect("damage");
    assert!(refused(&cfg).contains("damaged"));
    // A gap: a missing shard in the middle.
    std::fs::remove_file(&second).expect("remove");
    let err = refused(&cfg);
    assert!(err.contains("shard-00002.safetensors"), "{err}");
    assert!(out.join("shard-00002.safetensors").exists());
    // Intact again: rebuilt, nothing recorded anew.
    std::fs::write(&second, &stamped).expect("restore");
    let s = record_with(&cfg, &teacher, &mut |_| {}).expect("rebuilt");
    assert_eq!((s.resumed_from, s.recorded_now), (5, 0));
    std::fs::remove_dir_all(&d).ok();
}
