//! One OS thread, the engine, hosts both models. It loads the teacher, then the student,
//! reporting [`Msg::Loaded`] (or [`Msg::LoadFailed`]) for each, then answers jobs from an
//! unbounded channel, streaming [`Msg`]s back over the UI's tokio channel, whose `send` is
//! synchronous (bottom's collection thread works the same way). Answers advance a token at
//! a time; when both models are answering (race mode), the one that has had less compute
//! goes next. A cancel flag per request is checked between tokens (tenere's
//! `terminate_response_signal`); a failed send means the UI is gone.
//!
//! Why one thread: llama.cpp runs its threads as an OpenMP team owned by the calling thread.
//! Two calling threads make two teams, and with more team threads than cores libgomp stops
//! spinning at its barriers, which cut the teacher's decode from 117 to 47 tokens/s on
//! 2 cores even while the student sat idle (docs/BENCHMARKS.md). llama.cpp contexts are not
//! `Send` either, so the models never leave this thread.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::engine::{Decoder, Event, Generation, LlamaDecoder, Request};
use super::remote::RemoteDecoder;
use super::student::{CandleDecoder, vocab_gguf};
use super::{ModelInfo, Msg, ReqId, Side};
use crate::teacher::{Api, LlamaTeacher, NoTemplate, RemoteTeacher};

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
    /// A teacher on a server (`--teacher http://HOST:PORT`), with the GGUF of the model it
    /// runs for the vocabulary and the chat template.
    Remote {
        /// The server's base URL.
        url: String,
        /// Its API.
        api: Api,
        /// The GGUF loaded vocabulary-only.
        tokenizer: PathBuf,
        /// Seconds one request may take.
        timeout_s: u64,
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
            ModelSource::Remote { url, .. } => return url.clone(),
        };
        path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        )
    }
}

struct Job {
    side: Side,
    req: ReqId,
    request: Request,
    cancel: Arc<AtomicBool>,
}

type Tx = UnboundedSender<Msg>;

/// The running engine: its job channel and the current request's cancel flag per side.
pub struct Workers {
    sender: Option<UnboundedSender<Job>>,
    flags: [Option<(ReqId, Arc<AtomicBool>)>; 2],
    handle: Option<JoinHandle<()>>,
}

impl Workers {
    /// Start the engine thread; it loads each model with a context of `ctx` tokens and warms
    /// it up with `threads` threads, the teacher first.
    pub fn spawn(
        models: Vec<(Side, ModelSource)>,
        (ctx, no_template): (usize, NoTemplate),
        threads: usize,
        tx: &Tx,
    ) -> Self {
        let (job_tx, job_rx) = unbounded_channel();
        let sides: Vec<Side> = models.iter().map(|(side, _)| *side).collect();
        let engine_tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{THREAD_PREFIX}engine"))
            .spawn(move || run(models, (ctx, threads, no_template), job_rx, engine_tx));
        let (sender, handle) = match spawned {
            Ok(h) => (Some(job_tx), Some(h)),
            Err(e) => {
                for side in sides {
                    let error = format!("cannot start a thread: {e}");
                    let _ = tx.send(Msg::LoadFailed { side, error });
                }
                (None, None)
            }
        };
        Self {
            sender,
            flags: [None, None],
            handle,
        }
    }

