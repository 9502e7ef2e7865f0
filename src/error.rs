//! The library's one error type. Messages name the bad value in 'single quotes' and say
//! what to do about it; the binary adds context with anyhow at the edges.

use std::path::PathBuf;

/// Everything that can go wrong inside the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("'{path}': {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file that should be a GGUF model is missing or is not one.
    #[error("teacher model '{path}': {reason}")]
    Gguf {
        /// The model file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// llama.cpp refused to load a model or create a context.
    #[error("llama.cpp: {0}")]
    Llama(String),
    /// A prompt record could not be used.
    #[error("{file}:{line}: {reason}")]
    Prompt {
        /// The prompt file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A prompt file holds no usable record.
    #[error(
        "prompt file '{0}' holds no records: give a JSONL file with one record a line, or a .txt file of text"
    )]
    EmptyPrompts(PathBuf),
    /// A corpus directory is unreadable, damaged or does not match the request.
    #[error("corpus '{path}': {reason}")]
    Corpus {
        /// The corpus directory or shard.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A safetensors file could not be written or parsed.
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A JSON document could not be written or parsed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Another process holds the output directory's lock.
    #[error(
        "'{dir}' is in use by another distill process (pid {pid}); wait for it to finish or stop it, or choose another output directory"
    )]
    Locked {
        /// The locked directory.
        dir: PathBuf,
        /// The holder's pid, as written in the lock file.
        pid: String,
    },
    /// A stage was asked to stop (its stop flag was set) before it finished; what it had
    /// committed is kept and a rerun resumes from there.
    #[error("stopped on request; run the same command again to resume")]
    Stopped,
    /// A remote teacher answered in a way distill cannot use (a wrong tokenizer, a reply
    /// without log-probabilities, an unsupported mode).
    #[error("remote teacher '{url}': {reason}")]
    Remote {
        /// The server.
        url: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A remote teacher refused a request (HTTP 4xx): the request must change, not be retried.
    #[error("remote teacher '{url}' refused the request (HTTP {status}): {message}; {fix}")]
    RemoteRequest {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// The server's own message.
        message: String,
        /// What to change.
        fix: String,
    },
    /// A remote teacher stayed unreachable (or kept failing with 5xx / timeouts) through
    /// every retry.
    #[error(
        "remote teacher '{url}' is gone: {reason} (after {tries} tries over {waited_s} s); the finished shards are kept: start the server again and rerun the same command to resume"
    )]
    RemoteGone {
        /// The endpoint.
        url: String,
        /// The last failure.
        reason: String,
        /// Attempts made.
        tries: u32,
        /// Seconds spent waiting between them.
        waited_s: u64,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error tagged with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
