//! `--teacher-api openai`, the route for vLLM-style servers: llama-server's `/v1/completions`
//! returns no `prompt_logprobs`, so score mode cannot be tested on it, and no vLLM runs on
//! these machines. A small local stand-in serves vLLM's wire format instead (`/v1/models`,
//! `/tokenize`, `/v1/completions` with token-id prompts, `prompt_logprobs`,
//! `return_tokens_as_token_ids`, and its refusal past `--max-logprobs` 20), with real
//! log-probabilities computed by the default teacher in this process. Recorded through it,
//! a corpus agrees with the in-process one in score and in generate mode.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;

use distill::record::file_sha256;
use distill::teacher::{Api, Job, LlamaTeacher, Rng, Sampling, SessionParams, Teacher};
use serde_json::{Map, Value, json};

use crate::common::*;
use crate::remote::{routes_agree, served_by};

/// vLLM's default `--max-logprobs`.
const CAP: usize = 20;
const MODEL: &str = "standin-smollm2";

/// The stand-in server: one thread, one request at a time; it lives as long as the test
/// process (the thread blocks in `accept`).
fn start() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let path = teacher();
        let sha = file_sha256(&path).expect("sha256");
        let model = LlamaTeacher::load(&path, sha).expect("the stand-in's teacher");
        ready_tx.send(()).expect("ready");
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            serve(&model, stream);
        }
    });
    ready_rx.recv().expect("the stand-in loaded its teacher");
    url
}

/// Read one HTTP request (method, path, JSON body) and answer it.
fn serve(model: &LlamaTeacher, stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (method, path) = (method.to_string(), path.to_string());
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, reply) = match (method.as_str(), path.as_str()) {
        ("GET", "/v1/models") => (
            200,
            json!({"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": 2048}]}),
        ),
        ("POST", "/tokenize") => {
            let text = body["prompt"].as_str().unwrap_or("");
            let special = body["add_special_tokens"].as_bool().unwrap_or(true);
            let tokens = model.tokenize(text, special);
            (200, json!({"count": tokens.len(), "tokens": tokens}))
        }
        ("POST", "/v1/completions") => completion(model, &body),
        _ => (404, json!({"object": "error", "message": "Not Found"})),
    };
    let text = reply.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn bad_request(message: String) -> (u16, Value) {
    (
        400,
        json!({"object": "error", "message": message, "type": "BadRequestError", "param": null, "code": 400}),
    )
}

/// `{"token_id:N": entry}` for the k best of one position.
fn top_map(ids: &[u32], lps: &[f32], entry: impl Fn(usize, f32) -> Value) -> Value {
    let mut m = Map::new();
    for (rank, (id, lp)) in ids.iter().zip(lps).enumerate() {
        m.insert(format!("token_id:{id}"), entry(rank + 1, *lp));
    }
    Value::Object(m)
}

