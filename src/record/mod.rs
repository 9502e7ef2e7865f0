//! The recorded corpus: format v1 (see DESIGN.md), written atomically and resumable.

mod jobs;
pub mod manifest;
pub mod merge;
pub mod origin;
pub mod prompts;
mod rebuild;
pub mod recorder;
pub mod shard;
pub mod slice;

pub use jobs::check_sources;
pub use manifest::{Manifest, Mode, RecordSettings, ShardInfo, SourceInfo};
pub use merge::{MergeSummary, merge};
pub use recorder::{
    Progress, RecordConfig, Summary, file_sha256, record, record_remote, record_with,
};
pub use shard::Shard;
pub use slice::Slice;

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Write `bytes` to `path` so that a reader (or a crash) sees the old file or the new one,
/// never a mix: write a temporary file, sync it, rename it over `path`, sync the directory.
///
/// # Errors
/// [`Error::Io`] naming the file; a full disk shows up here, before the rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    };
    write().map_err(|e| {
        std::fs::remove_file(&tmp).ok();
        Error::io(path, e)
    })
}
