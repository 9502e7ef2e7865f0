//! How the student of `distill run` starts, decided from the teacher's profile before any
//! stage runs. (Issue 12's pruning replaces this file.)

use anyhow::bail;

use crate::cli::RunArgs;
use crate::gguf::TeacherProfile;
use crate::gguf::profile::join;

/// How the run's student starts, decided from the teacher's profile before any stage runs:
/// the teacher's blocks (`--layers`, by default a fifth of them spread) where the student
/// can copy them, else a random student at the base preset. Returns the blocks (empty for
/// random) and the choice in words, for the screen and `run.json`. (The one function
/// issue 12's pruning replaces.)
pub(crate) fn plan_student(
    a: &RunArgs,
    p: &TeacherProfile,
) -> anyhow::Result<(Vec<usize>, String)> {
    if let Some(why) = &p.init_blocker {
        if a.layers.is_some() {
            bail!(
                "--layers needs a teacher whose blocks the student can copy, and '{}' is not: {why}; drop --layers for a random student",
                p.file()
            );
        }
        return Ok((
            Vec::new(),
            with_tokenizer_note(p, format!("random init, base preset ({why})")),
        ));
    }
    let layers = match &a.layers {
        Some(l) => l.clone(),
        None => p.default_layers(p.default_student_blocks()),
    };
    p.check_layers(&layers)?;
    let note = format!("teacher blocks {}", join(&layers));
    Ok((layers, with_tokenizer_note(p, note)))
}

/// `note`, and the warning that tokenizer.json will be missing when it will.
fn with_tokenizer_note(p: &TeacherProfile, note: String) -> String {
    match &p.tokenizer_blocker {
        None => note,
        Some(why) => format!("{note}; warning: no tokenizer.json ({why})"),
    }
}
