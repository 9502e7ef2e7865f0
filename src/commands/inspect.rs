//! `distill inspect`: what a corpus holds, and one sequence as the teacher saw it.

use anyhow::{Context, bail};

use crate::cli::InspectArgs;
use crate::record::recorder::file_sha256;
use crate::record::{Manifest, Shard};
use crate::teacher::LlamaTeacher;

/// Target positions shown with their alternatives.
const SHOWN_POSITIONS: usize = 6;
/// Alternatives shown per position.
const SHOWN_ALTERNATIVES: usize = 5;

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let dir = &args.corpus;
    let m = Manifest::read(dir)?.with_context(|| {
        format!(
            "'{}' has no manifest.json: not a corpus directory",
            dir.display()
        )
    })?;
    let t = &m.teacher;
    let r = &m.record;
    println!(
        "corpus      {} (format v{}, written by distill {})",
        dir.display(),
        m.schema_version,
        m.tool_version
    );
    println!(
        "teacher     {} ({}, {} params, vocab {})",
        t.file, t.architecture, t.n_params, t.n_vocab
    );
    println!(
        "            sha256 {}  tokenizer {}",
        t.sha256,
        &t.tokenizer_fingerprint[..16]
    );
    println!(
        "settings    mode {:?}, top-k {}, temperature {}, top-p {}, seed {}, max-new-tokens {}, ctx {}, parallel {}",
        r.mode, r.k, r.temperature, r.top_p, r.seed, r.max_new_tokens, r.ctx, r.parallel
    );
    if let Some(system) = &r.system {
        println!("system      {system:?}");
    }
    for s in &m.sources {
        println!(
            "source      {} ({} records, {} skipped)",
            s.path.display(),
            s.records,
            s.skipped
        );
    }
    let tot = &m.totals;
    let status = match (m.slice, m.complete) {
        (Some(slice), true) => format!(
            "slice {slice} of {} records, complete: `distill merge` joins the slices",
            m.planned_records
        ),
        (Some(slice), false) => format!(
            "slice {slice} of {} records, incomplete: {} recorded",
            m.planned_records,
            m.records()
        ),
        (None, true) => "complete".to_string(),
        (None, false) => format!(
            "incomplete: {} of {} records",
            m.next_record(),
            m.planned_records
        ),
    };
    println!(
        "records     {} sequences in {} shards ({status})",
        tot.sequences,
        m.shards.len()
    );
    println!(
        "tokens      {} total, {} targets ({:.1}% of positions)",
        tot.tokens,
        tot.targets,
        100.0 * tot.targets as f64 / tot.tokens.max(1) as f64
    );
    println!(
        "size        {} ({:.1} bytes per target token; top-k rows alone {} bytes)",
        super::bytes(tot.bytes),
        tot.bytes as f64 / tot.targets.max(1) as f64,
        r.k * 4
    );
    if args.verify {
        for s in &m.shards {
            let sha = file_sha256(&dir.join(&s.file))?;
            if sha != s.sha256 {
                bail!(
                    "shard '{}' is damaged: sha256 {sha}, manifest says {}",
                    s.file,
                    s.sha256
                );
            }
        }
        println!(
            "verify      all {} shards match their sha256",
            m.shards.len()
        );
    }
    show_sample(args, &m)
}

fn show_sample(args: &InspectArgs, m: &Manifest) -> anyhow::Result<()> {
    let mut index = args.sample;
    let Some(info) = m.shards.iter().find(|s| {
        let here = index < s.sequences;
        if !here {
            index -= s.sequences;
        }
        here
    }) else {
        if m.totals.sequences > 0 {
            bail!(
                "--sample {} is out of range: the corpus has {} sequences",
                args.sample,
                m.totals.sequences
            );
        }
        return Ok(());
    };
    let shard = Shard::read(&args.corpus.join(&info.file))?;
    let path = args
        .teacher
        .clone()
        .unwrap_or_else(|| m.teacher.path.clone());
    let teacher = LlamaTeacher::load(&path, m.teacher.sha256.clone())
        .with_context(|| "decoding needs the teacher's vocabulary: pass --teacher GGUF")?;
    if teacher.info.tokenizer_fingerprint != m.teacher.tokenizer_fingerprint {
        bail!(
            "'{}' has another tokenizer than the corpus teacher '{}'",
            path.display(),
            m.teacher.file
        );
    }
    let range = shard.sequence(index);
    let tokens = &shard.tokens[range.clone()];
    let mask = &shard.target_mask[range.clone()];
    let row0: usize = shard.target_mask[..range.start]
        .iter()
        .map(|&b| usize::from(b))
        .sum();
    let first_target = mask.iter().position(|&b| b == 1).unwrap_or(tokens.len());
    println!(
        "\nsample {} ({} tokens, {} targets)",
        args.sample,
        tokens.len(),
        mask.iter().filter(|&&b| b == 1).count()
    );
    println!(
        "--- prompt ---\n{}",
        teacher.detokenize(&tokens[..(first_target + 1).min(tokens.len())])
    );
    println!(
        "--- response ---\n{}",
        teacher.detokenize(&tokens[(first_target + 1).min(tokens.len())..])
    );
    let n_targets = mask.iter().filter(|&&b| b == 1).count();
    if n_targets == 0 {
        return Ok(());
    }
    println!(
        "--- teacher's top-{SHOWN_ALTERNATIVES} at {} response positions ---",
        SHOWN_POSITIONS.min(n_targets)
    );
    let step = (n_targets / SHOWN_POSITIONS).max(1);
    for j in (0..n_targets).step_by(step).take(SHOWN_POSITIONS) {
        let row = row0 + j;
        let next = tokens[first_target + j + 1];
        let alts: Vec<String> = (0..SHOWN_ALTERNATIVES.min(shard.k))
            .map(|a| {
                let id = shard.topk_ids[row * shard.k + a];
                let p = f32::from(shard.topk_logprobs[row * shard.k + a]).exp();
                let mark = if id == next { "*" } else { "" };
                format!("{mark}{:?} {:.3}", teacher.piece(id), p)
            })
            .collect();
        let tail: f32 = 1.0
            - (0..shard.k)
                .map(|a| f32::from(shard.topk_logprobs[row * shard.k + a]).exp())
                .sum::<f32>();
        println!(
            "  +{j:<4} next {:<14} | {} | tail {:.3}",
            format!("{:?}", teacher.piece(next)),
            alts.join("  "),
            tail.max(0.0)
        );
    }
    Ok(())
}
