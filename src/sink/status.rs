//! Each sink's delivery state as `dirsync status` shows it: cursor, lag, parked, last error.
//! Read from the database (not from a running process's metrics), so it is right whichever
//! process delivers. Must not: change delivery state.

use crate::store::Connection;
use serde::Serialize;

use crate::config::{SinkConfig, SinkKind, TenantConfig};
use crate::store::{self, StoreError};

/// One sink's delivery state.
#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub delivered_seq: u64,
    pub lag_events: u64,
    /// Seconds since the oldest undelivered event was committed.
    pub lag_seconds: Option<f64>,
    pub parked: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

impl SinkStatus {
    /// A sink with no database yet.
    pub fn never_delivered(sink: &SinkConfig) -> Self {
        Self {
            name: sink.name.clone(),
            kind: kind_name(sink),
            delivered_seq: 0,
            lag_events: 0,
            lag_seconds: None,
            parked: false,
            last_error: None,
            last_error_at: None,
        }
    }
}

fn kind_name(sink: &SinkConfig) -> &'static str {
    match sink.kind {
        SinkKind::Webhook(_) => "webhook",
        SinkKind::Jsonl(_) => "jsonl",
    }
}

/// Reads the delivery state of every sink of the tenant; run it through `Store::run`.
pub fn sink_statuses(
    conn: &Connection,
    tenant: &TenantConfig,
) -> Result<Vec<SinkStatus>, StoreError> {
    let now = store::now_ms();
    let mut out = Vec::new();
    for sink in &tenant.sinks {
        let cursor = store::load_cursor(conn, &tenant.id, &sink.name)?.unwrap_or_default();
        let lag = store::cursors::lag(conn, &tenant.id, cursor.delivered_seq)?;
        out.push(SinkStatus {
            name: sink.name.clone(),
            kind: kind_name(sink),
            delivered_seq: cursor.delivered_seq,
            lag_events: lag.events,
            lag_seconds: lag
                .oldest_pending_at
                .map(|at| (now - at).max(0) as f64 / 1000.0),
            parked: cursor.parked,
            last_error: cursor.last_error,
            last_error_at: cursor
                .last_error_at
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(crate::event::format_timestamp),
        });
    }
    Ok(out)
}
