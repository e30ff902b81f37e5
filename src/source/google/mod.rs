//! The Google Workspace source: the Admin SDK Directory API, read with a service account that
//! impersonates an admin (domain-wide delegation). A fetch lists every user (`users.list`),
//! every group (`groups.list`) and the direct members of each group (`members.list`,
//! concurrently), following page tokens to the end, and normalizes them (`normalize`).
//!
//! - Every request goes through `source::http::send` (retries, backoff, `Retry-After`) under
//!   one per-tenant rate limiter, and counts in `FetchStats`.
//! - A 401 from the API refreshes the token once and retries; a second 401 fails.
//! - A group that 404s on `members.list` was deleted after `groups.list`: it is dropped from
//!   the fetch, never reported as an empty group.
//! - Users are listed with `projection=basic` unless an `[attributes]` path reads
//!   `customSchemas`, then with `projection=full`; so `raw_attributes` holds custom schemas only
//!   for tenants that map them.
//! - With `[filters] org_units`, every configured org unit is first checked against
//!   `orgunits.list?type=all` (a typo fails the run naming the key, instead of syncing an empty
//!   scope), then users are listed per org unit (`query=orgUnitPath='/X'`, which matches the
//!   subtree); policy still filters locally, so a lagging search index delays a moved user,
//!   never keeps a wrong one. Members that are users outside those org units are then
//!   `Other { kind: "USER_NOT_FETCHED" }` instead of `"EXTERNAL"`. Stored users missing from
//!   such a filtered listing are read by id (`locate_users`), so a user who left the scope is
//!   told apart from one deleted upstream, and the search index's lag deletes no one.
//!
//! Must not: apply tenant policy, touch the store, or log tokens.

mod auth;
pub mod console;
pub mod normalize;
mod page;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::attribute_path::Segment;
use crate::config::{AttributeMapping, FiltersConfig, GoogleSourceConfig};
use crate::event::SourceKind;
use crate::model::{Group, Id};
use crate::source::http::{self, RateLimiter, RetryPolicy};
use crate::source::{
    check_object_size, FetchStats, Fetched, FetchedUser, MemberRef, OtherMember, SourceError,
    MAX_LISTED, MAX_PAGES,
};
use auth::TokenSource;
use normalize::MemberEmails;
use page::PageLedger;

/// The most bytes of pages one fetch keeps unparsed: a directory of a couple of thousand
/// users. Up to this, a run whose directory is unchanged (`PendingFetch::digest`) never parses
/// them; past it, pages are parsed as they arrive, so a large directory is never held twice.
pub const KEEP_UNPARSED_BYTES: usize = 4 << 20;

/// Where a listing's pages go besides `each`: their digests into the fetch's ledger, and
/// (while its budget lasts) the pages themselves into `kept`, unparsed.
#[derive(Default)]
struct Pages<'a> {
    ledger: Option<&'a PageLedger>,
    kept: Option<&'a mut Vec<KeptPage>>,
}

/// Whether a listing kept every page it read (none went to `each` yet).
#[must_use]
struct Keeping(bool);

/// A page read through but not parsed yet.
struct KeptPage {
    url: url::Url,
    page: u64,
    reply: http::Reply,
}

impl KeptPage {
    fn parse(
        self,
        method: &str,
        items_key: &str,
        each: &mut (dyn FnMut(Value) -> Result<(), SourceError> + Send),
    ) -> Result<(), SourceError> {
        let (items, _) = page::items(method, &self.url, self.page, items_key, &self.reply)?;
        items.into_iter().try_for_each(each)
    }
}

