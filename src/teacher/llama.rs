//! [`LlamaTeacher`]: a GGUF model run by llama.cpp (crate `llama-cpp-2`), and [`Session`],
//! which decodes many sequences together in one batch (continuous batching, as llama.cpp's
//! `llama-batched` and server do) and turns the logits of every response position into
//! top-k log-probabilities.
//!
//! `LlamaContext` borrows the model and is not `Send`: a session lives on the thread that
//! made it.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use super::session::{Session, SessionParams};
use crate::corpus::Message;
use crate::gguf::GgufMeta;
use crate::{Error, Result};

/// The llama.cpp backend, initialised once per process with its logging silenced.
///
/// # Errors
/// [`Error::Llama`] if llama.cpp cannot initialise.
pub fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Llama(format!("cannot initialise the backend: {e}")))
}

/// What identifies a teacher: stored in every corpus manifest and checked on reuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherInfo {
    /// File name of the GGUF.
    pub file: String,
    /// Path the GGUF was loaded from (a hint for tools that need the vocabulary again).
    pub path: PathBuf,
    /// sha256 of the GGUF file.
    pub sha256: String,
    /// `general.architecture`.
    pub architecture: String,
    /// Parameter count reported by llama.cpp.
    pub n_params: u64,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// sha256 over tokenizer model, pre-tokenizer, tokens and merges.
    pub tokenizer_fingerprint: String,
    /// The GGUF's chat template (Jinja source as stored).
    pub chat_template: String,
    /// Set when a server ran the model (`--teacher http://...`); the other fields then
    /// describe the `--tokenizer` GGUF, checked against the server's tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Box<super::RemoteInfo>>,
}

/// How to render a conversation for a model without a chat template (a base model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoTemplate {
    /// Refuse, naming the alternatives.
    #[default]
    Refuse,
    /// ChatML, llama.cpp's built-in `chatml` template.
    ChatMl,
    /// The messages' text joined by blank lines: the model continues it.
    Plain,
}

/// A teacher model loaded by llama.cpp.
pub struct LlamaTeacher {
    model: LlamaModel,
    template: Option<LlamaChatTemplate>,
    no_template: NoTemplate,
    /// Identity and vocabulary facts.
    pub info: TeacherInfo,
}

impl LlamaTeacher {
    /// Load the GGUF at `path`; `sha256` is the file's digest (computed by the caller, who
    /// usually needs it before loading).
    ///
    /// # Errors
    /// [`Error::Gguf`] for a missing or non-GGUF file, [`Error::Llama`] when llama.cpp refuses it.
    pub fn load(path: &Path, sha256: String) -> Result<Self> {
        Self::load_with(path, sha256, &LlamaModelParams::default())
    }

    /// Load only the vocabulary and metadata of the GGUF at `path` (no weights): enough to
    /// tokenize, detokenize and apply the chat template for a model run elsewhere.
    ///
    /// # Errors
    /// As [`LlamaTeacher::load`]. [`LlamaTeacher::session`] fails on such a model.
    pub fn load_vocab(path: &Path) -> Result<Self> {
        Self::load_with(
            path,
            String::new(),
            &LlamaModelParams::default().with_vocab_only(true),
        )
    }

