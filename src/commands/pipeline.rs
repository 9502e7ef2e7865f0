//! `distill run`: check the inputs, open (or resume) the run directory, start the stage
//! worker on its own thread, and show its progress: the dashboard on a terminal, progress
//! lines on stderr and a summary on stdout otherwise. At the end of a dashboard run a key
//! opens `distill chat` with the teacher and the new student.

mod stages;
mod student;
mod training;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::cli::{ChatArgs, Cli, Command, RunArgs};
use crate::corpus::Source;
use crate::gguf::TeacherProfile;
use crate::lock::DirLock;
use crate::pipeline::dashboard::term::{self, Exit};
use crate::pipeline::dashboard::{App, Cmd};
use crate::pipeline::lines::Lines;
use crate::pipeline::state::FileId;
use crate::pipeline::summary::{chat_student, summary_lines};
use crate::pipeline::{Budget, Event, RunSettings, RunState};
use crate::record::recorder::file_sha256;
use crate::record::{Mode, check_sources};
use stages::Job;

type Worker = JoinHandle<anyhow::Result<bool>>;

/// Answers the teacher samples per training prompt by default (generate mode): enough
/// that the starter prompt set does not run out before a 120-minute budget's record
/// share does (docs/BENCHMARKS.md, "Several answers per prompt").
const ANSWERS: usize = 8;

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    // A teacher on a server records the corpora; every other stage uses its GGUF.
    let (local, server) = match super::remote_url(&args.teacher) {
        Some(url) => {
            super::connect_remote(url, &args.remote)?; // reachable, the right tokenizer
            let mut local = args.clone();
            local.teacher = super::remote_tokenizer(url, &args.remote)?;
            (local, Some(url.to_string()))
        }
        None => (args.clone(), None),
    };
    let (state, _lock) = open(&local)?;
    let (tx, rx) = unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut job = Job {
        args: local,
        server,
        state,
        tx,
    };
    let worker = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("distill-run".into())
            .spawn(move || {
                let result = job.run(&stop);
                if let Err(e) = &result {
                    job.tx.send(Event::Failed(format!("{e:#}"))).ok();
                }
                result
            })
            .context("starting the stage worker")?
    };
    let tui = !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if tui {
        dashboard(args, rx, &stop, worker)
    } else {
        lines(args, rx, worker)
    }
}

/// Check the inputs, lock the run directory (one process at a time drives it, for the whole
/// command) and open it, before any display starts, so a bad input is a plain error message.
fn open(args: &RunArgs) -> anyhow::Result<(RunState, DirLock)> {
    if !args.teacher.is_file() {
        bail!(
            "teacher GGUF '{}' not found: pass --teacher with a llama.cpp GGUF model, or run scripts/setup.sh to fetch the default one",
            args.teacher.display()
        );
    }
    let profile = TeacherProfile::read(&args.teacher)?;
    // Everything the teacher or the prompt files cannot do is refused before any stage.
    for files in [&args.valid_prompts, &args.prompts] {
        let sources = files
            .iter()
            .map(|p| Source::read(p, false))
            .collect::<crate::Result<Vec<_>>>()?;
        check_sources(&profile, args.mode, &sources)?;
    }
    let (shape, student_init) = student::plan_student(args, &profile)?;
    let [record, train, eval] = <[f64; 3]>::try_from(args.split.as_slice()).map_err(|_| {
        anyhow!(
            "--split '{:?}' must be three percentages: record, train, eval (e.g. 50,45,5)",
            args.split
        )
    })?;
    crate::cli::values::batch_tokens(args.batch, args.seq_len)?;
    let mut settings = settings(args, [record, train, eval])?;
    settings.layers = shape.as_ref().map_or_else(Vec::new, |s| s.layers.clone());
    settings.shape = shape;
    settings.student_init = student_init;
    let lock = DirLock::acquire(&args.out)?;
    Ok((RunState::open(&args.out, settings)?, lock))
}

/// The settings of `args`, with the teacher and prompt files hashed.
fn settings(args: &RunArgs, split: [f64; 3]) -> anyhow::Result<RunSettings> {
    let id = |p: &PathBuf| -> anyhow::Result<FileId> {
        if !p.is_file() {
            bail!("'{}' not found: pass an existing file", p.display());
        }
        Ok(FileId {
            path: p.clone(),
            sha256: file_sha256(p)?,
        })
    };
    Ok(RunSettings {
        teacher: id(&args.teacher)?,
        prompts: args.prompts.iter().map(id).collect::<anyhow::Result<_>>()?,
        valid_prompts: args
            .valid_prompts
            .iter()
            .map(id)
            .collect::<anyhow::Result<_>>()?,
        budget: Budget::new(args.minutes, split)?,
        train_prompts_limit: args.train_prompts_limit,
        answers: answers(args)?,
        valid_prompts_limit: args.valid_prompts_limit,
        max_new_tokens: args.max_new_tokens,
        layers: Vec::new(),
        student_init: String::new(),
        shape: None,
        cross_attention: false,
        mode: args.mode,
        lr: args.lr,
        alpha: args.alpha,
        freeze_embeddings: !args.train_embeddings,
        on_policy: args.on_policy,
        batch: args.batch,
        seq_len: args.seq_len,
        train_steps: args.train_steps,
        seed: args.seed,
        speed: !args.no_speed,
    })
}

