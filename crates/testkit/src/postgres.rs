//! A real PostgreSQL server for tests (Debian's `postgresql` package; `.ci/run` installs it),
//! never a mock. Two shapes:
//!
//! - [`PgDatabase`]: a fresh, empty, uniquely named database on the shared throw-away cluster
//!   that `scripts/test.sh` starts and names in `DIRSYNC_TEST_DATABASE_URL`; dropped again
//!   when the value is. What most store and node tests want: cheap, isolated, parallel.
//! - [`PgCluster`]: a private server of a test's own (initdb in a temp dir, a free port on
//!   127.0.0.1), for tests that stop, restart or kill PostgreSQL under load.
//!
//! It talks to the server through `psql` and the server tools (`initdb`, `pg_ctl`,
//! `pg_isready`) as processes, not through a Rust client: the product's own PostgreSQL client
//! stays the only one in the build. The tools come from `DIRSYNC_TEST_PG_BIN` (what
//! `scripts/test.sh` sets), else the newest `/usr/lib/postgresql/N/bin` (Debian keeps them off
//! `PATH`), else `PATH`. initdb and postgres refuse to run as root, so as root the server runs
//! as `DIRSYNC_TEST_PG_OS_USER`, else the `postgres` user that Debian's package creates.
//!
//! Every cluster's superuser is `postgres` with trust authentication on 127.0.0.1 and on its
//! unix socket (in its temp dir); URLs are `postgres://postgres@127.0.0.1:PORT/DB`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The URL of the shared test cluster's `postgres` database (set by `scripts/test.sh`).
pub const DATABASE_URL_VAR: &str = "DIRSYNC_TEST_DATABASE_URL";
/// The directory with `initdb`, `pg_ctl`, `postgres`, `psql`, `pg_isready`.
pub const PG_BIN_VAR: &str = "DIRSYNC_TEST_PG_BIN";
/// The non-root OS user that runs test clusters when the tests run as root.
pub const PG_OS_USER_VAR: &str = "DIRSYNC_TEST_PG_OS_USER";

/// What to tell someone whose test run has no PostgreSQL.
pub const HOW_TO_RUN: &str = "run the tests with scripts/test.sh: it starts a throw-away PostgreSQL on 127.0.0.1 and sets DIRSYNC_TEST_DATABASE_URL and DIRSYNC_TEST_PG_BIN (the server comes from Debian's `postgresql` package: run .ci/run, or apt-get install postgresql)";

/// How long a server may take to start, stop or answer.
const DEADLINE: Duration = Duration::from_secs(60);

