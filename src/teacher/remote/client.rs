//! [`Client`]: JSON over plain HTTP to a teacher server, with a per-request timeout and
//! retries with backoff for what a restart or an overload looks like (no connection, a
//! timeout, HTTP 5xx). A 4xx is the request's fault and is never retried.

use std::time::Duration;

use serde_json::Value;

use crate::{Error, Result};

/// Attempts per request before the server counts as gone.
pub const TRIES: u32 = 5;
/// Seconds waited before the 2nd, 3rd... attempt (2+4+8+16 s).
const BACKOFF_S: [u64; 4] = [2, 4, 8, 16];
/// Largest reply read (a long response with k = 256 runs to tens of MB of JSON).
const MAX_REPLY: u64 = 1 << 30;

/// An HTTP client bound to one server.
#[derive(Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

/// One failed attempt: retry it or give up at once.
enum Attempt {
    Retry(String),
    Fatal(Error),
}

impl Client {
    /// A client for `base` (`http://HOST:PORT`, no trailing slash needed); each request is
    /// bounded by `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path`, parsed as JSON.
    ///
    /// # Errors
    /// [`Error::RemoteRequest`] on a 4xx, [`Error::RemoteGone`] when every try failed,
    /// [`Error::Remote`] for a reply that is not JSON.
    pub fn get(&self, path: &str) -> Result<Value> {
        self.with_retries(path, |url| self.agent.get(url).call())
    }

    /// POST `body` to `path`, the reply parsed as JSON.
    ///
    /// # Errors
    /// As [`Client::get`].
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.with_retries(path, |url| self.agent.post(url).send_json(body))
    }

    fn with_retries(
        &self,
        path: &str,
        send: impl Fn(&str) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut waited = 0;
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                let wait = BACKOFF_S[(attempt as usize - 1).min(BACKOFF_S.len() - 1)];
                std::thread::sleep(Duration::from_secs(wait));
                waited += wait;
            }
            match self.attempt(&url, &send) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(why)) => last = why,
            }
        }
        Err(Error::RemoteGone {
            url,
            reason: last,
            tries: TRIES,
            waited_s: waited,
        })
    }

    fn attempt(
        &self,
        url: &str,
        send: &impl Fn(&str) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> std::result::Result<Value, Attempt> {
        let mut resp = match send(url) {
            Ok(r) => r,
            Err(ureq::Error::BadUri(e)) => {
                return Err(Attempt::Fatal(Error::Remote {
                    url: url.to_string(),
                    reason: format!("not a usable URL ({e}); give --teacher http://HOST:PORT"),
                }));
            }
            Err(e) => return Err(Attempt::Retry(e.to_string())),
        };
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_REPLY)
            .read_to_string()
            .map_err(|e| Attempt::Retry(format!("reading the reply: {e}")))?;
        if status >= 500 {
            return Err(Attempt::Retry(format!(
                "HTTP {status}: {}",
                server_message(&text)
            )));
        }
        if status >= 400 {
            return Err(Attempt::Fatal(Error::RemoteRequest {
                url: url.to_string(),
                status,
                message: server_message(&text),
                fix: "check --teacher-api, --top-k and --ctx against the server's limits".into(),
            }));
        }
        serde_json::from_str(&text).map_err(|e| {
            Attempt::Fatal(Error::Remote {
                url: url.to_string(),
                reason: format!("the reply is not JSON ({e}); is --teacher-api right?"),
            })
        })
    }
}

/// The message inside an error reply: `{"error": {"message": ...}}` (llama-server, OpenAI),
/// `{"error": "..."}`, `{"message": ...}`, or the text itself.
pub fn server_message(text: &str) -> String {
    let v: Option<Value> = serde_json::from_str(text).ok();
    let found = v.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error").filter(|e| e.is_string()))
            .or_else(|| v.get("message"))
            .or_else(|| v.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    found.unwrap_or_else(|| text.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_found_in_the_usual_shapes() {
        assert_eq!(
            server_message(r#"{"error":{"code":400,"message":"bad n_probs","type":"x"}}"#),
            "bad n_probs"
        );
        assert_eq!(server_message(r#"{"error":"nope"}"#), "nope");
        assert_eq!(server_message(r#"{"message":"m"}"#), "m");
        assert_eq!(server_message("plain text"), "plain text");
    }
}
