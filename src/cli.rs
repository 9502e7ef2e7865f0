//! The command line (clap derive only). Each subcommand's arguments turn into a typed
//! config in `commands/` before the library sees them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::record::Mode;

/// Where `scripts/setup.sh` puts the default teacher.
pub const DEFAULT_TEACHER: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Knowledge distillation of chat LLMs: record a llama.cpp teacher's next-token
/// distributions, train a small student on them, evaluate it, and chat with both.
#[derive(Debug, Parser)]
#[command(name = "distill", version, propagate_version = true)]
pub struct Cli {
    /// The stage to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the teacher over prompt files and store its top-k next-token log-probs.
    ///
    /// Example: distill record --prompts prompts/train.jsonl --out data/train
    #[command(verbatim_doc_comment)]
    Record(RecordArgs),
    /// Show what a corpus holds: teacher, settings, counts, and a decoded sample.
    ///
    /// Example: distill inspect data/train
    #[command(verbatim_doc_comment)]
    Inspect(InspectArgs),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// The teacher model.
#[derive(Debug, Clone, Args)]
pub struct TeacherArgs {
    /// Teacher GGUF model (any llama.cpp chat model).
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// CPU threads for llama.cpp (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Arguments of `distill record`.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Teacher model and threads.
    #[command(flatten)]
    pub teacher: TeacherArgs,
    /// Prompt files (JSONL: prompt, prompt+response, OpenAI messages, ShareGPT, Alpaca).
    #[arg(long, required = true, num_args = 1..)]
    pub prompts: Vec<PathBuf>,
    /// Corpus directory; an existing one is resumed.
    #[arg(long)]
    pub out: PathBuf,
    /// generate: the teacher answers; score: the given response is teacher-forced.
    #[arg(long, value_enum, default_value_t = Mode::Generate)]
    pub mode: Mode,
    /// Log-probabilities stored per response position.
    #[arg(long, default_value_t = 64)]
    pub top_k: usize,
    /// Longest response the teacher writes (generate).
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature (generate; 0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Nucleus sampling mass (generate).
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    /// Seed: the same seed gives the same corpus.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// System prompt for records that have none.
    #[arg(long)]
    pub system: Option<String>,
    /// Sequences decoded together in one llama.cpp batch.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Context length per sequence (prompt + response).
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    /// Record at most this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Records per shard (a killed run loses at most one shard of work).
    #[arg(long, default_value_t = 128)]
    pub shard_size: usize,
    /// Skip (and count) bad lines and records too long for the context instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `distill inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Corpus directory.
    pub corpus: PathBuf,
    /// Teacher GGUF for decoding tokens (default: the path stored in the manifest).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Which sequence to show.
    #[arg(long, default_value_t = 0)]
    pub sample: usize,
    /// Check every shard's sha256 against the manifest.
    #[arg(long)]
    pub verify: bool,
}

/// What to benchmark.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Teacher throughput: scoring, generation with 1 and with 8 sequences, top-k and
    /// shard writing included. Compare with scripts/bench-teacher.sh.
    ///
    /// Example: distill bench teacher --threads 2
    #[command(verbatim_doc_comment)]
    Teacher(BenchTeacherArgs),
}

/// Arguments of `distill bench teacher`.
#[derive(Debug, Clone, Args)]
pub struct BenchTeacherArgs {
    /// Teacher model and threads.
    #[command(flatten)]
    pub teacher: TeacherArgs,
    /// Log-probabilities per position.
    #[arg(long, default_value_t = 64)]
    pub top_k: usize,
    /// Tokens generated per sequence.
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Tokens scored (teacher-forced) in total.
    #[arg(long, default_value_t = 4096)]
    pub score_tokens: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