    fn load_with(path: &Path, sha256: String, params: &LlamaModelParams) -> Result<Self> {
        let meta = GgufMeta::read(path)?;
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, params).map_err(|e| {
            Error::Gguf {
                path: path.to_path_buf(),
                reason: format!("llama.cpp cannot load it ({e}); is it a complete model of an architecture llama.cpp supports?"),
            }
        })?;
        let template = model.chat_template(None).ok();
        let n_vocab = usize::try_from(model.n_vocab())
            .map_err(|_| Error::Llama("negative vocabulary size".into()))?;
        let info = TeacherInfo {
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            sha256,
            architecture: meta.architecture().unwrap_or("unknown").to_string(),
            n_params: model.n_params(),
            n_vocab,
            tokenizer_fingerprint: meta.tokenizer_fingerprint(),
            chat_template: meta
                .str("tokenizer.chat_template")
                .unwrap_or("")
                .to_string(),
            remote: None,
        };
        Ok(Self {
            model,
            template,
            no_template: NoTemplate::Refuse,
            info,
        })
    }

    /// Tokens of `text`; `special` adds BOS where the model wants one and parses control
    /// tokens such as `<|im_start|>` (right for templated prompts, wrong for plain content).
    pub fn tokenize(&self, text: &str, special: bool) -> Vec<u32> {
        let vocab = self.model.vocab();
        vocab
            .tokenize(text.as_bytes(), special, special)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    /// Tokens of raw text as the model reads a document: BOS where the model wants one,
    /// special-token texts left as text.
    pub fn tokenize_text(&self, text: &str) -> Vec<u32> {
        let vocab = self.model.vocab();
        vocab
            .tokenize(text.as_bytes(), true, false)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    /// Whether llama.cpp puts BOS before a text for this model.
    pub fn adds_bos(&self) -> bool {
        self.model.vocab().should_add_bos()
    }

    /// Text of one token (control tokens included), lossily decoded.
    pub fn piece(&self, id: u32) -> String {
        String::from_utf8_lossy(&self.piece_bytes(id)).into_owned()
    }

    /// Bytes of one token (control tokens included); a multi-byte character may be split
    /// across tokens, so streaming callers join them before decoding.
    pub fn piece_bytes(&self, id: u32) -> Vec<u8> {
        self.model
            .vocab()
            .token_to_piece(LlamaToken(id as i32), true, None)
    }

    /// Text of a token sequence, with multi-byte characters split across tokens joined.
    pub fn detokenize(&self, ids: &[u32]) -> String {
        let vocab = self.model.vocab();
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| vocab.token_to_piece(LlamaToken(id as i32), true, None))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Whether `id` ends a turn (EOS, EOT, `<|im_end|>`...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.model.vocab().is_eog(LlamaToken(id as i32))
    }

    /// Every token that ends a generation, EOS first, then in id order.
    pub fn eog_ids(&self) -> Vec<u32> {
        let eos = self.model.vocab().eos().0;
        let mut ids: Vec<u32> = (0..self.info.n_vocab as u32)
            .filter(|&t| self.is_eog(t))
            .collect();
        ids.sort_by_key(|&t| (t as i32 != eos, t));
        ids
    }

    /// Whether `id` is a control token of the template (`<|im_start|>`, BOS...).
    pub fn is_control(&self, id: u32) -> bool {
        self.model.vocab().is_control(LlamaToken(id as i32))
    }

    /// The token that closes an assistant turn, appended to scored responses.
    pub fn end_of_turn(&self) -> u32 {
        let vocab = self.model.vocab();
        let eot = vocab.eot();
        let tok = if eot.0 >= 0 { eot } else { vocab.eos() };
        tok.0 as u32
    }

    /// The conversation rendered with the GGUF's chat template, ending where the assistant's
    /// answer begins.
    ///
    /// # Errors
    /// [`Error::Llama`] if the model has no chat template or llama.cpp cannot apply it.
    pub fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        let chatml;
        let template = match (&self.template, self.no_template) {
            (Some(t), _) => t,
            (None, NoTemplate::ChatMl) => {
                chatml = LlamaChatTemplate::new("chatml")
                    .map_err(|e| Error::Llama(format!("chatml template: {e}")))?;
                &chatml
            }
            (None, NoTemplate::Plain) => {
                let texts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                return Ok(texts.join("\n\n"));
            }
            (None, NoTemplate::Refuse) => {
                return Err(Error::Llama(format!(
                    "'{}' is a base model without a chat template: pass --template chatml (ChatML turns) or --template none (plain text to continue), or use an instruct/chat GGUF",
                    self.info.file
                )));
            }
        };
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Llama(format!("bad chat message: {e}")))?;
        self.model
            .apply_chat_template(template, &chat, true)
            .map_err(|e| Error::Llama(format!("cannot apply the chat template: {e}")))
    }

    /// What [`LlamaTeacher::render_prompt`] does when the model has no chat template.
    pub fn set_no_template(&mut self, how: NoTemplate) {
        self.no_template = how;
    }

    /// Whether the GGUF carries a chat template.
    pub fn has_template(&self) -> bool {
        self.template.is_some()
    }

    /// Training context length of the model.
    pub fn n_ctx_train(&self) -> usize {
        self.model.n_ctx_train() as usize
    }

    /// Open a decoding session.
    ///
    /// # Errors
    /// [`Error::Llama`] when llama.cpp cannot create the context (usually out of memory).
    pub fn session(&self, params: SessionParams) -> Result<Session<'_>> {
        let parallel = params.parallel.max(1);
        let n_ctx = NonZeroU32::new((params.ctx * parallel) as u32);
        let cparams = LlamaContextParams::default()
            .with_n_ctx(n_ctx)
            .with_n_batch(params.n_batch as u32)
            .with_n_ubatch(params.n_batch as u32)
            .with_n_seq_max(parallel as u32)
            .with_n_threads(params.threads as i32)
            .with_n_threads_batch(params.threads as i32);
        // Embeddings make llama.cpp output every position (logits too), not only the
        // requested ones; only a session that keeps hidden states pays for that.
        let cparams = if params.hidden {
            cparams
                .with_embeddings(true)
                .with_pooling_type(LlamaPoolingType::None)
        } else {
            cparams
        };
        let ctx = self.model.new_context(backend()?, cparams).map_err(|e| {
            Error::Llama(format!(
                "cannot create a context of {} tokens: {e}",
                params.ctx * parallel
            ))
        })?;
        Ok(Session::new(
            self,
            ctx,
            SessionParams { parallel, ..params },
        ))
    }
}
