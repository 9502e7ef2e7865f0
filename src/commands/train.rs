//! `distill train`: build or resume a student, train it, show progress, summarise.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{InitKind, TrainArgs};
use crate::gguf::GgufMeta;
use crate::student::io::{self, Weights};
use crate::student::{StudentConfig, init, tokenizer};
use crate::train::checkpoint::TrainState;
use crate::train::data;
use crate::train::{TrainEvent, TrainRun, TrainSettings, train};

fn settings(a: &TrainArgs, steps: usize) -> TrainSettings {
    TrainSettings {
        alpha: a.alpha,
        temperature: a.temperature,
        loss: a.loss.clone(),
        jsd_beta: a.jsd_beta,
        lr: a.lr,
        warmup: a.warmup,
        schedule: a.schedule,
        weight_decay: a.weight_decay,
        grad_clip: a.grad_clip,
        batch: a.batch,
        seq_len: a.seq_len,
        grad_accum: a.grad_accum,
        steps,
        valid_fraction: if a.valid_corpus.is_some() {
            0.0
        } else {
            a.valid_fraction
        },
        eval_every: a.eval_every,
        save_every: a.save_every,
        seed: a.seed,
        freeze_embeddings: a.freeze_embeddings,
    }
}

/// Student config and initial weights, from the preset/sizes, the teacher, or the saved run.
fn student(
    a: &TrainArgs,
    meta: &GgufMeta,
    teacher: &std::path::Path,
    n_vocab: usize,
) -> anyhow::Result<(StudentConfig, Weights)> {
    if a.resume {
        let cfg = StudentConfig::read(&a.out)?;
        let w = io::random_weights(&cfg, a.seed)?; // replaced by the checkpoint
        return Ok((cfg, w));
    }
    let (cfg, w) = match a.init {
        InitKind::Teacher => {
            init::from_teacher(teacher, &a.layers).context("initialising from the teacher")?
        }
        InitKind::Random => {
            let mut cfg = StudentConfig::preset(a.preset, n_vocab);
            cfg.hidden_size = a.hidden.unwrap_or(cfg.hidden_size);
            cfg.num_hidden_layers = a.layers_n.unwrap_or(cfg.num_hidden_layers);
            cfg.num_attention_heads = a.heads.unwrap_or(cfg.num_attention_heads);
            cfg.num_key_value_heads = a.kv_heads.unwrap_or(cfg.num_key_value_heads);
            cfg.intermediate_size = a.intermediate.unwrap_or(cfg.intermediate_size);
            cfg.max_position_embeddings = cfg.max_position_embeddings.max(a.seq_len);
            cfg.bos_token_id = meta.u64("tokenizer.ggml.bos_token_id").map(|x| x as u32);
            cfg.eos_token_id = meta.u64("tokenizer.ggml.eos_token_id").map(|x| x as u32);
            cfg.validate()?;
            let w = io::random_weights(&cfg, a.seed)?;
            (cfg, w)
        }
    };
    if cfg.vocab_size != n_vocab {
        bail!(
            "the student's vocabulary ({}) differs from the corpus teacher's ({n_vocab})",
            cfg.vocab_size
        );
    }
    if a.seq_len > cfg.max_position_embeddings {
        bail!(
            "--seq-len {} exceeds the student's max_position_embeddings {}",
            a.seq_len,
            cfg.max_position_embeddings
        );
    }
    Ok((cfg, w))
}

