//! Sending one delivery: the POST with the Standard Webhooks headers, and what the answer
//! means — 2xx acknowledged, 408/429/5xx and network errors unavailable (retry, honouring
//! `Retry-After`), any other status (redirects included) a rejection.

use std::time::Duration;

use super::message::{body, message_id};
use crate::config::WebhookSinkConfig;
use crate::signing::SigningKey;
use crate::sink::DeliveryError;
use crate::store::PendingEvent;

pub struct WebhookSink {
    client: reqwest::Client,
    url: String,
    key: SigningKey,
    batch: bool,
}

impl WebhookSink {
    pub fn new(config: &WebhookSinkConfig, batch_size: usize) -> Result<Self, DeliveryError> {
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
            key: config.key.clone(),
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