/// The directory of PostgreSQL's server binaries. Panics, saying what to install, when there
/// is none.
pub fn pg_bin() -> PathBuf {
    find_pg_bin().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in ${PG_BIN_VAR}, /usr/lib/postgresql/*/bin or on PATH: {HOW_TO_RUN}"
        )
    })
}

fn find_pg_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(PG_BIN_VAR).filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let mut debian: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("initdb"))
        .find(|initdb| initdb.exists())
        .and_then(|initdb| std::fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
}

/// A PostgreSQL client tool: from the server's bin dir when there is one, else `PATH`.
fn client_tool(name: &str) -> PathBuf {
    find_pg_bin()
        .map(|dir| dir.join(name))
        .filter(|tool| tool.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A command for a PostgreSQL tool with none of the caller's `PG*` variables (a developer's
/// `PGHOST`, `PGPORT`, `PGUSER`, … would redirect it) and a connect timeout.
fn pg_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("PG")) {
            command.env_remove(name);
        }
    }
    command.env("PGCONNECT_TIMEOUT", "10").stdin(Stdio::null());
    command
}

/// Runs `sql` (one or more `;`-terminated statements, each on its own, so `CREATE DATABASE`
/// works) with `psql` against `url`; `Ok(output)` in unaligned form without headers (one row
/// a line, columns split by `|`), `Err(stderr)` when psql or a statement fails.
pub fn try_psql(url: &str, sql: &str) -> Result<String, String> {
    let psql = client_tool("psql");
    let mut child = pg_command(&psql)
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
            url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e} ({HOW_TO_RUN})", psql.display()))?;
    // Written from a thread of its own: psql answers while it reads, and a long script with
    // a long answer would otherwise fill both pipes and wait forever.
    let mut stdin = child.stdin.take();
    let sql = sql.to_owned();
    let writer = std::thread::spawn(move || {
        stdin
            .as_mut()
            .map_or(Ok(()), |stdin| stdin.write_all(sql.as_bytes()))
    });
    let output = child.wait_with_output().map_err(|e| format!("psql: {e}"))?;
    let written = writer.join().unwrap_or(Ok(()));
    if !output.status.success() {
        return Err(format!(
            "psql {url} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    written.map_err(|e| format!("writing SQL to psql: {e}"))?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned())
}

/// [`try_psql`], panicking with psql's error.
pub fn psql(url: &str, sql: &str) -> String {
    try_psql(url, sql).unwrap_or_else(|e| panic!("{e}\nSQL: {sql}"))
}

/// `postgres://postgres@127.0.0.1:PORT/DATABASE`: a database on a test cluster.
fn cluster_url(port: u16, database: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{database}")
}

/// A fresh, empty database (from `template0`) of its own on a shared server, dropped (with
/// its connections) when this value is. Names are unique across threads and processes.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    url: String,
    server_url: String,
}

impl PgDatabase {
    /// A new database on the shared test cluster of `DIRSYNC_TEST_DATABASE_URL`. Panics when
    /// it is not set, saying to run the tests with `scripts/test.sh`.
    pub fn create() -> Self {
        let server_url = std::env::var(DATABASE_URL_VAR)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| panic!("{DATABASE_URL_VAR} is not set: {HOW_TO_RUN}"));
        Self::create_on(&server_url)
    }

    /// A new database on the server that `server_url` (any database on it, as a superuser
    /// or a role with CREATEDB) reaches, e.g. a [`PgCluster::url`].
    pub fn create_on(server_url: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "dirsync_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut url = url::Url::parse(server_url)
            .unwrap_or_else(|e| panic!("{server_url} is not a postgres:// URL: {e}"));
        url.set_path(&format!("/{name}"));
        psql(
            server_url,
            &format!("CREATE DATABASE \"{name}\" TEMPLATE template0;"),
        );
        Self {
            name,
            url: url.into(),
            server_url: server_url.to_owned(),
        }
    }

    /// `postgres://…/NAME`: the URL of this database (user, host, port and query of the
    /// server URL it was created from).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // FORCE (PostgreSQL 13+) ends sessions a test left open, such as a daemon still
        // exiting; best effort either way, since the whole cluster is thrown away at the end.
        let force = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE);", self.name);
        if try_psql(&self.server_url, &force).is_err() {
            let _ = try_psql(
                &self.server_url,
                &format!("DROP DATABASE IF EXISTS \"{}\";", self.name),
            );
        }
    }
}

/// A private PostgreSQL server: its own data dir in a temp dir, its own port on 127.0.0.1 and
/// unix socket in the temp dir, `fsync=off` (the data is thrown away; a crash of postgres alone
/// loses nothing with it). It can be stopped, killed and started again on the same data and
/// port, as the tests that restart the database under load need. Dropping it stops the server
/// and removes the dir; if the test process dies without dropping it (a panic abort, a
/// `SIGKILL`, Ctrl-C), a watchdog process does both.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    os_user: Option<String>,
    port: u16,
    /// Closing this pipe without a word (the test process died) makes the watchdog stop the
    /// server and remove the dir; a `done` line makes it exit quietly.
    watchdog: Option<(Child, ChildStdin)>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl PgCluster {
    /// initdb in a fresh temp dir and start the server on a free loopback port (a new port
    /// when another process takes the probed one first), waiting until it accepts
    /// connections. Panics with the server's log when it does not start.
    pub fn start() -> Self {
        Self::start_on_ports(crate::free_port)
    }

    /// [`start`](Self::start) on the first port of `next_port` that postgres can bind.
    fn start_on_ports(mut next_port: impl FnMut() -> u16) -> Self {
        let bin = pg_bin();
        for tool in ["initdb", "pg_ctl", "postgres", "pg_isready"] {
            assert!(
                bin.join(tool).exists(),
                "{} is missing: {HOW_TO_RUN}",
                bin.join(tool).display()
            );
        }
        let os_user = server_os_user();
        let dir = tempfile::Builder::new()
            .prefix("dirsync-pg-")
            .tempdir()
            .unwrap();
        if let Some(user) = &os_user {
            run_ok(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(dir.path()),
            );
        }
        let mut cluster = Self {
            dir,
            bin,
            os_user,
            port: 0,
            watchdog: None,
        };
        let initdb = cluster
            .as_server_user("initdb")
            .arg("-D")
            .arg(cluster.data_dir())
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ])
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            output_text(&initdb)
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 200\n",
            cluster.dir.path().display()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data_dir().join("postgresql.conf"))
            .and_then(|mut file| file.write_all(conf.as_bytes()))
            .unwrap();
        cluster.spawn_watchdog();
        for attempt in 1.. {
            cluster.port = next_port();
            match cluster.try_start() {
                Ok(()) => break,
                Err(log) if attempt < 10 && bind_failed(&log) => {}
                Err(log) => panic!(
                    "PostgreSQL did not start on 127.0.0.1:{}; its log:\n{log}",
                    cluster.port
                ),
            }
        }
        cluster
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        cluster_url(self.port, "postgres")
    }

    /// The URL of another database on this server.
    pub fn database_url(&self, database: &str) -> String {
        cluster_url(self.port, database)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the postmaster is running (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        self.as_server_user("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// A clean, fast shutdown: sessions are ended and rolled back, a checkpoint is written,
    /// then it waits until the server is gone.
    pub fn stop(&self) {
        self.shut_down("fast");
    }

    /// A crash: immediate shutdown (every server process quits at once, no checkpoint; the
    /// next start recovers from the WAL, as after a power loss without the loss). Waits until
    /// the server is gone.
    pub fn kill(&self) {
        self.shut_down("immediate");
    }

    /// Starts the stopped or killed server again on the same data dir and port, waiting until
    /// it accepts connections (after [`kill`](Self::kill), that includes crash recovery).
    /// Panics when it cannot, e.g. when another process took the port meanwhile.
    pub fn start_again(&self) {
        if let Err(log) = self.try_start() {
            panic!(
                "PostgreSQL did not start again on 127.0.0.1:{}; its log:\n{log}",
                self.port
            );
        }
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub fn restart(&self) {
        self.stop();
        self.start_again();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn shut_down(&self, mode: &str) {
        let output = self
            .as_server_user("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t"])
            .arg(DEADLINE.as_secs().to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl stop -m {mode} failed: {}\nthe server's log:\n{}",
            output_text(&output),
            self.log()
        );
    }

    /// `pg_ctl start` on `self.port`, waiting (up to the deadline) until the server accepts
    /// connections; `Err(log)` when it does not start.
    fn try_start(&self) -> Result<(), String> {
        // One log per attempt, so a retry reads its own failure, not an earlier one's.
        let _ = std::fs::remove_file(self.log_path());
        let start = self
            .as_server_user("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .arg("-o")
            .arg(format!("-p {}", self.port))
            .arg("-w")
            .arg("-t")
            .arg(DEADLINE.as_secs().to_string())
            // The postmaster writes to the log file; pg_ctl's own output is only its status.
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        if !start.status.success() {
            return Err(format!("{}{}", output_text(&start), self.log()));
        }
        let isready = client_tool("pg_isready");
        let port = self.port.to_string();
        crate::wait_until_or(
            "the test PostgreSQL to accept connections",
            DEADLINE,
            || {
                pg_command(&isready)
                    .args(["-q", "-h", "127.0.0.1", "-p", &port, "-t", "1"])
                    .status()
                    .is_ok_and(|status| status.success())
            },
            || self.log(),
        );
        Ok(())
    }

    /// A server tool run as the user the server runs as, in the cluster's dir (initdb and
    /// pg_ctl warn when they cannot read the current directory).
    fn as_server_user(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut command = match &self.os_user {
            Some(user) => {
                let mut command = pg_command(Path::new("runuser"));
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => pg_command(&program),
        };
        command.current_dir(self.dir.path());
        command
    }

    /// A shell, ignoring the signals that end the tests (Ctrl-C reaches the whole process
    /// group), that waits on a pipe from this process: on a `done` line it exits; on EOF (this
    /// process died without dropping the cluster) it stops the server and removes the dir.
    fn spawn_watchdog(&mut self) {
        let run_as = match &self.os_user {
            Some(user) => format!("runuser -u '{user}' -- "),
            None => String::new(),
        };
        let script = format!(
            "trap '' INT TERM HUP; read line; [ \"$line\" = done ] && exit 0; \
             {run_as}'{pg_ctl}' stop -D '{data}' -m immediate -w >/dev/null 2>&1; rm -rf '{dir}'",
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
            dir = self.dir.path().display(),
        );
        let mut child = pg_command(Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        self.watchdog = Some((child, stdin));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self
                .as_server_user("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.write_all(b"done\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// The OS user that runs a test server: `None` (this process's user) unless this process
/// runs as root, which initdb and postgres refuse; then `$DIRSYNC_TEST_PG_OS_USER`, else
/// `postgres` (Debian's package creates it). Panics when there is neither.
fn server_os_user() -> Option<String> {
    let uid = std::fs::metadata("/proc/self").map(|meta| meta.uid()).ok();
    let is_root = uid.map_or_else(
        || {
            Command::new("id")
                .arg("-u")
                .output()
                .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
        },
        |uid| uid == 0,
    );
    if !is_root {
        return None;
    }
    if let Some(user) = std::env::var(PG_OS_USER_VAR)
        .ok()
        .filter(|user| !user.is_empty())
    {
        return Some(user);
    }
    let postgres_exists = Command::new("id")
        .args(["-u", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        postgres_exists,
        "running as root, and PostgreSQL refuses to: there is no `postgres` user (Debian's postgresql package creates it) and {PG_OS_USER_VAR} names no other; {HOW_TO_RUN}"
    );
    Some("postgres".to_owned())
}

/// Whether a server's log says it could not listen on its port (another process took it).
fn bind_failed(log: &str) -> bool {
    log.contains("could not bind") || log.contains("could not create any TCP/IP sockets")
}

fn run_ok(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        output_text(&output)
    );
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_is_fresh_answers_and_is_dropped_with_its_value() {
        let first = PgDatabase::create();
        let second = PgDatabase::create();
        assert_ne!(first.name(), second.name());
        assert!(first.url().ends_with(&format!("/{}", first.name())));
        assert_eq!(psql(first.url(), "SELECT 1;"), "1");
        assert_eq!(
            psql(first.url(), "SELECT current_database();"),
            first.name()
        );
        let no_tables = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';";
        assert_eq!(psql(first.url(), no_tables), "0");
        psql(
            first.url(),
            "CREATE TABLE t (x int); INSERT INTO t VALUES (7);",
        );
        assert_eq!(psql(first.url(), "SELECT x FROM t;"), "7");
        assert_eq!(psql(second.url(), no_tables), "0", "databases are separate");

        let server = std::env::var(DATABASE_URL_VAR).unwrap();
        let name = first.name().to_owned();
        // A session left open (a daemon not yet gone) does not keep the database alive.
        let mut open_session = pg_command(&client_tool("psql"))
            .args(["-X", "-q", "-d", first.url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{name}';");
        crate::wait_until("the open session", DEADLINE, || {
            psql(
                &server,
                &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}';"),
            ) == "1"
        });
        drop(first);
        assert_eq!(psql(&server, &exists), "0");
        drop(open_session.stdin.take());
        open_session.wait().unwrap();
    }

    #[test]
    fn psql_takes_a_long_script_with_a_long_answer_and_reports_errors() {
        let db = PgDatabase::create();
        let script: String = (0..20_000)
            .map(|i| format!("SELECT {i} AS n, repeat('x', 100);\n"))
            .collect();
        let answer = psql(db.url(), &script);
        assert_eq!(answer.lines().count(), 20_000);
        assert!(answer.ends_with(&format!("19999|{}", "x".repeat(100))));
        let error = try_psql(db.url(), "SELECT 1; SELECT * FROM missing; SELECT 2;").unwrap_err();
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn databases_created_in_parallel_are_distinct() {
        let names: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let db = PgDatabase::create();
                        psql(db.url(), "CREATE TABLE mine (x int);");
                        db
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().name().to_owned())
                .collect()
        });
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn a_cluster_starts_stops_starts_again_on_the_same_data_and_port_and_survives_a_kill() {
        let cluster = PgCluster::start();
        let url = cluster.url();
        assert_eq!(psql(&url, "SELECT 1;"), "1");
        assert!(cluster.is_running());
        psql(
            &url,
            "CREATE TABLE kept (x int); INSERT INTO kept VALUES (1);",
        );

        cluster.stop();
        assert!(!cluster.is_running());
        assert!(
            try_psql(&url, "SELECT 1;").is_err(),
            "stopped means stopped"
        );
        cluster.start_again();
        assert_eq!(cluster.url(), url, "the same port");
        assert_eq!(psql(&url, "SELECT x FROM kept;"), "1");

        // A commit acknowledged before the crash survives it (fsync=off is only unsafe
        // against an OS crash).
        psql(&url, "INSERT INTO kept VALUES (2);");
        cluster.kill();
        assert!(!cluster.is_running());
        cluster.start_again();
        assert_eq!(
            psql(
                &url,
                "SELECT string_agg(x::text, ',' ORDER BY x) FROM kept;"
            ),
            "1,2"
        );

        cluster.restart();
        let db = PgDatabase::create_on(&url);
        assert_eq!(psql(db.url(), "SELECT 1;"), "1");
        drop(db);

        let dir = cluster.dir.path().to_path_buf();
        let port = cluster.port();
        drop(cluster);
        assert!(!dir.exists(), "the data dir is removed");
        let isready = pg_command(&client_tool("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
            .status()
            .unwrap();
        assert!(!isready.success(), "the server is gone");
    }

    #[test]
    fn clusters_started_in_parallel_get_their_own_ports() {
        let clusters: Vec<PgCluster> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3).map(|_| scope.spawn(PgCluster::start)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut ports: Vec<u16> = clusters.iter().map(PgCluster::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), clusters.len());
        for cluster in &clusters {
            assert_eq!(
                psql(&cluster.url(), "SHOW port;"),
                cluster.port().to_string()
            );
        }
    }

    /// Not a test of its own: the child process of the next test, which starts a cluster,
    /// says where, and waits to be killed.
    #[test]
    #[ignore = "run by a_cluster_whose_test_process_dies_is_stopped_and_removed"]
    fn orphan_cluster_child() {
        let cluster = PgCluster::start();
        println!(
            "CLUSTER {} {}",
            cluster.port(),
            cluster.dir.path().display()
        );
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }

    #[test]
    fn a_cluster_whose_test_process_dies_is_stopped_and_removed() {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "postgres::tests::orphan_cluster_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let (port, dir) = loop {
            line.clear();
            assert_ne!(
                stdout.read_line(&mut line).unwrap(),
                0,
                "the child said nothing"
            );
            // libtest prints "test NAME ... " before the test's own output, on the same line.
            if let Some((_, rest)) = line.trim().split_once("CLUSTER ") {
                let (port, dir) = rest.split_once(' ').unwrap();
                break (port.to_owned(), PathBuf::from(dir));
            }
        };
        let url = cluster_url(port.parse().unwrap(), "postgres");
        assert_eq!(psql(&url, "SELECT 1;"), "1");
        child.kill().unwrap(); // SIGKILL: no Drop runs
        child.wait().unwrap();
        crate::wait_until(
            "the orphaned cluster to be stopped and removed",
            DEADLINE,
            || !dir.exists() && try_psql(&url, "SELECT 1;").is_err(),
        );
    }

    #[test]
    fn a_port_taken_before_postgres_binds_it_is_retried_with_a_new_one() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let mut ports = vec![taken_port, crate::free_port()].into_iter();
        let cluster = PgCluster::start_on_ports(|| ports.next().unwrap());
        assert_ne!(cluster.port(), taken_port);
        assert_eq!(psql(&cluster.url(), "SELECT 1;"), "1");
    }
}
