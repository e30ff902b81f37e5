//! One tenant inside the daemon: a task that sleeps until the tenant's next cron fire time (plus
//! the tenant's stable offset, `schedule::offset_of`), runs one sync at a time, coalesces force requests that arrive while a run
//! is in progress into the next run, and backs off after failures. Each tenant has its own task,
//! so one tenant's slow or failing IdP never delays another. A panic in a run fails that run
//! (the tenant is scheduled again, with backoff); a run still going past its `max_run_seconds`
//! plus [`COMMIT_GRACE`] marks the tenant wedged, which `/healthz` reports.
//!
//! Must not: touch SQL directly (that is `store`, reached through `sync`), or know about sockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::schedule::{next_due, offset_of, Clock};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::{Metrics, Scheduled};
use super::Extensions;
use crate::config::TenantConfig;
use crate::event::format_timestamp;
use crate::feed::CommitFeed;
use crate::mutex::lock;
use crate::run::{RunOutcome, RunSummary};
use crate::store::{self, Store};
use crate::sync::unwind::catch_unwind_future;
use crate::sync::{run_sync, RunResult, SyncOptions};

/// The result of a run whose panic escaped `run_sync`: failed, with the panic's message.
fn panicked_run(tenant: &str, message: &str) -> RunResult {
    let now = crate::run::Millis::now();
    let mut summary = RunSummary::begun(tenant, now);
    summary.outcome = RunOutcome::Failed;
    summary.error = Some(format!(
        "internal error: the run panicked: {message}; this is a bug in dirsync or a library it uses: please report it with the log"
    ));
    summary.finish(now);
    RunResult {
        summary,
        timings: crate::sync::RunTimings::default(),
        dry_run_events: Vec::new(),
        unchanged: false,
    }
}

/// How long a run may outlast its `max_run_seconds` (only its commit, never cut, can) before
/// the tenant counts as wedged.
pub const COMMIT_GRACE: Duration = Duration::from_secs(10 * 60);

/// How long a failing tenant waits before its next scheduled attempt.
#[derive(Debug, Clone, Copy)]
pub struct BackoffPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(30 * 60),
        }
    }
}

