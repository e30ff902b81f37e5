//! The delivery metrics: live counters per (tenant, sink), updated by the sink's worker and
//! rendered through the process's one registry ([`crate::telemetry::metrics`]) as `dirsync_sink_*`.
//!
//! A sink's counters live as long as the sink is configured, not as long as its task: a reload
//! restarts the tasks and they pick up the same counters. Only the supervisor forgets them
//! (sink removed from the tenant, tenant removed). Must not: query the database at scrape time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::mutex::lock;
use crate::store;
use crate::telemetry::metrics::{Collector, Exposition, Kind};

/// Live counters of one sink.
#[derive(Debug, Default)]
pub(super) struct SinkMetrics {
    pub(super) delivered: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) rejections: AtomicU64,
    pub(super) lag_events: AtomicU64,
    /// Commit time (ms) of the oldest undelivered event; 0 when none.
    pub(super) oldest_pending_at: AtomicI64,
    pub(super) parked: AtomicBool,
}

/// Each sink's counters by (tenant, sink).
type BySink = BTreeMap<(String, String), Arc<SinkMetrics>>;

/// The counters of every sink of the process. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SinkMetricsTable {
    sinks: Arc<Mutex<BySink>>,
}

impl SinkMetricsTable {
    /// The sink's counters, created at zero the first time.
    pub(super) fn sink(&self, tenant: &str, sink: &str) -> Arc<SinkMetrics> {
        lock(&self.sinks)
            .entry((tenant.to_owned(), sink.to_owned()))
            .or_default()
            .clone()
    }

    /// Forgets the tenant's sinks that `keep` does not name.
    pub(super) fn retain_sinks(&self, tenant: &str, keep: &[&str]) {
        lock(&self.sinks).retain(|(t, sink), _| t != tenant || keep.contains(&sink.as_str()));
    }

    pub(super) fn forget_tenant(&self, tenant: &str) {
        self.retain_sinks(tenant, &[]);
    }
}

impl Collector for SinkMetricsTable {
    fn collect(&self, out: &mut Exposition) {
        let sinks: Vec<((String, String), Arc<SinkMetrics>)> = lock(&self.sinks)
            .iter()
            .map(|(key, m)| (key.clone(), m.clone()))
            .collect();
        let now = store::now_ms();
        type Read = fn(&SinkMetrics, i64) -> String;
        let families: [(&str, Kind, &str, Read); 7] = [
            (
                "dirsync_sink_delivered_events_total",
                Kind::Counter,
                "Events the sink acknowledged.",
                |m, _| m.delivered.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_retries_total",
                Kind::Counter,
                "Deliveries attempted again after a failure.",
                |m, _| m.retries.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_failures_total",
                Kind::Counter,
                "Failed delivery attempts.",
                |m, _| m.failures.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_rejections_total",
                Kind::Counter,
                "Deliveries the receiver rejected (4xx other than 408/429).",
                |m, _| m.rejections.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_lag_events",
                Kind::Gauge,
                "Committed events the sink has not acknowledged.",
                |m, _| m.lag_events.load(Ordering::Relaxed).to_string(),
            ),
            (
                "dirsync_sink_lag_seconds",
                Kind::Gauge,
                "Age of the oldest event the sink has not acknowledged.",
                |m, now| {
                    let at = m.oldest_pending_at.load(Ordering::Relaxed);
                    let age = if at == 0 {
                        0.0
                    } else {
                        (now - at).max(0) as f64 / 1000.0
                    };
                    format!("{age:.3}")
                },
            ),
            (
                "dirsync_sink_parked",
                Kind::Gauge,
                "1 when delivery is parked until an operator unparks it.",
                |m, _| u8::from(m.parked.load(Ordering::Relaxed)).to_string(),
            ),
        ];
        for (name, kind, help, read) in families {
            let mut family = out.family(name, kind, help);
            for ((tenant, sink), m) in &sinks {
                family.sample(&[("tenant", tenant), ("sink", sink)], read(m, now));
            }
        }
    }
}
