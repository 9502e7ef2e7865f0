//! The command line (clap derive only). Each subcommand's arguments turn into a typed
//! config in `commands/` before the library sees them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::handoff::Format;
use crate::record::{Mode, Slice};
use crate::student::Preset;
use crate::student::shape::ShapeKind;
use crate::train::schedule::Schedule;

pub mod values;

/// Where `scripts/setup.sh` puts the default teacher.
pub const DEFAULT_TEACHER: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Knowledge distillation of chat LLMs: record a llama.cpp teacher's next-token
/// distributions, train a small student on them, evaluate it, and chat with both.
#[derive(Debug, Parser)]
#[command(
    name = "distill",
    version,
    propagate_version = true,
    after_help = "Start with the whole pipeline on the default teacher (about 20 minutes on 2 cores):\n  distill run\n\nOr stage by stage:\n  distill record --prompts prompts/train.jsonl --out data/train\n  distill record --prompts prompts/valid.jsonl --out data/valid\n  distill train --corpus data/train --out data/student --init teacher\n  distill eval --student data/student --corpus data/valid\n  distill chat --student data/student"
)]
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
    Record(Box<RecordArgs>),
    /// Join the slices recorded by `record --shard I/N` on N machines into one corpus,
    /// after checking they share teacher, settings and prompt files and that none is missing.
    ///
    /// Example: distill merge data/train data/train-0 data/train-1 data/train-2
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// Show what a corpus holds: teacher, settings, counts, and a decoded sample.
    ///
    /// Example: distill inspect data/train
    #[command(verbatim_doc_comment)]
    Inspect(InspectArgs),
    /// Train a small student on a recorded corpus (KD loss mixed with hard labels).
    ///
    /// Example: distill train --corpus data/train --out data/student --steps 300
    #[command(verbatim_doc_comment)]
    Train(Box<TrainArgs>),
    /// Compare a student with its teacher: KLD statistics, top-1 agreement, perplexity,
    /// and speed in llama.cpp and candle.
    ///
    /// Example: distill eval --student data/student --corpus data/valid
    #[command(verbatim_doc_comment)]
    Eval(Box<EvalArgs>),
    /// Write a student as a GGUF that llama.cpp, ollama and LM Studio run, with the
    /// teacher's tokenizer and chat template.
    ///
    /// Example: distill export --student data/student --out student.gguf --quant q8_0
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Write a recorded corpus as parquet for a PyTorch distillation trainer (axolotl's KD
    /// plugin or DistillKit), with a sample config; needs python3 with pyarrow.
    ///
    /// Example: distill export-corpus data/train --format axolotl --out data/axolotl
    #[command(verbatim_doc_comment)]
    ExportCorpus(ExportCorpusArgs),
    /// Chat with the teacher and the student side by side, both streaming, with time to
    /// first token, tokens/s and the student's speed-up live.
    ///
    /// Example: distill chat --student data/run/student
    #[command(verbatim_doc_comment)]
    Chat(Box<ChatArgs>),
    /// The whole pipeline in one dashboard: record the teacher, distill a student, evaluate
    /// it, then chat with both. Run it again to resume where it stopped.
    ///
    /// Example: distill run --minutes 20 --out data/run
    #[command(verbatim_doc_comment)]
    Run(Box<RunArgs>),
    /// Measure speed: the teacher's recording throughput against llama.cpp's own tools, and
    /// a student's training step against the machine's matmul peak.
    ///
    /// Example: distill bench teacher --threads 2
    #[command(subcommand, verbatim_doc_comment)]
    Bench(BenchCommand),
    /// What distill sees in a teacher GGUF and can do with it; cut a teacher to fewer blocks.
    ///
    /// Example: distill teacher info --teacher models/SmolLM2-135M-Instruct.Q4_1.gguf
    #[command(subcommand, verbatim_doc_comment)]
    Teacher(TeacherCommand),
}

