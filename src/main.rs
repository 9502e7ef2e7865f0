//! The `distill` binary: parse the command line and hand over to the library.

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
    if let Command::Chat(args) = &cli.command {
        // The chat owns the terminal: its logs go to a file, never to the screen.
        let path = args.transcripts.join("chat.log");
        let file = std::fs::create_dir_all(&args.transcripts).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
        });
        match file {
            Ok(f) => logs
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init(),
            Err(_) => logs.with_writer(std::io::sink).init(),
        }
    } else {
        logs.with_writer(std::io::stderr).init();
    }
    distill::commands::run(cli)
}
