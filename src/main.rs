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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("DISTILL_LOG"))
        .init();
    distill::commands::run(cli)
}
