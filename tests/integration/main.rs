//! Integration tests: one binary, one file per flow. They drive the real `distill` binary
//! and the real teacher GGUF fetched by scripts/setup.sh.

mod chat;
mod common;
mod eval;
mod export;
mod pipeline;
mod record;
mod tokenizer;
mod train;
