//! `distill merge`: join `record --shard I/N` slices into one corpus; summary on stdout.

use anyhow::Context;

use crate::cli::MergeArgs;
use crate::record;

pub fn run(args: &MergeArgs) -> anyhow::Result<()> {
    let s = record::merge(&args.out, &args.slices)
        .with_context(|| format!("merging into '{}'", args.out.display()))?;
    println!("corpus     {}", args.out.display());
    println!(
        "merged     {} slices: {} records in {} shards, {} targets, {}",
        s.slices,
        s.records,
        s.shards,
        s.targets,
        super::bytes(s.bytes)
    );
    Ok(())
}
