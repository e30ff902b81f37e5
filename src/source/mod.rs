//! Sources: fetch a complete, normalized snapshot of a tenant's directory from its IdP. A
//! fetch either returns every user, group and direct membership, or an error; never a part.
//!
//! Bounded whatever the IdP sends: a listing stops with an error past [`MAX_LISTED`] objects or
//! [`MAX_PAGES`] pages, a response body past `http::MAX_RESPONSE_BYTES`, and one user's JSON
//! past [`MAX_OBJECT_BYTES`] refuses the run naming the user (nothing is truncated silently).
//!
//! Must not: touch the store, apply tenant policy (that is `policy`), or emit events.

pub mod google;
pub mod http;
pub mod push_console;
pub mod scim;
pub mod scim_push;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{SourceConfig, TenantConfig};
use crate::event::SourceKind;
use crate::model::{Group, Id, MemberKind, User};

/// The most objects (users, groups, or one group's members) one listing may return: twice
/// the largest directories dirsync is built for. More is a server that never ends a listing.
pub const MAX_LISTED: usize = 2_000_000;
/// The most pages one listing may take.
pub const MAX_PAGES: u64 = 100_000;
/// The largest JSON of one user (its attributes together): Google's and SCIM's real users are
/// a few kilobytes; a bigger one would be stored and posted to every sink as one event.
pub const MAX_OBJECT_BYTES: usize = 1 << 20;

/// About how many bytes `value` takes as JSON (strings and keys counted, a little per item),
/// without serializing it.
pub fn json_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(text) => text.len() + 2,
        Value::Array(items) => items.iter().map(|item| json_size(item) + 1).sum::<usize>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(key, item)| key.len() + 4 + json_size(item))
                .sum::<usize>()
                + 2
        }
    }
}

/// Refuses one object larger than [`MAX_OBJECT_BYTES`], naming it.
pub fn check_object_size(
    url: &str,
    what: &str,
    value: &serde_json::Value,
) -> Result<(), SourceError> {
    let size = json_size(value);
    if size <= MAX_OBJECT_BYTES {
        return Ok(());
    }
    let id = value
        .get("id")
        .and_then(|id| id.as_str())
        .unwrap_or("(no id)");
    let email = value
        .get("primaryEmail")
        .or_else(|| value.get("userName"))
        .and_then(|name| name.as_str())
        .unwrap_or("");
    let largest = value
        .as_object()
        .and_then(|map| map.iter().max_by_key(|(_, item)| json_size(item)))
        .map(|(key, _)| key.as_str())
        .unwrap_or("");
    Err(SourceError::InvalidResponse {
        url: url.to_owned(),
        message: format!(
            "{what} {id} {email} is {} KiB of JSON (its largest attribute: `{largest}`), more than the {} KiB dirsync accepts for one object; the run is refused rather than storing and sending it: fix the attribute in the IdP",
            size >> 10,
            MAX_OBJECT_BYTES >> 10
        ),
    })
}

/// A user as a source returned it: normalized, plus what policy needs to decide on it.
#[derive(Debug, Clone)]
pub struct FetchedUser {
    /// `roles` and `custom_attributes` are empty: policy fills them.
    pub user: User,
    /// Google's `orgUnitPath`; `None` for sources without org units.
    pub org_unit_path: Option<String>,
    /// Other addresses the user is known by (Google aliases), for `inspect`.
    pub aliases: Vec<String>,
}

/// A direct member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberRef {
    /// A user of this directory.
    User(Id),
    /// A group of this directory (nested).
    Group(Id),
    /// Anything else (an external user, the whole customer, an id no longer in the directory):
    /// never a membership event. Boxed: a large directory lists a million members, nearly all
    /// users and groups, and this keeps each at 24 bytes instead of 72.
    Other(Box<OtherMember>),
}

