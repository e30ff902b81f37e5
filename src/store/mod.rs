//! The store: the only module that speaks SQL, to SQLite (one node, `state_dir/dirsync.db`)
//! or PostgreSQL (`database_url`, shared by several nodes). It owns the schema (numbered,
//! forward-only migrations per backend), the stored snapshot of every tenant, the
//! transactional outbox of events, the record of runs, the per-tenant sync lease and the
//! sinks' delivery cursors.
//!
//! Every SQL function here is synchronous over a [`sql::Connection`] (rusqlite's shape, either
//! engine). The rest of dirsync reaches them through one handle, [`Store`]: its async methods
//! run the SQL on the blocking pool with a connection from a small pool, so no async worker
//! ever waits on the database and a run does not open connections of its own. Must not:
//! import sources or sinks.

pub mod cluster;
pub mod console;
pub mod cursors;
mod digest;
mod forget;
mod handle;
mod lock;
pub mod lookup;
mod migrations;
mod outbox;
mod postgres_tls;
pub mod push;
mod runs;
mod snapshot;
pub mod sql;
mod transfer;

pub use cursors::{
    advance_cursor, ensure_cursor, load_cursor, pending_events, prune_delivered,
    record_delivery_error, unpark, Cursor, Lag, PendingEvent,
};
pub use digest::{commit_unchanged, current_digest, DigestCounts, FetchDigest};
pub use forget::{forget_tenant, Forgotten};
pub use handle::Commit;
pub use lock::{
    acquire_lease, holder_process, host_name, new_holder, process_uid, release_lease, renew_lease,
    take_over_lease, HolderProcess, Lease, LeaseError,
};
pub use outbox::{
    build_event, commit, events_after, last_seq, CommitSummary, NewEvents, NewExclusion,
};
pub use runs::{last_runs, prune_runs, record_run};
pub use snapshot::{load_index, load_objects, load_snapshot, stored_counts, StoredCounts};
pub use transfer::{transfer, Transferred};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::OpenFlags;

pub use sql::{Backend, Connection, PostgresConfig};

pub use migrations::SCHEMA_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}. Check `state_dir` in the global config and that dirsync may write there")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}. Check that `state_dir` is writable")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot connect to PostgreSQL at {url}: {source}. Check `database_url` (and `database_password_file`) in the global config, and that the server accepts this host")]
    Connect { url: String, source: sql::Error },
    #[error("the database {path} has schema version {found}, newer than this dirsync knows ({known}); run a newer dirsync or restore a backup")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database error: {0}")]
    Sql(sql::Error),
    /// The process is out of file descriptors: said as such, not as a permission problem.
    #[error("{action}: {detail}. {}", crate::process_stats::descriptors_advice())]
    OutOfDescriptors { action: String, detail: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("a database task stopped: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for StoreError {
    /// SQLite says "unable to open database file" when it cannot open the `-wal` or `-shm`
    /// file, or a temporary file, for lack of descriptors: that is then said as such.
    fn from(err: rusqlite::Error) -> Self {
        if cannot_open(&err) && crate::process_stats::descriptors_exhausted() {
            return StoreError::OutOfDescriptors {
                action: "a database statement failed".into(),
                detail: err.to_string(),
            };
        }
        StoreError::Sql(err.into())
    }
}

impl From<sql::Error> for StoreError {
    fn from(err: sql::Error) -> Self {
        match err {
            sql::Error::Sqlite(err) => err.into(),
            other => StoreError::Sql(other),
        }
    }
}

fn cannot_open(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(failure, _) if failure.code == rusqlite::ErrorCode::CannotOpen)
}

/// The one handle on the database: cheap to clone, shared by every task of a process.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    location: Location,
    /// Connections kept open between calls; at most [`IDLE_CONNECTIONS`].
    idle: Mutex<Vec<Connection>>,
    /// PostgreSQL: connections open now, at most `pool_size`; callers beyond wait here.
    open: Mutex<u32>,
    freed: std::sync::Condvar,
    /// Runs kept per tenant; older ones are deleted as new ones are recorded.
    run_history: AtomicU32,
}

/// Where the store is.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // One per store, made once.
pub enum Location {
    /// `state_dir/dirsync.db`.
    Sqlite(PathBuf),
    Postgres {
        config: PostgresConfig,
        pool_size: u32,
    },
}

impl Location {
    /// The store the global config names: `database_url`, else the SQLite file in `state_dir`.
    pub fn of(global: &crate::config::GlobalConfig) -> Result<Self, StoreError> {
        match &global.database {
            None => Ok(Location::Sqlite(global.database_path())),
            Some(database) => {
                let config = PostgresConfig::parse(
                    &database.url,
                    database.password.as_ref().map(|secret| secret.expose()),
                )
                .map_err(|err| StoreError::Connect {
                    url: sql::redact_url(&database.url),
                    source: sql::Error::Usage(err),
                })?;
                Ok(Location::Postgres {
                    config,
                    pool_size: database.pool_size,
                })
            }
        }
    }

