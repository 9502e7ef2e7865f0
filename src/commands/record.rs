//! `distill record`: progress bar on stderr, summary on stdout.

use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::RecordArgs;
use crate::record::{self, Progress, RecordConfig, RecordSettings};

impl From<&RecordArgs> for RecordConfig {
    fn from(a: &RecordArgs) -> Self {
        RecordConfig {
            teacher: a.teacher.teacher.clone(),
            prompts: a.prompts.clone(),
            out: a.out.clone(),
            limit: a.limit,
            answers: a.answers_per_prompt,
            minutes: None,
            stop: None,
            slice: a.shard,
            settings: RecordSettings {
                mode: a.mode,
                k: a.top_k,
                temperature: a.temperature,
                top_p: a.top_p,
                seed: a.seed,
                max_new_tokens: a.max_new_tokens,
                system: a.system.clone(),
                ctx: a.ctx,
                parallel: a.parallel,
                shard_size: a.shard_size,
                skip_bad: a.skip_bad,
                threads: super::threads(a.teacher.threads),
                hidden: a.hidden,
            },
        }
    }
}

pub fn run(args: &RecordArgs) -> anyhow::Result<()> {
    let cfg = RecordConfig::from(args);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bar:30} {pos}/{len} records  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .context("progress bar template")?,
    );
    let clock = Instant::now();
    let (mut tokens, mut targets) = (0usize, 0usize);
    let mut on = |p| match p {
        Progress::Started {
            teacher,
            planned,
            done,
        } => {
            super::say(
                &bar,
                args.quiet,
                format!(
                    "teacher {} ({}, {} params, vocab {}), {} records, {} already recorded",
                    teacher.file,
                    teacher.architecture,
                    teacher.n_params,
                    teacher.n_vocab,
                    planned,
                    done
                ),
            );
            bar.set_length(planned as u64);
            bar.set_position(done as u64);
            bar.reset_eta();
        }
        Progress::Sequence {
            tokens: t,
            targets: m,
            ..
        } => {
            tokens += t;
            targets += m;
            bar.inc(1);
            let secs = clock.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{tokens} tok, {targets} targets, {:.0} tok/s",
                tokens as f64 / secs
            ));
        }
        Progress::Shard { done } => {
            bar.set_position(done as u64);
            // Without a terminal the bar is hidden: log one line per shard instead.
            if bar.is_hidden() && !args.quiet {
                let secs = clock.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "record: {done}/{} records, {tokens} tokens, {targets} targets, {:.0} tok/s",
                    bar.length().unwrap_or(0),
                    tokens as f64 / secs
                );
            }
        }
        // Shown even with --quiet: it concerns the user's data.
        Progress::Notice(line) if bar.is_hidden() => eprintln!("{line}"),
        Progress::Notice(line) => bar.println(line),
    };
    let mut server = None;
    let summary = match super::remote_url(&args.teacher.teacher) {
        Some(url) => {
            let (teacher, tokenizer) = super::connect_remote(url, &args.remote)?;
            let summary = record::record_remote(&cfg, &tokenizer, &teacher, &mut on);
            server = Some(teacher.times());
            summary
        }
        None => record::record(&cfg, &mut on),
    }
    .with_context(|| format!("recording into '{}'", cfg.out.display()))?;
    bar.finish_and_clear();
    let s = &summary;
    let secs = s.seconds.max(1e-9);
    println!("corpus     {}", cfg.out.display());
    println!(
        "records    {} in corpus ({} this run, {} from an earlier run)",
        s.records, s.recorded_now, s.resumed_from
    );
    println!(
        "tokens     {} processed this run, {} response targets ({:.0} tok/s, {:.0} targets/s, {:.1} s)",
        s.tokens_now,
        s.targets_now,
        s.tokens_now as f64 / secs,
        s.targets_now as f64 / secs,
        s.seconds
    );
    if let Some(t) = server.filter(|t| t.requests > 0) {
        let (prompt, decode) = t.rates();
        println!(
            "server     {decode:.0} tok/s decode and {prompt:.0} tok/s prompt per slot, by its own timings ({} requests)",
            t.requests
        );
    }
    if cfg.settings.mode == record::Mode::Generate && s.recorded_now > 0 {
        println!(
            "endings    {} end-of-turn, {} max-new-tokens, {} context full",
            s.stops[0], s.stops[1], s.stops[2]
        );
    }
    println!(
        "size       {} for {} targets ({:.0} bytes/target)",
        super::bytes(s.bytes),
        s.targets,
        s.bytes as f64 / s.targets.max(1) as f64
    );
    if let Some(slice) = args.shard {
        println!(
            "slice      {slice}: when all {} slices are recorded, join them with `distill merge OUT DIRS...`",
            slice.count
        );
    }
    if s.skipped_bad + s.skipped_long > 0 {
        println!(
            "skipped    {} bad lines, {} records too long for --ctx",
            s.skipped_bad, s.skipped_long
        );
    }
    Ok(())
}