/// A direct member that is no user or group of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherMember {
    /// The source's member type (`EXTERNAL`, `CUSTOMER`, …).
    pub kind: String,
    pub id: Option<String>,
    pub email: Option<String>,
}

/// Everything one fetch returned.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub source: SourceKind,
    pub users: Vec<FetchedUser>,
    pub groups: Vec<Group>,
    /// Direct members of every group in `groups`.
    pub members: BTreeMap<Id, Vec<MemberRef>>,
}

/// A fetch read to its end, perhaps not parsed yet.
#[allow(clippy::large_enum_variant)] // one per running sync, moved once
pub enum FetchedPages {
    Google(google::PendingFetch),
    Parsed(Fetched),
}

impl FetchedPages {
    /// A digest of the directory, such that two fetches of equal digests parse to equal
    /// `Fetched`; `None` when the source gives none.
    pub fn digest(&self) -> Option<[u8; 32]> {
        match self {
            FetchedPages::Google(pending) => Some(pending.digest()),
            FetchedPages::Parsed(_) => None,
        }
    }

    pub fn parse(self) -> Result<Fetched, SourceError> {
        match self {
            FetchedPages::Google(pending) => pending.parse(),
            FetchedPages::Parsed(fetched) => Ok(fetched),
        }
    }
}

/// Counters a fetch updates as it goes, shared with metrics.
#[derive(Debug, Default)]
pub struct FetchStats {
    pub api_requests: AtomicU64,
    pub retries: AtomicU64,
}

impl FetchStats {
    pub fn requests(&self) -> u64 {
        self.api_requests.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("authentication failed: {message}")]
    Auth {
        message: String,
        hint: Option<String>,
    },
    #[error("{method} {url} answered HTTP {status}{}: {message}", reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Http {
        method: String,
        url: String,
        status: u16,
        reason: Option<String>,
        message: String,
    },
    #[error("cannot reach {url}: {message}")]
    Network { url: String, message: String },
    #[error("{url} returned a response dirsync cannot read: {message}")]
    InvalidResponse { url: String, message: String },
    #[error("{0}")]
    Protocol(String),
    #[error("the fetch was cancelled")]
    Cancelled,
    #[error("a scim_push tenant has no IdP to fetch from: its IdP provisions into dirsync's SCIM endpoints")]
    PushTenant,
}

impl SourceError {
    /// Whether trying the same request again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Http { status, reason, .. } => {
                http::is_retryable_status(*status, reason.as_deref())
            }
            SourceError::Network { .. } => true,
            _ => false,
        }
    }

    /// What an operator should do about it, when dirsync knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            SourceError::Auth { hint, .. } => hint.clone(),
            SourceError::Http { status: 401, .. } => {
                Some("check the credentials in the tenant's [source]".into())
            }
            // Messages naming Google's consoles or scopes live in `source::google::console`.
            SourceError::Http {
                status: 403,
                reason,
                ..
            } if reason.as_deref() == Some("forbidden") => {
                Some(google::console::subject_not_admin(None))
            }
            SourceError::Http {
                status: 403,
                reason,
                ..
            } if reason.as_deref() == Some("insufficientPermissions") => {
                Some(google::console::insufficient_scopes())
            }
            SourceError::Http {
                status: 403,
                reason,
                message,
                ..
            } if reason.as_deref() == Some("accessNotConfigured")
                || message.contains("SERVICE_DISABLED") =>
            {
                Some(google::console::api_not_enabled(None))
            }
            // A connect that failed for lack of descriptors is this host's limit, not the IdP.
            SourceError::Network { message, .. }
                if crate::process_stats::mentions_out_of_descriptors(message) =>
            {
                Some(crate::process_stats::descriptors_advice())
            }
            _ => None,
        }
    }
}

/// A tenant's source, ready to fetch.
#[allow(clippy::large_enum_variant)] // one per running sync
pub enum Source {
    Google(google::GoogleSource),
    Scim(scim::ScimSource),
    /// A push tenant: what its IdP provisioned, read from the store.
    Pushed {
        store: crate::store::Store,
        tenant: String,
        email_from: crate::config::EmailFrom,
    },
}

