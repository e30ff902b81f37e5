//! `[source]`: which IdP a tenant reads and how.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{http_url, lenient, Problems, Secret, SecretShape};
use crate::event::SourceKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SuspendedUsers {
    /// Suspended (Google) or `active = false` (SCIM) users stay, with `state = "inactive"`.
    #[default]
    Inactive,
    /// They are treated as deleted.
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NestedGroups {
    /// A user is a member of every group that contains them, directly or through groups.
    #[default]
    Flatten,
    /// Only direct user members count.
    Direct,
}

// One per tenant, never in a hot collection: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Google(GoogleSourceConfig),
    Scim(ScimSourceConfig),
    /// The IdP provisions into dirsync (the SCIM push receiver): nothing to fetch.
    ScimPush(ScimPushConfig),
}

impl SourceConfig {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::Google(_) => SourceKind::Google,
            SourceConfig::Scim(_) => SourceKind::Scim,
            SourceConfig::ScimPush(_) => SourceKind::ScimPush,
        }
    }

    pub fn suspended_users(&self) -> SuspendedUsers {
        match self {
            SourceConfig::Google(google) => google.suspended_users,
            SourceConfig::Scim(scim) => scim.suspended_users,
            SourceConfig::ScimPush(push) => push.suspended_users,
        }
    }

    pub fn max_run(&self) -> Duration {
        match self {
            SourceConfig::Google(google) => google.max_run,
            SourceConfig::Scim(scim) => scim.max_run,
            SourceConfig::ScimPush(push) => push.max_run,
        }
    }

    pub fn nested_groups(&self) -> NestedGroups {
        match self {
            SourceConfig::Google(google) => google.nested_groups,
            SourceConfig::Scim(scim) => scim.nested_groups,
            SourceConfig::ScimPush(push) => push.nested_groups,
        }
    }

    pub fn is_push(&self) -> bool {
        matches!(self, SourceConfig::ScimPush(_))
    }
}

/// Which address becomes a pushed user's `email`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EmailFrom {
    /// The primary email, else the `work` email, else the first, else `userName` when it is an
    /// address. Entra's `userName` is the UPN, which differs from the mail address of
    /// synchronized (on-premises) users: the mail address is the one the app knows.
    #[default]
    Emails,
    /// `userName` when it is an address, else as `emails`.
    #[serde(rename = "username")]
    UserName,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScimPush {
    token_file: Option<PathBuf>,
    #[serde(default)]
    suspended_users: SuspendedUsers,
    #[serde(default)]
    nested_groups: NestedGroups,
    #[serde(default)]
    email_from: EmailFrom,
    max_queued_writes: Option<usize>,
    max_body_bytes: Option<usize>,
    max_run_seconds: Option<u64>,
}

/// `type = "scim_push"`: the tenant's IdP provisions into dirsync's SCIM endpoints.
#[derive(Debug, Clone)]
pub struct ScimPushConfig {
    /// The bearer token the IdP sends.
    pub token: Secret,
    pub token_file: PathBuf,
    pub suspended_users: SuspendedUsers,
    pub nested_groups: NestedGroups,
    pub email_from: EmailFrom,
    /// Writes waiting for the tenant beyond this are answered `429` with `Retry-After`.
    pub max_queued_writes: usize,
    /// A request body over this is `413`.
    pub max_body_bytes: usize,
    /// A reconciling run (`dirsync sync` of a push tenant) is abandoned after this long.
    pub max_run: Duration,
}

/// The defaults of a push tenant's bounds.
pub const DEFAULT_MAX_QUEUED_WRITES: usize = 1024;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

