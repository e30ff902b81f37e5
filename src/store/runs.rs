//! The record of runs: every sync, committed or not, with its outcome, counts and error.

use super::sql::{params, Backend, Connection};

use super::StoreError;
use crate::run::{Millis, RunOutcome, RunSummary};

/// The id the next recorded run gets (ids are never reused: `AUTOINCREMENT`). Only stable
/// inside a write transaction.
pub(super) fn next_run_id(conn: &Connection) -> Result<i64, StoreError> {
    // PostgreSQL hands ids out from the identity's sequence: commits of other tenants run
    // at the same time there, and ids need not be gap-free.
    if conn.backend() == Backend::Postgres {
        return Ok(conn.query_row(
            "SELECT nextval(pg_get_serial_sequence('runs', 'id'))",
            (),
            |row| row.get(0),
        )?);
    }
    let last: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0),
                    COALESCE((SELECT MAX(id) FROM runs), 0))",
        (),
        |row| row.get(0),
    )?;
    Ok(last + 1)
}

/// Inserts the run, with `id` when the caller already handed it out (a commit's events name
/// their run before the run's finish time is known).
pub(super) fn insert_run(
    conn: &Connection,
    run: &RunSummary,
    id: Option<i64>,
) -> Result<i64, StoreError> {
    let events: u64 = run.counts.values().sum();
    let counts = serde_json::to_string(&run.counts).unwrap_or_else(|_| "{}".into());
    // Without an id, the column is left out: PostgreSQL's identity refuses a NULL.
    let sql = if id.is_some() {
        "INSERT INTO runs (tenant, started_at, finished_at, outcome, duration_ms, events, counts, users, groups,
                           memberships, api_requests, retries, first_seq, last_seq, error, id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) RETURNING id"
    } else {
        "INSERT INTO runs (tenant, started_at, finished_at, outcome, duration_ms, events, counts, users, groups,
                           memberships, api_requests, retries, first_seq, last_seq, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) RETURNING id"
    };
    let values = params![
        run.tenant,
        run.started_at.0,
        run.finished_at.0,
        run.outcome.as_str(),
        (run.finished_at.0 - run.started_at.0).max(0),
        events as i64,
        counts,
        run.users.map(|v| v as i64),
        run.groups.map(|v| v as i64),
        run.memberships.map(|v| v as i64),
        run.api_requests as i64,
        run.retries as i64,
        run.first_seq.map(|v| v as i64),
        run.last_seq.map(|v| v as i64),
        run.error,
        id,
    ];
    let values = if id.is_some() { values } else { &values[..15] };
    Ok(conn.query_row(sql, values, |row| row.get(0))?)
}

/// Records a run that committed nothing (failed, refused, dry run).
pub fn record_run(conn: &Connection, run: &RunSummary) -> Result<i64, StoreError> {
    insert_run(conn, run, None)
}

/// Deletes the tenant's runs beyond its `keep` most recent; how many went.
pub fn prune_runs(conn: &Connection, tenant: &str, keep: u32) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM runs WHERE tenant = ?1 AND id <= (
             SELECT id FROM runs WHERE tenant = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        params![tenant, keep],
    )?)
}

/// The tenant's most recent runs, newest first.
pub fn last_runs(
    conn: &Connection,
    tenant: &str,
    limit: u32,
) -> Result<Vec<RunSummary>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, started_at, finished_at, outcome, duration_ms, events, counts, users, groups, memberships,
                api_requests, retries, error, first_seq, last_seq
         FROM runs WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![tenant, limit], |row| {
        let counts: String = row.get(6)?;
        Ok(RunSummary {
            tenant: tenant.to_owned(),
            sync_id: Some(row.get(0)?),
            started_at: Millis(row.get(1)?),
            finished_at: Millis(row.get(2)?),
            outcome: RunOutcome::parse(&row.get::<_, String>(3)?),
            duration_ms: row.get::<_, i64>(4)?.max(0) as u64,
            events: row.get::<_, i64>(5)? as u64,
            counts: serde_json::from_str(&counts).unwrap_or_default(),
            users: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
            groups: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
            memberships: row.get::<_, Option<i64>>(9)?.map(|v| v as u64),
            // Not stored: the run's own report has them.
            planned_events: None,
            stored_users: None,
            stored_groups: None,
            stored_memberships: None,
            api_requests: row.get::<_, i64>(10)? as u64,
            retries: row.get::<_, i64>(11)? as u64,
            error: row.get(12)?,
            first_seq: row.get::<_, Option<i64>>(13)?.map(|v| v as u64),
            last_seq: row.get::<_, Option<i64>>(14)?.map(|v| v as u64),
            warning: None,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
