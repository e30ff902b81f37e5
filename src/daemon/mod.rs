//! The daemon (`dirsync run`): one task per tenant that syncs on the tenant's cron schedule
//! (`tenant`), the control socket for force syncs and status (`control`), the optional HTTP
//! listener for `/healthz` and `/metrics` (`http`, `metrics`), systemd notifications
//! (`notify`), reload on SIGHUP and a bounded drain on shutdown. The control socket and the
//! HTTP listener answer from a thread of their own (`ControlPlane`), never behind the runs.
//!
//! Other parts plug in through [`Extension`]: extra HTTP routes (the events API), per-tenant
//! background tasks (sink delivery) that the daemon starts, restarts on reload and stops on
//! shutdown, fed by the process's [`CommitFeed`], which announces each tenant's last committed
//! seq, and metrics collected into the process's one [`Registry`].
//!
//! Must not: speak SQL (that is `store`) or know how a source fetches.

pub mod cluster;
pub mod control;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod schedule;
pub mod sinks;
pub mod slots;
pub mod tenant;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{self, Config, GlobalConfig, Problem, TenantConfig};
use crate::feed::CommitFeed;
use crate::mutex::lock;
use crate::store::{Store, StoreError};
use crate::sync::unwind::catch_unwind_future;
use crate::telemetry::metrics::{Collector, Exposition, Registry};
use metrics::{Metrics, Scheduled};
use schedule::Clock;
use tenant::{BackoffPolicy, TenantHandle, TenantState, TenantTask};

/// How long `/healthz` and the watchdog tolerate the supervisor loop not ticking.
const HEARTBEAT_STALE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("cannot listen on {addr} (http_listen in {file}): {source}. Pick a free address or remove http_listen")]
    HttpBind {
        addr: std::net::SocketAddr,
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot start the control thread (control socket and HTTP listener): {0}. The system may be out of threads or memory (check `ulimit -u` and TasksMax= of the unit)")]
    ControlThread(std::io::Error),
}

/// What an extension gets once, when the daemon starts.
pub struct ExtensionContext {
    pub global: GlobalConfig,
    pub store: Store,
    /// The daemon's commit feed: every tenant's last committed seq.
    pub commits: CommitFeed,
    pub shutdown: CancellationToken,
}

/// What an extension gets for each tenant when the tenant starts or its config is reloaded.
pub struct TenantHook {
    pub config: Arc<TenantConfig>,
    pub store: Store,
    /// The tenant's last committed seq (its receiver of the daemon's [`CommitFeed`]);
    /// changes after each commit.
    pub commits: watch::Receiver<u64>,
    /// Cancelled when the tenant is removed or reconfigured (a new hook follows) and on
    /// shutdown. Tasks must stop promptly when it fires.
    pub stop: CancellationToken,
    /// Spawn long-running tasks here so shutdown waits for them (within its deadline).
    pub tracker: TaskTracker,
}

/// A part of dirsync that runs inside the daemon: the sink deliveries and the events API.
pub trait Extension: Send + Sync + 'static {
    /// Routes merged into the HTTP listener (when `http_listen` is set).
    fn routes(&self, _context: &ExtensionContext) -> Option<axum::Router> {
        None
    }
    /// Starts the tenant's background tasks (e.g. one delivery task per sink). Called again
    /// with a new hook on every reload that keeps the tenant.
    fn start_tenant(&self, _hook: TenantHook) {}
    /// The tenant was removed from the configuration (its hook's `stop` is cancelled too):
    /// forget what was kept for it across reloads, such as its metrics.
    fn stop_tenant(&self, _tenant: &str) {}
    /// Called right after each commit of `tenant` (also published on the [`CommitFeed`]).
    fn on_commit(&self, _tenant: &str, _last_seq: u64) {}
    /// Called on SIGHUP, after the configuration was re-read (e.g. reopen log-rotated files).
    fn on_reload(&self) {}
    /// Writes the extension's metric families into `/metrics`, after the daemon's own.
    fn collect_metrics(&self, _out: &mut Exposition) {}
    /// What `status` shows about `tenant` from this extension, under a name of its own.
    fn describe_tenant(&self, _tenant: &str) -> Option<(&'static str, serde_json::Value)> {
        None
    }
}

