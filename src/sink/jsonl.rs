//! The JSON-lines sink: appends each event as one line to a file and fsyncs every batch before
//! the cursor moves. Safe with logrotate: before each batch the path's device and inode are
//! compared with the open file's (a moved or deleted file is reopened, creating a new one), and
//! a SIGHUP-driven reopen hook forces a reopen for `copytruncate`-free setups that signal.
//!
//! A crash can leave a partial last line (written but not fsynced or acknowledged); on open it
//! is cut off, since that event was never acknowledged and is written again whole.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::DeliveryError;
use crate::store::PendingEvent;

struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
}

pub struct JsonlSink {
    path: PathBuf,
    open: Option<OpenFile>,
    /// Bumped by the reopen hook (SIGHUP); a change since the last batch forces a reopen.
    reopen: Arc<AtomicU64>,
    seen: u64,
}

impl JsonlSink {
    pub fn new(path: PathBuf, reopen: Arc<AtomicU64>) -> Self {
        let seen = reopen.load(Ordering::Relaxed);
        Self {
            path,
            open: None,
            reopen,
            seen,
        }
    }

    /// Appends the events, one line each, and fsyncs; `Ok` means they are on disk.
    pub async fn deliver(&mut self, events: &[PendingEvent]) -> Result<(), DeliveryError> {
        let mut buffer = Vec::with_capacity(events.iter().map(|e| e.body.len() + 1).sum());
        for event in events {
            buffer.extend_from_slice(event.body.as_bytes());
            buffer.push(b'\n');
        }
        let generation = self.reopen.load(Ordering::Relaxed);
        let force_reopen = generation != self.seen;
        let path = self.path.clone();
        let open = self.open.take();
        let (open, result) = tokio::task::spawn_blocking(move || {
            let mut open = match current_file(&path, open, force_reopen) {
                Ok(open) => open,
                Err(err) => return (None, Err(err)),
            };
            let result = open
                .file
                .write_all(&buffer)
                .and_then(|()| open.file.sync_data())
                .map_err(|err| io_error(&path, "append to", &err));
            match result {
                Ok(()) => (Some(open), Ok(())),
                // After a failed write the file's tail is unknown: reopen (and trim) next time.
                Err(err) => (None, Err(err)),
            }
        })
        .await
        .map_err(|err| DeliveryError::Unavailable {
            message: format!("the file writer stopped: {err}"),
            retry_after: None,
        })?;
        self.open = open;
        self.seen = generation;
        result
    }
}

fn io_error(path: &Path, action: &str, err: &std::io::Error) -> DeliveryError {
    DeliveryError::Unavailable {
        message: format!(
            "cannot {action} {}: {err}; check that the folder exists and dirsync may write there",
            path.display()
        ),
        retry_after: None,
    }
}

/// The open file if the path still names it, else the file now at the path (created if needed).
fn current_file(
    path: &Path,
    open: Option<OpenFile>,
    force_reopen: bool,
) -> Result<OpenFile, DeliveryError> {
    if let Some(open) = open {
        let same = std::fs::metadata(path)
            .map(|meta| meta.dev() == open.dev && meta.ino() == open.ino)
            .unwrap_or(false);
        if same && !force_reopen {
            return Ok(open);
        }
        if !same {
            tracing::info!(path = %path.display(), "the events file was moved or deleted; reopening");
        }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|err| io_error(path, "open", &err))?;
    trim_partial_line(&mut file).map_err(|err| io_error(path, "repair the last line of", &err))?;
    let meta = file
        .metadata()
        .map_err(|err| io_error(path, "stat", &err))?;
    Ok(OpenFile {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Cuts the file after its last newline when it does not end with one.
fn trim_partial_line(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(chunk.len() as u64);
        let size = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..size])?;
        if end == len && chunk[size - 1] == b'\n' {
            return Ok(());
        }
        if let Some(at) = chunk[..size].iter().rposition(|b| *b == b'\n') {
            tracing::warn!("the events file ended with a partial line (an interrupted write); cutting it off, the event is written again");
            return file.set_len(start + at as u64 + 1);
        }
        if start == 0 {
            return file.set_len(0);
        }
        end = start;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_partial_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"seq\":1}\n{\"seq\":2}\n{\"se").unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        trim_partial_line(&mut file).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"seq\":1}\n{\"seq\":2}\n"
        );
        std::fs::write(&path, "{\"se").unwrap();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .unwrap();
        trim_partial_line(&mut file).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
