//! Access tokens for the Directory API: a service account impersonating `source.subject`
//! (domain-wide delegation) through yup-oauth2, which caches and refreshes the token. Turns the
//! token endpoint's OAuth errors into errors that say what to fix in the Admin console or the
//! tenant config. Must not log tokens.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::error::{AuthError, AuthErrorCode};
use yup_oauth2::hyper_rustls::HttpsConnector;
use yup_oauth2::{CustomHyperClientBuilder, ServiceAccountAuthenticator, ServiceAccountKey};

use super::console as messages;
use crate::source::SourceError;

/// yup-oauth2's default client needs the system's CA bundle even when `token_uri` is plain
/// http (an emulator on loopback); a plain connector needs none.
enum Inner {
    Tls(Authenticator<HttpsConnector<HttpConnector>>),
    Plain(Authenticator<HttpConnector>),
}

pub struct TokenSource {
    inner: Inner,
    token_uri: String,
    subject: String,
    scopes: Vec<&'static str>,
    client_id: String,
    client_email: String,
}

impl TokenSource {
    pub async fn new(
        key: ServiceAccountKey,
        subject: &str,
        scopes: Vec<&'static str>,
        timeout: Duration,
    ) -> Result<Self, SourceError> {
        let token_uri = key.token_uri.clone();
        let client_id = key
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| key.client_email.clone());
        let client_email = key.client_email.clone();
        let plain = url::Url::parse(&token_uri).is_ok_and(|url| url.scheme() == "http");
        let inner = if plain {
            let client = hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build::<_, String>(HttpConnector::new());
            ServiceAccountAuthenticator::with_client(key, CustomHyperClientBuilder::from(client))
                .subject(subject)
                .with_timeout(timeout)
                .build()
                .await
                .map(Inner::Plain)
        } else {
            ServiceAccountAuthenticator::builder(key)
                .subject(subject)
                .with_timeout(timeout)
                .build()
                .await
                .map(Inner::Tls)
        }
        .map_err(|err| SourceError::Auth {
            message: format!("cannot set up the service-account token flow: {err}"),
            hint: Some(if plain {
                "the key's `private_key` is not usable: download a new key (JSON) for the service account".into()
            } else {
                "either the key's `private_key` is not usable (download a new key), or this machine has no CA certificates (install the ca-certificates package)".into()
            }),
        })?;
        Ok(Self {
            inner,
            token_uri,
            subject: subject.to_owned(),
            scopes,
            client_id,
            client_email,
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The cached token, or a new one when it is about to expire.
    pub async fn token(&self) -> Result<String, SourceError> {
        self.get(false).await
    }

    /// A new token, whatever the cache holds (after the API answered 401).
    pub async fn refreshed_token(&self) -> Result<String, SourceError> {
        self.get(true).await
    }

    async fn get(&self, force: bool) -> Result<String, SourceError> {
        // Connection failures to the token endpoint are retried briefly: they are as transient
        // as the API's, and one token failure otherwise fails the whole sync.
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = match (&self.inner, force) {
                (Inner::Tls(auth), false) => auth.token(&self.scopes).await,
                (Inner::Tls(auth), true) => auth.force_refreshed_token(&self.scopes).await,
                (Inner::Plain(auth), false) => auth.token(&self.scopes).await,
                (Inner::Plain(auth), true) => auth.force_refreshed_token(&self.scopes).await,
            };
            let error = match result {
                Ok(token) => {
                    return match token.token() {
                        Some(token) if !token.is_empty() => Ok(token.to_owned()),
                        _ => Err(SourceError::InvalidResponse {
                            url: self.token_uri.clone(),
                            message: "the token endpoint answered without an access_token".into(),
                        }),
                    }
                }
                Err(err) => self.map_error(err),
            };
            if attempt >= 3 || !matches!(error, SourceError::Network { .. }) {
                return Err(error);
            }
            tracing::debug!(attempt, error = %error, "retrying the token request");
            tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
        }
    }

    fn token_host(&self) -> String {
        url::Url::parse(&self.token_uri)
            .ok()
            .and_then(|url| {
                url.host_str().map(|host| match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                })
            })
            .unwrap_or_else(|| self.token_uri.clone())
    }

    fn map_error(&self, err: yup_oauth2::Error) -> SourceError {
        use yup_oauth2::Error as E;
        match err {
            E::AuthError(auth) => self.map_auth_error(&auth),
            E::HttpError(err) => SourceError::Network {
                url: self.token_uri.clone(),
                message: format!(
                    "token endpoint host {} unreachable: {err}",
                    self.token_host()
                ),
            },
            E::HttpClientError(err) => SourceError::Network {
                url: self.token_uri.clone(),
                message: format!(
                    "token endpoint host {} unreachable: {}",
                    self.token_host(),
                    error_chain(&err)
                ),
            },
            E::JSONError(err) => SourceError::InvalidResponse {
                url: self.token_uri.clone(),
                message: format!("the token endpoint's answer is not an OAuth token ({err})"),
            },
            E::MissingAccessToken => SourceError::InvalidResponse {
                url: self.token_uri.clone(),
                message: "the token endpoint answered without an access_token".into(),
            },
            other => SourceError::Auth {
                message: format!("cannot get an access token: {other}"),
                hint: None,
            },
        }
    }

    fn map_auth_error(&self, auth: &AuthError) -> SourceError {
        let description = auth.error_description.clone().unwrap_or_default();
        let message = format!("the token endpoint {} refused: {auth}", self.token_host());
        let hint = match &auth.error {
            AuthErrorCode::UnauthorizedClient => {
                Some(messages::delegation_not_granted(&self.client_id))
            }
            AuthErrorCode::InvalidGrant if description.contains("Invalid email or User ID") => {
                Some(format!(
                    "no such user: source.subject ({}) must be an existing admin user of the Workspace account",
                    self.subject
                ))
            }
            AuthErrorCode::InvalidGrant
                if description.contains("short-lived") || description.contains("iat") =>
            {
                Some("the token request was signed with a wrong time: check this machine's clock (NTP)".into())
            }
            AuthErrorCode::InvalidGrant | AuthErrorCode::InvalidClient => {
                Some(messages::key_rejected(&self.client_email))
            }
            AuthErrorCode::InvalidScope => Some(messages::unknown_scopes()),
            _ => None,
        };
        SourceError::Auth { message, hint }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
