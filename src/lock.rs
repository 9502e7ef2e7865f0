//! One writer per output directory: `record`, `train` and `run` hold an exclusive advisory
//! lock on `<dir>/.distill.lock` (std's `File::try_lock`, `flock` on Unix) for as long as
//! they run, and write their pid into the file so a second process can say who holds it.
//! The lock dies with its process, so the file a killed run leaves behind never blocks.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".distill.lock";

/// An exclusive lock on a directory, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DirLock {
    /// Held open: closing the file releases the lock.
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Create `dir` if needed and lock it for this process.
    ///
    /// # Errors
    /// [`Error::Locked`] naming the directory and the holder's pid when another process
    /// holds it; [`Error::Io`] when the directory or lock file cannot be made.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                file.read_to_string(&mut pid).ok();
                let pid = pid.trim();
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let mut stamp = || -> std::io::Result<()> {
            file.set_len(0)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            file.flush()
        };
        stamp().map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_pid_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("distill-lock-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let first = DirLock::acquire(&dir).expect("first");
        assert_eq!(first.dir(), dir);
        let err = DirLock::acquire(&dir).expect_err("held");
        let text = err.to_string();
        assert!(
            text.contains(&dir.display().to_string())
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        // The file stays behind, as after a killed run, and does not block.
        assert!(dir.join(LOCK_FILE).exists());
        DirLock::acquire(&dir).expect("free again");
        std::fs::remove_dir_all(&dir).ok();
    }
}
