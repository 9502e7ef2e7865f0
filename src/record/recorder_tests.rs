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
        answers: 1,
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

/// The prompt tokens of every record of the corpus in `out`, in record order.
fn prompts_of(out: &Path) -> Vec<Vec<u32>> {
    let m = Manifest::read(out).expect("read").expect("manifest");
    let mut all = Vec::new();
    for info in &m.shards {
        let shard = Shard::read(&out.join(&info.file)).expect("shard");
        for i in 0..shard.sequences() {
            let r = shard.sequence(i);
            let first_target = shard.target_mask[r.clone()]
                .iter()
                .position(|&t| t == 1)
                .expect("a target");
            all.push(shard.tokens[r.start..=r.start + first_target].to_vec());
        }
    }
    all
}

#[test]
fn several_answers_per_prompt_come_pass_after_pass_and_extend_a_corpus_of_fewer() {
    let d = dir("answers");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let teacher = FakeTeacher::new(5);
    let sampled = |out: &Path, answers: usize| {
        let mut cfg = config(&prompts, out, Mode::Generate);
        cfg.settings.temperature = 1.0;
        cfg.answers = answers;
        cfg
    };
    let once = d.join("once");
    record_with(&sampled(&once, 1), &teacher, &mut |_| {}).expect("one answer");
    let first_pass = prompts_of(&once);
    // Resumed with three answers per prompt: the first pass stays, two more follow it.
    let s = record_with(&sampled(&once, 3), &teacher, &mut |_| {}).expect("three answers");
    assert_eq!((s.records, s.resumed_from), (15, 5));
    let m = Manifest::read(&once).expect("read").expect("manifest");
    assert_eq!(
        (m.planned_records, m.pass_records, m.complete),
        (15, Some(5), true)
    );
    let all = prompts_of(&once);
    assert_eq!(all[..5], first_pass[..]);
    for pass in all.chunks(5) {
        assert_eq!(
            pass,
            &first_pass[..],
            "every pass answers the prompts in order"
        );
    }
    // A corpus past its first pass cannot be read with another number of prompts per pass.
    let mut fewer = sampled(&once, 3);
    fewer.limit = Some(4);
    let err = record_with(&fewer, &teacher, &mut |_| {}).expect_err("other pass");
    assert!(err.to_string().contains("--limit"), "{err}");
    assert_eq!(prompts_of(&once), all, "nothing lost");
}

#[test]
fn each_answer_of_a_prompt_samples_from_its_own_stream() {
    let teacher = FakeTeacher::new(5);
    let d = dir("answer-streams");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let sources = vec![Source::read(&prompts, false).expect("source")];
    let s = config(&prompts, &d.join("c"), Mode::Generate).settings;
    let jobs = build_jobs(&teacher, &sources, &s, &mut 0).expect("jobs");
    let first_draws = |jobs: &[crate::teacher::Job]| -> Vec<u64> {
        jobs.iter().map(|j| j.rng.clone().next_u64()).collect()
    };
    let one = answer_passes(jobs.clone(), 3, 1, s.seed);
    let three = answer_passes(jobs, 3, 3, s.seed);
    assert_eq!((one.len(), three.len()), (3, 9));
    assert_eq!(first_draws(&three)[..3], first_draws(&one)[..]);
    let mut draws = first_draws(&three);
    draws.sort_unstable();
    draws.dedup();
    assert_eq!(draws.len(), 9, "nine answers, nine streams");
    assert!(
        three
            .iter()
            .zip(three.iter().skip(3))
            .all(|(a, b)| a.prompt == b.prompt)
    );
}

#[test]
fn several_answers_need_sampling() {
    let d = dir("answers-refused");
    let prompts = d.join("p.jsonl");
    std::fs::write(&prompts, PROMPTS).expect("write");
    let teacher = FakeTeacher::new(5);
    let mut greedy = config(&prompts, &d.join("g"), Mode::Generate);
    greedy.answers = 2;
    let err = record_with(&greedy, &teacher, &mut |_| {}).expect_err("greedy");
    assert!(err.to_string().contains("--temperature 0"), "{err}");
    let mut scored = config(&prompts, &d.join("s"), Mode::Score);
    scored.answers = 2;
    let err = record_with(&scored, &teacher, &mut |_| {}).expect_err("score");
    assert!(err.to_string().contains("--mode score"), "{err}");
    assert!(
        !d.join("g").exists() && !d.join("s").exists(),
        "nothing written"
    );
}
