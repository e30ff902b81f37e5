//! HTTP plumbing shared by every source: one `send` that retries what can be retried
//! (truncated exponential backoff with jitter, `Retry-After` honoured, a bounded total time)
//! and paces requests under a per-tenant rate limit. Each retry is a WARN line (shown by
//! default), so a persistent failure is visible while it is retried. A response body larger
//! than [`MAX_RESPONSE_BYTES`] (after decompression) fails the request: one page of a listing
//! is never that big, and a hostile server must not make a run hold gigabytes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{FetchStats, SourceError};

/// The HTTP client of every source in this process with this request timeout: one connection
/// pool and one TLS root store for a daemon's thousands of runs, instead of a new client (and
/// the system certificates read again) per run.
pub fn client(timeout: Duration) -> Result<reqwest::Client, SourceError> {
    static CLIENTS: OnceLock<std::sync::Mutex<HashMap<Duration, reqwest::Client>>> =
        OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(client) = clients.get(&timeout) {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("dirsync/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(15)))
        .gzip(true)
        .build()
        .map_err(|err| {
            // Building fails when no CA certificate loads (even for a plain-http base URL).
            let cause = std::error::Error::source(&err)
                .map(|cause| format!(" ({cause})"))
                .unwrap_or_default();
            // The certificates are files: out of descriptors, none loads either.
            if crate::process_stats::descriptors_exhausted() {
                return SourceError::Protocol(format!(
                    "cannot set up the HTTP client: {err}{cause}: {}",
                    crate::process_stats::descriptors_advice()
                ));
            }
            SourceError::Protocol(format!(
                "cannot set up the HTTP client: {err}{cause}: if this machine has no CA certificates, install the ca-certificates package"
            ))
        })?;
    clients.insert(timeout, client.clone());
    Ok(client)
}

/// The largest response body read (after decompression): 64 MiB, some 30 times a full page of
/// 500 Google users with custom schemas.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// HTTP statuses (with Google's `errors[0].reason`) worth retrying.
pub fn is_retryable_status(status: u16, reason: Option<&str>) -> bool {
    match status {
        429 | 500 | 502 | 503 | 504 | 408 => true,
        403 => matches!(
            reason,
            Some("userRateLimitExceeded" | "rateLimitExceeded" | "quotaExceeded")
        ),
        _ => false,
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
}

impl RetryPolicy {
    pub fn new(max_elapsed: Duration) -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(32),
            max_elapsed,
        }
    }

    /// The wait before retry number `attempt` (1-based): base·2^(attempt-1), capped, plus up
    /// to a second of jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let jitter = Duration::from_millis(
            rand::rng().random_range(0..=1000u64.min(self.base.as_millis() as u64)),
        );
        exponential.min(self.cap) + jitter
    }
}

/// Paces requests to at most `per_minute` (0: unlimited). Fair and lock-cheap: each caller
/// reserves the next free slot and sleeps until it.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        let interval = (per_minute > 0).then(|| Duration::from_secs(60) / per_minute);
        Self {
            interval,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let slot = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// A complete response body with its status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub url: String,
}

/// Parses Google's / SCIM's error body for a reason and a message; tolerates non-JSON.
pub fn error_details(body: &str) -> (Option<String>, String) {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(body) {
        // OAuth (RFC 6749 §5.2): {"error": "invalid_grant", "error_description": "..."}
        if let Some(code) = json.get("error").and_then(|e| e.as_str()) {
            let description = json
                .get("error_description")
                .and_then(|d| d.as_str())
                .unwrap_or("");
            return (
                Some(code.to_owned()),
                description.chars().take(500).collect(),
            );
        }
        if let Some(error) = json.get("error").filter(|e| e.is_object()) {
            let reason = error
                .pointer("/errors/0/reason")
                .and_then(|r| r.as_str())
                .map(str::to_owned);
            let message = error
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_owned();
            return (reason, message);
        }
        // SCIM error: {"schemas":[...Error], "detail": "...", "scimType": "...", "status": "400"}
        if let Some(detail) = json.get("detail").and_then(|d| d.as_str()) {
            let reason = json
                .get("scimType")
                .and_then(|r| r.as_str())
                .map(str::to_owned);
            return (reason, detail.to_owned());
        }
    }
    // Google's front end sometimes rate-limits with a plain-text 403 (GAM handles the same).
    if body
        .trim_start()
        .starts_with("Request rate higher than configured")
    {
        return (
            Some("rateLimitExceeded".to_owned()),
            body.trim().chars().take(200).collect(),
        );
    }
    let snippet: String = body.trim().chars().take(200).collect();
    (
        None,
        if snippet.is_empty() {
            "(empty body)".to_owned()
        } else {
            snippet
        },
    )
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    wait.to_std().ok()
}

