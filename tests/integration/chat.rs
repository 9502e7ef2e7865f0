//! `distill chat` end to end: the real binary in a tmux terminal, the real teacher and a
//! real (briefly trained) candle student. Keys go in with `send-keys`, the screen comes
//! back with `capture-pane`; waits poll with generous timeouts and nothing is timed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;

/// Generous bound for anything the models do on a busy two-core machine.
const PATIENCE: Duration = Duration::from_secs(180);

/// One tmux server (own socket) running one session; killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `shell_cmd` in a detached `w`×`h` session.
    pub fn start(name: &str, shell_cmd: &str, w: u16, h: u16) -> Self {
        let t = Tmux {
            socket: format!("distill-test-{}-{name}", std::process::id()),
        };
        let (w, h) = (w.to_string(), h.to_string());
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            &w,
            "-y",
            &h,
            shell_cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    pub fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux (is it installed?)")
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "chat"];
        args.extend(keys);
        self.tmux(&args);
    }

    /// Type `text` literally.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "chat", "-l", text]);
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "chat"]).stdout)
            .into_owned()
    }

    pub fn display(&self, format: &str) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", "chat", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn resize(&self, w: u16, h: u16) {
        let (w, h) = (w.to_string(), h.to_string());
        self.tmux(&["resize-window", "-t", "chat", "-x", &w, "-y", &h]);
    }

    /// Poll the screen until `done` holds; panic with the screen after [`PATIENCE`].
    pub fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// The shell line that runs `distill chat ARGS`, then records its exit status and the
/// terminal's modes in `dir` (the pane stays open for the checks).
pub fn chat_command(dir: &Path, args: &[String]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut cmd = quote(env!("CARGO_BIN_EXE_distill"));
    for a in ["chat"]
        .into_iter()
        .map(String::from)
        .chain(args.iter().cloned())
    {
        cmd.push(' ');
        cmd.push_str(&quote(&a));
    }
    let d = |f: &str| quote(&dir.join(f).display().to_string());
    format!(
        "{cmd} 2>{}; echo $? >{}; stty -a >{}; sleep 120",
        d("stderr"),
        d("exit"),
        d("stty")
    )
}

