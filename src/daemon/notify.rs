//! systemd notifications (`Type=notify`): READY=1 once the sockets are bound and the tenants
//! scheduled, RELOADING=1 (with MONOTONIC_USEC, as `Type=notify-reload` wants) around a reload,
//! STOPPING=1 on shutdown, and WATCHDOG=1 from a task that stops pinging when the supervisor
//! loop stops ticking. Without `NOTIFY_SOCKET` every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, error};

use super::Shared;

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(false, states) {
        debug!("systemd notification failed: {err}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its interval while the daemon is alive (`WatchdogSec=`).
pub fn spawn_watchdog(shared: Arc<Shared>) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let interval = Duration::from_micros(usec) / 2;
    let stop = shared.shutdown.clone();
    let tracker = shared.tracker.clone();
    tracker.spawn(async move {
        let mut announced = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if shared.alive() {
                send(&[NotifyState::Watchdog]);
                announced = false;
            } else if !announced {
                error!("the scheduler stopped ticking: no longer pinging the systemd watchdog");
                announced = true;
            }
        }
    });
}