impl BackoffPolicy {
    /// base·2^(failures-1), capped, then scaled by a random factor in [0.8, 1.2] so tenants that
    /// failed together (one IdP outage) do not retry together.
    pub fn delay(&self, failures: u32) -> Duration {
        let exponential = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        exponential
            .min(self.cap)
            .mul_f64(rand::rng().random_range(0.8..=1.2))
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Force,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningState {
    pub since: String,
    pub trigger: Trigger,
    pub dry_run: bool,
}

/// What the daemon knows about a tenant beyond the database: `dirsync status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantState {
    pub tenant: String,
    pub enabled: bool,
    pub schedule: String,
    /// The next scheduled run (jitter and backoff included); `None` when disabled.
    pub next_run: Option<String>,
    pub running: Option<RunningState>,
    /// Force requests waiting for a run (the control socket counts them in, the task out).
    pub queued_requests: usize,
    /// Failed or refused scheduled runs in a row.
    pub consecutive_failures: u32,
    /// Scheduled runs wait at least until then.
    pub backoff_until: Option<String>,
    pub last_outcome: Option<String>,
    pub last_finished: Option<String>,
    pub last_error: Option<String>,
    /// Runs since the daemon started.
    pub runs: u64,
    /// What extensions add about the tenant (the push receiver: its write queue), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extensions: std::collections::BTreeMap<String, serde_json::Value>,
    /// A run still going after this is wedged (not in `status`: it shows `running.since`).
    #[serde(skip)]
    pub wedged_after: Option<DateTime<Utc>>,
    /// The tenant's task itself stopped on a panic: nothing is scheduled any more.
    #[serde(skip)]
    pub task_panicked: Option<String>,
}

impl TenantState {
    /// Why the tenant is stuck at `now`, if it is: for `/healthz`.
    pub fn wedged(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(message) = &self.task_panicked {
            return Some(format!(
                "tenant {}: its task stopped on a panic ({message}); restart the daemon",
                self.tenant
            ));
        }
        match (&self.running, self.wedged_after) {
            (Some(running), Some(after)) if now > after => Some(format!(
                "tenant {}: a run started {} is still going, past its max_run_seconds",
                self.tenant, running.since
            )),
            _ => None,
        }
    }
}

/// A force sync asked for over the control socket.
pub struct ForceRequest {
    pub options: SyncOptions,
    pub reply: oneshot::Sender<RunResult>,
}

/// The force requests waiting for one tenant's task: a list and a wake-up. (A channel was
/// simpler, but each one held its first block of 32 slots, about a kilobyte, for every one of
/// ten thousand idle tenants.)
#[derive(Default)]
struct ForceQueue {
    waiting: Mutex<ForceWaiting>,
    wake: Notify,
}

#[derive(Default)]
struct ForceWaiting {
    requests: Vec<ForceRequest>,
    /// The task ended: nothing will take a request any more.
    closed: bool,
}

/// The control socket's end of a tenant's force requests.
#[derive(Clone)]
pub struct ForceSender(Arc<ForceQueue>);

/// The tenant task's end; dropping it (the task ended, or panicked) refuses later requests
/// and answers the waiting ones with "stopped" (their reply senders are dropped).
pub struct ForceReceiver(Arc<ForceQueue>);

pub fn force_queue() -> (ForceSender, ForceReceiver) {
    let queue = Arc::new(ForceQueue::default());
    (ForceSender(queue.clone()), ForceReceiver(queue))
}

impl ForceSender {
    /// Hands the request back when the task has ended.
    pub fn send(&self, request: ForceRequest) -> Result<(), ForceRequest> {
        let mut waiting = lock(&self.0.waiting);
        if waiting.closed {
            return Err(request);
        }
        waiting.requests.push(request);
        drop(waiting);
        self.0.wake.notify_one();
        Ok(())
    }
}

impl ForceReceiver {
    fn take(&self) -> Vec<ForceRequest> {
        std::mem::take(&mut lock(&self.0.waiting).requests)
    }

