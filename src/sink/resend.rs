//! Replay (`dirsync events TENANT --resend-to SINK --after SEQ`): sends a range of stored events
//! to one sink again, with the same ids and bodies as their first delivery, for a consumer that
//! lost data. Must not: move the sink's cursor or touch its metrics (delivery state is the
//! worker's).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::Serialize;
use tracing::warn;

use super::worker::{backoff, MIN_PAGE};
use super::{DeliveryError, Target};
use crate::config::SinkConfig;
use crate::store::{self, Store};

/// What `resend` did.
#[derive(Debug, Clone, Serialize)]
pub struct ResendReport {
    pub tenant: String,
    pub sink: String,
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// Attempts per batch when resending: a replay is interactive, so it gives up rather than
/// waiting forever.
const RESEND_ATTEMPTS: u32 = 5;

/// Sends the tenant's events with `seq > after` (at most `limit`) to the sink now, in order,
/// in the sink's batches. The sink's cursor does not move.
pub async fn resend(
    store: Store,
    tenant: &str,
    sink: &SinkConfig,
    after: u64,
    limit: Option<u64>,
) -> Result<ResendReport, (ResendReport, DeliveryError)> {
    let mut report = ResendReport {
        tenant: tenant.to_owned(),
        sink: sink.name.clone(),
        events: 0,
        first_seq: None,
        last_seq: None,
    };
    // Its own reopen counter: nobody signals a replay to reopen its file.
    let mut target = match Target::new(sink, &Arc::new(AtomicU64::new(0))) {
        Ok(target) => target,
        Err(err) => return Err((report, err)),
    };
    let mut after = after;
    let mut remaining = limit.unwrap_or(u64::MAX);
    while remaining > 0 {
        let page_size = (sink.batch_size.max(MIN_PAGE) as u64).min(remaining) as usize;
        let id = tenant.to_owned();
        let page = match store
            .run(move |conn| store::pending_events(conn, &id, after, page_size))
            .await
        {
            Ok(page) => page,
            Err(err) => return Err((report, err.into())),
        };
        if page.is_empty() {
            break;
        }
        for batch in page.chunks(sink.batch_size) {
            let mut attempt = 0;
            loop {
                match target.deliver(batch).await {
                    Ok(()) => break,
                    Err(err) if err.is_retryable() && attempt + 1 < RESEND_ATTEMPTS => {
                        attempt += 1;
                        warn!(tenant, sink = %sink.name, attempt, "resend failed, retrying: {err}");
                        tokio::time::sleep(backoff(attempt, sink.max_backoff, err.retry_after()))
                            .await;
                    }
                    Err(err) => return Err((report, err)),
                }
            }
            report.events += batch.len() as u64;
            report.first_seq = report.first_seq.or(Some(batch[0].seq));
            report.last_seq = Some(batch[batch.len() - 1].seq);
            after = batch[batch.len() - 1].seq;
        }
        remaining = remaining.saturating_sub(page.len() as u64);
    }
    Ok(report)
}
