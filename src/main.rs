//! The `distill` binary: parse the command line and hand over to the library.

use std::io::IsTerminal;

use clap::Parser;
use distill::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Train(args) => args.threads,
        Command::Run(args) => args.threads,
        _ => None,
    };
    if let Some(n) = threads {
        // candle's CPU kernels size their thread pool from this variable.
        // SAFETY: set before any other thread of this process exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string()) };
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("DISTILL_LOG"));
    // The TUIs own the terminal: their logs go to a file, never to the screen.
    // The dashboard of `distill run` logs into its run directory once the run has made it:
    // a bad input must leave nothing behind.
    let log_file = match &cli.command {
        Command::Chat(args) => Some((args.transcripts.clone(), "chat.log", true)),
        Command::Run(args) if !args.no_tui && std::io::stdout().is_terminal() => {
            Some((args.out.clone(), "run.log", false))
        }
        _ => None,
    };
    match log_file {
        Some((dir, name, false)) => {
            // Held until the run has made its directory.
            let log = distill::pipeline::run_log::RunLog::new(&dir.join(name));
            logs.with_ansi(false)
                .with_writer(std::sync::Mutex::new(log))
                .init();
        }
        Some((dir, name, true)) => {
            let file = std::fs::create_dir_all(&dir).and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(name))
            });
            match file {
                Ok(f) => logs
                    .with_ansi(false)
                    .with_writer(std::sync::Mutex::new(f))
                    .init(),
                Err(_) => logs.with_writer(std::io::sink).init(),
            }
        }
        None => logs.with_writer(std::io::stderr).init(),
    }
    distill::commands::run(cli)
}
