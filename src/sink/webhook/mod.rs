//! The webhook sink: POSTs events as JSON, signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>), so a consumer can verify deliveries with any Standard
//! Webhooks library. `message` is what goes on the wire (id, body; the signature is
//! `crate::signing`'s), `sink` how it is sent and how the answer is read. Its config (`url`,
//! the signing key parsed once) is `config::WebhookSinkConfig`; the tests check every
//! signature with the independent Python implementation (PyPI `standardwebhooks`). Must not: touch cursors or the store (the worker does).

mod message;
mod sink;

pub use message::{body, message_id};
pub use sink::WebhookSink;