/// Teacher tools.
#[derive(Debug, Subcommand)]
pub enum TeacherCommand {
    /// The teacher's profile: architecture, sizes, tokenizer, chat template, and what each
    /// stage will do with it (teacher initialisation, tokenizer.json, chat).
    ///
    /// Example: distill teacher info --teacher models/gemma-3-270m-q4_k_m.gguf
    #[command(verbatim_doc_comment)]
    Info(TeacherInfoArgs),
    /// Write a teacher with a subset of the blocks of another (tensors copied as they are).
    ///
    /// Example: distill teacher cut --blocks 0,4,8,12,16,20,24,29 --out models/cut.gguf
    #[command(verbatim_doc_comment)]
    Cut(TeacherCutArgs),
}

/// Arguments of `distill teacher info`.
#[derive(Debug, Clone, Args)]
pub struct TeacherInfoArgs {
    /// Teacher GGUF.
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// Print the profile as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `distill teacher cut`.
#[derive(Debug, Clone, Args)]
pub struct TeacherCutArgs {
    /// Source GGUF.
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// Blocks to keep, in order (renumbered from 0).
    #[arg(long, value_delimiter = ',', required = true, value_parser = values::BLOCK)]
    pub blocks: Vec<usize>,
    /// The GGUF to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// How `distill chat` schedules the two models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ChatMode {
    /// One model at a time, each with every thread: a fair speed comparison.
    #[default]
    Turns,
    /// Both at once, interleaved a token at a time.
    Race,
}

/// Arguments of `distill chat`.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// Teacher GGUF (run in llama.cpp), or a server's http://HOST:PORT (with --tokenizer).
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// Chat with the student alone.
    #[arg(long, requires = "student")]
    pub no_teacher: bool,
    /// Student: a directory from `distill train` (run in candle) or a GGUF (run in
    /// llama.cpp). Without it, chat with the teacher alone.
    #[arg(long)]
    pub student: Option<PathBuf>,
    /// turns (one model at a time) or race (both at once).
    #[arg(long, value_enum, default_value_t = ChatMode::Turns)]
    pub mode: ChatMode,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7, value_parser = values::TEMPERATURE)]
    pub temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.9, value_parser = values::TOP_P)]
    pub top_p: f32,
    /// Longest answer per turn, in tokens.
    #[arg(long, default_value_t = 256, value_parser = values::NEW_TOKENS)]
    pub max_tokens: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 42, value_parser = values::SEED)]
    pub seed: u64,
    /// System prompt (default: the chat template's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Context length per model.
    #[arg(long, default_value_t = 2048, value_parser = values::CTX)]
    pub ctx: usize,
    /// CPU threads in total (default: all cores).
    #[arg(long, value_parser = values::THREADS)]
    pub threads: Option<usize>,
    /// Where saved transcripts go (JSONL and Markdown).
    #[arg(long, default_value = "data/chats")]
    pub transcripts: PathBuf,
    /// Chat template for a teacher without one (a base model): chatml or none (plain text).
    #[arg(long, value_enum)]
    pub template: Option<TemplateChoice>,
    /// Remote teacher options (with --teacher http://HOST:PORT).
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// Arguments of `distill run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Teacher GGUF model (any llama.cpp model; a base model needs --mode score), or a
    /// server's http://HOST:PORT with --tokenizer GGUF: the server records the corpora and
    /// the GGUF does the rest (the student's blocks, eval, the chat's vocabulary).
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// Remote teacher options (with --teacher http://HOST:PORT).
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Training prompt files (JSONL, any form `distill record` reads, or .txt).
    #[arg(long, num_args = 1.., default_value = "prompts/train.jsonl")]
    pub prompts: Vec<PathBuf>,
    /// Held-out prompt files for validation and eval.
    #[arg(long, num_args = 1.., default_value = "prompts/valid.jsonl")]
    pub valid_prompts: Vec<PathBuf>,
    /// Time budget for the whole run, in minutes.
    #[arg(long, default_value_t = 20.0, value_parser = values::MINUTES)]
    pub minutes: f64,
    /// Run directory (corpora, student, eval); an existing one is resumed.
    #[arg(long, default_value = "data/run")]
    pub out: PathBuf,
    /// Print progress lines instead of the dashboard (also without a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Do not offer the chat at the end.
    #[arg(long)]
    pub no_chat: bool,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = values::THREADS)]
    pub threads: Option<usize>,
    /// Split of --minutes in percent: record (both corpora), train, eval; the rest covers
    /// loading and checkpoints.
    #[arg(long, value_delimiter = ',', default_value = "50,45,5", value_parser = values::PERCENT)]
    pub split: Vec<f64>,
    /// Record at most this many training prompts (default: as many as the record share
    /// of the budget allows).
    #[arg(long, value_parser = values::COUNT)]
    pub train_prompts_limit: Option<usize>,
    /// Answers the teacher samples per training prompt, pass after pass, while the record
    /// share lasts (default 8 with --mode generate, so a long budget is not bound by the
    /// prompt set; 1 with --mode score).
    #[arg(long, value_parser = values::ANSWERS)]
    pub answers_per_prompt: Option<usize>,
    /// Held-out prompts recorded for validation and eval.
    #[arg(long, default_value_t = 12, value_parser = values::COUNT)]
    pub valid_prompts_limit: usize,
    /// Longest teacher answer, in tokens.
    #[arg(long, default_value_t = 256, value_parser = values::NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// How the student is cut from the teacher: auto (blocks and widths for --speedup by
    /// a llama.cpp decode-cost model; heads, channels and MLP channels kept by importance
    /// on the recorded answers) or blocks (the teacher's --layers at full width). Teachers
    /// whose architecture the student cannot copy (not llama or qwen2) get a random student.
    #[arg(long, value_enum, default_value_t = ShapeKind::Auto)]
    pub shape: ShapeKind,
    /// Decode speed-up over the teacher in llama.cpp that --shape auto aims for (1-100).
    #[arg(long, default_value_t = 4.5, value_parser = values::SPEEDUP)]
    pub speedup: f64,
    /// Teacher blocks the student keeps (overrides the --shape choice; with --shape blocks
    /// the default is a fifth of the teacher's blocks, spread, the first and last kept).
    #[arg(long, value_delimiter = ',', value_parser = values::BLOCK)]
    pub layers: Option<Vec<usize>>,
    /// generate: the teacher answers the prompts; score: the given responses, or raw text
    /// ({"text": ...} lines, .txt files), are scored teacher-forced (base models).
    #[arg(long, value_enum, default_value_t = Mode::Generate)]
    pub mode: Mode,
    /// Optimizer steps (default: what the train share of the budget fits at the speed of
    /// the first steps, timed; training also stops when its share is spent).
    #[arg(long, value_parser = values::COUNT)]
    pub train_steps: Option<usize>,
    /// Peak learning rate (cosine decay to a tenth after 5 warm-up steps).
    #[arg(long, default_value_t = 2e-3, value_parser = values::LR)]
    pub lr: f64,
    /// Weight of hard-label cross-entropy; 0 is pure distillation on the teacher's top-k,
    /// which gave the best student in the budget (docs/BENCHMARKS.md).
    #[arg(long, default_value_t = 0.0, value_parser = values::MIX)]
    pub alpha: f32,
    /// Train the token embeddings and output projection too (by default they stay the
    /// teacher's, which makes steps faster: docs/BENCHMARKS.md).
    #[arg(long)]
    pub train_embeddings: bool,
    /// Weight of the hidden-state loss, 1 - cos(student, teacher) of the final hidden
    /// states (0: off; above 0 the record stages also store the teacher's, 0-100).
    #[arg(long, default_value_t = 0.0, value_parser = values::WEIGHT)]
    pub hidden_weight: f32,
    /// Share of the training steps, at the end, trained on-policy (GKD): the student
    /// answers the training prompts, the teacher scores those answers, and the last steps
    /// train on them; the round's time comes out of the train share (0-1; 0: off).
    #[arg(long, default_value_t = 0.0, value_parser = values::FRACTION)]
    pub on_policy: f64,
    /// Windows per optimizer step.
    #[arg(long, default_value_t = 4, value_parser = values::BATCH)]
    pub batch: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 256, value_parser = values::SEQ_LEN)]
    pub seq_len: usize,
    /// Seed of recording, initialisation and data order.
    #[arg(long, default_value_t = 42, value_parser = values::SEED)]
    pub seed: u64,
    /// Evaluate quality only (no speed measurements).
    #[arg(long)]
    pub no_speed: bool,
}

