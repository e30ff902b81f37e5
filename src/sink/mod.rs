//! Event delivery: reads each tenant's outbox in `seq` order and hands it to the tenant's
//! `[[sinks]]`, one task per tenant and sink, each with its own cursor in the database.
//! Delivery is at least once: a crash between the acknowledgement and the cursor update
//! redelivers the same events with the same ids.
//!
//! Components, one concept per file: a folder per sink kind with its delivery code (`webhook`,
//! `jsonl`; their TOML is parsed by `config::sink`), the delivery loop of one sink (`worker`),
//! the tasks of every tenant (`supervisor`), replay (`resend`), `dirsync status`'s view
//! (`status`), the delivery metrics (`metrics`) and the events API (`api`). This file holds
//! only what they share: the error type and the dispatch over sink kinds.
//!
//! Must not: write events or touch the snapshot (only the store's cursor functions), import
//! `daemon` or `sync`, or run SQL other than through [`crate::store::Store::run`].

pub mod api;
mod jsonl;
mod lease;
mod metrics;
mod resend;
mod status;
mod supervisor;
pub mod webhook;
mod worker;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{SinkConfig, SinkKind};
use crate::store::{PendingEvent, StoreError};

pub use resend::{resend, ResendReport};
pub use status::{sink_statuses, SinkStatus};
pub use supervisor::Deliveries;
pub use worker::{backoff, PassReport};

/// How often an idle task looks at the database for events committed by another process (the
/// commit feed wakes it sooner for commits of this process).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver or file is not available now; retrying can help.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The receiver refused the events (a 4xx other than 408/429, or a redirect).
    #[error("{message} — the receiver rejected the events; fix the receiver (or its URL), the cursor is held")]
    Rejected { status: u16, message: String },
    /// The sink is parked; an operator must unpark it.
    #[error("sink {sink} of tenant {tenant} is parked after: {last_error}; fix the receiver, then run `dirsync deliver {tenant} --unpark {sink}`")]
    Parked {
        tenant: String,
        sink: String,
        last_error: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl DeliveryError {
    /// Whether sending the same events again can succeed without anyone acting.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DeliveryError::Unavailable { .. } | DeliveryError::Store(_)
        )
    }

    /// How long the receiver asked us to wait (`Retry-After`), if it did.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Where one sink's events go: enum-dispatched so the delivery loop is one piece of code.
enum Target {
    Webhook(webhook::WebhookSink),
    Jsonl(jsonl::JsonlSink),
}

impl Target {
    /// `reopen`: the process's reopen counter (SIGHUP), watched by JSON-lines sinks.
    fn new(sink: &SinkConfig, reopen: &Arc<AtomicU64>) -> Result<Self, DeliveryError> {
        Ok(match &sink.kind {
            SinkKind::Webhook(config) => {
                Target::Webhook(webhook::WebhookSink::new(config, sink.batch_size)?)
            }
            SinkKind::Jsonl(config) => {
                Target::Jsonl(jsonl::JsonlSink::new(config.path.clone(), reopen.clone()))
            }
        })
    }

    async fn deliver(&mut self, events: &[PendingEvent]) -> Result<(), DeliveryError> {
        match self {
            Target::Webhook(sink) => sink.deliver(events).await,
            Target::Jsonl(sink) => sink.deliver(events).await,
        }
    }
}
