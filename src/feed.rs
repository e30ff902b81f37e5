//! The commit feed: per tenant, the seq of its last committed event, announced after every
//! commit. One feed per process, shared by whoever commits (the daemon's runs) and whoever waits
//! for new events (sink delivery tasks, the events API's long-polls, daemon extensions).
//!
//! A leaf module: it knows nothing of the store or the daemon, and must not grow into a queue
//! of events. Commits made by another process are not announced here; waiters poll the store
//! for those.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// Cheap to clone; every clone is the same feed.
#[derive(Debug, Clone, Default)]
pub struct CommitFeed {
    tenants: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl CommitFeed {
    fn sender(&self, tenant: &str) -> watch::Sender<u64> {
        lock(&self.tenants)
            .entry(tenant.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    /// A receiver whose value is the tenant's last committed seq (0 until known). Subscribe
    /// before reading the store, so a commit between the read and the wait is not missed.
    pub fn subscribe(&self, tenant: &str) -> watch::Receiver<u64> {
        self.sender(tenant).subscribe()
    }

    /// The tenant's last announced seq (0 until known).
    pub fn last_seq(&self, tenant: &str) -> u64 {
        *self.sender(tenant).borrow()
    }

    /// Called after a commit: wakes every subscriber if `last_seq` moved forward. A stale or
    /// repeated announcement wakes nobody, so a seq seeded from the store at start-up never
    /// goes backwards.
    pub fn publish(&self, tenant: &str, last_seq: u64) {
        self.sender(tenant).send_if_modified(|seq| {
            let moved = last_seq > *seq;
            if moved {
                *seq = last_seq;
            }
            moved
        });
    }
}

/// A poisoned lock only means a task panicked mid-update of plain data; keep going. (Leaves
/// import nothing of dirsync, so this is not `crate::mutex::lock`.)
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn commits_wake_subscribers_only_when_the_seq_moves_forward() {
        let commits = CommitFeed::default();
        let mut feed = commits.subscribe("acme");
        assert_eq!(*feed.borrow_and_update(), 0);
        commits.publish("acme", 5);
        assert!(feed.has_changed().unwrap());
        assert_eq!(*feed.borrow_and_update(), 5);
        commits.publish("acme", 5);
        commits.publish("acme", 3);
        assert!(!feed.has_changed().unwrap());
        assert_eq!(*commits.subscribe("acme").borrow(), 5);
        assert_eq!(commits.last_seq("acme"), 5);
    }
}
