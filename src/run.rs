//! What one run of one tenant did: its outcome, counts, requests, timing and error. The one
//! shape of a run everywhere — the sync fills it in, the store records and reads it back,
//! `sync --json`, `status` and the metrics show it. A leaf module: imports nothing of dirsync
//! but the `terminal` escaper.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

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

    /// The stored text back to an outcome; anything unknown reads as a failure.
    pub fn parse(text: &str) -> Self {
        match text {
            "committed" => RunOutcome::Committed,
            "no_changes" => RunOutcome::NoChanges,
            "dry_run" => RunOutcome::DryRun,
            "refused" => RunOutcome::Refused,
            _ => RunOutcome::Failed,
        }
    }

    /// Committed or unchanged: the stored directory matches the IdP as of this run.
    pub fn is_success(self) -> bool {
        matches!(self, RunOutcome::Committed | RunOutcome::NoChanges)
    }

    /// The exit code of `dirsync sync` (CONTRACT.md).
    pub fn exit_code(self) -> u8 {
        match self {
            RunOutcome::Committed | RunOutcome::NoChanges | RunOutcome::DryRun => 0,
            RunOutcome::Refused => 3,
            RunOutcome::Failed => 1,
        }
    }
}

/// Milliseconds since the Unix epoch, printed as an RFC 3339 timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_millis())
    }

    pub fn to_datetime(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.0)
    }

    /// `2026-11-28T14:00:00.123Z`, the timestamp format of events and status.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

/// One run, as `sync --json` prints it, as the store records it and as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub tenant: String,
    /// The run's id in the store; `None` until it is recorded.
    pub sync_id: Option<i64>,
    pub outcome: RunOutcome,
    pub started_at: Millis,
    pub finished_at: Millis,
    pub duration_ms: u64,
    /// Events committed (or, for a dry or refused run, that it would have emitted); 0 for a
    /// failed run, which committed nothing.
    pub events: u64,
    /// `events` by event type.
    pub counts: BTreeMap<String, u64>,
    /// Events the run planned, committed or not; `None` when it failed before planning. A
    /// failed run's `events` is 0 and this says how many it would have committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_events: Option<u64>,
    /// Upstream totals, as the source listed them (before filters and policy); `None` when
    /// the run failed before it knew them. `memberships` counts every direct membership
    /// listed.
    pub users: Option<u64>,
    pub groups: Option<u64>,
    pub memberships: Option<u64>,
    /// The totals after filters and policy (what the store holds once the run commits);
    /// `None` when the run failed before planning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_users: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_groups: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_memberships: Option<u64>,
    pub api_requests: u64,
    pub retries: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    pub error: Option<String>,
    /// Something the operator should know about a run that did not fail (a dry run that
    /// the deletion guard would refuse).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl RunSummary {
    /// A run of `tenant` started at `started_at` that has done nothing yet: `Failed` until
    /// something says otherwise.
    pub fn begun(tenant: &str, started_at: Millis) -> Self {
        Self {
            tenant: tenant.to_owned(),
            sync_id: None,
            outcome: RunOutcome::Failed,
            started_at,
            finished_at: started_at,
            duration_ms: 0,
            events: 0,
            counts: BTreeMap::new(),
            planned_events: None,
            users: None,
            groups: None,
            memberships: None,
            stored_users: None,
            stored_groups: None,
            stored_memberships: None,
            api_requests: 0,
            retries: 0,
            first_seq: None,
            last_seq: None,
            error: None,
            warning: None,
        }
    }

    /// Marks the run finished at `at`.
    pub fn finish(&mut self, at: Millis) {
        self.finished_at = at;
        self.duration_ms = (at.0 - self.started_at.0).max(0) as u64;
    }

    pub fn exit_code(&self) -> u8 {
        self.outcome.exit_code()
    }

    /// One readable line (two or three with an error or a warning). The error and warning
    /// carry IdP text (an API error body): escaped, so they cannot forge a line or drive the
    /// terminal.
    pub fn summary_line(&self) -> String {
        use crate::terminal::escape;
        let mut line = format!("tenant {}: {}", escape(&self.tenant), self.outcome.as_str());
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
            line.push_str(&format!("\n  error: {}", escape(error)));
        }
        if let Some(warning) = &self.warning {
            line.push_str(&format!("\n  warning: {}", escape(warning)));
        }
        line
    }
}
