//! `distill chat`: check the arguments, name the models, hand over to the TUI.

use anyhow::{Context, bail};

use crate::chat::app::AppConfig;
use crate::chat::settings::Settings;
use crate::chat::tui::{self, ChatSetup};
use crate::chat::worker::ModelSource;
use crate::chat::{Mode, Side};
use crate::cli::{ChatArgs, ChatMode};

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
    if !args.no_teacher {
        models.push((Side::Teacher, ModelSource::Gguf(args.teacher.clone())));
    }
    if let Some(student) = &args.student {
        let fallback = Some(args.teacher.clone());
        models.push((
            Side::Student,
            ModelSource::from_path(student.clone(), fallback),
        ));
    }
    let exists = |s: &ModelSource| match s {
        ModelSource::Gguf(p) => p.exists(),
        ModelSource::StudentDir { dir, .. } => dir.exists(),
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
        transcripts: args.transcripts.clone(),
    })
    .context("distill chat")
}
