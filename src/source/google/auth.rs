//! Access tokens for the Directory API: a service account impersonating `source.subject`
//! (domain-wide delegation), by the OAuth 2.0 JWT-bearer grant (RFC 7523) that Google's token
//! endpoint speaks: an RS256-signed assertion POSTed to the key's `token_uri`, the token cached
//! until shortly before it expires. Turns the token endpoint's OAuth errors into errors that
//! say what to fix in the Admin console or the tenant config.
//!
//! dirsync signs and sends the assertion itself (instead of through yup-oauth2's flow) so the
//! token request is an ordinary request of `source::http::send`: bounded by
//! `request_timeout_seconds` for the whole exchange, body included; 5xx, 429 and connection
//! failures retried like the API's; the status and host said when it fails; the body size
//! capped; and nothing of it logged by a dependency. Must not log tokens or assertions.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::console as messages;
use crate::config::ServiceAccountKey;
use crate::source::http::{self, RateLimiter, RetryPolicy};
use crate::source::{FetchStats, SourceError};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The longest lifetime Google grants an assertion.
const ASSERTION_LIFETIME_SECONDS: i64 = 3600;
/// A cached token is renewed this long before it expires, so no request carries a token that
/// expires in flight.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(120);

struct Cached {
    token: String,
    renew_at: Instant,
}

/// A token cache shared by every run of this process that impersonates the same subject with
/// the same key and scopes: a daemon asks the token endpoint about once an hour per tenant,
/// not once a run (Google's tokens live an hour).
type SharedCache = Arc<Mutex<Option<Cached>>>;

fn process_cache(key: String) -> SharedCache {
    static CACHES: OnceLock<std::sync::Mutex<HashMap<String, SharedCache>>> = OnceLock::new();
    let mut caches = CACHES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    caches.entry(key).or_default().clone()
}

fn unusable_key() -> SourceError {
    SourceError::Auth {
        message: "the service-account key's `private_key` is not a usable RSA key".into(),
        hint: Some("download a new key (JSON) for the service account in the Cloud console".into()),
    }
}

pub struct TokenSource {
    http: reqwest::Client,
    /// The key's PKCS#8 DER; parsed into `signer` only when a token is signed. Parsing checks
    /// the RSA key (about a millisecond of CPU), and a run whose token is cached signs nothing.
    der: Vec<u8>,
    signer: OnceLock<RsaKeyPair>,
    token_uri: url::Url,
    /// The key's `token_uri` exactly as written: the assertion's audience.
    audience: String,
    subject: String,
    scopes: Vec<&'static str>,
    client_id: String,
    client_email: String,
    private_key_id: Option<String>,
    /// One token request at a time: concurrent member listings (and runs of other tenants with
    /// the same key and subject) wait for the same token.
    cached: SharedCache,
    /// What identifies this token among the process's: key, subject, scopes, endpoint.
    cache_key: String,
    /// Token requests are not API requests: counted apart, never rate-limited.
    stats: Arc<FetchStats>,
    limiter: RateLimiter,
}

