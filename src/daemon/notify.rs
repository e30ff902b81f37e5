//! systemd notifications (`Type=notify`): READY=1 once the sockets are bound and the tenants
//! scheduled, RELOADING=1 (with MONOTONIC_USEC, as `Type=notify-reload` wants) around a reload,
//! STOPPING=1 on shutdown, and WATCHDOG=1 from a task that stops pinging when the supervisor
//! loop stops ticking. Without `NOTIFY_SOCKET` every call is a no-op.
//!
//! Sending to the notify socket is a blocking datagram send that waits while the receiver's
//! queue is full, so it never runs on an async worker thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, error};

use super::Shared;

#[derive(Debug, Clone, Copy)]
enum Message {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
}

fn send_blocking(message: Message, status: &str) {
    let result = match message {
        Message::Ready => {
            sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(status)])
        }
        Message::Reloading => match NotifyState::monotonic_usec_now() {
            Ok(now) => sd_notify::notify(false, &[NotifyState::Reloading, now]),
            Err(_) => sd_notify::notify(false, &[NotifyState::Reloading]),
        },
        Message::Stopping => {
            sd_notify::notify(false, &[NotifyState::Stopping, NotifyState::Status(status)])
        }
        Message::Watchdog => sd_notify::notify(false, &[NotifyState::Watchdog]),
    };
    if let Err(err) = result {
        debug!("systemd notification failed: {err}");
    }
}

/// Sends in order: returns once the message is sent, failed, or was stuck for 2 s.
async fn send(message: Message, status: String) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let sending = tokio::task::spawn_blocking(move || send_blocking(message, &status));
    if tokio::time::timeout(Duration::from_secs(2), sending)
        .await
        .is_err()
    {
        error!("systemd's notify socket does not take {message:?}; going on without it");
    }
}

pub async fn ready(status: &str) {
    send(Message::Ready, status.to_owned()).await;
}

pub async fn reloading() {
    send(Message::Reloading, String::new()).await;
}

pub async fn stopping() {
    send(Message::Stopping, "stopping".to_owned()).await;
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
    // At most one ping in flight: a receiver that stopped reading must not pile up threads.
    let in_flight = Arc::new(AtomicBool::new(false));
    tracker.spawn(async move {
        let mut announced = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if shared.alive() {
                if !in_flight.swap(true, Ordering::AcqRel) {
                    let done = in_flight.clone();
                    // Not awaited and not tracked: shutdown must not wait for a stuck socket.
                    tokio::task::spawn_blocking(move || {
                        send_blocking(Message::Watchdog, "");
                        done.store(false, Ordering::Release);
                    });
                }
                announced = false;
            } else if !announced {
                error!("the scheduler stopped ticking: no longer pinging the systemd watchdog");
                announced = true;
            }
        }
    });
}
