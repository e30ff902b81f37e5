//! The tenant's lease for the length of one run: waiting for it while another process holds
//! it, renewing it in the background while the run works, and releasing it only after the
//! renewal has stopped, so a renewal can never race the release (and report a lost lease that
//! was in fact given back).
//!
//! While it waits it says so, and for whom, at `warn` (visible by default: a `dirsync sync`
//! that seems to hang is the worst kind of silent). A holder on this host whose process is gone
//! (killed, crashed) has its lease taken over at once rather than waited out.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::SyncError;
use crate::source::SourceError;
use crate::store::{self, Lease, LeaseError, Store, StoreError};

/// How long a lease lasts without renewal; a crashed holder blocks its tenant this long.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// The test-only override of [`LEASE_TTL`], in milliseconds: fault tests (a node stopped past
/// its lease) cannot wait out a minute per case. Not a tuning knob: a short lease only makes
/// a slow but healthy holder lose its tenant.
pub const LEASE_TTL_ENV: &str = "DIRSYNC_TEST_LEASE_TTL_MS";

/// The lease ttl of this process: [`LEASE_TTL`] unless [`LEASE_TTL_ENV`] names another.
pub fn lease_ttl() -> Duration {
    std::env::var(LEASE_TTL_ENV)
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(LEASE_TTL, Duration::from_millis)
}

/// A lease held by this run and renewed until [`HeldLease::release`].
pub struct HeldLease {
    store: Store,
    lease: Lease,
    stop_renewal: CancellationToken,
    renewal: JoinHandle<()>,
}

impl HeldLease {
    /// Takes the tenant's lease, waiting while another process holds it.
    pub async fn acquire(
        store: &Store,
        tenant: &str,
        cancel: &CancellationToken,
    ) -> Result<Self, SyncError> {
        let lease = wait_for_lease(store, tenant, cancel).await?;
        let stop_renewal = CancellationToken::new();
        let renewal = tokio::spawn(renew_until_stopped(
            store.clone(),
            lease.clone(),
            stop_renewal.clone(),
        ));
        Ok(Self {
            store: store.clone(),
            lease,
            stop_renewal,
            renewal,
        })
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Stops the renewal, waits until it has stopped, then gives the lease back.
    pub async fn release(mut self) {
        self.stop_renewal.cancel();
        let _ = (&mut self.renewal).await;
        if let Err(err) = self.store.release(&self.lease).await {
            warn!(tenant = %self.lease.tenant, "cannot release the sync lease: {err}");
        }
    }
}

impl Drop for HeldLease {
    /// A run dropped without `release` (a panic) stops renewing; the lease then lapses.
    fn drop(&mut self) {
        self.stop_renewal.cancel();
    }
}

async fn wait_for_lease(
    store: &Store,
    tenant: &str,
    cancel: &CancellationToken,
) -> Result<Lease, SyncError> {
    let holder = store::new_holder();
    let ttl = lease_ttl();
    let mut announced = false;
    let mut wait = Duration::from_millis(50);
    loop {
        match store.try_lease(tenant, &holder, ttl).await {
            Ok(lease) => return Ok(lease),
            Err(StoreError::Lease(err)) => {
                if let LeaseError::Held { holder: other, .. } = &err {
                    if store::cluster::holder_is_gone(other) {
                        if let Some(lease) =
                            store.take_over_lease(tenant, other, &holder, ttl).await?
                        {
                            warn!(tenant, "took over the sync lease of {other}: that process is no longer running on this host");
                            return Ok(lease);
                        }
                        // Someone else took it meanwhile: wait for them.
                        continue;
                    }
                }
                if !announced {
                    warn!(tenant, "waiting for the sync lease: {err}");
                    announced = true;
                }
            }
            Err(err) => return Err(err.into()),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = cancel.cancelled() => return Err(SyncError::Source(SourceError::Cancelled)),
        }
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

async fn renew_until_stopped(store: Store, lease: Lease, stop: CancellationToken) {
    let mut interval = tokio::time::interval(lease.ttl / 4);
    // A process resumed after a pause (SIGSTOP, a suspended VM) renews once, not once per
    // tick it slept through.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        match store.renew(&lease).await {
            Ok(()) => {}
            // Another holder has it: renewing again cannot succeed, and the commit's own
            // check fails the run.
            Err(err @ StoreError::Lease(LeaseError::Lost { .. })) => {
                warn!(tenant = %lease.tenant, "cannot renew the sync lease: {err}");
                return;
            }
            Err(err) => warn!(tenant = %lease.tenant, "cannot renew the sync lease: {err}"),
        }
    }
}