    /// Until a request is sent (at once if one was sent since the last wait).
    async fn wait(&self) {
        self.0.wake.notified().await;
    }
}

impl Drop for ForceReceiver {
    fn drop(&mut self) {
        let unanswered = {
            let mut waiting = lock(&self.0.waiting);
            waiting.closed = true;
            std::mem::take(&mut waiting.requests)
        };
        drop(unanswered);
    }
}

/// The daemon's handle on a running tenant task.
pub struct TenantHandle {
    pub config: watch::Sender<Arc<TenantConfig>>,
    pub requests: ForceSender,
    pub state: Arc<Mutex<TenantState>>,
    /// Stops the task and abandons its fetch in progress (not a commit).
    pub stop: CancellationToken,
    /// Stops what extensions (sink delivery) started for this tenant's current config.
    pub extension_stop: CancellationToken,
}

impl TenantHandle {
    pub fn snapshot(&self) -> TenantState {
        lock(&self.state).clone()
    }
}

impl From<&TenantState> for Scheduled {
    fn from(state: &TenantState) -> Self {
        Scheduled {
            tenant: state.tenant.clone(),
            running: state.running.is_some(),
            consecutive_failures: state.consecutive_failures,
            next_run: state.next_run.clone(),
        }
    }
}

pub struct TenantTask {
    pub store: Store,
    pub config: watch::Receiver<Arc<TenantConfig>>,
    pub requests: ForceReceiver,
    pub state: Arc<Mutex<TenantState>>,
    pub stop: CancellationToken,
    pub metrics: Metrics,
    pub commits: CommitFeed,
    pub extensions: Extensions,
    pub backoff: BackoffPolicy,
    pub clock: Clock,
    /// The daemon's bound on runs at once (`max_concurrent_runs`, `slots`).
    pub run_slots: super::slots::RunSlots,
    /// The tenant's stored users, groups and memberships, as last read: how many run slots its
    /// runs take.
    pub stored_objects: u64,
    /// This daemon's node id: a scheduled run is claimed for it in the store first, so with
    /// several nodes on one store each slot runs on one of them.
    pub node: Arc<str>,
}

fn same_options(a: SyncOptions, b: SyncOptions) -> bool {
    a.dry_run == b.dry_run && a.allow_mass_delete == b.allow_mass_delete
}

impl TenantTask {
    pub async fn run(mut self) {
        let mut pending: Vec<ForceRequest> = Vec::new();
        let mut backoff_until: Option<DateTime<Utc>> = None;
        // The last scheduled run served (at first: when the task started). The next run is
        // computed from it, not from "now", so recomputing it — after a reload, a force sync,
        // a backoff — never skips a run that is due.
        let mut served = self.clock.now();
        self.init_from_store().await;
        loop {
            pending.extend(self.requests.take());
            if let Some(first) = pending.first() {
                let options = first.options;
                let (batch, rest): (Vec<_>, Vec<_>) = pending
                    .into_iter()
                    .partition(|r| same_options(r.options, options));
                pending = rest;
                {
                    let mut state = lock(&self.state);
                    state.queued_requests = state.queued_requests.saturating_sub(batch.len());
                }
                let report = self
                    .run_once(Trigger::Force, options, &mut backoff_until)
                    .await;
                for request in batch {
                    let _ = request.reply.send(report.clone());
                }
                if self.stop.is_cancelled() {
                    break;
                }
                continue;
            }

            let config = self.config.borrow_and_update().clone();
            let due = if config.enabled && config.scheduled {
                let after = backoff_until.map_or(served, |until| until.max(served));
                let offset = offset_of(&config.id, &config.schedule, after);
                next_due(&config.schedule, after, offset)
            } else {
                None
            };
            {
                let mut state = lock(&self.state);
                state.enabled = config.enabled;
                state.schedule = config.schedule_text.clone();
                state.next_run = due.map(format_timestamp);
            }
            let wait = due
                .map(|at| self.clock.until(at))
                // A disabled tenant only wakes for force requests, config changes and stop.
                .unwrap_or(Duration::from_secs(365 * 24 * 3600));

            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                // Taken at the top of the loop. (The task stops when its handle goes: the
                // config's sender goes with it.)
                () = self.requests.wait() => {}
                changed = self.config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // A push tenant's stored directory follows its policy only through runs:
                    // a reload that changed the policy re-applies it to what was pushed.
                    let new = self.config.borrow().clone();
                    if new.enabled && !new.scheduled && push_policy_changed(&config, &new) {
                        info!(tenant = %new.id, "the push tenant's policy changed: re-applying it to the pushed directory");
                        self.run_once(Trigger::Schedule, SyncOptions::scheduled(), &mut backoff_until).await;
                    }
                }
                () = tokio::time::sleep(wait) => {
                    if self.claim(&config.id, due).await {
                        self.run_once(Trigger::Schedule, SyncOptions::scheduled(), &mut backoff_until).await;
                    }
                    // Fire times that passed during a run longer than the interval are not
                    // made up one after another: the next run is the next one still ahead.
                    served = due.map_or(served, |due| due.max(self.clock.now()));
                    if self.stop.is_cancelled() {
                        break;
                    }
                }
            }
        }
        let mut state = lock(&self.state);
        state.next_run = None;
        state.running = None;
        // Dropping `pending` answers every waiting requester with "the daemon stopped".
    }

    /// Claims the scheduled slot `due` (the fire time, not now: every node computes the same
    /// one) for this node. False when another node claimed it: that node runs it. A store that
    /// cannot be asked lets the run go ahead; it then fails and reports the store's trouble.
    async fn claim(&self, tenant: &str, due: Option<DateTime<Utc>>) -> bool {
        let Some(due) = due else {
            return true;
        };
        let (id, node, slot) = (tenant.to_owned(), self.node.clone(), due.timestamp_millis());
        match self
            .store
            .run(move |conn| store::cluster::claim_slot(conn, &id, slot, &node))
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                debug!(tenant, slot = %format_timestamp(due), "another node claimed this scheduled run");
                false
            }
            Err(err) => {
                warn!(
                    tenant,
                    "cannot claim the scheduled run: {err}; running it anyway"
                );
                true
            }
        }
    }

    /// Seeds metrics and the commit feed from the database, so a restart does not reset them.
    async fn init_from_store(&mut self) {
        let tenant = self.config.borrow().id.clone();
        let store = self.store.clone();
        let id = tenant.clone();
        let loaded = store
            .run(move |conn| {
                let counts = store::stored_counts(conn, &id)?;
                let last_seq = store::last_seq(conn, &id)?;
                let last_success = store::last_runs(conn, &id, 50)?
                    .into_iter()
                    .find(|r| r.outcome.is_success())
                    .map(|r| r.finished_at.0);
                Ok((counts, last_seq, last_success))
            })
            .await;
        match loaded {
            Ok((counts, last_seq, last_success)) => {
                self.stored_objects = counts.users + counts.groups + counts.memberships;
                self.metrics.seed(&tenant, counts, last_success);
                self.commits.publish(&tenant, last_seq);
            }
            Err(err) => warn!(tenant, "cannot read the tenant's stored state: {err}"),
        }
    }

    async fn run_once(
        &mut self,
        trigger: Trigger,
        options: SyncOptions,
        backoff_until: &mut Option<DateTime<Utc>>,
    ) -> RunResult {
        let config = self.config.borrow().clone();
        // Stopping while waiting goes on without a slot: the run then ends at once.
        let _slot = tokio::select! {
            slot = self.run_slots.acquire(self.stored_objects) => slot,
            () = self.stop.cancelled() => None,
        };
        {
            let mut state = lock(&self.state);
            state.running = Some(RunningState {
                since: format_timestamp(self.clock.now()),
                trigger,
                dry_run: options.dry_run,
            });
            state.wedged_after = chrono::Duration::from_std(config.source.max_run() + COMMIT_GRACE)
                .ok()
                .map(|limit| self.clock.now() + limit);
            state.next_run = None;
        }
        // run_sync catches panics in the run itself; this also covers its own bookkeeping.
        let result =
            match catch_unwind_future(run_sync(&self.store, &config, options, &self.stop)).await {
                Ok(result) => result,
                Err(message) => {
                    let mut result = panicked_run(&config.id, &message);
                    crate::sync::record_uncommitted(&self.store, &mut result.summary).await;
                    result
                }
            };
        let report: &RunSummary = &result.summary;
        let stopped = self.stop.is_cancelled();
        self.metrics.record_run(report, options.dry_run);

        if report.outcome.is_success() {
            if let Some(seq) = report.last_seq {
                self.commits.publish(&config.id, seq);
                for extension in self.extensions.iter() {
                    extension.on_commit(&config.id, seq);
                }
            }
            // A committed run's counts are the stored directory's; a dry run's are only planned.
            match (
                report.stored_users,
                report.stored_groups,
                report.stored_memberships,
            ) {
                (Some(users), Some(groups), Some(memberships)) if !options.dry_run => {
                    self.set_stored_counts(
                        &config.id,
                        store::StoredCounts {
                            users,
                            groups,
                            memberships,
                        },
                    );
                }
                _ => self.refresh_stored_counts(&config.id).await,
            }
        }

        let mut state = lock(&self.state);
        state.running = None;
        state.wedged_after = None;
        state.runs += 1;
        state.last_outcome = Some(report.outcome.as_str().to_owned());
        state.last_finished = Some(format_timestamp(self.clock.now()));
        state.last_error = report.error.clone();
        // A dry run says nothing about whether scheduled runs should wait; a run abandoned
        // because the daemon is stopping is not the IdP's fault.
        if !options.dry_run && !stopped {
            match report.outcome {
                RunOutcome::Committed | RunOutcome::NoChanges => {
                    state.consecutive_failures = 0;
                    state.backoff_until = None;
                    *backoff_until = None;
                }
                RunOutcome::Failed | RunOutcome::Refused => {
                    state.consecutive_failures += 1;
                    let delay = self.backoff.delay(state.consecutive_failures);
                    let until = self.clock.now()
                        + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                    *backoff_until = Some(until);
                    state.backoff_until = Some(format_timestamp(until));
                    warn!(
                        tenant = %config.id,
                        failures = state.consecutive_failures,
                        backoff_seconds = delay.as_secs(),
                        "backing off: no scheduled run of this tenant before {}",
                        format_timestamp(until)
                    );
                }
                RunOutcome::DryRun => {}
            }
        }
        drop(state);
        // run_sync already logged the run's counts and duration inside its span.
        debug!(
            tenant = %config.id,
            trigger = ?trigger,
            outcome = report.outcome.as_str(),
            events = report.events,
            duration_ms = report.duration_ms,
            "run done"
        );
        result
    }

    async fn refresh_stored_counts(&mut self, tenant: &str) {
        let id = tenant.to_owned();
        let counts = self
            .store
            .run(move |conn| store::stored_counts(conn, &id))
            .await;
        if let Ok(counts) = counts {
            self.set_stored_counts(tenant, counts);
        }
    }

    fn set_stored_counts(&mut self, tenant: &str, counts: store::StoredCounts) {
        self.stored_objects = counts.users + counts.groups + counts.memberships;
        self.metrics.set_stored(tenant, counts);
    }
}