/// Formats `distill export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One GGUF file for llama.cpp.
    Gguf,
}

/// Arguments of `distill export-corpus`.
#[derive(Debug, Clone, Args)]
pub struct ExportCorpusArgs {
    /// Corpus directory written by `distill record` (or `distill merge`).
    pub corpus: PathBuf,
    /// The trainer to write for.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Directory for the dataset and the sample config.
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `distill export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Student directory written by `distill train`.
    #[arg(long)]
    pub student: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Gguf)]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Storage of the weight matrices (norms stay f32).
    #[arg(long, value_enum, default_value_t = crate::student::export::Quant::F16)]
    pub quant: crate::student::export::Quant,
    /// Teacher GGUF to copy the tokenizer from (default: the one in the student's provenance.json).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
}

/// Arguments of `distill eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Teacher GGUF (must be the one that recorded --corpus).
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// Student: a student directory (run in candle) or a GGUF (run in llama.cpp).
    #[arg(long)]
    pub student: PathBuf,
    /// More students to put beside it (e.g. a hard-label baseline).
    #[arg(long)]
    pub compare: Vec<PathBuf>,
    /// Held-out corpus recorded by the teacher.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Where report.json and report.md go.
    #[arg(long, default_value = "data/eval")]
    pub out: PathBuf,
    /// CPU threads for every engine (default: all cores).
    #[arg(long, value_parser = values::THREADS)]
    pub threads: Option<usize>,
    /// Quality only.
    #[arg(long)]
    pub no_speed: bool,
    /// Held-out prompts every model answers on its own, judged by the teacher (0: none).
    #[arg(long, default_value_t = 12, value_parser = values::COUNT0)]
    pub answers: usize,
    /// Longest free-running answer, in tokens (1-4096).
    #[arg(long, default_value_t = 128, value_parser = values::ANSWER_TOKENS)]
    pub answer_tokens: usize,
}

