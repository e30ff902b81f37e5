//! Deadline waits: poll a condition until it holds or a deadline passes. Tests wait for a
//! condition, never for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `condition` every 20 ms until it holds; panics with `what` after `seconds`.
pub async fn wait_for<F, Fut>(seconds: u64, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The blocking form of [`wait_for`], for tests without a runtime.
pub fn wait_until(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    wait_until_or(what, timeout, condition, String::new);
}

/// Like [`wait_until`], adding `context()` (e.g. a process's log) to the failure.
pub fn wait_until_or(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
