//! What a tenant's last commit came from: the digest of the fetch it was planned from, with
//! the run's counts, valid while the tenant's `last_seq` is the one that commit left. A later
//! run whose fetch has the same digest, under the same config and binary (both in the digest),
//! would plan no change: it records a no-change run (`commit_unchanged`) and parses nothing.
//!
//! Every write to a tenant's stored objects either moves `last_seq` (a sync's or a push
//! write's events) or rewrites this row in the same transaction (a sync commit), so a row
//! whose `last_seq` is not the tenant's describes a store that has moved on. Not copied by
//! `migrate-store`: the first run on the new store takes the full path and writes it again.

use super::lock::check_lease;
use super::runs::{insert_run, next_run_id};
use super::sql::{params, Connection, OptionalExtension, TransactionBehavior};
use super::{last_seq, CommitSummary, Lease, StoreError};
use crate::run::{Millis, RunOutcome, RunSummary};

/// The digest of the fetch a commit was planned from, and the counts its run reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FetchDigest {
    /// Hex SHA-256.
    pub digest: String,
    pub counts: DigestCounts,
}

/// A run's counts that a no-change run of the same fetch reports again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DigestCounts {
    pub users: u64,
    pub groups: u64,
    pub memberships: u64,
    pub stored_users: u64,
    pub stored_groups: u64,
    pub stored_memberships: u64,
}

/// The tenant's digest, if it still describes the stored directory.
pub fn current_digest(conn: &Connection, tenant: &str) -> Result<Option<FetchDigest>, StoreError> {
    let row: Option<(String, String, i64)> = conn
        .prepare_cached("SELECT digest, counts, last_seq FROM fetch_digests WHERE tenant = ?1")?
        .query_row([tenant], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let Some((digest, counts, stored_seq)) = row else {
        return Ok(None);
    };
    if stored_seq as u64 != last_seq(conn, tenant)? {
        return Ok(None);
    }
    // A row this binary cannot read is no digest: the run takes the full path and rewrites it.
    Ok(serde_json::from_str(&counts)
        .ok()
        .map(|counts| FetchDigest { digest, counts }))
}

/// Inside a commit's transaction: the digest of what it stored, or none.
pub(super) fn write_digest(
    conn: &Connection,
    tenant: &str,
    digest: Option<&FetchDigest>,
    last_seq: u64,
) -> Result<(), StoreError> {
    match digest {
        Some(digest) => {
            let counts = serde_json::to_string(&digest.counts).unwrap_or_else(|_| "{}".into());
            conn.prepare_cached(
                "INSERT INTO fetch_digests (tenant, digest, last_seq, counts) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant) DO UPDATE SET digest = excluded.digest,
                     last_seq = excluded.last_seq, counts = excluded.counts",
            )?
            .execute(params![tenant, digest.digest, last_seq as i64, counts])?;
        }
        None => {
            conn.prepare_cached("DELETE FROM fetch_digests WHERE tenant = ?1")?
                .execute([tenant])?;
        }
    }
    Ok(())
}

/// Records `run` as a no-change run of a fetch whose digest is `digest`, under the lease.
/// `None` when the digest no longer describes the stored directory (nothing is written: the
/// caller takes the full path).
pub fn commit_unchanged(
    conn: &mut Connection,
    lease: &Lease,
    mut run: RunSummary,
    digest: &str,
) -> Result<Option<CommitSummary>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.lock_tenant(&lease.tenant)?;
    check_lease(&tx, lease)?;
    match current_digest(&tx, &lease.tenant)? {
        Some(current) if current.digest == digest => {}
        _ => return Ok(None),
    }
    let seq = last_seq(&tx, &lease.tenant)?;
    let sync_id = next_run_id(&tx)?;
    run.outcome = RunOutcome::NoChanges;
    run.first_seq = None;
    run.last_seq = None;
    run.events = 0;
    run.counts.clear();
    run.finish(Millis::now());
    insert_run(&tx, &run, Some(sync_id))?;
    tx.commit()?;
    Ok(Some(CommitSummary {
        sync_id,
        first_seq: None,
        last_seq: seq,
        events: 0,
    }))
}