/// Quit with Ctrl+C; check the exit status is 0 and the terminal is back to normal.
pub fn quit_and_check_restored(tmux: &Tmux, dir: &Path) {
    tmux.keys(&["C-c"]);
    let exit = dir.join("exit");
    let start = Instant::now();
    while !(exit.exists() && dir.join("stty").exists()) {
        assert!(
            start.elapsed() < PATIENCE,
            "distill chat did not exit on Ctrl+C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200)); // let stty finish writing
    let status = std::fs::read_to_string(&exit).expect("exit status");
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert_eq!(status.trim(), "0", "exit status; stderr:\n{stderr}");
    let stty = std::fs::read_to_string(dir.join("stty")).expect("stty -a");
    let flags: Vec<&str> = stty.split_whitespace().collect();
    for raw in ["-icanon", "-echo", "-isig"] {
        assert!(
            !flags.contains(&raw),
            "terminal left in raw mode ({raw}):\n{stty}"
        );
    }
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "alternate screen left on"
    );
    assert_eq!(
        tmux.display("#{mouse_any_flag}"),
        "0",
        "mouse capture left on"
    );
}

/// Left and right halves of a side-by-side screen, by display column.
pub fn halves(screen: &str, width: usize) -> (Vec<String>, Vec<String>) {
    screen
        .lines()
        .map(|l| {
            let chars: Vec<char> = l.chars().collect();
            let cut = chars.len().min(width / 2);
            (chars[..cut].iter().collect(), chars[cut..].iter().collect())
        })
        .unzip()
}

/// The figures line (`— TTFT … · N tok · …`) in a pane and its token count.
fn figures(pane: &[String]) -> Option<(String, usize)> {
    let line = pane.iter().find(|l| l.contains("— TTFT"))?;
    let tokens = line
        .split(" · ")
        .find_map(|part| part.trim().strip_suffix(" tok")?.parse().ok())?;
    Some((
        line.trim_matches(|c| c == '│' || c == ' ').to_string(),
        tokens,
    ))
}

/// A small student trained for a few steps on a tiny corpus of its own (one llama.cpp
/// thread: quick even on a busy machine, where the shared corpus is not).
fn trained_student(dir: &Path) -> PathBuf {
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/train.jsonl");
    let corpus = dir.join("corpus");
    let limits = ["--limit", "6", "--max-new-tokens", "16", "--top-k", "16"];
    distill_ok(&record_args(
        &prompts,
        &corpus,
        &[&limits[..], &["--threads", "1"]].concat(),
    ));
    let out = dir.join("student");
    let (corpus, student) = (corpus.display().to_string(), out.display().to_string());
    #[rustfmt::skip]
    let args = [
        "train", "--corpus", &corpus, "--out", &student, "--quiet", "--preset", "small",
        "--batch", "4", "--seq-len", "64", "--steps", "4", "--eval-every", "0", "--threads", "1",
    ];
    distill_ok(&args);
    out
}

/// Chat arguments for a quick greedy turn: `teacher` (its flags), `student`, transcripts.
pub fn chat_args_with(teacher: &[&str], student: &Path, transcripts: &Path) -> Vec<String> {
    let (student, transcripts) = (
        student.display().to_string(),
        transcripts.display().to_string(),
    );
    let rest = [
        "--student",
        &student,
        "--transcripts",
        &transcripts,
        "--max-tokens",
        "24",
        "--temperature",
        "0",
        "--threads",
        "1",
    ];
    teacher.iter().chain(&rest).map(|s| s.to_string()).collect()
}

fn chat_args(student: &Path, transcripts: &Path) -> Vec<String> {
    chat_args_with(
        &["--teacher", &teacher().display().to_string()],
        student,
        transcripts,
    )
}

#[test]
fn chat_streams_both_models_side_by_side_and_restores_the_terminal() {
    let dir = temp_dir("chat-tui");
    let student = trained_student(&dir);
    let saved = dir.join("transcripts");
    let tmux = Tmux::start(
        "both",
        &chat_command(&dir, &chat_args(&student, &saved)),
        160,
        48,
    );
    tmux.wait_for("both models to load", |s| s.matches("Ready.").count() == 2);
    tmux.type_text("Name three primary colors.");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("both answers and the speed-up", |s| {
        s.contains("speed-up ×")
    });
    let (teacher_pane, student_pane) = halves(&screen, 160);
    assert!(
        teacher_pane[0].contains("Teacher · SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{screen}"
    );
    assert!(student_pane[0].contains("Student · student"), "{screen}");
    for pane in [&teacher_pane, &student_pane] {
        assert!(
            pane.iter()
                .any(|l| l.contains("Name three primary colors.")),
            "{screen}"
        );
        let (line, tokens) = figures(pane).unwrap_or_else(|| panic!("figures:\n{screen}"));
        assert!(tokens > 0, "an answer of {tokens} tokens: {line}");
        assert!(line.contains("ms") && line.contains("tok/s"), "{line}");
    }
    let answer_row = teacher_pane
        .iter()
        .position(|l| l.contains("Teacher (llama.cpp)"))
        .and_then(|i| teacher_pane.get(i + 1))
        .expect("the teacher's answer");
    assert!(answer_row.chars().any(char::is_alphabetic), "{screen}");
    assert!(
        student_pane.iter().any(|l| l.contains("Student (candle)")),
        "{screen}"
    );
    assert!(
        screen.contains("tok/s · ×"),
        "decode and TTFT speed-ups:\n{screen}"
    );

    tmux.keys(&["C-s"]);
    tmux.wait_for("the transcript to be saved", |s| s.contains("Saved "));
    let jsonl = std::fs::read_dir(&saved)
        .expect("transcripts dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a .jsonl transcript");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&jsonl)
        .expect("read transcript")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    let answers = lines[1]["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 2);
    assert!(
        answers
            .iter()
            .all(|a| a["tok_s"].as_f64().is_some_and(|r| r > 0.0))
    );
    assert!(lines[1]["speedup"]["decode"].as_f64().is_some());
    assert!(jsonl.with_extension("md").exists());

    // Race mode: both answers come from the one engine thread, interleaved.
    tmux.keys(&["F3"]);
    tmux.wait_for("race mode", |s| s.contains("Mode race"));
    tmux.type_text("Name a fruit.");
    tmux.keys(&["Enter"]);
    // The figures line under the new prompt, in each pane.
    let race_figures = |pane: &[String]| {
        let asked = pane.iter().position(|l| l.contains("Name a fruit."))?;
        figures(&pane[asked..])
    };
    let screen = tmux.wait_for("both race answers", |s| {
        let (t, st) = halves(s, 160);
        race_figures(&t).is_some() && race_figures(&st).is_some()
    });
    let (t, st) = halves(&screen, 160);
    for pane in [t, st] {
        let tokens = race_figures(&pane).map(|f| f.1);
        assert!(tokens.is_some_and(|n| n > 0), "race answer:\n{screen}");
    }

    tmux.resize(20, 5);
    let tiny = tmux.wait_for("the 20x5 redraw", |s| {
        s.lines().count() <= 5 && s.lines().all(|l| l.chars().count() <= 20)
    });
    assert!(tiny.contains('┌'), "still drawing at 20x5:\n{tiny}");
    tmux.resize(60, 30);
    tmux.wait_for("stacked panes", |s| {
        let rows: Vec<&str> = s.lines().collect();
        let t = rows.iter().position(|l| l.starts_with("┌ Teacher"));
        let st = rows.iter().position(|l| l.starts_with("┌ Student"));
        matches!((t, st), (Some(t), Some(st)) if st > t)
    });
    tmux.resize(160, 48);
    tmux.wait_for("side by side again", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains("Teacher ·") && l.contains("Student ·"))
    });
    assert!(
        !dir.join("exit").exists(),
        "distill chat exited during the resizes"
    );
    quit_and_check_restored(&tmux, &dir);
}