impl Source {
    pub async fn new(tenant: &TenantConfig, stats: Arc<FetchStats>) -> Result<Self, SourceError> {
        match &tenant.source {
            SourceConfig::Google(config) => Ok(Source::Google(
                google::GoogleSource::sharing_tokens(
                    config.clone(),
                    &tenant.filters,
                    &tenant.attributes,
                    stats,
                )
                .await?,
            )),
            SourceConfig::Scim(config) => {
                Ok(Source::Scim(scim::ScimSource::new(config.clone(), stats)?))
            }
            SourceConfig::ScimPush(_) => Err(SourceError::PushTenant),
        }
    }

    /// The source of a push tenant's runs: its pushed directory in `store`.
    pub fn pushed(store: crate::store::Store, tenant: &TenantConfig) -> Option<Self> {
        match &tenant.source {
            SourceConfig::ScimPush(push) => Some(Source::Pushed {
                store,
                tenant: tenant.id.clone(),
                email_from: push.email_from,
            }),
            _ => None,
        }
    }

    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Google(_) => SourceKind::Google,
            Source::Scim(_) => SourceKind::Scim,
            Source::Pushed { .. } => SourceKind::ScimPush,
        }
    }

    /// Fetches the complete directory. `cancel` abandons it (nothing is returned).
    pub async fn fetch(&self, cancel: &CancellationToken) -> Result<Fetched, SourceError> {
        self.fetch_pages(cancel).await?.parse()
    }

    /// Reads the complete directory, leaving what can wait unparsed: a Google directory whose
    /// pages fit `google::KEEP_UNPARSED_BYTES`. `cancel` abandons it (nothing is returned).
    pub async fn fetch_pages(
        &self,
        cancel: &CancellationToken,
    ) -> Result<FetchedPages, SourceError> {
        let fetch = async {
            match self {
                Source::Google(source) => source.fetch_pages().await.map(FetchedPages::Google),
                Source::Scim(source) => source.fetch().await.map(FetchedPages::Parsed),
                Source::Pushed {
                    store,
                    tenant,
                    email_from,
                } => scim_push::fetch(store, tenant, *email_from)
                    .await
                    .map(FetchedPages::Parsed),
            }
        };
        tokio::select! {
            result = fetch => result,
            () = cancel.cancelled() => Err(SourceError::Cancelled),
        }
    }

    /// Of `ids` (stored, absent from the listing), those the IdP confirms are gone. Google's
    /// listings do not tear, so absence is confirmation there; a SCIM listing can, so each
    /// absent resource is asked for by id.
    pub async fn confirm_absent(
        &self,
        kind: MemberKind,
        ids: &[Id],
    ) -> Result<Vec<Id>, SourceError> {
        match self {
            // The store is read whole, in one transaction: absence is confirmation.
            Source::Google(_) | Source::Pushed { .. } => Ok(ids.to_vec()),
            Source::Scim(source) => source.confirm_absent(kind, ids).await,
        }
    }

    /// Of stored users absent from a listing that did not cover the whole directory (Google
    /// with an org-unit filter pushed down), those that still exist, so policy can say why
    /// they are out of scope instead of treating them as deleted.
    pub async fn locate_users(&self, ids: &[Id]) -> Result<Vec<FetchedUser>, SourceError> {
        match self {
            Source::Google(source) => source.locate_users(ids).await,
            Source::Scim(_) | Source::Pushed { .. } => Ok(Vec::new()),
        }
    }

    /// A quick connectivity check: a token and one page. Returns a one-line description.
    pub async fn check(&self) -> Result<String, SourceError> {
        match self {
            Source::Google(source) => source.check().await,
            Source::Scim(source) => source.check().await,
            Source::Pushed { .. } => Err(SourceError::PushTenant),
        }
    }
}
