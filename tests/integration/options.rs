//! Every numeric option of every command, found by walking the clap tree, tried at 0, -1
//! and far too large: the binary never panics, and each refusal names the option.

use std::path::Path;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;
use distill::cli::Cli;
use std::any::TypeId;

use crate::common::temp_dir;

/// Options where 0 means something (a seed, off, none, greedy, a block index).
const ZERO_MEANS_SOMETHING: &[&str] = &[
    "seed",
    "temperature",
    "alpha",
    "jsd-beta",
    "warmup",
    "weight-decay",
    "grad-clip",
    "hidden-weight",
    "on-policy",
    "valid-fraction",
    "eval-every",
    "save-every",
    "answers",
    "sample",
    "blocks",
    "layers",
    "split",
];

struct Numeric {
    path: Vec<String>,
    long: String,
    real: bool,
}

/// `Some(real)` for a numeric value type (clap's id compares with `TypeId`).
fn is_numeric(id: impl PartialEq<TypeId>) -> Option<bool> {
    if id == TypeId::of::<usize>() || id == TypeId::of::<u64>() || id == TypeId::of::<u32>() {
        Some(false)
    } else if id == TypeId::of::<f64>() || id == TypeId::of::<f32>() {
        Some(true)
    } else {
        None
    }
}

/// The arguments a command needs before any option can be tried: dummy paths that do
/// not exist, the first choice of a required value enum.
fn required(cmd: &clap::Command) -> Vec<String> {
    let mut argv = Vec::new();
    for arg in cmd.get_arguments().filter(|a| a.is_required_set()) {
        let value = match arg.get_possible_values().first() {
            Some(v) => v.get_name().to_owned(),
            None if is_numeric(arg.get_value_parser().type_id()).is_some() => "0".to_owned(),
            None => "does-not-exist".to_owned(),
        };
        match arg.get_long() {
            Some(long) => argv.push(format!("--{long}={value}")),
            None => argv.push(value),
        }
    }
    argv
}

fn walk(cmd: &clap::Command, path: &mut Vec<String>, out: &mut Vec<Numeric>) {
    if cmd.has_subcommands() {
        for sub in cmd.get_subcommands() {
            path.push(sub.get_name().to_owned());
            walk(sub, path, out);
            path.pop();
        }
        return;
    }
    for arg in cmd.get_arguments() {
        if let (Some(long), Some(real)) =
            (arg.get_long(), is_numeric(arg.get_value_parser().type_id()))
        {
            out.push(Numeric {
                path: path.clone(),
                long: long.to_owned(),
                real,
            });
        }
    }
}

fn find<'a>(root: &'a clap::Command, path: &[String]) -> &'a clap::Command {
    path.iter().fold(root, |c, name| {
        c.find_subcommand(name).expect("subcommand from the walk")
    })
}

/// Run the binary in `dir` (no models, no prompts there), at most 60 s.
fn run(dir: &Path, argv: &[String]) -> (Option<i32>, String) {
    let mut child = Process::new(env!("CARGO_BIN_EXE_distill"))
        .args(argv)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn distill");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("stderr");
            return (
                status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "distill {} did not finish in 60 s",
            argv.join(" ")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_numeric_option_refuses_zero_negative_and_huge_values_by_name() {
    let root = Cli::command();
    let mut numeric = Vec::new();
    walk(&root, &mut Vec::new(), &mut numeric);
    assert!(
        numeric.len() >= 60,
        "only {} numeric options found: the walk is broken",
        numeric.len()
    );
    let dir = temp_dir("options-walk");
    let mut failures = Vec::new();
    let mut tried = 0;
    for opt in &numeric {
        let cmd = find(&root, &opt.path);
        let huge = if opt.real {
            "1e300"
        } else {
            "99999999999999999999"
        };
        let mut values = vec!["0", "-1", huge];
        if opt.real {
            values.push("NaN");
        }
        for value in values {
            let mut argv = opt.path.clone();
            argv.extend(required(cmd));
            argv.push(format!("--{}={value}", opt.long));
            let (code, stderr) = run(&dir, &argv);
            tried += 1;
            let shown = format!("distill {} -> {code:?}: {}", argv.join(" "), stderr.trim());
            if code == Some(101) || stderr.contains("panicked") {
                failures.push(format!("PANIC {shown}"));
                continue;
            }
            let may_pass = value == "0" && ZERO_MEANS_SOMETHING.contains(&opt.long.as_str());
            if may_pass {
                continue;
            }
            if code != Some(2) || !stderr.contains(&format!("--{}", opt.long)) {
                failures.push(format!("NOT REFUSED BY NAME {shown}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} tries went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
