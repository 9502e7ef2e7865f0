//! `distill export`: write a student directory as a GGUF file for llama.cpp.

use anyhow::Context;
use clap::ValueEnum;

use crate::cli::{ExportArgs, ExportFormat};
use crate::student::export::{GgufExport, export_gguf};

/// Export the student, then print what was written.
///
/// # Errors
/// A directory that is not a student, a teacher with another tokenizer, I/O failures.
pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    match args.format {
        ExportFormat::Gguf => gguf(args),
    }
}

fn gguf(args: &ExportArgs) -> anyhow::Result<()> {
    let job = GgufExport {
        student: args.student.clone(),
        teacher: args.teacher.clone(),
        out: args.out.clone(),
        quant: args.quant,
    };
    let summary = export_gguf(&job).with_context(|| {
        format!(
            "exporting student '{}' to '{}'",
            args.student.display(),
            args.out.display()
        )
    })?;
    if !summary.fallback_f16.is_empty() {
        eprintln!(
            "note: {} matrices kept as f16, their rows are not a multiple of 32: {}",
            summary.fallback_f16.len(),
            summary.fallback_f16.join(", ")
        );
    }
    println!(
        "wrote '{}': {}, {}, {} tensors, {:.1}M parameters, tokenizer and chat template from '{}'",
        args.out.display(),
        super::bytes(summary.bytes),
        args.quant
            .to_possible_value()
            .map_or_else(String::new, |v| v.get_name().into()),
        summary.tensors,
        summary.n_params as f64 / 1e6,
        summary.teacher.display()
    );
    Ok(())
}
