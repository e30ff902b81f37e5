//! One sync of one tenant, as plan and apply: take the tenant's lease, fetch the complete
//! directory (deletions confirmed), plan the change with no I/O (`plan`: policy, diff, guard),
//! and apply it — the new rows, every event and the run record in one transaction. Anything
//! that fails before the commit leaves the store as it was and is recorded as a failed run.
//!
//! A run is bounded: the lease wait, the fetch and the plan together by the tenant's
//! `max_run_seconds` (the commit, one transaction, is never cut), and a panic anywhere in it is
//! caught and recorded as the run's failure (`unwind`), so the lease is given back and the
//! caller (a daemon tenant task) goes on.
//!
//! Shared by `dirsync sync` (in-process) and the daemon. Must not: speak SQL (that is the
//! store handle's), or know about schedules and sockets.

mod confirm;
mod lease;
pub mod plan;
pub mod unwind;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::config::TenantConfig;
use crate::diff::counts_by_type;
use crate::event::Event;
use crate::model::{Snapshot, StoredIndex};
use crate::run::{Millis, RunOutcome, RunSummary};
use crate::source::{FetchStats, Fetched, Source, SourceError};
use crate::store::{self, Commit, DigestCounts, FetchDigest, Store, StoreError};

pub use lease::{lease_ttl, HeldLease, LEASE_TTL, LEASE_TTL_ENV};
use plan::GuardRefusal;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    pub dry_run: bool,
    pub allow_mass_delete: bool,
    /// A fetch whose digest is the one the stored directory was last planned from records a
    /// no-change run without parsing or planning it (`store::digest`). Scheduled runs do; a
    /// forced run always plans in full.
    pub reuse_unchanged: bool,
}

impl SyncOptions {
    /// A run of the schedule.
    pub fn scheduled() -> Self {
        Self {
            reuse_unchanged: true,
            ..Self::default()
        }
    }
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
    #[error("the run was abandoned after max_run_seconds = {seconds} (while {phase}); nothing was committed. Check that the IdP answers promptly, or raise max_run_seconds in the tenant's [source] if the directory needs longer")]
    TimedOut { seconds: u64, phase: &'static str },
    #[error("internal error: the run panicked: {0}; nothing was committed. This is a bug in dirsync or a library it uses: please report it with the log")]
    Panicked(String),
}

impl SyncError {
    fn guard(tenant: &str, refusal: GuardRefusal) -> Self {
        SyncError::Guard {
            tenant: tenant.to_owned(),
            users: refusal.deletions.users,
            stored_users: refusal.stored.users,
            groups: refusal.deletions.groups,
            stored_groups: refusal.stored.groups,
            max_percent: refusal.max_percent,
            min_deletes: refusal.min_deletes,
        }
    }
}

/// What a run returns: its summary, where its time went, and for a dry run the events it
/// would emit.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub summary: RunSummary,
    pub timings: RunTimings,
    pub dry_run_events: Vec<Event>,
    /// The fetch had the digest the stored directory was last planned from: the run recorded
    /// itself without parsing or planning (`SyncOptions::reuse_unchanged`).
    pub unchanged: bool,
}

/// How long a run's phases took, in milliseconds; `None` for a phase it did not reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunTimings {
    /// Listing the directory from the source, deletions confirmed.
    pub fetch_ms: Option<u64>,
    /// Policy, reading the stored objects the change touches, and the diff.
    pub plan_ms: Option<u64>,
    /// The one transaction: rows, events and the run record.
    pub commit_ms: Option<u64>,
}

fn millis_since(start: Instant) -> Option<u64> {
    Some(start.elapsed().as_millis() as u64)
}

