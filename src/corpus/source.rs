//! Prompt files. A JSONL line is one chat record in any of the forms users already have:
//! `{"prompt"[, "response", "system"]}`, OpenAI `{"messages": [{role, content}]}`, ShareGPT
//! `{"conversations": [{from, value}]}`, Alpaca `{"instruction", "input", "output"}`, or raw
//! text `{"text": ...}` (for base models, scored teacher-forced as in pretraining-style
//! distillation). The form is detected per line, so files may mix them. A `.txt` file is
//! one raw-text record.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::gguf::hex;
use crate::{Error, Result};

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The human side.
    User,
    /// The model side.
    Assistant,
}

impl Role {
    /// The role name chat templates expect.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Speaker.
    pub role: Role,
    /// Text.
    pub content: String,
}

/// What one line holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A conversation.
    Chat(Vec<Message>),
    /// Raw text, scored as it is (no chat template).
    Text(String),
}

/// One record and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRecord {
    /// Source file.
    pub file: PathBuf,
    /// 1-based line in `file`.
    pub line: usize,
    /// The conversation; a response to score, if any, is the last (assistant) message.
    /// Empty for a raw-text record.
    pub messages: Vec<Message>,
    /// Raw text to score teacher-forced (a `{"text"}` line or a `.txt` file).
    pub text: Option<String>,
}

impl PromptRecord {
    /// The conversation up to the turn the teacher should write, and the given response
    /// (the final assistant message), if there is one.
    pub fn split_response(&self) -> (&[Message], Option<&str>) {
        match self.messages.split_last() {
            Some((last, rest)) if last.role == Role::Assistant => (rest, Some(&last.content)),
            _ => (&self.messages, None),
        }
    }

    /// An error about this record.
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::Prompt {
            file: self.file.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }
}

/// A parsed prompt file.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file as given.
    pub path: PathBuf,
    /// sha256 of its bytes, so a resumed run can tell that it changed.
    pub sha256: String,
    /// Its usable records, in file order.
    pub records: Vec<PromptRecord>,
    /// Lines skipped as bad (only with `skip_bad`).
    pub skipped: usize,
}

/// Whether any record of `sources` is raw text, and whether any is a chat record.
pub fn kinds(sources: &[Source]) -> (bool, bool) {
    let records = || sources.iter().flat_map(|s| &s.records);
    (
        records().any(|r| r.text.is_some()),
        records().any(|r| r.text.is_none()),
    )
}

impl Source {
    /// Read and parse `path`. A bad line is an error naming file and line, unless `skip_bad`,
    /// in which case it is counted in [`Source::skipped`].
    ///
    /// # Errors
    /// [`Error::Io`], [`Error::Prompt`], or [`Error::EmptyPrompts`] when no record remains.
    pub fn read(path: &Path, skip_bad: bool) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let sha256 = hex(&Sha256::digest(&bytes));
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Error::Prompt {
                file: path.to_path_buf(),
                line,
                reason: "not valid UTF-8".into(),
            }
        })?;
        let (records, skipped) = if path.extension().is_some_and(|e| e == "txt") {
            let record = PromptRecord {
                file: path.to_path_buf(),
                line: 1,
                messages: Vec::new(),
                text: Some(text.clone()),
            };
            (
                if text.trim().is_empty() {
                    Vec::new()
                } else {
                    vec![record]
                },
                0,
            )
        } else {
            parse_lines(path, &text, skip_bad)?
        };
        if records.is_empty() {
            return Err(Error::EmptyPrompts(path.to_path_buf()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            sha256,
            records,
            skipped,
        })
    }
}

/// The records of a JSONL file and the bad lines skipped (with `skip_bad`).
fn parse_lines(path: &Path, text: &str, skip_bad: bool) -> Result<(Vec<PromptRecord>, usize)> {
    let mut records = Vec::new();
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(record) => {
                let (messages, text) = match record {
                    Record::Chat(m) => (m, None),
                    Record::Text(t) => (Vec::new(), Some(t)),
                };
                records.push(PromptRecord {
                    file: path.to_path_buf(),
                    line: i + 1,
                    messages,
                    text,
                });
            }
            Err(_) if skip_bad => skipped += 1,
            Err(reason) => {
                return Err(Error::Prompt {
                    file: path.to_path_buf(),
                    line: i + 1,
                    reason: format!(
                        "{reason} (fix the line, or pass --skip-bad to skip such lines)"
                    ),
                });
            }
        }
    }
    Ok((records, skipped))
}

