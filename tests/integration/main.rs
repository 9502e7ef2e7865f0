//! Integration tests: one binary, one file per flow. They drive the real `distill` binary
//! and the real teacher GGUF fetched by scripts/setup.sh.

mod chat;
mod common;
mod eval;
mod export;
mod families;
mod handoff;
mod hf;
mod openai;
mod options;
mod pipeline;
mod pruning;
mod qwen2;
mod record;
mod reliability;
mod remote;
mod shards;
mod teachers;
mod tokenizer;
mod train;