/// Runs one sync of `tenant`. Never panics on bad input; every failure is in the result.
pub async fn run_sync(
    store: &Store,
    tenant: &TenantConfig,
    options: SyncOptions,
    cancel: &CancellationToken,
) -> RunResult {
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
) -> RunResult {
    let started = Instant::now();
    let stats = Arc::new(FetchStats::default());
    let mut result = RunResult {
        summary: RunSummary::begun(&tenant.id, Millis::now()),
        timings: RunTimings::default(),
        dry_run_events: Vec::new(),
        unchanged: false,
    };

    let max_run = tenant.source.max_run();
    let deadline = tokio::time::Instant::now() + max_run;
    let acquired = tokio::time::timeout_at(deadline, HeldLease::acquire(store, &tenant.id, cancel))
        .await
        .unwrap_or_else(|_| Err(timed_out(max_run, "waiting for the tenant's lease")));
    let lease = match acquired {
        Ok(lease) => lease,
        Err(err) => {
            // Failed before it began (the lease is held elsewhere past max_run_seconds, the
            // store cannot be reached, the run was cancelled): still a run of the history.
            result.summary.error = Some(err.to_string());
            result.summary.finish(Millis::now());
            record_uncommitted(store, &mut result.summary).await;
            return result;
        }
    };

    let outcome = unwind::catch_unwind_future(plan_and_apply(
        store,
        tenant,
        options,
        cancel,
        (&stats, deadline),
        &lease,
        &mut result,
    ))
    .await
    .unwrap_or_else(|message| Err(SyncError::Panicked(message)));

    let summary = &mut result.summary;
    summary.api_requests = stats.requests();
    summary.retries = stats.retries();
    if let Err(err) = outcome {
        summary.outcome = match err {
            SyncError::Guard { .. } => RunOutcome::Refused,
            _ => RunOutcome::Failed,
        };
        let mut message = err.to_string();
        if let SyncError::Source(source) = &err {
            if let Some(hint) = source.hint() {
                message.push_str(&format!(" (hint: {hint})"));
            }
        }
        summary.error = Some(message);
        if summary.outcome == RunOutcome::Failed {
            // Nothing was committed; `planned_events` keeps what the run would have.
            summary.events = 0;
            summary.counts.clear();
        }
    }
    if !summary.outcome.is_success() {
        summary.finish(Millis::now());
        record_uncommitted(store, summary).await;
    }
    lease.release().await;
    // The commit recorded its own finish time; the summary counts until the lease is back.
    summary.duration_ms = started.elapsed().as_millis() as u64;

    match summary.outcome {
        RunOutcome::Failed => warn!(
            outcome = summary.outcome.as_str(),
            duration_ms = summary.duration_ms,
            api_requests = summary.api_requests,
            retries = summary.retries,
            error = summary.error.as_deref().unwrap_or(""),
            "sync failed"
        ),
        _ => info!(
            outcome = summary.outcome.as_str(),
            events = summary.events,
            users = summary.users,
            groups = summary.groups,
            memberships = summary.memberships,
            api_requests = summary.api_requests,
            retries = summary.retries,
            duration_ms = summary.duration_ms,
            unchanged = result.unchanged,
            fetch_ms = result.timings.fetch_ms,
            plan_ms = result.timings.plan_ms,
            commit_ms = result.timings.commit_ms,
            "sync finished"
        ),
    }
    result
}

fn timed_out(max_run: Duration, phase: &'static str) -> SyncError {
    SyncError::TimedOut {
        seconds: max_run.as_secs(),
        phase,
    }
}

/// What a real run commits, once planned.
#[allow(clippy::large_enum_variant)] // one per run, moved once
enum Planned {
    Change {
        plan: plan::Plan,
        source_kind: crate::event::SourceKind,
        /// Stored with the commit when the next run's equal fetch would plan nothing.
        digest: Option<FetchDigest>,
    },
    /// The fetch has the digest the stored directory was last planned from.
    Unchanged { digest: String },
}

async fn plan_and_apply(
    store: &Store,
    tenant: &TenantConfig,
    options: SyncOptions,
    cancel: &CancellationToken,
    (stats, deadline): (&Arc<FetchStats>, tokio::time::Instant),
    lease: &HeldLease,
    result: &mut RunResult,
) -> Result<(), SyncError> {
    let planning = prepare(store, tenant, options, cancel, stats, lease, result);
    let planned = tokio::time::timeout_at(deadline, planning)
        .await
        .unwrap_or_else(|_| Err(timed_out(tenant.source.max_run(), "fetching and planning")))?;
    let Some(planned) = planned else {
        return Ok(());
    };
    let summary = &mut result.summary;

    // From here on the run is not cancellable: the commit is one transaction.
    let mut run = summary.clone();
    run.api_requests = stats.requests();
    run.retries = stats.retries();
    let committing = Instant::now();
    let committed = match planned {
        Planned::Change {
            plan,
            source_kind,
            digest,
        } => {
            store
                .commit(Commit {
                    tenant: tenant.id.clone(),
                    source: source_kind,
                    lease: lease.lease().clone(),
                    before: plan.previous,
                    after: plan.after,
                    changes: plan.changes,
                    run,
                    exclusions: plan.exclusions,
                    direct: Some(plan.direct),
                    digest,
                })
                .await?
        }
        Planned::Unchanged { digest } => {
            match store
                .commit_unchanged(lease.lease().clone(), run, digest)
                .await?
            {
                Some(committed) => {
                    result.unchanged = true;
                    committed
                }
                // Under our lease nothing else writes the tenant; should the digest have
                // moved all the same, the run plans in full.
                None => {
                    warn!("the stored directory changed during the run: planning it in full");
                    let full = SyncOptions {
                        reuse_unchanged: false,
                        ..options
                    };
                    return Box::pin(plan_and_apply(
                        store,
                        tenant,
                        full,
                        cancel,
                        (stats, deadline),
                        lease,
                        result,
                    ))
                    .await;
                }
            }
        }
    };
    result.timings.commit_ms = millis_since(committing);
    phase("committed");
    summary.sync_id = Some(committed.sync_id);
    summary.first_seq = committed.first_seq;
    summary.last_seq = Some(committed.last_seq);
    summary.outcome = if committed.events == 0 {
        RunOutcome::NoChanges
    } else {
        RunOutcome::Committed
    };
    summary.finish(Millis::now());
    Ok(())
}