/// What names a listing in the ledger: the method, URL and query of its first page.
fn listing_key(method: &str, url: &url::Url, params: &[(&'static str, String)]) -> String {
    let mut key = format!("{method} {url}");
    for (name, value) in params {
        key.push_str(&format!(" {name}={value}"));
    }
    key
}

/// The users of one listing (every org-unit query of it), as its items are parsed.
#[derive(Default)]
struct UserListing {
    seen: std::collections::HashMap<Id, usize>,
    users: Vec<FetchedUser>,
}

impl UserListing {
    fn add(&mut self, url: &url::Url, item: Value) -> Result<(), SourceError> {
        check_object_size(url.as_str(), "users.list: user", &item)?;
        let user = normalize::user(item).map_err(|err| invalid(url, "users.list", &err))?;
        // Overlapping org-unit queries list a user twice, the same; a repeat with other data
        // is a listing torn by a change while it was read.
        match self.seen.get(&user.user.id) {
            None => {
                self.seen.insert(user.user.id.clone(), self.users.len());
                self.users.push(user);
            }
            Some(&index) if self.users[index].user == user.user => {}
            Some(_) => return Err(torn(url, "users.list", "user", &user.user.id)),
        }
        Ok(())
    }
}

/// One group's direct members as listed so far, and its pages kept unparsed.
struct MemberListing {
    members: Vec<MemberRef>,
    kept: Vec<KeptPage>,
}

/// A fetch whose pages are all read, not all parsed: `digest` says what the directory is,
/// and `parse` finishes it into a `Fetched` (when the digest did not show it unchanged).
pub struct PendingFetch {
    digest: [u8; 32],
    users_url: url::Url,
    users: UserListing,
    users_kept: Vec<KeptPage>,
    groups: Vec<Group>,
    group_ids: Arc<HashSet<Id>>,
    /// `None`: the group is gone (404).
    members: BTreeMap<Id, Option<MemberListing>>,
    member_emails: MemberEmails,
    unknown_user_kind: &'static str,
    requests: u64,
}

/// What `MemberEmails` holds once the member listing is over.
type SeenMembers = std::collections::HashMap<Box<str>, (Id, Option<String>)>;

/// The OAuth scopes dirsync asks for, all read-only. The org-unit scope is for `orgunits.list`,
/// which validates `[filters] org_units`.
pub const SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.orgunit.readonly",
];

/// The scopes a fetch asks for: the org-unit scope only when `[filters] org_units` needs
/// `orgunits.list`. Google refuses a token request naming any scope missing from the client's
/// delegation entry, so an entry granting only users and groups (all a plain sync reads) works.
pub fn scopes_for(filters: &FiltersConfig) -> Vec<&'static str> {
    SCOPES
        .iter()
        .copied()
        .filter(|scope| !scope.ends_with(".orgunit.readonly") || !filters.org_units.is_empty())
        .collect()
}

const USERS_PAGE_SIZE: &str = "500";
const GROUPS_PAGE_SIZE: &str = "200";
const MEMBERS_PAGE_SIZE: &str = "200";

pub struct GoogleSource {
    api: Api,
    /// `customer=` or `domain=`, the account or domain every list covers.
    scope: (&'static str, String),
    projection: &'static str,
    /// `query=` values for users.list; `None` lists everyone.
    user_queries: Vec<Option<String>>,
    /// `[filters] org_units`, checked against orgunits.list before a fetch.
    org_units: Vec<String>,
    /// The account orgunits.list reads (`customer`, even when users are listed by domain).
    customer: String,
    max_concurrency: usize,
}

/// Everything one request needs; cheap to clone into member-listing tasks.
#[derive(Clone)]
struct Api {
    base: url::Url,
    http: reqwest::Client,
    tokens: Arc<TokenSource>,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    stats: Arc<FetchStats>,
}

impl GoogleSource {
    /// A source whose token lives as long as it does.
    pub async fn new(
        config: GoogleSourceConfig,
        filters: &FiltersConfig,
        attributes: &AttributeMapping,
        stats: Arc<FetchStats>,
    ) -> Result<Self, SourceError> {
        Self::build(config, filters, attributes, stats, false).await
    }

