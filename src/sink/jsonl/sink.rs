//! Appending one batch: the open file (reopened when logrotate moved or deleted it, or when
//! SIGHUP asked), one line per event, fsynced before the batch counts as delivered.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::repair::trim_partial_line;
use crate::sink::DeliveryError;
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
