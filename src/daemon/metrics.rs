//! The daemon's metrics: per-tenant counters updated after every run, written into the
//! process's one registry ([`crate::telemetry::metrics`]) at scrape time together with what the scheduler
//! knows then ([`Scheduled`]). Names follow `dirsync_<name>_<unit>[_total]`.
//!
//! Must not: query the database at scrape time (stored counts are refreshed after each commit),
//! or reach into the tenant tasks: they hand over plain data, so this file imports nothing of
//! the daemon.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::mutex::lock;
use crate::run::{RunOutcome, RunSummary};
use crate::store::StoredCounts;
use crate::telemetry::metrics::{Exposition, Kind, Number};

/// Run outcomes in the order their samples are written (by name); [`outcome_slot`] is each
/// one's place here.
const OUTCOMES: [RunOutcome; 5] = [
    RunOutcome::Committed,
    RunOutcome::DryRun,
    RunOutcome::Failed,
    RunOutcome::NoChanges,
    RunOutcome::Refused,
];

/// Exhaustive, so a new outcome cannot go uncounted.
fn outcome_slot(outcome: RunOutcome) -> usize {
    match outcome {
        RunOutcome::Committed => 0,
        RunOutcome::DryRun => 1,
        RunOutcome::Failed => 2,
        RunOutcome::NoChanges => 3,
        RunOutcome::Refused => 4,
    }
}

/// Plain counters and short sorted lists rather than maps: a node of ten thousand tenants
/// keeps one of these for each, and each map was a node allocation of its own.
#[derive(Debug, Default, Clone)]
struct TenantMetrics {
    /// By [`OUTCOMES`].
    runs: [u64; OUTCOMES.len()],
    /// By event type, sorted.
    events: Vec<(String, u64)>,
    api_requests: u64,
    api_retries: u64,
    duration_sum_seconds: f64,
    last_duration_seconds: Option<f64>,
    last_success_ms: Option<i64>,
    stored: Option<StoredCounts>,
}