pub fn run(a: &TrainArgs) -> anyhow::Result<()> {
    let mut splits = data::load(
        &a.corpus,
        if a.valid_corpus.is_some() {
            0.0
        } else {
            a.valid_fraction
        },
        a.seed,
    )
    .with_context(|| format!("reading corpus '{}'", a.corpus.display()))?;
    let teacher_info = splits.manifest.teacher.clone();
    let valid = match &a.valid_corpus {
        Some(dir) => {
            let v = data::load(dir, 0.0, a.seed)
                .with_context(|| format!("reading validation corpus '{}'", dir.display()))?;
            if v.manifest.teacher.tokenizer_fingerprint != teacher_info.tokenizer_fingerprint {
                bail!(
                    "validation corpus '{}' comes from teacher '{}', the training corpus from '{}': their tokenizers differ",
                    dir.display(),
                    v.manifest.teacher.file,
                    teacher_info.file
                );
            }
            Some(v.train)
        }
        None => None,
    };
    let teacher = a
        .teacher
        .clone()
        .unwrap_or_else(|| teacher_info.path.clone());
    let meta = GgufMeta::read(&teacher).with_context(
        || "the student's tokenizer.json is built from the teacher GGUF: pass --teacher",
    )?;
    if meta.tokenizer_fingerprint() != teacher_info.tokenizer_fingerprint {
        bail!(
            "teacher '{}' has another tokenizer than '{}', which recorded corpus '{}'",
            teacher.display(),
            teacher_info.file,
            a.corpus.display()
        );
    }
    if !a.resume && TrainState::read(&a.out)?.is_some() {
        bail!(
            "'{}' already holds a training run: pass --resume to continue it, or choose a new --out",
            a.out.display()
        );
    }
    let (cfg, init) = student(a, &meta, &teacher, teacher_info.n_vocab)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating '{}'", a.out.display()))?;
    io::save_config(&a.out, &cfg)?;
    tokenizer::write_tokenizer_json(&meta, &a.out.join("tokenizer.json"))?;
    let windows = splits.train.windows(a.seq_len);
    let per_step = (a.batch * a.grad_accum).max(1);
    let steps = match (a.steps, a.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => ((windows as f64 * e) / per_step as f64).ceil().max(1.0) as usize,
        (None, None) => windows.div_ceil(per_step).max(1),
    };
    let s = settings(a, steps);
    let bar = progress(a.quiet)?;
    let mut last_valid = None;
    let run = TrainRun {
        out: &a.out,
        data: &splits,
        valid: valid.as_ref(),
        config: &cfg,
        init,
        settings: &s,
        minutes: a.minutes,
        resume: a.resume,
        stop: None,
    };
    let state = train(run, &mut |e| match e {
        TrainEvent::Started {
            step,
            steps,
            params,
            windows,
        } => {
            super::say(
                &bar,
                a.quiet,
                format!(
                    "student {:.1}M params | {windows} windows of {} tokens | steps {step}..{steps}",
                    params as f64 / 1e6,
                    a.seq_len
                ),
            );
            bar.set_length(steps as u64);
            bar.set_position(step as u64);
            bar.reset_eta();
        }
        TrainEvent::Step(m) => {
            bar.set_position(m.step as u64);
            bar.set_message(format!(
                "loss {:.3} ce {:.3} kd {:.3} top1 {:.1}% | {:.0} tok/s",
                m.loss,
                m.ce,
                m.kd,
                100.0 * m.top1,
                m.tok_s
            ));
        }
        TrainEvent::Valid(v) => {
            super::say(
                &bar,
                a.quiet,
                format!(
                    "step {:>5}  valid ce {:.3}  kl {:.3}  top1 {:.1}%",
                    v.step,
                    v.valid_ce,
                    v.valid_kl,
                    100.0 * v.valid_top1
                ),
            );
            last_valid = Some(v);
        }
        TrainEvent::Saved { step } => {
            super::say(&bar, a.quiet, format!("step {step:>5}  checkpoint saved"))
        }
    });
    bar.finish_and_clear();
    splits.train = data::Stream::default();
    let state = state.with_context(|| format!("training into '{}'", a.out.display()))?;
    println!(
        "student    {} ({:.1}M params, {} steps, {:.0} s)",
        a.out.display(),
        cfg.n_params() as f64 / 1e6,
        state.step,
        state.elapsed
    );
    if let Some(v) = last_valid {
        println!(
            "valid      ce {:.3}  kl {:.3}  top-1 agreement {:.1}%",
            v.valid_ce,
            v.valid_kl,
            100.0 * v.valid_top1
        );
    }
    println!(
        "files      config.json, model.safetensors, tokenizer.json, train_state.json, metrics.jsonl"
    );
    Ok(())
}

fn progress(quiet: bool) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::with_draw_target(
        None,
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .context("template")?,
    );
    Ok(bar)
}