impl TokenSource {
    pub fn new(
        key: &ServiceAccountKey,
        subject: &str,
        scopes: Vec<&'static str>,
        http: reqwest::Client,
    ) -> Result<Self, SourceError> {
        let token_uri = url::Url::parse(&key.token_uri)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or_else(|| SourceError::Auth {
                message: format!(
                    "the service-account key's token_uri {:?} is not an http(s) URL",
                    key.token_uri
                ),
                hint: Some("download the service-account key (JSON) again; its token_uri is normally https://oauth2.googleapis.com/token".into()),
            })?;
        let der = pkcs8_der(&key.private_key).ok_or_else(unusable_key)?;
        let cache_key = format!(
            "{}\n{}\n{}\n{}\n{}",
            key.token_uri,
            key.client_email,
            key.private_key_id.as_deref().unwrap_or_default(),
            subject,
            scopes.join(" ")
        );
        let client_id = key
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| key.client_email.clone());
        Ok(Self {
            http,
            der,
            signer: OnceLock::new(),
            token_uri,
            audience: key.token_uri.clone(),
            subject: subject.to_owned(),
            scopes,
            client_id,
            client_email: key.client_email.clone(),
            private_key_id: key.private_key_id.clone().filter(|id| !id.is_empty()),
            cached: Arc::default(),
            cache_key,
            stats: Arc::new(FetchStats::default()),
            limiter: RateLimiter::new(0),
        })
    }

    /// The same source, its token cached for the whole process (see [`SharedCache`]) rather
    /// than for this source alone.
    pub fn shared_across_runs(mut self) -> Self {
        self.cached = process_cache(self.cache_key.clone());
        self
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The cached token, or a new one when it is about to expire.
    pub async fn token(&self, retry: &RetryPolicy) -> Result<String, SourceError> {
        self.get(false, retry).await
    }

    /// A new token, whatever the cache holds (after the API answered 401).
    pub async fn refreshed_token(&self, retry: &RetryPolicy) -> Result<String, SourceError> {
        self.get(true, retry).await
    }

    async fn get(&self, force: bool, retry: &RetryPolicy) -> Result<String, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref() {
            if !force && Instant::now() < current.renew_at {
                return Ok(current.token.clone());
            }
        }
        let (token, lifetime) = self.request(retry).await?;
        *cached = Some(Cached {
            token: token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(RENEW_BEFORE_EXPIRY),
        });
        Ok(token)
    }

    /// One token exchange, retried like an API request.
    async fn request(&self, retry: &RetryPolicy) -> Result<(String, Duration), SourceError> {
        let assertion = self.assertion()?;
        let form = [
            ("grant_type", GRANT_TYPE),
            ("assertion", assertion.as_str()),
        ];
        let reply = http::send(
            || self.http.post(self.token_uri.clone()).form(&form),
            &self.stats,
            &self.limiter,
            retry,
        )
        .await
        .map_err(|err| self.map_error(err))?;
        let body: Value = serde_json::from_str(&reply.body).map_err(|err| {
            SourceError::InvalidResponse {
                url: self.token_uri.to_string(),
                message: format!(
                    "the token endpoint {} answered HTTP {} with something that is not an OAuth token ({err})",
                    self.token_host(),
                    reply.status
                ),
            }
        })?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| SourceError::InvalidResponse {
                url: self.token_uri.to_string(),
                message: format!(
                    "the token endpoint {} answered without an access_token",
                    self.token_host()
                ),
            })?;
        let lifetime = body
            .get("expires_in")
            .and_then(|value| value.as_u64().or_else(|| value.as_str()?.parse().ok()))
            .unwrap_or(3600);
        Ok((token.to_owned(), Duration::from_secs(lifetime)))
    }

    /// The signed JWT: `iss` the service account, `sub` the impersonated admin, `aud` the
    /// token endpoint.
    fn assertion(&self) -> Result<String, SourceError> {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let now = chrono::Utc::now().timestamp();
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = json!(kid);
        }
        let claims = json!({
            "iss": self.client_email,
            "sub": self.subject,
            "scope": self.scopes.join(" "),
            "aud": self.audience,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECONDS,
        });
        let signing_input = format!(
            "{}.{}",
            engine.encode(header.to_string()),
            engine.encode(claims.to_string())
        );
        let signer = match self.signer.get() {
            Some(signer) => signer,
            None => {
                let parsed = RsaKeyPair::from_pkcs8(&self.der).map_err(|_| unusable_key())?;
                self.signer.get_or_init(|| parsed)
            }
        };
        let mut signature = vec![0; signer.public_modulus_len()];
        signer
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| SourceError::Auth {
                message: "cannot sign the token request with the service-account key".into(),
                hint: Some("download a new key (JSON) for the service account".into()),
            })?;
        Ok(format!("{signing_input}.{}", engine.encode(signature)))
    }

    fn token_host(&self) -> String {
        match (self.token_uri.host_str(), self.token_uri.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => self.token_uri.to_string(),
        }
    }

    fn map_error(&self, err: SourceError) -> SourceError {
        match err {
            // An OAuth error body (`{"error": "invalid_grant", ...}`): what to fix.
            SourceError::Http {
                status,
                reason: Some(code),
                message,
                ..
            } if (400..500).contains(&status) => self.auth_error(status, &code, &message),
            SourceError::Network { url, message } => SourceError::Network {
                url,
                message: format!(
                    "token endpoint host {} unreachable: {message}",
                    self.token_host()
                ),
            },
            other => other,
        }
    }

    fn auth_error(&self, status: u16, code: &str, description: &str) -> SourceError {
        let message = format!(
            "the token endpoint {} refused (HTTP {status}): {code}{}",
            self.token_host(),
            if description.is_empty() {
                String::new()
            } else {
                format!(": {description}")
            }
        );
        let hint = match code {
            "unauthorized_client" => Some(messages::delegation_not_granted(&self.client_id)),
            "invalid_grant" if description.contains("Invalid email or User ID") => Some(format!(
                "no such user: source.subject ({}) must be an existing admin user of the Workspace account",
                self.subject
            )),
            "invalid_grant" if description.contains("short-lived") || description.contains("iat") => {
                Some("the token request was signed with a wrong time: check this machine's clock (NTP)".into())
            }
            "invalid_grant" | "invalid_client" => Some(messages::key_rejected(&self.client_email)),
            "invalid_scope" => Some(messages::unknown_scopes()),
            _ => None,
        };
        SourceError::Auth { message, hint }
    }
}

/// The DER bytes of a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
fn pkcs8_der(pem: &str) -> Option<Vec<u8>> {
    let begin = pem.find("-----BEGIN PRIVATE KEY-----")?;
    let body = &pem[begin + "-----BEGIN PRIVATE KEY-----".len()..];
    let end = body.find("-----END PRIVATE KEY-----")?;
    let base64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_token_uri_that_is_not_a_url_is_an_error_not_a_panic() {
        let key: ServiceAccountKey = serde_json::from_value(json!({
            "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "client_email": "a@b.iam.gserviceaccount.com",
            "token_uri": "not a url",
        }))
        .unwrap();
        for uri in ["not a url", "file:///etc/passwd"] {
            let mut key = key.clone();
            key.token_uri = uri.into();
            let err = TokenSource::new(&key, "admin@x", vec![], reqwest::Client::new())
                .err()
                .unwrap();
            assert!(err.to_string().contains("token_uri"), "{err}");
        }
        let mut key = key;
        key.token_uri = "https://oauth2.googleapis.com/token".into();
        // The key is parsed when a token is first signed (config loading has checked it
        // already): a bad one is an error then, not a panic.
        let source = TokenSource::new(&key, "admin@x", vec![], reqwest::Client::new()).unwrap();
        let err = source.assertion().err().unwrap();
        assert!(err.to_string().contains("private_key"), "{err}");
        // Not even base64 between the markers: refused at once.
        key.private_key = "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n".into();
        let err = TokenSource::new(&key, "admin@x", vec![], reqwest::Client::new())
            .err()
            .unwrap();
        assert!(err.to_string().contains("private_key"), "{err}");
    }
}
