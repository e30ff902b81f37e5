//! The control socket: a Unix stream socket (mode 0660) on which `dirsync sync` and
//! `dirsync status` talk to a running daemon. The protocol is JSON lines: the client writes one
//! request object, the daemon answers with one response object and closes.
//!
//! ```text
//! → {"op":"sync","tenant":"acme","dry_run":false,"allow_mass_delete":false}
//! ← {"ok":true,"exit_code":0,"summary":"tenant acme: committed ...","report":{...},"events":[...]}
//! → {"op":"status","tenant":null}
//! ← {"ok":true,"tenants":[{"tenant":"acme","next_run":"...","running":null,...}]}
//! ← {"ok":false,"exit_code":2,"error":"no tenant \"x\" ..."}
//! ```
//!
//! Must not: run syncs itself (it hands force requests to the tenant's task).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::tenant::{ForceRequest, TenantState};
use super::Shared;
use crate::mutex::lock;
use crate::sync::SyncOptions;

/// Longest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Sync {
        tenant: String,
        #[serde(default)]
        dry_run: bool,
        #[serde(default)]
        allow_mass_delete: bool,
    },
    Status {
        #[serde(default)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default)]
    pub exit_code: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `sync`: the run's summary line, as a stand-alone sync prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `sync`: the run's report, as `sync --json` prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// `sync --dry-run`: the events the run would emit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<serde_json::Value>,
    /// `status`: the daemon's view of each tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantState>,
}

impl Response {
    fn error(exit_code: u8, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            exit_code,
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another dirsync daemon is already listening on {0}; stop it first (systemctl stop dirsync) or set a different control_socket")]
    InUse(PathBuf),
    #[error("cannot create the control socket {path}: {source}. Check `control_socket` in the global config and that its folder exists and is writable (systemd: RuntimeDirectory=dirsync)")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot talk to the daemon on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("permission denied on the daemon's control socket {0}: run as root or as a member of the daemon's group, or pass --local to sync in this process")]
    PermissionDenied(PathBuf),
    #[error("the daemon on {path} answered something this dirsync cannot read: {message}")]
    Protocol { path: PathBuf, message: String },
}

/// Binds the control socket, removing a stale socket file left by a daemon that died.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if path.exists() {
        match UnixStream::connect(path).await {
            Ok(_) => return Err(ControlError::InUse(path.to_owned())),
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let bind_error = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(bind_error)?;
    Ok(listener)
}

/// Accepts connections until the daemon stops.
pub async fn serve(listener: UnixListener, shared: std::sync::Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared2 = shared.clone();
                shared.tracker.spawn(async move {
                    if let Err(err) = handle(stream, &shared2).await {
                        debug!("control connection ended: {err}");
                    }
                });
            }
            Err(err) => {
                warn!("control socket accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: UnixStream, shared: &Shared) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST);
    // A client that connects and says nothing must not hold up shutdown.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.read_line(&mut line),
    )
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request within 10 s"))??;
    let response = match serde_json::from_str::<Request>(line.trim()) {
        Ok(request) => answer(request, shared).await,
        Err(err) => Response::error(2, format!("bad request: {err}")),
    };
    let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

fn unknown_tenant(shared: &Shared, tenant: &str) -> Response {
    let known: Vec<String> = lock(&shared.tenants).keys().cloned().collect();
    Response::error(
        2,
        format!(
            "the daemon has no tenant {tenant:?} (known: {}); add a valid {tenant}.toml to tenants_dir and reload (systemctl reload dirsync)",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        ),
    )
}

async fn answer(request: Request, shared: &Shared) -> Response {
    match request {
        Request::Status { tenant } => {
            let tenants = lock(&shared.tenants);
            let states: Vec<TenantState> = match &tenant {
                Some(id) => match tenants.get(id) {
                    Some(handle) => vec![handle.snapshot()],
                    None => {
                        drop(tenants);
                        return unknown_tenant(shared, id);
                    }
                },
                None => tenants.values().map(|h| h.snapshot()).collect(),
            };
            drop(tenants);
            let states = states
                .into_iter()
                .map(|mut state| {
                    for extension in shared.extensions.iter() {
                        if let Some((name, value)) = extension.describe_tenant(&state.tenant) {
                            state.extensions.insert(name.to_owned(), value);
                        }
                    }
                    state
                })
                .collect();
            Response {
                ok: true,
                tenants: states,
                ..Response::default()
            }
        }
        Request::Sync {
            tenant,
            dry_run,
            allow_mass_delete,
        } => {
            let (reply, result) = oneshot::channel();
            let sent = {
                let tenants = lock(&shared.tenants);
                let Some(handle) = tenants.get(&tenant) else {
                    drop(tenants);
                    return unknown_tenant(shared, &tenant);
                };
                // Counted before sending, so the task's count-out never precedes it.
                lock(&handle.state).queued_requests += 1;
                let sent = handle.requests.send(ForceRequest {
                    options: SyncOptions {
                        dry_run,
                        allow_mass_delete,
                        // A forced run plans in full, whatever the digest says.
                        reuse_unchanged: false,
                    },
                    reply,
                });
                if sent.is_err() {
                    let mut state = lock(&handle.state);
                    state.queued_requests = state.queued_requests.saturating_sub(1);
                }
                sent
            };
            if sent.is_err() {
                return Response::error(1, "the daemon is stopping; try again once it is back");
            }
            match result.await {
                Ok(result) => Response {
                    ok: true,
                    exit_code: result.summary.exit_code(),
                    summary: Some(result.summary.summary_line()),
                    report: serde_json::to_value(&result.summary).ok(),
                    events: result
                        .dry_run_events
                        .iter()
                        .filter_map(|e| serde_json::to_value(e).ok())
                        .collect(),
                    ..Response::default()
                },
                Err(_) => Response::error(
                    1,
                    format!("the daemon stopped (or tenant {tenant} was removed) before the run; nothing was committed by this request"),
                ),
            }
        }
    }
}

/// Sends one request to the daemon. `Ok(None)`: no daemon listens there.
pub async fn request(path: &Path, request: &Request) -> Result<Option<Response>, ControlError> {
    let io_error = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
            return Err(ControlError::PermissionDenied(path.to_owned()))
        }
        Err(err) => return Err(io_error(err)),
    };
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request).map_err(|err| ControlError::Protocol {
        path: path.to_owned(),
        message: err.to_string(),
    })?;
    text.push('\n');
    write.write_all(text.as_bytes()).await.map_err(io_error)?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(io_error)?;
    if line.trim().is_empty() {
        return Err(ControlError::Protocol {
            path: path.to_owned(),
            message: "the connection closed without an answer (did the daemon stop?)".into(),
        });
    }
    serde_json::from_str(line.trim())
        .map(Some)
        .map_err(|err| ControlError::Protocol {
            path: path.to_owned(),
            message: err.to_string(),
        })
}
