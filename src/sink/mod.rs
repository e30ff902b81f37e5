//! Event delivery: reads each tenant's outbox in `seq` order and hands it to the tenant's
//! `[[sinks]]` (webhook, JSON lines), one task per tenant and sink, each with its own cursor in
//! the database. The next batch is not sent until the previous one was acknowledged; a failure
//! is retried with capped exponential backoff and jitter (forever unless `max_attempts`), a
//! rejection (4xx other than 408/429) is logged loudly, counted and either retried or parked
//! with the cursor held. Delivery is at least once: a crash between the acknowledgement and
//! the cursor update redelivers the same events with the same ids.
//!
//! Also here: the events API (`api`), replay (`resend`), retention pruning and the metrics of
//! delivery. Must not: write events or touch the snapshot (only the store's cursor functions).

pub mod api;
mod jsonl;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use rusqlite::Connection;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{RejectPolicy, SinkConfig, SinkKind, TenantConfig};
use crate::store::{self, Cursor, PendingEvent, Store, StoreError};

/// How often an idle task looks at the database for events committed by another process (a
/// notification from the committing process wakes it sooner).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The first retry waits about this long; each further failure doubles it up to `max_backoff`.
const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Events read from the outbox at a time when batches are smaller than this.
const MIN_PAGE: usize = 256;
/// How often retention pruning runs in a long-lived process.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver or file is not available now; retrying can help.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The receiver refused the events (a 4xx other than 408/429, or a redirect).
    #[error("{message} — the receiver rejected the events; fix the receiver (or its URL), the cursor is held")]
    Rejected { status: u16, message: String },
    /// The sink is parked; an operator must unpark it.
    #[error("sink {sink} of tenant {tenant} is parked after: {last_error}; fix the receiver, then run `dirsync deliver {tenant} --unpark {sink}`")]
    Parked {
        tenant: String,
        sink: String,
        last_error: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl DeliveryError {
    /// Whether sending the same events again can succeed without anyone acting.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DeliveryError::Unavailable { .. } | DeliveryError::Store(_)
        )
    }
}

/// Where one sink's events go: enum-dispatched so the delivery loop is one piece of code.
enum Target {
    Webhook(webhook::WebhookSink),
    Jsonl(jsonl::JsonlSink),
}

impl Target {
    fn new(sink: &SinkConfig, reopen: &Arc<AtomicU64>) -> Result<Self, DeliveryError> {
        Ok(match &sink.kind {
            SinkKind::Webhook(config) => {
                Target::Webhook(webhook::WebhookSink::new(config, sink.batch_size)?)
            }
            SinkKind::Jsonl(config) => {
                Target::Jsonl(jsonl::JsonlSink::new(config.path.clone(), reopen.clone()))
            }
        })
    }

    async fn deliver(&mut self, events: &[PendingEvent]) -> Result<(), DeliveryError> {
        match self {
            Target::Webhook(sink) => sink.deliver(events).await,
            Target::Jsonl(sink) => sink.deliver(events).await,
        }
    }
}

/// One connection kept across calls and used on a blocking thread, never on the async workers.
struct Db {
    store: Store,
    conn: Option<Connection>,
}

impl Db {
    fn new(store: Store) -> Self {
        Self { store, conn: None }
    }

    async fn run<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        let conn = self.conn.take();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let mut conn = match conn {
                Some(conn) => conn,
                None => match store.connect() {
                    Ok(conn) => conn,
                    Err(err) => return (None, Err(err)),
                },
            };
            let result = work(&mut conn);
            (Some(conn), result)
        })
        .await
        .map_err(|err| StoreError::Corrupt(format!("a database task stopped: {err}")))?;
        self.conn = conn;
        result
    }
}

