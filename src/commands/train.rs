//! `distill train`: build or resume a student, train it, show progress, summarise.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::{InitKind, TrainArgs};
use crate::gguf::{GgufMeta, TeacherProfile};
use crate::record::Manifest;
use crate::student::io::{self, Provenance, Weights};
use crate::student::shape::{Shape, ShapeRequest};
use crate::student::{StudentConfig, init, pretrained, prune};
use crate::teacher::TeacherInfo;
use crate::train::checkpoint::TrainState;
use crate::train::data::{self, Stream};
use crate::train::metrics::ValidMetrics;
use crate::train::on_policy::OnPolicy;
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
        hidden_weight: a.hidden_weight,
        on_policy: a.on_policy,
        cross_attention: a.attend_across_sequences,
    }
}

/// One training event on the progress bar (or stderr without a terminal).
fn show(a: &TrainArgs, bar: &ProgressBar, e: TrainEvent, last_valid: &mut Option<ValidMetrics>) {
    match e {
        TrainEvent::Started {
            step,
            steps,
            params,
            windows,
        } => {
            super::say(
                bar,
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
                bar,
                a.quiet,
                format!(
                    "step {:>5}  valid ce {:.3}  kl {:.3}  top1 {:.1}%",
                    v.step,
                    v.valid_ce,
                    v.valid_kl,
                    100.0 * v.valid_top1
                ),
            );
            *last_valid = Some(v);
        }
        TrainEvent::Saved { step } => {
            super::say(bar, a.quiet, format!("step {step:>5}  checkpoint saved"))
        }
        TrainEvent::OnPolicy {
            answers,
            targets,
            seconds,
        } => super::say(
            bar,
            a.quiet,
            format!(
                "on-policy: the student wrote {answers} answers ({targets} tokens), the teacher scored them ({seconds:.0} s)"
            ),
        ),
    }
}