/// What one JSONL line holds, or why it is not a record.
pub fn parse_line(line: &str) -> std::result::Result<Record, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("expected a JSON object".into());
    };
    let chat = ["messages", "conversations", "instruction", "prompt"];
    if !chat.iter().any(|k| obj.contains_key(*k)) && obj.contains_key("text") {
        let text = text_field(&obj, "text")?.ok_or("field 'text' must be a string")?;
        if text.trim().is_empty() {
            return Err("field 'text' is empty".into());
        }
        return Ok(Record::Text(text));
    }
    chat_record(&obj).map(Record::Chat)
}

fn chat_record(obj: &Map<String, Value>) -> std::result::Result<Vec<Message>, String> {
    let messages = if let Some(list) = obj.get("messages") {
        turns(list, "messages", "role", "content")?
    } else if let Some(list) = obj.get("conversations") {
        turns(list, "conversations", "from", "value")?
    } else if obj.contains_key("instruction") {
        alpaca(obj)?
    } else if obj.contains_key("prompt") {
        simple(obj)?
    } else {
        return Err(
            "no record found: expected a 'prompt', 'messages', 'conversations', 'instruction' or 'text' field".into(),
        );
    };
    if !messages.iter().any(|m| m.role == Role::User) {
        return Err("the record has no user turn".into());
    }
    if let Some(m) = messages.iter().find(|m| m.content.contains('\0')) {
        return Err(format!(
            "a {} turn contains a NUL character",
            m.role.as_str()
        ));
    }
    Ok(messages)
}

fn text_field(obj: &Map<String, Value>, key: &str) -> std::result::Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("field '{key}' must be a string")),
    }
}

fn simple(obj: &Map<String, Value>) -> std::result::Result<Vec<Message>, String> {
    let mut out = Vec::new();
    if let Some(system) = text_field(obj, "system")? {
        out.push(Message {
            role: Role::System,
            content: system,
        });
    }
    let prompt = text_field(obj, "prompt")?.ok_or("field 'prompt' must be a string")?;
    if prompt.trim().is_empty() {
        return Err("field 'prompt' is empty".into());
    }
    out.push(Message {
        role: Role::User,
        content: prompt,
    });
    if let Some(response) = text_field(obj, "response")? {
        out.push(Message {
            role: Role::Assistant,
            content: response,
        });
    }
    Ok(out)
}

fn alpaca(obj: &Map<String, Value>) -> std::result::Result<Vec<Message>, String> {
    let instruction = text_field(obj, "instruction")?.unwrap_or_default();
    if instruction.trim().is_empty() {
        return Err("field 'instruction' is empty".into());
    }
    let input = text_field(obj, "input")?.unwrap_or_default();
    let user = if input.trim().is_empty() {
        instruction
    } else {
        format!("{instruction}\n\n{input}")
    };
    let mut out = vec![Message {
        role: Role::User,
        content: user,
    }];
    if let Some(output) = text_field(obj, "output")? {
        out.push(Message {
            role: Role::Assistant,
            content: output,
        });
    }
    Ok(out)
}

fn turns(
    list: &Value,
    field: &str,
    role_key: &str,
    text_key: &str,
) -> std::result::Result<Vec<Message>, String> {
    let Value::Array(items) = list else {
        return Err(format!("field '{field}' must be an array"));
    };
    if items.is_empty() {
        return Err(format!("field '{field}' is empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(turn) = item else {
                return Err(format!("{field}[{i}] must be an object"));
            };
            let role =
                text_field(turn, role_key)?.ok_or(format!("{field}[{i}] has no '{role_key}'"))?;
            let content = text_field(turn, text_key)?
                .ok_or(format!("{field}[{i}] has no '{text_key}' string"))?;
            let role = match role.as_str() {
                "system" | "developer" => Role::System,
                "user" | "human" => Role::User,
                "assistant" | "gpt" | "model" | "bot" => Role::Assistant,
                other => return Err(format!("{field}[{i}] has unknown role '{other}'")),
            };
            Ok(Message { role, content })
        })
        .collect()
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
