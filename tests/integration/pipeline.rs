//! `distill run` end to end on the real teacher with a tiny budget: without a terminal, after
//! SIGKILLs mid-stage, with bad inputs, and the dashboard in tmux.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;

/// Prompts for a tiny run: 24 training prompts (two shards of 16 and 8), 2 held-out ones.
fn prompt_files(dir: &Path) -> (PathBuf, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str, n: usize| -> String {
        let text = std::fs::read_to_string(repo.join("prompts").join(f)).expect("prompts");
        text.lines().take(n).map(|l| format!("{l}\n")).collect()
    };
    (
        write(dir, "train.jsonl", &read("train.jsonl", 24)),
        write(dir, "valid.jsonl", &read("valid.jsonl", 2)),
    )
}

/// `distill run` arguments for a run of a minute or two: short answers, a 2-block student,
/// small windows, quality-only eval, and a budget so large that no time cap cuts a stage
/// short however busy the machine is (the step count is fixed).
pub fn run_args(dir: &Path, out: &Path, steps: usize) -> Vec<String> {
    let (train, valid) = prompt_files(dir);
    [
        "run",
        "--teacher",
        &teacher().display().to_string(),
        "--prompts",
        &train.display().to_string(),
        "--valid-prompts",
        &valid.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--minutes",
        "600",
        "--max-new-tokens",
        "12",
        "--layers",
        "0,29",
        "--train-steps",
        &steps.to_string(),
        "--batch",
        "2",
        "--seq-len",
        "64",
        "--no-speed",
        "--threads",
        "2",
        "--answers-per-prompt",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Poll until `ready` or the child exits (safety limit 10 minutes); then SIGKILL it.
fn kill_when(mut child: Child, ready: impl Fn() -> bool) {
    let clock = Instant::now();
    while clock.elapsed() < Duration::from_secs(600) {
        if ready() || child.try_wait().expect("poll").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

/// `train` lines of a student's metrics.jsonl.
fn train_steps(student: &Path) -> Vec<u64> {
    std::fs::read_to_string(student.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "train")
        .filter_map(|v| v["step"].as_u64())
        .collect()
}

#[test]
fn run_without_a_terminal_prints_progress_and_a_summary_and_resumes_as_done() {
    let dir = temp_dir("pipeline-lines");
    let out = dir.join("run");
    let mut args = run_args(&dir, &out, 3);
    // Two answers per training prompt: the teacher answers all 24, then all 24 again.
    *args.last_mut().expect("args") = "2".into();
    let result = distill(&args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr),
    );
    assert!(result.status.success(), "{stderr}");
    for line in [
        "[1/4] record valid",
        "[2/4] record train",
        "record train: 12/48 records",
        "[3/4] train",
        "train: step 3/3",
        "train: valid at step 3",
        "[4/4] eval",
        "eval: scoring student",
    ] {
        assert!(stderr.contains(line), "missing '{line}' in:\n{stderr}");
    }
    for line in [
        "complete in",
        "record-valid  2 records",
        "record-train  48 records",
        "train         3 steps, ",
        "valid         ce ",
        "KLD",
        "report        ",
        "chat          distill chat --teacher ",
    ] {
        assert!(stdout.contains(line), "missing '{line}' in:\n{stdout}");
    }

    let state = json(&out.join("run.json"));
    for s in state["stages"].as_array().expect("stages") {
        assert_eq!(s["status"], "done", "{state}");
    }
    assert_eq!(state["train_steps"], 3);
    let train = json(&out.join("train/manifest.json"));
    assert_eq!(train["complete"], true);
    assert_eq!(
        (&train["planned_records"], &train["pass_records"]),
        (&48.into(), &24.into())
    );
    assert_eq!(json(&out.join("valid/manifest.json"))["planned_records"], 2);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "train_state.json",
    ] {
        assert!(out.join("student").join(f).is_file(), "student/{f}");
    }
    assert_eq!(json(&out.join("student/train_state.json"))["step"], 3);
    assert_eq!(train_steps(&out.join("student")), [1, 2, 3]);
    let report = json(&out.join("eval/report.json"));
    assert_eq!(report["models"][1]["role"], "student");
    let kld = report["models"][1]["quality"]["kld"]["mean"]
        .as_f64()
        .expect("kld");
    assert!(kld.is_finite() && kld > 0.0, "{kld}");
    assert!(out.join("eval/report.md").is_file());

    // A finished run skips every stage and prints the same summary.
    let again = distill(&args);
    assert!(again.status.success());
    let again_err = String::from_utf8_lossy(&again.stderr);
    for stage in ["record valid", "record train", "train", "eval"] {
        assert!(
            again_err.contains(&format!("{stage}: done earlier")),
            "{again_err}"
        );
    }
    assert_eq!(String::from_utf8_lossy(&again.stdout), stdout);

    // The same --out with other settings is refused, saying what differs and what to do.
    let mut other = args.clone();
    let at = other.iter().position(|a| a == "--minutes").expect("flag");
    other[at + 1] = "5".into();
    let err = distill_err(&other);
    assert!(err.contains("--minutes was '600', now '5'"), "{err}");
    assert!(err.contains("Rerun with the original options"), "{err}");
}

#[test]
fn a_planned_run_with_an_on_policy_share_trains_its_last_steps_on_the_students_answers() {
    let dir = temp_dir("pipeline-on-policy");
    let out = dir.join("run");
    // No --train-steps: the steps are planned after the timed probe steps. The 600-minute
    // budget leaves only the epoch cap, which the on-policy share lifts: 3 passes over
    // the recorded windows, then as many on-policy steps.
    let mut args = run_args(&dir, &out, 0);
    let at = args
        .iter()
        .position(|a| a == "--train-steps")
        .expect("flag");
    args.drain(at..at + 2);
    args.extend(["--on-policy".to_string(), "0.5".to_string()]);
    let result = distill(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");

    let state = json(&out.join("run.json"));
    assert_eq!(state["settings"]["on_policy"], 0.5, "{state}");
    let steps = state["train_steps"].as_u64().expect("planned steps");
    let windows = distill::train::data::load(&out.join("train"), 0.0, 42)
        .expect("corpus")
        .train
        .windows(64) as u64;
    let off_policy_cap = (windows * 3).div_ceil(2);
    assert!(
        steps > off_policy_cap && steps <= off_policy_cap * 2 + 1,
        "{steps} steps for {windows} windows"
    );
    // The phase began at its switch in the planned run, not inside the 3 probe steps.
    let switch = distill::train::on_policy::switch_step(steps as usize, 0.5).expect("switch");
    assert!(switch > 3, "switch at {switch}");
    assert!(
        stderr.contains("train: on-policy: the student wrote "),
        "{stderr}"
    );
    let student = out.join("student");
    let trained = json(&student.join("train_state.json"));
    assert_eq!(trained["on_policy"], true, "{trained}");
    assert_eq!(trained["step"].as_u64(), Some(steps));
    let shard = distill::record::Shard::read(&student.join("on_policy.safetensors"))
        .expect("on-policy shard");
    assert!(shard.sequences() > 0 && shard.targets() > 0);
    assert_eq!(
        train_steps(&student),
        (1..=steps).collect::<Vec<u64>>(),
        "one uninterrupted log"
    );
    assert!(String::from_utf8_lossy(&result.stdout).contains("complete in"));
}

#[test]
fn a_run_killed_during_record_and_during_training_resumes_and_completes() {
    let dir = temp_dir("pipeline-resume");
    let out = dir.join("run");
    // 27 steps: the first checkpoint (every 25 steps) comes before the end.
    let args = run_args(&dir, &out, 27);
    let train_manifest = out.join("train/manifest.json");

    // Kill once the first training shard is committed, while the second is decoded.
    let child = distill_cmd(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    kill_when(child, || {
        read_json(&train_manifest)
            .is_some_and(|m| m["shards"].as_array().is_some_and(|s| !s.is_empty()))
    });
    let m = json(&train_manifest);
    assert_eq!(m["complete"], false, "the kill came too late");
    let first_shard = std::fs::read(out.join("train/shard-00000.safetensors")).expect("shard");
    let state = json(&out.join("run.json"));
    assert_eq!(state["stages"][0]["status"], "done");
    assert_eq!(state["stages"][1]["status"], "started");

    // Kill again after the first training checkpoint (step 25).
    let student = out.join("student");
    let child = distill_cmd(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    kill_when(child, || {
        read_json(&student.join("train_state.json")).is_some_and(|s| s["step"].as_u64() >= Some(1))
    });
    let saved = json(&student.join("train_state.json"))["step"]
        .as_u64()
        .expect("step");
    assert_eq!(saved, 25, "the kill came too late");

    let result = distill(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{stderr}");
    assert!(stderr.contains("record valid: done earlier"), "{stderr}");
    assert!(stderr.contains("record train: done earlier"), "{stderr}");
    assert!(stderr.contains("resuming at step 25 of 27"), "{stderr}");
    assert!(String::from_utf8_lossy(&result.stdout).contains("complete in"));

    // The corpus kept its first shard byte for byte and holds every record once; the
    // student's log reads as one uninterrupted run.
    let m = json(&train_manifest);
    assert_eq!(m["complete"], true);
    // 24 records in shards of 6: a small set is cut into four, so it resumes part-way.
    let shards = m["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 4, "{m}");
    assert_eq!(shards[3]["last_record"], 23);
    assert_eq!(
        std::fs::read(out.join("train/shard-00000.safetensors")).expect("shard"),
        first_shard
    );
    assert_eq!(train_steps(&student), (1..=27).collect::<Vec<u64>>());
    assert_eq!(json(&student.join("train_state.json"))["step"], 27);
    let state = json(&out.join("run.json"));
    assert!(
        state["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .all(|s| s["status"] == "done"),
        "{state}"
    );
}

#[test]
fn bad_inputs_are_refused_before_anything_is_written() {
    let dir = temp_dir("pipeline-bad");
    let out = dir.join("run");
    let mut args = run_args(&dir, &out, 2);
    let at = args.iter().position(|a| a == "--teacher").expect("flag");
    args[at + 1] = dir.join("missing.gguf").display().to_string();
    let err = distill_err(&args);
    assert!(err.contains("teacher GGUF"), "{err}");
    assert!(err.contains("missing.gguf' not found"), "{err}");
    assert!(err.contains("scripts/setup.sh"), "{err}");
    assert!(!out.exists(), "nothing is written for a bad input");

    let mut args = run_args(&dir, &out, 2);
    let at = args.iter().position(|a| a == "--layers").expect("flag");
    args[at + 1] = "0,30".into();
    let err = distill_err(&args);
    assert!(err.contains("--layers"), "{err}");
    assert!(
        err.contains("'30'") && err.contains("blocks 0..=29"),
        "{err}"
    );

    let mut args = run_args(&dir, &out, 2);
    args.extend(["--split".into(), "60,50,10".into()]);
    let err = distill_err(&args);
    assert!(err.contains("--split"), "{err}");
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("run tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll the pane until `want` shows (safety limit 10 minutes); the last screen.
fn wait_for_screen(session: &str, want: &[&str]) -> String {
    let clock = Instant::now();
    let mut screen = String::new();
    while clock.elapsed() < Duration::from_secs(600) {
        screen = tmux(&["capture-pane", "-p", "-t", session]);
        if want.iter().all(|w| screen.contains(w)) {
            return screen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("never saw {want:?}; last screen:\n{screen}");
}

#[test]
fn the_dashboard_shows_the_stages_and_reaches_the_final_screen() {
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "tmux is needed for the dashboard test (scripts/setup.sh installs it)"
    );
    let dir = temp_dir("pipeline-tmux");
    let out = dir.join("run");
    let args = run_args(&dir, &out, 2);
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_distill").to_string())
        .chain(args)
        .map(|a| format!("'{a}'"))
        .collect();
    let session = format!("distill-run-test-{}", std::process::id());
    let script = format!("{}; echo \"exit=$?\"; sleep 600", quoted.join(" "));
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "140",
        "-y",
        "40",
        &script,
    ]);
    let early = wait_for_screen(&session, &["stages", "record valid", "train", "eval"]);
    assert!(early.contains("distill run │"), "{early}");
    let done = wait_for_screen(&session, &["Press c to chat"]);
    std::fs::write(dir.join("final-screen.txt"), &done).ok();
    for want in [
        "✓ record valid",
        "✓ record train",
        "✓ train",
        "✓ eval",
        "done: summary",
        "KLD",
        "▶ chat: press c",
        "c chat with teacher and student",
    ] {
        assert!(done.contains(want), "missing '{want}' in:\n{done}");
    }
    // c opens the side-by-side chat on the run's teacher and student; Ctrl+C leaves it.
    tmux(&["send-keys", "-t", &session, "c"]);
    let chat = wait_for_screen(&session, &["Teacher ·", "Student ·", "F1 help"]);
    std::fs::write(dir.join("chat-screen.txt"), &chat).ok();
    tmux(&["send-keys", "-t", &session, "C-c"]);
    wait_for_screen(&session, &["exit=0"]);
    tmux(&["kill-session", "-t", &session]);
}