/// `/v1/completions`: scoring when `prompt_logprobs` is asked for, else writing.
fn completion(model: &LlamaTeacher, body: &Value) -> (u16, Value) {
    let prompt: Vec<u32> = body["prompt"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|t| t as u32)
                .collect()
        })
        .unwrap_or_default();
    if prompt.len() < 2 || body["return_tokens_as_token_ids"] != json!(true) {
        return bad_request("expected a token-id prompt and return_tokens_as_token_ids".into());
    }
    let scoring = body.get("prompt_logprobs").and_then(Value::as_u64);
    let k = scoring.or_else(|| body["logprobs"].as_u64()).unwrap_or(0) as usize;
    if k > CAP {
        let what = if scoring.is_some() {
            "prompt logprobs"
        } else {
            "logprobs"
        };
        return bad_request(format!(
            "Requested {what} of {k}, which is greater than max allowed: {CAP}"
        ));
    }
    let params = SessionParams {
        ctx: 2048,
        parallel: 1,
        n_batch: 512,
        threads: 2,
        k: k.max(1),
        hidden: false,
    };
    let sampling = Sampling {
        temperature: body["temperature"].as_f64().unwrap_or(1.0) as f32,
        top_p: body["top_p"].as_f64().unwrap_or(1.0) as f32,
    };
    let mut job = Job {
        prompt: prompt.clone(),
        response: None,
        max_new_tokens: body["max_tokens"].as_u64().unwrap_or(16) as usize,
        sampling,
        rng: Rng::for_record(body["seed"].as_u64().unwrap_or(0), 0),
        ignore_eog: false,
    };
    if scoring.is_some() {
        // Every position after the first, teacher-forced.
        job.prompt = prompt[..1].to_vec();
        job.response = Some(prompt[1..].to_vec());
    }
    let mut out = None;
    let mut decoder = model.decoder(params).expect("decoder");
    decoder
        .run(std::slice::from_mut(&mut job), &mut |_, seq| {
            out = Some(seq);
            Ok(())
        })
        .expect("decode");
    let seq = out.expect("one sequence");
    let rows: Vec<(&[u32], &[f32])> = seq
        .topk_ids
        .chunks(params.k)
        .zip(seq.topk_logprobs.chunks(params.k))
        .collect();
    let written = &seq.tokens[seq.n_prompt..];
    if scoring.is_some() {
        let mut plp = vec![Value::Null];
        for (ids, lps) in &rows {
            plp.push(top_map(
                ids,
                lps,
                |rank, lp| json!({"logprob": lp, "rank": rank, "decoded_token": ""}),
            ));
        }
        let choice = json!({"index": 0, "text": "", "logprobs": null, "finish_reason": "length", "prompt_logprobs": plp});
        return (
            200,
            json!({"object": "text_completion", "model": MODEL, "choices": [choice]}),
        );
    }
    let tokens: Vec<String> = written.iter().map(|t| format!("token_id:{t}")).collect();
    let chosen: Vec<f32> = rows
        .iter()
        .zip(written)
        .map(|((ids, lps), t)| ids.iter().position(|i| i == t).map_or(f32::NAN, |j| lps[j]))
        .collect();
    let tops: Vec<Value> = rows
        .iter()
        .map(|(ids, lps)| top_map(ids, lps, |_, lp| json!(lp)))
        .collect();
    let choice = json!({
        "index": 0,
        "text": model.detokenize(written),
        "logprobs": {"tokens": tokens, "token_logprobs": chosen, "top_logprobs": tops},
        "finish_reason": "stop",
    });
    (
        200,
        json!({"object": "text_completion", "model": MODEL, "choices": [choice]}),
    )
}

fn standin_args(url: &str, prompts: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = record_args(prompts, out, extra);
    args[2] = url.to_string();
    let tokenizer = teacher().display().to_string();
    args.extend(["--teacher-api", "openai", "--tokenizer", &tokenizer].map(String::from));
    args
}

#[test]
fn the_openai_route_scores_and_writes_like_the_in_process_teacher() {
    let dir = temp_dir("openai-standin");
    let url = start();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scored = root.join("prompts/score-sample.jsonl");
    let score = [
        "--mode",
        "score",
        "--top-k",
        "20",
        "--ctx",
        "512",
        "--parallel",
        "2",
    ];
    let (local, remote) = (dir.join("score-local"), dir.join("score-remote"));
    distill_ok(&record_args(&scored, &local, &score));
    distill_ok(&standin_args(&url, &scored, &remote, &score));
    let (_, info) = served_by(&remote);
    assert_eq!((info.api, info.model.as_str()), (Api::Openai, MODEL));
    // Scoring is batched differently on the two sides (the stand-in scores one sequence
    // at a time): the in-process teacher itself differs this much between --parallel 1 and
    // 2 (mean |dlogprob| 0.015, a top-1 flip on 1% of positions).
    routes_agree("openai route, score", &local, &remote, (100, 0.97, 0.05));

    // The server's cap is found and named, with both fixes.
    let over = ["--mode", "score", "--top-k", "64", "--ctx", "512"];
    let err = distill_err(&standin_args(&url, &scored, &dir.join("over"), &over));
    assert!(
        err.contains("caps log-probabilities at 20") && err.contains("--top-k 20"),
        "{err}"
    );

    // Generate mode, greedy: the same answers and distributions.
    let valid = root.join("prompts/valid.jsonl");
    let write = [
        "--mode",
        "generate",
        "--temperature",
        "0",
        "--max-new-tokens",
        "24",
        "--top-k",
        "8",
        "--ctx",
        "512",
        "--limit",
        "6",
        "--parallel",
        "2",
    ];
    let (local, remote) = (dir.join("gen-local"), dir.join("gen-remote"));
    distill_ok(&record_args(&valid, &local, &write));
    distill_ok(&standin_args(&url, &valid, &remote, &write));
    routes_agree("openai route, generate", &local, &remote, (60, 0.99, 0.02));
    std::fs::remove_dir_all(&dir).ok();
}
