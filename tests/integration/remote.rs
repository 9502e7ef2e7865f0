//! A real llama-server (built by scripts/build-llama-server.sh from the pinned llama.cpp
//! sources) serving the default teacher on 127.0.0.1: `distill record --teacher URL` against
//! the same GGUF in-process, a server killed mid-run and a rerun that resumes, a request the
//! server refuses, a tokenizer that is not the server's, and `distill chat` with the server's
//! teacher beside a local student.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use distill::record::Manifest;
use distill::teacher::RemoteInfo;

use crate::chat::{Tmux, chat_args_with, chat_command, halves, quit_and_check_restored};
use crate::common::*;

/// The llama-server binary: `LLAMA_SERVER`, or the one scripts/build-llama-server.sh builds
/// (once; it is cached under ~/.cache/distill and setup.sh builds it first).
fn server_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("LLAMA_SERVER") {
            return PathBuf::from(p);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-llama-server.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/build-llama-server.sh");
        assert!(out.status.success(), "scripts/build-llama-server.sh failed");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// A llama-server child process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Serve the default teacher with `slots` slots of `ctx` tokens each on `port` (0: a free
    /// one), and wait until it answers /health.
    fn start(port: u16, slots: usize, ctx: usize) -> Self {
        let port = if port == 0 {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        } else {
            port
        };
        let child = Command::new(server_bin())
            .args(["-m", &teacher().display().to_string()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", &(slots * ctx).to_string(), "-np", &slots.to_string()])
            .args(["-t", "2", "--no-warmup", "--log-disable"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start llama-server");
        let server = Self { child, port };
        let t0 = Instant::now();
        while !server.healthy() {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "llama-server did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET /health answers 200 (the model is loaded).
    fn healthy(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let mut reply = String::new();
        s.write_all(req.as_bytes()).is_ok()
            && s.read_to_string(&mut reply).is_ok()
            && reply.starts_with("HTTP/1.1 200")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Greedy, so both routes write the same tokens and their distributions can be compared.
const SETTINGS: &[&str] = &[
    "--mode",
    "generate",
    "--temperature",
    "0",
    "--max-new-tokens",
    "32",
    "--top-k",
    "8",
    "--ctx",
    "512",
    "--shard-size",
    "2",
    "--parallel",
    "2",
    "--threads",
    "2",
];

fn remote_args(url: &str, prompts: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = record_args(prompts, out, SETTINGS);
    args[2] = url.to_string();
    args.extend(
        ["--tokenizer", &teacher().display().to_string()]
            .iter()
            .chain(extra)
            .map(|s| s.to_string()),
    );
    args
}

/// How two corpora of the same prompts agree where both reached the same tokens: the
/// positions compared, the share with the same top-1, and the mean |dlogprob| on shared ids.
pub fn agreement(a: &[Seq], b: &[Seq]) -> (usize, f64, f64) {
    assert_eq!(a.len(), b.len(), "the same sequences");
    let (mut positions, mut same_top1, mut shared, mut delta) = (0usize, 0usize, 0usize, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (ta, tb) = (&x.tokens, &y.tokens);
        let n_prompt = ta.len() - x.ids.len();
        assert_eq!(ta[..n_prompt], tb[..n_prompt], "the same prompt tokens");
        let agree = ta.iter().zip(tb).take_while(|(x, y)| x == y).count();
        for i in 0..x.ids.len().min(y.ids.len()) {
            if n_prompt + i > agree {
                break;
            }
            positions += 1;
            same_top1 += usize::from(x.ids[i][0] == y.ids[i][0]);
            for (id, lp) in x.ids[i].iter().zip(&x.logprobs[i]) {
                if let Some(j) = y.ids[i].iter().position(|j| j == id) {
                    shared += 1;
                    delta += f64::from((lp - y.logprobs[i][j]).abs());
                }
            }
        }
    }
    let top1 = same_top1 as f64 / positions.max(1) as f64;
    (positions, top1, delta / shared.max(1) as f64)
}

/// A corpus's manifest and the server it names.
pub fn served_by(corpus: &Path) -> (Manifest, RemoteInfo) {
    let m = Manifest::read(corpus).expect("readable").expect("manifest");
    let info = *m
        .teacher
        .remote
        .clone()
        .expect("the manifest names the server");
    (m, info)
}

/// Check that the corpora `local` and `remote` agree (see [`agreement`]): at least
/// `min_positions` compared, same top-1 on `min_top1` of them, mean |dlogprob| under
/// `max_delta`; the figures are printed under `label`.
pub fn routes_agree(label: &str, local: &Path, remote: &Path, bounds: (usize, f64, f64)) {
    let (min_positions, min_top1, max_delta) = bounds;
    let (positions, top1, delta) = agreement(&corpus_sequences(local), &corpus_sequences(remote));
    eprintln!(
        "{label} vs in-process: {positions} positions, same top-1 {:.2}%, mean |dlogprob| {delta:.5}",
        top1 * 100.0
    );
    assert!(positions >= min_positions, "{positions} positions compared");
    assert!(top1 >= min_top1, "same top-1 on {:.2}%", top1 * 100.0);
    assert!(delta < max_delta, "mean |dlogprob| {delta}");
}

#[test]
fn a_corpus_through_llama_server_agrees_with_the_in_process_teacher() {
    let dir = temp_dir("remote-agree");
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/valid.jsonl");
    let limit = ["--limit", "8"];
    let local = dir.join("local");
    let args: Vec<&str> = SETTINGS.iter().chain(&limit).copied().collect();
    distill_ok(&record_args(&prompts, &local, &args));
    let server = Server::start(0, 2, 512);
    let remote = dir.join("remote");
    let said = distill_ok(&remote_args(&server.url(), &prompts, &remote, &limit));
    assert!(
        said.contains("tok/s decode and"),
        "the server's own speed: {said}"
    );

    let (m, info) = served_by(&remote);
    assert_eq!(info.url, server.url());
    let local_m = Manifest::read(&local).expect("readable").expect("manifest");
    assert_eq!(
        m.teacher.tokenizer_fingerprint, local_m.teacher.tokenizer_fingerprint,
        "one tokenizer on both routes"
    );
    routes_agree("llama-server", &local, &remote, (100, 0.99, 0.05));
}

#[test]
fn a_killed_server_is_named_and_a_rerun_resumes() {
    let dir = temp_dir("remote-kill");
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/train.jsonl");
    let limit = ["--limit", "16"];
    let mut server = Server::start(0, 2, 512);
    let out = dir.join("corpus");
    let mut child = distill_cmd(&remote_args(&server.url(), &prompts, &out, &limit))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start record");
    // Let a shard or two finish, then take the server away.
    let t0 = Instant::now();
    let finished = |out: &Path| {
        Manifest::read(out)
            .ok()
            .flatten()
            .map_or(0, |m| m.shards.len())
    };
    while finished(&out) < 1 {
        assert!(t0.elapsed() < Duration::from_secs(300), "no shard finished");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "record ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let port = server.port;
    server.kill();
    let failed = child.wait_with_output().expect("record output");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        !failed.status.success(),
        "record must fail without its server"
    );
    assert!(
        err.contains(&server.url()) && err.contains("tries"),
        "the error names the server and the retries: {err}"
    );
    let kept = Manifest::read(&out).expect("readable").expect("manifest");
    assert!(
        !kept.complete && !kept.shards.is_empty(),
        "finished shards are kept"
    );

    let server = Server::start(port, 2, 512);
    let resumed = distill(&remote_args(&server.url(), &prompts, &out, &limit));
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let m = Manifest::read(&out).expect("readable").expect("manifest");
    assert!(m.complete, "the rerun finished the corpus");
    for s in &kept.shards {
        let again = m
            .shards
            .iter()
            .find(|x| x.file == s.file)
            .expect("kept shard");
        assert_eq!(again.sha256, s.sha256, "{} was kept, not redone", s.file);
    }
    let records: usize = m
        .shards
        .iter()
        .map(|s| s.last_record + 1 - s.first_record)
        .sum();
    assert_eq!(records, 16, "every record once");
}

#[test]
fn a_refused_request_and_a_foreign_tokenizer_are_named() {
    let dir = temp_dir("remote-refused");
    // A slot of 256 tokens (llama.cpp's smallest): a prompt that fits --ctx 512 here does
    // not fit there.
    let server = Server::start(0, 1, 256);
    let long = format!(
        "{{\"prompt\": \"{}\"}}\n",
        "Tell me about the sea and the sky. ".repeat(45)
    );
    let prompts = write(&dir, "long.jsonl", &long);
    let err = distill_err(&remote_args(&server.url(), &prompts, &dir.join("c1"), &[]));
    assert!(err.contains("HTTP 400") || err.contains("HTTP 4"), "{err}");
    assert!(err.contains("--ctx"), "the fix is named: {err}");

    let short = write(&dir, "short.jsonl", "{\"prompt\": \"Hi!\"}\n");
    let mut args = remote_args(&server.url(), &short, &dir.join("c2"), &[]);
    let at = args.iter().position(|a| a == "--tokenizer").expect("flag") + 1;
    args[at] = gemma().display().to_string();
    let err = distill_err(&args);
    assert!(
        err.contains("vocabulary") && err.contains("--tokenizer"),
        "{err}"
    );
    args.drain(at - 1..=at);
    let err = distill_err(&args);
    assert!(err.contains("--tokenizer GGUF"), "{err}");
}

/// `distill chat --teacher URL`: the server's teacher answers in the left pane (one request
/// per token, its prompt cache kept) beside a local student, here the same GGUF in
/// llama.cpp; greedy, both say the same.
#[test]
fn chat_shows_the_server_teacher_beside_a_local_student() {
    let dir = temp_dir("remote-chat");
    let server = Server::start(0, 1, 2048);
    let model = teacher().display().to_string();
    let server_flags = ["--teacher", &server.url(), "--tokenizer", &model];
    let args = chat_args_with(&server_flags, &teacher(), &dir.join("chats"));
    let tmux = Tmux::start("remote", &chat_command(&dir, &args), 160, 48);
    tmux.wait_for("both models to load", |s| s.matches("Ready.").count() == 2);
    tmux.type_text("What is the capital of France?");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("both answers", |s| s.contains("speed-up ×"));
    let (left, right) = halves(&screen, 160);
    let host = server.url().replace("http://", "");
    assert!(left[0].contains(&host), "the server is named:\n{screen}");
    assert!(
        left.iter().any(|l| l.contains("Teacher (llama-server)")),
        "{screen}"
    );
    for pane in [&left, &right] {
        assert!(pane.iter().any(|l| l.contains("Paris")), "{screen}");
    }
    quit_and_check_restored(&tmux, &dir);
}

/// `distill run --teacher URL --tokenizer GGUF`: the server records both corpora, the GGUF
/// builds the student and judges it, and a second run finds everything done.
#[test]
fn a_run_records_through_the_server_and_does_the_rest_with_the_gguf() {
    let dir = temp_dir("remote-run");
    let server = Server::start(0, 2, 1024);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lines = |f: &str, n: usize| {
        let text = std::fs::read_to_string(root.join(f)).expect("prompts");
        let kept: Vec<&str> = text.lines().take(n).collect();
        kept.join("\n") + "\n"
    };
    let train = write(&dir, "train.jsonl", &lines("prompts/train.jsonl", 12));
    let valid = write(&dir, "valid.jsonl", &lines("prompts/valid.jsonl", 2));
    let out = dir.join("run");
    let (t, v, o, model) = (
        train.display().to_string(),
        valid.display().to_string(),
        out.display().to_string(),
        teacher().display().to_string(),
    );
    #[rustfmt::skip]
    let args = [
        "run", "--teacher", &server.url(), "--tokenizer", &model, "--prompts", &t,
        "--valid-prompts", &v, "--out", &o, "--minutes", "600", "--max-new-tokens", "12",
        "--layers", "0,29", "--train-steps", "4", "--batch", "2", "--seq-len", "64",
        "--no-speed", "--threads", "2", "--no-tui", "--answers-per-prompt", "1",
    ];
    let first = distill_ok(&args);
    assert!(first.contains("KLD"), "{first}");
    for corpus in ["train", "valid"] {
        let (_, info) = served_by(&out.join(corpus));
        assert_eq!(
            info.url,
            server.url(),
            "{corpus} was recorded through the server"
        );
    }
    assert!(out.join("eval/report.md").exists());
    let kept = [
        "train/manifest.json",
        "valid/manifest.json",
        "student/metrics.jsonl",
    ];
    let read = |f: &str| std::fs::read(out.join(f)).expect("run file");
    let before: Vec<Vec<u8>> = kept.iter().map(|f| read(f)).collect();
    distill_ok(&args);
    let after: Vec<Vec<u8>> = kept.iter().map(|f| read(f)).collect();
    assert!(
        before == after,
        "a second run finds everything done and redoes nothing"
    );
}

/// `--teacher-api openai` against llama-server's own `/v1/completions` (its `content` form of
/// log-probabilities): generate mode agrees with the in-process teacher; score mode, which
/// needs `prompt_logprobs`, is refused with the alternatives.
#[test]
fn the_openai_route_records_through_llama_servers_v1_completions() {
    let dir = temp_dir("remote-openai");
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/valid.jsonl");
    let limit = ["--limit", "6"];
    let local = dir.join("local");
    let args: Vec<&str> = SETTINGS.iter().chain(&limit).copied().collect();
    distill_ok(&record_args(&prompts, &local, &args));
    let server = Server::start(0, 2, 512);
    let remote = dir.join("remote");
    let openai = ["--limit", "6", "--teacher-api", "openai"];
    distill_ok(&remote_args(&server.url(), &prompts, &remote, &openai));
    let (_, info) = served_by(&remote);
    assert_eq!(info.api, distill::teacher::Api::Openai);
    routes_agree(
        "llama-server /v1/completions",
        &local,
        &remote,
        (100, 0.99, 0.05),
    );

    let scored = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/score-sample.jsonl");
    let mut args = remote_args(&server.url(), &scored, &dir.join("score"), &openai[2..]);
    let at = args.iter().position(|a| a == "generate").expect("mode");
    args[at] = "score".into();
    let err = distill_err(&args);
    assert!(
        err.contains("cannot score") && err.contains("--mode generate"),
        "{err}"
    );
}
