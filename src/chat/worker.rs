//! One OS thread per model. A worker loads its model, reports [`Msg::Loaded`] (or
//! [`Msg::LoadFailed`]), then answers jobs from an unbounded channel (`blocking_recv`),
//! streaming [`Msg`]s back over the UI's tokio channel, whose `send` is synchronous (bottom's
//! collection thread works the same way). A cancel flag per request is checked between
//! tokens (tenere's `terminate_response_signal`); a failed send means the UI is gone.
//! llama.cpp contexts are not `Send`, which is one more reason each model keeps its thread.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::engine::{Decoder, Event, LlamaDecoder, Request, generate};
use super::student::{CandleDecoder, vocab_gguf};
use super::{ModelInfo, Msg, ReqId, Side};
use crate::teacher::{LlamaTeacher, NoTemplate};

/// Prefix of worker thread names; the TUI's panic hook leaves the terminal alone for them.
pub const THREAD_PREFIX: &str = "chat-";

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A GGUF run in llama.cpp (the teacher or an exported student).
    Gguf(PathBuf),
    /// A student directory run in candle, with a GGUF to fall back on for its vocabulary.
    StudentDir {
        /// The directory `distill train` wrote.
        dir: PathBuf,
        /// Teacher GGUF to use when the one in the student's provenance is gone.
        vocab_fallback: Option<PathBuf>,
    },
}

impl ModelSource {
    /// A directory is a candle student, anything else a GGUF.
    pub fn from_path(path: PathBuf, vocab_fallback: Option<PathBuf>) -> Self {
        if path.is_dir() {
            ModelSource::StudentDir {
                dir: path,
                vocab_fallback,
            }
        } else {
            ModelSource::Gguf(path)
        }
    }

    /// The name shown while it loads.
    pub fn name(&self) -> String {
        let path = match self {
            ModelSource::Gguf(p) => p,
            ModelSource::StudentDir { dir, .. } => dir,
        };
        path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        )
    }
}

struct Job {
    req: ReqId,
    request: Request,
    cancel: Arc<AtomicBool>,
}

type Tx = UnboundedSender<Msg>;

/// The running workers: a job channel and the current request's cancel flag per side.
pub struct Workers {
    senders: [Option<UnboundedSender<Job>>; 2],
    flags: [Option<(ReqId, Arc<AtomicBool>)>; 2],
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Start one thread per model; each loads its model with a context of `ctx` tokens and
    /// warms it up with `threads` threads.
    pub fn spawn(
        models: Vec<(Side, ModelSource)>,
        (ctx, no_template): (usize, NoTemplate),
        threads: usize,
        tx: &Tx,
    ) -> Self {
        let mut senders = [None, None];
        let mut handles = Vec::new();
        for (side, source) in models {
            let (job_tx, job_rx) = unbounded_channel();
            let worker_tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{THREAD_PREFIX}{}", side.key()))
                .spawn(move || run(side, source, (ctx, threads, no_template), job_rx, worker_tx));
            match spawned {
                Ok(h) => {
                    senders[side.index()] = Some(job_tx);
                    handles.push(h);
                }
                Err(e) => {
                    let error = format!("cannot start a thread: {e}");
                    let _ = tx.send(Msg::LoadFailed { side, error });
                }
            }
        }
        Self {
            senders,
            flags: [None, None],
            handles,
        }
    }

    /// Hand `request` to `side`'s worker with a fresh cancel flag.
    pub fn generate(&mut self, side: Side, req: ReqId, request: Request) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.flags[side.index()] = Some((req, cancel.clone()));
        if let Some(tx) = &self.senders[side.index()] {
            // A worker that is gone has already reported why.
            let _ = tx.send(Job {
                req,
                request,
                cancel,
            });
        }
    }

    /// Stop request `req` of `side` at its next token.
    pub fn cancel(&mut self, side: Side, req: ReqId) {
        if let Some((r, flag)) = &self.flags[side.index()]
            && *r == req
        {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// Cancel everything, close the job channels and give the threads up to `wait` to end
    /// (a long prompt cannot be interrupted mid-batch; such a thread is left to the exit).
    pub fn shutdown(mut self, wait: Duration) {
        for (_, flag) in self.flags.iter().flatten() {
            flag.store(true, Ordering::Relaxed);
        }
        self.senders = [None, None];
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !self.handles.iter().all(|h| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        for h in self.handles {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// Text of a panic payload.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The thread body: load, serve; after a failure, answer every job with it. `size` is
/// (context length, threads, what to do without a chat template).
fn run(
    side: Side,
    source: ModelSource,
    size: (usize, usize, NoTemplate),
    mut rx: UnboundedReceiver<Job>,
    tx: Tx,
) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        load_and_serve(side, &source, size, &mut rx, &tx)
    }));
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(panic) => format!("crashed: {}", panic_text(panic.as_ref())),
    };
    tracing::warn!("{} model: {error}", side.key());
    if tx
        .send(Msg::LoadFailed {
            side,
            error: error.clone(),
        })
        .is_err()
    {
        return;
    }
    while let Some(job) = rx.blocking_recv() {
        let error = error.clone();
        if tx
            .send(Msg::Failed {
                side,
                req: job.req,
                error,
            })
            .is_err()
        {
            return;
        }
    }
}

