//! One deliverer per (tenant, sink) across processes and nodes: a worker delivers only while it
//! holds the pair's delivery lease, renewed in the background, and moves the cursor only with
//! the lease checked in the same transaction (`store::cluster::advance_cursor_leased`). A
//! worker whose lease was taken (it paused past the expiry) learns it from the renewal or the
//! cursor update and goes back to waiting.
//!
//! Must not: deliver, or run SQL other than through [`Store::run`].

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::cluster::{self, DeliveryLease};
use crate::store::{Store, StoreError};

/// How long a delivery lease lasts without renewal: a deliverer that died holds its sink this
/// long.
pub const DELIVERY_LEASE_TTL: Duration = Duration::from_secs(30);

/// How often a held lease is renewed: well within its TTL, so one slow renewal is no loss.
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// How long a worker waits before trying again for a lease someone else holds.
pub const RETRY: Duration = Duration::from_secs(1);

/// A delivery lease held by this worker, renewed until released or dropped.
pub struct HeldDelivery {
    store: Store,
    pub lease: DeliveryLease,
    /// Cancelled when a renewal finds that another deliverer took the lease.
    pub lost: CancellationToken,
    stop_renewal: CancellationToken,
    renewal: JoinHandle<()>,
}

impl HeldDelivery {
    /// Takes the lease if it is free; `Ok(Err(holder))` says who holds it otherwise.
    pub async fn try_acquire(
        store: &Store,
        tenant: &str,
        sink: &str,
        holder: &str,
    ) -> Result<Result<Self, String>, StoreError> {
        let (t, s, h) = (tenant.to_owned(), sink.to_owned(), holder.to_owned());
        let taken = store
            .run(move |conn| cluster::acquire_delivery_lease(conn, &t, &s, &h, DELIVERY_LEASE_TTL))
            .await?;
        let lease = match taken {
            Ok(lease) => lease,
            // A deliverer on this host that died (kill -9) need not be waited out.
            Err(other) if cluster::holder_is_gone(&other) => {
                let (t, s, h, from) = (
                    tenant.to_owned(),
                    sink.to_owned(),
                    holder.to_owned(),
                    other.clone(),
                );
                let taken = store
                    .run(move |conn| {
                        cluster::take_over_delivery_lease(
                            conn,
                            &t,
                            &s,
                            &from,
                            &h,
                            DELIVERY_LEASE_TTL,
                        )
                    })
                    .await?;
                match taken {
                    Some(lease) => {
                        warn!(tenant, sink, "took over the delivery lease of {other}: that process is no longer running on this host");
                        lease
                    }
                    None => return Ok(Err(other)),
                }
            }
            Err(other) => return Ok(Err(other)),
        };
        let (lost, stop_renewal) = (CancellationToken::new(), CancellationToken::new());
        let renewal = tokio::spawn(renew(
            store.clone(),
            lease.clone(),
            lost.clone(),
            stop_renewal.clone(),
        ));
        Ok(Ok(Self {
            store: store.clone(),
            lease,
            lost,
            stop_renewal,
            renewal,
        }))
    }

    /// Stops the renewal, then gives the lease back so another deliverer can start at once.
    pub async fn release(mut self) {
        self.stop_renewal.cancel();
        let _ = (&mut self.renewal).await;
        let lease = self.lease.clone();
        if let Err(err) = self
            .store
            .run(move |conn| cluster::release_delivery_lease(conn, &lease))
            .await
        {
            warn!(tenant = %self.lease.tenant, sink = %self.lease.sink, "cannot release the delivery lease: {err}; it lapses in {}s", DELIVERY_LEASE_TTL.as_secs());
        }
    }
}

impl Drop for HeldDelivery {
    fn drop(&mut self) {
        self.stop_renewal.cancel();
    }
}

async fn renew(
    store: Store,
    lease: DeliveryLease,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
        let held = lease.clone();
        match store
            .run(move |conn| cluster::renew_delivery_lease(conn, &held))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                warn!(tenant = %lease.tenant, sink = %lease.sink, "the delivery lease was taken by another deliverer; stopping delivery here");
                lost.cancel();
                return;
            }
            // The cursor update checks the lease too; a lapse is found there at the latest.
            Err(err) => {
                warn!(tenant = %lease.tenant, sink = %lease.sink, "cannot renew the delivery lease: {err}")
            }
        }
    }
}