/// The extensions of one daemon, shared by its tasks.
pub type Extensions = Arc<[Arc<dyn Extension>]>;

/// Knobs of one daemon run.
pub struct DaemonOptions {
    /// Re-read on SIGHUP.
    pub config_path: PathBuf,
    pub backoff: BackoffPolicy,
    /// How long shutdown waits for runs in their commit and for extensions to stop.
    pub stop_deadline: Duration,
    pub extensions: Vec<Arc<dyn Extension>>,
    /// Where the scheduler reads the time (tests: paused tokio time).
    pub clock: Clock,
}

impl DaemonOptions {
    pub fn new(config_path: PathBuf) -> Self {
        Self {
            config_path,
            backoff: BackoffPolicy::default(),
            stop_deadline: Duration::from_secs(30),
            extensions: Vec::new(),
            clock: Clock::System,
        }
    }
}

/// State shared by the supervisor, the control socket and the HTTP listener.
pub struct Shared {
    pub(crate) tenants: Mutex<BTreeMap<String, TenantHandle>>,
    pub(crate) metrics: Metrics,
    pub(crate) commits: CommitFeed,
    /// What `/metrics` renders: the scheduler's metrics, then each extension's.
    pub(crate) registry: Registry,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) extensions: Extensions,
    /// Run slots of the whole daemon (`max_concurrent_runs`).
    pub(crate) run_slots: slots::RunSlots,
    started: Instant,
    heartbeat_ms: AtomicU64,
    clock: Clock,
    /// This process as a node of the store's cluster.
    pub(crate) node: cluster::NodeId,
}

impl Shared {
    fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The supervisor loop ticked recently and the daemon is not stopping.
    pub fn alive(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        !self.shutdown.is_cancelled()
            && now.saturating_sub(last) < HEARTBEAT_STALE.as_millis() as u64
    }
}

impl Shared {
    /// Tenants that are stuck: a run past its max run time, or a task stopped by a panic.
    pub fn wedged(&self) -> Vec<String> {
        let now = self.clock.now();
        lock(&self.tenants)
            .values()
            .filter_map(|handle| handle.snapshot().wedged(now))
            .collect()
    }
}

/// The control socket and the HTTP listener (`/healthz`, `/metrics`, extension routes) run on
/// a thread and runtime of their own: on the daemon's workers an answer would queue behind
/// the runs' CPU work (parsing and diffing a directory between awaits), and `status` took
/// hundreds of milliseconds in a burst of due runs. Their own work is small; what they hand
/// to the runs (a forced sync) goes over channels, which work across runtimes.
struct ControlPlane {
    handle: tokio::runtime::Handle,
    done: CancellationToken,
}

impl ControlPlane {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("dirsync-control")
            .build()?;
        let handle = runtime.handle().clone();
        let done = CancellationToken::new();
        let until = done.clone();
        std::thread::Builder::new()
            .name("dirsync-control".into())
            .spawn(move || {
                runtime.block_on(until.cancelled());
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Self { handle, done })
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(task);
    }

    /// Ends the thread; its tasks (tracked by the daemon's tracker) have stopped by now.
    fn stop(&self) {
        self.done.cancel();
    }
}

struct Daemon {
    options: DaemonOptions,
    global: GlobalConfig,
    store: Store,
    shared: Arc<Shared>,
}

/// Runs the daemon until `shutdown` resolves (SIGTERM/SIGINT in `dirsync run`), then drains.
pub async fn run(
    config: Config,
    options: DaemonOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let store = {
        let global = config.global.clone();
        tokio::task::spawn_blocking(move || Store::open_global(&global))
            .await
            .map_err(|err| StoreError::Corrupt(format!("opening the store failed: {err}")))??
            .keep_run_history(config.global.run_history)
    };
    let shared = Arc::new(Shared {
        tenants: Mutex::new(BTreeMap::new()),
        metrics: Metrics::default(),
        commits: CommitFeed::default(),
        registry: Registry::default(),
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        extensions: options.extensions.iter().cloned().collect(),
        run_slots: slots::RunSlots::new(config.global.max_concurrent_runs),
        started: Instant::now(),
        heartbeat_ms: AtomicU64::new(0),
        clock: options.clock,
        node: cluster::NodeId::new(),
    });
    // Weak: the registry lives inside `Shared`.
    shared
        .registry
        .register(Arc::new(SchedulerMetrics(Arc::downgrade(&shared))));
    for extension in shared.extensions.iter() {
        shared
            .registry
            .register(Arc::new(ExtensionMetrics(extension.clone())));
    }
    let daemon = Daemon {
        global: config.global.clone(),
        store,
        shared,
        options,
    };
    daemon.serve(config, shutdown).await
}

