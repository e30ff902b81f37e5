//! Moving a store's history to another backend (`dirsync migrate-store`): every tenant's
//! snapshot, events (their seq and ids), runs, cursors and push log, copied table by table in
//! one transaction on the target, which must hold no tenant data yet.

use super::sql::{params_from_iter, Connection, OwnedRow};
use super::StoreError;

/// The tables copied, each with the columns it keeps, in an order that reads well in
/// progress output. `scim_resources` is read in rowid order so that the target's own rowid
/// keeps the order of insertion that SCIM lists page by.
const TABLES: &[(&str, &str, &str)] = &[
    ("tenants", "tenant, last_seq", "tenant"),
    ("users", "tenant, id, email, data", "tenant, id"),
    ("user_addresses", "tenant, user_id, address", "tenant, user_id, address"),
    ("groups", "tenant, id, email, name, data", "tenant, id"),
    ("memberships", "tenant, group_id, user_id", "tenant, group_id, user_id"),
    (
        "group_edges",
        "tenant, group_id, member_kind, member_id",
        "tenant, group_id, member_kind, member_id",
    ),
    (
        "events",
        "tenant, seq, id, type, subject_id, occurred_at, sync_id, body",
        "tenant, seq",
    ),
    (
        "runs",
        "id, tenant, started_at, finished_at, outcome, duration_ms, events, counts, users, groups, memberships, api_requests, retries, first_seq, last_seq, error",
        "id",
    ),
    (
        "sink_cursors",
        "tenant, sink, delivered_seq, updated_at, last_error, last_error_at, parked",
        "tenant, sink",
    ),
    (
        "exclusions",
        "tenant, id, email, kind, reason, detail, run_id",
        "tenant, id",
    ),
    (
        "scim_resources",
        "tenant, kind, id, user_name, external_id, display_name, created, modified, version, data",
        "rowid",
    ),
    (
        "scim_members",
        "tenant, group_id, member_id, kind, display",
        "tenant, group_id, member_id",
    ),
    (
        "push_requests",
        "id, tenant, at, method, path, status, latency_us, user_agent, resource_kind, resource_id, detail, first_seq, last_seq, body",
        "id",
    ),
];

/// Rows copied per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transferred {
    pub tables: Vec<(&'static str, u64)>,
}

impl Transferred {
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| *name == table)
            .map_or(0, |(_, rows)| *rows)
    }
}

/// Copies everything from `from` into `to`, in one transaction on `to`. Refused when `to`
/// already holds tenant data: a copy merges nothing. `progress` hears each table as it is
/// done.
pub fn transfer(
    from: &Connection,
    to: &mut Connection,
    mut progress: impl FnMut(&str, u64),
) -> Result<Transferred, StoreError> {
    for table in ["tenants", "events", "runs", "scim_resources"] {
        let held: i64 = to.query_row(&format!("SELECT count(*) FROM {table}"), (), |row| {
            row.get(0)
        })?;
        if held > 0 {
            return Err(StoreError::Corrupt(format!(
                "the target store already holds {held} rows in {table}: migrate into an empty database (a copy merges nothing)"
            )));
        }
    }
    let tx = to.transaction()?;
    let mut transferred = Transferred::default();
    for &(table, columns, order) in TABLES {
        let count = columns.split(',').count();
        let placeholders: Vec<String> = (1..=count).map(|n| format!("?{n}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({columns}) VALUES ({})",
            placeholders.join(", ")
        );
        let mut batch = tx.batch_insert(&insert, count)?;
        let mut statement =
            from.prepare(&format!("SELECT {columns} FROM {table} ORDER BY {order}"))?;
        let mut rows = statement.query(())?;
        let mut copied = 0u64;
        while let Some(row) = rows.next()? {
            let values = OwnedRow::read(row, count)?;
            batch.push(params_from_iter(values.values()))?;
            copied += 1;
        }
        batch.finish()?;
        progress(table, copied);
        transferred.tables.push((table, copied));
    }
    // The identity columns continue after the copied ids.
    if tx.backend() == super::Backend::Postgres {
        for table in ["runs", "push_requests"] {
            tx.execute_batch(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            ))?;
        }
    }
    tx.commit()?;
    Ok(transferred)
}
