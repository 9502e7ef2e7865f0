//! How the student of `distill run` starts, decided from the teacher's profile before any
//! stage runs: cut from the teacher (`--shape auto` or `blocks`) where the student can copy
//! its blocks, else random at the base preset.

use anyhow::bail;

use crate::cli::RunArgs;
use crate::gguf::TeacherProfile;
use crate::student::init;
use crate::student::shape::{Shape, ShapeRequest};

/// The run's student shape (`None`: random) and the choice in words, for the screen and
/// `run.json`.
pub(crate) fn plan_student(
    a: &RunArgs,
    p: &TeacherProfile,
) -> anyhow::Result<(Option<Shape>, String)> {
    if let Some(why) = &p.init_blocker {
        if a.layers.is_some() {
            bail!(
                "--layers needs a teacher whose blocks the student can copy, and '{}' is not: {why}; drop --layers for a random student",
                p.file()
            );
        }
        return Ok((
            None,
            with_tokenizer_note(p, format!("random init, base preset ({why})")),
        ));
    }
    if let Some(layers) = &a.layers {
        p.check_layers(layers)?;
    }
    let request = ShapeRequest {
        kind: a.shape,
        speedup: a.speedup,
        layers: a.layers.clone(),
        kv_groups: None,
        intermediate: None,
    };
    let shape = request.resolve(&init::teacher_config(p, p.blocks))?;
    let note = format!("cut from the teacher: {}", shape.describe());
    Ok((Some(shape), with_tokenizer_note(p, note)))
}

/// `note`, and the warning that tokenizer.json will be missing when it will.
fn with_tokenizer_note(p: &TeacherProfile, note: String) -> String {
    match &p.tokenizer_blocker {
        None => note,
        Some(why) => format!("{note}; warning: no tokenizer.json ({why})"),
    }
}
