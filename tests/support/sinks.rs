//! Shared by the sink tests: a temp config with tenants and sinks, synthetic commits through the
//! library (no IdP needed), a webhook receiver on loopback whose behaviour a test can change,
//! and helpers to run the real binary.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use dirsync::event::SourceKind;
use dirsync::model::{Email, Id, RawAttributes, Snapshot, User, UserState};
use dirsync::run::{Millis, RunSummary};
use dirsync::store::{self, Lease, NewEvents, Store};
use serde_json::Value;

/// A Standard Webhooks secret for tests.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dirsync")
}

/// Polls `condition` until it holds, failing the test with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like `wait_until`, adding `context()` (e.g. a process's log) to the failure.
pub fn wait_until_or(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A config folder: `dirsync.toml`, `tenants/*.toml`, a SCIM token and a webhook secret.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new(global_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        std::fs::write(
            dir.path().join("dirsync.toml"),
            format!("state_dir = \"state\"\ntenants_dir = \"tenants\"\ncontrol_socket = \"control.sock\"\n{global_extra}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("tenants/scim-token"), "token").unwrap();
        std::fs::write(dir.path().join("tenants/secret"), SECRET).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("dirsync.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Writes a tenant whose source is never reached (events come from `commit_users`) with
    /// the given `[[sinks]]` TOML.
    pub fn tenant(&self, id: &str, sinks: &str) {
        std::fs::write(
            self.path().join(format!("tenants/{id}.toml")),
            format!("[source]\ntype = \"scim\"\nbase_url = \"http://127.0.0.1:9/scim/v2\"\ntoken_file = \"scim-token\"\n\n{sinks}"),
        )
        .unwrap();
    }

    /// Writes a tenant file as given.
    pub fn tenant_toml(&self, id: &str, text: &str) {
        std::fs::write(self.path().join(format!("tenants/{id}.toml")), text).unwrap();
    }

    pub fn store(&self) -> Store {
        Store::open(&self.state_dir()).unwrap()
    }

    /// Commits a sync that creates users `range` (one `user.created` event each).
    pub fn commit_users(&self, tenant: &str, range: std::ops::Range<u32>) -> u64 {
        commit_users(&self.store(), tenant, range)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("DIRSYNC_CONFIG")
            .env("RUST_LOG", "info");
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Starts `dirsync deliver` (continuous) with its logs in a file of the temp dir.
    pub fn spawn_deliver(&self, args: &[&str]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("deliver.log"))
            .unwrap();
        let mut all = vec!["deliver"];
        all.extend_from_slice(args);
        self.command(&all)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("deliver.log")).unwrap_or_default()
    }

    /// `dirsync status TENANT --json`, parsed.
    pub fn status(&self, tenant: &str) -> Value {
        let out = self.run(&["status", tenant, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn sink_status(&self, tenant: &str, sink: &str) -> Value {
        self.status(tenant)["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == sink)
            .cloned()
            .unwrap()
    }

    /// Every stored event of the tenant (`dirsync events`), parsed.
    pub fn events(&self, tenant: &str) -> Vec<Value> {
        let out = self.run(&["events", tenant]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Stops a child process on drop so a failing test leaves nothing running.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn user(n: u32) -> User {
    let email = format!("user{n}@example.com");
    User {
        id: Id::from(format!("u{n}")),
        email: email.clone(),
        username: email.clone(),
        first_name: Some("First".into()),
        last_name: Some(format!("Last{n}")),
        display_name: None,
        emails: vec![Email {
            value: email,
            primary: true,
        }],
        state: UserState::Active,
        roles: Vec::new(),
        custom_attributes: Default::default(),
        raw_attributes: RawAttributes::from_value(&serde_json::json!({ "id": format!("u{n}") })),
    }
}

/// Commits, like a sync would, the stored snapshot plus users `range`; returns the last seq.
pub fn commit_users(store: &Store, tenant: &str, range: std::ops::Range<u32>) -> u64 {
    let mut conn = store.connect().unwrap();
    let holder = store::new_holder();
    let lease: Lease =
        store::acquire_lease(&mut conn, tenant, &holder, Duration::from_secs(60)).unwrap();
    let before = store::load_snapshot(&conn, tenant).unwrap();
    let mut after: Snapshot = before.clone();
    for n in range {
        let u = user(n);
        after.users.insert(u.id.clone(), u);
    }
    let changes = dirsync::diff::diff(&before, &after);
    let now = store::now_ms();
    let summary = store::commit(
        &mut conn,
        NewEvents {
            tenant,
            source: SourceKind::Scim,
            lease: &lease,
            before: &before,
            after: &after,
            changes: &changes,
            run: RunSummary::begun(tenant, Millis(now)),
            exclusions: Vec::new(),
            direct: None,
        },
    )
    .unwrap();
    store::release_lease(&conn, &lease).unwrap();
    summary.last_seq
}

/// One request the receiver acknowledged.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub webhook_id: String,
    pub events: Vec<Value>,
}

impl Delivery {
    pub fn seqs(&self) -> Vec<u64> {
        self.events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }
}

/// A webhook receiver on 127.0.0.1 that records what it acknowledged (2xx). Tests steer it:
/// fail the next N requests with 500, answer every request with a fixed status, or delay.
#[derive(Clone, Default)]
pub struct Receiver {
    pub acknowledged: Arc<Mutex<Vec<Delivery>>>,
    pub requests: Arc<AtomicUsize>,
    pub fail_next: Arc<AtomicUsize>,
    /// Non-zero: answer every request with this status.
    pub status: Arc<AtomicU16>,
    pub delay_ms: Arc<AtomicU64>,
    /// Events acknowledged so far (kept even when `discard` is set).
    pub count: Arc<AtomicU64>,
    /// Count events without keeping them (benchmarks with millions of events).
    pub discard: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    /// Serves on `addr` (port 0 for any) on a thread of its own; returns the bound address.
    pub fn start(&self, addr: &str) -> SocketAddr {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let bound = listener.local_addr().unwrap();
        let this = self.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new()
                    .route("/{*path}", post(receive))
                    .with_state(this);
                axum::serve(listener, app).await.unwrap();
            });
        });
        bound
    }

    pub fn seqs(&self) -> Vec<u64> {
        self.acknowledged
            .lock()
            .unwrap()
            .iter()
            .flat_map(Delivery::seqs)
            .collect()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.acknowledged.lock().unwrap().clone()
    }

    /// Every acknowledged event, in the order received.
    pub fn events(&self) -> Vec<Value> {
        self.acknowledged
            .lock()
            .unwrap()
            .iter()
            .flat_map(|d| d.events.clone())
            .collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    let delay = receiver.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = receiver.status.load(Ordering::SeqCst);
    if status != 0 {
        return StatusCode::from_u16(status).unwrap();
    }
    if receiver
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if receiver.discard.load(Ordering::SeqCst) {
        // Counting the top-level objects is enough: bodies are an object or an array of them.
        let events = if body.first() == Some(&b'[') {
            serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&body)
                .unwrap()
                .len()
        } else {
            1
        };
        receiver.count.fetch_add(events as u64, Ordering::SeqCst);
        return StatusCode::NO_CONTENT;
    }
    let value: Value = serde_json::from_slice(&body).unwrap();
    let events = match value {
        Value::Array(events) => events,
        one => vec![one],
    };
    receiver
        .count
        .fetch_add(events.len() as u64, Ordering::SeqCst);
    receiver.acknowledged.lock().unwrap().push(Delivery {
        path: uri.path().to_owned(),
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        events,
    });
    StatusCode::NO_CONTENT
}

/// A port nothing listens on now (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Python with the test packages: `$DIRSYNC_TEST_PYTHON`, else `<repo>/.venv/bin/python`.
pub fn python() -> PathBuf {
    match std::env::var_os("DIRSYNC_TEST_PYTHON") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    }
}

/// Checks that every received event appears, that seqs never skip ahead (a redelivery after a
/// crash may go back, never forward past a gap), and that a seq always has the same id.
pub fn assert_no_loss_no_reorder(seqs_and_ids: &[(u64, String)], last_seq: u64) {
    let mut highest = 0u64;
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    for (seq, id) in seqs_and_ids {
        assert!(
            *seq <= highest + 1,
            "seq {seq} arrived after {highest}: something was skipped or reordered"
        );
        highest = highest.max(*seq);
        let known = ids.entry(*seq).or_insert_with(|| id.clone());
        assert_eq!(known, id, "seq {seq} was redelivered with another id");
    }
    assert_eq!(
        ids.keys().copied().collect::<Vec<_>>(),
        (1..=last_seq).collect::<Vec<_>>(),
        "not every event arrived"
    );
}
