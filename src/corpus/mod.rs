//! Prompt corpora: the chat records `record` feeds to the teacher.

pub mod source;

pub use source::{Message, PromptRecord, Record, Role, Source, kinds};