    /// A source whose token is shared with every later run of this process for the same key
    /// and subject (the daemon's runs: one token request an hour, not one a run).
    pub async fn sharing_tokens(
        config: GoogleSourceConfig,
        filters: &FiltersConfig,
        attributes: &AttributeMapping,
        stats: Arc<FetchStats>,
    ) -> Result<Self, SourceError> {
        Self::build(config, filters, attributes, stats, true).await
    }

    async fn build(
        config: GoogleSourceConfig,
        filters: &FiltersConfig,
        attributes: &AttributeMapping,
        stats: Arc<FetchStats>,
        share_tokens: bool,
    ) -> Result<Self, SourceError> {
        let base = url::Url::parse(&config.api_base).map_err(|err| {
            SourceError::Protocol(format!(
                "source.api_base {:?} is not a URL: {err}",
                config.api_base
            ))
        })?;
        let http = super::http::client(config.request_timeout)?;
        let tokens = TokenSource::new(
            &config.service_account_key,
            &config.subject,
            if config.all_scopes {
                SCOPES.to_vec()
            } else {
                scopes_for(filters)
            },
            http.clone(),
        )?;
        let tokens = if share_tokens {
            tokens.shared_across_runs()
        } else {
            tokens
        };
        let scope = match &config.domain {
            Some(domain) => ("domain", domain.clone()),
            None => ("customer", config.customer.clone()),
        };
        Ok(Self {
            api: Api {
                base,
                http,
                tokens: Arc::new(tokens),
                limiter: Arc::new(RateLimiter::new(config.requests_per_minute)),
                retry: RetryPolicy::new(config.retry_max),
                stats,
            },
            scope,
            projection: projection(attributes),
            user_queries: user_queries(&filters.org_units),
            org_units: filters.org_units.clone(),
            customer: config.customer.clone(),
            max_concurrency: config.max_concurrency.max(1),
        })
    }

    /// Replaces the retry timing (tests use millisecond backoffs).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.api.retry = policy;
        self
    }

    pub async fn fetch(&self) -> Result<Fetched, SourceError> {
        self.fetch_pages().await?.parse()
    }

    /// Reads every page of the directory, keeping a small directory's pages unparsed.
    pub async fn fetch_pages(&self) -> Result<PendingFetch, SourceError> {
        // One token up front: a credentials problem fails fast and once, not in every task.
        self.api.tokens.token(&self.api.retry).await?;
        let ledger = Arc::new(PageLedger::new(KEEP_UNPARSED_BYTES));
        // Members are listed as soon as the groups are known, while users.list still pages:
        // which members are users of the directory is settled once both are done.
        let groups_and_members = async {
            let (groups, sizes) = self.list_groups(&ledger).await?;
            let group_ids: Arc<HashSet<Id>> =
                Arc::new(groups.iter().map(|g| g.id.clone()).collect());
            // Biggest groups first: their page chains are the longest, so starting them first
            // keeps the end of the listing from waiting on one long chain.
            let mut order: Vec<usize> = (0..groups.len()).collect();
            order.sort_by_key(|&index| std::cmp::Reverse(sizes[index]));
            let (members, emails) = self
                .list_all_members(
                    order.iter().map(|&i| groups[i].id.clone()).collect(),
                    group_ids.clone(),
                    ledger.clone(),
                )
                .await?;
            Ok::<_, SourceError>((groups, group_ids, members, emails))
        };
        let ((), (users_url, users, users_kept), (groups, group_ids, members, member_emails)) = tokio::try_join!(
            self.check_org_units(),
            self.list_users(&ledger),
            groups_and_members
        )?;
        Ok(PendingFetch {
            digest: ledger.digest(),
            users_url,
            users,
            users_kept,
            groups,
            group_ids,
            members,
            member_emails,
            unknown_user_kind: if self.user_queries.iter().all(Option::is_none) {
                "EXTERNAL"
            } else {
                "USER_NOT_FETCHED"
            },
            requests: self.api.stats.requests(),
        })
    }

