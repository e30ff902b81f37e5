//! One sink's delivery loop: reads the tenant's outbox after the sink's cursor, hands it to the
//! sink in batches, and moves the cursor only after the sink acknowledged. The next batch waits
//! for the previous one; a failure is retried with capped exponential backoff and jitter
//! (forever unless `max_attempts`), a rejection is logged loudly, counted and either retried or
//! parked with the cursor held. Between rounds it waits for the commit feed or the poll
//! interval. It delivers only while it holds the (tenant, sink) delivery lease (`lease`):
//! without it, it waits and tries again, so two processes never deliver one sink at once.
//!
//! All SQL goes through [`Store::run`]. Must not: start or stop tasks (the supervisor does),
//! or write events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::lease::{HeldDelivery, RETRY};
use super::metrics::SinkMetrics;
use super::{DeliveryError, Target, POLL_INTERVAL};
use crate::config::{RejectPolicy, SinkConfig};
use crate::store::cluster::Advanced;
use crate::store::{self, Cursor, PendingEvent, Store, StoreError};

/// The first retry waits about this long; each further failure doubles it up to `max_backoff`.
const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Events read from the outbox at a time when batches are smaller than this.
pub(super) const MIN_PAGE: usize = 256;

/// The wait before retry number `attempt` (1-based): exponential from `BASE_BACKOFF`, capped
/// at `max`, with jitter over its upper half so many failing sinks do not retry in step; a
/// receiver's `Retry-After` (capped at `max`) is a lower bound.
pub fn backoff(attempt: u32, max: Duration, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let ceiling = BASE_BACKOFF.saturating_mul(1 << exponent).min(max);
    let jittered = ceiling.mul_f64(rand::rng().random_range(0.5..=1.0));
    jittered.max(retry_after.unwrap_or_default().min(max))
}

/// The result of delivering one sink's pending events once.
#[derive(Debug)]
pub struct PassReport {
    pub sink: String,
    pub delivered: u64,
    pub delivered_seq: u64,
    pub error: Option<DeliveryError>,
    /// Another process holds the sink's delivery lease (and delivers): nothing was done here.
    pub held_by: Option<String>,
}

/// What one sink's task owns.
pub(super) struct Worker {
    pub(super) store: Store,
    pub(super) tenant: String,
    pub(super) sink: SinkConfig,
    pub(super) target: Result<Target, DeliveryError>,
    pub(super) metrics: Arc<SinkMetrics>,
    /// This process's holder id for delivery leases.
    pub(super) holder: Arc<str>,
    pub(super) held: Option<HeldDelivery>,
}

/// Why a delivery round ended.
enum Stop {
    /// Nothing is pending.
    CaughtUp,
    /// The sink is parked (now or before).
    Parked(String),
    /// A failed attempt (in a single pass: give up; continuously: already waited, go on).
    Failed(DeliveryError),
    Cancelled,
    /// The delivery lease lapsed or was taken: another deliverer goes on.
    LeaseLost,
}

impl Worker {
    fn page_size(&self) -> usize {
        self.sink.batch_size.max(MIN_PAGE)
    }

