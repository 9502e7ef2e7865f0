//! The teacher: a llama.cpp model that writes or scores responses and reports its top-k
//! next-token distribution at every response position.

pub mod llama;
pub mod topk;

pub use llama::{Job, LlamaTeacher, Sequence, Session, SessionParams, Stop, TeacherInfo};
pub use topk::{Rng, Sampling};