/// Everything up to the commit: the source, the fetch, policy, the diff, the guard; a dry run
/// ends here. `None`: nothing to commit (a dry run, done).
async fn prepare(
    store: &Store,
    tenant: &TenantConfig,
    options: SyncOptions,
    cancel: &CancellationToken,
    stats: &Arc<FetchStats>,
    lease: &HeldLease,
    result: &mut RunResult,
) -> Result<Option<Planned>, SyncError> {
    let source = match Source::pushed(store.clone(), tenant) {
        Some(pushed) => pushed,
        None => Source::new(tenant, stats.clone()).await?,
    };
    let known = if options.reuse_unchanged && !options.dry_run {
        store.current_digest(&tenant.id).await?
    } else {
        None
    };
    let fetching = Instant::now();
    let pages = source.fetch_pages(cancel).await?;
    let digest = pages.digest().map(|pages| run_digest(tenant, &pages));
    if let (Some(known), Some(digest)) = (known, &digest) {
        if known.digest == *digest {
            result.timings.fetch_ms = millis_since(fetching);
            phase("fetched: unchanged since the last commit");
            let summary = &mut result.summary;
            let counts = known.counts;
            summary.users = Some(counts.users);
            summary.groups = Some(counts.groups);
            summary.memberships = Some(counts.memberships);
            summary.stored_users = Some(counts.stored_users);
            summary.stored_groups = Some(counts.stored_groups);
            summary.stored_memberships = Some(counts.stored_memberships);
            summary.planned_events = Some(0);
            return Ok(Some(Planned::Unchanged {
                digest: known.digest,
            }));
        }
    }
    let first = pages.parse()?;
    let index = store.index(&tenant.id).await?;
    phase("stored index loaded");
    let confirm::Confirmed { fetched, as_listed } =
        confirm::fetch_confirmed(&source, &index, first, cancel).await?;
    result.timings.fetch_ms = millis_since(fetching);
    phase("fetched");
    let planning = Instant::now();
    let summary = &mut result.summary;
    summary.users = Some(fetched.users.len() as u64);
    summary.groups = Some(fetched.groups.len() as u64);
    summary.memberships = Some(fetched.members.values().map(Vec::len).sum::<usize>() as u64);
    let source_kind = fetched.source;
    unwind::injected_panic(&tenant.id);
    if cancel.is_cancelled() {
        return Err(SyncError::Source(SourceError::Cancelled));
    }

    // Policy and the diff are CPU work over the whole directory: off the async workers,
    // unless the directory is so small that the work (tens of microseconds) costs less than
    // the hand-over to the blocking pool and back, which a node of thousands of small tenants
    // pays on every run.
    let small = is_small(&fetched, &index);
    let tenant_config = tenant.clone();
    let drafting = move || {
        let draft = plan::draft(&index, fetched, &tenant_config);
        (index, draft)
    };
    let (index, draft) = if small {
        drafting()
    } else {
        tokio::task::spawn_blocking(drafting)
            .await
            .map_err(|err| SyncError::Internal(format!("planning failed: {err}")))?
    };
    phase("policy applied");
    // A run that changes no stored object (most runs) needs none of them.
    let previous = if draft.needed().is_empty() {
        Snapshot::default()
    } else {
        store.objects(&tenant.id, draft.needed().clone()).await?
    };
    let plan = if small {
        draft.plan(&index, previous)
    } else {
        tokio::task::spawn_blocking(move || draft.plan(&index, previous))
            .await
            .map_err(|err| SyncError::Internal(format!("planning failed: {err}")))?
    };
    result.timings.plan_ms = millis_since(planning);
    phase("diffed");
    summary.stored_users = Some(plan.after.users.len() as u64);
    summary.stored_groups = Some(plan.after.groups.len() as u64);
    summary.stored_memberships = Some(plan.after.membership_count() as u64);

    let counts = counts_by_type(&plan.changes);
    summary.counts = counts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    summary.events = plan.changes.len() as u64;
    summary.planned_events = Some(summary.events);

    if !options.allow_mass_delete {
        match plan.guard(&tenant.guard) {
            Ok(()) => {}
            // A dry run commits nothing, so there is nothing to refuse: it shows the events
            // and says that a real run would be refused.
            Err(refusal) if options.dry_run => {
                let err = SyncError::guard(&tenant.id, refusal);
                summary.warning = Some(format!("a real run would be refused: {err}"));
            }
            Err(refusal) => return Err(SyncError::guard(&tenant.id, refusal)),
        }
    }
    if cancel.is_cancelled() {
        return Err(SyncError::Source(SourceError::Cancelled));
    }

    if options.dry_run {
        let last = store.last_seq(&tenant.id).await?;
        let occurred_at = crate::event::format_timestamp(chrono::Utc::now());
        let input = store::NewEvents {
            tenant: &tenant.id,
            source: source_kind,
            lease: lease.lease(),
            before: &plan.previous,
            after: &plan.after,
            changes: &plan.changes,
            run: summary.clone(),
            exclusions: Vec::new(),
            direct: None,
            digest: None,
        };
        let events = plan
            .changes
            .iter()
            .enumerate()
            .map(|(index, change)| {
                store::build_event(change, &input, last + 1 + index as u64, 0, &occurred_at)
            })
            .collect::<Result<_, _>>()?;
        summary.outcome = RunOutcome::DryRun;
        result.dry_run_events = events;
        return Ok(None);
    }
    // The stored directory will be policy's view of this fetch and nothing else, so the next
    // run's equal fetch plans nothing, provided it needs no confirming either: every stored
    // object was listed.
    let digest = digest.filter(|_| as_listed).map(|digest| FetchDigest {
        digest,
        counts: DigestCounts {
            users: summary.users.unwrap_or(0),
            groups: summary.groups.unwrap_or(0),
            memberships: summary.memberships.unwrap_or(0),
            stored_users: summary.stored_users.unwrap_or(0),
            stored_groups: summary.stored_groups.unwrap_or(0),
            stored_memberships: summary.stored_memberships.unwrap_or(0),
        },
    });
    Ok(Some(Planned::Change {
        plan,
        source_kind,
        digest,
    }))
}

