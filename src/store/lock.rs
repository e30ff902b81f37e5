//! The per-tenant sync lease: one sync per tenant at a time, across processes. A lease has an
//! expiry so a crashed holder does not block the tenant forever; a live holder renews it, and
//! the commit checks it in the same transaction, so a holder whose lease lapsed cannot commit
//! a diff computed from a state someone else has since changed.
//!
//! Every new holder bumps the lease's fencing token, and a commit checks holder and token in
//! its own transaction, locking the lease row on PostgreSQL: a node that paused past its lease
//! (GC, partition, SIGSTOP) and resumes cannot commit, and a takeover waits for a commit that
//! already passed its check.
//!
//! A holder id names its process, user and host (`pid 4242 uid 998 on web-1 (01J…)`), so a
//! waiter of the same user on the same host can tell that the holder has died and take its lease over at once
//! ([`take_over_lease`]) instead of waiting out the expiry. Deciding whether a process is gone
//! is the caller's (`sync::lease`); this module only reads and writes the lease row.

use std::time::Duration;

use super::sql::{params, Backend, Connection, OptionalExtension, TransactionBehavior};

use super::{now_ms, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub tenant: String,
    pub holder: String,
    pub ttl: Duration,
    /// The fencing token: one more than the previous holder's.
    pub token: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "tenant {tenant} is being synced by {holder} (lease until {until}); wait for it to finish"
    )]
    Held {
        tenant: String,
        holder: String,
        until: String,
    },
    #[error("the sync lease of tenant {tenant} was lost (it expired and another process took it); nothing was committed")]
    Lost { tenant: String },
}

pub(super) fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A holder id unique to this process and call: `pid N uid U on HOST (ULID)`.
pub fn new_holder() -> String {
    format!(
        "pid {} uid {} on {} ({})",
        std::process::id(),
        process_uid().map_or_else(|| "?".to_owned(), |uid| uid.to_string()),
        host_name(),
        ulid::Ulid::new()
    )
}

/// This process's user id, where `/proc` shows it.
pub fn process_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|meta| meta.uid())
}

/// This machine's host name, or `unknown-host` when it cannot be read (then no holder is ever
/// judged to be on this host).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && !name.contains(['(', ')', ' ']))
        .unwrap_or_else(|| UNKNOWN_HOST.to_owned())
}

const UNKNOWN_HOST: &str = "unknown-host";

/// The process a holder id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderProcess<'a> {
    pub pid: u32,
    pub uid: u32,
    pub host: &'a str,
}

/// The process, user and host a holder id names; `None` for ids in another (older) form, or
/// with an unknown user or host.
pub fn holder_process(holder: &str) -> Option<HolderProcess<'_>> {
    let rest = holder.strip_prefix("pid ")?;
    let (pid, rest) = rest.split_once(" uid ")?;
    let (uid, rest) = rest.split_once(" on ")?;
    let (host, _ulid) = rest.split_once(" (")?;
    let process = HolderProcess {
        pid: pid.parse().ok()?,
        uid: uid.parse().ok()?,
        host,
    };
    (host != UNKNOWN_HOST).then_some(process)
}

/// Takes the tenant's lease, or says who holds it.
pub fn acquire_lease(
    conn: &mut Connection,
    tenant: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Lease, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.lock_tenant(tenant)?;
    let now = now_ms();
    let current: Option<(String, i64)> = tx
        .query_row(
            "SELECT holder, expires_at FROM leases WHERE tenant = ?1",
            [tenant],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((other, expires_at)) = current {
        if other != holder && expires_at > now {
            return Err(LeaseError::Held {
                tenant: tenant.to_owned(),
                holder: other,
                until: format_ms(expires_at),
            }
            .into());
        }
    }
    let token: i64 = tx.query_row(
        "INSERT INTO leases (tenant, holder, expires_at, token) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (tenant) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
             token = leases.token + 1
         RETURNING token",
        params![tenant, holder, now + ttl.as_millis() as i64],
        |row| row.get(0),
    )?;
    tx.commit()?;
    Ok(Lease {
        tenant: tenant.to_owned(),
        holder: holder.to_owned(),
        ttl,
        token,
    })
}

/// Gives the tenant's lease to `holder` if `from` still holds it (expired or not): for a
/// holder known to be dead. `None` when someone else holds it by now.
pub fn take_over_lease(
    conn: &mut Connection,
    tenant: &str,
    from: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Lease>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.lock_tenant(tenant)?;
    let token: Option<i64> = tx
        .query_row(
            "UPDATE leases SET holder = ?3, expires_at = ?4, token = token + 1
             WHERE tenant = ?1 AND holder = ?2 RETURNING token",
            params![tenant, from, holder, now_ms() + ttl.as_millis() as i64],
            |row| row.get(0),
        )
        .optional()?;
    tx.commit()?;
    Ok(token.map(|token| Lease {
        tenant: tenant.to_owned(),
        holder: holder.to_owned(),
        ttl,
        token,
    }))
}

/// Extends the lease; fails if it was lost.
pub fn renew_lease(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let changed = conn.execute(
        "UPDATE leases SET expires_at = ?3 WHERE tenant = ?1 AND holder = ?2 AND token = ?4",
        params![
            lease.tenant,
            lease.holder,
            now_ms() + lease.ttl.as_millis() as i64,
            lease.token
        ],
    )?;
    if changed == 0 {
        return Err(LeaseError::Lost {
            tenant: lease.tenant.clone(),
        }
        .into());
    }
    Ok(())
}

/// Checks, inside a commit's transaction, that the lease is still ours and unexpired.
pub(super) fn check_lease(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let held: Option<i64> = conn
        .query_row(
            match conn.backend() {
                Backend::Sqlite => {
                    "SELECT expires_at FROM leases WHERE tenant = ?1 AND holder = ?2 AND token = ?3"
                }
                Backend::Postgres => {
                    "SELECT expires_at FROM leases WHERE tenant = ?1 AND holder = ?2 AND token = ?3
                     FOR UPDATE"
                }
            },
            params![lease.tenant, lease.holder, lease.token],
            |row| row.get(0),
        )
        .optional()?;
    match held {
        Some(expires_at) if expires_at > now_ms() => Ok(()),
        _ => Err(LeaseError::Lost {
            tenant: lease.tenant.clone(),
        }
        .into()),
    }
}

pub fn release_lease(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM leases WHERE tenant = ?1 AND holder = ?2",
        params![lease.tenant, lease.holder],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_holder_id_names_its_process_and_host() {
        let holder = new_holder();
        let process = holder_process(&holder).unwrap();
        assert_eq!(process.pid, std::process::id());
        assert_eq!(Some(process.uid), process_uid());
        assert_eq!(process.host, host_name());
        assert_eq!(
            holder_process("pid 12 uid 998 on web-1 (01J0000000000000000000000)"),
            Some(HolderProcess {
                pid: 12,
                uid: 998,
                host: "web-1"
            })
        );
        // The old form, and a user or host that could not be read, name nothing to check.
        assert_eq!(holder_process("pid 12 (01J0000000000000000000000)"), None);
        assert_eq!(
            holder_process("pid 12 uid ? on web-1 (01J0000000000000000000000)"),
            None
        );
        assert_eq!(
            holder_process("pid 12 uid 998 on unknown-host (01J0000000000000000000000)"),
            None
        );
    }
}
