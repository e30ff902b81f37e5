//! The record of runs: every sync, committed or not, with its outcome, counts and error.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};
use serde::Serialize;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Committed,
    NoChanges,
    DryRun,
    Refused,
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Committed => "committed",
            RunOutcome::NoChanges => "no_changes",
            RunOutcome::DryRun => "dry_run",
            RunOutcome::Refused => "refused",
            RunOutcome::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "committed" => RunOutcome::Committed,
            "no_changes" => RunOutcome::NoChanges,
            "dry_run" => RunOutcome::DryRun,
            "refused" => RunOutcome::Refused,
            _ => RunOutcome::Failed,
        }
    }
}

/// A run as the sync describes it.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: RunOutcome,
    pub counts: BTreeMap<&'static str, u64>,
    pub users: Option<u64>,
    pub groups: Option<u64>,
    pub memberships: Option<u64>,
    pub api_requests: u64,
    pub retries: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub error: Option<String>,
}

impl RunRecord {
    /// A run started at `started_at` that has done nothing yet: `Failed` until something says
    /// otherwise (`commit` sets the outcome it commits).
    pub fn begun(started_at: i64) -> Self {
        Self {
            started_at,
            finished_at: started_at,
            outcome: RunOutcome::Failed,
            counts: BTreeMap::new(),
            users: None,
            groups: None,
            memberships: None,
            api_requests: 0,
            retries: 0,
            first_seq: None,
            last_seq: None,
            error: None,
        }
    }
}

pub(super) fn insert_run(
    conn: &Connection,
    tenant: &str,
    run: &RunRecord,
) -> Result<i64, StoreError> {
    let events: u64 = run.counts.values().sum();
    let counts = serde_json::to_string(&run.counts).unwrap_or_else(|_| "{}".into());
    conn.execute(
        "INSERT INTO runs (tenant, started_at, finished_at, outcome, duration_ms, events, counts, users, groups,
                           memberships, api_requests, retries, first_seq, last_seq, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            tenant,
            run.started_at,
            run.finished_at,
            run.outcome.as_str(),
            (run.finished_at - run.started_at).max(0),
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
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Records a run that committed nothing (failed, refused, dry run).
pub fn record_run(conn: &Connection, tenant: &str, run: &RunRecord) -> Result<i64, StoreError> {
    insert_run(conn, tenant, run)
}

/// A stored run, for `status` and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct StoredRun {
    pub sync_id: i64,
    pub started_at: String,
    pub finished_at: String,
    pub outcome: RunOutcome,
    pub duration_ms: i64,
    pub events: u64,
    pub counts: BTreeMap<String, u64>,
    pub users: Option<u64>,
    pub groups: Option<u64>,
    pub memberships: Option<u64>,
    pub api_requests: u64,
    pub retries: u64,
    pub error: Option<String>,
}

fn ms_to_text(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(crate::event::format_timestamp)
        .unwrap_or_default()
}

/// The tenant's most recent runs, newest first.
pub fn last_runs(
    conn: &Connection,
    tenant: &str,
    limit: u32,
) -> Result<Vec<StoredRun>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, started_at, finished_at, outcome, duration_ms, events, counts, users, groups, memberships,
                api_requests, retries, error
         FROM runs WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![tenant, limit], |row| {
        let counts: String = row.get(6)?;
        Ok(StoredRun {
            sync_id: row.get(0)?,
            started_at: ms_to_text(row.get(1)?),
            finished_at: ms_to_text(row.get(2)?),
            outcome: RunOutcome::parse(&row.get::<_, String>(3)?),
            duration_ms: row.get(4)?,
            events: row.get::<_, i64>(5)? as u64,
            counts: serde_json::from_str(&counts).unwrap_or_default(),
            users: row.get::<_, Option<i64>>(7)?.map(|v| v as u64),
            groups: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
            memberships: row.get::<_, Option<i64>>(9)?.map(|v| v as u64),
            api_requests: row.get::<_, i64>(10)? as u64,
            retries: row.get::<_, i64>(11)? as u64,
            error: row.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
