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
    let mut teacher =
        LlamaTeacher::load(path, file_sha256(path)?).context("loading the teacher")?;
    // A base model has no chat template: its prompts are the plain text.
    teacher.set_no_template(crate::teacher::NoTemplate::Plain);
    let k = args.top_k;
    let params = |parallel, ctx| SessionParams {
        ctx,
        parallel,
        n_batch: N_BATCH,
        threads,
        k,
        hidden: false,
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
    let (scored, secs) = timed_run(&teacher, params(PARALLEL, SCORE_SEQ), score_jobs, &out_dir)?;
    let score = scored as f64 / secs;

    // Generate: a short prompt, then exactly gen_tokens sampled tokens per sequence.
    let prompt = teacher.tokenize(
        &teacher.render_prompt(&[user("Write a long story about a lighthouse.")])?,
        true,
    );
    let ctx = prompt.len() + args.gen_tokens + 1;
    // Like llama-bench's tg and batched-bench's S_TG, count decoding only: time the same
    // jobs stopped after their first token and subtract (prefill and first pick).
    let gen_rate = |n: usize| -> anyhow::Result<f64> {
        let jobs = |max: usize| {
            (0..n)
                .map(|i| job(&prompt, None, max, i))
                .collect::<Vec<_>>()
        };
        let (_, t1) = timed_run(&teacher, params(n, ctx), jobs(1), &out_dir)?;
        let (_, tn) = timed_run(&teacher, params(n, ctx), jobs(args.gen_tokens), &out_dir)?;
        Ok((n * (args.gen_tokens - 1)) as f64 / (tn - t1).max(1e-9))
    };
    let gen1 = gen_rate(1)?;
    let gen8 = gen_rate(PARALLEL)?;
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
        println!("generate, 1 sequence (decoding)               {gen1:8.1} tok/s");
        println!("generate, {PARALLEL} sequences (aggregate decoding) {gen8:8.1} tok/s");
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

/// Decode `jobs` (after a short warm-up) and write them as a shard; returns the tokens
/// decoded (prompt and response) and the seconds it all took.
fn timed_run(
    teacher: &LlamaTeacher,
    params: SessionParams,
    mut jobs: Vec<Job>,
    dir: &std::path::Path,
) -> anyhow::Result<(usize, f64)> {
    let mut session = teacher.session(params)?;
    let mut warm = vec![Job {
        max_new_tokens: 4,
        response: None,
        ..jobs[0].clone()
    }];
    session.run(&mut warm, |_, _| Ok(()))?;
    let clock = Instant::now();
    let mut shard = Shard::new(params.k);
    session.run(&mut jobs, |_, seq| {
        shard.push(&seq);
        Ok(())
    })?;
    shard.write(&dir.join("bench.safetensors"), teacher.info.n_vocab)?;
    Ok((shard.tokens.len(), clock.elapsed().as_secs_f64()))
}

/// `distill bench train`: seconds per optimizer step, tokens/s, peak RSS and the share of
/// the machine's f32 matmul peak (model FLOPs = 6 x params x tokens).
pub fn train(args: &crate::cli::BenchTrainArgs) -> anyhow::Result<()> {
    crate::cli::values::batch_tokens(args.batch, args.seq_len)?;
    use crate::student::{Student, StudentConfig, io};
    use crate::train::loss::{Divergence, LossConfig, Targets, kd_loss};
    use crate::train::optim::{AdamW, AdamWParams};
    use candle_core::{DType, Device, Tensor};

    let vocab = match args.vocab {
        Some(v) if v >= 2 => v,
        Some(v) => anyhow::bail!("--vocab '{v}' must be at least 2"),
        None => crate::gguf::TeacherProfile::read(&args.teacher)?.n_vocab,
    };
    let peak = matmul_gflops()?;
    let cfg = StudentConfig::preset(args.preset, vocab);
    let vm = io::var_map(&io::random_weights(&cfg, 1)?)?;
    let student = Student::new(
        &cfg,
        candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )?;
    let vars = vm
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(vars, AdamWParams::default())?;
    let (b, t, k) = (args.batch, args.seq_len, args.top_k.min(vocab));
    let mut rng = Rng::for_record(3, 0);
    let n = b * t;
    let ids: Vec<u32> = (0..n)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect();
    let targets = Targets {
        labels: (0..n)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect(),
        topk_ids: (0..n * k)
            .map(|i| ((i % k) * 7 + i / k) as u32 % vocab as u32)
            .collect(),
        topk_logprobs: (0..n * k).map(|i| -1.0 - (i % k) as f32 * 0.1).collect(),
        k,
        ..Targets::default()
    };
    let loss_cfg = LossConfig {
        alpha: 0.5,
        temperature: 2.0,
        divergence: Divergence::Fkl,
        chunk_rows: 256,
    };
    let input = Tensor::from_vec(ids, (b, t), &Device::Cpu)?;
    let mut times = Vec::new();
    for step in 0..=args.steps {
        let clock = Instant::now();
        let h = student.hidden(&input)?.reshape((n, cfg.hidden_size))?;
        let (loss, _) = kd_loss(&h, student.output_weight(), &targets, &loss_cfg)?;
        let grads = opt.collect(&loss.backward()?)?;
        opt.step(&grads, 1e-4, 1.0)?;
        if step > 0 {
            times.push(clock.elapsed().as_secs_f64());
        }
    }
    let secs = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let tok_s = n as f64 / secs;
    let model_gflops = 6.0 * cfg.n_params() as f64 * n as f64 / 1e9;
    let share = model_gflops / secs / peak;
    let rss = crate::eval::speed::peak_rss_mb();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"params": cfg.n_params(), "batch": b, "seq_len": t, "step_s": secs, "tok_s": tok_s, "peak_rss_mb": rss, "matmul_peak_gflops": peak, "share_of_peak": share})
        );
    } else {
        println!(
            "student {:.1}M params | batch {b} x {t} | vocab {} | top-k {k}",
            cfg.n_params() as f64 / 1e6,
            vocab
        );
        println!("step      {secs:8.2} s   ({tok_s:.0} tok/s)");
        println!(
            "matmul    {peak:8.1} GFLOP/s measured peak; model {:.1} GFLOP/s = {:.0}% of peak",
            model_gflops / secs,
            100.0 * share
        );
        println!("peak RSS  {rss:8.0} MB");
    }
    Ok(())
}

/// Measured f32 matmul throughput of this machine in candle, GFLOP/s (best of 3).
fn matmul_gflops() -> anyhow::Result<f64> {
    use candle_core::{Device, Tensor};
    let (m, kd, n) = (1024, 512, 4096);
    let a = Tensor::ones((m, kd), candle_core::DType::F32, &Device::Cpu)?;
    let b = Tensor::ones((kd, n), candle_core::DType::F32, &Device::Cpu)?;
    let mut best = f64::MAX;
    for _ in 0..4 {
        let clock = Instant::now();
        let c = a.matmul(&b)?;
        let _ = c.sum_all()?;
        best = best.min(clock.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * kd * n) as f64 / best / 1e9)
}
