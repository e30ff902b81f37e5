//! SQLite's checkpoints, mostly off the writers' path.
//!
//! By default the connection whose commit takes the write-ahead log past 1,000 pages copies
//! the log into the database file, and its commit returns after that and two fsyncs. Under a
//! stream of push writes that was every few batches, a fifth of the writer's time. Here a
//! thread of the store's own runs `PASSIVE` checkpoints (at most every [`MIN_INTERVAL`], after
//! a write), which copy what the log holds while writers go on appending to it.
//!
//! A log starts over from its beginning only once every frame in it has been copied, and a
//! writer that never pauses leaves none of the thread's checkpoints the last word: so pooled
//! connections still checkpoint themselves, at [`WRITER_CHECKPOINT_FRAMES`], when little is
//! left to copy, and the next commit starts the log over. Measured (push bench, 20k users,
//! PATCHes of 10 members): 1,340 -> 1,490-1,540 PATCHes/s; a larger threshold gave more
//! throughput and a p99 over 100 ms (the writer's fsyncs then wait for the thread's writes).

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::mutex::lock;

/// Pages in the log at which a committing connection checkpoints itself, as SQLite does at
/// 1,000 by default: by then this thread has copied nearly all of them.
pub(super) const WRITER_CHECKPOINT_FRAMES: i64 = 2048;

/// Checkpoints at most this often: each costs two fsyncs, whatever it copies.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The store's checkpoint thread; stopped (and joined) when dropped.
#[derive(Debug)]
pub(super) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Something may have been written since the last checkpoint.
    written: bool,
    stop: bool,
}

impl Checkpointer {
    /// A checkpoint thread for the SQLite database at `path`; `None` if no thread can be
    /// started (the pooled connections then checkpoint as SQLite does by default).
    pub(super) fn start(path: PathBuf) -> Option<Self> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("dirsync-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || checkpoint_loop(&path, &shared)
            })
            .ok()?;
        Some(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Says the log may have grown.
    pub(super) fn written(&self) {
        let mut state = lock(&self.shared.state);
        if !state.written {
            state.written = true;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn checkpoint_loop(path: &std::path::Path, shared: &Shared) {
    let mut conn: Option<rusqlite::Connection> = None;
    let mut last: Option<Instant> = None;
    loop {
        {
            let mut state = lock(&shared.state);
            loop {
                if state.stop {
                    return;
                }
                let wait = last.map_or(Duration::ZERO, |last| {
                    MIN_INTERVAL.saturating_sub(last.elapsed())
                });
                if state.written && wait.is_zero() {
                    state.written = false;
                    break;
                }
                let timeout = if state.written {
                    wait
                } else {
                    Duration::from_secs(3600)
                };
                state = match shared.wake.wait_timeout(state, timeout) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
        }
        last = Some(Instant::now());
        if conn.is_none() {
            conn = super::connect_sqlite(path).ok();
        }
        let Some(db) = &conn else { continue };
        if let Err(err) = checkpoint(db) {
            tracing::debug!(database = %path.display(), "checkpoint failed (the next one retries): {err}");
            conn = None;
        }
    }
}

/// Copies what the log holds into the database file, without waiting for writers.
fn checkpoint(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use crate::store::Store;

    /// Rows in the database file itself, ignoring the log (`immutable`); 0 while the file
    /// does not have the table yet.
    fn tenants_in_file(path: &std::path::Path) -> i64 {
        let uri = format!("file:{}?immutable=1", path.display());
        let file = rusqlite::Connection::open_with_flags(
            uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .unwrap();
        file.query_row("SELECT count(*) FROM tenants", [], |row| row.get(0))
            .unwrap_or(0)
    }

    #[test]
    fn writes_reach_the_database_file_without_a_writer_checkpointing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .run_blocking(|conn| {
                for i in 0..50 {
                    conn.execute(
                        "INSERT INTO tenants (tenant, last_seq) VALUES (?1, 0)",
                        [format!("t{i}")],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        // Far below the writers' own threshold: only the thread copies them.
        let deadline = Instant::now() + Duration::from_secs(20);
        while tenants_in_file(store.path()) < 50 {
            assert!(
                Instant::now() < deadline,
                "the checkpoint thread did not copy the log into the database file"
            );
            std::thread::yield_now();
        }
        // Dropping the store stops the thread (and does not hang).
        drop(store);
    }
}
