//! One sync of one tenant: take the tenant's lease, fetch the complete snapshot, apply policy,
//! diff against the stored snapshot, check the deletion guard, and commit the new rows, every
//! event and the run record in one transaction. Anything that fails before the commit leaves
//! the store as it was and is recorded as a failed run.
//!
//! Shared by `dirsync sync` (in-process) and the daemon.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::config::{GuardConfig, TenantConfig};
use crate::diff::{counts_by_type, deletion_counts, diff_indexed, needed_previous, DeletionCounts};
use crate::event::{Change, Event};
use crate::model::{Id, Snapshot, StoredIndex};
use crate::policy;
use crate::source::scim::ResourceKind;
use crate::source::{FetchStats, Fetched, Source, SourceError};
use crate::store::{self, Lease, RunOutcome, RunRecord, Store, StoreError};

/// How long a lease lasts without renewal; a crashed holder blocks its tenant this long.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    pub dry_run: bool,
    pub allow_mass_delete: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("deletion guard: this run would delete {users} of {stored_users} users and {groups} of {stored_groups} groups, more than max_delete_percent = {max_percent}% (and min_deletes = {min_deletes}); nothing was committed. If this is intended, run `dirsync sync {tenant} --allow-mass-delete`; if not, check the tenant's [filters] and the IdP")]
    Guard {
        tenant: String,
        users: usize,
        stored_users: usize,
        groups: usize,
        stored_groups: usize,
        max_percent: f64,
        min_deletes: u64,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The summary of a run, as `sync --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub tenant: String,
    pub sync_id: Option<i64>,
    pub outcome: RunOutcome,
    pub events: u64,
    pub counts: BTreeMap<String, u64>,
    pub users: Option<u64>,
    pub groups: Option<u64>,
    pub memberships: Option<u64>,
    pub api_requests: u64,
    pub retries: u64,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Something the operator should know about a run that did not fail (a dry run that
    /// the deletion guard would refuse).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// The events a dry run would emit.
    #[serde(skip)]
    pub dry_run_events: Vec<Event>,
}

impl SyncReport {
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            RunOutcome::Committed | RunOutcome::NoChanges | RunOutcome::DryRun => 0,
            RunOutcome::Refused => 3,
            RunOutcome::Failed => 1,
        }
    }

    /// One readable line.
    pub fn summary_line(&self) -> String {
        let mut line = format!("tenant {}: {}", self.tenant, self.outcome.as_str());
        if let Some(id) = self.sync_id {
            line.push_str(&format!(" (sync {id})"));
        }
        line.push_str(&format!(", {} events", self.events));
        if !self.counts.is_empty() {
            let parts: Vec<String> = self
                .counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            line.push_str(&format!(" [{}]", parts.join(", ")));
        }
        if let (Some(u), Some(g), Some(m)) = (self.users, self.groups, self.memberships) {
            line.push_str(&format!(
                "; upstream {u} users, {g} groups, {m} memberships"
            ));
        }
        line.push_str(&format!("; {} API requests", self.api_requests));
        if self.retries > 0 {
            line.push_str(&format!(" ({} retried)", self.retries));
        }
        line.push_str(&format!(", {:.1}s", self.duration_ms as f64 / 1000.0));
        if let Some(error) = &self.error {
            line.push_str(&format!("\n  error: {error}"));
        }
        if let Some(warning) = &self.warning {
            line.push_str(&format!("\n  warning: {warning}"));
        }
        line
    }
}

/// Runs on a blocking thread: SQLite never runs on the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| SyncError::Internal(format!("store task failed: {err}")))?
        .map_err(SyncError::Store)
}

/// Takes the tenant's lease, waiting while another process holds it.
pub async fn acquire_lease(
    store: &Store,
    tenant: &str,
    cancel: &CancellationToken,
) -> Result<Lease, SyncError> {
    let holder = store::new_holder();
    let mut announced = false;
    let mut wait = Duration::from_millis(50);
    loop {
        let (store2, tenant2, holder2) = (store.clone(), tenant.to_owned(), holder.clone());
        let attempt = blocking(move || {
            let mut conn = store2.connect()?;
            store::acquire_lease(&mut conn, &tenant2, &holder2, LEASE_TTL)
        })
        .await;
        match attempt {
            Ok(lease) => return Ok(lease),
            Err(SyncError::Store(StoreError::Lease(err))) => {
                if !announced {
                    info!(tenant, "waiting: {err}");
                    announced = true;
                }
            }
            Err(err) => return Err(err),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Err(SyncError::Source(SourceError::Cancelled)),
        }
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

fn guard_check(
    tenant: &str,
    guard: &GuardConfig,
    stored: StoredCounts,
    deletions: DeletionCounts,
) -> Result<(), SyncError> {
    let trips = |deleted: usize, stored: usize| {
        deleted as u64 > guard.min_deletes
            && stored > 0
            && (deleted as f64) * 100.0 / (stored as f64) > guard.max_delete_percent
    };
    if trips(deletions.users, stored.users) || trips(deletions.groups, stored.groups) {
        return Err(SyncError::Guard {
            tenant: tenant.to_owned(),
            users: deletions.users,
            stored_users: stored.users,
            groups: deletions.groups,
            stored_groups: stored.groups,
            max_percent: guard.max_delete_percent,
            min_deletes: guard.min_deletes,
        });
    }
    Ok(())
}

/// How many users and groups the store held before the run.
#[derive(Debug, Clone, Copy)]
struct StoredCounts {
    users: usize,
    groups: usize,
}

struct Planned {
    stored: StoredCounts,
    /// The stored objects the events render from their stored state (updated, deleted, in a
    /// removed membership); the rest of the stored directory is not held.
    previous: Snapshot,
    after: Snapshot,
    changes: Vec<Change>,
    exclusions: Vec<(String, String, &'static str, &'static str, Option<String>)>,
    direct: policy::DirectGraph,
}

/// Runs one sync of `tenant`. Never panics on bad input; every failure is in the report.
pub async fn run_sync(
    store: &Store,
    tenant: &TenantConfig,
    options: SyncOptions,
    cancel: &CancellationToken,
) -> SyncReport {
    let span = tracing::info_span!("sync", tenant = %tenant.id);
    run_sync_inner(store, tenant, options, cancel)
        .instrument(span)
        .await
}

async fn run_sync_inner(
    store: &Store,
    tenant: &TenantConfig,
    options: SyncOptions,
    cancel: &CancellationToken,
) -> SyncReport {
    let started = Instant::now();
    let started_at = store::now_ms();
    let stats = Arc::new(FetchStats::default());
    let mut report = SyncReport {
        tenant: tenant.id.clone(),
        sync_id: None,
        outcome: RunOutcome::Failed,
        events: 0,
        counts: BTreeMap::new(),
        users: None,
        groups: None,
        memberships: None,
        api_requests: 0,
        retries: 0,
        duration_ms: 0,
        error: None,
        warning: None,
        first_seq: None,
        last_seq: None,
        dry_run_events: Vec::new(),
    };

    let lease = match acquire_lease(store, &tenant.id, cancel).await {
        Ok(lease) => lease,
        Err(err) => {
            report.error = Some(err.to_string());
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
    };
    let renewal = spawn_lease_renewal(store.clone(), lease.clone());

    let result = plan_and_commit(
        store,
        tenant,
        options,
        cancel,
        &stats,
        &lease,
        started_at,
        &mut report,
    )
    .await;
    renewal.cancel();

    report.api_requests = stats.requests();
    report.retries = stats.retries();
    report.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(err) = result {
        report.outcome = match err {
            SyncError::Guard { .. } => RunOutcome::Refused,
            _ => RunOutcome::Failed,
        };
        let mut message = err.to_string();
        if let SyncError::Source(source) = &err {
            if let Some(hint) = source.hint() {
                message.push_str(&format!(" (hint: {hint})"));
            }
        }
        report.error = Some(message);
    }
    if report.outcome != RunOutcome::Committed && report.outcome != RunOutcome::NoChanges {
        record_uncommitted(store, tenant, &mut report, started_at).await;
    }
    let (store2, lease2) = (store.clone(), lease);
    let _ = blocking(move || store::release_lease(&store2.connect()?, &lease2)).await;

    match report.outcome {
        RunOutcome::Failed => warn!(
            outcome = report.outcome.as_str(),
            duration_ms = report.duration_ms,
            api_requests = report.api_requests,
            retries = report.retries,
            error = report.error.as_deref().unwrap_or(""),
            "sync failed"
        ),
        _ => info!(
            outcome = report.outcome.as_str(),
            events = report.events,
            users = report.users,
            groups = report.groups,
            memberships = report.memberships,
            api_requests = report.api_requests,
            retries = report.retries,
            duration_ms = report.duration_ms,
            "sync finished"
        ),
    }
    report
}

fn spawn_lease_renewal(store: Store, lease: Lease) -> CancellationToken {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(LEASE_TTL / 4);
        interval.tick().await;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = stopped.cancelled() => return,
            }
            let (store, lease) = (store.clone(), lease.clone());
            let renewed =
                tokio::task::spawn_blocking(move || store::renew_lease(&store.connect()?, &lease))
                    .await;
            if let Ok(Err(err)) = renewed {
                warn!("cannot renew the sync lease: {err}");
            }
        }
    });
    stop
}

#[allow(clippy::too_many_arguments)]
async fn plan_and_commit(
    store: &Store,
    tenant: &TenantConfig,
    options: SyncOptions,
    cancel: &CancellationToken,
    stats: &Arc<FetchStats>,
    lease: &Lease,
    started_at: i64,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let source = Source::new(tenant, stats.clone()).await?;
    let (store2, tenant_id) = (store.clone(), tenant.id.clone());
    let index = blocking(move || store::load_index(&store2.connect()?, &tenant_id)).await?;
    phase("stored index loaded");
    let fetched = fetch_confirmed(&source, &index, cancel).await?;
    phase("fetched");
    report.users = Some(fetched.users.len() as u64);
    report.groups = Some(fetched.groups.len() as u64);
    let source_kind = fetched.source;
    if cancel.is_cancelled() {
        return Err(SyncError::Source(SourceError::Cancelled));
    }

    let tenant_config = tenant.clone();
    let (store2, tenant_id) = (store.clone(), tenant.id.clone());
    let planned = tokio::task::spawn_blocking(move || -> Result<Planned, StoreError> {
        let applied = policy::apply(fetched, &tenant_config);
        phase("policy applied");
        let needed = needed_previous(&index, &applied.snapshot);
        let previous = store::load_objects(&store2.connect()?, &tenant_id, &needed)?;
        let changes = diff_indexed(&index, &previous, &applied.snapshot);
        let stored = StoredCounts {
            users: index.users.len(),
            groups: index.groups.len(),
        };
        drop(index);
        phase("diffed");
        let mut exclusions: Vec<_> = applied
            .excluded_users
            .iter()
            .map(|u| {
                let detail = u.reason.detail();
                (
                    u.id.to_string(),
                    u.email.clone(),
                    "user",
                    u.reason.code(),
                    detail,
                )
            })
            .collect();
        exclusions.extend(applied.excluded_groups.iter().map(|g| {
            (
                g.id.to_string(),
                g.key.clone(),
                "group",
                "group_filter",
                None,
            )
        }));
        Ok(Planned {
            stored,
            previous,
            after: applied.snapshot,
            changes,
            exclusions,
            direct: applied.direct,
        })
    })
    .await
    .map_err(|err| SyncError::Internal(format!("planning failed: {err}")))??;
    report.memberships = Some(planned.after.membership_count() as u64);

    let counts = counts_by_type(&planned.changes);
    report.counts = counts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    report.events = planned.changes.len() as u64;

    if !options.allow_mass_delete {
        let guard = guard_check(
            &tenant.id,
            &tenant.guard,
            planned.stored,
            deletion_counts(&planned.changes),
        );
        match guard {
            // A dry run commits nothing, so there is nothing to refuse: it shows the events
            // and says that a real run would be refused.
            Err(err) if options.dry_run => {
                report.warning = Some(format!("a real run would be refused: {err}"));
            }
            other => other?,
        }
    }
    if cancel.is_cancelled() {
        return Err(SyncError::Source(SourceError::Cancelled));
    }

    if options.dry_run {
        let (store2, tenant_id) = (store.clone(), tenant.id.clone());
        let last = blocking(move || store::last_seq(&store2.connect()?, &tenant_id)).await?;
        let occurred_at = crate::event::format_timestamp(chrono::Utc::now());
        let input = store::NewEvents {
            tenant: &tenant.id,
            source: source_kind,
            lease,
            before: &planned.previous,
            after: &planned.after,
            changes: &planned.changes,
            run: RunRecord::begun(started_at),
            exclusions: Vec::new(),
            direct: None,
        };
        report.dry_run_events = planned
            .changes
            .iter()
            .enumerate()
            .map(|(index, change)| {
                store::build_event(change, &input, last + 1 + index as u64, 0, &occurred_at)
            })
            .collect();
        report.outcome = RunOutcome::DryRun;
        return Ok(());
    }

    // From here on the run is not cancellable: the commit is one transaction.
    let mut run = RunRecord::begun(started_at);
    run.counts = counts;
    run.users = report.users;
    run.groups = report.groups;
    run.memberships = report.memberships;
    run.api_requests = stats.requests();
    run.retries = stats.retries();
    let (store2, tenant_id, lease2) = (store.clone(), tenant.id.clone(), lease.clone());
    let summary = blocking(move || {
        let mut conn = store2.connect()?;
        store::commit(
            &mut conn,
            store::NewEvents {
                tenant: &tenant_id,
                source: source_kind,
                lease: &lease2,
                before: &planned.previous,
                after: &planned.after,
                changes: &planned.changes,
                run,
                exclusions: planned.exclusions,
                direct: Some(&planned.direct),
            },
        )
    })
    .await?;
    phase("committed");
    report.sync_id = Some(summary.sync_id);
    report.first_seq = summary.first_seq;
    report.last_seq = Some(summary.last_seq);
    report.outcome = if summary.events == 0 {
        RunOutcome::NoChanges
    } else {
        RunOutcome::Committed
    };
    Ok(())
}

/// Fetches, and makes sure every stored object missing from the listing is really gone
/// upstream: a listing that changed under us (an object that exists but was skipped) is
/// fetched again, and a second torn listing fails the run rather than delete live objects.
async fn fetch_confirmed(
    source: &Source,
    before: &StoredIndex,
    cancel: &CancellationToken,
) -> Result<Fetched, SyncError> {
    const ATTEMPTS: u32 = 2;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut fetched = source.fetch(cancel).await?;
        let listed: HashSet<&str> = fetched.users.iter().map(|u| &*u.user.id).collect();
        let unlisted: Vec<Id> = before
            .users
            .keys()
            .filter(|id| !listed.contains(&***id))
            .cloned()
            .collect();
        let located = source.locate_users(&unlisted).await?;
        fetched.users.extend(located);
        let user_ids: HashSet<&str> = fetched.users.iter().map(|u| &*u.user.id).collect();
        let group_ids: HashSet<&str> = fetched.groups.iter().map(|g| &*g.id).collect();
        let missing_users: Vec<Id> = before
            .users
            .keys()
            .filter(|id| !user_ids.contains(&***id))
            .cloned()
            .collect();
        let missing_groups: Vec<Id> = before
            .groups
            .keys()
            .filter(|id| !group_ids.contains(&***id))
            .cloned()
            .collect();
        let mut unconfirmed = Vec::new();
        for (kind, missing) in [
            (ResourceKind::User, missing_users),
            (ResourceKind::Group, missing_groups),
        ] {
            if missing.is_empty() {
                continue;
            }
            let gone: HashSet<Id> = source
                .confirm_absent(kind, &missing)
                .await?
                .into_iter()
                .collect();
            unconfirmed.extend(missing.into_iter().filter(|id| !gone.contains(id)));
        }
        if unconfirmed.is_empty() {
            return Ok(fetched);
        }
        if attempt >= ATTEMPTS {
            return Err(SyncError::Source(SourceError::Protocol(format!(
                "the listing changed while it was read: {} stored object(s) missing from it still exist upstream (e.g. {}); nothing was committed, the next run will try again",
                unconfirmed.len(),
                unconfirmed[0]
            ))));
        }
        warn!(
            missing = unconfirmed.len(),
            "objects missing from the listing still exist upstream; listing again"
        );
    }
}

/// A debug trace of where a run's time and memory go.
fn phase(name: &str) {
    tracing::debug!(
        rss_mib = crate::process_stats::rss_mib(),
        cpu_ms = crate::process_stats::current().cpu_ms,
        "phase: {name}"
    );
}

async fn record_uncommitted(
    store: &Store,
    tenant: &TenantConfig,
    report: &mut SyncReport,
    started_at: i64,
) {
    let mut run = RunRecord::begun(started_at);
    run.finished_at = store::now_ms();
    run.outcome = report.outcome;
    run.users = report.users;
    run.groups = report.groups;
    run.memberships = report.memberships;
    run.api_requests = report.api_requests;
    run.retries = report.retries;
    run.error = report.error.clone();
    if report.outcome == RunOutcome::Refused {
        run.counts = report
            .counts
            .iter()
            .filter_map(|(k, v)| event_type_name(k).map(|name| (name, *v)))
            .collect();
    }
    let (store2, tenant_id) = (store.clone(), tenant.id.clone());
    match blocking(move || store::record_run(&store2.connect()?, &tenant_id, &run)).await {
        Ok(id) => report.sync_id = Some(id),
        Err(err) => warn!("cannot record the run: {err}"),
    }
}

fn event_type_name(name: &str) -> Option<&'static str> {
    crate::event::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .find(|t| *t == name)
}
