//! Test support for the daemon: a throw-away config folder, the real `dirsync run` binary as a
//! child process (killed when dropped), its control socket and HTTP listener, signals, and a
//! SCIM-shaped loopback server whose answers wait behind a gate (a fetch that is "slow" for
//! exactly as long as a test wants). Used by `tests/daemon*.rs` via `#[path]`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use dirsync::daemon::control::{self, Request, Response};
use dirsync::daemon::tenant::TenantState;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_dirsync");
pub const TOKEN: &str = "daemon-test-token";

/// Polls `condition` every 50 ms until it holds; panics with `what` after `seconds`.
pub async fn wait_for<F, Fut>(seconds: u64, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A config folder: `dirsync.toml`, `tenants/`, the state dir and the control socket inside.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub http: Option<std::net::SocketAddr>,
}

impl Setup {
    pub fn new(with_http: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tenants")).unwrap();
        let http = with_http.then(|| std::net::SocketAddr::from(([127, 0, 0, 1], free_port())));
        let mut global =
            "state_dir = \"state\"\ntenants_dir = \"tenants\"\ncontrol_socket = \"control.sock\"\n"
                .to_owned();
        if let Some(addr) = http {
            global.push_str(&format!("http_listen = \"{addr}\"\n"));
        }
        std::fs::write(dir.path().join("dirsync.toml"), global).unwrap();
        Self { dir, http }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("dirsync.toml")
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("control.sock")
    }

    /// Writes `tenants/{id}.toml` for a SCIM source at `base_url` with bearer `token`, `extra`
    /// appended.
    pub fn scim_tenant(&self, id: &str, base_url: &str, token: &str, schedule: &str, extra: &str) {
        std::fs::write(self.path().join(format!("tenants/{id}.token")), token).unwrap();
        let text = format!(
            "schedule = \"{schedule}\"\n[source]\ntype = \"scim\"\nbase_url = \"{base_url}\"\ntoken_file = \"{id}.token\"\nretry_max_seconds = 1\n{extra}"
        );
        self.write_tenant(id, &text);
    }

    pub fn write_tenant(&self, id: &str, text: &str) {
        std::fs::write(self.path().join(format!("tenants/{id}.toml")), text).unwrap();
    }

    pub fn remove_tenant(&self, id: &str) {
        std::fs::remove_file(self.path().join(format!("tenants/{id}.toml"))).unwrap();
    }

    /// Runs a `dirsync` verb against this config.
    pub async fn cli(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(BIN)
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .output()
            .await
            .unwrap()
    }

    /// `dirsync status --json` for one tenant.
    pub async fn status(&self, tenant: &str) -> Value {
        let output = self.cli(&["status", tenant, "--json"]).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The daemon's view of its tenants, straight from the control socket.
    pub async fn daemon_states(&self) -> Option<Vec<TenantState>> {
        match control::request(&self.socket(), &Request::Status { tenant: None }).await {
            Ok(Some(Response {
                ok: true, tenants, ..
            })) => Some(tenants),
            _ => None,
        }
    }

    pub async fn daemon_state(&self, tenant: &str) -> Option<TenantState> {
        self.daemon_states()
            .await?
            .into_iter()
            .find(|s| s.tenant == tenant)
    }
}

/// `dirsync run` as a child process.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until its control socket answers.
    pub async fn start(setup: &Setup, notify_socket: Option<&Path>) -> Self {
        Self::start_with_env(setup, notify_socket, &[]).await
    }

    pub async fn start_with_env(
        setup: &Setup,
        notify_socket: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let log = setup.path().join("daemon.log");
        // Through a shell that execs the binary, so WATCHDOG_PID can name the daemon's own pid,
        // as systemd sets it.
        let mut command = Command::new("sh");
        command
            .args(["-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\"", BIN])
            .arg("--config")
            .arg(setup.config())
            .arg("run")
            .env("RUST_LOG", "info,dirsync=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .envs(env.iter().copied());
        match notify_socket {
            Some(path) => command.env("NOTIFY_SOCKET", path),
            None => command.env_remove("NOTIFY_SOCKET"),
        };
        let daemon = Self {
            child: command.spawn().unwrap(),
            log,
        };
        wait_for(20, "the daemon's control socket", || async {
            setup.daemon_states().await.is_some()
        })
        .await;
        daemon
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, seconds: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {seconds} s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SCIM-shaped server with an empty directory (or, failing, a 500 for everything) whose
/// answers wait while the gate is closed.
pub struct GatedScim {
    pub base_url: String,
    state: Arc<GateState>,
    task: tokio::task::JoinHandle<()>,
}

struct GateState {
    open: AtomicBool,
    opened: Notify,
    failing: AtomicBool,
    waiting: AtomicU64,
    requests: AtomicU64,
}

impl Drop for GatedScim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn gated(State(state): State<Arc<GateState>>, uri: Uri) -> axum::response::Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.waiting.fetch_add(1, Ordering::SeqCst);
    loop {
        let opened = state.opened.notified();
        if state.open.load(Ordering::SeqCst) {
            break;
        }
        opened.await;
    }
    state.waiting.fetch_sub(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the IdP is down").into_response();
    }
    let body = if uri.path().ends_with("/ServiceProviderConfig") {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": false}, "filter": {"supported": false, "maxResults": 100}
        })
    } else {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []
        })
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

impl GatedScim {
    pub async fn start(open: bool, failing: bool) -> Self {
        let state = Arc::new(GateState {
            open: AtomicBool::new(open),
            opened: Notify::new(),
            failing: AtomicBool::new(failing),
            waiting: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(gated)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base_url: format!("http://{address}/scim/v2"),
            state,
            task,
        }
    }

    pub fn open(&self) {
        self.state.open.store(true, Ordering::SeqCst);
        self.state.opened.notify_waiters();
    }

    /// Requests held at the gate right now.
    pub fn waiting(&self) -> u64 {
        self.state.waiting.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

/// Collects the datagrams a daemon sends to `NOTIFY_SOCKET`, reading them as they come (as
/// systemd does: a receiver that stops reading would block the sender).
pub struct NotifySocket {
    pub path: PathBuf,
    received: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 4096];
            while let Ok(size) = socket.recv(&mut buffer).await {
                let message = String::from_utf8_lossy(&buffer[..size]).into_owned();
                sink.lock().unwrap().push(message);
            }
        });
        Self {
            path,
            received,
            task,
        }
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }

    /// Waits until a datagram contains the line `line` (e.g. "READY=1").
    pub async fn expect(&self, line: &str, seconds: u64) {
        let what = format!("{line} on NOTIFY_SOCKET");
        wait_for(seconds, &what, || async {
            self.received().iter().any(|m| m.lines().any(|l| l == line))
        })
        .await;
    }
}

/// A plain HTTP GET on loopback: (status, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}
