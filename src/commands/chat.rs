//! `distill chat`: check the arguments, name the models, hand over to the TUI.

use anyhow::{Context, bail};

use crate::chat::app::AppConfig;
use crate::chat::settings::Settings;
use crate::chat::student::vocab_gguf;
use crate::chat::tui::{self, ChatSetup};
use crate::chat::worker::ModelSource;
use crate::chat::{Mode, Side};
use crate::cli::{ChatArgs, ChatMode, TemplateChoice};
use crate::gguf::TeacherProfile;
use crate::teacher::NoTemplate;

/// Run `distill chat` (also called by `distill run` at the end of its pipeline, outside
/// any tokio runtime: the chat starts its own).
///
/// # Errors
/// Bad arguments, no model found, no terminal.
pub fn run(args: &ChatArgs) -> anyhow::Result<()> {
    if !(0.0..=5.0).contains(&args.temperature) {
        bail!(
            "--temperature '{}': give a number from 0 (greedy) to 5",
            args.temperature
        );
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        bail!("--top-p '{}': give a number in (0, 1]", args.top_p);
    }
    if args.max_tokens == 0 || args.ctx < 64 {
        bail!("--max-tokens must be at least 1 and --ctx at least 64");
    }
    let mut models = Vec::new();
    // A teacher on a server: its vocabulary comes from --tokenizer, as for `record`.
    let remote = match super::remote_url(&args.teacher) {
        Some(url) => Some((url.to_string(), super::remote_tokenizer(url, &args.remote)?)),
        None => None,
    };
    if !args.no_teacher {
        let source = match &remote {
            Some((url, tokenizer)) => ModelSource::Remote {
                url: url.clone(),
                api: args.remote.teacher_api,
                tokenizer: tokenizer.clone(),
                timeout_s: args.remote.teacher_timeout,
            },
            None => ModelSource::Gguf(args.teacher.clone()),
        };
        models.push((Side::Teacher, source));
    }
    if let Some(student) = &args.student {
        let vocab = remote.as_ref().map_or(&args.teacher, |(_, t)| t);
        let fallback = Some(vocab.clone());
        models.push((
            Side::Student,
            ModelSource::from_path(student.clone(), fallback),
        ));
    }
    let exists = |s: &ModelSource| match s {
        ModelSource::Gguf(p) => p.exists(),
        ModelSource::StudentDir { dir, .. } => dir.exists(),
        ModelSource::Remote { .. } => true,
    };
    if !models.iter().any(|(_, s)| exists(s)) {
        bail!(
            "no model to chat with: teacher '{}' {}",
            args.teacher.display(),
            match &args.student {
                Some(s) => format!("and student '{}' are missing", s.display()),
                None => "is missing (run scripts/setup.sh or pass --teacher PATH)".into(),
            }
        );
    }
    let no_template = check_templates(args, &models)?;
    let name = |side: Side| {
        models
            .iter()
            .find(|(s, _)| *s == side)
            .map(|(_, m)| m.name())
    };
    let app = AppConfig {
        teacher: name(Side::Teacher),
        student: name(Side::Student),
        settings: Settings {
            temperature: args.temperature,
            top_p: args.top_p,
            max_tokens: args.max_tokens,
            seed: args.seed,
            system: args.system.clone().filter(|s| !s.trim().is_empty()),
        },
        mode: match args.mode {
            ChatMode::Turns => Mode::Turns,
            ChatMode::Race => Mode::Race,
        },
        threads: super::threads(args.threads),
        size: (80, 24),
    };
    tui::run(ChatSetup {
        app,
        models,
        ctx: args.ctx,
        no_template,
        transcripts: args.transcripts.clone(),
    })
    .context("distill chat")
}

/// Refuse, before any terminal work, a model whose GGUF has no chat template (a base
/// model) unless `--template` says how to render the conversation.
fn check_templates(args: &ChatArgs, models: &[(Side, ModelSource)]) -> anyhow::Result<NoTemplate> {
    let how = match args.template {
        Some(TemplateChoice::Chatml) => return Ok(NoTemplate::ChatMl),
        Some(TemplateChoice::None) => return Ok(NoTemplate::Plain),
        None => NoTemplate::Refuse,
    };
    for (_, source) in models {
        let gguf = match source {
            ModelSource::Gguf(p) => p.clone(),
            ModelSource::StudentDir {
                dir,
                vocab_fallback,
            } => match vocab_gguf(dir, vocab_fallback.as_deref()) {
                Ok(p) => p,
                Err(_) => continue, // the student's pane reports it
            },
            ModelSource::Remote { tokenizer, .. } => tokenizer.clone(),
        };
        let Ok(profile) = TeacherProfile::read(&gguf) else {
            continue; // so does a model that does not load
        };
        if profile.chat_template.is_none() {
            bail!(
                "'{}' is a base model: it has no chat template to format a conversation with. Pass --template chatml to chat in ChatML turns (the model was not trained on them), or --template none to have it continue plain text",
                gguf.display()
            );
        }
    }
    Ok(how)
}