/// How the student's weights start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitKind {
    /// Normal(0, 0.02) weights at the --preset or explicit sizes.
    Random,
    /// The teacher's embeddings, final norm and --layers, dequantized from its GGUF.
    Teacher,
    /// An existing small model with the teacher's tokenizer: a GGUF (llama, qwen2) or a
    /// Hugging Face directory (config.json + model.safetensors).
    Model(PathBuf),
}

/// `random`, `teacher` or `model:PATH`.
///
/// # Errors
/// A message naming the bad value and the accepted forms.
pub fn parse_init(s: &str) -> Result<InitKind, String> {
    match s {
        "random" => Ok(InitKind::Random),
        "teacher" => Ok(InitKind::Teacher),
        _ => match s.strip_prefix("model:") {
            Some(path) if !path.is_empty() => Ok(InitKind::Model(PathBuf::from(path))),
            _ => Err(format!(
                "'{s}' is not an initialisation: use random, teacher or model:PATH (a GGUF or Hugging Face directory sharing the teacher's tokenizer)"
            )),
        },
    }
}

/// Chat templates for a teacher that has none (a base model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TemplateChoice {
    /// ChatML (`<|im_start|>user ... <|im_end|>`), llama.cpp's built-in one.
    Chatml,
    /// No template: the conversation is continued as plain text.
    None,
}

