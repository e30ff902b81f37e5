//! The webhook sink: POSTs events as JSON, signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>), so a consumer can verify deliveries with any Standard
//! Webhooks library.
//!
//! The key is parsed once, with the config (`crate::signing`); the tests check every signature
//! with the independent Python implementation (PyPI `standardwebhooks`).

use std::time::Duration;

use super::DeliveryError;
use crate::config::WebhookSinkConfig;
use crate::signing::SigningKey;
use crate::store::PendingEvent;

/// The `webhook-id` of a delivery: the event's id for a single event; for a batch of several,
/// `batch_<first ULID>_<last ULID>`, so the id names exactly the events in the body and a
/// retried batch keeps its id while a batch with different content never reuses one.
pub fn message_id(events: &[PendingEvent]) -> String {
    match events {
        [] => String::new(),
        [one] => one.id.clone(),
        [first, .., last] => format!(
            "batch_{}_{}",
            first.id.trim_start_matches("evt_"),
            last.id.trim_start_matches("evt_")
        ),
    }
}

/// The request body: the event object, or a JSON array in `seq` order when batching. Built
/// from the stored JSON text, so a redelivery sends byte-identical events.
pub fn body(events: &[PendingEvent], batch: bool) -> String {
    if !batch {
        return events.first().map(|e| e.body.clone()).unwrap_or_default();
    }
    let mut out = String::with_capacity(events.iter().map(|e| e.body.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(&event.body);
    }
    out.push(']');
    out
}

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    key: SigningKey,
    batch: bool,
}

impl WebhookSink {
    pub fn new(config: &WebhookSinkConfig, batch_size: usize) -> Result<Self, DeliveryError> {
        let key = config.key.clone();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            // A redirected POST silently becomes a GET; a moved endpoint must be reconfigured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("dirsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| DeliveryError::Config(format!("cannot build the HTTP client: {err}")))?;
        Ok(Self {
            client,
            url: config.url.clone(),
            key,
            batch: batch_size > 1,
        })
    }

    /// POSTs the events; `Ok` only on a 2xx answer.
    pub async fn deliver(&self, events: &[PendingEvent]) -> Result<(), DeliveryError> {
        if events.is_empty() {
            return Ok(());
        }
        let id = message_id(events);
        let body = body(events, self.batch);
        let timestamp = chrono::Utc::now().timestamp();
        let signature = self.key.sign(&id, timestamp, &body);
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|err| DeliveryError::Unavailable {
                message: format!("POST {}: {}", self.url, describe(&err)),
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        let code = status.as_u16();
        let message = match location {
            Some(location) => format!(
                "POST {} answered {status} to {location}; configure the final URL",
                self.url
            ),
            None if snippet.trim().is_empty() => format!("POST {} answered {status}", self.url),
            None => format!("POST {} answered {status}: {}", self.url, snippet.trim()),
        };
        if code == 408 || code == 429 || status.is_server_error() {
            Err(DeliveryError::Unavailable {
                message,
                retry_after,
            })
        } else {
            Err(DeliveryError::Rejected {
                status: code,
                message,
            })
        }
    }
}

fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if err.is_timeout() {
        text.push_str(" (timed out; raise timeout_seconds or make the receiver answer sooner)");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(seq: u64) -> PendingEvent {
        PendingEvent {
            seq,
            id: format!("evt_{seq:026}"),
            occurred_at: 0,
            body: format!("{{\"seq\":{seq}}}"),
        }
    }

    #[test]
    fn a_batch_is_an_array_named_by_its_first_and_last_event() {
        let events = [event(1), event(2), event(3)];
        assert_eq!(body(&events, true), r#"[{"seq":1},{"seq":2},{"seq":3}]"#);
        assert_eq!(body(&events[..1], true), r#"[{"seq":1}]"#);
        assert_eq!(body(&events[..1], false), r#"{"seq":1}"#);
        assert_eq!(message_id(&events[..1]), events[0].id);
        assert_eq!(message_id(&events), format!("batch_{:026}_{:026}", 1, 3));
    }
}