/// Sends requests built by `build` until one succeeds, a non-retryable error comes back, or the
/// retry budget is spent. Non-2xx replies become `SourceError::Http`.
pub async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    stats: &Arc<FetchStats>,
    limiter: &RateLimiter,
    policy: &RetryPolicy,
) -> Result<Reply, SourceError> {
    let started = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        limiter.acquire().await;
        stats.api_requests.fetch_add(1, Ordering::Relaxed);
        let request = build();
        let (method, url) = match request.try_clone().and_then(|r| r.build().ok()) {
            Some(built) => (built.method().to_string(), built.url().to_string()),
            None => ("GET".to_owned(), String::new()),
        };
        let (error, wait_hint) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let wait_hint = retry_after(&response);
                match read_body(response).await {
                    Err(BodyError::TooLarge) => {
                        return Err(SourceError::InvalidResponse {
                            url,
                            message: format!(
                                "HTTP {status}: the response is larger than {} MiB, more than any page dirsync reads; the server is misbehaving",
                                MAX_RESPONSE_BYTES >> 20
                            ),
                        })
                    }
                    Ok(body) if (200..300).contains(&status) => {
                        return Ok(Reply { status, body, url })
                    }
                    Ok(body) => {
                        let (reason, message) = error_details(&body);
                        (
                            SourceError::Http {
                                method,
                                url,
                                status,
                                reason,
                                message,
                            },
                            wait_hint,
                        )
                    }
                    // A cut-off success is worth another try; a cut-off error body still
                    // carries its status, which decides.
                    Err(BodyError::Read(err)) if (200..300).contains(&status) => (
                        SourceError::Network {
                            url,
                            message: format!("reading the response: {}", network_message(&err)),
                        },
                        None,
                    ),
                    Err(BodyError::Read(err)) => (
                        SourceError::Http {
                            method,
                            url,
                            status,
                            reason: None,
                            message: format!("(body unreadable: {})", network_message(&err)),
                        },
                        wait_hint,
                    ),
                }
            }
            // A request that cannot even be built (a URL reqwest refuses) fails the same way
            // every time.
            Err(err) if err.is_builder() => {
                return Err(SourceError::Protocol(format!(
                    "cannot build the request {method} {url}: {}",
                    network_message(&err)
                )))
            }
            Err(err) => (
                SourceError::Network {
                    url,
                    message: network_message(&err),
                },
                None,
            ),
        };
        attempt += 1;
        if !error.is_retryable() {
            return Err(error);
        }
        let wait = wait_hint
            .unwrap_or_else(|| policy.backoff(attempt))
            .min(policy.cap.max(Duration::from_secs(1)) * 4);
        if started.elapsed() + wait > policy.max_elapsed {
            return Err(error);
        }
        tracing::warn!(
            "{error}; retry {attempt} in {:.1} s (gives up {} s after the first attempt: retry_max_seconds)",
            wait.as_secs_f64(),
            policy.max_elapsed.as_secs()
        );
        stats.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(wait).await;
    }
}

enum BodyError {
    TooLarge,
    Read(reqwest::Error),
}

/// The body as text, refusing more than [`MAX_RESPONSE_BYTES`] before holding it.
async fn read_body(mut response: reqwest::Response) -> Result<String, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8(body)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned()))
}

fn network_message(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Parses a JSON body, turning garbage and truncation into a clear error.
pub fn parse_json<T: serde::de::DeserializeOwned>(reply: &Reply) -> Result<T, SourceError> {
    serde_json::from_str(&reply.body).map_err(|err| SourceError::InvalidResponse {
        url: reply.url.clone(),
        message: if reply.body.trim().is_empty() {
            "empty body".to_owned()
        } else {
            format!("not the expected JSON ({err})")
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_follow_google_s_table() {
        for status in [429, 500, 502, 503, 504, 408] {
            assert!(is_retryable_status(status, None), "{status}");
        }
        for reason in [
            "userRateLimitExceeded",
            "rateLimitExceeded",
            "quotaExceeded",
        ] {
            assert!(is_retryable_status(403, Some(reason)), "{reason}");
        }
        assert!(!is_retryable_status(403, Some("forbidden")));
        assert!(!is_retryable_status(403, None));
        for status in [400, 401, 404, 412] {
            assert!(
                !is_retryable_status(status, Some("backendError")),
                "{status}"
            );
        }
    }

    #[test]
    fn error_details_reads_google_scim_and_text_bodies() {
        let google = r#"{"error":{"code":403,"message":"Not Authorized to access this resource/api","errors":[{"message":"Not Authorized","domain":"global","reason":"forbidden"}]}}"#;
        assert_eq!(
            error_details(google),
            (
                Some("forbidden".into()),
                "Not Authorized to access this resource/api".into()
            )
        );
        let scim = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"bad filter","scimType":"invalidFilter","status":"400"}"#;
        assert_eq!(
            error_details(scim),
            (Some("invalidFilter".into()), "bad filter".into())
        );
        assert_eq!(
            error_details("  <html>Bad Gateway</html>\n"),
            (None, "<html>Bad Gateway</html>".into())
        );
        assert_eq!(error_details(""), (None, "(empty body)".into()));
        let (reason, _) = error_details("Request rate higher than configured.");
        assert!(is_retryable_status(403, reason.as_deref()));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_a_base() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1000),
            max_elapsed: Duration::from_secs(60),
        };
        for attempt in 1..=40 {
            let wait = policy.backoff(attempt);
            let floor =
                (Duration::from_millis(100) * 2u32.pow((attempt - 1).min(16))).min(policy.cap);
            assert!(
                wait >= floor && wait <= floor + policy.base,
                "{attempt}: {wait:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_limiter_hands_out_spaced_slots() {
        let limiter = RateLimiter::new(1200); // 50 ms apart
        let started = Instant::now();
        for _ in 0..4 {
            limiter.acquire().await;
        }
        // Three intervals must have passed before the fourth slot; the upper side is not
        // asserted (timings belong in benchmarks).
        assert!(started.elapsed() >= Duration::from_millis(150));

        let unlimited = RateLimiter::new(0);
        for _ in 0..1000 {
            unlimited.acquire().await;
        }
    }

    #[test]
    fn parse_json_turns_garbage_into_invalid_response() {
        let reply = |body: &str| Reply {
            status: 200,
            body: body.to_owned(),
            url: "http://x/y".into(),
        };
        assert!(parse_json::<serde_json::Value>(&reply("{\"a\":1}")).is_ok());
        for body in ["", "<html>", "{\"a\":"] {
            assert!(matches!(
                parse_json::<serde_json::Value>(&reply(body)),
                Err(SourceError::InvalidResponse { .. })
            ));
        }
    }
}