/// Arguments of `distill train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Corpus directory written by `distill record`.
    #[arg(long)]
    pub corpus: PathBuf,
    /// Student directory (a Hugging Face model directory plus training state).
    #[arg(long)]
    pub out: PathBuf,
    /// Teacher GGUF (for tokenizer.json and --init teacher; default: the corpus's teacher).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Student size preset (random init).
    #[arg(long, value_enum, default_value_t = Preset::Base)]
    pub preset: Preset,
    /// Override the preset's hidden size.
    #[arg(long, value_parser = values::WIDTH)]
    pub hidden: Option<usize>,
    /// Override the preset's layer count.
    #[arg(long, value_parser = values::LAYERS)]
    pub layers_n: Option<usize>,
    /// Override the preset's attention heads.
    #[arg(long, value_parser = values::HEADS)]
    pub heads: Option<usize>,
    /// Override the preset's key/value heads.
    #[arg(long, value_parser = values::HEADS)]
    pub kv_heads: Option<usize>,
    /// Override the preset's MLP width.
    #[arg(long, value_parser = values::WIDTH)]
    pub intermediate: Option<usize>,
    /// random, teacher (DistilBERT-style: keep some of the teacher's layers), or model:PATH
    /// (start from an existing small model with the teacher's tokenizer: fine-tuning).
    #[arg(long, default_value = "random", value_parser = parse_init)]
    pub init: InitKind,
    /// How --init teacher cuts the student: auto (blocks and widths for --speedup by a
    /// llama.cpp decode-cost model, heads and channels by importance on the corpus; --layers,
    /// --kv-heads and --intermediate override its choices) or blocks (the teacher's
    /// --layers at full width).
    #[arg(long, value_enum, default_value_t = ShapeKind::Auto)]
    pub shape: ShapeKind,
    /// Decode speed-up over the teacher in llama.cpp that --shape auto aims for (1-100).
    #[arg(long, default_value_t = 4.5, value_parser = values::SPEEDUP)]
    pub speedup: f64,
    /// Teacher blocks kept by --init teacher (default: --shape's choice).
    #[arg(long, value_delimiter = ',', value_parser = values::BLOCK)]
    pub layers: Option<Vec<usize>>,
    /// Weight of hard-label cross-entropy: 1 = plain training, 0 = pure distillation.
    #[arg(long, default_value_t = 0.5, value_parser = values::MIX)]
    pub alpha: f32,
    /// Distillation temperature (1 beats 2 on the default teacher: docs/BENCHMARKS.md).
    #[arg(long, default_value_t = 1.0, value_parser = values::KD_TEMPERATURE)]
    pub temperature: f32,
    /// Divergence to the teacher: fkl (forward KL), rkl (reverse KL), jsd (generalised JSD).
    #[arg(long, default_value = "fkl", value_parser = ["fkl", "rkl", "jsd"])]
    pub loss: String,
    /// JSD's weight on the teacher.
    #[arg(long, default_value_t = 0.5, value_parser = values::MIX)]
    pub jsd_beta: f32,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = values::LR)]
    pub lr: f64,
    /// Warm-up steps.
    #[arg(long, default_value_t = 20, value_parser = values::COUNT0)]
    pub warmup: usize,
    /// Learning-rate schedule after warm-up.
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1, value_parser = values::WEIGHT_DECAY)]
    pub weight_decay: f64,
    /// Clip the gradient norm (0 = off).
    #[arg(long, default_value_t = 1.0, value_parser = values::GRAD_CLIP)]
    pub grad_clip: f64,
    /// Weight of the hidden-state term 1 - cos(student, teacher) of the final hidden states
    /// (0: off; the corpus must be recorded with --hidden; 0-100).
    #[arg(long, default_value_t = 0.0, value_parser = values::WEIGHT)]
    pub hidden_weight: f32,
    /// Let positions attend across the sequences packed into a training window (by default
    /// each sequence is read on its own, as the teacher read it).
    #[arg(long)]
    pub attend_across_sequences: bool,
    /// Share of the steps, at the end, trained on-policy (GKD): the student answers the
    /// corpus prompts, the teacher scores its answers, training continues on those (0-1).
    #[arg(long, default_value_t = 0.0, value_parser = values::FRACTION)]
    pub on_policy: f64,
    /// Keep the token embeddings and output projection as initialised (with --init teacher,
    /// the teacher's): faster steps, and the student keeps the teacher's vocabulary space.
    #[arg(long)]
    pub freeze_embeddings: bool,
    /// Windows per micro-batch.
    #[arg(long, default_value_t = 8, value_parser = values::BATCH)]
    pub batch: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 256, value_parser = values::SEQ_LEN)]
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1, value_parser = values::COUNT)]
    pub grad_accum: usize,
    /// Optimizer steps (default: one epoch unless --epochs).
    #[arg(long, value_parser = values::COUNT)]
    pub steps: Option<usize>,
    /// Epochs over the training windows.
    #[arg(long, value_parser = values::EPOCHS)]
    pub epochs: Option<f64>,
    /// Stop (and checkpoint) after this many minutes.
    #[arg(long, value_parser = values::MINUTES)]
    pub minutes: Option<f64>,
    /// Held-out share of the corpus for validation.
    #[arg(long, default_value_t = 0.05, value_parser = values::HELD_OUT)]
    pub valid_fraction: f64,
    /// A separate validation corpus (overrides --valid-fraction).
    #[arg(long)]
    pub valid_corpus: Option<PathBuf>,
    /// Validate every N steps (0 = at the end only).
    #[arg(long, default_value_t = 50, value_parser = values::COUNT0)]
    pub eval_every: usize,
    /// Checkpoint every N steps (0 = at the end only).
    #[arg(long, default_value_t = 50, value_parser = values::COUNT0)]
    pub save_every: usize,
    /// Seed of initialisation and data order.
    #[arg(long, default_value_t = 42, value_parser = values::SEED)]
    pub seed: u64,
    /// CPU threads (default: all cores).
    #[arg(long, value_parser = values::THREADS)]
    pub threads: Option<usize>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The teacher model.