/// Whether a reload changed what policy makes of a push tenant's pushed directory.
fn push_policy_changed(old: &TenantConfig, new: &TenantConfig) -> bool {
    let policy = |tenant: &TenantConfig| {
        let source = match &tenant.source {
            crate::config::SourceConfig::ScimPush(push) => format!(
                "{:?} {:?} {:?}",
                push.suspended_users, push.nested_groups, push.email_from
            ),
            _ => return None,
        };
        Some(format!(
            "{source} {:?} {:?} {:?}",
            tenant.filters, tenant.roles, tenant.attributes
        ))
    };
    policy(new).is_some() && policy(old) != policy(new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_run_past_its_limit_or_a_stopped_task_is_wedged_and_says_which_tenant() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc)
        };
        let mut state = TenantState {
            tenant: "acme".into(),
            running: Some(RunningState {
                since: "2026-12-02T10:00:00.000Z".into(),
                trigger: Trigger::Schedule,
                dry_run: false,
            }),
            wedged_after: Some(at("2026-12-02T11:10:00Z")),
            ..TenantState::default()
        };
        assert_eq!(state.wedged(at("2026-12-02T11:00:00Z")), None);
        let wedged = state.wedged(at("2026-12-02T11:10:01Z")).unwrap();
        assert!(wedged.contains("tenant acme") && wedged.contains("2026-12-02T10:00:00.000Z"));
        // A finished run is not wedged, whatever the limit said.
        state.running = None;
        assert_eq!(state.wedged(at("2026-12-02T12:00:00Z")), None);
        state.task_panicked = Some("boom".into());
        assert!(state
            .wedged(at("2026-12-02T12:00:00Z"))
            .unwrap()
            .contains("boom"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = BackoffPolicy {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(100),
        };
        let first = policy.delay(1);
        assert!(first >= Duration::from_secs(8) && first <= Duration::from_secs(12));
        let third = policy.delay(3);
        assert!(third >= Duration::from_secs(32) && third <= Duration::from_secs(48));
        for failures in [5, 20, 40, u32::MAX] {
            assert!(policy.delay(failures) <= Duration::from_secs(120));
            assert!(policy.delay(failures) >= Duration::from_secs(80));
        }
    }
}