#[test]
fn a_student_that_fails_to_load_shows_its_error_while_the_teacher_answers() {
    let dir = temp_dir("chat-broken-student");
    let student = dir.join("broken-student");
    std::fs::create_dir_all(&student).expect("student dir");
    write(&student, "config.json", "{ this is not json");
    let args = chat_args(&student, &dir.join("transcripts"));
    let tmux = Tmux::start("broken", &chat_command(&dir, &args), 160, 48);
    let screen = tmux.wait_for("the load error", |s| s.contains("Could not load"));
    let (_, student_pane) = halves(&screen, 160);
    assert!(
        student_pane
            .iter()
            .any(|l| l.contains("✗ Could not load broken-student")),
        "{screen}"
    );
    assert!(
        screen.contains("config.json"),
        "the error names the file:\n{screen}"
    );
    tmux.wait_for("the teacher to load", |s| s.contains("Ready."));
    tmux.type_text("Say hello.");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the teacher's answer", |s| {
        figures(&halves(s, 160).0).is_some()
    });
    let (teacher_pane, student_pane) = halves(&screen, 160);
    assert!(
        figures(&teacher_pane).is_some_and(|(_, n)| n > 0),
        "{screen}"
    );
    assert!(
        student_pane.iter().any(|l| l.contains("Could not load")),
        "{screen}"
    );
    assert!(
        student_pane.iter().any(|l| l.contains("skipped")),
        "{screen}"
    );
    quit_and_check_restored(&tmux, &dir);
}

#[test]
fn chat_without_a_terminal_says_it_needs_one() {
    let dir = temp_dir("chat-no-terminal");
    let logs = dir.display().to_string();
    let teacher = teacher().display().to_string();
    let err = distill_err(&["chat", "--teacher", &teacher, "--transcripts", &logs]);
    assert!(err.contains("needs an interactive terminal"), "{err}");
    let missing = ["chat", "--teacher", "missing.gguf", "--transcripts", &logs];
    let err = distill_err(&missing);
    assert!(err.contains("no model to chat with"), "{err}");
}
