//! Coordination of several dirsync processes sharing one store (PostgreSQL nodes, or several
//! processes on one SQLite file): which node ran a tenant's scheduled slot
//! (`schedule_claims`), the nodes alive (`nodes`), one deliverer per (tenant, sink)
//! (`delivery_leases`) and, on PostgreSQL, the `NOTIFY` a commit sends so other nodes' deliverers
//! wake at once. Also whether a lease holder named on this host has died (from `/proc`), so
//! sync and delivery leases of a killed process are taken over rather than waited out.
//!
//! Every claim is one conditional statement (an upsert guarded by `WHERE`), so two nodes racing
//! for the same slot or lease cannot both win on either backend. Must not: decide when to run or
//! deliver (the daemon and the sink workers do).

use std::time::Duration;

use serde::Serialize;

use super::lock::format_ms;
use super::sql::{params, Backend, Connection, OptionalExtension, TransactionBehavior};
use super::{now_ms, StoreError};

/// The channel commits notify on PostgreSQL; the payload is the tenant id.
pub const EVENTS_CHANNEL: &str = "dirsync_events";

/// Claims the tenant's scheduled run for `slot_ms` (the fire time it runs for) for `node`.
/// True for exactly one caller per slot: the first; false when this slot (or a later one) was
/// claimed already.
pub fn claim_slot(
    conn: &Connection,
    tenant: &str,
    slot_ms: i64,
    node: &str,
) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "INSERT INTO schedule_claims (tenant, slot, node, claimed_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant) DO UPDATE SET slot = excluded.slot, node = excluded.node,
             claimed_at = excluded.claimed_at
         WHERE schedule_claims.slot < excluded.slot",
        params![tenant, slot_ms, node, now_ms()],
    )?;
    Ok(changed == 1)
}

/// The last scheduled slot claimed for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub node: String,
    /// The fire time the run was for (RFC 3339).
    pub slot: String,
    pub claimed_at: String,
}

/// A node (a `dirsync run` process) as registered in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub node: String,
    pub host: String,
    pub pid: i64,
    pub started_at: String,
    pub seen_at: String,
}

/// Nodes not seen for this long are removed when a node registers: killed without a chance to
/// deregister, they would otherwise stay in `status` for ever.
const FORGET_NODES_AFTER_MS: i64 = 24 * 3600 * 1000;

/// Registers (or re-registers) `node` as alive now.
pub fn register_node(
    conn: &Connection,
    node: &str,
    host: &str,
    pid: u32,
) -> Result<(), StoreError> {
    let now = now_ms();
    conn.execute(
        "DELETE FROM nodes WHERE seen_at < ?1",
        params![now - FORGET_NODES_AFTER_MS],
    )?;
    conn.execute(
        "INSERT INTO nodes (node, host, pid, started_at, seen_at) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at",
        params![node, host, i64::from(pid), now],
    )?;
    Ok(())
}

/// Marks `node` as seen now; re-registers it if it was removed meanwhile.
pub fn node_seen(conn: &Connection, node: &str, host: &str, pid: u32) -> Result<(), StoreError> {
    let changed = conn.execute(
        "UPDATE nodes SET seen_at = ?2 WHERE node = ?1",
        params![node, now_ms()],
    )?;
    if changed == 0 {
        register_node(conn, node, host, pid)?;
    }
    Ok(())
}

/// Removes `node` (a graceful shutdown).
pub fn remove_node(conn: &Connection, node: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM nodes WHERE node = ?1", params![node])?;
    Ok(())
}