/// The digest of a run's input: the fetch's pages, the tenant's config, and this binary
/// (a new build may plan the same directory differently).
fn run_digest(tenant: &TenantConfig, pages: &[u8; 32]) -> String {
    use sha2::{Digest as _, Sha256};
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let binary = BINARY.get_or_init(|| {
        let built = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|meta| format!("{} {:?}", meta.len(), meta.modified().ok()))
            .unwrap_or_default();
        format!("dirsync {} {built}", env!("CARGO_PKG_VERSION"))
    });
    let config = format!(
        "{:?}",
        (
            &tenant.id,
            &tenant.source,
            &tenant.guard,
            &tenant.filters,
            &tenant.roles,
            &tenant.attributes
        )
    );
    let mut digest = Sha256::new();
    for part in [binary.as_bytes(), config.as_bytes()] {
        digest.update((part.len() as u64).to_le_bytes());
        digest.update(part);
    }
    digest.update(pages);
    digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether policy and the diff over this fetch may run on an async worker: a directory of a
/// few hundred objects, stored and fetched, plans in well under a millisecond.
fn is_small(fetched: &Fetched, stored: &StoredIndex) -> bool {
    const SMALL: usize = 2_000;
    let fetched_objects = fetched.users.len()
        + fetched.groups.len()
        + fetched.members.values().map(Vec::len).sum::<usize>();
    let stored_objects = stored.users.len()
        + stored.groups.len()
        + stored.members.values().map(BTreeSet::len).sum::<usize>();
    fetched_objects.max(stored_objects) <= SMALL
}

/// A debug trace of where a run's time and memory go.
fn phase(name: &str) {
    tracing::debug!(
        rss_mib = crate::process_stats::rss_mib(),
        cpu_ms = crate::process_stats::current().cpu_ms,
        "phase: {name}"
    );
}

/// Records a run that committed nothing. A refused run keeps the counts it would have
/// committed; a failed one has none (`run_sync_inner` cleared them).
/// When the store itself cannot take the record, the log is the only trace of the run.
pub async fn record_uncommitted(store: &Store, summary: &mut RunSummary) {
    match store.record_run(summary.clone()).await {
        Ok(id) => summary.sync_id = Some(id),
        Err(err) => warn!(
            tenant = %summary.tenant,
            outcome = summary.outcome.as_str(),
            run_error = summary.error.as_deref().unwrap_or(""),
            "cannot record the run in the run history: {err}"
        ),
    }
}