/// Answers per training prompt: `--answers-per-prompt`, else [`ANSWERS`] when the teacher
/// answers and 1 when it scores given text (always the same).
fn answers(args: &RunArgs) -> anyhow::Result<usize> {
    match (args.answers_per_prompt, args.mode) {
        (Some(n), Mode::Score) if n > 1 => bail!(
            "--answers-per-prompt {n} asks for several sampled answers per prompt, but --mode score reads the same given response every time: drop the option, or use --mode generate"
        ),
        (Some(n), _) => Ok(n),
        (None, Mode::Generate) => Ok(ANSWERS),
        (None, Mode::Score) => Ok(1),
    }
}

/// Without a terminal: progress lines on stderr, the summary on stdout.
fn lines(args: &RunArgs, mut rx: UnboundedReceiver<Event>, worker: Worker) -> anyhow::Result<()> {
    let clock = Instant::now();
    let mut printer = Lines::new();
    let mut finished = None;
    while let Some(event) = rx.blocking_recv() {
        if matches!(event, Event::Failed(_)) {
            continue; // returned as the command's error below
        }
        for line in printer.on(clock.elapsed().as_secs_f64(), &event) {
            eprintln!("{line}");
        }
        if let Event::Finished(state) = event {
            finished = Some(state);
        }
    }
    worker
        .join()
        .map_err(|_| anyhow!("the stage worker panicked"))??;
    if let Some(state) = finished {
        for line in summary_lines(&state, &args.out) {
            println!("{line}");
        }
    }
    Ok(())
}

/// On a terminal: the dashboard, then maybe the chat.
fn dashboard(
    args: &RunArgs,
    rx: UnboundedReceiver<Event>,
    stop: &AtomicBool,
    worker: Worker,
) -> anyhow::Result<()> {
    let app = App::new(args.out.clone(), !args.no_chat);
    let (app, exit) = term::run(app, rx, &mut |cmd| {
        if cmd == Cmd::Stop {
            stop.store(true, Ordering::Relaxed);
        }
    })?;
    // The terminal is restored here. A worker still busy (the user quit during eval, or
    // pressed q twice) ends with the process; everything it committed is kept.
    if worker.is_finished() {
        worker
            .join()
            .map_err(|_| anyhow!("the stage worker panicked"))??;
    }
    if exit == Exit::Chat {
        return super::chat::run(&chat_args(args)?);
    }
    if app.is_finished() {
        for line in &app.summary {
            println!("{line}");
        }
    } else if app.error.is_none() {
        eprintln!(
            "distill run stopped; the work so far is kept in '{}': run the same command again to resume",
            args.out.display()
        );
    }
    Ok(())
}

/// `distill chat` with the run's teacher and student ([`chat_student`]), every other option
/// at its default.
fn chat_args(args: &RunArgs) -> anyhow::Result<ChatArgs> {
    let student = chat_student(&args.out);
    let mut argv: Vec<String> = vec![
        "distill".into(),
        "chat".into(),
        "--teacher".into(),
        args.teacher.display().to_string(),
        "--student".into(),
        student.display().to_string(),
        "--transcripts".into(),
        args.out.join("chats").display().to_string(),
    ];
    if let Some(t) = args.threads {
        argv.extend(["--threads".into(), t.to_string()]);
    }
    // A server's teacher answers in the chat too, with the same GGUF's vocabulary.
    let mut gguf = args.teacher.clone();
    if let (Some(_), Some(tokenizer)) = (super::remote_url(&args.teacher), &args.remote.tokenizer) {
        gguf = tokenizer.clone();
        argv.extend(["--tokenizer".into(), tokenizer.display().to_string()]);
        argv.extend([
            "--teacher-api".into(),
            args.remote.teacher_api.name().into(),
        ]);
        argv.extend([
            "--teacher-timeout".into(),
            args.remote.teacher_timeout.to_string(),
        ]);
    }
    // A base teacher has no chat template: its chat continues plain text.
    if TeacherProfile::read(&gguf).is_ok_and(|p| p.chat_template.is_none()) {
        argv.extend(["--template".into(), "none".into()]);
    }
    match Cli::try_parse_from(argv)?.command {
        Command::Chat(chat) => Ok(*chat),
        _ => bail!("internal: 'distill chat' arguments did not parse as the chat command"),
    }
}
