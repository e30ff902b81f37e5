//! The daemon's run slots (`max_concurrent_runs`): a due run waits for its slots, and slots go
//! to the runs that waited longest (the semaphore is fair, so a large run first in line is
//! not overtaken by small ones).
//!
//! A run of a small directory takes one slot: most of its time is spent waiting on the IdP,
//! so a node of thousands of small tenants on a short schedule needs many at once. A large
//! directory's run takes one slot per [`OBJECTS_PER_SLOT`] stored objects, at most a quarter
//! of them, so the same bound also caps how many large directories a node holds in memory at
//! once (with the default 64: four of a million objects, or twelve of 100k).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Stored users, groups and memberships a run may hold per slot.
pub const OBJECTS_PER_SLOT: u64 = 25_000;

#[derive(Clone)]
pub struct RunSlots {
    semaphore: Arc<Semaphore>,
    capacity: u32,
}

impl RunSlots {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Self {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity: capacity as u32,
        }
    }

    /// How many slots a run of a directory of `stored_objects` takes.
    pub fn weight(&self, stored_objects: u64) -> u32 {
        let wanted = stored_objects.div_ceil(OBJECTS_PER_SLOT).max(1);
        wanted.min(u64::from((self.capacity / 4).max(1))) as u32
    }

    /// Waits for the slots of a run of `stored_objects`; held until the permit is dropped.
    pub async fn acquire(&self, stored_objects: u64) -> Option<OwnedSemaphorePermit> {
        self.semaphore
            .clone()
            .acquire_many_owned(self.weight(stored_objects))
            .await
            .ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn small_runs_take_one_slot_and_large_ones_up_to_a_quarter() {
        let slots = RunSlots::new(64);
        assert_eq!(slots.weight(0), 1);
        assert_eq!(slots.weight(1_110), 1);
        assert_eq!(slots.weight(25_000), 1);
        assert_eq!(slots.weight(25_001), 2);
        assert_eq!(slots.weight(110_000), 5);
        assert_eq!(slots.weight(1_110_000), 16);
        assert_eq!(RunSlots::new(1).weight(1_110_000), 1);
        assert_eq!(RunSlots::new(3).weight(1_110_000), 1);
        assert_eq!(RunSlots::new(16).weight(1_110_000), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_run_first_in_line_is_not_overtaken() {
        let slots = RunSlots::new(8);
        let small = slots.acquire(10).await.unwrap();
        let waiting_large = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(1_000_000).await.unwrap() }
        });
        tokio::task::yield_now().await;
        // The large run wants 2 of the 7 free: it gets them at once.
        let large = waiting_large.await.unwrap();
        assert_eq!(large.num_permits(), 2);
        let mut rest = Vec::new();
        for _ in 0..5 {
            rest.push(slots.acquire(10).await.unwrap());
        }
        // All 8 taken: the next large run waits, and a small one behind it waits too.
        let next_large = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(1_000_000).await.unwrap() }
        });
        tokio::task::yield_now().await;
        let behind = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire(10).await.unwrap() }
        });
        tokio::task::yield_now().await;
        drop(small);
        tokio::task::yield_now().await;
        assert!(
            !behind.is_finished(),
            "the small run does not overtake the large one"
        );
        drop(rest.pop());
        let next_large = next_large.await.unwrap();
        assert_eq!(next_large.num_permits(), 2);
        drop(large);
        assert_eq!(behind.await.unwrap().num_permits(), 1);
    }
}
