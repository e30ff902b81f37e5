//! The sinks' delivery cursors (table `sink_cursors`): per tenant and sink, the highest `seq`
//! the sink acknowledged, the last delivery error and whether delivery is parked. Also the
//! outbox reads delivery needs (pages of pending events, lag) and retention pruning, which
//! never removes an event some configured sink has not acknowledged.

use super::sql::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::{now_ms, StoreError};

/// One sink's stored delivery state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub delivered_seq: u64,
    /// Milliseconds since the epoch of the last change of the cursor row.
    pub updated_at: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub parked: bool,
}

/// An outbox event as delivery needs it: `body` is the event JSON exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub seq: u64,
    pub id: String,
    /// Milliseconds since the epoch (the commit time).
    pub occurred_at: i64,
    pub body: String,
}

/// Creates the sink's cursor at 0 if it has none; returns the stored state.
pub fn ensure_cursor(conn: &Connection, tenant: &str, sink: &str) -> Result<Cursor, StoreError> {
    conn.execute(
        "INSERT INTO sink_cursors (tenant, sink, delivered_seq, updated_at) VALUES (?1, ?2, 0, ?3)
         ON CONFLICT (tenant, sink) DO NOTHING",
        params![tenant, sink, now_ms()],
    )?;
    Ok(load_cursor(conn, tenant, sink)?.unwrap_or_default())
}

/// The sink's stored state, if it ever had a cursor.
pub fn load_cursor(
    conn: &Connection,
    tenant: &str,
    sink: &str,
) -> Result<Option<Cursor>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT delivered_seq, updated_at, last_error, last_error_at, parked
             FROM sink_cursors WHERE tenant = ?1 AND sink = ?2",
            params![tenant, sink],
            |row| {
                Ok(Cursor {
                    delivered_seq: row.get::<_, i64>(0)? as u64,
                    updated_at: row.get(1)?,
                    last_error: row.get(2)?,
                    last_error_at: row.get(3)?,
                    parked: row.get::<_, i64>(4)? != 0,
                })
            },
        )
        .optional()?)
}

/// Moves the cursor from `from` to `to` after the sink acknowledged `from+1..=to`. Returns
/// false (and changes nothing) when the stored cursor is no longer `from`: another process
/// delivered meanwhile, and the caller must reload instead of overwriting its progress.
pub fn advance_cursor(
    conn: &Connection,
    tenant: &str,
    sink: &str,
    from: u64,
    to: u64,
) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE sink_cursors SET delivered_seq = ?4, updated_at = ?5
         WHERE tenant = ?1 AND sink = ?2 AND delivered_seq = ?3",
        params![tenant, sink, from as i64, to as i64, now_ms()],
    )?;
    Ok(changed == 1)
}

/// Records a failed delivery attempt; `park` also stops delivery until `unpark`.
pub fn record_delivery_error(
    conn: &Connection,
    tenant: &str,
    sink: &str,
    error: &str,
    park: bool,
) -> Result<(), StoreError> {
    let now = now_ms();
    conn.execute(
        "INSERT INTO sink_cursors (tenant, sink, delivered_seq, updated_at, last_error, last_error_at, parked)
         VALUES (?1, ?2, 0, ?4, ?3, ?4, ?5)
         ON CONFLICT (tenant, sink) DO UPDATE SET last_error = excluded.last_error,
             last_error_at = excluded.last_error_at, parked = CASE WHEN excluded.parked > sink_cursors.parked THEN excluded.parked ELSE sink_cursors.parked END",
        params![tenant, sink, error, now, park as i64],
    )?;
    Ok(())
}

/// Lets a parked sink deliver again (from its held cursor). Returns whether it was parked.
pub fn unpark(conn: &Connection, tenant: &str, sink: &str) -> Result<bool, StoreError> {
    let changed = conn.execute(
        "UPDATE sink_cursors SET parked = 0, updated_at = ?3
         WHERE tenant = ?1 AND sink = ?2 AND parked != 0",
        params![tenant, sink, now_ms()],
    )?;
    Ok(changed == 1)
}