fn load_and_serve(
    side: Side,
    source: &ModelSource,
    (ctx, threads, no_template): (usize, usize, NoTemplate),
    rx: &mut UnboundedReceiver<Job>,
    tx: &Tx,
) -> Result<(), String> {
    let ready = |vocab: &LlamaTeacher, dec: &mut dyn Decoder| warm_up(vocab, dec, threads);
    match source {
        ModelSource::Gguf(path) => {
            let mut model = LlamaTeacher::load(path, String::new()).map_err(|e| e.to_string())?;
            model.set_no_template(no_template);
            let mut dec = LlamaDecoder::new(&model, ctx);
            let info = ModelInfo {
                name: model.info.file.clone(),
                engine: "llama.cpp".into(),
                params: model.info.n_params,
                n_ctx: dec.n_ctx(),
            };
            ready(&model, &mut dec)?;
            serve(side, &model, &mut dec, info, rx, tx)
        }
        ModelSource::StudentDir {
            dir,
            vocab_fallback,
        } => {
            let gguf = vocab_gguf(dir, vocab_fallback.as_deref()).map_err(|e| e.to_string())?;
            let mut vocab = LlamaTeacher::load_vocab(&gguf).map_err(|e| e.to_string())?;
            vocab.set_no_template(no_template);
            let (mut dec, info) =
                CandleDecoder::load(dir, vocab.info.n_vocab, ctx).map_err(|e| e.to_string())?;
            ready(&vocab, &mut dec)?;
            serve(side, &vocab, &mut dec, info, rx, tx)
        }
    }
}

/// Make the context and run one short prompt, so the first answer's time to first token
/// does not include setting up (the warm-up run of `eval::speed`).
fn warm_up(vocab: &LlamaTeacher, dec: &mut dyn Decoder, threads: usize) -> Result<(), String> {
    dec.set_threads(threads).map_err(|e| e.to_string())?;
    let probe = vocab.tokenize("Hello", true);
    if !probe.is_empty() {
        dec.prefill(&probe)
            .map_err(|e| format!("warm-up failed: {e}"))?;
    }
    Ok(())
}

/// Answer jobs until the channel closes or the UI is gone. A panic during a generation is
/// reported for that request and ends the worker (its cache may be inconsistent).
fn serve(
    side: Side,
    vocab: &LlamaTeacher,
    dec: &mut dyn Decoder,
    info: ModelInfo,
    rx: &mut UnboundedReceiver<Job>,
    tx: &Tx,
) -> Result<(), String> {
    if tx.send(Msg::Loaded { side, info }).is_err() {
        return Ok(());
    }
    while let Some(Job {
        req,
        request,
        cancel,
    }) = rx.blocking_recv()
    {
        let mut emit = |ev: Event| {
            let msg = match ev {
                Event::Started(at) => Msg::Started { side, req, at },
                Event::Token { text, tokens, at } => Msg::Token {
                    side,
                    req,
                    text,
                    tokens,
                    at,
                },
            };
            tx.send(msg).is_ok()
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            dec.set_threads(request.threads)?;
            generate(vocab, dec, &request, &cancel, &mut emit)
        }));
        let (msg, fatal) = match outcome {
            Ok(Ok(stats)) => (Msg::Done { side, req, stats }, None),
            Ok(Err(e)) => (
                Msg::Failed {
                    side,
                    req,
                    error: e.to_string(),
                },
                None,
            ),
            Err(panic) => {
                let error = format!("crashed: {}", panic_text(panic.as_ref()));
                (
                    Msg::Failed {
                        side,
                        req,
                        error: error.clone(),
                    },
                    Some(error),
                )
            }
        };
        if tx.send(msg).is_err() {
            return Ok(());
        }
        if let Some(error) = fatal {
            return Err(error);
        }
    }
    Ok(())
}