#[derive(Debug, Clone, Args)]
pub struct TeacherArgs {
    /// Teacher GGUF model (any llama.cpp model; a base model records raw text).
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// CPU threads for llama.cpp (default: all cores).
    #[arg(long, value_parser = values::THREADS)]
    pub threads: Option<usize>,
}

/// Arguments of `distill record`.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// Teacher model and threads.
    #[command(flatten)]
    pub teacher: TeacherArgs,
    /// Prompt files (JSONL: prompt, prompt+response, OpenAI messages, ShareGPT, Alpaca,
    /// {"text": ...} raw text; or .txt files of raw text, cut into --ctx windows).
    #[arg(long, required = true, num_args = 1..)]
    pub prompts: Vec<PathBuf>,
    /// Corpus directory; an existing one is resumed.
    #[arg(long)]
    pub out: PathBuf,
    /// generate: the teacher answers; score: the given response is teacher-forced.
    #[arg(long, value_enum, default_value_t = Mode::Generate)]
    pub mode: Mode,
    /// Log-probabilities stored per response position.
    #[arg(long, default_value_t = 64, value_parser = values::TOP_K)]
    pub top_k: usize,
    /// Longest response the teacher writes (generate).
    #[arg(long, default_value_t = 256, value_parser = values::NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Sampling temperature (generate; 0 = greedy).
    #[arg(long, default_value_t = 0.7, value_parser = values::TEMPERATURE)]
    pub temperature: f32,
    /// Nucleus sampling mass (generate).
    #[arg(long, default_value_t = 0.9, value_parser = values::TOP_P)]
    pub top_p: f32,
    /// Seed: the same seed gives the same corpus.
    #[arg(long, default_value_t = 42, value_parser = values::SEED)]
    pub seed: u64,
    /// System prompt for records that have none.
    #[arg(long)]
    pub system: Option<String>,
    /// Sequences decoded together in one llama.cpp batch.
    #[arg(long, default_value_t = 8, value_parser = values::PARALLEL)]
    pub parallel: usize,
    /// Context length per sequence (prompt + response).
    #[arg(long, default_value_t = 2048, value_parser = values::CTX)]
    pub ctx: usize,
    /// Record at most this many prompts (records of the prompt files).
    #[arg(long, value_parser = values::COUNT)]
    pub limit: Option<usize>,
    /// Answers the teacher samples per prompt (generate, --temperature above 0): every
    /// prompt once, then every prompt again, each answer its own record. A corpus resumed
    /// with a larger --answers-per-prompt keeps what it has and adds the next passes.
    #[arg(long, default_value_t = 1, value_parser = values::ANSWERS)]
    pub answers_per_prompt: usize,
    /// Records per shard (a killed run loses at most one shard of work).
    #[arg(long, default_value_t = 128, value_parser = values::COUNT)]
    pub shard_size: usize,
    /// Skip (and count) bad lines and records too long for the context instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Also store the teacher's final hidden state (after the output norm) at every target
    /// position, for `distill train --hidden-weight` (about 4x the corpus size at H 576).
    #[arg(long)]
    pub hidden: bool,
    /// Remote teacher options (with --teacher http://HOST:PORT).
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Record only slice I of N (0 <= I < N): shards j with j % N == I, so N machines
    /// record at once, each into its own --out; `distill merge` joins them into the corpus
    /// one machine would have written.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Slice>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// A teacher served over HTTP: `--teacher http://HOST:PORT` instead of a GGUF.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// API of the server given as --teacher URL.
    #[arg(long, value_enum, default_value_t = crate::teacher::Api::LlamaServer)]
    pub teacher_api: crate::teacher::Api,
    /// GGUF of the model the server runs, loaded vocabulary-only: prompts, chat template and
    /// token ids are made here and checked against the server's tokenizer.
    #[arg(long, value_name = "GGUF")]
    pub tokenizer: Option<PathBuf>,
    /// Seconds one request to the server may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = values::TIMEOUT)]
    pub teacher_timeout: u64,
}