/// Student config and initial weights, from the preset/sizes, the teacher, an existing
/// model, or the saved run.
fn student(
    a: &TrainArgs,
    teacher: &GgufMeta,
    corpus: &Stream,
) -> anyhow::Result<(StudentConfig, Weights)> {
    let profile = TeacherProfile::from_meta(teacher)?;
    if a.resume {
        let cfg = StudentConfig::read(&a.out)?;
        let w = io::random_weights(&cfg, a.seed)?; // replaced by the checkpoint
        return Ok((cfg, w));
    }
    let (cfg, w) = match &a.init {
        InitKind::Teacher => {
            let shape = teacher_shape(a, &profile)?;
            let windows = prune::calibration(&corpus.tokens, a.seq_len);
            let (cfg, w, cut) = prune::cut_from_teacher(&profile.path, &shape, &windows, true)
                .context("cutting the student from the teacher")?;
            std::fs::create_dir_all(&a.out)
                .with_context(|| format!("creating '{}'", a.out.display()))?;
            cut.save(&a.out)?;
            (cfg, w)
        }
        InitKind::Model(path) => pretrained::from_model(path, teacher)
            .with_context(|| format!("initialising from model '{}'", path.display()))?,
        InitKind::Random => {
            let mut cfg = StudentConfig::preset(a.preset, profile.n_vocab);
            cfg.hidden_size = a.hidden.unwrap_or(cfg.hidden_size);
            cfg.num_hidden_layers = a.layers_n.unwrap_or(cfg.num_hidden_layers);
            cfg.num_attention_heads = a.heads.unwrap_or(cfg.num_attention_heads);
            cfg.num_key_value_heads = a.kv_heads.unwrap_or(cfg.num_key_value_heads);
            cfg.intermediate_size = a.intermediate.unwrap_or(cfg.intermediate_size);
            cfg.max_position_embeddings = cfg.max_position_embeddings.max(a.seq_len);
            cfg.bos_token_id = profile.bos;
            cfg.eos_token_id = profile.eos;
            cfg.validate()?;
            let w = io::random_weights(&cfg, a.seed)?;
            (cfg, w)
        }
    };
    if cfg.vocab_size != profile.n_vocab {
        bail!(
            "the student's vocabulary ({}) differs from the corpus teacher's ({})",
            cfg.vocab_size,
            profile.n_vocab
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

/// The shape `--init teacher` cuts: `--shape` with `--layers`, `--kv-heads` and
/// `--intermediate` overriding its choices.
fn teacher_shape(a: &TrainArgs, profile: &TeacherProfile) -> anyhow::Result<Shape> {
    profile.require_init()?;
    if let Some(l) = &a.layers {
        profile.check_layers(l)?;
    }
    let request = ShapeRequest {
        kind: a.shape,
        speedup: a.speedup,
        layers: a.layers.clone(),
        kv_groups: a.kv_heads,
        intermediate: a.intermediate,
    };
    Ok(request.resolve(&init::teacher_config(profile, profile.blocks))?)
}

/// The corpus's teacher as stored in its manifest, and the teacher GGUF to use (`--teacher`
/// or the manifest's path), checked against each other.
fn teacher(a: &TrainArgs) -> anyhow::Result<(TeacherInfo, GgufMeta)> {
    let m = Manifest::read(&a.corpus)
        .with_context(|| format!("reading corpus '{}'", a.corpus.display()))?
        .with_context(|| {
            format!(
                "'{}' has no manifest.json: pass a corpus directory written by `distill record`",
                a.corpus.display()
            )
        })?;
    let path = a.teacher.clone().unwrap_or_else(|| m.teacher.path.clone());
    let meta = GgufMeta::read(&path).with_context(
        || "the student's tokenizer.json is built from the teacher GGUF: pass --teacher",
    )?;
    if meta.tokenizer_fingerprint() != m.teacher.tokenizer_fingerprint {
        bail!(
            "teacher '{}' has another tokenizer than '{}', which recorded corpus '{}'",
            path.display(),
            m.teacher.file,
            a.corpus.display()
        );
    }
    Ok((m.teacher, meta))
}

pub fn run(a: &TrainArgs) -> anyhow::Result<()> {
    // Everything that can refuse is checked before the corpus is read.
    crate::cli::values::batch_tokens(a.batch, a.seq_len)?;
    let (teacher_info, meta) = teacher(a)?;
    if !a.resume && TrainState::read(&a.out)?.is_some() {
        bail!(
            "'{}' already holds a training run: pass --resume to continue it, or choose a new --out",
            a.out.display()
        );
    }
    if matches!(a.init, InitKind::Teacher) && !a.resume {
        teacher_shape(a, &TeacherProfile::from_meta(&meta)?)?;
    }
    let valid_fraction = if a.valid_corpus.is_some() {
        0.0
    } else {
        a.valid_fraction
    };
    let mut splits = data::load(&a.corpus, valid_fraction, a.seed)
        .with_context(|| format!("reading corpus '{}'", a.corpus.display()))?;
    // One process at a time writes into --out, from here to the end.
    let _lock = crate::lock::DirLock::acquire(&a.out)?;
    let (cfg, init) = student(a, &meta, &splits.train)?;
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
    let provenance = Provenance {
        file: teacher_info.file.clone(),
        path: meta.path.clone(),
        sha256: teacher_info.sha256.clone(),
        n_vocab: teacher_info.n_vocab,
        tokenizer_fingerprint: teacher_info.tokenizer_fingerprint.clone(),
    };
    if let Some(warning) = io::create_dir(&a.out, &cfg, &meta, &provenance)? {
        eprintln!("warning: {warning}");
    }
    let windows = splits.train.windows(a.seq_len);
    let per_step = (a.batch * a.grad_accum).max(1);
    let steps = match (a.steps, a.epochs) {
        (Some(s), _) => s,
        (None, Some(e)) => ((windows as f64 * e) / per_step as f64).ceil().max(1.0) as usize,
        (None, None) => windows.div_ceil(per_step).max(1),
    };
    let s = settings(a, steps);
    let on_policy = (a.on_policy > 0.0)
        .then(|| -> anyhow::Result<OnPolicy> {
            Ok(OnPolicy {
                teacher: a
                    .teacher
                    .clone()
                    .unwrap_or_else(|| teacher_info.path.clone()),
                prompts: crate::record::prompts::prompts(&a.corpus, usize::MAX)?,
                max_tokens: splits.manifest.record.max_new_tokens.max(16),
                threads: super::threads(a.threads),
            })
        })
        .transpose()?;
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
        on_policy: on_policy.as_ref(),
    };
    let state = train(run, &mut |e| show(a, &bar, e, &mut last_valid));
    bar.finish_and_clear();
    splits.train = data::Stream::default();
    let state = state.with_context(|| format!("training into '{}'", a.out.display()))?;
    print_summary(a, &cfg, &state, last_valid);
    Ok(())
}

/// What was trained, its last validation, the files written.
fn print_summary(
    a: &TrainArgs,
    cfg: &StudentConfig,
    state: &TrainState,
    last_valid: Option<ValidMetrics>,
) {
    println!(
        "student    {} ({:.1}M params: body {:.1}M + embeddings {:.1}M, {} steps, {:.0} s)",
        a.out.display(),
        cfg.n_params() as f64 / 1e6,
        cfg.body_params() as f64 / 1e6,
        (cfg.n_params() - cfg.body_params()) as f64 / 1e6,
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
        "files      config.json, model.safetensors, tokenizer.json, provenance.json, train_state.json, metrics.jsonl"
    );
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
