//! The webhook sink: POSTs events as JSON, signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com/>), so a consumer can verify deliveries with any Standard
//! Webhooks library.
//!
//! Signing is implemented here (HMAC-SHA256 with the crates already in the build) rather than
//! with the `standardwebhooks` crate, which would add a second base64 version, `hmac-sha256`
//! and `time` for twenty lines; the tests check every signature with the independent Python
//! implementation (PyPI `standardwebhooks`).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::DeliveryError;
use crate::config::WebhookSinkConfig;
use crate::store::PendingEvent;

/// A Standard Webhooks signing key: the bytes of the base64 after `whsec_`.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

/// Base64 as Standard Webhooks libraries accept it: padding optional.
const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the webhook secret must be \"whsec_\" followed by a base64 key")]
    Prefix,
    #[error("the webhook secret after \"whsec_\" is not valid base64 ({0}); generate one with `echo whsec_$(head -c 32 /dev/urandom | base64)`")]
    Base64(base64::DecodeError),
    #[error("the webhook secret's key is empty")]
    Empty,
}

impl SigningKey {
    /// Parses a secret of the form `whsec_<base64>`.
    pub fn from_secret(secret: &str) -> Result<Self, KeyError> {
        let encoded = secret
            .trim()
            .strip_prefix("whsec_")
            .ok_or(KeyError::Prefix)?;
        let key = BASE64_LENIENT.decode(encoded).map_err(KeyError::Base64)?;
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self(key))
    }

    /// The `webhook-signature` header value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    }
}

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
        let key = SigningKey::from_secret(config.secret.expose())
            .map_err(|err| DeliveryError::Config(err.to_string()))?;
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

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        // The example of the Standard Webhooks specification (and its libraries' tests).
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_without_the_prefix_or_with_bad_base64_is_refused() {
        assert!(matches!(
            SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(KeyError::Prefix)
        ));
        assert!(matches!(
            SigningKey::from_secret("whsec_not base64!"),
            Err(KeyError::Base64(_))
        ));
    }

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
