//! OpenAI-style `/v1/completions` (vLLM): the prompt as token ids, `logprobs` = k for
//! generated tokens, and vLLM's `prompt_logprobs` = k for teacher-forced scoring (its first
//! entry is null: nothing predicts the first token). Token ids come back as `token_id:N`
//! (`return_tokens_as_token_ids`). Servers cap k (vLLM `--max-logprobs`, default 20); a
//! refusal naming the cap is turned into an error that says so.

use serde_json::{Map, Value, json};

use super::Reply;
use crate::Error;
use crate::teacher::Job;

/// The request for a generate job.
pub fn generate_request(model: &str, job: &Job, k: usize, max_tokens: usize, seed: u32) -> Value {
    json!({
        "model": model,
        "prompt": job.prompt,
        "max_tokens": max_tokens,
        "temperature": job.sampling.temperature.max(0.0),
        "top_p": job.sampling.top_p,
        "seed": seed,
        "logprobs": k,
        "return_tokens_as_token_ids": true,
    })
}

/// The request scoring `tokens` (prompt then response) teacher-forced.
pub fn score_request(model: &str, tokens: &[u32], k: usize) -> Value {
    json!({
        "model": model,
        "prompt": tokens,
        "max_tokens": 1,
        "temperature": 1.0,
        "prompt_logprobs": k,
        "logprobs": k,
        "return_tokens_as_token_ids": true,
    })
}

/// A token id from `token_id:N` or `N`.
fn token_id(s: &str) -> Option<u32> {
    s.strip_prefix("token_id:").unwrap_or(s).parse().ok()
}

/// The k most likely of a `{token: logprob}` or `{token: {"logprob": ..}}` map, pushed
/// in descending order (ties by id).
fn push_top(map: &Map<String, Value>, k: usize, out: &mut Reply) -> Result<(), String> {
    let all: Vec<(f32, u32)> = map
        .iter()
        .map(|(key, v)| {
            let lp = v.as_f64().or_else(|| v.get("logprob").and_then(Value::as_f64));
            match (token_id(key), lp) {
                (Some(id), Some(lp)) => Ok((lp as f32, id)),
                _ => Err(format!(
                    "a log-probability entry '{key}' is not a token id with a number (was return_tokens_as_token_ids honoured?)"
                )),
            }
        })
        .collect::<Result<_, _>>()?;
    push_best(all, k, out)
}

