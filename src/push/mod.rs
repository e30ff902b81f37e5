//! The SCIM 2.0 push receiver: Okta, Entra ID, OneLogin, JumpCloud or any RFC 7644 client
//! provisions a `scim_push` tenant at `/scim/v2/{tenant}` on the daemon's `http_listen`.
//!
//! Writes of a tenant queue for its one writer task (`429` past `max_queued_writes`), which
//! applies what queued together in one transaction (`batch`), each write with the same policy,
//! diff and outbox as a sync (`write`), and answers each after the commit. Reads go straight
//! to the store. The protocol itself (filters, PATCH, errors) is `scim_protocol`.
//!
//! Must not: run syncs, or speak SQL (that is `store::push`).

pub mod batch;
pub mod discovery;
pub mod http;
pub mod read;
pub mod resource;
pub mod write;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{ScimPushConfig, SourceConfig, TenantConfig};
use crate::daemon::{Extension, ExtensionContext, TenantHook};
use crate::feed::CommitFeed;
use crate::mutex::lock;
use crate::scim_protocol::ScimError;
use crate::store::push::{insert_request, NewPushRequest};
use crate::store::Store;
use batch::{BatchOutcome, Input};
use write::{WriteOp, Written};

/// Writes applied in one transaction at most.
const MAX_BATCH: usize = 256;

/// How long a write waits for a sync of its tenant to finish before it is answered `503`.
const BUSY_WAIT: Duration = Duration::from_secs(20);

/// One queued write and where its answer goes.
struct Job {
    op: WriteOp,
    log: NewPushRequest,
    received: Instant,
    reply: oneshot::Sender<Result<Written, ScimError>>,
}

/// A push tenant as the receiver serves it.
struct PushTenant {
    config: Arc<TenantConfig>,
    push: ScimPushConfig,
    queue: mpsc::Sender<Job>,
    /// Writes queued or being applied.
    pending: Arc<AtomicUsize>,
}

/// The receiver of one daemon: its push tenants, the store and the commit feed.
pub struct Receiver {
    store: Store,
    commits: CommitFeed,
    shutdown: CancellationToken,
    tenants: Mutex<BTreeMap<String, Arc<PushTenant>>>,
    log: mpsc::UnboundedSender<NewPushRequest>,
}

/// What a push tenant's queue looks like now (for `status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueState {
    pub pending: usize,
    pub limit: usize,
}

impl Receiver {
    fn new(store: Store, commits: CommitFeed, shutdown: CancellationToken) -> Arc<Self> {
        let (log, log_rx) = mpsc::unbounded_channel();
        let receiver = Arc::new(Self {
            store: store.clone(),
            commits,
            shutdown,
            tenants: Mutex::new(BTreeMap::new()),
            log,
        });
        tokio::spawn(write_request_log(store, log_rx));
        receiver
    }

    fn tenant(&self, id: &str) -> Option<Arc<PushTenant>> {
        lock(&self.tenants).get(id).cloned()
    }

    /// Starts serving `config` (a push tenant), or hands a reloaded config to its writer.
    #[allow(clippy::needless_pass_by_value)] // the hook hands it over
    fn serve(self: &Arc<Self>, config: Arc<TenantConfig>) {
        let SourceConfig::ScimPush(push) = &config.source else {
            self.forget(&config.id);
            return;
        };
        let mut tenants = lock(&self.tenants);
        if let Some(existing) = tenants.get(&config.id) {
            if existing.push.max_queued_writes == push.max_queued_writes {
                let updated = PushTenant {
                    config: config.clone(),
                    push: push.clone(),
                    queue: existing.queue.clone(),
                    pending: existing.pending.clone(),
                };
                tenants.insert(config.id.clone(), Arc::new(updated));
                return;
            }
        }
        let (queue, jobs) = mpsc::channel(push.max_queued_writes);
        let tenant = Arc::new(PushTenant {
            config: config.clone(),
            push: push.clone(),
            queue,
            pending: Arc::new(AtomicUsize::new(0)),
        });
        tenants.insert(config.id.clone(), tenant);
        drop(tenants);
        tokio::spawn(writer(self.clone(), config.id.clone(), jobs));
        info!(tenant = %config.id, "SCIM push receiver: serving /scim/v2/{}", config.id);
    }

    fn forget(&self, tenant: &str) {
        lock(&self.tenants).remove(tenant);
    }

    /// Queues a write; answers once it committed (or was refused).
    async fn write(
        &self,
        tenant: &PushTenant,
        op: WriteOp,
        log: NewPushRequest,
        received: Instant,
    ) -> Result<Written, WriteRefusal> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            op,
            log,
            received,
            reply,
        };
        tenant.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = tenant.queue.try_send(job) {
            tenant.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(match err {
                mpsc::error::TrySendError::Full(job) => WriteRefusal::QueueFull(job.log),
                mpsc::error::TrySendError::Closed(job) => WriteRefusal::Stopping(job.log),
            });
        }
        match answer.await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(error)) => Err(WriteRefusal::Scim(error)),
            Err(_) => Err(WriteRefusal::Unanswered),
        }
    }

    pub fn queue_state(&self, tenant: &str) -> Option<QueueState> {
        self.tenant(tenant).map(|tenant| QueueState {
            pending: tenant.pending.load(Ordering::Relaxed),
            limit: tenant.push.max_queued_writes,
        })
    }

    /// Logs a request that did not go through the writer (reads, refusals at the door).
    fn log_request(&self, request: NewPushRequest) {
        let _ = self.log.send(request);
    }
}

