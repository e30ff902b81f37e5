//! The daemon as one node of several sharing a store: it registers itself in the store's node
//! list, says it is alive every [`HEARTBEAT`] and deregisters on a graceful stop; and, on
//! PostgreSQL, one listener per process turns other nodes' commit notifications into the
//! process's [`CommitFeed`] announcements, so local deliverers wake at once rather than at
//! their next poll (which stays the fallback).
//!
//! Must not: speak SQL (the store's `cluster` functions do) or decide what runs.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::feed::CommitFeed;
use crate::store::{self, Store};

/// How often a node marks itself seen.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long a listener waits for a notification before looking at `stop` again.
const LISTEN_TICK: Duration = Duration::from_millis(500);

/// The longest pause between reconnection attempts of a listener.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// This process as a node: its id (a lease-holder-style id, `pid N uid U on HOST (ULID)`).
#[derive(Debug, Clone)]
pub struct NodeId {
    pub id: String,
    host: String,
    pid: u32,
}

impl NodeId {
    pub fn new() -> Self {
        Self {
            id: store::new_holder(),
            host: store::host_name(),
            pid: std::process::id(),
        }
    }
}

impl Default for NodeId {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers the node now and keeps it seen until `stop`, then removes it.
pub async fn register(
    store: &Store,
    node: &NodeId,
    stop: CancellationToken,
    tracker: &TaskTracker,
) {
    let (id, host, pid) = (node.id.clone(), node.host.clone(), node.pid);
    if let Err(err) = store
        .run(move |conn| store::cluster::register_node(conn, &id, &host, pid))
        .await
    {
        warn!("cannot register this node in the store: {err}; `status` will not list it");
    }
    let (store, node) = (store.clone(), node.clone());
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let (id, host, pid) = (node.id.clone(), node.host.clone(), node.pid);
            if let Err(err) = store
                .run(move |conn| store::cluster::node_seen(conn, &id, &host, pid))
                .await
            {
                warn!("cannot mark this node as seen in the store: {err}");
            }
        }
        let id = node.id.clone();
        if let Err(err) = store
            .run(move |conn| store::cluster::remove_node(conn, &id))
            .await
        {
            warn!("cannot remove this node from the store: {err}");
        }
    });
}

/// On PostgreSQL: a thread that listens for commits of every node and publishes the committed
/// tenant's last seq on `commits` until `stop`. Nothing on SQLite.
pub fn spawn_commit_listener(store: &Store, commits: CommitFeed, stop: CancellationToken) {
    if store.backend() != store::Backend::Postgres {
        return;
    }
    let store = store.clone();
    // A thread of its own: it holds its connection and waits in it for as long as it runs.
    let spawned = std::thread::Builder::new()
        .name("dirsync-listen".into())
        .spawn(move || listen(&store, &commits, &stop));
    if let Err(err) = spawned {
        warn!("cannot start the commit listener: {err}; deliverers find other nodes' commits by polling");
    }
}

fn listen(store: &Store, commits: &CommitFeed, stop: &CancellationToken) {
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        let conn = match store.dedicated_postgres() {
            Ok(Some(conn)) => conn,
            Ok(None) => return,
            Err(err) => {
                failures += 1;
                pause(failures, &format!("cannot connect: {err}"), stop);
                continue;
            }
        };
        if let Err(err) = store::cluster::listen_for_commits(&conn) {
            failures += 1;
            pause(failures, &format!("LISTEN failed: {err}"), stop);
            continue;
        }
        if failures > 0 {
            info!("the commit listener is connected again");
        }
        failures = 0;
        while !stop.is_cancelled() {
            match store::cluster::next_commit(&conn, LISTEN_TICK) {
                Ok(None) => {}
                Ok(Some(tenant)) => announce(store, commits, &tenant),
                Err(err) => {
                    failures += 1;
                    pause(failures, &format!("the connection failed: {err}"), stop);
                    break;
                }
            }
        }
    }
}

/// Reads the tenant's last seq and announces it (a commit of this process was announced
/// already: publishing the same seq again wakes nobody).
fn announce(store: &Store, commits: &CommitFeed, tenant: &str) {
    match store.run_blocking(|conn| store::last_seq(conn, tenant)) {
        Ok(seq) => {
            debug!(tenant, seq, "commit notification");
            commits.publish(tenant, seq);
        }
        Err(err) => debug!(tenant, "cannot read the notified tenant's last seq: {err}"),
    }
}

/// Waits before reconnecting: 1 s doubling up to [`MAX_RECONNECT_BACKOFF`], or until `stop`.
fn pause(failures: u32, why: &str, stop: &CancellationToken) {
    let wait = Duration::from_secs(1)
        .saturating_mul(1 << failures.saturating_sub(1).min(5))
        .min(MAX_RECONNECT_BACKOFF);
    warn!(
        "commit listener: {why}; retrying in {}s (deliverers poll meanwhile)",
        wait.as_secs()
    );
    let until = std::time::Instant::now() + wait;
    while !stop.is_cancelled() && std::time::Instant::now() < until {
        std::thread::sleep(
            LISTEN_TICK.min(until.saturating_duration_since(std::time::Instant::now())),
        );
    }
}