/// The k most likely of `(logprob, id)` pairs, pushed in descending order (ties by id).
fn push_best(mut all: Vec<(f32, u32)>, k: usize, out: &mut Reply) -> Result<(), String> {
    if all.len() < k {
        return Err(format!(
            "a position holds {} log-probabilities, {k} were asked for",
            all.len()
        ));
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(lp, id) in &all[..k] {
        out.ids.push(id);
        out.logprobs.push(lp);
    }
    Ok(())
}

fn choice(reply: &Value) -> Result<&Value, String> {
    reply
        .pointer("/choices/0")
        .ok_or_else(|| "the reply has no 'choices'".to_string())
}

/// The generated tokens and their top-k: vLLM's `tokens` and `top_logprobs` maps, or
/// llama-server's `content` entries.
pub fn parse_generated(reply: &Value, k: usize) -> Result<Reply, String> {
    let lp = choice(reply)?
        .get("logprobs")
        .filter(|v| !v.is_null())
        .ok_or("the reply has no 'logprobs'")?;
    if let Some(content) = lp.get("content").and_then(Value::as_array) {
        return parse_content(content, k);
    }
    let tokens = lp
        .get("tokens")
        .and_then(Value::as_array)
        .ok_or("'logprobs' has no 'tokens'")?;
    let tops = lp
        .get("top_logprobs")
        .and_then(Value::as_array)
        .ok_or("'logprobs' has no 'top_logprobs'")?;
    let mut out = Reply::default();
    for (i, t) in tokens.iter().enumerate() {
        let id = t
            .as_str()
            .and_then(token_id)
            .ok_or("a token is not 'token_id:N' (was return_tokens_as_token_ids honoured?)")?;
        let Some(map) = tops.get(i).and_then(Value::as_object) else {
            out.cut = true;
            break;
        };
        push_top(map, k, &mut out)?;
        out.tokens.push(id);
    }
    Ok(out)
}

/// llama-server's `/v1/completions` form: `content[]` of `{id, bytes, top_logprobs: [{id,
/// logprob}]}`. As on its `/completion`, a token that ends inside a UTF-8 character gets
/// no entry; the entry after it then starts with a continuation byte, and the reply is cut
/// there.
fn parse_content(content: &[Value], k: usize) -> Result<Reply, String> {
    let mut out = Reply::default();
    for entry in content {
        let id = entry
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("a 'content' entry has no id")?;
        let first = entry.pointer("/bytes/0").and_then(Value::as_u64);
        if first.is_some_and(|b| (0x80..0xc0).contains(&b)) {
            out.cut = true;
            break;
        }
        let tops = entry
            .get("top_logprobs")
            .and_then(Value::as_array)
            .ok_or("a 'content' entry has no 'top_logprobs'")?;
        let all = tops
            .iter()
            .map(|t| {
                match (
                    t.get("id").and_then(Value::as_u64),
                    t.get("logprob").and_then(Value::as_f64),
                ) {
                    (Some(id), Some(lp)) => Ok((lp as f32, id as u32)),
                    _ => Err("a 'top_logprobs' entry has no id or logprob".to_string()),
                }
            })
            .collect::<Result<_, _>>()?;
        push_best(all, k, &mut out)?;
        out.tokens.push(id as u32);
    }
    Ok(out)
}

/// The top-k at every position whose next token is a response token, from
/// `prompt_logprobs` (entry i is the distribution of token i given the tokens before it).
pub fn parse_scored(
    reply: &Value,
    n_prompt: usize,
    n_all: usize,
    k: usize,
) -> Result<Reply, String> {
    let plp = choice(reply)?
        .get("prompt_logprobs")
        .and_then(Value::as_array)
        .ok_or("the reply has no 'prompt_logprobs': this server cannot score (vLLM can); use --mode generate or the GGUF in-process")?;
    if plp.len() != n_all {
        return Err(format!(
            "'prompt_logprobs' has {} entries for a prompt of {n_all} tokens",
            plp.len()
        ));
    }
    let mut out = Reply::default();
    for entry in &plp[n_prompt..n_all] {
        let map = entry
            .as_object()
            .ok_or("a 'prompt_logprobs' entry past the first is not an object")?;
        push_top(map, k, &mut out)?;
    }
    Ok(out)
}

/// A 4xx about log-probabilities rewritten to name the server's cap, when it gives one
/// (vLLM: "... greater than max allowed: 20").
pub fn name_cap(e: Error, k: usize) -> Error {
    match e {
        Error::RemoteRequest {
            url,
            status,
            message,
            ..
        } if message.to_lowercase().contains("logprobs") => {
            let cap = message
                .rsplit(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&c| c != k);
            let fix = match cap {
                Some(c) => format!(
                    "the server caps log-probabilities at {c} per position and --top-k is {k}: pass --top-k {c} or less, or restart the server allowing more (vLLM: --max-logprobs {k})"
                ),
                None => format!(
                    "the server refuses {k} log-probabilities per position: lower --top-k, or raise the server's cap (vLLM: --max-logprobs, default 20)"
                ),
            };
            Error::RemoteRequest {
                url,
                status,
                message,
                fix,
            }
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scored_rows_skip_the_prompt_and_keep_the_k_best() {
        let reply = json!({"choices": [{"prompt_logprobs": [
            null,
            {"4": {"logprob": -0.5, "rank": 1}},
            {"9": {"logprob": -3.0, "rank": 5}, "2": {"logprob": -0.1, "rank": 1}, "3": {"logprob": -1.0, "rank": 2}},
        ]}]});
        let r = parse_scored(&reply, 2, 3, 2).expect("parses");
        assert_eq!(r.ids, vec![2, 3]);
        assert_eq!(r.logprobs, vec![-0.1, -1.0]);
        let e = parse_scored(&json!({"choices": [{}]}), 2, 3, 2).expect_err("no prompt logprobs");
        assert!(e.contains("cannot score"), "{e}");
    }

    #[test]
    fn llama_servers_content_form_is_read_and_cut_before_a_split_character() {
        let top = |a: u32, b: u32| json!([{"id": a, "logprob": -0.2}, {"id": b, "logprob": -2.0}]);
        let reply = json!({"choices": [{"logprobs": {"content": [
            {"id": 7, "bytes": [72], "logprob": -0.2, "top_logprobs": top(7, 8)},
            {"id": 9, "bytes": [0xa9], "logprob": -0.1, "top_logprobs": top(9, 1)},
        ]}}]});
        let r = parse_generated(&reply, 2).expect("parses");
        assert_eq!((r.tokens, r.ids, r.cut), (vec![7], vec![7, 8], true));
    }

    #[test]
    fn generated_tokens_come_as_token_ids() {
        let reply = json!({"choices": [{"logprobs": {
            "tokens": ["token_id:7", "token_id:8"],
            "top_logprobs": [{"token_id:7": -0.2, "token_id:1": -2.0}, {"token_id:8": -0.3, "token_id:0": -1.0}],
        }}]});
        let r = parse_generated(&reply, 2).expect("parses");
        assert_eq!(r.tokens, vec![7, 8]);
        assert_eq!(r.ids, vec![7, 1, 8, 0]);
    }

    #[test]
    fn a_cap_in_the_message_is_named() {
        let e = Error::RemoteRequest {
            url: "u".into(),
            status: 400,
            message: "Requested sample logprobs of 64, which is greater than max allowed: 20"
                .into(),
            fix: String::new(),
        };
        let msg = name_cap(e, 64).to_string();
        assert!(
            msg.contains("caps log-probabilities at 20") && msg.contains("--top-k 20"),
            "{msg}"
        );
    }
}