/// Arguments of `distill merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// New corpus directory to write.
    pub out: PathBuf,
    /// The slice directories written by `record --shard I/N`, all N of them, in any order.
    #[arg(required = true, num_args = 1..)]
    pub slices: Vec<PathBuf>,
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
    #[arg(long, default_value_t = 0, value_parser = values::COUNT0)]
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
    /// Student training throughput and memory at a given size, on synthetic teacher targets
    /// with the teacher's vocabulary; reports the share of measured matmul peak.
    ///
    /// Example: distill bench train --preset base --batch 8 --seq-len 256
    #[command(verbatim_doc_comment)]
    Train(BenchTrainArgs),
    /// Speed of one model in one engine, as JSON (eval runs this in a child process so that
    /// peak memory is the model's own).
    #[command(hide = true)]
    Model(BenchModelArgs),
}

/// Arguments of `distill bench model`.
#[derive(Debug, Clone, Args)]
pub struct BenchModelArgs {
    /// GGUF (llama.cpp) or student directory (candle).
    #[arg(long)]
    pub model: PathBuf,
    /// CPU threads.
    #[arg(long, default_value_t = 2, value_parser = values::THREADS)]
    pub threads: usize,
}

/// Arguments of `distill bench train`.
#[derive(Debug, Clone, Args)]
pub struct BenchTrainArgs {
    /// Student size.
    #[arg(long, value_enum, default_value_t = Preset::Base)]
    pub preset: Preset,
    /// Windows per step.
    #[arg(long, default_value_t = 8, value_parser = values::BATCH)]
    pub batch: usize,
    /// Tokens per window.
    #[arg(long, default_value_t = 256, value_parser = values::SEQ_LEN)]
    pub seq_len: usize,
    /// Vocabulary size (default: the teacher's).
    #[arg(long, value_parser = values::VOCAB)]
    pub vocab: Option<usize>,
    /// Teacher GGUF whose vocabulary size to use.
    #[arg(long, default_value = DEFAULT_TEACHER)]
    pub teacher: PathBuf,
    /// Teacher log-probs per target.
    #[arg(long, default_value_t = 64, value_parser = values::TOP_K)]
    pub top_k: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 3, value_parser = values::COUNT)]
    pub steps: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `distill bench teacher`.
#[derive(Debug, Clone, Args)]
pub struct BenchTeacherArgs {
    /// Teacher model and threads.
    #[command(flatten)]
    pub teacher: TeacherArgs,
    /// Log-probabilities per position.
    #[arg(long, default_value_t = 64, value_parser = values::TOP_K)]
    pub top_k: usize,
    /// Tokens generated per sequence.
    #[arg(long, default_value_t = 128, value_parser = values::NEW_TOKENS)]
    pub gen_tokens: usize,
    /// Tokens scored (teacher-forced) in total.
    #[arg(long, default_value_t = 4096, value_parser = values::COUNT)]
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
