//! One function per subcommand: turn clap arguments into library configs, show progress,
//! print results. Errors get context here (anyhow); the library stays typed.

mod bench;
mod chat;
mod eval;
mod export;
mod export_corpus;
mod inspect;
mod merge;
mod pipeline;
mod record;
mod remote;
mod teacher;
mod train;

use crate::cli::{BenchCommand, Cli, Command, TeacherCommand};
pub(crate) use remote::{connect_remote, remote_tokenizer, remote_url};

/// Run the parsed command line.
///
/// # Errors
/// Whatever the subcommand reports, with context.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Record(args) => record::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Bench(BenchCommand::Teacher(args)) => bench::teacher(&args),
        Command::Bench(BenchCommand::Train(args)) => bench::train(&args),
        Command::Bench(BenchCommand::Model(args)) => eval::bench_model(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Export(args) => export::run(&args),
        Command::ExportCorpus(args) => export_corpus::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Run(args) => pipeline::run(&args),
        Command::Teacher(TeacherCommand::Info(args)) => teacher::info(&args),
        Command::Teacher(TeacherCommand::Cut(args)) => teacher::cut(&args),
    }
}

/// Default thread count: every core.
pub(crate) fn threads(arg: Option<usize>) -> usize {
    arg.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1)
}

/// Human-readable byte count.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// Print a line above a progress bar, or on stderr when the bar is hidden (no terminal).
pub(crate) fn say(bar: &indicatif::ProgressBar, quiet: bool, line: String) {
    if !bar.is_hidden() {
        bar.println(line);
    } else if !quiet {
        eprintln!("{line}");
    }
}
