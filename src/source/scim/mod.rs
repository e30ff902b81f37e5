//! The SCIM 2.0 pull source (RFC 7643/7644, RFC 9865 cursors): discovers what the server
//! supports, lists every User and Group to the end, reads group memberships however the server
//! offers them, and normalizes the result like the Google source does. A fetch returns the
//! whole directory or an error, never a part; a listing torn by concurrent changes is repeated.
//!
//! Must not: touch the store, apply tenant policy, or decide that something was deleted (the
//! caller may ask `confirm_absent`).

mod discovery;
mod listing;
pub(super) mod normalize;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{ScimAuth, ScimSourceConfig};
use crate::event::SourceKind;
use crate::model::{Group, Id, MemberKind};
use crate::source::http::{self, RateLimiter, Reply, RetryPolicy};
use crate::source::{FetchStats, Fetched, FetchedUser, MemberRef, SourceError};
use discovery::{Endpoints, Paging, Plan, ServerInfo};
use listing::{Collector, Page, PageError};
use normalize::RawMember;

/// How often a listing torn by concurrent changes is started again before giving up.
const MAX_LISTING_ATTEMPTS: u32 = 3;
use super::{check_object_size, MAX_LISTED, MAX_PAGES};

/// The SCIM resource type's name in messages ("users", "groups").
fn resource_name(kind: MemberKind) -> &'static str {
    match kind {
        MemberKind::User => "users",
        MemberKind::Group => "groups",
    }
}

pub struct ScimSource {
    inner: Arc<Inner>,
}

struct Inner {
    config: ScimSourceConfig,
    client: reqwest::Client,
    stats: Arc<FetchStats>,
    limiter: RateLimiter,
    retry: RetryPolicy,
    /// Endpoints from the last discovery, for `confirm_absent`.
    endpoints: Mutex<Option<Endpoints>>,
}

/// What discovery found and what dirsync chose.
#[derive(Debug, Clone)]
struct Discovery {
    server: ServerInfo,
    endpoints: Endpoints,
    /// When the Group schema says `members` is returned, if it says.
    members_returned: Option<String>,
    plan: Plan,
}

/// Where group memberships came from, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MembersFrom {
    List,
    PerGroup,
    Filter,
    Nowhere,
}