impl Daemon {
    async fn serve(
        self,
        config: Config,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DaemonError> {
        let socket_path = self.global.control_socket.clone();
        let control = control::bind(&socket_path).await?;
        let plane = ControlPlane::start().map_err(DaemonError::ControlThread)?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(DaemonError::Signal)?;

        if let Some(addr) = self.global.http_listen {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| DaemonError::HttpBind {
                    addr,
                    file: self.global.file.clone(),
                    source,
                })?;
            let context = ExtensionContext {
                global: self.global.clone(),
                store: self.store.clone(),
                commits: self.shared.commits.clone(),
                shutdown: self.shared.shutdown.clone(),
            };
            let extra = self
                .shared
                .extensions
                .iter()
                .filter_map(|ext| ext.routes(&context))
                .collect();
            let router = http::router(self.shared.clone(), extra);
            let stop = self.shared.shutdown.clone();
            let listener = listener
                .into_std()
                .map_err(|source| DaemonError::HttpBind {
                    addr,
                    file: self.global.file.clone(),
                    source,
                })?;
            plane.spawn(self.shared.tracker.track_future(async move {
                let served = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        axum::serve(listener, router)
                            .with_graceful_shutdown(stop.cancelled_owned())
                            .await
                    }
                    Err(err) => Err(err),
                };
                if let Err(err) = served {
                    error!("the HTTP listener failed: {err}");
                }
            }));
            info!(%addr, "HTTP listener: /healthz, /metrics");
        }
        let control = control
            .into_std()
            .map_err(|source| control::ControlError::Bind {
                path: socket_path.clone(),
                source,
            })?;
        let shared = self.shared.clone();
        plane.spawn(self.shared.tracker.track_future(async move {
            match tokio::net::UnixListener::from_std(control) {
                Ok(control) => control::serve(control, shared).await,
                Err(err) => error!("the control socket failed: {err}"),
            }
        }));

        cluster::register(
            &self.store,
            &self.shared.node,
            self.shared.shutdown.clone(),
            &self.shared.tracker,
        )
        .await;
        cluster::spawn_commit_listener(
            &self.store,
            self.shared.commits.clone(),
            self.shared.shutdown.clone(),
        );
        self.apply(config.tenants);
        self.shared.beat();
        notify::ready(&format!("scheduling {} tenants", self.tenant_count())).await;
        notify::spawn_watchdog(self.shared.clone());
        info!(
            tenants = self.tenant_count(),
            control_socket = %socket_path.display(),
            "dirsync daemon started"
        );

        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = hangup.recv() => self.reload().await,
                _ = heartbeat.tick() => self.shared.beat(),
            }
        }

        info!("stopping: no new runs; waiting for runs in their commit");
        notify::stopping().await;
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        let drained =
            tokio::time::timeout(self.options.stop_deadline, self.shared.tracker.wait()).await;
        if drained.is_err() {
            warn!(
                deadline_seconds = self.options.stop_deadline.as_secs(),
                "some tasks did not stop within the deadline; exiting anyway"
            );
        }
        plane.stop();
        let _ = std::fs::remove_file(&socket_path);
        info!("dirsync daemon stopped");
        Ok(())
    }

    fn tenant_count(&self) -> usize {
        lock(&self.shared.tenants).len()
    }

    /// Re-reads every file; applies the valid result as a whole.
    async fn reload(&self) {
        notify::reloading().await;
        info!(config = %self.options.config_path.display(), "reloading the configuration");
        let path = self.options.config_path.clone();
        match tokio::task::spawn_blocking(move || config::load(&path)).await {
            Ok(loaded) => {
                let previous: BTreeMap<String, Arc<TenantConfig>> = lock(&self.shared.tenants)
                    .iter()
                    .map(|(id, handle)| (id.clone(), handle.config.borrow().clone()))
                    .collect();
                match plan_reload(&self.options.config_path, &previous, loaded) {
                    Ok(plan) => {
                        for problem in &plan.problems {
                            error!("config problem: {problem}");
                        }
                        for id in &plan.kept_previous {
                            warn!(tenant = %id, "the tenant's file has problems (logged above); keeping its previous configuration");
                        }
                        if let Some(global) = &plan.global {
                            self.warn_restart_only(global);
                        }
                        let count = plan.tenants.len();
                        self.apply(plan.tenants);
                        for extension in self.shared.extensions.iter() {
                            extension.on_reload();
                        }
                        info!(tenants = count, "configuration reloaded");
                    }
                    Err(problems) => {
                        for problem in &problems {
                            error!("config problem: {problem}");
                        }
                        error!("the global config file has problems (logged above); keeping the whole previous configuration");
                    }
                }
            }
            Err(err) => error!("reading the configuration failed: {err}; keeping the previous one"),
        }
        notify::ready(&format!("scheduling {} tenants", self.tenant_count())).await;
    }

    fn warn_restart_only(&self, new: &GlobalConfig) {
        let old = &self.global;
        let mut changed = Vec::new();
        if new.state_dir != old.state_dir {
            changed.push("state_dir");
        }
        if new.control_socket != old.control_socket {
            changed.push("control_socket");
        }
        if new.http_listen != old.http_listen {
            changed.push("http_listen");
        }
        if new.log_format != old.log_format {
            changed.push("log_format");
        }
        if new.tenants_dir != old.tenants_dir {
            // Read on every reload: takes effect now.
            info!(tenants_dir = %new.tenants_dir.display(), "tenants_dir changed");
        }
        if !changed.is_empty() {
            warn!(
                "changed {} in the global file: these take effect only after a restart (systemctl restart dirsync)",
                changed.join(", ")
            );
        }
    }

    /// Makes the running tenants exactly `tenants`: stops removed ones, hands changed configs
    /// to running tasks, starts new ones.
    fn apply(&self, tenants: BTreeMap<String, TenantConfig>) {
        let mut running = lock(&self.shared.tenants);
        let removed: Vec<String> = running
            .keys()
            .filter(|id| !tenants.contains_key(*id))
            .cloned()
            .collect();
        for id in removed {
            if let Some(handle) = running.remove(&id) {
                handle.stop.cancel();
                handle.extension_stop.cancel();
                for extension in self.shared.extensions.iter() {
                    extension.stop_tenant(&id);
                }
                self.shared.metrics.forget(&id);
                info!(tenant = %id, "tenant removed: its in-progress fetch is abandoned, nothing more is scheduled");
            }
        }
        for (id, config) in tenants {
            let config = Arc::new(config);
            match running.get_mut(&id) {
                Some(handle) => {
                    handle.config.send_replace(config.clone());
                    handle.extension_stop.cancel();
                    handle.extension_stop = self.start_extensions(&config);
                }
                None => {
                    info!(tenant = %id, schedule = %config.schedule_text, enabled = config.enabled, "tenant added");
                    let handle = self.start_tenant(&config);
                    running.insert(id, handle);
                }
            }
        }
    }

    fn start_tenant(&self, config: &Arc<TenantConfig>) -> TenantHandle {
        let (config_tx, config_rx) = watch::channel(config.clone());
        let (requests_tx, requests_rx) = tenant::force_queue();
        let state = Arc::new(Mutex::new(TenantState {
            tenant: config.id.clone(),
            enabled: config.enabled,
            schedule: config.schedule_text.clone(),
            ..TenantState::default()
        }));
        let stop = self.shared.shutdown.child_token();
        let task = TenantTask {
            store: self.store.clone(),
            config: config_rx,
            requests: requests_rx,
            state: state.clone(),
            stop: stop.clone(),
            metrics: self.shared.metrics.clone(),
            commits: self.shared.commits.clone(),
            extensions: self.shared.extensions.clone(),
            backoff: self.options.backoff,
            clock: self.options.clock,
            run_slots: self.shared.run_slots.clone(),
            stored_objects: 0,
            node: self.shared.node.id.clone().into(),
        };
        let watched = state.clone();
        self.shared.tracker.spawn(async move {
            // A panic outside a run (the runs catch their own) must not leave the tenant
            // looking alive: `/healthz` reports it.
            if let Err(message) = catch_unwind_future(task.run()).await {
                error!(tenant = %lock(&watched).tenant, "the tenant's task panicked: {message}");
                let mut state = lock(&watched);
                state.running = None;
                state.next_run = None;
                state.task_panicked = Some(message);
            }
        });
        TenantHandle {
            config: config_tx,
            requests: requests_tx,
            state,
            stop,
            extension_stop: self.start_extensions(config),
        }
    }

    fn start_extensions(&self, config: &Arc<TenantConfig>) -> CancellationToken {
        let stop = self.shared.shutdown.child_token();
        for extension in self.shared.extensions.iter() {
            extension.start_tenant(TenantHook {
                config: config.clone(),
                store: self.store.clone(),
                commits: self.shared.commits.subscribe(&config.id),
                stop: stop.clone(),
                tracker: self.shared.tracker.clone(),
            });
        }
        stop
    }
}

