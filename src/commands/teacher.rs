//! `distill teacher`: show a teacher's profile and what each stage does with it; cut a
//! teacher to a subset of its blocks.

use anyhow::Context;

use crate::cli::{TeacherCutArgs, TeacherInfoArgs};
use crate::gguf::profile::join;
use crate::gguf::{Family, TeacherProfile, cut};

pub fn info(a: &TeacherInfoArgs) -> anyhow::Result<()> {
    let p = TeacherProfile::read(&a.teacher)
        .with_context(|| format!("reading teacher '{}'", a.teacher.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    for line in profile_lines(&p) {
        println!("{line}");
    }
    Ok(())
}

/// The profile as aligned `label  value` lines, then what each stage will do.
pub(crate) fn profile_lines(p: &TeacherProfile) -> Vec<String> {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let template = match &p.chat_template {
        Some(t) => format!("yes ({} characters)", t.len()),
        None => "none: a base model (record raw text with --mode score)".into(),
    };
    let init = match (&p.init_blocker, p.family()) {
        (None, Family::Qwen2) => "from its blocks, with q/k/v biases (--init teacher)".into(),
        (None, _) => "from its blocks (--init teacher)".into(),
        (Some(why), _) => format!("random ({why})"),
    };
    let layers = p.default_layers(p.default_student_blocks());
    vec![
        format!("teacher       {} ({})", p.file(), p.name),
        format!("architecture  {} ({} blocks)", p.architecture, p.blocks),
        format!(
            "sizes         hidden {}, {} heads of {} ({} key/value), feed-forward {}, context {}",
            p.hidden, p.heads, p.head_dim, p.kv_heads, p.ffn, p.context
        ),
        format!(
            "tokenizer     {} / {}, {} tokens, add BOS {}",
            p.tokenizer_model,
            p.pre,
            p.n_vocab,
            yes_no(p.add_bos)
        ),
        format!("chat template {template}"),
        format!(
            "biases        {}, tied embeddings {}",
            yes_no(p.attention_bias),
            yes_no(p.tied_embeddings)
        ),
        format!("student init  {init}"),
        match p.init_blocker {
            None => format!("default --layers {}", join(&layers)),
            Some(_) => "default --layers none (distill run starts a random student)".into(),
        },
        format!(
            "tokenizer.json {}",
            p.tokenizer_blocker.as_ref().map_or(
                "built from the GGUF, matches llama.cpp".into(),
                |w| format!("not written: {w}")
            )
        ),
    ]
}

pub fn cut(a: &TeacherCutArgs) -> anyhow::Result<()> {
    let s = cut::cut_blocks(&a.teacher, &a.blocks, &a.out).with_context(|| {
        format!(
            "cutting '{}' into '{}'",
            a.teacher.display(),
            a.out.display()
        )
    })?;
    println!(
        "wrote '{}': {} of {} blocks ({}), {} tensors, {}",
        a.out.display(),
        a.blocks.len(),
        s.source_blocks,
        join(&a.blocks),
        s.tensors,
        super::bytes(s.bytes)
    );
    Ok(())
}
