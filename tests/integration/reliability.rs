//! Reliability on the real teacher: output directories that lost their manifest.

use std::path::Path;
use std::time::SystemTime;

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