/// The scheduler's metrics: the per-tenant run counters plus what the tenant tasks know now
/// (running, failures in a row, next run) and the commit feed's last seqs.
struct SchedulerMetrics(Weak<Shared>);

impl Collector for SchedulerMetrics {
    fn collect(&self, out: &mut Exposition) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let scheduled: Vec<Scheduled> = lock(&shared.tenants)
            .values()
            .map(|handle| Scheduled::from(&handle.snapshot()))
            .collect();
        let last_seqs: BTreeMap<String, u64> = scheduled
            .iter()
            .map(|s| (s.tenant.clone(), shared.commits.last_seq(&s.tenant)))
            .collect();
        shared.metrics.collect(out, &scheduled, &last_seqs);
    }
}

/// An extension's metrics, as a collector of the daemon's registry.
struct ExtensionMetrics(Arc<dyn Extension>);

impl Collector for ExtensionMetrics {
    fn collect(&self, out: &mut Exposition) {
        self.0.collect_metrics(out);
    }
}

/// The outcome of a reload that can be applied.
#[derive(Debug)]
pub struct ReloadPlan {
    pub global: Option<GlobalConfig>,
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Tenants whose file has problems and that keep their previous config.
    pub kept_previous: Vec<String>,
    pub problems: Vec<Problem>,
}

