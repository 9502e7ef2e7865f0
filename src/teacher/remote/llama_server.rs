//! llama.cpp's `llama-server`: `/completion` with the prompt as token ids and `n_probs` = k
//! taken before sampling (`post_sampling_probs: false`), i.e. the model's own softmax at
//! temperature 1, as the in-process teacher stores.
//!
//! llama-server cannot teacher-force a given response and report its log-probabilities
//! (its `/completion` reports them only for generated tokens), so score mode is refused.
//!
//! A token that ends inside a multi-byte UTF-8 character gets no entry in
//! `completion_probabilities` (the server waits for the character to complete and reports
//! only the token that completes it), so the returned tokens are matched to the entries in
//! order and the response is cut before the first token without one.

use serde_json::{Value, json};

use super::Reply;
use crate::teacher::Job;

/// The `/completion` request for a generate job: `n_predict` new tokens at most.
pub fn request(job: &Job, k: usize, n_predict: usize, seed: u32) -> Value {
    json!({
        "prompt": job.prompt,
        "n_predict": n_predict,
        "n_probs": k,
        "post_sampling_probs": false,
        "temperature": job.sampling.temperature.max(0.0),
        "top_p": job.sampling.top_p,
        // Only what the in-process teacher applies: temperature, then the nucleus.
        "samplers": ["temperature", "top_p"],
        "seed": seed,
        "cache_prompt": false,
        "return_tokens": true,
        "stream": false,
    })
}

/// The generated tokens with their top-k, from a `/completion` reply; `Err` names what is
/// missing.
pub fn parse(reply: &Value, k: usize) -> Result<Reply, String> {
    let tokens: Vec<u32> = reply
        .get("tokens")
        .and_then(Value::as_array)
        .ok_or("the reply has no 'tokens' (a llama-server older than b4000?)")?
        .iter()
        .map(|t| t.as_u64().map(|t| t as u32))
        .collect::<Option<_>>()
        .ok_or("'tokens' holds a non-integer")?;
    let empty = Vec::new();
    let probs = match reply.get("completion_probabilities") {
        Some(p) => p
            .as_array()
            .ok_or("'completion_probabilities' is not an array")?,
        None if tokens.is_empty() => &empty,
        None => return Err("the reply has no 'completion_probabilities'".into()),
    };
    let mut out = Reply::default();
    let mut entries = probs.iter().peekable();
    for &tok in &tokens {
        let Some(entry) =
            entries.next_if(|e| e.get("id").and_then(Value::as_u64) == Some(u64::from(tok)))
        else {
            out.cut = true; // no entry: the token ends mid-character
            break;
        };
        let top = entry
            .get("top_logprobs")
            .and_then(Value::as_array)
            .ok_or("an entry has no 'top_logprobs' (was post_sampling_probs honoured?)")?;
        if top.len() < k {
            return Err(format!(
                "an entry holds {} log-probabilities, {k} were asked for",
                top.len()
            ));
        }
        for t in &top[..k] {
            let id = t
                .get("id")
                .and_then(Value::as_u64)
                .ok_or("a top entry has no id")?;
            let lp = t
                .get("logprob")
                .and_then(Value::as_f64)
                .ok_or("a top entry has no logprob")?;
            out.ids.push(id as u32);
            out.logprobs.push(lp as f32);
        }
        out.tokens.push(tok);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, top: &[(u32, f64)]) -> Value {
        let top: Vec<Value> = top
            .iter()
            .map(|&(i, lp)| json!({"id": i, "token": "x", "bytes": [120], "logprob": lp}))
            .collect();
        json!({"id": id, "token": "x", "bytes": [120], "logprob": -0.1, "top_logprobs": top})
    }

    #[test]
    fn tokens_are_matched_to_entries_and_cut_at_the_first_missing_one() {
        let reply = json!({
            "tokens": [5, 7, 9, 11],
            "completion_probabilities": [
                entry(5, &[(5, -0.1), (6, -2.5)]),
                entry(7, &[(7, -0.2), (1, -1.9)]),
                // 9 ends mid-character: no entry; 11 completes it
                entry(11, &[(11, -0.3), (2, -1.5)]),
            ]
        });
        let r = parse(&reply, 2).expect("parses");
        assert_eq!(r.tokens, vec![5, 7]);
        assert_eq!(r.ids, vec![5, 6, 7, 1]);
        assert_eq!(r.logprobs, vec![-0.1, -2.5, -0.2, -1.9]);
        assert!(r.cut);
        let whole = parse(&reply, 1).map(|r| r.tokens.len()).expect("parses");
        assert_eq!(whole, 2);
    }

    #[test]
    fn short_or_missing_distributions_are_named() {
        let reply = json!({"tokens": [5], "completion_probabilities": [entry(5, &[(5, -0.1)])]});
        let e = parse(&reply, 4).expect_err("too few");
        assert!(e.contains("4 were asked"), "{e}");
        let e = parse(&json!({"tokens": [5]}), 1).expect_err("no probs");
        assert!(e.contains("completion_probabilities"), "{e}");
        let none = parse(&json!({"tokens": []}), 1).expect("empty reply");
        assert!(none.tokens.is_empty() && !none.cut);
    }
}
