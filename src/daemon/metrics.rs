//! The daemon's metrics: per-tenant counters updated after every run, rendered in the
//! Prometheus text exposition format for `/metrics`. Names follow
//! `dirsync_<name>_<unit>[_total]`.
//!
//! Must not: query the database at scrape time (stored counts are refreshed after each commit).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use super::tenant::{lock, TenantState};
use crate::run::{RunOutcome, RunSummary};
use crate::store::StoredCounts;

#[derive(Debug, Default, Clone)]
struct TenantMetrics {
    runs: BTreeMap<&'static str, u64>,
    events: BTreeMap<String, u64>,
    api_requests: u64,
    api_retries: u64,
    duration_sum_seconds: f64,
    last_duration_seconds: Option<f64>,
    last_success_ms: Option<i64>,
    stored: Option<StoredCounts>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    tenants: Arc<Mutex<BTreeMap<String, TenantMetrics>>>,
}

impl Metrics {
    pub fn seed(&self, tenant: &str, stored: StoredCounts, last_success_ms: Option<i64>) {
        let mut tenants = lock(&self.tenants);
        let entry = tenants.entry(tenant.to_owned()).or_default();
        entry.stored = Some(stored);
        if entry.last_success_ms.is_none() {
            entry.last_success_ms = last_success_ms;
        }
    }

    pub fn set_stored(&self, tenant: &str, stored: StoredCounts) {
        lock(&self.tenants)
            .entry(tenant.to_owned())
            .or_default()
            .stored = Some(stored);
    }

    pub fn forget(&self, tenant: &str) {
        lock(&self.tenants).remove(tenant);
    }

    pub fn record_run(&self, report: &RunSummary, dry_run: bool) {
        let mut tenants = lock(&self.tenants);
        let entry = tenants.entry(report.tenant.clone()).or_default();
        *entry.runs.entry(report.outcome.as_str()).or_default() += 1;
        entry.api_requests += report.api_requests;
        entry.api_retries += report.retries;
        let seconds = report.duration_ms as f64 / 1000.0;
        entry.duration_sum_seconds += seconds;
        entry.last_duration_seconds = Some(seconds);
        if !dry_run
            && matches!(
                report.outcome,
                RunOutcome::Committed | RunOutcome::NoChanges
            )
        {
            entry.last_success_ms = Some(chrono::Utc::now().timestamp_millis());
        }
        if report.outcome == RunOutcome::Committed {
            for (kind, count) in &report.counts {
                *entry.events.entry(kind.clone()).or_default() += count;
            }
        }
    }