/// Up to `limit` events with `seq > after`, oldest first.
pub fn pending_events(
    conn: &Connection,
    tenant: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<PendingEvent>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, id, occurred_at, body FROM events
         WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = statement.query_map(
        params![tenant, after as i64, limit.min(i64::MAX as usize) as i64],
        |row| {
            Ok(PendingEvent {
                seq: row.get::<_, i64>(0)? as u64,
                id: row.get(1)?,
                occurred_at: row.get(2)?,
                body: row.get(3)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How far a sink is behind: undelivered events and the commit time of the oldest one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Lag {
    pub events: u64,
    /// Milliseconds since the epoch; `None` when nothing is pending.
    pub oldest_pending_at: Option<i64>,
}

pub fn lag(conn: &Connection, tenant: &str, delivered_seq: u64) -> Result<Lag, StoreError> {
    let last = super::last_seq(conn, tenant)?;
    if last <= delivered_seq {
        return Ok(Lag::default());
    }
    let oldest: Option<i64> = conn
        .query_row(
            "SELECT occurred_at FROM events WHERE tenant = ?1 AND seq > ?2 ORDER BY seq LIMIT 1",
            params![tenant, delivered_seq as i64],
            |row| row.get(0),
        )
        .optional()?;
    Ok(Lag {
        events: last - delivered_seq,
        oldest_pending_at: oldest,
    })
}

/// Rows deleted per transaction, so pruning a huge outbox never holds the write lock long.
const PRUNE_CHUNK: i64 = 10_000;

/// Deletes the tenant's events committed before `older_than_ms` that every sink in `sinks`
/// has acknowledged (a sink without a cursor has acknowledged nothing). `tenants.last_seq` is
/// untouched, so `seq` never restarts. Returns how many events were deleted.
pub fn prune_delivered(
    conn: &mut Connection,
    tenant: &str,
    sinks: &[&str],
    older_than_ms: i64,
) -> Result<u64, StoreError> {
    let mut floor = super::last_seq(conn, tenant)?;
    for sink in sinks {
        let delivered = load_cursor(conn, tenant, sink)?.map_or(0, |c| c.delivered_seq);
        floor = floor.min(delivered);
    }
    let mut deleted = 0u64;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "DELETE FROM events WHERE tenant = ?1 AND seq IN (
                 SELECT seq FROM events WHERE tenant = ?1 AND seq <= ?2 AND occurred_at < ?3
                 ORDER BY seq LIMIT ?4)",
            params![tenant, floor as i64, older_than_ms, PRUNE_CHUNK],
        )?;
        tx.commit()?;
        deleted += changed as u64;
        if (changed as i64) < PRUNE_CHUNK {
            return Ok(deleted);
        }
    }
}

/// The oldest stored `seq` of the tenant (after pruning, events before it are gone).
pub fn first_stored_seq(conn: &Connection, tenant: &str) -> Result<Option<u64>, StoreError> {
    let seq: Option<i64> = conn.query_row(
        "SELECT MIN(seq) FROM events WHERE tenant = ?1",
        [tenant],
        |row| row.get(0),
    )?;
    Ok(seq.map(|s| s as u64))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_events(n: u64) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::Store::open(dir.path())
            .unwrap()
            .connect()
            .unwrap();
        for seq in 1..=n {
            conn.execute(
                "INSERT INTO events (tenant, seq, id, type, subject_id, occurred_at, sync_id, body)
                 VALUES ('acme', ?1, ?2, 'user.created', 'u', ?1, 1, '{}')",
                params![seq as i64, format!("evt_{seq}")],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO tenants (tenant, last_seq) VALUES ('acme', ?1)",
            [n as i64],
        )
        .unwrap();
        (dir, conn)
    }

    #[test]
    fn the_cursor_only_moves_from_where_it_is() {
        let (_dir, conn) = with_events(5);
        assert_eq!(
            ensure_cursor(&conn, "acme", "hook").unwrap().delivered_seq,
            0
        );
        assert!(advance_cursor(&conn, "acme", "hook", 0, 3).unwrap());
        // A second deliverer that still believes the cursor is at 0 cannot move it back.
        assert!(!advance_cursor(&conn, "acme", "hook", 0, 2).unwrap());
        assert_eq!(
            ensure_cursor(&conn, "acme", "hook").unwrap().delivered_seq,
            3
        );
        let lag = lag(&conn, "acme", 3).unwrap();
        assert_eq!(lag.events, 2);
        assert_eq!(lag.oldest_pending_at, Some(4));
        let page = pending_events(&conn, "acme", 3, 10).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    }

    #[test]
    fn parking_sticks_until_unparked_and_keeps_the_cursor() {
        let (_dir, conn) = with_events(2);
        ensure_cursor(&conn, "acme", "hook").unwrap();
        advance_cursor(&conn, "acme", "hook", 0, 1).unwrap();
        record_delivery_error(&conn, "acme", "hook", "HTTP 400", true).unwrap();
        record_delivery_error(&conn, "acme", "hook", "HTTP 400 again", false).unwrap();
        let cursor = load_cursor(&conn, "acme", "hook").unwrap().unwrap();
        assert!(cursor.parked);
        assert_eq!(cursor.delivered_seq, 1);
        assert_eq!(cursor.last_error.as_deref(), Some("HTTP 400 again"));
        assert!(unpark(&conn, "acme", "hook").unwrap());
        assert!(!unpark(&conn, "acme", "hook").unwrap());
        assert!(!load_cursor(&conn, "acme", "hook").unwrap().unwrap().parked);
    }

    #[test]
    fn pruning_stops_at_the_slowest_sink_and_works_in_chunks() {
        let (_dir, mut conn) = with_events(25_000);
        ensure_cursor(&conn, "acme", "fast").unwrap();
        ensure_cursor(&conn, "acme", "slow").unwrap();
        advance_cursor(&conn, "acme", "fast", 0, 25_000).unwrap();
        advance_cursor(&conn, "acme", "slow", 0, 22_000).unwrap();
        let deleted = prune_delivered(&mut conn, "acme", &["fast", "slow"], i64::MAX).unwrap();
        assert_eq!(deleted, 22_000);
        assert_eq!(first_stored_seq(&conn, "acme").unwrap(), Some(22_001));
        // A sink with no cursor yet has acknowledged nothing.
        assert_eq!(
            prune_delivered(&mut conn, "acme", &["fast", "new"], i64::MAX).unwrap(),
            0
        );
        // Only events older than the cutoff go.
        advance_cursor(&conn, "acme", "slow", 22_000, 25_000).unwrap();
        assert_eq!(
            prune_delivered(&mut conn, "acme", &["fast", "slow"], 24_001).unwrap(),
            2_000
        );
        assert_eq!(super::super::last_seq(&conn, "acme").unwrap(), 25_000);
    }
}
