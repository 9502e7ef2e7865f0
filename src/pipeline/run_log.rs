//! `run.log`, the dashboard's log file in the run directory. On a first run the directory
//! does not exist while the inputs are checked: lines logged then are held in memory and
//! written as soon as it does, so they land in the run's log; a run refused before its
//! directory is made leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Most bytes held while the directory does not exist yet; later lines are dropped.
const PENDING_CAP: usize = 1 << 20;

/// A log file that opens (appending) once its directory exists.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<u8>,
}

impl RunLog {
    /// The log at `path`, opened when its parent directory exists.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
            pending: Vec::new(),
        }
    }

    /// The open file, opening it (and writing what was held) if the directory now exists.
    fn file(&mut self) -> std::io::Result<Option<&mut File>> {
        let dir_exists = self.path.parent().is_some_and(Path::is_dir);
        if self.file.is_none() && dir_exists {
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            f.write_all(&self.pending)?;
            self.pending = Vec::new();
            self.file = Some(f);
        }
        Ok(self.file.as_mut())
    }
}

impl Write for RunLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = self.file()? {
            return f.write(buf);
        }
        if self.pending.len() + buf.len() <= PENDING_CAP {
            self.pending.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_logged_before_the_run_directory_exists_land_in_its_log() {
        let root = std::env::temp_dir().join(format!("distill-run-log-{}", std::process::id()));
        std::fs::remove_dir_all(&root).ok();
        let dir = root.join("run");
        let mut log = RunLog::new(&dir.join("run.log"));
        log.write_all(b"checking inputs\n").expect("held");
        assert!(!root.exists(), "nothing is created before the run is");
        std::fs::create_dir_all(&dir).expect("the run starts");
        log.write_all(b"recording\n").expect("written");
        log.flush().expect("flush");
        let text = std::fs::read_to_string(dir.join("run.log")).expect("log");
        assert_eq!(text, "checking inputs\nrecording\n");
        std::fs::remove_dir_all(&root).ok();
    }
}