    /// A token and one page each of users and groups.
    pub async fn check(&self) -> Result<String, SourceError> {
        self.api.tokens.token(&self.api.retry).await?;
        let mut description = format!(
            "token OK for {} (client {})",
            self.api.tokens.subject(),
            self.api.tokens.client_id()
        );
        let users = self.api.url(&["users"])?;
        self.api
            .get_object(
                "users.list",
                &users,
                &[
                    self.scope.clone(),
                    ("maxResults", "1".into()),
                    ("projection", "basic".into()),
                ],
            )
            .await?;
        description.push_str("; users.list OK");
        let groups = self.api.url(&["groups"])?;
        self.api
            .get_object(
                "groups.list",
                &groups,
                &[self.scope.clone(), ("maxResults", "1".into())],
            )
            .await?;
        description.push_str("; groups.list OK");
        Ok(description)
    }

    /// Fails when a configured org unit does not exist: listing users under a misspelt org unit
    /// returns nobody, and the run would delete its whole scope.
    async fn check_org_units(&self) -> Result<(), SourceError> {
        if self.user_queries.iter().all(Option::is_none) {
            return Ok(());
        }
        let url = self.api.url(&["customer", &self.customer, "orgunits"])?;
        let mut body = self
            .api
            .get_object("orgunits.list", &url, &[("type", "all".to_owned())])
            .await?;
        let known: Vec<String> = match body.remove("organizationUnits") {
            Some(Value::Array(units)) => units
                .iter()
                .filter_map(|unit| unit.get("orgUnitPath")?.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        for (index, unit) in self.org_units.iter().enumerate() {
            let unit = unit.trim();
            if unit == "/" || known.iter().any(|k| k.eq_ignore_ascii_case(unit)) {
                continue;
            }
            let mut shown: Vec<&str> = known.iter().map(String::as_str).take(20).collect();
            if known.len() > shown.len() {
                shown.push("...");
            }
            return Err(SourceError::Protocol(format!(
                "[filters] org_units[{index}] = {unit:?} is not an org unit of this Google account (orgunits.list has {}); fix the org unit path in the tenant file",
                if shown.is_empty() { "none".to_owned() } else { shown.join(", ") }
            )));
        }
        Ok(())
    }

    /// Of stored users missing from an org-unit-filtered listing, those that still exist
    /// (anywhere in the account), read by id. Empty when the listing was not filtered: a full
    /// listing's absence is the deletion. Many missing users (a changed filter) are found with
    /// one unfiltered listing instead of a request each.
    pub async fn locate_users(&self, ids: &[Id]) -> Result<Vec<FetchedUser>, SourceError> {
        const BY_ID_UP_TO: usize = 50;
        if ids.is_empty() || self.user_queries.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        let wanted: HashSet<&Id> = ids.iter().collect();
        let mut found = Vec::new();
        if ids.len() > BY_ID_UP_TO {
            let url = self.api.url(&["users"])?;
            let params = vec![
                self.scope.clone(),
                ("maxResults", USERS_PAGE_SIZE.into()),
                ("projection", self.projection.into()),
            ];
            let _ = self
                .api
                .list(
                    "users.list",
                    &url,
                    &params,
                    "users",
                    Pages::default(),
                    &mut |item| {
                        let user = normalize::user(item)
                            .map_err(|err| invalid(&url, "users.list", &err))?;
                        if wanted.contains(&user.user.id) {
                            found.push(user);
                        }
                        Ok(())
                    },
                )
                .await?;
            return Ok(found);
        }
        for id in ids {
            let url = self.api.url(&["users", id])?;
            match self
                .api
                .get_object("users.get", &url, &[("projection", self.projection.into())])
                .await
            {
                Ok(object) => {
                    let user = normalize::user(Value::Object(object))
                        .map_err(|err| invalid(&url, "users.get", &err))?;
                    // A userKey can be an alias; only the same immutable id is the same user.
                    if &user.user.id == id {
                        found.push(user);
                    }
                }
                Err(SourceError::Http { status: 404, .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(found)
    }

    /// Every user, as a listing and the pages of it kept unparsed.
    async fn list_users(
        &self,
        ledger: &PageLedger,
    ) -> Result<(url::Url, UserListing, Vec<KeptPage>), SourceError> {
        let url = self.api.url(&["users"])?;
        let mut users = UserListing::default();
        let mut kept = Vec::new();
        let mut keeping = true;
        for query in &self.user_queries {
            let mut params = vec![
                self.scope.clone(),
                ("maxResults", USERS_PAGE_SIZE.into()),
                ("projection", self.projection.into()),
            ];
            params.extend(query.clone().map(|q| ("query", q)));
            let pages = Pages {
                ledger: Some(ledger),
                // Once one query's pages are parsed as they arrive, so are the next ones', in
                // the order they are listed.
                kept: keeping.then_some(&mut kept),
            };
            let Keeping(kept_all) = self
                .api
                .list("users.list", &url, &params, "users", pages, &mut |item| {
                    users.add(&url, item)
                })
                .await?;
            keeping = keeping && kept_all;
        }
        Ok((url, users, kept))
    }

    /// The groups, with each one's `directMembersCount` (0 when absent), used only to order
    /// the member listing.
    async fn list_groups(
        &self,
        ledger: &PageLedger,
    ) -> Result<(Vec<Group>, Vec<u64>), SourceError> {
        let url = self.api.url(&["groups"])?;
        let params = [self.scope.clone(), ("maxResults", GROUPS_PAGE_SIZE.into())];
        let mut seen: std::collections::HashMap<Id, usize> = std::collections::HashMap::new();
        let mut groups = Vec::new();
        let mut sizes = Vec::new();
        // Parsed as they arrive: the member listing needs the groups.
        let pages = Pages {
            ledger: Some(ledger),
            kept: None,
        };
        let _ = self
            .api
            .list("groups.list", &url, &params, "groups", pages, &mut |item| {
                let size = item.get("directMembersCount").map_or(0, |count| {
                    count
                        .as_str()
                        .and_then(|text| text.parse().ok())
                        .or_else(|| count.as_u64())
                        .unwrap_or(0)
                });
                let group =
                    normalize::group(item).map_err(|err| invalid(&url, "groups.list", &err))?;
                match seen.get(&group.id) {
                    None => {
                        seen.insert(group.id.clone(), groups.len());
                        groups.push(group);
                        sizes.push(size);
                    }
                    Some(&index) if groups[index] == group => {}
                    Some(_) => return Err(torn(&url, "groups.list", "group", &group.id)),
                }
                Ok(())
            })
            .await?;
        Ok((groups, sizes))
    }

    /// Direct members of every group, `max_concurrency` groups at a time. `None`: the group is
    /// gone (404).
    /// User members come back provisional (see `normalize::member_before_users`), with the
    /// email of each user member id.
    async fn list_all_members(
        &self,
        group_ids: Vec<Id>,
        groups: Arc<HashSet<Id>>,
        ledger: Arc<PageLedger>,
    ) -> Result<(BTreeMap<Id, Option<MemberListing>>, MemberEmails), SourceError> {
        let queue = Arc::new(group_ids);
        let seen = Arc::new(MemberEmails::default());
        let next = Arc::new(AtomicUsize::new(0));
        let api = Arc::new(self.api.clone());
        let mut tasks = JoinSet::new();
        for _ in 0..self.max_concurrency.min(queue.len()) {
            let (queue, next, api) = (queue.clone(), next.clone(), api.clone());
            let (groups, seen, ledger) = (groups.clone(), seen.clone(), ledger.clone());
            tasks.spawn(async move {
                let mut done = Vec::new();
                loop {
                    let Some(group) = queue.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return Ok::<_, SourceError>(done);
                    };
                    let members = api.members(group, &groups, &seen, &ledger).await?;
                    done.push((group.clone(), members));
                }
            });
        }
        let mut all = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(done)) => all.extend(done),
                // Dropping `tasks` on return aborts the other workers.
                Ok(Err(err)) => return Err(err),
                Err(err) => {
                    return Err(SourceError::Protocol(format!(
                        "a members.list task failed: {err}"
                    )))
                }
            }
        }
        drop(tasks);
        let seen = Arc::try_unwrap(seen).unwrap_or_default();
        Ok((all, seen))
    }
}

impl PendingFetch {
    /// What the directory's pages say, volatile fields left out (`page`): equal digests, equal
    /// `Fetched`.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Parses the pages kept unparsed and settles which members are users of the directory.
    pub fn parse(self) -> Result<Fetched, SourceError> {
        let PendingFetch {
            users_url,
            mut users,
            users_kept,
            groups,
            group_ids,
            members,
            member_emails,
            unknown_user_kind,
            requests,
            ..
        } = self;
        for page in users_kept {
            page.parse("users.list", "users", &mut |item| {
                users.add(&users_url, item)
            })?;
        }
        let users = users.users;
        let mut members: BTreeMap<Id, Option<Vec<MemberRef>>> = members
            .into_iter()
            .map(|(group, listing)| {
                let Some(MemberListing { mut members, kept }) = listing else {
                    return Ok((group, None));
                };
                for page in kept {
                    page.parse("members.list", "members", &mut |item| {
                        members.push(normalize::member_before_users(
                            &item,
                            &group_ids,
                            &member_emails,
                        ));
                        Ok(())
                    })?;
                }
                // A million members are held until policy runs: no growth slack.
                members.shrink_to_fit();
                Ok((group, Some(members)))
            })
            .collect::<Result<_, SourceError>>()?;
        let member_emails: SeenMembers = member_emails
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let user_ids: HashSet<Id> = users.iter().map(|u| u.user.id.clone()).collect();
        for list in members.values_mut().flatten() {
            normalize::settle_user_members(list, &user_ids, &member_emails, unknown_user_kind);
        }
        drop(member_emails);
        let groups: Vec<Group> = groups
            .into_iter()
            .filter(|group| match members.get(&group.id) {
                Some(Some(_)) => true,
                _ => {
                    tracing::debug!(group = %group.id, "group deleted during the fetch: dropped");
                    false
                }
            })
            .collect();
        let gone: HashSet<Id> = members
            .iter()
            .filter(|(_, list)| list.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let members: BTreeMap<Id, Vec<MemberRef>> = groups
            .iter()
            .filter_map(|group| {
                let mut list = members.remove(&group.id).flatten()?;
                // A nested group that vanished is no group of this snapshot.
                for member in &mut list {
                    if let MemberRef::Group(id) = member {
                        if gone.contains(id) {
                            *member = MemberRef::Other(Box::new(OtherMember {
                                kind: "GROUP".into(),
                                id: Some(id.to_string()),
                                email: None,
                            }));
                        }
                    }
                }
                Some((group.id.clone(), list))
            })
            .collect();
        tracing::debug!(
            users = users.len(),
            groups = groups.len(),
            members = members.values().map(Vec::len).sum::<usize>(),
            requests,
            "google directory fetched"
        );
        Ok(Fetched {
            source: SourceKind::Google,
            users,
            groups,
            members,
        })
    }
}

/// `full` only when a mapped attribute reads `customSchemas`: `basic` is smaller and keeps
/// custom fields out of `raw_attributes` for tenants that do not use them.
fn projection(attributes: &AttributeMapping) -> &'static str {
    let reads_custom_schemas = attributes.paths.values().any(
        |path| matches!(path.segments.first(), Some(Segment::Key(key)) if key == "customSchemas"),
    );
    if reads_custom_schemas {
        "full"
    } else {
        "basic"
    }
}

/// One users.list query per configured org unit; everyone when there is none or `/` is one.
fn user_queries(org_units: &[String]) -> Vec<Option<String>> {
    if org_units.is_empty() || org_units.iter().any(|unit| unit.trim() == "/") {
        return vec![None];
    }
    org_units
        .iter()
        .map(|unit| {
            Some(format!(
                "orgUnitPath='{}'",
                unit.trim().replace('\\', "\\\\").replace('\'', "\\'")
            ))
        })
        .collect()
}

/// The same object twice in one listing, with different data.
fn torn(url: &url::Url, method: &str, what: &str, id: &str) -> SourceError {
    SourceError::InvalidResponse {
        url: url.to_string(),
        message: format!(
            "{method} returned {what} {id} twice with different data: the directory changed while it was listed (a torn listing); nothing is committed from it, the next run lists again"
        ),
    }
}

fn invalid(url: &url::Url, method: &str, err: &normalize::ItemError) -> SourceError {
    SourceError::InvalidResponse {
        url: url.to_string(),
        message: format!("{method}: {err}"),
    }
}

impl Api {
    fn url(&self, segments: &[&str]) -> Result<url::Url, SourceError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                SourceError::Protocol(format!("source.api_base {} cannot have a path", self.base))
            })?
            .pop_if_empty()
            .extend(["admin", "directory", "v1"])
            .extend(segments);
        Ok(url)
    }

    /// One GET of a JSON object.
    async fn get_object(
        &self,
        method: &str,
        url: &url::Url,
        query: &[(&'static str, String)],
    ) -> Result<Map<String, Value>, SourceError> {
        let reply = self.get(method, url, query).await?;
        match http::parse_json::<Value>(&reply)? {
            Value::Object(object) => Ok(object),
            _ => Err(SourceError::InvalidResponse {
                url: reply.url,
                message: format!("{method} answered JSON that is not an object"),
            }),
        }
    }

    /// One GET with the bearer token; a 401 refreshes the token once.
    async fn get(
        &self,
        method: &str,
        url: &url::Url,
        query: &[(&'static str, String)],
    ) -> Result<http::Reply, SourceError> {
        let token = self.tokens.token(&self.retry).await?;
        match self.send(url, query, &token).await {
            Err(SourceError::Http { status: 401, .. }) => {
                tracing::debug!(method, "HTTP 401: refreshing the access token once");
                let token = self.tokens.refreshed_token(&self.retry).await?;
                self.send(url, query, &token).await
            }
            other => other,
        }
    }

    async fn send(
        &self,
        url: &url::Url,
        query: &[(&'static str, String)],
        token: &str,
    ) -> Result<http::Reply, SourceError> {
        http::send(
            || self.http.get(url.clone()).query(query).bearer_auth(token),
            &self.stats,
            &self.limiter,
            &self.retry,
        )
        .await
    }

    /// Every page of a list method, each item handed to `each` as it arrives, or kept
    /// unparsed in `kept` while the ledger's budget lasts (see `PageLedger`); once a page of
    /// the listing cannot be kept, the kept pages go to `each` first, in order, and the rest
    /// as they arrive. A page token seen before is an error: following it would loop forever.
    async fn list(
        &self,
        method: &'static str,
        url: &url::Url,
        params: &[(&'static str, String)],
        items_key: &'static str,
        mut pages: Pages<'_>,
        each: &mut (dyn FnMut(Value) -> Result<(), SourceError> + Send),
    ) -> Result<Keeping, SourceError> {
        /// Google pages in a row with no item and yet a next page: a server stuck in a loop.
        const MAX_EMPTY_PAGES: u64 = 100;
        let mut seen_tokens: HashSet<String> = HashSet::new();
        let mut page_token: Option<String> = None;
        let mut query: Vec<(&'static str, String)> = params.to_vec();
        let mut listed = 0usize;
        let mut empty_in_a_row = 0u64;
        let listing = pages.ledger.map(|_| listing_key(method, url, params));
        for page in 1u64.. {
            if page > MAX_PAGES || empty_in_a_row >= MAX_EMPTY_PAGES {
                return Err(SourceError::Protocol(format!(
                    "{method} of {url} did not end after {} pages ({empty_in_a_row} empty in a row): the API is misbehaving; nothing was committed",
                    page - 1
                )));
            }
            query.truncate(params.len());
            query.extend(page_token.clone().map(|token| ("pageToken", token)));
            let reply = self.get(method, url, &query).await?;
            let head = match (pages.ledger, &listing) {
                (Some(ledger), Some(listing)) => {
                    let head = page::head(method, url, page, items_key, &reply)?;
                    ledger.record(listing, page, head.digest);
                    Some(head)
                }
                _ => None,
            };
            let keep = head.is_some()
                && pages.kept.is_some()
                && pages
                    .ledger
                    .is_some_and(|ledger| ledger.keep(reply.body.len()));
            let (items, count, next) = match (head, pages.kept.as_deref_mut()) {
                (Some(head), Some(kept)) if keep => {
                    kept.push(KeptPage {
                        url: url.clone(),
                        page,
                        reply,
                    });
                    (Vec::new(), head.items, head.next)
                }
                _ => {
                    // From here on the listing is parsed as it arrives, in page order.
                    if let Some(kept) = pages.kept.take() {
                        for page in kept.drain(..) {
                            page.parse(method, items_key, each)?;
                        }
                    }
                    let (items, next) = page::items(method, url, page, items_key, &reply)?;
                    let count = items.len();
                    (items, count, next)
                }
            };
            tracing::debug!(
                method,
                page,
                items = count,
                more = next.is_some(),
                "page received"
            );
            empty_in_a_row = if count == 0 { empty_in_a_row + 1 } else { 0 };
            listed += count;
            if listed > MAX_LISTED {
                return Err(SourceError::Protocol(format!(
                    "{method} of {url} listed more than {MAX_LISTED} items: more than dirsync accepts from one listing; the API is misbehaving"
                )));
            }
            items.into_iter().try_for_each(&mut *each)?;
            let Some(next) = next else {
                return Ok(Keeping(pages.kept.is_some()));
            };
            if !seen_tokens.insert(next.clone()) {
                let shown: String = next.chars().take(40).collect();
                return Err(SourceError::Protocol(format!(
                    "{method} returned the page token {shown:?} a second time (page {page} of {url}): following it would never end; the API is misbehaving, try again later"
                )));
            }
            page_token = Some(next);
        }
        Ok(Keeping(pages.kept.is_some()))
    }

    /// One group's direct members; `None` when the group no longer exists.
    async fn members(
        &self,
        group: &Id,
        groups: &HashSet<Id>,
        seen: &MemberEmails,
        ledger: &PageLedger,
    ) -> Result<Option<MemberListing>, SourceError> {
        let url = self.url(&["groups", group, "members"])?;
        let params = [("maxResults", MEMBERS_PAGE_SIZE.to_owned())];
        let mut members = Vec::new();
        let mut kept = Vec::new();
        let pages = Pages {
            ledger: Some(ledger),
            kept: Some(&mut kept),
        };
        let listed = self
            .list(
                "members.list",
                &url,
                &params,
                "members",
                pages,
                &mut |item| {
                    members.push(normalize::member_before_users(&item, groups, seen));
                    Ok(())
                },
            )
            .await;
        match listed {
            Ok(_) => {
                // A million members are held until policy runs: no growth slack.
                members.shrink_to_fit();
                Ok(Some(MemberListing { members, kept }))
            }
            Err(SourceError::Http {
                status: 404,
                reason,
                message,
                ..
            }) if reason.as_deref() == Some("notFound") || message.contains("groupKey") => Ok(None),
            Err(err) => Err(err),
        }
    }
}
