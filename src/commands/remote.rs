//! `--teacher http://HOST:PORT`: connect to a teacher server with the `--tokenizer` GGUF.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::cli::RemoteArgs;
use crate::record::file_sha256;
use crate::teacher::RemoteTeacher;

/// The URL when `--teacher` names a server rather than a file.
pub(crate) fn remote_url(teacher: &Path) -> Option<&str> {
    teacher
        .to_str()
        .filter(|t| t.starts_with("http://") || t.starts_with("https://"))
}

/// The `--tokenizer` GGUF a server teacher needs, checked before anything starts.
pub(crate) fn remote_tokenizer(url: &str, a: &RemoteArgs) -> anyhow::Result<PathBuf> {
    if url.starts_with("https://") {
        anyhow::bail!(
            "'{url}': this build speaks plain HTTP only; reach the server over http:// (an SSH tunnel: ssh -L 8080:localhost:8080 HOST)"
        );
    }
    let tokenizer = a.tokenizer.clone().with_context(|| {
        format!("--teacher '{url}' is a server: give --tokenizer GGUF, the GGUF of the model it runs (tokenization and the chat template are done here)")
    })?;
    if !tokenizer.is_file() {
        anyhow::bail!(
            "--tokenizer '{}' is not a file: give the GGUF of the model the server runs",
            tokenizer.display()
        );
    }
    Ok(tokenizer)
}

/// Connect to the server at `url`; returns the teacher and the tokenizer GGUF's path.
pub(crate) fn connect_remote(
    url: &str,
    a: &RemoteArgs,
) -> anyhow::Result<(RemoteTeacher, PathBuf)> {
    let tokenizer = remote_tokenizer(url, a)?;
    let sha = file_sha256(&tokenizer)?;
    let teacher = RemoteTeacher::connect(
        url,
        a.teacher_api,
        &tokenizer,
        sha,
        Duration::from_secs(a.teacher_timeout),
    )
    .with_context(|| format!("connecting to the teacher server '{url}'"))?;
    Ok((teacher, tokenizer))
}
