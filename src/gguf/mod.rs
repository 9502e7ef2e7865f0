//! GGUF files, the llama.cpp model format: their metadata (read with candle's
//! `quantized::gguf_file`), the [`TeacherProfile`] every command checks before it starts,
//! the `tokenizer.json` built from a GGUF's vocabulary, and [`cut`], which writes a teacher
//! with a subset of its blocks.

pub mod cut;
pub mod meta;
pub mod profile;
pub mod tokenizer;

pub use meta::{GgufMeta, TensorMeta, hex};
pub use profile::{Family, TeacherProfile};