impl ScimSource {
    pub fn new(config: ScimSourceConfig, stats: Arc<FetchStats>) -> Result<Self, SourceError> {
        let client = super::http::client(config.request_timeout)?;
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(config.requests_per_minute),
                retry: RetryPolicy::new(config.retry_max),
                config,
                client,
                stats,
                endpoints: Mutex::new(None),
            }),
        })
    }

    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        let inner = &self.inner;
        let discovery = inner.discover().await?;
        let (user_resources, group_resources) = tokio::try_join!(
            inner.list_all(MemberKind::User, &discovery, &[]),
            inner.list_all(MemberKind::Group, &discovery, &[]),
        )?;
        let users_url = inner.url(&discovery.endpoints.users);
        let groups_url = inner.url(&discovery.endpoints.groups);
        let users = user_resources
            .iter()
            .map(|resource| {
                check_object_size(&users_url, "user", resource)?;
                normalize::user(resource).map_err(|bad| SourceError::InvalidResponse {
                    url: users_url.clone(),
                    message: bad.0,
                })
            })
            .collect::<Result<Vec<FetchedUser>, _>>()?;
        let groups = group_resources
            .iter()
            .map(|resource| {
                normalize::group(resource).map_err(|bad| SourceError::InvalidResponse {
                    url: groups_url.clone(),
                    message: bad.0,
                })
            })
            .collect::<Result<Vec<Group>, _>>()?;
        let user_ids: BTreeSet<Id> = users.iter().map(|u| u.user.id.clone()).collect();
        let group_ids: BTreeSet<Id> = groups.iter().map(|g| g.id.clone()).collect();
        let (raw_members, from) = inner
            .memberships(&discovery, &group_resources, &user_ids, &group_ids)
            .await?;
        let members: BTreeMap<Id, Vec<MemberRef>> = group_ids
            .iter()
            .map(|id| {
                let raw = raw_members.get(id).map(Vec::as_slice).unwrap_or(&[]);
                (id.clone(), normalize::resolve(raw, &user_ids, &group_ids))
            })
            .collect();
        tracing::info!(
            users = users.len(),
            groups = groups.len(),
            memberships = members.values().map(Vec::len).sum::<usize>(),
            paging = discovery.plan.paging.name(),
            page_size = discovery.plan.page_size,
            members_from = ?from,
            discovery_advertised = discovery.server.advertised,
            "SCIM fetch complete"
        );
        Ok(Fetched {
            source: SourceKind::Scim,
            users,
            groups,
            members,
        })
    }

    /// Reads `/ServiceProviderConfig` and one page of users; describes what the server supports
    /// and what dirsync chose.
    pub async fn check(&self) -> Result<String, SourceError> {
        let inner = &self.inner;
        let server = inner.service_provider_config().await?;
        let plan = Plan::choose(&inner.config, &server);
        let endpoints = inner.known_endpoints().await?;
        let url = inner.url(&endpoints.users);
        let mut query = vec![("count".to_owned(), plan.page_size.to_string())];
        query.push(match plan.paging {
            Paging::Index => ("startIndex".to_owned(), "1".to_owned()),
            Paging::Cursor => ("cursor".to_owned(), String::new()),
        });
        let page = inner.get_page(&url, &query).await?;
        let offers = match (server.index, server.cursor) {
            _ if !server.advertised => {
                "no ServiceProviderConfig (assuming index paging)".to_owned()
            }
            (None, None) => "paging not advertised".to_owned(),
            (index, cursor) => {
                let mut methods = Vec::new();
                if index != Some(false) {
                    methods.push("index");
                }
                if cursor == Some(true) {
                    methods.push("cursor");
                }
                format!("paging {}", methods.join("+"))
            }
        };
        let max = server
            .max_page_size
            .map(|max| format!(", max page {max}"))
            .unwrap_or_default();
        let filter = match server.filter {
            Some(true) => format!(
                "filter supported{}",
                server
                    .filter_max_results
                    .map(|max| format!(" (max {max} results)"))
                    .unwrap_or_default()
            ),
            Some(false) => "no filter".to_owned(),
            None => "filter support unknown".to_owned(),
        };
        let total = page
            .total
            .map(|total| total.to_string())
            .unwrap_or_else(|| "an unknown number of".to_owned());
        Ok(format!(
            "SCIM {}: server offers {offers}{max}, {filter}; dirsync uses {} paging, page size {}, filters {}; first page: {} of {total} users",
            inner.config.base_url,
            plan.paging.name(),
            plan.page_size,
            if plan.filter { "on" } else { "off" },
            page.resources.len(),
        ))
    }

    /// Which of `ids` the server confirms are gone (404/410 on `GET /Users/{id}` or
    /// `/Groups/{id}`). An id that answers 200 still exists: a listing that missed it was torn,
    /// and the caller must fetch again or fail rather than report it deleted.
    pub async fn confirm_absent(
        &self,
        kind: MemberKind,
        ids: &[Id],
    ) -> Result<Vec<Id>, SourceError> {
        let endpoints = self.inner.known_endpoints().await?;
        let endpoint = match kind {
            MemberKind::User => endpoints.users,
            MemberKind::Group => endpoints.groups,
        };
        let mut gone = Vec::new();
        for id in ids {
            let url = self.inner.resource_url(&endpoint, id)?;
            match self.inner.get_json(&url, &[]).await {
                Ok(_) => {}
                Err(SourceError::Http {
                    status: 404 | 410, ..
                }) => gone.push(id.clone()),
                Err(err) => return Err(err),
            }
        }
        Ok(gone)
    }
}