    /// The long-lived task: deliver, wait for a commit (or the poll interval), repeat.
    pub(super) async fn run(
        &mut self,
        mut commits: watch::Receiver<u64>,
        cancel: &CancellationToken,
    ) {
        info!(tenant = %self.tenant, sink = %self.sink.name, "delivery started");
        let mut parked_logged = false;
        loop {
            if !self.hold_lease(cancel).await {
                break;
            }
            let lost = self
                .held
                .as_ref()
                .map_or_else(CancellationToken::new, |held| held.lost.clone());
            // Marked seen before the round reads the outbox, so a commit during the round
            // wakes the next wait instead of being lost.
            commits.borrow_and_update();
            match self.round(cancel, false).await {
                Stop::Cancelled => break,
                Stop::LeaseLost => {
                    warn!(tenant = %self.tenant, sink = %self.sink.name, "lost the delivery lease (it lapsed or another deliverer took it); waiting to take it again");
                    self.held = None;
                    continue;
                }
                Stop::CaughtUp => parked_logged = false,
                Stop::Parked(error) => {
                    if !parked_logged {
                        error!(tenant = %self.tenant, sink = %self.sink.name,
                            "delivery is parked after: {error}; fix the receiver, then run `dirsync deliver {} --unpark {}`",
                            self.tenant, self.sink.name);
                        parked_logged = true;
                    }
                }
                Stop::Failed(err) => {
                    // Store trouble: the loop itself retries after a pause.
                    warn!(tenant = %self.tenant, sink = %self.sink.name, "delivery paused: {err}");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = commits.changed() => {}
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = lost.cancelled() => {}
            }
        }
        if let Some(held) = self.held.take() {
            held.release().await;
        }
    }

    /// This sink's delivery lease, or the holder that has it.
    async fn try_acquire_lease(&self) -> Result<Result<HeldDelivery, String>, StoreError> {
        HeldDelivery::try_acquire(&self.store, &self.tenant, &self.sink.name, &self.holder).await
    }

    /// Returns once this worker holds the sink's delivery lease (true), or when cancelled
    /// (false). While another process holds it, tries again every second or so.
    async fn hold_lease(&mut self, cancel: &CancellationToken) -> bool {
        let mut waiting_for: Option<String> = None;
        loop {
            if self
                .held
                .as_ref()
                .is_some_and(|held| !held.lost.is_cancelled())
            {
                return true;
            }
            self.held = None;
            match self.try_acquire_lease().await {
                Ok(Ok(held)) => {
                    if waiting_for.is_some() {
                        info!(tenant = %self.tenant, sink = %self.sink.name, "took the delivery lease; delivering");
                    }
                    self.held = Some(held);
                    return true;
                }
                Ok(Err(other)) => {
                    if waiting_for.as_deref() != Some(other.as_str()) {
                        info!(tenant = %self.tenant, sink = %self.sink.name, holder = %other,
                            "another process delivers this sink; waiting for its delivery lease");
                        waiting_for = Some(other);
                    }
                }
                Err(err) => {
                    warn!(tenant = %self.tenant, sink = %self.sink.name, "cannot take the delivery lease: {err}");
                }
            }
            let wait = RETRY.mul_f64(rand::rng().random_range(0.8..=1.2));
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    pub(super) async fn pass_once(&mut self) -> PassReport {
        let before = self.metrics.delivered.load(Ordering::Relaxed);
        let mut held_by = None;
        let stop = match self.try_acquire_lease().await {
            Ok(Ok(held)) => {
                self.held = Some(held);
                let stop = self.round(&CancellationToken::new(), true).await;
                if let Some(held) = self.held.take() {
                    held.release().await;
                }
                stop
            }
            Ok(Err(other)) => {
                held_by = Some(other);
                Stop::CaughtUp
            }
            Err(err) => Stop::Failed(err.into()),
        };
        if matches!(stop, Stop::LeaseLost) {
            held_by = Some("another process".to_owned());
        }
        let (tenant, sink) = (self.tenant.clone(), self.sink.name.clone());
        let delivered_seq = self
            .store
            .run(move |conn| Ok(store::load_cursor(conn, &tenant, &sink)?.unwrap_or_default()))
            .await
            .map(|c| c.delivered_seq)
            .unwrap_or_default();
        PassReport {
            sink: self.sink.name.clone(),
            delivered: self.metrics.delivered.load(Ordering::Relaxed) - before,
            delivered_seq,
            held_by,
            error: match stop {
                Stop::CaughtUp | Stop::Cancelled | Stop::LeaseLost => None,
                Stop::Parked(last_error) => Some(DeliveryError::Parked {
                    tenant: self.tenant.clone(),
                    sink: self.sink.name.clone(),
                    last_error,
                }),
                Stop::Failed(err) => Some(err),
            },
        }
    }

    async fn cursor(&self) -> Result<(Cursor, store::Lag), StoreError> {
        let (tenant, sink) = (self.tenant.clone(), self.sink.name.clone());
        self.store
            .run(move |conn| {
                let cursor = store::ensure_cursor(conn, &tenant, &sink)?;
                let lag = store::cursors::lag(conn, &tenant, cursor.delivered_seq)?;
                Ok((cursor, lag))
            })
            .await
    }

    fn set_lag(&self, lag: store::Lag) {
        self.metrics.lag_events.store(lag.events, Ordering::Relaxed);
        self.metrics
            .oldest_pending_at
            .store(lag.oldest_pending_at.unwrap_or(0), Ordering::Relaxed);
    }

    /// Delivers until nothing is pending. `single`: the first failure ends the round; else
    /// failures are retried here with backoff until success, parking or cancellation.
    async fn round(&mut self, cancel: &CancellationToken, single: bool) -> Stop {
        let Some((lease, lost)) = self
            .held
            .as_ref()
            .map(|held| (held.lease.clone(), held.lost.clone()))
        else {
            return Stop::LeaseLost;
        };
        let (mut cursor, lag) = match self.cursor().await {
            Ok(found) => found,
            Err(err) => return Stop::Failed(err.into()),
        };
        self.set_lag(lag);
        self.metrics.parked.store(cursor.parked, Ordering::Relaxed);
        if cursor.parked {
            return Stop::Parked(cursor.last_error.unwrap_or_default());
        }
        if let Err(err) = &self.target {
            // Not parked in the database: a restart with a working setup simply delivers.
            let message = err.to_string();
            self.record_failure(&message, false).await;
            return Stop::Parked(message);
        }
        loop {
            let (tenant, after, limit) =
                (self.tenant.clone(), cursor.delivered_seq, self.page_size());
            let page = match self
                .store
                .run(move |conn| store::pending_events(conn, &tenant, after, limit))
                .await
            {
                Ok(page) => page,
                Err(err) => return Stop::Failed(err.into()),
            };
            if page.is_empty() {
                self.set_lag(store::Lag::default());
                return Stop::CaughtUp;
            }
            for (index, batch) in page.chunks(self.sink.batch_size).enumerate() {
                let mut attempt = 0u32;
                loop {
                    let result = tokio::select! {
                        () = cancel.cancelled() => return Stop::Cancelled,
                        () = lost.cancelled() => return Stop::LeaseLost,
                        result = self.deliver(batch) => result,
                    };
                    match result {
                        Ok(()) => break,
                        Err(err) => {
                            attempt += 1;
                            self.metrics.failures.fetch_add(1, Ordering::Relaxed);
                            let rejected = matches!(err, DeliveryError::Rejected { .. });
                            if rejected {
                                self.metrics.rejections.fetch_add(1, Ordering::Relaxed);
                            }
                            let park = (rejected && self.sink.on_reject() == RejectPolicy::Park)
                                || self.sink.max_attempts.is_some_and(|max| attempt >= max)
                                || !matches!(
                                    err,
                                    DeliveryError::Rejected { .. }
                                        | DeliveryError::Unavailable { .. }
                                );
                            let message = format!(
                                "delivering seq {}..={}: {err}",
                                batch[0].seq,
                                batch[batch.len() - 1].seq
                            );
                            if rejected {
                                error!(tenant = %self.tenant, sink = %self.sink.name, attempt, "{message}");
                            } else {
                                warn!(tenant = %self.tenant, sink = %self.sink.name, attempt, "{message}");
                            }
                            self.record_failure(&message, park).await;
                            if park {
                                self.metrics.parked.store(true, Ordering::Relaxed);
                                return Stop::Parked(message);
                            }
                            if single {
                                return Stop::Failed(err);
                            }
                            let wait = backoff(attempt, self.sink.max_backoff, err.retry_after());
                            tokio::select! {
                                () = cancel.cancelled() => return Stop::Cancelled,
                                () = lost.cancelled() => return Stop::LeaseLost,
                                () = tokio::time::sleep(wait) => {}
                            }
                            self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                let to = batch[batch.len() - 1].seq;
                let (lease, from) = (lease.clone(), cursor.delivered_seq);
                match self
                    .store
                    .run(move |conn| store::cluster::advance_cursor_leased(conn, &lease, from, to))
                    .await
                {
                    Ok(Advanced::LeaseLost) => return Stop::LeaseLost,
                    Ok(Advanced::Moved) => {
                        cursor.delivered_seq = to;
                        self.metrics
                            .delivered
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let lag = self.metrics.lag_events.load(Ordering::Relaxed);
                        self.metrics
                            .lag_events
                            .store(lag.saturating_sub(batch.len() as u64), Ordering::Relaxed);
                        let next = page.get((index + 1) * self.sink.batch_size);
                        self.metrics
                            .oldest_pending_at
                            .store(next.map_or(0, |e| e.occurred_at), Ordering::Relaxed);
                    }
                    Ok(Advanced::CursorMoved) => {
                        // Another process moved this cursor (it delivered these events too):
                        // continue from where it got to rather than overwrite its progress.
                        warn!(tenant = %self.tenant, sink = %self.sink.name,
                            "the delivery cursor was moved by another process; is a second dirsync delivering to this sink?");
                        return Stop::CaughtUp;
                    }
                    Err(err) => return Stop::Failed(err.into()),
                }
            }
        }
    }

    async fn deliver(&mut self, batch: &[PendingEvent]) -> Result<(), DeliveryError> {
        match &mut self.target {
            Ok(target) => target.deliver(batch).await,
            Err(err) => Err(DeliveryError::Config(err.to_string())),
        }
    }

    async fn record_failure(&self, message: &str, park: bool) {
        let (tenant, sink, message) = (
            self.tenant.clone(),
            self.sink.name.clone(),
            message.to_owned(),
        );
        if let Err(err) = self
            .store
            .run(move |conn| store::record_delivery_error(conn, &tenant, &sink, &message, park))
            .await
        {
            warn!(tenant = %self.tenant, sink = %self.sink.name, "cannot record the delivery error: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let max = Duration::from_secs(10);
        for attempt in 1..40 {
            let wait = backoff(attempt, max, None);
            assert!(wait <= max, "attempt {attempt}: {wait:?}");
            let ceiling = BASE_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(max);
            assert!(wait >= ceiling / 2, "attempt {attempt}: {wait:?}");
        }
        assert_eq!(
            backoff(1, max, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(backoff(1, max, Some(Duration::from_secs(70))), max);
    }
}
