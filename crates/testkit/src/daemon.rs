//! The daemon under test: the real `dirsync run` binary as a child process of a [`ConfigDir`]
//! (killed when dropped), its control socket, signals, a `NOTIFY_SOCKET` that records what it
//! tells systemd, and a SCIM-shaped loopback server whose answers wait behind a gate (a fetch
//! that is "slow" for exactly as long as a test wants).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::wait::wait_for;
use crate::ConfigDir;

pub const TOKEN: &str = "daemon-test-token";

/// The daemon's answer to a `status` request on its control socket (the JSON of the control
/// protocol, one line each way), `None` while nothing answers.
pub async fn control_status(socket: &Path) -> Option<Value> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
    let (read, mut write) = stream.into_split();
    write.write_all(b"{\"op\":\"status\"}\n").await.ok()?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await.ok()?;
    serde_json::from_str(line.trim()).ok()
}

/// `dirsync run` as a child process.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts the daemon and waits until its control socket answers.
    pub async fn start(setup: &ConfigDir, notify_socket: Option<&Path>) -> Self {
        Self::start_with_env(setup, notify_socket, &[]).await
    }

    pub async fn start_with_env(
        setup: &ConfigDir,
        notify_socket: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Self {
        let log = setup.path().join("daemon.log");
        // Through a shell that execs the binary, so WATCHDOG_PID can name the daemon's own pid,
        // as systemd sets it.
        let mut command = Command::new("sh");
        crate::runner::scrub(&mut command)
            .arg("-c")
            .arg("export WATCHDOG_PID=$$; exec \"$0\" \"$@\"")
            .arg(setup.dirsync().bin())
            .arg("--config")
            .arg(setup.config())
            .arg("run")
            .env("RUST_LOG", "info,dirsync=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .envs(env.iter().copied());
        if let Some(path) = notify_socket {
            command.env("NOTIFY_SOCKET", path);
        }
        let mut daemon = Self {
            child: command.spawn().unwrap(),
            log,
        };
        // A daemon that exited fails here at once, one that does not answer within a minute
        // after that, both with what it logged (a start once missed the former 20 s in CI,
        // and the failure said nothing more).
        let socket = setup.socket();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if control_status(&socket)
                .await
                .is_some_and(|answer| answer["ok"] == true)
            {
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "the daemon exited ({status}) before its control socket answered; its log:\n{}",
                    daemon.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the daemon's control socket; its log:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
