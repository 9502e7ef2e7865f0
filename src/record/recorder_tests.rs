//! Fast tests of the recorder's bookkeeping with the fake teacher: shards, stop and resume,
//! raw-text windows, refusals. (The same flows run with llama.cpp in
//! tests/integration/record.rs.)

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::record::{Mode, Progress};
use crate::teacher::fake::FakeTeacher;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distill-rec-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn config(prompts: &Path, out: &Path, mode: Mode) -> RecordConfig {
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