#[allow(clippy::needless_pass_by_value)] // as the other validators: raw values are consumed
fn validate_scim_push(raw: RawScimPush, p: &mut Problems<'_>) -> Option<SourceConfig> {
    if raw.token_file.is_none() {
        p.add(
            "source.token_file",
            "missing: a file holding the bearer token the IdP sends (`dirsync setup scim-push` writes one)",
        );
    }
    let token = raw
        .token_file
        .as_ref()
        .and_then(|path| p.read_secret("source.token_file", path, SecretShape::Token));
    let token_file = raw.token_file.as_ref().map(|path| p.resolve(path));
    if let Some(token) = &token {
        if token.expose().len() < 16 {
            p.add(
                "source.token_file",
                "the token is shorter than 16 characters: use a long random token (`openssl rand -hex 32`)",
            );
        }
    }
    if raw.max_queued_writes == Some(0) {
        p.add("source.max_queued_writes", "must be at least 1");
    }
    if raw.max_body_bytes.is_some_and(|bytes| bytes < 1024) {
        p.add("source.max_body_bytes", "must be at least 1024");
    }
    Some(SourceConfig::ScimPush(ScimPushConfig {
        token: token?,
        token_file: token_file?,
        suspended_users: raw.suspended_users,
        nested_groups: raw.nested_groups,
        email_from: raw.email_from,
        max_queued_writes: raw
            .max_queued_writes
            .unwrap_or(DEFAULT_MAX_QUEUED_WRITES)
            .max(1),
        max_body_bytes: raw
            .max_body_bytes
            .unwrap_or(DEFAULT_MAX_BODY_BYTES)
            .max(1024),
        max_run: max_run(raw.max_run_seconds, p),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoogle {
    credentials_file: Option<PathBuf>,
    subject: Option<String>,
    customer: Option<String>,
    domain: Option<String>,
    api_base: Option<String>,
    #[serde(default)]
    suspended_users: SuspendedUsers,
    #[serde(default)]
    nested_groups: NestedGroups,
    max_concurrency: Option<usize>,
    requests_per_minute: Option<u32>,
    retry_max_seconds: Option<u64>,
    request_timeout_seconds: Option<u64>,
    max_run_seconds: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct GoogleSourceConfig {
    pub credentials_file: PathBuf,
    pub service_account_key: Arc<ServiceAccountKey>,
    pub subject: String,
    pub customer: String,
    pub domain: Option<String>,
    /// Without a trailing slash.
    pub api_base: String,
    pub suspended_users: SuspendedUsers,
    pub nested_groups: NestedGroups,
    /// Concurrent `members.list` requests.
    pub max_concurrency: usize,
    /// Per-tenant request rate limit; 0 lifts it.
    pub requests_per_minute: u32,
    /// Retries of one request stop once this much time has passed.
    pub retry_max: Duration,
    pub request_timeout: Duration,
    /// A whole run (lease wait, fetch, plan; not the commit) is abandoned after this long.
    pub max_run: Duration,
    /// Ask for every scope of `google::SCOPES`, even those this tenant's policy does not need
    /// (`dirsync setup` verifies that the delegation entry is complete). Not a config key.
    pub all_scopes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScimPagination {
    /// What `/ServiceProviderConfig` says; index paging when it says nothing.
    #[default]
    Auto,
    Index,
    Cursor,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScim {
    base_url: Option<String>,
    token_file: Option<PathBuf>,
    /// "bearer" (default), "basic" or "header".
    auth: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    header_name: Option<String>,
    page_size: Option<u32>,
    #[serde(default)]
    pagination: ScimPagination,
    filter_supported: Option<bool>,
    #[serde(default)]
    suspended_users: SuspendedUsers,
    #[serde(default)]
    nested_groups: NestedGroups,
    max_concurrency: Option<usize>,
    requests_per_minute: Option<u32>,
    retry_max_seconds: Option<u64>,
    request_timeout_seconds: Option<u64>,
    max_run_seconds: Option<u64>,
}

#[derive(Debug, Clone)]
pub enum ScimAuth {
    Bearer(Secret),
    Basic { username: String, password: Secret },
    Header { name: String, value: Secret },
    None,
}

#[derive(Debug, Clone)]
pub struct ScimSourceConfig {
    /// Without a trailing slash, e.g. `https://idp.example/scim/v2`.
    pub base_url: String,
    pub auth: ScimAuth,
    /// Page size to ask for; `None` means the server's advertised default (or 100).
    pub page_size: Option<u32>,
    pub pagination: ScimPagination,
    /// Overrides what `/ServiceProviderConfig` says about `filter`.
    pub filter_supported: Option<bool>,
    pub suspended_users: SuspendedUsers,
    pub nested_groups: NestedGroups,
    pub max_concurrency: usize,
    /// 0 means no limit.
    pub requests_per_minute: u32,
    pub retry_max: Duration,
    pub request_timeout: Duration,
    /// A whole run (lease wait, fetch, plan; not the commit) is abandoned after this long.
    pub max_run: Duration,
}

pub(super) fn validate(value: toml::Value, p: &mut Problems<'_>) -> Option<SourceConfig> {
    let mut table = match value {
        toml::Value::Table(table) => table,
        _ => {
            p.add("source", "must be a table: [source]");
            return None;
        }
    };
    let kind = table.remove("type");
    match kind.as_ref().and_then(toml::Value::as_str) {
        Some("google") => validate_google(
            lenient::table(
                toml::Value::Table(table),
                "source",
                "a [source] of type \"google\"",
                &["type"],
                p,
            )?,
            p,
        ),
        Some("scim") => validate_scim(
            lenient::table(
                toml::Value::Table(table),
                "source",
                "a [source] of type \"scim\"",
                &["type"],
                p,
            )?,
            p,
        ),
        Some("scim_push") => validate_scim_push(
            lenient::table(
                toml::Value::Table(table),
                "source",
                "a [source] of type \"scim_push\"",
                &["type"],
                p,
            )?,
            p,
        ),
        Some(other) => {
            p.add(
                "source.type",
                format!(
                    "{other:?} is not a source type: use \"google\", \"scim\" or \"scim_push\""
                ),
            );
            None
        }
        None if kind.is_some() => {
            p.add(
                "source.type",
                "must be a string: type = \"google\", \"scim\" or \"scim_push\"",
            );
            None
        }
        None => {
            p.add(
                "source.type",
                "missing: set type = \"google\", \"scim\" or \"scim_push\"",
            );
            None
        }
    }
}

/// One request gives up retrying after a minute: the daemon's run backoff retries the run.
const DEFAULT_RETRY_MAX_SECONDS: u64 = 60;

fn max_run(seconds: Option<u64>, p: &mut Problems<'_>) -> Duration {
    if seconds == Some(0) {
        p.add("source.max_run_seconds", "must be at least 1");
    }
    Duration::from_secs(seconds.unwrap_or(3600).max(1))
}

fn validate_google(raw: RawGoogle, p: &mut Problems<'_>) -> Option<SourceConfig> {
    let credentials_file = match raw.credentials_file {
        Some(path) => Some(p.resolve(&path)),
        None => {
            p.add(
                "source.credentials_file",
                "missing: the service-account key JSON downloaded from Google Cloud",
            );
            None
        }
    };
    let service_account_key = credentials_file.as_ref().and_then(|path| {
        p.warn_if_shared("source.credentials_file", path);
        match read_key(path) {
            Ok((key, KeyState::Usable)) => Some(key),
            Ok((key, KeyState::ExamplePlaceholder)) => {
                p.warn(
                    "source.credentials_file",
                    format!(
                        "{}: `private_key` is the example's placeholder: download the service-account key JSON from Google Cloud and put it here (syncs fail until then)",
                        path.display()
                    ),
                );
                Some(key)
            }
            Err(message) => {
                p.add("source.credentials_file", message);
                None
            }
        }
    });
    let subject = match raw.subject {
        Some(subject) if subject.contains('@') => Some(subject),
        Some(subject) => {
            p.add(
                "source.subject",
                format!("{subject:?} is not an email: the admin the service account impersonates"),
            );
            None
        }
        None => {
            p.add(
                "source.subject",
                "missing: the email of a Workspace admin the service account impersonates",
            );
            None
        }
    };
    let api_base = raw
        .api_base
        .unwrap_or_else(|| "https://admin.googleapis.com".to_owned());
    let api_base = http_url(&api_base, "source.api_base", p);
    let max_concurrency = raw.max_concurrency.unwrap_or(8);
    if max_concurrency == 0 {
        p.add("source.max_concurrency", "must be at least 1");
    }
    Some(SourceConfig::Google(GoogleSourceConfig {
        credentials_file: credentials_file?,
        service_account_key: service_account_key?,
        subject: subject?,
        customer: raw.customer.unwrap_or_else(|| "my_customer".to_owned()),
        domain: raw.domain,
        api_base: api_base?,
        suspended_users: raw.suspended_users,
        nested_groups: raw.nested_groups,
        max_concurrency: max_concurrency.max(1),
        requests_per_minute: raw.requests_per_minute.unwrap_or(2400),
        retry_max: Duration::from_secs(raw.retry_max_seconds.unwrap_or(DEFAULT_RETRY_MAX_SECONDS)),
        request_timeout: Duration::from_secs(raw.request_timeout_seconds.unwrap_or(60)),
        max_run: max_run(raw.max_run_seconds, p),
        all_scopes: false,
    }))
}

/// A Google service-account key: the JSON file the Cloud console downloads (fields it has and
/// dirsync does not use are ignored). `Debug` never prints the private key.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type")]
    pub key_type: Option<String>,
    pub project_id: Option<String>,
    pub private_key_id: Option<String>,
    /// PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub private_key: String,
    pub client_email: String,
    pub client_id: Option<String>,
    /// The OAuth token endpoint the JWT-bearer assertion is posted to (and its audience).
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("project_id", &self.project_id)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"…")
            .field("client_email", &self.client_email)
            .field("client_id", &self.client_id)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

/// Reads a service-account key file, saying precisely what is wrong with it: everything a
/// sync needs from it is checked here (the token endpoint, the RSA key), so a bad key fails
/// `check-config`, not the first run.
pub fn read_service_account_key(path: &std::path::Path) -> Result<Arc<ServiceAccountKey>, String> {
    match read_key(path)? {
        (key, KeyState::Usable) => Ok(key),
        (_, KeyState::ExamplePlaceholder) => Err(format!(
            "{}: `private_key` is the example's placeholder: download the service-account key JSON from Google Cloud",
            path.display()
        )),
    }
}

/// The shipped example key holds this instead of a key: a warning in `check-config` (so the
/// example config still validates), an error wherever a key is actually used.
const EXAMPLE_PLACEHOLDER: &str = "REPLACE-ME";

#[derive(Clone, Copy)]
enum KeyState {
    Usable,
    ExamplePlaceholder,
}

/// Keys in use, by file, with a digest of the text they were parsed from. One vendor service
/// account with a different `subject` per tenant is the usual deployment, so ten thousand
/// tenant files name one key file: they share one parsed key instead of holding ten thousand
/// copies. The file is read again each time, so an edited key is parsed again. Weak, and
/// keyed by a digest rather than the text: the cache holds no copy of a private key, nor a
/// key no tenant uses any more.
static KEYS_READ: LazyLock<Mutex<HashMap<PathBuf, KeyRead>>> = LazyLock::new(Mutex::default);

struct KeyRead {
    digest: [u8; 32],
    key: Weak<ServiceAccountKey>,
    state: KeyState,
}

fn read_key(path: &std::path::Path) -> Result<(Arc<ServiceAccountKey>, KeyState), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    let mut keys = crate::mutex::lock(&KEYS_READ);
    if let Some(read) = keys.get(path).filter(|read| read.digest == digest) {
        if let Some(key) = read.key.upgrade() {
            return Ok((key, read.state));
        }
    }
    let (key, state) = parse_key(path, &text)?;
    let key = Arc::new(key);
    keys.retain(|_, read| read.key.strong_count() > 0);
    keys.insert(
        path.to_owned(),
        KeyRead {
            digest,
            key: Arc::downgrade(&key),
            state,
        },
    );
    Ok((key, state))
}

fn parse_key(path: &std::path::Path, text: &str) -> Result<(ServiceAccountKey, KeyState), String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|err| {
        format!(
            "{} is not JSON ({err}): download the service-account key (JSON) again",
            path.display()
        )
    })?;
    for field in ["private_key", "client_email", "token_uri"] {
        if json
            .get(field)
            .and_then(serde_json::Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!(
                "{} has no `{field}`: it is not a service-account key file",
                path.display()
            ));
        }
    }
    let key: ServiceAccountKey = serde_json::from_value(json)
        .map_err(|err| format!("{} is not a service-account key: {err}", path.display()))?;
    check_token_uri(&key.token_uri).map_err(|problem| {
        format!(
            "{}: `token_uri` {:?} {problem}",
            path.display(),
            key.token_uri
        )
    })?;
    if key.private_key.contains(EXAMPLE_PLACEHOLDER) {
        return Ok((key, KeyState::ExamplePlaceholder));
    }
    check_private_key(&key.private_key).map_err(|problem| {
        format!(
            "{}: `private_key` {problem}: download the service-account key JSON again",
            path.display()
        )
    })?;
    Ok((key, KeyState::Usable))
}

/// The token endpoint must be an http(s) URL that the OAuth client can also parse (it uses
/// `http::Uri`, which is stricter than a browser).
fn check_token_uri(text: &str) -> Result<(), String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(url) => {
            return Err(format!(
                "is a {}: URL; the token endpoint must be an http:// or https:// URL",
                url.scheme()
            ))
        }
        Err(err) => {
            return Err(format!(
                "is not a URL ({err}); the token endpoint must be an http:// or https:// URL"
            ))
        }
    }
    match axum::http::Uri::try_from(text) {
        Ok(uri) if uri.host().is_some() => Ok(()),
        _ => Err("is not a valid http(s) URL (spaces or characters a URL may not hold)".into()),
    }
}

