//! The typed operations of a sync (and, later, of a push write) on the store handle: each runs
//! its SQL through [`Store::run`], so callers never see a connection. A second backend adds
//! its arm behind these methods, not in the callers.

use std::time::Duration;

use super::{
    acquire_lease, commit, commit_unchanged, current_digest, last_seq, load_index, load_objects,
    prune_runs, record_run, release_lease, renew_lease, CommitSummary, FetchDigest, Lease,
    NewEvents, NewExclusion, Store, StoreError,
};
use crate::diff::Needed;
use crate::event::{Change, SourceKind};
use crate::model::{DirectGraph, Snapshot, StoredIndex};
use crate::run::RunSummary;

/// Everything one commit writes, owned, so it can move to the blocking pool.
pub struct Commit {
    pub tenant: String,
    pub source: SourceKind,
    pub lease: Lease,
    /// The stored objects the changes render from their stored state (`diff::needed_previous`).
    pub before: Snapshot,
    pub after: Snapshot,
    pub changes: Vec<Change>,
    pub run: RunSummary,
    pub exclusions: Vec<NewExclusion>,
    /// The direct group graph to store; `None` leaves the stored one as it is.
    pub direct: Option<DirectGraph>,
    /// The digest of the fetch this was planned from (see `store::digest`); `None` forgets the
    /// tenant's digest.
    pub digest: Option<FetchDigest>,
}

impl Store {
    /// Takes the tenant's lease for `holder`, or says who holds it.
    pub async fn try_lease(
        &self,
        tenant: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        let (tenant, holder) = (tenant.to_owned(), holder.to_owned());
        self.run(move |conn| acquire_lease(conn, &tenant, &holder, ttl))
            .await
    }

    /// Takes the lease from `from`, a holder known to be dead, if it still holds it.
    pub async fn take_over_lease(
        &self,
        tenant: &str,
        from: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let (tenant, from, holder) = (tenant.to_owned(), from.to_owned(), holder.to_owned());
        self.run(move |conn| super::take_over_lease(conn, &tenant, &from, &holder, ttl))
            .await
    }

    pub async fn renew(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |conn| renew_lease(conn, &lease)).await
    }

    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.run(move |conn| release_lease(conn, &lease)).await
    }

    /// Digests of the tenant's stored rows and its memberships.
    pub async fn index(&self, tenant: &str) -> Result<StoredIndex, StoreError> {
        let tenant = tenant.to_owned();
        self.run(move |conn| load_index(conn, &tenant)).await
    }

    /// The stored users and groups `needed` names, in full.
    pub async fn objects(&self, tenant: &str, needed: Needed) -> Result<Snapshot, StoreError> {
        let tenant = tenant.to_owned();
        self.run(move |conn| load_objects(conn, &tenant, &needed))
            .await
    }

    pub async fn last_seq(&self, tenant: &str) -> Result<u64, StoreError> {
        let tenant = tenant.to_owned();
        self.run(move |conn| last_seq(conn, &tenant)).await
    }

    /// Commits the change, its events and its run in one transaction, under the lease.
    pub async fn commit(&self, change: Commit) -> Result<CommitSummary, StoreError> {
        let keep = self.run_history();
        self.run(move |conn| {
            let tenant = change.tenant.clone();
            let input = NewEvents {
                tenant: &change.tenant,
                source: change.source,
                lease: &change.lease,
                before: &change.before,
                after: &change.after,
                changes: &change.changes,
                run: change.run,
                exclusions: change.exclusions,
                direct: change.direct.as_ref(),
                digest: change.digest.as_ref(),
            };
            let summary = commit(conn, input)?;
            // After the commit, not in it: a commit must not fail for the history's sake.
            if let Err(err) = prune_runs(conn, &tenant, keep) {
                tracing::warn!(tenant, "cannot prune the run history: {err}");
            }
            Ok(summary)
        })
        .await
    }

    /// The digest of the fetch the tenant's stored directory was last planned from, while it
    /// still describes it.
    pub async fn current_digest(&self, tenant: &str) -> Result<Option<FetchDigest>, StoreError> {
        let tenant = tenant.to_owned();
        self.run(move |conn| current_digest(conn, &tenant)).await
    }

    /// Records `run` as a no-change run of a fetch of `digest`; `None` (nothing written) when
    /// that digest no longer describes the stored directory.
    pub async fn commit_unchanged(
        &self,
        lease: Lease,
        run: RunSummary,
        digest: String,
    ) -> Result<Option<CommitSummary>, StoreError> {
        let keep = self.run_history();
        self.run(move |conn| {
            let summary = commit_unchanged(conn, &lease, run, &digest)?;
            if summary.is_some() {
                if let Err(err) = prune_runs(conn, &lease.tenant, keep) {
                    tracing::warn!(tenant = lease.tenant, "cannot prune the run history: {err}");
                }
            }
            Ok(summary)
        })
        .await
    }

    /// Records a run that committed nothing; returns its id. The tenant's history is kept to
    /// the configured length (`run_history`).
    pub async fn record_run(&self, run: RunSummary) -> Result<i64, StoreError> {
        let keep = self.run_history();
        self.run(move |conn| {
            let id = record_run(conn, &run)?;
            prune_runs(conn, &run.tenant, keep)?;
            Ok(id)
        })
        .await
    }
}