/// The scheduler's view of one tenant at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub tenant: String,
    pub running: bool,
    /// Failed or refused scheduled runs in a row.
    pub consecutive_failures: u32,
    /// RFC 3339; `None` when disabled or running.
    pub next_run: Option<String>,
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
        entry.runs[outcome_slot(report.outcome)] += 1;
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
                match entry
                    .events
                    .binary_search_by(|(known, _)| known.as_str().cmp(kind))
                {
                    Ok(index) => entry.events[index].1 += count,
                    Err(index) => entry.events.insert(index, (kind.clone(), *count)),
                }
            }
        }
    }

    /// Writes the daemon's families, with the scheduler's view of each tenant (`scheduled`)
    /// and each tenant's last committed seq.
    pub fn collect(
        &self,
        out: &mut Exposition,
        scheduled: &[Scheduled],
        last_seqs: &BTreeMap<String, u64>,
    ) {
        let tenants = lock(&self.tenants).clone();
        let per_tenant = |out: &mut Exposition,
                          (name, kind, help): (&str, Kind, &str),
                          value: &dyn Fn(&TenantMetrics) -> Option<f64>| {
            let mut family = out.family(name, kind, help);
            for (tenant, m) in &tenants {
                if let Some(v) = value(m) {
                    family.sample(&[("tenant", tenant)], Number(v));
                }
            }
        };

        out.family(
            "dirsync_tenants",
            Kind::Gauge,
            "Tenants the daemon schedules (enabled or not).",
        )
        .sample(&[], Number(scheduled.len() as f64));
        let mut family = out.family(
            "dirsync_runs_total",
            Kind::Counter,
            "Sync runs since the daemon started, by outcome.",
        );
        for (tenant, m) in &tenants {
            for (outcome, count) in OUTCOMES.iter().zip(m.runs) {
                if count > 0 {
                    family.sample(
                        &[("tenant", tenant), ("outcome", outcome.as_str())],
                        Number(count as f64),
                    );
                }
            }
        }
        let mut family = out.family(
            "dirsync_events_emitted_total",
            Kind::Counter,
            "Events committed to the outbox since the daemon started, by type.",
        );
        for (tenant, m) in &tenants {
            for (kind, count) in &m.events {
                family.sample(&[("tenant", tenant), ("type", kind)], Number(*count as f64));
            }
        }
        per_tenant(
            out,
            (
                "dirsync_last_success_timestamp_seconds",
                Kind::Gauge,
                "When the tenant's last successful (committed or unchanged) sync finished.",
            ),
            &|m| m.last_success_ms.map(|ms| ms as f64 / 1000.0),
        );
        per_tenant(
            out,
            (
                "dirsync_last_run_duration_seconds",
                Kind::Gauge,
                "How long the tenant's last run took.",
            ),
            &|m| m.last_duration_seconds,
        );
        per_tenant(
            out,
            (
                "dirsync_run_duration_seconds_total",
                Kind::Counter,
                "Time spent in runs since the daemon started.",
            ),
            &|m| Some(m.duration_sum_seconds),
        );
        per_tenant(
            out,
            (
                "dirsync_api_requests_total",
                Kind::Counter,
                "Requests sent to the tenant's IdP, retries included.",
            ),
            &|m| Some(m.api_requests as f64),
        );
        per_tenant(
            out,
            (
                "dirsync_api_retries_total",
                Kind::Counter,
                "Requests to the tenant's IdP that were retried.",
            ),
            &|m| Some(m.api_retries as f64),
        );
        per_tenant(
            out,
            (
                "dirsync_stored_users",
                Kind::Gauge,
                "Users stored for the tenant.",
            ),
            &|m| m.stored.map(|s| s.users as f64),
        );
        per_tenant(
            out,
            (
                "dirsync_stored_groups",
                Kind::Gauge,
                "Groups stored for the tenant.",
            ),
            &|m| m.stored.map(|s| s.groups as f64),
        );
        per_tenant(
            out,
            (
                "dirsync_stored_memberships",
                Kind::Gauge,
                "Memberships stored for the tenant.",
            ),
            &|m| m.stored.map(|s| s.memberships as f64),
        );
        let mut family = out.family(
            "dirsync_last_event_seq",
            Kind::Gauge,
            "The seq of the tenant's last committed event.",
        );
        for (tenant, seq) in last_seqs {
            family.sample(&[("tenant", tenant)], Number(*seq as f64));
        }
        let mut family = out.family(
            "dirsync_run_in_progress",
            Kind::Gauge,
            "1 while a run of the tenant is in progress.",
        );
        for s in scheduled {
            family.sample(&[("tenant", &s.tenant)], u8::from(s.running));
        }
        let mut family = out.family(
            "dirsync_consecutive_failures",
            Kind::Gauge,
            "Failed or refused runs of the tenant in a row (the tenant backs off while > 0).",
        );
        for s in scheduled {
            family.sample(
                &[("tenant", &s.tenant)],
                Number(f64::from(s.consecutive_failures)),
            );
        }
        let mut family = out.family(
            "dirsync_next_run_timestamp_seconds",
            Kind::Gauge,
            "When the tenant's next scheduled run starts.",
        );
        for s in scheduled {
            let Some(at) = s
                .next_run
                .as_deref()
                .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            else {
                continue;
            };
            family.sample(
                &[("tenant", &s.tenant)],
                Number(at.timestamp_millis() as f64 / 1000.0),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_outcome_has_its_own_slot_in_render_order() {
        for (slot, outcome) in OUTCOMES.iter().enumerate() {
            assert_eq!(outcome_slot(*outcome), slot, "{outcome:?}");
        }
        assert!(OUTCOMES.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
    }

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
        let mut out = Exposition::default();
        metrics.collect(
            &mut out,
            &[],
            &[("acme".to_owned(), 3)].into_iter().collect(),
        );
        let text = out.into_text();
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
