//! `distill export-corpus`: a corpus as parquet for axolotl or DistillKit; files on stdout.

use anyhow::Context;

use crate::cli::ExportCorpusArgs;
use crate::handoff;

pub fn run(args: &ExportCorpusArgs) -> anyhow::Result<()> {
    let e = handoff::export_corpus(&args.corpus, args.format, &args.out).with_context(|| {
        format!(
            "exporting '{}' for {}",
            args.corpus.display(),
            args.format.name()
        )
    })?;
    println!(
        "exported   {} rows, {} tokens, {} teacher rows",
        e.rows, e.tokens, e.targets
    );
    for f in &e.files {
        println!("wrote      {}", f.display());
    }
    Ok(())
}
