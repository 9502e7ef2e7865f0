//! Reliability on the real teacher: output directories that lost their manifest or that two
//! processes want at once, and training data that must not stop a run.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::common::*;

/// The manifest of a corpus as JSON, without the times that differ between any two runs.
fn manifest_without_times(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let obj = v.as_object_mut().expect("object");
    obj.remove("created");
    obj.remove("updated");
    v
}

fn shard_state(dir: &Path, file: &str) -> (Vec<u8>, SystemTime) {
    let path = dir.join(file);
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    (std::fs::read(&path).expect("shard"), modified)
}

#[test]
fn a_deleted_manifest_is_rebuilt_from_the_finished_shards() {
    let dir = temp_dir("recovery-manifest");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let args = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "--max-new-tokens",
            "8",
            "--shard-size",
            "2",
            "--parallel",
            "2",
        ];
        a.extend_from_slice(extra);
        record_args(&prompts, out, &a)
    };
    let whole = dir.join("whole");
    distill_ok(&args(&whole, &[]));

    let part = dir.join("part");
    distill_ok(&args(&part, &["--limit", "4"]));
    let before: Vec<_> = ["shard-00000.safetensors", "shard-00001.safetensors"]
        .iter()
        .map(|f| shard_state(&part, f))
        .collect();
    std::fs::remove_file(part.join("manifest.json")).expect("delete the manifest");
    let out = distill(&args(&part, &[]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("manifest.json was missing; rebuilt from 2 finished shards"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(2 this run, 4 from an earlier run)"),
        "{stdout}"
    );
    let after: Vec<_> = ["shard-00000.safetensors", "shard-00001.safetensors"]
        .iter()
        .map(|f| shard_state(&part, f))
        .collect();
    assert!(before == after, "finished shards were written again");
    assert_eq!(
        manifest_without_times(&part),
        manifest_without_times(&whole)
    );
    for i in 0..3 {
        let file = format!("shard-{i:05}.safetensors");
        assert_eq!(
            std::fs::read(part.join(&file)).expect("part"),
            std::fs::read(whole.join(&file)).expect("whole"),
            "{file}"
        );
    }
}

/// The pid in a directory's lock file, once there is one.
fn lock_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(distill::lock::LOCK_FILE)).ok()?;
    text.trim().parse().ok()
}

#[test]
fn a_second_process_on_the_same_out_dir_is_refused_naming_the_first() {
    let dir = temp_dir("recovery-lock");
    let prompts = write(&dir, "p.jsonl", &PROMPTS_EVERY_FORM.repeat(4));
    let out = dir.join("corpus");
    let args = record_args(
        &prompts,
        &out,
        &["--max-new-tokens", "64", "--shard-size", "1"],
    );
    // A record that runs for a while; a second one on its --out is refused while it does.
    let mut first = distill_cmd(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let clock = Instant::now();
    while lock_pid(&out) != Some(first.id()) {
        assert!(
            first.try_wait().expect("poll").is_none(),
            "the first record ended before it could be raced"
        );
        assert!(
            clock.elapsed() < Duration::from_secs(300),
            "no lock appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = distill_err(&args);
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    assert!(
        err.contains(&format!("'{}'", out.display()))
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    // The killed process's lock file does not block: the same command resumes (cut short
    // with --limit, which is not part of the corpus settings).
    let mut resume = args.clone();
    resume.extend(["--limit".to_string(), "1".to_string()]);
    let stdout = distill_ok(&resume);
    assert!(stdout.contains("in corpus"), "{stdout}");
    assert!(lock_pid(&out).is_some_and(|pid| pid != first.id()));

    // train and run refuse a directory this process holds, naming this pid.
    let me = format!("pid {}", std::process::id());
    let student = dir.join("student");
    let held = distill::lock::DirLock::acquire(&student).expect("lock");
    let train = [
        "train",
        "--corpus",
        &out.display().to_string(),
        "--out",
        &student.display().to_string(),
        "--quiet",
        "--preset",
        "small",
        "--steps",
        "1",
        "--batch",
        "1",
        "--seq-len",
        "32",
        "--eval-every",
        "0",
    ];
    let err = distill_err(&train);
    assert!(
        err.contains("in use by another distill process") && err.contains(&me),
        "{err}"
    );
    drop(held);
    distill_ok(&train);
    let run = dir.join("run");
    let held = distill::lock::DirLock::acquire(&run).expect("lock");
    let err = distill_err(&crate::pipeline::run_args(&dir, &run, 1));
    assert!(
        err.contains(&format!("'{}'", run.display())) && err.contains(&me),
        "{err}"
    );
    drop(held);
}

#[test]
fn batches_without_targets_are_skipped_and_counted() {
    let dir = temp_dir("reliability-empty-batches");
    // Long prompts, one-word answers: most 16-token windows lie inside a prompt.
    let long = "The committee met on a grey morning to read the long report aloud, page by page, \
        while the rain kept falling on the old roof of the hall. "
        .repeat(6);
    let records: String = ["Yes.", "No."]
        .iter()
        .map(|r| format!("{}\n", serde_json::json!({"prompt": long, "response": r})))
        .collect();
    let prompts = write(&dir, "p.jsonl", &records);
    let corpus = dir.join("corpus");
    distill_ok(&record_args(&prompts, &corpus, &["--mode", "score"]));
    let student = dir.join("student");
    let stdout = distill_ok(&[
        "train",
        "--corpus",
        &corpus.display().to_string(),
        "--out",
        &student.display().to_string(),
        "--quiet",
        "--preset",
        "small",
        "--steps",
        "3",
        "--batch",
        "1",
        "--seq-len",
        "16",
        "--eval-every",
        "0",
    ]);
    assert!(stdout.contains("3 steps"), "{stdout}");
    let steps = crate::train::metrics(&student, "train");
    assert_eq!(steps.len(), 3);
    let skipped: u64 = steps
        .iter()
        .map(|m| m["skipped_batches"].as_u64().expect("skipped_batches"))
        .sum();
    assert!(skipped > 0, "{steps:?}");
}
