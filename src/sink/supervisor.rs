//! The supervisor of delivery, [`Deliveries`]: per tenant it starts one worker per sink (and
//! the retention pruner), replaces them when the tenant's config is reloaded, stops them when
//! the tenant goes, and owns the sinks' metrics, which outlive the tasks of one config.
//!
//! Must not: deliver or speak SQL itself (the workers and the store do), or know about the
//! daemon: whoever embeds it (the daemon, `dirsync deliver`) hands in the commit feed and the
//! cancellation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::metrics::SinkMetricsTable;
use super::worker::{PassReport, Worker};
use super::Target;
use crate::config::{SinkConfig, TenantConfig};
use crate::mutex::lock;
use crate::store::{self, Store, StoreError};
use crate::telemetry::metrics::{Collector, Exposition};

/// How often retention pruning runs in a long-lived process.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Every delivery task of the process. Cheap to clone.
#[derive(Clone)]
pub struct Deliveries {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    retention: Option<Duration>,
    reopen: Arc<AtomicU64>,
    metrics: SinkMetricsTable,
    /// Per tenant: the stop token of its current tasks.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// The holder id of this process's delivery leases: one for all its workers, so a worker
    /// started by a reload takes over its predecessor's lease at once.
    holder: Arc<str>,
}

impl Deliveries {
    /// `retention`: prune events every sink acknowledged once they are older than this.
    pub fn new(store: Store, retention: Option<Duration>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                retention,
                reopen: Arc::new(AtomicU64::new(0)),
                metrics: SinkMetricsTable::default(),
                running: Mutex::new(HashMap::new()),
                holder: store::new_holder().into(),
            }),
        }
    }

    /// Starts one delivery task per sink of the tenant (and its retention pruner), replacing
    /// the tenant's previous tasks (on reload). `commits` is the tenant's receiver of the
    /// process's commit feed; commits of other processes are found by polling. The tasks stop
    /// when `cancel` is cancelled, on `stop`, or when a later `spawn` replaces them.
    ///
    /// The metrics of a sink the new config keeps carry on where they were; only sinks the
    /// tenant no longer has are forgotten. Stopping the tasks alone (a reload cancels the old
    /// ones, maybe before this call) never resets them: that is `stop`'s job.
    pub fn spawn(
        &self,
        tenant: &TenantConfig,
        commits: &watch::Receiver<u64>,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let token = cancel.child_token();
        if let Some(previous) = lock(&self.inner.running).insert(tenant.id.clone(), token.clone()) {
            previous.cancel();
        }
        let names: Vec<&str> = tenant.sinks.iter().map(|s| s.name.as_str()).collect();
        self.inner.metrics.retain_sinks(&tenant.id, &names);
        for sink in &tenant.sinks {
            let mut worker = self.worker(&tenant.id, sink);
            let (token, commits) = (token.clone(), commits.clone());
            tracker.spawn(async move { worker.run(commits, &token).await });
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
        if let Some(token) = lock(&self.inner.running).remove(tenant) {
            token.cancel();
        }
        self.inner.metrics.forget_tenant(tenant);
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
        let deleted = self
            .inner
            .store
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

    fn worker(&self, tenant: &str, sink: &SinkConfig) -> Worker {
        Worker {
            store: self.inner.store.clone(),
            tenant: tenant.to_owned(),
            sink: sink.clone(),
            target: Target::new(sink, &self.inner.reopen),
            metrics: self.inner.metrics.sink(tenant, &sink.name),
            holder: self.inner.holder.clone(),
            held: None,
        }
    }
}

/// The delivery metrics (`dirsync_sink_*`), for the process's registry.
impl Collector for Deliveries {
    fn collect(&self, out: &mut Exposition) {
        self.inner.metrics.collect(out);
    }
}
