//! `[source]`: which IdP a tenant reads and how.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{section, Problems, Secret};
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
}

impl SourceConfig {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceConfig::Google(_) => SourceKind::Google,
            SourceConfig::Scim(_) => SourceKind::Scim,
        }
    }

    pub fn suspended_users(&self) -> SuspendedUsers {
        match self {
            SourceConfig::Google(google) => google.suspended_users,
            SourceConfig::Scim(scim) => scim.suspended_users,
        }
    }

    pub fn nested_groups(&self) -> NestedGroups {
        match self {
            SourceConfig::Google(google) => google.nested_groups,
            SourceConfig::Scim(scim) => scim.nested_groups,
        }
    }
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
}

#[derive(Debug, Clone)]
pub struct GoogleSourceConfig {
    pub credentials_file: PathBuf,
    pub service_account_key: yup_oauth2::ServiceAccountKey,
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
        Some("google") => validate_google(section(toml::Value::Table(table), "source", p)?, p),
        Some("scim") => validate_scim(section(toml::Value::Table(table), "source", p)?, p),
        Some(other) => {
            p.add(
                "source.type",
                format!("{other:?} is not a source type: use \"google\" or \"scim\""),
            );
            None
        }
        None => {
            p.add("source.type", "missing: set type = \"google\" or \"scim\"");
            None
        }
    }
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
    let service_account_key =
        credentials_file
            .as_ref()
            .and_then(|path| match read_service_account_key(path) {
                Ok(key) => Some(key),
                Err(message) => {
                    p.add("source.credentials_file", message);
                    None
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
    let api_base = check_url(&api_base, "source.api_base", p)?;
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
        api_base,
        suspended_users: raw.suspended_users,
        nested_groups: raw.nested_groups,
        max_concurrency: max_concurrency.max(1),
        requests_per_minute: raw.requests_per_minute.unwrap_or(2400),
        retry_max: Duration::from_secs(raw.retry_max_seconds.unwrap_or(300)),
        request_timeout: Duration::from_secs(raw.request_timeout_seconds.unwrap_or(60)),
        all_scopes: false,
    }))
}

/// Reads a service-account key file, saying precisely what is wrong with it.
pub fn read_service_account_key(
    path: &std::path::Path,
) -> Result<yup_oauth2::ServiceAccountKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|err| {
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
    let key: yup_oauth2::ServiceAccountKey = serde_json::from_value(json)
        .map_err(|err| format!("{} is not a service-account key: {err}", path.display()))?;
    if !key.private_key.contains("BEGIN PRIVATE KEY") {
        return Err(format!(
            "{}: `private_key` is not a PKCS#8 PEM key",
            path.display()
        ));
    }
    Ok(key)
}

fn check_url(text: &str, key: &str, p: &mut Problems<'_>) -> Option<String> {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Some(text.trim_end_matches('/').to_owned())
        }
        _ => {
            p.add(key, format!("{text:?} is not an http(s) URL"));
            None
        }
    }
}

fn validate_scim(raw: RawScim, p: &mut Problems<'_>) -> Option<SourceConfig> {
    let base_url = match raw.base_url {
        Some(url) => check_url(&url, "source.base_url", p),
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
                .read_secret("source.token_file", &path)
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
            let username = raw.username.clone();
            if username.is_none() {
                p.add("source.username", "missing: required with auth = \"basic\"");
            }
            let password = match raw.password_file {
                Some(path) => p.read_secret("source.password_file", &path),
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
            let name = raw.header_name.clone();
            if name.is_none() {
                p.add(
                    "source.header_name",
                    "missing: required with auth = \"header\"",
                );
            }
            let value = match raw.token_file {
                Some(path) => p.read_secret("source.token_file", &path),
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
        retry_max: Duration::from_secs(raw.retry_max_seconds.unwrap_or(300)),
        request_timeout: Duration::from_secs(raw.request_timeout_seconds.unwrap_or(60)),
    }))
}