/// Every registered node, most recently seen first.
pub fn list_nodes(conn: &Connection) -> Result<Vec<Node>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT node, host, pid, started_at, seen_at FROM nodes ORDER BY seen_at DESC, node",
    )?;
    let rows = statement.query_map(params![], |row| {
        Ok(Node {
            node: row.get(0)?,
            host: row.get(1)?,
            pid: row.get(2)?,
            started_at: format_ms(row.get(3)?),
            seen_at: format_ms(row.get(4)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Who holds a tenant now and who ran its schedule last, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantCluster {
    /// The holder of the tenant's unexpired sync lease (`pid N uid U on HOST (ULID)`).
    pub lease_holder: Option<String>,
    /// The registered node whose process that holder is, when it is one.
    pub lease_node: Option<String>,
    pub lease_until: Option<String>,
    /// The last scheduled slot some node claimed.
    pub last_claim: Option<Claim>,
}

pub fn tenant_cluster(conn: &Connection, tenant: &str) -> Result<TenantCluster, StoreError> {
    let lease: Option<(String, i64)> = conn
        .query_row(
            "SELECT holder, expires_at FROM leases WHERE tenant = ?1 AND expires_at > ?2",
            params![tenant, now_ms()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let last_claim = conn
        .query_row(
            "SELECT node, slot, claimed_at FROM schedule_claims WHERE tenant = ?1",
            [tenant],
            |row| {
                Ok(Claim {
                    node: row.get(0)?,
                    slot: format_ms(row.get(1)?),
                    claimed_at: format_ms(row.get(2)?),
                })
            },
        )
        .optional()?;
    let mut cluster = TenantCluster {
        last_claim,
        ..TenantCluster::default()
    };
    if let Some((holder, until)) = lease {
        if let Some(process) = super::holder_process(&holder) {
            cluster.lease_node = conn
                .query_row(
                    "SELECT node FROM nodes WHERE host = ?1 AND pid = ?2",
                    params![process.host, i64::from(process.pid)],
                    |row| row.get(0),
                )
                .optional()?;
        }
        cluster.lease_holder = Some(holder);
        cluster.lease_until = Some(format_ms(until));
    }
    Ok(cluster)
}

/// The lease of one deliverer on one (tenant, sink).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLease {
    pub tenant: String,
    pub sink: String,
    pub holder: String,
    pub ttl: Duration,
    /// The fencing token: one more than the previous holder's.
    pub token: i64,
}

/// Takes the (tenant, sink) delivery lease for `holder` when it is free, expired or already
/// `holder`'s; `Err(holder)` names who holds it otherwise.
pub fn acquire_delivery_lease(
    conn: &Connection,
    tenant: &str,
    sink: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Result<DeliveryLease, String>, StoreError> {
    let now = now_ms();
    let token: Option<i64> = conn
        .query_row(
            "INSERT INTO delivery_leases (tenant, sink, holder, expires_at, token)
             VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT (tenant, sink) DO UPDATE SET holder = excluded.holder,
                 expires_at = excluded.expires_at, token = delivery_leases.token + 1
             WHERE delivery_leases.expires_at <= ?5 OR delivery_leases.holder = excluded.holder
             RETURNING token",
            params![tenant, sink, holder, now + ttl_ms(ttl), now],
            |row| row.get(0),
        )
        .optional()?;
    if let Some(token) = token {
        return Ok(Ok(DeliveryLease {
            tenant: tenant.to_owned(),
            sink: sink.to_owned(),
            holder: holder.to_owned(),
            ttl,
            token,
        }));
    }
    let other: Option<String> = conn
        .query_row(
            "SELECT holder FROM delivery_leases WHERE tenant = ?1 AND sink = ?2",
            params![tenant, sink],
            |row| row.get(0),
        )
        .optional()?;
    Ok(Err(other.unwrap_or_default()))
}

/// Extends the delivery lease; false when another holder has taken it since.
pub fn renew_delivery_lease(conn: &Connection, lease: &DeliveryLease) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE delivery_leases SET expires_at = ?5
         WHERE tenant = ?1 AND sink = ?2 AND holder = ?3 AND token = ?4",
        params![
            lease.tenant,
            lease.sink,
            lease.holder,
            lease.token,
            now_ms() + ttl_ms(lease.ttl)
        ],
    )?;
    Ok(changed == 1)
}

pub fn release_delivery_lease(conn: &Connection, lease: &DeliveryLease) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM delivery_leases WHERE tenant = ?1 AND sink = ?2 AND holder = ?3 AND token = ?4",
        params![lease.tenant, lease.sink, lease.holder, lease.token],
    )?;
    Ok(())
}

/// Gives the delivery lease to `holder` if `from` still holds it (expired or not): for a holder
/// known to be dead ([`holder_is_gone`]). `None` when someone else holds it by now.
pub fn take_over_delivery_lease(
    conn: &Connection,
    tenant: &str,
    sink: &str,
    from: &str,
    holder: &str,
    ttl: Duration,
) -> Result<Option<DeliveryLease>, StoreError> {
    let token: Option<i64> = conn
        .query_row(
            "UPDATE delivery_leases SET holder = ?4, expires_at = ?5, token = token + 1
             WHERE tenant = ?1 AND sink = ?2 AND holder = ?3 RETURNING token",
            params![tenant, sink, from, holder, now_ms() + ttl_ms(ttl)],
            |row| row.get(0),
        )
        .optional()?;
    Ok(token.map(|token| DeliveryLease {
        tenant: tenant.to_owned(),
        sink: sink.to_owned(),
        holder: holder.to_owned(),
        ttl,
        token,
    }))
}

/// Whether `holder` names a process of this user on this host that no longer runs (a zombie
/// counts as gone). Only this user's: `/proc` may hide other users' processes (systemd's
/// `ProtectProc=invisible`), and a hidden process must not look dead. Anything unclear counts
/// as alive.
pub fn holder_is_gone(holder: &str) -> bool {
    let Some(process) = super::holder_process(holder) else {
        return false;
    };
    if process.host != super::host_name()
        || Some(process.uid) != super::process_uid()
        || !std::path::Path::new("/proc/self/stat").exists()
    {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{}/stat", process.pid)) {
        // The state follows the parenthesised command name, which may itself hold ")".
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X')),
        Err(err) => err.kind() == std::io::ErrorKind::NotFound,
    }
}

/// What [`advance_cursor_leased`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advanced {
    Moved,
    /// The stored cursor was no longer `from` (nothing changed).
    CursorMoved,
    /// The lease lapsed or another deliverer took it: nothing changed.
    LeaseLost,
}

/// [`super::advance_cursor`] only while `lease` is held and unexpired, checked in the same
/// transaction (the lease row locked on PostgreSQL), so a deliverer that paused past its lease
/// cannot move the cursor its successor owns.
pub fn advance_cursor_leased(
    conn: &mut Connection,
    lease: &DeliveryLease,
    from: u64,
    to: u64,
) -> Result<Advanced, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let held: Option<i64> = tx
        .query_row(
            match tx.backend() {
                Backend::Sqlite => {
                    "SELECT expires_at FROM delivery_leases
                     WHERE tenant = ?1 AND sink = ?2 AND holder = ?3 AND token = ?4"
                }
                Backend::Postgres => {
                    "SELECT expires_at FROM delivery_leases
                     WHERE tenant = ?1 AND sink = ?2 AND holder = ?3 AND token = ?4 FOR UPDATE"
                }
            },
            params![lease.tenant, lease.sink, lease.holder, lease.token],
            |row| row.get(0),
        )
        .optional()?;
    if held.is_none_or(|expires_at| expires_at <= now_ms()) {
        return Ok(Advanced::LeaseLost);
    }
    let moved = super::advance_cursor(&tx, &lease.tenant, &lease.sink, from, to)?;
    tx.commit()?;
    Ok(if moved {
        Advanced::Moved
    } else {
        Advanced::CursorMoved
    })
}

fn ttl_ms(ttl: Duration) -> i64 {
    ttl.as_millis().min(i64::MAX as u128) as i64
}

/// Inside a commit's transaction: tells the nodes that `LISTEN` that the tenant has new
/// events, delivered by PostgreSQL only if the transaction commits. Nothing on SQLite (its
/// readers poll).
pub(super) fn notify_commit(conn: &Connection, tenant: &str) -> Result<(), StoreError> {
    if conn.backend() == Backend::Postgres {
        conn.query_row(
            "SELECT pg_notify(?1, ?2)",
            params![EVENTS_CHANNEL, tenant],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// Makes `conn` (a dedicated PostgreSQL connection) receive the commits' notifications.
pub fn listen_for_commits(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("LISTEN {EVENTS_CHANNEL}"))?;
    Ok(())
}

/// Waits up to `timeout` for a commit's notification on a listening connection; the tenant
/// that committed.
pub fn next_commit(conn: &Connection, timeout: Duration) -> Result<Option<String>, StoreError> {
    Ok(conn
        .wait_for_notification(timeout)?
        .filter(|notification| notification.channel == EVENTS_CHANNEL)
        .map(|notification| notification.payload))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Store;

    /// Runs `check` on a fresh SQLite store and a fresh PostgreSQL database.
    fn on_both(check: impl Fn(&Store)) {
        let dir = tempfile::tempdir().unwrap();
        check(&Store::open(dir.path()).unwrap());
        let db = crate::store::tests::PgTestDatabase::create();
        check(&db.store());
    }

    #[test]
    fn a_slot_is_claimed_once_and_only_forward() {
        on_both(|store| {
            let conn = store.connect().unwrap();
            assert!(claim_slot(&conn, "acme", 1000, "node-a").unwrap());
            assert!(!claim_slot(&conn, "acme", 1000, "node-b").unwrap());
            assert!(!claim_slot(&conn, "acme", 500, "node-b").unwrap());
            assert!(claim_slot(&conn, "acme", 2000, "node-b").unwrap());
            assert!(claim_slot(&conn, "other", 1000, "node-b").unwrap());
            let claim = tenant_cluster(&conn, "acme").unwrap().last_claim.unwrap();
            assert_eq!(claim.node, "node-b");
        });
    }

    #[test]
    fn racing_nodes_claim_each_slot_once() {
        on_both(|store| {
            let wins = std::sync::atomic::AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for node in 0..4 {
                    let (store, wins) = (store.clone(), &wins);
                    scope.spawn(move || {
                        for slot in 0..25 {
                            let won = store
                                .run_blocking(|conn| {
                                    claim_slot(conn, "acme", slot * 1000 + 1, &format!("n{node}"))
                                })
                                .unwrap();
                            if won {
                                wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    });
                }
            });
            // Each slot at most once; a node that fell behind skips slots others ran.
            assert!(wins.load(std::sync::atomic::Ordering::Relaxed) <= 25);
            assert!(wins.load(std::sync::atomic::Ordering::Relaxed) >= 1);
        });
    }

    #[test]
    fn one_delivery_lease_holder_and_the_cursor_moves_only_under_it() {
        on_both(|store| {
            let mut conn = store.connect().unwrap();
            crate::store::ensure_cursor(&conn, "acme", "app").unwrap();
            let ttl = Duration::from_secs(30);
            let a = acquire_delivery_lease(&conn, "acme", "app", "a", ttl)
                .unwrap()
                .unwrap();
            assert_eq!(
                acquire_delivery_lease(&conn, "acme", "app", "b", ttl).unwrap(),
                Err("a".to_owned())
            );
            // Another sink is another lease.
            assert!(acquire_delivery_lease(&conn, "acme", "other", "b", ttl)
                .unwrap()
                .is_ok());
            assert!(renew_delivery_lease(&conn, &a).unwrap());
            assert_eq!(
                advance_cursor_leased(&mut conn, &a, 0, 5).unwrap(),
                Advanced::Moved
            );
            assert_eq!(
                advance_cursor_leased(&mut conn, &a, 0, 7).unwrap(),
                Advanced::CursorMoved
            );
            // Expired: b takes it, and a can neither renew nor move the cursor.
            conn.execute(
                "UPDATE delivery_leases SET expires_at = 0 WHERE sink = 'app'",
                params![],
            )
            .unwrap();
            let b = acquire_delivery_lease(&conn, "acme", "app", "b", ttl)
                .unwrap()
                .unwrap();
            assert!(b.token > a.token);
            assert!(!renew_delivery_lease(&conn, &a).unwrap());
            assert_eq!(
                advance_cursor_leased(&mut conn, &a, 5, 9).unwrap(),
                Advanced::LeaseLost
            );
            assert_eq!(
                crate::store::load_cursor(&conn, "acme", "app")
                    .unwrap()
                    .unwrap()
                    .delivered_seq,
                5
            );
            // a's release does not free b's lease; b's does.
            release_delivery_lease(&conn, &a).unwrap();
            assert!(acquire_delivery_lease(&conn, "acme", "app", "c", ttl)
                .unwrap()
                .is_err());
            release_delivery_lease(&conn, &b).unwrap();
            assert!(acquire_delivery_lease(&conn, "acme", "app", "c", ttl)
                .unwrap()
                .is_ok());
        });
    }

    #[test]
    fn nodes_register_are_seen_and_leave() {
        on_both(|store| {
            let conn = store.connect().unwrap();
            register_node(&conn, "n1", "web-1", 11).unwrap();
            register_node(&conn, "n2", "web-2", 22).unwrap();
            node_seen(&conn, "n1", "web-1", 11).unwrap();
            let nodes = list_nodes(&conn).unwrap();
            assert_eq!(nodes.len(), 2);
            remove_node(&conn, "n2").unwrap();
            assert_eq!(list_nodes(&conn).unwrap()[0].node, "n1");
            // A node removed meanwhile is registered again by its heartbeat.
            remove_node(&conn, "n1").unwrap();
            node_seen(&conn, "n1", "web-1", 11).unwrap();
            assert_eq!(list_nodes(&conn).unwrap().len(), 1);
        });
    }

    #[test]
    fn a_commit_notifies_listeners_on_postgres() {
        let db = crate::store::tests::PgTestDatabase::create();
        let store = db.store();
        let listener = store.dedicated_postgres().unwrap().unwrap();
        listen_for_commits(&listener).unwrap();
        let mut conn = store.connect().unwrap();
        let tx = conn.transaction().unwrap();
        notify_commit(&tx, "acme").unwrap();
        assert_eq!(
            next_commit(&listener, Duration::from_millis(200)).unwrap(),
            None,
            "nothing before the commit"
        );
        tx.commit().unwrap();
        assert_eq!(
            next_commit(&listener, Duration::from_secs(10)).unwrap(),
            Some("acme".to_owned())
        );
    }
}