impl Inner {
    /// `endpoint` relative to the base URL (or already absolute).
    fn url(&self, endpoint: &str) -> String {
        if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
            endpoint.trim_end_matches('/').to_owned()
        } else {
            format!(
                "{}/{}",
                self.config.base_url,
                endpoint.trim_start_matches('/').trim_end_matches('/')
            )
        }
    }

    fn resource_url(&self, endpoint: &str, id: &str) -> Result<String, SourceError> {
        let base = self.url(endpoint);
        let mut url = url::Url::parse(&base).map_err(|err| {
            SourceError::Protocol(format!(
                "{base} is not a URL ({err}): check source.base_url"
            ))
        })?;
        url.path_segments_mut()
            .map_err(|()| SourceError::Protocol(format!("{base} cannot have a path")))?
            .push(id);
        Ok(url.to_string())
    }

    fn request(&self, url: &str, query: &[(String, String)]) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "application/scim+json, application/json",
            )
            .query(query);
        request = match &self.config.auth {
            ScimAuth::Bearer(token) => request.bearer_auth(token.expose()),
            ScimAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
            ScimAuth::Header { name, value } => request.header(name.as_str(), value.expose()),
            ScimAuth::None => request,
        };
        request
    }

    /// Where to look when the server refuses the credentials.
    fn credential_keys(&self) -> &'static str {
        match self.config.auth {
            ScimAuth::Bearer(_) => "the bearer token in source.token_file",
            ScimAuth::Basic { .. } => "source.username and the password in source.password_file",
            ScimAuth::Header { .. } => "source.header_name and the value in source.token_file",
            ScimAuth::None => {
                "nothing (source.auth = \"none\"): set source.auth and source.token_file"
            }
        }
    }

    async fn send(&self, url: &str, query: &[(String, String)]) -> Result<Reply, SourceError> {
        let result = http::send(
            || self.request(url, query),
            &self.stats,
            &self.limiter,
            &self.retry,
        )
        .await;
        match result {
            Err(SourceError::Http {
                status: status @ (401 | 403),
                message,
                method,
                url,
                ..
            }) => Err(SourceError::Auth {
                message: format!(
                    "{method} {url} answered HTTP {status} ({message}): the SCIM server refused {}",
                    self.credential_keys()
                ),
                hint: Some(format!(
                    "check {} and that it may read Users and Groups",
                    self.credential_keys()
                )),
            }),
            other => other,
        }
    }

    /// GETs a JSON body; HTML or other non-JSON answers become errors saying what is wrong.
    async fn get_json(&self, url: &str, query: &[(String, String)]) -> Result<Value, SourceError> {
        let reply = self.send(url, query).await?;
        let body = reply.body.trim_start();
        if body.starts_with('<') {
            return Err(SourceError::InvalidResponse {
                url: reply.url,
                message: format!(
                    "it answered HTML, so {} is not a SCIM endpoint: set source.base_url to the SCIM root that /Users and /ServiceProviderConfig hang off (e.g. https://idp.example/scim/v2)",
                    self.config.base_url
                ),
            });
        }
        http::parse_json(&reply)
    }

    async fn get_page(&self, url: &str, query: &[(String, String)]) -> Result<Page, SourceError> {
        let body = match self.get_json(url, query).await {
            Err(SourceError::Http {
                status: 404,
                method,
                url,
                message,
                ..
            }) => {
                return Err(SourceError::Protocol(format!(
                    "{method} {url} answered HTTP 404 ({message}): check source.base_url, it must be the SCIM root (e.g. https://idp.example/scim/v2)"
                )))
            }
            other => other?,
        };
        listing::parse_page(&body).map_err(|message| SourceError::InvalidResponse {
            url: url.to_owned(),
            message: format!("{message}; is source.base_url a SCIM endpoint?"),
        })
    }

    async fn service_provider_config(&self) -> Result<ServerInfo, SourceError> {
        let url = self.url("/ServiceProviderConfig");
        match self.get_json(&url, &[]).await {
            Ok(body) => ServerInfo::parse(&body).map_err(|message| SourceError::InvalidResponse {
                url,
                message: format!(
                    "{message}: {} is not a SCIM endpoint; set source.base_url to the SCIM root",
                    self.config.base_url
                ),
            }),
            // Discovery is mandatory in RFC 7644 but some servers skip it: assume little.
            Err(SourceError::Http {
                status: 404 | 405 | 501,
                ..
            }) => {
                tracing::warn!(%url, "no /ServiceProviderConfig: assuming index paging without filters");
                Ok(ServerInfo::default())
            }
            Err(err) => Err(err),
        }
    }

    /// An optional discovery document: `None` when the server does not serve it usefully.
    async fn optional_json(&self, endpoint: &str) -> Result<Option<Value>, SourceError> {
        let url = self.url(endpoint);
        match self.get_json(&url, &[]).await {
            Ok(body) => Ok(Some(body)),
            Err(err @ SourceError::Auth { .. }) => Err(err),
            Err(err) => {
                tracing::debug!(%url, error = %err, "optional SCIM discovery document unavailable");
                Ok(None)
            }
        }
    }

    async fn discover(&self) -> Result<Discovery, SourceError> {
        let server = self.service_provider_config().await?;
        let endpoints = self
            .optional_json("/ResourceTypes")
            .await?
            .map(|body| Endpoints::parse(&body))
            .unwrap_or_default();
        let members_returned = self
            .optional_json("/Schemas")
            .await?
            .and_then(|body| discovery::members_returned(&body));
        let plan = Plan::choose(&self.config, &server);
        if let Ok(mut known) = self.endpoints.lock() {
            *known = Some(endpoints.clone());
        }
        tracing::debug!(
            ?server,
            ?endpoints,
            ?members_returned,
            ?plan,
            "SCIM discovery"
        );
        Ok(Discovery {
            server,
            endpoints,
            members_returned,
            plan,
        })
    }

    async fn known_endpoints(&self) -> Result<Endpoints, SourceError> {
        if let Some(known) = self.endpoints.lock().ok().and_then(|known| known.clone()) {
            return Ok(known);
        }
        Ok(self
            .optional_json("/ResourceTypes")
            .await?
            .map(|body| Endpoints::parse(&body))
            .unwrap_or_default())
    }

    /// Lists every resource of `kind` (narrowed by `extra` query parameters), starting over
    /// when the listing was torn by concurrent changes.
    async fn list_all(
        &self,
        kind: MemberKind,
        discovery: &Discovery,
        extra: &[(String, String)],
    ) -> Result<Vec<Value>, SourceError> {
        let endpoint = match kind {
            MemberKind::User => &discovery.endpoints.users,
            MemberKind::Group => &discovery.endpoints.groups,
        };
        let url = self.url(endpoint);
        // The ids of the previous listing, when it was torn only by a count that did not match.
        let mut previous: Option<HashSet<String>> = None;
        let mut last_reason = String::new();
        for attempt in 1..=MAX_LISTING_ATTEMPTS {
            let collector = match discovery.plan.paging {
                Paging::Index => self.list_by_index(&url, &discovery.plan, extra).await?,
                Paging::Cursor => self.list_by_cursor(&url, &discovery.plan, extra).await?,
            };
            let ids = collector.ids().clone();
            match collector.finish() {
                Ok(resources) => return Ok(resources),
                Err((torn, resources)) => {
                    // Two steady listings in a row that agree are consistent: the server's count
                    // is what is off.
                    if !torn.changed && previous.as_ref() == Some(&ids) {
                        tracing::warn!(%url, reason = %torn.reason, "two listings agree although totalResults does not match; using them");
                        return Ok(resources);
                    }
                    tracing::warn!(%url, attempt, reason = %torn.reason, "SCIM listing changed while reading it; listing again");
                    previous = (!torn.changed).then_some(ids);
                    last_reason = torn.reason;
                }
            }
        }
        Err(SourceError::Protocol(format!(
            "listing {} at {url} changed under dirsync {MAX_LISTING_ATTEMPTS} times in a row ({last_reason}); nothing was synced, the next run will try again",
            resource_name(kind)
        )))
    }

    fn page_error(url: &str, error: PageError, position: &str) -> SourceError {
        match error {
            PageError::SameAgain => SourceError::Protocol(format!(
                "{url} returned the same page again for {position}: the server ignores the paging parameters; try source.pagination = \"cursor\" (or \"index\") or a larger source.page_size"
            )),
            PageError::NoId(resource) => SourceError::InvalidResponse {
                url: url.to_owned(),
                message: format!("a listed resource has no `id`: {resource}"),
            },
        }
    }

    /// A listing past [`MAX_PAGES`] pages or [`MAX_LISTED`] resources is a server that never
    /// ends it.
    fn check_bounds(url: &str, collector: &Collector) -> Result<(), SourceError> {
        if collector.pages >= MAX_PAGES || collector.ids().len() > MAX_LISTED {
            return Err(SourceError::Protocol(format!(
                "listing {url} did not end after {} pages and {} resources, more than dirsync accepts from one listing: the server is misbehaving; nothing was committed",
                collector.pages,
                collector.ids().len()
            )));
        }
        Ok(())
    }

    /// A reported `totalResults` beyond [`MAX_LISTED`] is refused before paging through it.
    fn check_total(url: &str, total: Option<u64>) -> Result<(), SourceError> {
        match total {
            Some(total) if total > MAX_LISTED as u64 => Err(SourceError::InvalidResponse {
                url: url.to_owned(),
                message: format!(
                    "totalResults is {total}, more than the {MAX_LISTED} resources dirsync lists from one server: refusing to page through it"
                ),
            }),
            _ => Ok(()),
        }
    }

    async fn list_by_index(
        &self,
        url: &str,
        plan: &Plan,
        extra: &[(String, String)],
    ) -> Result<Collector, SourceError> {
        let mut collector = Collector::default();
        let mut start: u64 = 1;
        loop {
            Self::check_bounds(url, &collector)?;
            let mut query = extra.to_vec();
            query.push(("startIndex".to_owned(), start.to_string()));
            query.push(("count".to_owned(), plan.page_size.to_string()));
            let page = self.get_page(url, &query).await?;
            let returned = page.resources.len() as u64;
            let total = page.total;
            Self::check_total(url, total)?;
            collector
                .add(page)
                .map_err(|err| Self::page_error(url, err, &format!("startIndex={start}")))?;
            if returned == 0 {
                break;
            }
            // Advance by what came back: servers cap pages below the `count` asked for, and
            // `itemsPerPage` is not always truthful.
            start += returned;
            if total.is_some_and(|total| start > total) {
                break;
            }
        }
        Ok(collector)
    }

    async fn list_by_cursor(
        &self,
        url: &str,
        plan: &Plan,
        extra: &[(String, String)],
    ) -> Result<Collector, SourceError> {
        let mut collector = Collector::default();
        let mut cursor = String::new();
        let mut seen_cursors = HashSet::new();
        loop {
            Self::check_bounds(url, &collector)?;
            let mut query = extra.to_vec();
            query.push(("cursor".to_owned(), cursor.clone()));
            query.push(("count".to_owned(), plan.page_size.to_string()));
            let page = self.get_page(url, &query).await?;
            Self::check_total(url, page.total)?;
            let next = page.next_cursor.clone();
            let position = if cursor.is_empty() {
                "the first cursor page".to_owned()
            } else {
                format!("cursor {cursor}")
            };
            collector
                .add(page)
                .map_err(|err| Self::page_error(url, err, &position))?;
            match next {
                None => break,
                Some(next) => {
                    if !seen_cursors.insert(next.clone()) {
                        return Err(Self::page_error(url, PageError::SameAgain, &position));
                    }
                    cursor = next;
                }
            }
        }
        Ok(collector)
    }

    /// Direct members of every group, keyed by group id, from wherever this server has them:
    /// the group list itself; else each group read by id; else (filter support) one
    /// `members.value eq` query per user and group.
    async fn memberships(
        self: &Arc<Self>,
        discovery: &Discovery,
        group_resources: &[Value],
        user_ids: &BTreeSet<Id>,
        group_ids: &BTreeSet<Id>,
    ) -> Result<(BTreeMap<Id, Vec<RawMember>>, MembersFrom), SourceError> {
        let from_resources = |resources: &[Value]| -> BTreeMap<Id, Vec<RawMember>> {
            resources
                .iter()
                .filter_map(|resource| {
                    let id = normalize::resource_id(resource)?;
                    Some((Id::from(id), normalize::members(resource)))
                })
                .collect()
        };
        if group_resources.is_empty() {
            return Ok((BTreeMap::new(), MembersFrom::List));
        }
        let never = discovery.members_returned.as_deref() == Some("never")
            || discovery.members_returned.as_deref() == Some("absent");
        if !never {
            // An empty group usually omits `members`, so only a list in which no group has the
            // attribute suggests the server leaves it out of lists.
            if group_resources.iter().any(normalize::has_members) {
                return Ok((from_resources(group_resources), MembersFrom::List));
            }
            let fetched = self.groups_by_id(discovery, group_ids).await?;
            if fetched.iter().any(normalize::has_members) {
                return Ok((from_resources(&fetched), MembersFrom::PerGroup));
            }
        }
        if !discovery.plan.filter {
            tracing::warn!(
                "the SCIM server returned no group members and does not support filters: every group is empty to dirsync; set source.filter_supported = true if it does support `members.value eq`"
            );
            return Ok((BTreeMap::new(), MembersFrom::Nowhere));
        }
        let members = self
            .members_by_filter(discovery, user_ids, group_ids)
            .await?;
        Ok((members, MembersFrom::Filter))
    }

    /// `GET /Groups/{id}?attributes=members` for every group, `max_concurrency` at a time.
    async fn groups_by_id(
        self: &Arc<Self>,
        discovery: &Discovery,
        group_ids: &BTreeSet<Id>,
    ) -> Result<Vec<Value>, SourceError> {
        let permits = Arc::new(Semaphore::new(self.config.max_concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for id in group_ids {
            let url = self.resource_url(&discovery.endpoints.groups, id)?;
            let inner = Arc::clone(self);
            let permits = Arc::clone(&permits);
            let id = id.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let query = [("attributes".to_owned(), "members".to_owned())];
                match inner.get_json(&url, &query).await {
                    Ok(group) => Ok((id, group)),
                    // Listed a moment ago, gone now: the snapshot would be torn.
                    Err(SourceError::Http { status: 404, .. }) => Err(SourceError::Protocol(format!(
                        "group {id} was deleted while dirsync read its members ({url} answered 404); nothing was synced, the next run will try again"
                    ))),
                    Err(err) => Err(err),
                }
            });
        }
        let mut groups = Vec::with_capacity(group_ids.len());
        while let Some(joined) = tasks.join_next().await {
            let (id, mut group) =
                joined.map_err(|err| SourceError::Protocol(err.to_string()))??;
            if let Some(object) = group.as_object_mut() {
                // A projected answer may leave the id out; it is the one asked for.
                object
                    .entry("id")
                    .or_insert_with(|| Value::String(id.to_string()));
            }
            groups.push(group);
        }
        Ok(groups)
    }

    /// One `members.value eq "<id>"` group listing per user and group: who contains it.
    async fn members_by_filter(
        self: &Arc<Self>,
        discovery: &Discovery,
        user_ids: &BTreeSet<Id>,
        group_ids: &BTreeSet<Id>,
    ) -> Result<BTreeMap<Id, Vec<RawMember>>, SourceError> {
        let permits = Arc::new(Semaphore::new(self.config.max_concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let candidates = user_ids
            .iter()
            .map(|id| (id, "User"))
            .chain(group_ids.iter().map(|id| (id, "Group")));
        for (id, kind) in candidates {
            let inner = Arc::clone(self);
            let permits = Arc::clone(&permits);
            let discovery = discovery.clone();
            let id = id.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let escaped = id.replace('\\', "\\\\").replace('"', "\\\"");
                let extra = [
                    (
                        "filter".to_owned(),
                        format!("members.value eq \"{escaped}\""),
                    ),
                    ("attributes".to_owned(), "id".to_owned()),
                ];
                let parents = inner
                    .list_all(MemberKind::Group, &discovery, &extra)
                    .await?;
                Ok::<_, SourceError>((id, kind, parents))
            });
        }
        let mut members: BTreeMap<Id, Vec<RawMember>> = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (id, kind, parents) =
                joined.map_err(|err| SourceError::Protocol(err.to_string()))??;
            for parent in parents {
                if let Some(parent) = normalize::resource_id(&parent) {
                    members
                        .entry(Id::from(parent))
                        .or_default()
                        .push(RawMember {
                            id: id.to_string(),
                            kind: Some(kind.to_owned()),
                            display: None,
                        });
                }
            }
        }
        // Join order is arbitrary; keep member lists deterministic.
        for list in members.values_mut() {
            list.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Ok(members)
    }
}