    /// For messages: the SQLite file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres { config, .. } => config.display().to_owned(),
        }
    }
}

/// Page cache per connection: a push writer or a run gets a different pooled connection each
/// time, and with SQLite's 2 MB default most of a tenant's hot pages were read again.
pub(crate) const CACHE_KIB: i64 = 8 * 1024;

/// Prepared statements kept per connection: every statement the store runs often.
const STATEMENT_CACHE: usize = 256;

/// Open connections kept for reuse: enough for a run, its lease renewal and a few delivery
/// tasks at once; more are opened when needed and closed after use.
const IDLE_CONNECTIONS: usize = 8;

impl Store {
    /// Creates the state directory if needed, opens the SQLite database and migrates it.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        // Read now, while a file can still be opened: the message for running out needs it.
        crate::process_stats::open_files_limit();
        std::fs::create_dir_all(state_dir).map_err(|source| state_dir_error(state_dir, source))?;
        let store = Self::at(Location::Sqlite(state_dir.join("dirsync.db")));
        create_private(store.path())?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens the store the global config names (`database_url`, else SQLite in `state_dir`).
    pub fn open_global(global: &crate::config::GlobalConfig) -> Result<Self, StoreError> {
        match Location::of(global)? {
            Location::Sqlite(_) => Self::open(&global.state_dir),
            postgres => Self::open_at(postgres),
        }
    }

    /// Opens (and migrates) the store at `location`.
    pub fn open_at(location: Location) -> Result<Self, StoreError> {
        if let Location::Sqlite(path) = &location {
            let dir = path.parent().unwrap_or(Path::new("."));
            return Self::open(dir);
        }
        let store = Self::at(location);
        store.migrate()?;
        Ok(store)
    }

    /// Opens the database only if it exists (for read-only verbs); never creates it. A
    /// PostgreSQL store always exists.
    pub fn open_existing(state_dir: &Path) -> Result<Option<Self>, StoreError> {
        crate::process_stats::open_files_limit();
        let path = state_dir.join("dirsync.db");
        if !path.exists() {
            return Ok(None);
        }
        let store = Self::at(Location::Sqlite(path));
        store.migrate()?;
        Ok(Some(store))
    }

    /// [`Store::open_existing`] for the store the global config names.
    pub fn open_existing_global(
        global: &crate::config::GlobalConfig,
    ) -> Result<Option<Self>, StoreError> {
        match Location::of(global)? {
            Location::Sqlite(_) => Self::open_existing(&global.state_dir),
            postgres => Self::open_at(postgres).map(Some),
        }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.run_blocking(|conn| migrations::migrate(conn, &self.inner.location))
    }

    fn at(location: Location) -> Self {
        Self {
            inner: Arc::new(Inner {
                location,
                idle: Mutex::new(Vec::new()),
                open: Mutex::new(0),
                freed: std::sync::Condvar::new(),
                run_history: AtomicU32::new(u32::MAX),
            }),
        }
    }

    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    pub fn backend(&self) -> Backend {
        match self.inner.location {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres { .. } => Backend::Postgres,
        }
    }

    /// The SQLite file; for PostgreSQL, a path naming no file (messages use [`Location`]).
    pub fn path(&self) -> &Path {
        match &self.inner.location {
            Location::Sqlite(path) => path,
            Location::Postgres { .. } => Path::new("postgres"),
        }
    }

    /// Keeps at most `runs` runs per tenant in the run history (config `run_history`).
    pub fn keep_run_history(self, runs: u32) -> Self {
        self.inner.run_history.store(runs.max(1), Ordering::Relaxed);
        self
    }

    pub fn run_history(&self) -> u32 {
        self.inner.run_history.load(Ordering::Relaxed)
    }

