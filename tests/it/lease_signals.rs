//! A stand-alone `dirsync sync` and the tenant's lease: SIGTERM stops it like Ctrl-C (the run
//! is recorded, the lease released, a clear message, exit 1 rather than death by signal); a
//! second sync says at the default log level that it waits and for whom; and a holder that
//! died on this host (kill -9) has its lease taken over at once instead of after 60 s.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dirsync_emulator::{FaultKind, FaultRule};
use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::{wait_until_or, ConfigDir, Running};
use serde_json::json;

/// A child `dirsync` whose stderr is collected as it comes.
pub(crate) struct Watched {
    child: Running,
    stderr: Arc<Mutex<String>>,
}

impl Watched {
    pub(crate) fn spawn(dir: &ConfigDir, args: &[&str]) -> Self {
        let mut child: Child = dir
            .dirsync()
            .clone()
            .env(
                "RUST_LOG",
                std::env::var("TEST_DIRSYNC_LOG").unwrap_or("warn".into()),
            )
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Self {
            child: Running(child),
            stderr,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (with a deadline) for the exit; the exit code, `None` when killed by a signal.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "pid {} did not exit within {timeout:?}\n{}",
                self.pid(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn lease_holder(dir: &ConfigDir) -> Option<String> {
    let db = dir.state_dir().join("dirsync.db");
    let conn = rusqlite::Connection::open(db).ok()?;
    conn.query_row("SELECT holder FROM leases WHERE tenant = 'acme'", [], |r| {
        r.get(0)
    })
    .ok()
}

/// A tenant whose first `users.list` hangs for a minute (later ones answer at once).
fn slow_tenant() -> (GoogleEmulator, ConfigDir) {
    let emulator = GoogleEmulator::start(&json!({
        "domain": "example.com",
        "users": [{"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}}],
        "groups": [],
    }));
    emulator
        .faults()
        .add(FaultRule {
            method: Some("users.list".into()),
            fault: FaultKind::Delay,
            latency_ms: Some(60_000),
            times: 1,
            ..FaultRule::default()
        })
        .unwrap();
    let dir = crate::support::config_dir(false);
    dir.emulator_tenant(
        "acme",
        &emulator,
        "requests_per_minute = 0\nrequest_timeout_seconds = 120",
        "",
    );
    (emulator, dir)
}

/// Waits until `first` holds the lease and its `users.list` hangs (the one-shot delay fired,
/// so the next sync is answered at once).
fn holds_the_lease(emulator: &GoogleEmulator, dir: &ConfigDir, first: &Watched) {
    let pid = first.pid();
    wait_until_or(
        "the first sync to hold the lease, its users.list in flight",
        Duration::from_secs(30),
        || {
            lease_holder(dir).is_some_and(|h| h.starts_with(&format!("pid {pid} ")))
                && emulator.faults().list().is_empty()
        },
        || first.stderr(),
    );
}

#[test]
fn sigterm_stops_a_sync_releases_its_lease_and_the_waiter_says_for_whom_it_waits() {
    let (emulator, dir) = slow_tenant();
    let mut first = Watched::spawn(&dir, &["sync", "acme", "--local"]);
    holds_the_lease(&emulator, &dir, &first);
    let holder = lease_holder(&dir).unwrap();
    assert!(
        holder.contains(" on "),
        "the holder names its host: {holder}"
    );

    let mut second = Watched::spawn(&dir, &["sync", "acme", "--local"]);
    wait_until_or(
        "the second sync to say that it waits, and for whom",
        Duration::from_secs(30),
        || second.stderr().contains("waiting for the sync lease"),
        || second.stderr(),
    );
    assert!(second.stderr().contains(&holder), "{}", second.stderr());

    first.signal("TERM");
    let code = first.wait_exit(Duration::from_secs(30));
    let stderr = first.stderr();
    assert_eq!(
        code,
        Some(1),
        "a clean exit, not death by SIGTERM: {stderr}"
    );
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    assert!(stderr.contains("nothing was committed"), "{stderr}");

    // The lease came back at once: the waiter syncs now, not a minute later.
    assert_eq!(
        second.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        second.stderr()
    );
    assert_eq!(lease_holder(&dir), None);
    let status = dir.status("acme");
    assert_eq!(status["last_run"]["outcome"], "committed", "{status}");
}

#[test]
fn the_lease_of_a_holder_killed_on_this_host_is_taken_over_at_once() {
    let (emulator, dir) = slow_tenant();
    let mut first = Watched::spawn(&dir, &["sync", "acme", "--local"]);
    holds_the_lease(&emulator, &dir, &first);
    let holder = lease_holder(&dir).unwrap();
    first.signal("KILL");
    assert_eq!(first.wait_exit(Duration::from_secs(30)), None);
    assert_eq!(lease_holder(&dir), Some(holder.clone()), "left held");

    // Well before the 60 s expiry.
    let mut second = Watched::spawn(&dir, &["sync", "acme", "--local"]);
    assert_eq!(
        second.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        second.stderr()
    );
    assert!(
        second
            .stderr()
            .contains(&format!("took over the sync lease of {holder}")),
        "{}",
        second.stderr()
    );
}
