//! `distill chat`.

use crate::cli::ChatArgs;

pub fn run(_args: &ChatArgs) -> anyhow::Result<()> {
    anyhow::bail!("distill chat is not built yet")
}