    /// Runs `work` with a pooled connection on the blocking pool: the gateway through which
    /// all of dirsync's SQL runs.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.run_blocking(work))
            .await
            .map_err(|err| StoreError::Task(err.to_string()))?
    }

    /// [`Store::run`] for code that is already on a blocking thread.
    pub fn run_blocking<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.checkout()?;
        let result = work(&mut conn);
        // A connection left inside a transaction (a panic in `work` aside, which drops it),
        // or one the server closed, must not be handed to the next caller.
        if conn.is_reusable() {
            self.put_back(conn);
        } else {
            self.closed(conn);
        }
        result
    }

    /// An idle connection still open: one the server closed meanwhile (a PostgreSQL restart)
    /// is dropped here rather than failing its caller's first statement.
    fn idle_connection(&self) -> Option<Connection> {
        loop {
            let conn = lock(&self.inner.idle).pop()?;
            if conn.is_reusable() {
                return Some(conn);
            }
            self.closed(conn);
        }
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = lock(&self.inner.idle);
        if idle.len() < self.idle_limit() {
            idle.push(conn);
        } else {
            drop(idle);
            self.closed(conn);
        }
    }

    fn idle_limit(&self) -> usize {
        match self.inner.location {
            Location::Sqlite(_) => IDLE_CONNECTIONS,
            Location::Postgres { pool_size, .. } => pool_size as usize,
        }
    }

    /// Closes a connection and lets a waiter open one (PostgreSQL's pool size).
    fn closed(&self, conn: Connection) {
        drop(conn);
        if let Location::Postgres { .. } = self.inner.location {
            let mut open = lock(&self.inner.open);
            *open = open.saturating_sub(1);
            self.inner.freed.notify_one();
        }
    }

    /// A new connection configured like the pooled ones, for tests and tools that read the
    /// database directly; dirsync itself goes through [`Store::run`]. Not counted against
    /// PostgreSQL's pool size.
    pub fn connect(&self) -> Result<Connection, StoreError> {
        match &self.inner.location {
            Location::Sqlite(path) => Ok(Connection::from_sqlite(connect_sqlite(path)?)),
            Location::Postgres { config, .. } => {
                Connection::connect_postgres(config).map_err(|source| StoreError::Connect {
                    url: config.display().to_owned(),
                    source,
                })
            }
        }
    }

    /// A connection for [`Store::run_blocking`]: an idle one, else a new one; for PostgreSQL
    /// at most `pool_size` open at once, waiting for one to be put back beyond that.
    fn checkout(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle_connection() {
            return Ok(conn);
        }
        let Location::Postgres { pool_size, .. } = &self.inner.location else {
            return self.connect();
        };
        let mut open = lock(&self.inner.open);
        loop {
            // Someone may have put a connection back while we waited.
            if let Some(conn) = self.idle_connection() {
                return Ok(conn);
            }
            if *open < *pool_size {
                break;
            }
            open = self
                .inner
                .freed
                .wait_timeout(open, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *open += 1;
        drop(open);
        self.connect().inspect_err(|_| {
            let mut open = lock(&self.inner.open);
            *open = open.saturating_sub(1);
            self.inner.freed.notify_one();
        })
    }

    /// A connection of its own, outside the pool, for a task that holds one for long (a
    /// `LISTEN`er). `None` for SQLite.
    pub fn dedicated_postgres(&self) -> Result<Option<Connection>, StoreError> {
        match &self.inner.location {
            Location::Sqlite(_) => Ok(None),
            Location::Postgres { config, .. } => Connection::connect_postgres(config)
                .map(Some)
                .map_err(|source| StoreError::Connect {
                    url: config.display().to_owned(),
                    source,
                }),
        }
    }
}

fn connect_sqlite(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    {
        let open = || -> rusqlite::Result<rusqlite::Connection> {
            let conn = rusqlite::Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_CREATE
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(30))?;
            // A push write runs a few dozen distinct statements; with rusqlite's default of 16
            // cached ones they evicted each other and were parsed again on every write.
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            // Temporary storage in memory: each push write's savepoint copies the pages it
            // changes to a sub-journal, which spilled to a temporary file past 64 KiB. (A
            // large commit switches to files for its index sorts: `outbox::commit`.) Setting
            // it here, once: changing it later expires every prepared statement.
            conn.pragma_update(None, "temp_store", "MEMORY")?;
            conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
            // Only takes effect on a new database. 16 KiB pages keep a kilobyte-sized user row
            // or event body with dozens of others per page and the B-trees a level shallower:
            // a first sync of 100k users commits about a quarter faster than with 4 KiB.
            conn.pragma_update(None, "page_size", 16384)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(conn)
        };
        // Switching a new database to WAL takes a lock SQLite does not wait for with the busy
        // handler, so processes creating the database together retry for a while.
        let mut attempts = 0;
        loop {
            match open() {
                Ok(conn) => return Ok(conn),
                Err(rusqlite::Error::SqliteFailure(err, _))
                    if matches!(
                        err.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && attempts < 200 =>
                {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(source) if crate::process_stats::descriptors_exhausted() => {
                    return Err(StoreError::OutOfDescriptors {
                        action: format!("cannot open the database {}", path.display()),
                        detail: source.to_string(),
                    })
                }
                Err(source) => {
                    return Err(StoreError::Open {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        }
    }
}

/// Creates the database file, empty, readable by its owner only (it holds every tenant's
/// directory), whatever the umask: SQLite then gives its `-wal` and `-shm` files the same mode.
/// An existing file is left as it is.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(state_dir_error(path, source)),
    }
}

/// A state directory or database file that cannot be created: out of descriptors is said as
/// such, anything else points at `state_dir`.
fn state_dir_error(path: &Path, source: std::io::Error) -> StoreError {
    if crate::process_stats::is_out_of_descriptors(&source) {
        return StoreError::OutOfDescriptors {
            action: format!("cannot create {}", path.display()),
            detail: source.to_string(),
        };
    }
    StoreError::StateDir {
        path: path.to_owned(),
        source,
    }
}

/// A poisoned pool only means a task panicked while pushing or popping; the list is intact.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch, the store's time unit.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests;