/// Decides what a reload applies. A problem in the global file (or an unreadable tenants_dir)
/// keeps everything: `Err` with the problems. A tenant file with problems keeps that tenant's
/// previous config (a new tenant with a broken file is not started). A tenant whose file is
/// gone is removed.
pub fn plan_reload(
    config_path: &Path,
    previous: &BTreeMap<String, Arc<TenantConfig>>,
    loaded: config::Loaded,
) -> Result<ReloadPlan, Vec<Problem>> {
    let Some(global) = loaded.global else {
        return Err(loaded.problems);
    };
    if loaded
        .problems
        .iter()
        .any(|p| p.file == config_path || p.file == global.file)
    {
        return Err(loaded.problems);
    }
    let mut tenants = loaded.tenants;
    let mut kept_previous = Vec::new();
    for problem in &loaded.problems {
        let Some(id) = problem.file.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if tenants.contains_key(id) || kept_previous.iter().any(|k| k == id) {
            continue;
        }
        if let Some(old) = previous.get(id) {
            tenants.insert(id.to_owned(), TenantConfig::clone(old));
            kept_previous.push(id.to_owned());
        }
    }
    Ok(ReloadPlan {
        global: Some(global),
        tenants,
        kept_previous,
        problems: loaded.problems,
    })
}

#[cfg(test)]
mod tests;