/// Wakes whoever waits for a tenant's new events (delivery tasks, long-polls) after a commit.
#[derive(Clone, Default)]
pub struct CommitSignal {
    tenants: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl CommitSignal {
    fn sender(&self, tenant: &str) -> watch::Sender<u64> {
        let mut tenants = self.tenants.lock().unwrap_or_else(PoisonError::into_inner);
        tenants
            .entry(tenant.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    pub fn notify(&self, tenant: &str) {
        self.sender(tenant)
            .send_modify(|generation| *generation += 1);
    }

    /// A receiver that sees every notification after this call.
    pub fn subscribe(&self, tenant: &str) -> watch::Receiver<u64> {
        self.sender(tenant).subscribe()
    }
}

/// Live counters of one sink, for `/metrics`.
#[derive(Debug, Default)]
struct SinkMetrics {
    delivered: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    rejections: AtomicU64,
    lag_events: AtomicU64,
    /// Commit time (ms) of the oldest undelivered event; 0 when none.
    oldest_pending_at: AtomicI64,
    parked: AtomicBool,
}

/// Every delivery task of the process: start them per tenant, wake them after a commit, read
/// their metrics. Cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    signal: CommitSignal,
    retention: Option<Duration>,
    reopen: Arc<AtomicU64>,
    metrics: Mutex<BTreeMap<(String, String), Arc<SinkMetrics>>>,
    /// Per tenant: the generation of its current tasks and their stop token.
    running: Mutex<HashMap<String, (u64, CancellationToken)>>,
    generations: AtomicU64,
}

/// The result of delivering one sink's pending events once.
#[derive(Debug)]
pub struct PassReport {
    pub sink: String,
    pub delivered: u64,
    pub delivered_seq: u64,
    pub error: Option<DeliveryError>,
}

impl Deliveries {
    /// `retention`: prune events every sink acknowledged once they are older than this.
    pub fn new(store: Store, retention: Option<Duration>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                signal: CommitSignal::default(),
                retention,
                reopen: Arc::new(AtomicU64::new(0)),
                metrics: Mutex::new(BTreeMap::new()),
                running: Mutex::new(HashMap::new()),
                generations: AtomicU64::new(0),
            }),
        }
    }

    /// The signal `notify_commit` raises, for the events API's long-polls.
    pub fn commit_signal(&self) -> CommitSignal {
        self.inner.signal.clone()
    }

    /// Starts one delivery task per sink of the tenant (and its retention pruner), replacing
    /// the tenant's previous tasks (on reload). The tasks stop when `cancel` is cancelled or
    /// on `stop`.
    pub fn spawn(&self, tenant: &TenantConfig, cancel: &CancellationToken, tracker: &TaskTracker) {
        let token = cancel.child_token();
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
        if let Some((_, previous)) = self
            .lock_running()
            .insert(tenant.id.clone(), (generation, token.clone()))
        {
            previous.cancel();
        }
        // When the caller stops these tasks (tenant removed, shutdown), forget the tenant's
        // metrics, unless a newer `spawn` for it took over meanwhile.
        {
            let (this, id, token) = (self.clone(), tenant.id.clone(), token.clone());
            tracker.spawn(async move {
                token.cancelled().await;
                let mut running = this.lock_running();
                if running.get(&id).is_some_and(|(g, _)| *g == generation) {
                    running.remove(&id);
                    drop(running);
                    this.lock_metrics().retain(|(t, _), _| t != &id);
                }
            });
        }
        self.lock_metrics()
            .retain(|(t, sink), _| t != &tenant.id || tenant.sinks.iter().any(|s| &s.name == sink));
        for sink in &tenant.sinks {
            let mut worker = self.worker(&tenant.id, sink);
            let token = token.clone();
            tracker.spawn(async move { worker.run(&token).await });
        }
        if let Some(retention) = self.inner.retention {
            let (this, tenant, token) = (self.clone(), tenant.clone(), token.clone());
            tracker.spawn(async move {
                loop {
                    if let Err(err) = this.prune(&tenant, retention).await {
                        warn!(tenant = %tenant.id, "pruning delivered events failed: {err}");
                    }
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(PRUNE_INTERVAL) => {}
                    }
                }
            });
        }
    }

    /// Stops the tenant's tasks (a removed tenant) and forgets its metrics.
    pub fn stop(&self, tenant: &str) {
        if let Some((_, token)) = self.lock_running().remove(tenant) {
            token.cancel();
        }
        self.lock_metrics().retain(|(t, _), _| t != tenant);
    }

    /// Call after each commit of the tenant: wakes its delivery tasks and long-polls.
    pub fn notify_commit(&self, tenant: &str) {
        self.inner.signal.notify(tenant);
    }

    /// The reopen hook (SIGHUP): JSON-lines sinks reopen their files before the next batch.
    pub fn reopen_files(&self) {
        self.inner.reopen.fetch_add(1, Ordering::Relaxed);
    }

    /// Delivers every pending event of every sink of the tenant once, concurrently per sink,
    /// and returns per sink what happened. A sink stops at its first failure (recorded).
    pub async fn deliver_once(&self, tenant: &TenantConfig) -> Vec<PassReport> {
        let mut tasks = tokio::task::JoinSet::new();
        for sink in &tenant.sinks {
            let mut worker = self.worker(&tenant.id, sink);
            tasks.spawn(async move { worker.pass_once().await });
        }
        let mut reports = Vec::new();
        while let Some(report) = tasks.join_next().await {
            if let Ok(report) = report {
                reports.push(report);
            }
        }
        reports.sort_by(|a, b| a.sink.cmp(&b.sink));
        reports
    }

    /// Deletes the tenant's events older than `retention` that all its sinks acknowledged.
    pub async fn prune(
        &self,
        tenant: &TenantConfig,
        retention: Duration,
    ) -> Result<u64, StoreError> {
        let sinks: Vec<String> = tenant.sinks.iter().map(|s| s.name.clone()).collect();
        let id = tenant.id.clone();
        let cutoff = store::now_ms() - retention.as_millis().min(i64::MAX as u128) as i64;
        let deleted = Db::new(self.inner.store.clone())
            .run(move |conn| {
                let names: Vec<&str> = sinks.iter().map(String::as_str).collect();
                store::prune_delivered(conn, &id, &names, cutoff)
            })
            .await?;
        if deleted > 0 {
            info!(tenant = %tenant.id, deleted, "pruned delivered events past event_retention_days");
        }
        Ok(deleted)
    }

    /// Appends the delivery metrics in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let metrics: Vec<((String, String), Arc<SinkMetrics>)> = self
            .lock_metrics()
            .iter()
            .map(|(key, m)| (key.clone(), m.clone()))
            .collect();
        let now = store::now_ms();
        type Read = fn(&SinkMetrics, i64) -> String;
        let families: [(&str, &str, &str, Read); 7] = [
            (
                "dirsync_sink_delivered_events_total",
                "counter",
                "Events the sink acknowledged.",
                |m, _| m.delivered.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_retries_total",
                "counter",
                "Deliveries attempted again after a failure.",
                |m, _| m.retries.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_failures_total",
                "counter",
                "Failed delivery attempts.",
                |m, _| m.failures.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_rejections_total",
                "counter",
                "Deliveries the receiver rejected (4xx other than 408/429).",
                |m, _| m.rejections.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_lag_events",
                "gauge",
                "Committed events the sink has not acknowledged.",
                |m, _| m.lag_events.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_lag_seconds",
                "gauge",
                "Age of the oldest event the sink has not acknowledged.",
                |m, now| {
                    let at = m.oldest_pending_at.load(Ordering::Relaxed);
                    let age = if at == 0 {
                        0.0
                    } else {
                        (now - at).max(0) as f64 / 1000.0
                    };
                    format!("{age:.3}")
                },
            ),
            (
                "dirsync_sink_parked",
                "gauge",
                "1 when delivery is parked until an operator unparks it.",
                |m, _| u8::from(m.parked.load(Ordering::Relaxed)).to_string(),
            ),
        ];
        for (name, kind, help, read) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for ((tenant, sink), m) in &metrics {
                out.push_str(&format!(
                    "{name}{{tenant=\"{}\",sink=\"{}\"}} {}\n",
                    escape_label(tenant),
                    escape_label(sink),
                    read(m, now)
                ));
            }
        }
    }

    fn worker(&self, tenant: &str, sink: &SinkConfig) -> Worker {
        let metrics = self
            .lock_metrics()
            .entry((tenant.to_owned(), sink.name.clone()))
            .or_default()
            .clone();
        Worker {
            db: Db::new(self.inner.store.clone()),
            tenant: tenant.to_owned(),
            sink: sink.clone(),
            target: Target::new(sink, &self.inner.reopen),
            metrics,
            commits: self.inner.signal.subscribe(tenant),
        }
    }

    fn lock_metrics(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Arc<SinkMetrics>>> {
        self.inner
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, CancellationToken)>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The wait before retry number `attempt` (1-based): exponential from `BASE_BACKOFF`, capped
/// at `max`, with jitter over its upper half so many failing sinks do not retry in step; a
/// receiver's `Retry-After` (capped at `max`) is a lower bound.
pub fn backoff(attempt: u32, max: Duration, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let ceiling = BASE_BACKOFF.saturating_mul(1 << exponent).min(max);
    let jittered = ceiling.mul_f64(rand::rng().random_range(0.5..=1.0));
    jittered.max(retry_after.unwrap_or_default().min(max))
}

/// What one sink's task owns.
struct Worker {
    db: Db,
    tenant: String,
    sink: SinkConfig,
    target: Result<Target, DeliveryError>,
    metrics: Arc<SinkMetrics>,
    commits: watch::Receiver<u64>,
}

/// Why a delivery round ended.
enum Stop {
    /// Nothing is pending.
    CaughtUp,
    /// The sink is parked (now or before).
    Parked(String),
    /// A failed attempt (in a single pass: give up; continuously: already waited, go on).
    Failed(DeliveryError),
    Cancelled,
}

impl Worker {
    fn page_size(&self) -> usize {
        self.sink.batch_size.max(MIN_PAGE)
    }

    /// The long-lived task: deliver, wait for a commit (or the poll interval), repeat.
    async fn run(&mut self, cancel: &CancellationToken) {
        info!(tenant = %self.tenant, sink = %self.sink.name, "delivery started");
        let mut parked_logged = false;
        loop {
            match self.round(cancel, false).await {
                Stop::Cancelled => return,
                Stop::CaughtUp => parked_logged = false,
                Stop::Parked(error) => {
                    if !parked_logged {
                        error!(tenant = %self.tenant, sink = %self.sink.name,
                            "delivery is parked after: {error}; fix the receiver, then run `dirsync deliver {} --unpark {}`",
                            self.tenant, self.sink.name);
                        parked_logged = true;
                    }
                }
                Stop::Failed(err) => {
                    // Store trouble: the loop itself retries after a pause.
                    warn!(tenant = %self.tenant, sink = %self.sink.name, "delivery paused: {err}");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = self.commits.changed() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }

    async fn pass_once(&mut self) -> PassReport {
        let before = self.metrics.delivered.load(Ordering::Relaxed);
        let stop = self.round(&CancellationToken::new(), true).await;
        let (tenant, sink) = (self.tenant.clone(), self.sink.name.clone());
        let delivered_seq = self
            .db
            .run(move |conn| Ok(store::load_cursor(conn, &tenant, &sink)?.unwrap_or_default()))
            .await
            .map(|c| c.delivered_seq)
            .unwrap_or_default();
        PassReport {
            sink: self.sink.name.clone(),
            delivered: self.metrics.delivered.load(Ordering::Relaxed) - before,
            delivered_seq,
            error: match stop {
                Stop::CaughtUp | Stop::Cancelled => None,
                Stop::Parked(last_error) => Some(DeliveryError::Parked {
                    tenant: self.tenant.clone(),
                    sink: self.sink.name.clone(),
                    last_error,
                }),
                Stop::Failed(err) => Some(err),
            },
        }
    }

    async fn cursor(&mut self) -> Result<(Cursor, store::Lag), StoreError> {
        let (tenant, sink) = (self.tenant.clone(), self.sink.name.clone());
        self.db
            .run(move |conn| {
                let cursor = store::ensure_cursor(conn, &tenant, &sink)?;
                let lag = store::cursors::lag(conn, &tenant, cursor.delivered_seq)?;
                Ok((cursor, lag))
            })
            .await
    }

    fn set_lag(&self, lag: store::Lag) {
        self.metrics.lag_events.store(lag.events, Ordering::Relaxed);
        self.metrics
            .oldest_pending_at
            .store(lag.oldest_pending_at.unwrap_or(0), Ordering::Relaxed);
    }

    /// Delivers until nothing is pending. `single`: the first failure ends the round; else
    /// failures are retried here with backoff until success, parking or cancellation.
    async fn round(&mut self, cancel: &CancellationToken, single: bool) -> Stop {
        let (mut cursor, lag) = match self.cursor().await {
            Ok(found) => found,
            Err(err) => return Stop::Failed(err.into()),
        };
        self.set_lag(lag);
        self.metrics.parked.store(cursor.parked, Ordering::Relaxed);
        if cursor.parked {
            return Stop::Parked(cursor.last_error.unwrap_or_default());
        }
        if let Err(err) = &self.target {
            // Not parked in the database: a restart with a working setup simply delivers.
            let message = err.to_string();
            self.record_failure(&message, false).await;
            return Stop::Parked(message);
        }
        loop {
            let (tenant, after, limit) =
                (self.tenant.clone(), cursor.delivered_seq, self.page_size());
            let page = match self
                .db
                .run(move |conn| store::pending_events(conn, &tenant, after, limit))
                .await
            {
                Ok(page) => page,
                Err(err) => return Stop::Failed(err.into()),
            };
            if page.is_empty() {
                self.set_lag(store::Lag::default());
                return Stop::CaughtUp;
            }
            for (index, batch) in page.chunks(self.sink.batch_size).enumerate() {
                let mut attempt = 0u32;
                loop {
                    let result = tokio::select! {
                        () = cancel.cancelled() => return Stop::Cancelled,
                        result = self.deliver(batch) => result,
                    };
                    match result {
                        Ok(()) => break,
                        Err(err) => {
                            attempt += 1;
                            self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                            let rejected = matches!(err, DeliveryError::Rejected { .. });
                            if rejected {
                                self.metrics.rejections.fetch_add(1, Ordering::Relaxed);
                            }
                            let park = (rejected && self.sink.on_reject() == RejectPolicy::Park)
                                || self.sink.max_attempts.is_some_and(|max| attempt >= max)
                                || !matches!(
                                    err,
                                    DeliveryError::Rejected { .. }
                                        | DeliveryError::Unavailable { .. }
                                );
                            let message = format!(
                                "delivering seq {}..={}: {err}",
                                batch[0].seq,
                                batch[batch.len() - 1].seq
                            );
                            if rejected {
                                error!(tenant = %self.tenant, sink = %self.sink.name, attempt, "{message}");
                            } else {
                                warn!(tenant = %self.tenant, sink = %self.sink.name, attempt, "{message}");
                            }
                            self.record_failure(&message, park).await;
                            if park {
                                self.metrics.parked.store(true, Ordering::Relaxed);
                                return Stop::Parked(message);
                            }
                            if single {
                                return Stop::Failed(err);
                            }
                            let retry_after = match &err {
                                DeliveryError::Unavailable { retry_after, .. } => *retry_after,
                                _ => None,
                            };
                            let wait = backoff(attempt, self.sink.max_backoff, retry_after);
                            tokio::select! {
                                () = cancel.cancelled() => return Stop::Cancelled,
                                () = tokio::time::sleep(wait) => {}
                            }
                            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let to = batch[batch.len() - 1].seq;
                let (tenant, sink, from) = (
                    self.tenant.clone(),
                    self.sink.name.clone(),
                    cursor.delivered_seq,
                );
                match self
                    .db
                    .run(move |conn| store::advance_cursor(conn, &tenant, &sink, from, to))
                    .await
                {
                    Ok(true) => {
                        cursor.delivered_seq = to;
                        self.metrics
                            .delivered
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let lag = self.metrics.lag_events.load(Ordering::Relaxed);
                        self.metrics
                            .lag_events
                            .store(lag.saturating_sub(batch.len() as u64), Ordering::Relaxed);
                        let next = page.get((index + 1) * self.sink.batch_size);
                        self.metrics
                            .oldest_pending_at
                            .store(next.map_or(0, |e| e.occurred_at), Ordering::Relaxed);
                    }
                    Ok(false) => {
                        // Another process moved this cursor (it delivered these events too):
                        // continue from where it got to rather than overwrite its progress.
                        warn!(tenant = %self.tenant, sink = %self.sink.name,
                            "the delivery cursor was moved by another process; is a second dirsync delivering to this sink?");
                        return Stop::CaughtUp;
                    }
                    Err(err) => return Stop::Failed(err.into()),
                }
            }
        }
    }

    async fn deliver(&mut self, batch: &[PendingEvent]) -> Result<(), DeliveryError> {
        match &mut self.target {
            Ok(target) => target.deliver(batch).await,
            Err(err) => Err(DeliveryError::Config(err.to_string())),
        }
    }

    async fn record_failure(&mut self, message: &str, park: bool) {
        let (tenant, sink, message) = (
            self.tenant.clone(),
            self.sink.name.clone(),
            message.to_owned(),
        );
        if let Err(err) = self
            .db
            .run(move |conn| store::record_delivery_error(conn, &tenant, &sink, &message, park))
            .await
        {
            warn!(tenant = %self.tenant, sink = %self.sink.name, "cannot record the delivery error: {err}");
        }
    }
}

/// What `resend` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResendReport {
    pub tenant: String,
    pub sink: String,
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// Attempts per batch when resending: a replay is interactive, so it gives up rather than
/// waiting forever.
const RESEND_ATTEMPTS: u32 = 5;

/// Sends the tenant's events with `seq > after` (at most `limit`) to the sink now, in order,
/// in the sink's batches, with the same ids and bodies as their first delivery. The sink's
/// cursor does not move. For a consumer that lost data.
pub async fn resend(
    store: Store,
    tenant: &str,
    sink: &SinkConfig,
    after: u64,
    limit: Option<u64>,
) -> Result<ResendReport, (ResendReport, DeliveryError)> {
    let mut report = ResendReport {
        tenant: tenant.to_owned(),
        sink: sink.name.clone(),
        events: 0,
        first_seq: None,
        last_seq: None,
    };
    let mut target = match Target::new(sink, &Arc::new(AtomicU64::new(0))) {
        Ok(target) => target,
        Err(err) => return Err((report, err)),
    };
    let mut db = Db::new(store);
    let mut after = after;
    let mut remaining = limit.unwrap_or(u64::MAX);
    while remaining > 0 {
        let page_size = (sink.batch_size.max(MIN_PAGE) as u64).min(remaining) as usize;
        let id = tenant.to_owned();
        let page = match db
            .run(move |conn| store::pending_events(conn, &id, after, page_size))
            .await
        {
            Ok(page) => page,
            Err(err) => return Err((report, err.into())),
        };
        if page.is_empty() {
            break;
        }
        for batch in page.chunks(sink.batch_size) {
            let mut attempt = 0;
            loop {
                match target.deliver(batch).await {
                    Ok(()) => break,
                    Err(err) if err.is_retryable() && attempt + 1 < RESEND_ATTEMPTS => {
                        attempt += 1;
                        warn!(tenant, sink = %sink.name, attempt, "resend failed, retrying: {err}");
                        let retry_after = match &err {
                            DeliveryError::Unavailable { retry_after, .. } => *retry_after,
                            _ => None,
                        };
                        tokio::time::sleep(backoff(attempt, sink.max_backoff, retry_after)).await;
                    }
                    Err(err) => return Err((report, err)),
                }
            }
            report.events += batch.len() as u64;
            report.first_seq = report.first_seq.or(Some(batch[0].seq));
            report.last_seq = Some(batch[batch.len() - 1].seq);
            after = batch[batch.len() - 1].seq;
        }
        remaining = remaining.saturating_sub(page.len() as u64);
    }
    Ok(report)
}

/// One sink's delivery state as `dirsync status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub delivered_seq: u64,
    pub lag_events: u64,
    /// Seconds since the oldest undelivered event was committed.
    pub lag_seconds: Option<f64>,
    pub parked: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

impl SinkStatus {
    /// A sink with no database yet.
    pub fn never_delivered(sink: &SinkConfig) -> Self {
        Self {
            name: sink.name.clone(),
            kind: kind_name(sink),
            delivered_seq: 0,
            lag_events: 0,
            lag_seconds: None,
            parked: false,
            last_error: None,
            last_error_at: None,
        }
    }
}

fn kind_name(sink: &SinkConfig) -> &'static str {
    match sink.kind {
        SinkKind::Webhook(_) => "webhook",
        SinkKind::Jsonl(_) => "jsonl",
    }
}

/// Reads the delivery state of every sink of the tenant.
pub fn sink_statuses(
    conn: &Connection,
    tenant: &TenantConfig,
) -> Result<Vec<SinkStatus>, StoreError> {
    let now = store::now_ms();
    let mut out = Vec::new();
    for sink in &tenant.sinks {
        let cursor = store::load_cursor(conn, &tenant.id, &sink.name)?.unwrap_or_default();
        let lag = store::cursors::lag(conn, &tenant.id, cursor.delivered_seq)?;
        out.push(SinkStatus {
            name: sink.name.clone(),
            kind: kind_name(sink),
            delivered_seq: cursor.delivered_seq,
            lag_events: lag.events,
            lag_seconds: lag
                .oldest_pending_at
                .map(|at| (now - at).max(0) as f64 / 1000.0),
            parked: cursor.parked,
            last_error: cursor.last_error,
            last_error_at: cursor
                .last_error_at
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(crate::event::format_timestamp),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let max = Duration::from_secs(10);
        for attempt in 1..40 {
            let wait = backoff(attempt, max, None);
            assert!(wait <= max, "attempt {attempt}: {wait:?}");
            let ceiling = BASE_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(max);
            assert!(wait >= ceiling / 2, "attempt {attempt}: {wait:?}");
        }
        assert_eq!(
            backoff(1, max, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(backoff(1, max, Some(Duration::from_secs(70))), max);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
