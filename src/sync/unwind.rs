//! Panics inside a run, caught: a bug in dirsync or a dependency, provoked by what an IdP sent,
//! must fail that one run (recorded, its lease given back), not the process or the tenant's
//! task. Also the test-only fault that provokes one.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future whose panic is returned as `Err(message)` instead of unwinding further.
pub struct CatchUnwind<F>(Pin<Box<F>>);

/// Polls `future`, turning a panic during any poll into `Err` with the panic's message.
pub fn catch_unwind_future<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind(Box::pin(future))
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Unwind safety: after a panic the inner future is never polled again, and what it
        // shared (the store, the lease) is designed to survive an abandoned run.
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

/// The text a panic was raised with.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

/// The environment variable of the test-only fault: a run of the tenant it names panics
/// (tests of panic survival; a genuine panic has no reproducible trigger once fixed). Only
/// debug builds (what the tests run) read it; a release binary has no such trigger.
pub const PANIC_FAULT_ENV: &str = "DIRSYNC_TEST_PANIC_IN_RUN";

/// Panics when [`PANIC_FAULT_ENV`] names `tenant`.
pub fn injected_panic(tenant: &str) {
    if cfg!(debug_assertions) && std::env::var(PANIC_FAULT_ENV).is_ok_and(|value| value == tenant) {
        panic!("injected by {PANIC_FAULT_ENV} for tenant {tenant}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_future_is_returned_with_its_message() {
        let ok = catch_unwind_future(async { 7 }).await;
        assert_eq!(ok, Ok(7));
        let caught = catch_unwind_future(async {
            tokio::task::yield_now().await;
            let text = String::from("boom");
            if !text.is_empty() {
                panic!("{text} at runtime");
            }
        })
        .await;
        assert_eq!(caught, Err("boom at runtime".to_owned()));
    }
}
