//! `distill bench teacher`: the recording paths at full speed, top-k extraction and shard
//! writing included, in the units llama.cpp's own benchmarks report (`llama-bench` pp/tg,
//! `llama-batched-bench` aggregate S_TG), so scripts/bench-teacher.sh can put them side by side.

use std::time::Instant;

use anyhow::Context;

use crate::cli::BenchTeacherArgs;
use crate::corpus::{Message, Role};
use crate::record::Shard;
use crate::record::recorder::{N_BATCH, file_sha256};
use crate::teacher::{Job, LlamaTeacher, Rng, Sampling, SessionParams};

/// Sequences decoded together in the parallel generation test (llama-batched-bench -npl 8).
const PARALLEL: usize = 8;
/// Tokens per scored sequence (llama-bench -p 512).
const SCORE_SEQ: usize = 512;

const TEXT: &str = "Knowledge distillation trains a small student model to imitate a larger teacher. \
The teacher's full next-token distribution carries more information than the single correct token: \
it says which other words were plausible and how plausible. Softening both distributions with a \
temperature exposes that dark knowledge, and mixing the divergence with ordinary cross-entropy keeps \
the student anchored to the data. ";

pub fn teacher(args: &BenchTeacherArgs) -> anyhow::Result<()> {
    let path = &args.teacher.teacher;
    let threads = super::threads(args.teacher.threads);
    let teacher = LlamaTeacher::load(path, file_sha256(path)?).context("loading the teacher")?;
    let k = args.top_k;
    let params = |parallel, ctx| SessionParams {
        ctx,
        parallel,
        n_batch: N_BATCH,
        threads,
        k,
    };
    let out_dir = std::env::temp_dir().join(format!("distill-bench-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;

    // Score: teacher-forced 512-token sequences, logits and top-k at every response position.
    let long: String = TEXT.repeat(1 + 4 * SCORE_SEQ / TEXT.len());
    let prompt = teacher.tokenize(
        &teacher.render_prompt(&[user("Say something about distillation.")])?,
        true,
    );
    let mut body = teacher.tokenize(&long, false);
    body.truncate(SCORE_SEQ - prompt.len());
    let n_seq = args.score_tokens.div_ceil(SCORE_SEQ).max(1);
    let score_jobs: Vec<Job> = (0..n_seq)
        .map(|i| job(&prompt, Some(body.clone()), 0, i))
        .collect();
    let score = timed_run(
        &teacher,
        params(PARALLEL, SCORE_SEQ),
        score_jobs,
        &out_dir,
        |s| s.tokens.len(),
    )?;

    // Generate: a short prompt, then exactly gen_tokens sampled tokens per sequence.
    let prompt = teacher.tokenize(
        &teacher.render_prompt(&[user("Write a long story about a lighthouse.")])?,
        true,
    );
    let ctx = prompt.len() + args.gen_tokens + 1;
    let gen_jobs = |n: usize| {
        (0..n)
            .map(|i| job(&prompt, None, args.gen_tokens, i))
            .collect::<Vec<_>>()
    };
    let gen1 = timed_run(&teacher, params(1, ctx), gen_jobs(1), &out_dir, |s| {
        s.n_targets()
    })?;
    let gen8 = timed_run(
        &teacher,
        params(PARALLEL, ctx),
        gen_jobs(PARALLEL),
        &out_dir,
        |s| s.n_targets(),
    )?;
    std::fs::remove_dir_all(&out_dir).ok();

    if args.json {
        let v = serde_json::json!({
            "teacher": teacher.info.file, "threads": threads, "k": k,
            "score_tok_s": score, "generate1_tok_s": gen1, "generate8_tok_s": gen8,
        });
        println!("{v}");
    } else {
        println!(
            "teacher {} | {threads} threads | top-k {k} | shard writing included",
            teacher.info.file
        );
        println!("score (teacher-forced, {SCORE_SEQ}-token sequences)   {score:8.1} tok/s");
        println!("generate, 1 sequence                          {gen1:8.1} tok/s");
        println!("generate, {PARALLEL} sequences (aggregate)             {gen8:8.1} tok/s");
    }
    Ok(())
}

fn user(text: &str) -> Message {
    Message {
        role: Role::User,
        content: text.to_string(),
    }
}

fn job(prompt: &[u32], response: Option<Vec<u32>>, max_new_tokens: usize, i: usize) -> Job {
    Job {
        prompt: prompt.to_vec(),
        response,
        max_new_tokens,
        sampling: Sampling {
            temperature: 0.7,
            top_p: 0.9,
        },
        rng: Rng::for_record(7, i as u64),
        ignore_eog: true,
    }
}

/// Decode `jobs` (after a short warm-up), write them as a shard, and return counted tokens
/// per second of the whole.
fn timed_run(
    teacher: &LlamaTeacher,
    params: SessionParams,
    mut jobs: Vec<Job>,
    dir: &std::path::Path,
    count: impl Fn(&crate::teacher::Sequence) -> usize,
) -> anyhow::Result<f64> {
    let mut session = teacher.session(params)?;
    let mut warm = vec![Job {
        max_new_tokens: 4,
        response: None,
        ..jobs[0].clone()
    }];
    session.run(&mut warm, |_, _| Ok(()))?;
    let clock = Instant::now();
    let mut shard = Shard::new(params.k);
    let mut counted = 0;
    session.run(&mut jobs, |_, seq| {
        counted += count(&seq);
        shard.push(&seq);
        Ok(())
    })?;
    shard.write(&dir.join("bench.safetensors"), teacher.info.n_vocab)?;
    Ok(counted as f64 / clock.elapsed().as_secs_f64())
}