    /// Hand `request` for `side` to the engine with a fresh cancel flag.
    pub fn generate(&mut self, side: Side, req: ReqId, request: Request) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.flags[side.index()] = Some((req, cancel.clone()));
        if let Some(tx) = &self.sender {
            // An engine that is gone has already reported why.
            let _ = tx.send(Job {
                side,
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

    /// Cancel everything, close the job channel and give the thread up to `wait` to end
    /// (a long prompt cannot be interrupted mid-batch; such a thread is left to the exit).
    pub fn shutdown(mut self, wait: Duration) {
        for (_, flag) in self.flags.iter().flatten() {
            flag.store(true, Ordering::Relaxed);
        }
        self.sender = None;
        let Some(handle) = self.handle else { return };
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if handle.is_finished() {
            let _ = handle.join();
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

/// A model as read from disk: the GGUF whose vocabulary (and, for a GGUF model, weights)
/// llama.cpp holds, and the model's own decoder when llama.cpp does not run it (a candle
/// student, a server).
struct Opened {
    vocab: LlamaTeacher,
    own: Option<(Box<dyn Decoder>, ModelInfo)>,
}

/// What the engine holds for one side.
enum Slot<'m> {
    Ready {
        vocab: &'m LlamaTeacher,
        dec: Box<dyn Decoder + 'm>,
    },
    Failed(String),
    Absent,
}

/// An answer being written.
struct Active {
    req: ReqId,
    cancel: Arc<AtomicBool>,
    generation: Generation,
    /// Compute time spent on it so far, which decides who goes next.
    used: Duration,
}

/// The thread body: load both models, then serve until the job channel closes or the UI is
/// gone.
fn run(
    models: Vec<(Side, ModelSource)>,
    (ctx, threads, no_template): (usize, usize, NoTemplate),
    mut rx: UnboundedReceiver<Job>,
    tx: Tx,
) {
    let mut sources: [Option<ModelSource>; 2] = [None, None];
    for (side, source) in models {
        sources[side.index()] = Some(source);
    }
    let [teacher, student] = sources;
    // Each side's model lives in its own local so that its decoder can borrow it.
    let mut opened_t = teacher.map(|s| guarded(|| open(&s, ctx, no_template)));
    let slot_t = ready(Side::Teacher, opened_t.as_mut(), (ctx, threads), &tx);
    let mut opened_s = student.map(|s| guarded(|| open(&s, ctx, no_template)));
    let slot_s = ready(Side::Student, opened_s.as_mut(), (ctx, threads), &tx);
    let (Some(slot_t), Some(slot_s)) = (slot_t, slot_s) else {
        return;
    };
    serve([slot_t, slot_s], &mut rx, &tx);
}

/// Run `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(format!("crashed: {}", panic_text(panic.as_ref()))))
}

fn open(source: &ModelSource, ctx: usize, no_template: NoTemplate) -> Result<Opened, String> {
    match source {
        ModelSource::Gguf(path) => {
            let mut vocab = LlamaTeacher::load(path, String::new()).map_err(|e| e.to_string())?;
            vocab.set_no_template(no_template);
            Ok(Opened { vocab, own: None })
        }
        ModelSource::StudentDir {
            dir,
            vocab_fallback,
        } => {
            let gguf = vocab_gguf(dir, vocab_fallback.as_deref()).map_err(|e| e.to_string())?;
            let mut vocab = LlamaTeacher::load_vocab(&gguf).map_err(|e| e.to_string())?;
            vocab.set_no_template(no_template);
            let (dec, info) =
                CandleDecoder::load(dir, vocab.info.n_vocab, ctx).map_err(|e| e.to_string())?;
            Ok(Opened {
                vocab,
                own: Some((Box::new(dec), info)),
            })
        }
        ModelSource::Remote {
            url,
            api,
            tokenizer,
            timeout_s,
        } => {
            // The sha256 only labels corpora; the chat records none, so the GGUF (possibly
            // tens of GB) is not hashed.
            let timeout = Duration::from_secs(*timeout_s);
            let teacher = RemoteTeacher::connect(url, *api, tokenizer, String::new(), timeout)
                .map_err(|e| e.to_string())?;
            // The decoder owns the connection; the engine borrows a vocabulary of its own.
            let mut vocab = LlamaTeacher::load_vocab(tokenizer).map_err(|e| e.to_string())?;
            vocab.set_no_template(no_template);
            let dec = RemoteDecoder::new(teacher, ctx);
            let info = dec.info();
            Ok(Opened {
                vocab,
                own: Some((Box::new(dec), info)),
            })
        }
    }
}

/// Make `side`'s decoder, warm it up and report it loaded (or why not). `None` when the UI
/// is gone.
fn ready<'m>(
    side: Side,
    opened: Option<&'m mut Result<Opened, String>>,
    (ctx, threads): (usize, usize),
    tx: &Tx,
) -> Option<Slot<'m>> {
    let Some(opened) = opened else {
        return Some(Slot::Absent);
    };
    let made = match opened {
        Ok(Opened { vocab, own }) => {
            let vocab: &'m LlamaTeacher = vocab;
            guarded(|| {
                let made: (Box<dyn Decoder + 'm>, ModelInfo) = match own.take() {
                    Some((dec, info)) => (dec, info),
                    None => {
                        let dec = LlamaDecoder::new(vocab, ctx);
                        let info = ModelInfo {
                            name: vocab.info.file.clone(),
                            engine: "llama.cpp".into(),
                            params: vocab.info.n_params,
                            n_ctx: dec.n_ctx(),
                        };
                        (Box::new(dec), info)
                    }
                };
                let (mut dec, info) = made;
                warm_up(vocab, dec.as_mut(), threads)?;
                Ok((vocab, dec, info))
            })
        }
        Err(e) => Err(e.clone()),
    };
    let (slot, msg) = match made {
        Ok((vocab, dec, info)) => (Slot::Ready { vocab, dec }, Msg::Loaded { side, info }),
        Err(error) => {
            tracing::warn!("{} model: {error}", side.key());
            let msg = Msg::LoadFailed {
                side,
                error: error.clone(),
            };
            (Slot::Failed(error), msg)
        }
    };
    tx.send(msg).is_ok().then_some(slot)
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

/// Answer jobs, one token at a time, always advancing the running answer that has had the
/// least compute so far (so a race gives both models the same share of the CPU). Returns
/// when the job channel closes or the UI is gone. A panic during a generation is reported
/// for that request and fails that side from then on (its cache may be inconsistent).
fn serve(mut slots: [Slot<'_>; 2], rx: &mut UnboundedReceiver<Job>, tx: &Tx) {
    let mut queues: [VecDeque<Job>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut active: [Option<Active>; 2] = [None, None];
    loop {
        let idle = active.iter().all(Option::is_none) && queues.iter().all(VecDeque::is_empty);
        if idle {
            match rx.blocking_recv() {
                Some(job) => queues[job.side.index()].push_back(job),
                None => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(job) => queues[job.side.index()].push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        for side in Side::ALL {
            let i = side.index();
            if active[i].is_none()
                && let Some(job) = queues[i].pop_front()
            {
                match start(&mut slots[i], job) {
                    Ok(a) => active[i] = Some(a),
                    Err(msg) => {
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let next = Side::ALL
            .into_iter()
            .filter_map(|side| active[side.index()].as_ref().map(|a| (a.used, side)))
            .min_by_key(|(used, _)| *used);
        let Some((_, side)) = next else { continue };
        let i = side.index();
        let (Slot::Ready { vocab, dec }, Some(a)) = (&mut slots[i], &mut active[i]) else {
            active[i] = None;
            continue;
        };
        let req = a.req;
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
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            a.generation
                .advance(vocab, dec.as_mut(), &a.cancel, &mut emit)
        }));
        a.used += t.elapsed();
        let msgs = match outcome {
            Ok(Ok(None)) => continue,
            Ok(Ok(Some(stats))) => vec![Msg::Done { side, req, stats }],
            Ok(Err(e)) => vec![Msg::Failed {
                side,
                req,
                error: e.to_string(),
            }],
            Err(panic) => {
                let error = format!("crashed: {}", panic_text(panic.as_ref()));
                tracing::warn!("{} model: {error}", side.key());
                slots[i] = Slot::Failed(error.clone());
                vec![
                    Msg::Failed {
                        side,
                        req,
                        error: error.clone(),
                    },
                    Msg::LoadFailed { side, error },
                ]
            }
        };
        active[i] = None;
        for msg in msgs {
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
}

/// Begin `job` on its side, or the message that says why it cannot run.
fn start(slot: &mut Slot<'_>, job: Job) -> Result<Active, Msg> {
    let Job {
        side,
        req,
        request,
        cancel,
    } = job;
    let failed = |error: String| Msg::Failed { side, req, error };
    match slot {
        Slot::Ready { dec, .. } => {
            dec.set_threads(request.threads)
                .map_err(|e| failed(e.to_string()))?;
            Ok(Active {
                req,
                cancel,
                generation: Generation::new(request),
                used: Duration::ZERO,
            })
        }
        Slot::Failed(error) => Err(failed(error.clone())),
        Slot::Absent => Err(failed(format!("no {} model was loaded", side.key()))),
    }
}
