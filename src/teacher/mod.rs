//! The teacher: a llama.cpp model that writes or scores responses and reports its top-k
//! next-token distribution at every response position.

pub mod llama;
pub mod session;
mod step;
pub mod topk;

pub use llama::{LlamaTeacher, NoTemplate, TeacherInfo};
pub use session::{Job, Sequence, Session, SessionParams, Stop};
pub use topk::argmax;
pub use topk::{Rng, Sampling};
