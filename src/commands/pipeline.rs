//! `distill run`.

use crate::cli::RunArgs;

pub fn run(_args: &RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("distill run is not built yet")
}