/// The algorithm OIDs (DER) a PKCS#8 key may name, to say which kind of key it is.
const RSA_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const EC_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// The private key must be a PEM RSA key that parses (PKCS#8 as Google issues it, or PKCS#1),
/// as the token signer reads it.
fn check_private_key(pem: &str) -> Result<(), String> {
    use base64::Engine as _;
    let begin = pem
        .find("-----BEGIN ")
        .ok_or("is not a PEM key (no -----BEGIN line)")?;
    let rest = &pem[begin + "-----BEGIN ".len()..];
    let label_end = rest
        .find("-----")
        .ok_or("is not a PEM key (a broken BEGIN line)")?;
    let label = &rest[..label_end];
    if !matches!(label, "PRIVATE KEY" | "RSA PRIVATE KEY") {
        return Err(format!(
            "is a {label:?} PEM block, not an RSA private key (\"PRIVATE KEY\")"
        ));
    }
    let body_and_end = &rest[label_end + "-----".len()..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_and_end
        .find(&end_marker)
        .ok_or("is truncated (no -----END line)")?;
    let body: String = body_and_end[..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| "is damaged or truncated (its body is not base64)".to_owned())?;
    let parsed = if label == "RSA PRIVATE KEY" {
        aws_lc_rs::rsa::KeyPair::from_der(&der)
    } else {
        aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
    };
    match parsed {
        Ok(_) => Ok(()),
        Err(_) if contains(&der, EC_OID) => {
            Err("is an EC key; a Google service account signs with RSA".into())
        }
        Err(_) if contains(&der, ED25519_OID) => {
            Err("is an Ed25519 key; a Google service account signs with RSA".into())
        }
        Err(err) if label == "RSA PRIVATE KEY" || contains(&der, RSA_OID) => Err(format!(
            "is an RSA key that does not parse ({err}): truncated or damaged"
        )),
        Err(err) => Err(format!("is not an RSA private key ({err})")),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn validate_scim(raw: RawScim, p: &mut Problems<'_>) -> Option<SourceConfig> {
    let base_url = match raw.base_url {
        Some(url) => http_url(&url, "source.base_url", p),
        None => {
            p.add(
                "source.base_url",
                "missing: the SCIM service provider's base URL, e.g. https://idp.example/scim/v2",
            );
            None
        }
    };
    let auth = match raw.auth.as_deref().unwrap_or("bearer") {
        "bearer" => match raw.token_file {
            Some(path) => p
                .read_secret("source.token_file", &path, SecretShape::Token)
                .map(ScimAuth::Bearer),
            None => {
                p.add(
                    "source.token_file",
                    "missing: a file holding the SCIM bearer token",
                );
                None
            }
        },
        "basic" => {
            let username = match raw.username.clone() {
                Some(name) if name.contains(':') || name.chars().any(char::is_control) => {
                    p.add(
                        "source.username",
                        "a basic-auth user name may hold no ':' and no control characters",
                    );
                    None
                }
                Some(name) => Some(name),
                None => {
                    p.add("source.username", "missing: required with auth = \"basic\"");
                    None
                }
            };
            let password = match raw.password_file {
                Some(path) => p.read_secret("source.password_file", &path, SecretShape::Text),
                None => {
                    p.add(
                        "source.password_file",
                        "missing: required with auth = \"basic\"",
                    );
                    None
                }
            };
            Some(ScimAuth::Basic {
                username: username?,
                password: password?,
            })
        }
        "header" => {
            let name = match raw.header_name.clone() {
                Some(name) if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() => {
                    p.add(
                        "source.header_name",
                        format!("{name:?} is not an HTTP header name (letters, digits and -, no spaces or ':')"),
                    );
                    None
                }
                Some(name) => Some(name),
                None => {
                    p.add(
                        "source.header_name",
                        "missing: required with auth = \"header\"",
                    );
                    None
                }
            };
            let value = match raw.token_file {
                Some(path) => p.read_secret("source.token_file", &path, SecretShape::HeaderValue),
                None => {
                    p.add(
                        "source.token_file",
                        "missing: a file holding the header's value",
                    );
                    None
                }
            };
            Some(ScimAuth::Header {
                name: name?,
                value: value?,
            })
        }
        "none" => Some(ScimAuth::None),
        other => {
            p.add(
                "source.auth",
                format!("{other:?}: use \"bearer\", \"basic\", \"header\" or \"none\""),
            );
            None
        }
    };
    if raw.page_size == Some(0) {
        p.add("source.page_size", "must be at least 1");
    }
    Some(SourceConfig::Scim(ScimSourceConfig {
        base_url: base_url?,
        auth: auth?,
        page_size: raw.page_size.filter(|size| *size > 0),
        pagination: raw.pagination,
        filter_supported: raw.filter_supported,
        suspended_users: raw.suspended_users,
        nested_groups: raw.nested_groups,
        max_concurrency: raw.max_concurrency.unwrap_or(4).max(1),
        requests_per_minute: raw.requests_per_minute.unwrap_or(0),
        retry_max: Duration::from_secs(raw.retry_max_seconds.unwrap_or(DEFAULT_RETRY_MAX_SECONDS)),
        request_timeout: Duration::from_secs(raw.request_timeout_seconds.unwrap_or(60)),
        max_run: max_run(raw.max_run_seconds, p),
    }))
}