/// Why a write got no result from the writer.
enum WriteRefusal {
    Scim(ScimError),
    QueueFull(NewPushRequest),
    Stopping(NewPushRequest),
    Unanswered,
}

/// The tenant's one writer: batches what queued, applies it, answers.
async fn writer(receiver: Arc<Receiver>, tenant_id: String, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let Some(tenant) = receiver.tenant(&tenant_id) else {
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(ScimError::not_found("the tenant was removed")));
            }
            continue;
        };
        let count = batch.len();
        let outcome = apply_with_wait(&receiver, &tenant, &mut batch).await;
        tenant.pending.fetch_sub(count, Ordering::Relaxed);
        match outcome {
            Ok((results, last_seq)) => {
                receiver.commits.publish(&tenant_id, last_seq);
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                for job in batch {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Applies the batch, waiting (bounded) while a sync holds the tenant.
async fn apply_with_wait(
    receiver: &Receiver,
    tenant: &PushTenant,
    batch: &mut [Job],
) -> Result<(Vec<Result<Written, ScimError>>, u64), ScimError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let inputs: Vec<Input> = batch
            .iter()
            .map(|job| Input {
                op: job.op.clone(),
                log: job.log.clone(),
                received: job.received,
            })
            .collect();
        let (config, push) = (tenant.config.clone(), tenant.push.clone());
        let applied = Instant::now();
        let outcome = receiver
            .store
            .run(move |conn| batch::apply_batch(conn, &config, &push, inputs))
            .await;
        match outcome {
            Ok(BatchOutcome::Done { results, last_seq }) => {
                let refused = results.iter().filter(|result| result.is_err()).count();
                tracing::debug!(
                    tenant = %tenant.config.id,
                    writes = results.len(),
                    refused,
                    last_seq,
                    duration_ms = applied.elapsed().as_secs_f64() * 1000.0,
                    "push writes committed"
                );
                return Ok((results, last_seq));
            }
            Ok(BatchOutcome::Busy { holder, until }) => {
                if started.elapsed() > BUSY_WAIT || receiver.shutdown.is_cancelled() {
                    return Err(ScimError {
                        status: 503,
                        scim_type: None,
                        detail: format!(
                            "the tenant is being synced ({holder} holds it until {until}): try again shortly"
                        ),
                    });
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(err) => {
                warn!(tenant = %tenant.config.id, "push writes failed: {err}");
                return Err(ScimError::internal(format!(
                    "dirsync could not store the write: {err}"
                )));
            }
        }
    }
}

/// Writes the log lines of reads and refusals in batches, off the request path.
async fn write_request_log(store: Store, mut lines: mpsc::UnboundedReceiver<NewPushRequest>) {
    while let Some(first) = lines.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match lines.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let result = store
            .run(move |conn| {
                let tx = conn.transaction()?;
                for line in &batch {
                    insert_request(&tx, line)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await;
        if let Err(err) = result {
            warn!("cannot write the push request log: {err}");
        }
    }
}

/// The receiver as a daemon extension: its routes, and its tenants as the daemon starts and
/// reloads them.
#[derive(Default)]
pub struct PushExtension {
    receiver: OnceLock<Arc<Receiver>>,
    /// Tenants started before the routes existed (none in practice; kept for order safety).
    early: Mutex<Vec<Arc<TenantConfig>>>,
}

impl PushExtension {
    pub fn receiver(&self) -> Option<&Arc<Receiver>> {
        self.receiver.get()
    }
}

impl Extension for PushExtension {
    fn routes(&self, context: &ExtensionContext) -> Option<axum::Router> {
        let receiver = self
            .receiver
            .get_or_init(|| {
                Receiver::new(
                    context.store.clone(),
                    context.commits.clone(),
                    context.shutdown.clone(),
                )
            })
            .clone();
        for config in lock(&self.early).drain(..) {
            receiver.serve(config);
        }
        Some(http::router(receiver))
    }

    fn start_tenant(&self, hook: TenantHook) {
        match self.receiver.get() {
            Some(receiver) => receiver.serve(hook.config),
            None if hook.config.source.is_push() => {
                warn!(tenant = %hook.config.id, "a scim_push tenant needs http_listen in the global file: its IdP has nowhere to send requests");
                lock(&self.early).push(hook.config);
            }
            None => {}
        }
    }

    fn stop_tenant(&self, tenant: &str) {
        if let Some(receiver) = self.receiver.get() {
            receiver.forget(tenant);
        }
    }

    fn describe_tenant(&self, tenant: &str) -> Option<(&'static str, serde_json::Value)> {
        let queue = self.receiver.get()?.queue_state(tenant)?;
        Some(("push_queue", serde_json::to_value(queue).ok()?))
    }
}

#[cfg(test)]
mod tests;