    /// The Prometheus text format, with the scheduler's view of each tenant.
    pub fn render(&self, states: &[TenantState], last_seqs: &BTreeMap<String, u64>) -> String {
        let tenants = lock(&self.tenants).clone();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let tenant_label = |tenant: &str| format!("{{tenant=\"{}\"}}", escape(tenant));
        let per_tenant = |value: &dyn Fn(&TenantMetrics) -> Option<f64>| -> Vec<(String, f64)> {
            tenants
                .iter()
                .filter_map(|(tenant, m)| value(m).map(|v| (tenant_label(tenant), v)))
                .collect()
        };

        family(
            "dirsync_tenants",
            "gauge",
            "Tenants the daemon schedules (enabled or not).",
            vec![(String::new(), states.len() as f64)],
        );
        family(
            "dirsync_runs_total",
            "counter",
            "Sync runs since the daemon started, by outcome.",
            tenants
                .iter()
                .flat_map(|(tenant, m)| {
                    m.runs.iter().map(move |(outcome, count)| {
                        (
                            format!(
                                "{{tenant=\"{}\",outcome=\"{}\"}}",
                                escape(tenant),
                                escape(outcome)
                            ),
                            *count as f64,
                        )
                    })
                })
                .collect(),
        );
        family(
            "dirsync_events_emitted_total",
            "counter",
            "Events committed to the outbox since the daemon started, by type.",
            tenants
                .iter()
                .flat_map(|(tenant, m)| {
                    m.events.iter().map(move |(kind, count)| {
                        (
                            format!(
                                "{{tenant=\"{}\",type=\"{}\"}}",
                                escape(tenant),
                                escape(kind)
                            ),
                            *count as f64,
                        )
                    })
                })
                .collect(),
        );
        family(
            "dirsync_last_success_timestamp_seconds",
            "gauge",
            "When the tenant's last successful (committed or unchanged) sync finished.",
            per_tenant(&|m| m.last_success_ms.map(|ms| ms as f64 / 1000.0)),
        );
        family(
            "dirsync_last_run_duration_seconds",
            "gauge",
            "How long the tenant's last run took.",
            per_tenant(&|m| m.last_duration_seconds),
        );
        family(
            "dirsync_run_duration_seconds_total",
            "counter",
            "Time spent in runs since the daemon started.",
            per_tenant(&|m| Some(m.duration_sum_seconds)),
        );
        family(
            "dirsync_api_requests_total",
            "counter",
            "Requests sent to the tenant's IdP, retries included.",
            per_tenant(&|m| Some(m.api_requests as f64)),
        );
        family(
            "dirsync_api_retries_total",
            "counter",
            "Requests to the tenant's IdP that were retried.",
            per_tenant(&|m| Some(m.api_retries as f64)),
        );
        family(
            "dirsync_stored_users",
            "gauge",
            "Users stored for the tenant.",
            per_tenant(&|m| m.stored.map(|s| s.users as f64)),
        );
        family(
            "dirsync_stored_groups",
            "gauge",
            "Groups stored for the tenant.",
            per_tenant(&|m| m.stored.map(|s| s.groups as f64)),
        );
        family(
            "dirsync_stored_memberships",
            "gauge",
            "Memberships stored for the tenant.",
            per_tenant(&|m| m.stored.map(|s| s.memberships as f64)),
        );
        family(
            "dirsync_last_event_seq",
            "gauge",
            "The seq of the tenant's last committed event.",
            last_seqs
                .iter()
                .map(|(tenant, seq)| (tenant_label(tenant), *seq as f64))
                .collect(),
        );
        family(
            "dirsync_run_in_progress",
            "gauge",
            "1 while a run of the tenant is in progress.",
            states
                .iter()
                .map(|s| {
                    (
                        tenant_label(&s.tenant),
                        if s.running.is_some() { 1.0 } else { 0.0 },
                    )
                })
                .collect(),
        );
        family(
            "dirsync_consecutive_failures",
            "gauge",
            "Failed or refused runs of the tenant in a row (the tenant backs off while > 0).",
            states
                .iter()
                .map(|s| (tenant_label(&s.tenant), s.consecutive_failures as f64))
                .collect(),
        );
        family(
            "dirsync_next_run_timestamp_seconds",
            "gauge",
            "When the tenant's next scheduled run starts.",
            states
                .iter()
                .filter_map(|s| {
                    let at = chrono::DateTime::parse_from_rfc3339(s.next_run.as_deref()?).ok()?;
                    Some((
                        tenant_label(&s.tenant),
                        at.timestamp_millis() as f64 / 1000.0,
                    ))
                })
                .collect(),
        );
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn renders_runs_events_and_stored_counts() {
        let metrics = Metrics::default();
        let mut report = RunSummary::begun("acme", crate::run::Millis(0));
        report.sync_id = Some(1);
        report.outcome = RunOutcome::Committed;
        report.events = 3;
        report.counts = [("user.created".to_owned(), 3)].into_iter().collect();
        report.users = Some(3);
        report.groups = Some(0);
        report.memberships = Some(0);
        report.api_requests = 4;
        report.retries = 1;
        report.duration_ms = 1500;
        report.first_seq = Some(1);
        report.last_seq = Some(3);
        metrics.record_run(&report, false);
        metrics.set_stored(
            "acme",
            StoredCounts {
                users: 3,
                groups: 0,
                memberships: 0,
            },
        );
        let text = metrics.render(&[], &[("acme".to_owned(), 3)].into_iter().collect());
        assert!(text.contains("dirsync_runs_total{tenant=\"acme\",outcome=\"committed\"} 1\n"));
        assert!(text
            .contains("dirsync_events_emitted_total{tenant=\"acme\",type=\"user.created\"} 3\n"));
        assert!(text.contains("dirsync_api_requests_total{tenant=\"acme\"} 4\n"));
        assert!(text.contains("dirsync_api_retries_total{tenant=\"acme\"} 1\n"));
        assert!(text.contains("dirsync_stored_users{tenant=\"acme\"} 3\n"));
        assert!(text.contains("dirsync_last_run_duration_seconds{tenant=\"acme\"} 1.5\n"));
        assert!(text.contains("dirsync_last_event_seq{tenant=\"acme\"} 3\n"));
        assert!(text.contains("dirsync_last_success_timestamp_seconds{tenant=\"acme\"} "));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, _) = line.split_once([' ', '{']).unwrap();
            assert!(name.starts_with("dirsync_"), "{line}");
        }
    }
}
