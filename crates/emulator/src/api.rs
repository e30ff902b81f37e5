//! The Directory API methods as pure functions of the directory and the request parameters:
//! parameter rules (customer/domain, maxResults, projection, query, roles, ...), paging by sort
//! key, response rendering with `fields` and `prettyPrint`. No HTTP, no auth: the server
//! checks those first.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use serde_json::{json, Value};

use super::directory::{Directory, Id, Member, MemberType, Resolved, Role, User};
use super::error::ApiError;
use super::fields::FieldMask;
use super::paging::{query_hash, PageTokens, Position};
use super::query::{GroupQuery, UserQuery};
use super::views::{GroupView, ListView, MemberView, OrgUnitView, Projection, UserView};

/// Query-string parameters, first occurrence wins.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn bool(&self, key: &'static str) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ApiError::invalid_parameter(
                key,
                v,
                "Values must be true or false.",
            )),
        }
    }
}

/// How to write a response: `prettyPrint` and `fields`.
#[derive(Debug, Clone)]
pub struct Render {
    pub pretty: bool,
    pub fields: Option<FieldMask>,
}

impl Render {
    pub fn from_params(params: &Params) -> Result<Self, ApiError> {
        let pretty = match params.get("prettyPrint") {
            None => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) => {
                return Err(ApiError::invalid_parameter(
                    "prettyPrint",
                    v,
                    "Values must be true or false.",
                ))
            }
        };
        if let Some(alt) = params.get("alt") {
            if alt != "json" {
                return Err(ApiError::invalid_parameter(
                    "alt",
                    alt,
                    "Only alt=json is supported.",
                ));
            }
        }
        let fields = params.get("fields").map(FieldMask::parse).transpose()?;
        Ok(Self { pretty, fields })
    }

    pub fn write<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, ApiError> {
        let result = match &self.fields {
            Some(mask) => {
                let mut tree = serde_json::to_value(value).map_err(|_| ApiError::internal())?;
                mask.apply(&mut tree);
                self.bytes(&tree)
            }
            None => self.bytes(value),
        };
        result.map_err(|_| ApiError::internal())
    }

    fn bytes<T: Serialize + ?Sized>(&self, value: &T) -> serde_json::Result<Vec<u8>> {
        if self.pretty {
            serde_json::to_vec_pretty(value)
        } else {
            serde_json::to_vec(value)
        }
    }
}

/// What every list call needs besides the directory.
pub struct ListContext<'a> {
    pub params: &'a Params,
    pub tokens: &'a PageTokens,
    pub render: &'a Render,
    /// Unix seconds, for page token lifetimes.
    pub now: u64,
}

fn max_results(params: &Params, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = params.get("maxResults") else {
        return Ok(default);
    };
    let rule = format!("Values must be within the range: [1, {max}]");
    match raw.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_parameter("maxResults", raw, &rule)),
    }
}

/// `customer`/`domain`: one is required; `my_customer` is the customer's alias.
fn scope_params(dir: &Directory, params: &Params) -> Result<Option<String>, ApiError> {
    let customer = params.get("customer");
    let domain = params.get("domain");
    if customer.is_none() && domain.is_none() {
        return Err(ApiError::bad_request());
    }
    if let Some(customer) = customer {
        if customer != "my_customer" && !customer.eq_ignore_ascii_case(&dir.customer_id) {
            return Err(ApiError::forbidden());
        }
    }
    match domain {
        Some(domain) if domain.eq_ignore_ascii_case(&dir.domain) => Ok(Some(domain.to_lowercase())),
        Some(_) => Err(ApiError::new(400, "notFound", "Domain not found.")),
        None => Ok(None),
    }
}

fn in_domain(email: &str, domain: Option<&String>) -> bool {
    domain.is_none_or(|d| {
        email
            .rsplit_once('@')
            .is_some_and(|(_, e)| e.eq_ignore_ascii_case(d))
    })
}

fn check_token(ctx: &ListContext<'_>, query: u64) -> Result<Option<Position>, ApiError> {
    ctx.params
        .get("pageToken")
        .filter(|t| !t.is_empty())
        .map(|token| ctx.tokens.check(token, query, ctx.now))
        .transpose()
}

/// Takes up to `max` items from an ordered, filtered iterator; the next page resumes after the
/// last key when at least one more item exists.
fn take_page<'a, T>(
    mut iter: impl Iterator<Item = (Cow<'a, str>, T)>,
    max: usize,
) -> (Vec<T>, Option<String>) {
    let mut items = Vec::with_capacity(max.min(512));
    let mut last = None;
    while items.len() < max {
        match iter.next() {
            Some((key, item)) => {
                last = Some(key);
                items.push(item);
            }
            None => return (items, None),
        }
    }
    if iter.next().is_some() {
        (items, last.map(Cow::into_owned))
    } else {
        (items, None)
    }
}

fn range_after<'a, V>(
    map: &'a BTreeMap<impl std::borrow::Borrow<str> + Ord, V>,
    after: Option<&str>,
    descending: bool,
) -> Box<dyn Iterator<Item = (&'a str, &'a V)> + 'a>
where
    V: 'a,
{
    let items = map.iter().map(|(k, v)| (k.borrow(), v));
    match (after, descending) {
        (None, false) => Box::new(items),
        (None, true) => Box::new(items.rev()),
        (Some(after), false) => Box::new(
            map.range::<str, _>((Bound::Excluded(after), Bound::Unbounded))
                .map(|(k, v)| (k.borrow(), v)),
        ),
        (Some(after), true) => Box::new(
            map.range::<str, _>((Bound::Unbounded, Bound::Excluded(after)))
                .rev()
                .map(|(k, v)| (k.borrow(), v)),
        ),
    }
}

fn list_etag(dir: &Directory, query: u64, page: u32, count: usize) -> String {
    dir.etag(&format!("list:{query:x}:{page}"), count as u64)
}

fn next_token(
    ctx: &ListContext<'_>,
    query: u64,
    page: u32,
    after: Option<String>,
) -> Option<String> {
    after.map(|after| {
        ctx.tokens.issue(
            query,
            &Position {
                after,
                page: page + 1,
                issued_at: ctx.now,
            },
        )
    })
}

fn projection(params: &Params) -> Result<Projection, ApiError> {
    match params
        .get("projection")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("basic") => Ok(Projection::Basic),
        Some("full") => Ok(Projection::Full),
        Some("custom") => {
            let mask = params
                .get("customFieldMask")
                .filter(|m| !m.trim().is_empty())
                .ok_or_else(|| ApiError::invalid_input("customFieldMask"))?;
            Ok(Projection::Custom(
                mask.split(',').map(|s| s.trim().to_owned()).collect(),
            ))
        }
        Some(_) => Err(ApiError::invalid_parameter(
            "projection",
            params.get("projection").unwrap_or(""),
            "Allowed values: [basic, custom, full]",
        )),
    }
}

/// An enum-valued query parameter, matched case-insensitively; absent means the first choice.
fn choice<T: Copy>(
    params: &Params,
    name: &'static str,
    choices: &[(&str, T)],
) -> Result<T, ApiError> {
    let Some(given) = params.get(name) else {
        return Ok(choices[0].1);
    };
    choices
        .iter()
        .find(|(text, _)| text.eq_ignore_ascii_case(given))
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let allowed: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
            ApiError::invalid_parameter(
                name,
                given,
                &format!("Allowed values: [{}]", allowed.join(", ")),
            )
        })
}

fn public_view(params: &Params) -> Result<bool, ApiError> {
    choice(
        params,
        "viewType",
        &[("admin_view", false), ("domain_public", true)],
    )
}

fn descending(params: &Params) -> Result<bool, ApiError> {
    choice(
        params,
        "sortOrder",
        &[("ASCENDING", false), ("DESCENDING", true)],
    )
}

/// users.list.
pub fn users_list(dir: &Directory, ctx: &ListContext<'_>) -> Result<Vec<u8>, ApiError> {
    let params = ctx.params;
    let domain = scope_params(dir, params)?;
    let max = max_results(params, 100, 500)?;
    let projection = projection(params)?;
    let public_view = public_view(params)?;
    let deleted = params.bool("showDeleted")?;
    let query = UserQuery::parse(params.get("query").unwrap_or(""))?;
    let order = params.get("orderBy").map(str::to_ascii_lowercase);
    if let Some(order) = &order {
        if !matches!(order.as_str(), "email" | "familyname" | "givenname") {
            return Err(ApiError::invalid_parameter(
                "orderBy",
                params.get("orderBy").unwrap_or(""),
                "Allowed values: [email, familyName, givenName]",
            ));
        }
    }
    let desc = order.is_some() && descending(params)?;
    let hash = query_hash(
        "users.list",
        &[
            ("domain", domain.as_deref().unwrap_or("")),
            ("deleted", if deleted { "1" } else { "0" }),
            ("orderBy", order.as_deref().unwrap_or("")),
            ("desc", if desc { "1" } else { "0" }),
            ("query", params.get("query").unwrap_or("")),
        ],
    );
    let position = check_token(ctx, hash)?;
    let page = position.as_ref().map_or(1, |p| p.page);
    let after = position.as_ref().map(|p| p.after.as_str());
    let source = if deleted { &dir.deleted } else { &dir.users };
    let keep =
        |user: &User| in_domain(user.primary_email(), domain.as_ref()) && query.matches(dir, user);
    let (users, next): (Vec<&User>, Option<String>) = match order.as_deref() {
        None => take_page(
            range_after(source, after, false)
                .filter(|(_, user)| keep(user))
                .map(|(key, user)| (Cow::Borrowed(key), user)),
            max,
        ),
        Some("email") if !deleted => take_page(
            range_after(&dir.users_by_email, after, desc)
                .filter_map(|(key, id)| dir.users.get(id).map(|user| (key, user)))
                .filter(|(_, user)| keep(user))
                .map(|(key, user)| (Cow::Borrowed(key), user)),
            max,
        ),
        Some(order) => {
            // Name orders (and deleted users by email) sort per request: O(N log N), rarely used.
            let mut sorted: Vec<(String, &User)> = source
                .values()
                .filter(|user| keep(user))
                .map(|user| {
                    let key = match order {
                        "email" => user.primary_email().to_lowercase(),
                        "familyname" => user.name_part("familyName").to_lowercase(),
                        _ => user.name_part("givenName").to_lowercase(),
                    };
                    (format!("{key}\u{0}{}", user.id), user)
                })
                .collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            if desc {
                sorted.reverse();
            }
            let start = after.map_or(0, |after| {
                sorted.partition_point(|(key, _)| {
                    if desc {
                        key.as_str() >= after
                    } else {
                        key.as_str() <= after
                    }
                })
            });
            take_page(
                sorted
                    .into_iter()
                    .skip(start)
                    .map(|(key, user)| (Cow::Owned(key), user)),
                max,
            )
        }
    };
    let views: Vec<UserView<'_>> = users
        .iter()
        .map(|user| UserView {
            dir,
            user,
            projection: &projection,
            public_view,
        })
        .collect();
    ctx.render.write(&ListView {
        kind: "admin#directory#users",
        etag: list_etag(dir, hash, page, views.len()),
        items_key: "users",
        items: &views,
        next_page_token: next_token(ctx, hash, page, next),
    })
}

/// users.get.
pub fn users_get(
    dir: &Directory,
    key: &str,
    params: &Params,
    render: &Render,
) -> Result<Vec<u8>, ApiError> {
    let projection = projection(params)?;
    let public_view = public_view(params)?;
    let id = dir.resolve_user(key).ok_or_else(|| {
        if dir.resolve_group(key).is_some() {
            ApiError::new(400, "badRequest", "Type not supported: userKey")
        } else {
            ApiError::not_found("userKey")
        }
    })?;
    let user = dir
        .user(&id)
        .ok_or_else(|| ApiError::not_found("userKey"))?;
    render.write(&UserView {
        dir,
        user,
        projection: &projection,
        public_view,
    })
}

/// A user as users.insert/update/patch answer it.
pub fn user_reply(dir: &Directory, id: &Id, render: &Render) -> Result<Vec<u8>, ApiError> {
    let user = dir.user(id).ok_or_else(|| ApiError::not_found("userKey"))?;
    render.write(&UserView {
        dir,
        user,
        projection: &Projection::Full,
        public_view: false,
    })
}

/// groups.list.
pub fn groups_list(dir: &Directory, ctx: &ListContext<'_>) -> Result<Vec<u8>, ApiError> {
    let params = ctx.params;
    let user_key = params.get("userKey");
    let domain = if user_key.is_some() {
        if params.get("customer").is_some() {
            return Err(ApiError::bad_request());
        }
        match params.get("domain") {
            Some(d) if d.eq_ignore_ascii_case(&dir.domain) => Some(d.to_lowercase()),
            Some(_) => return Err(ApiError::new(400, "notFound", "Domain not found.")),
            None => None,
        }
    } else {
        scope_params(dir, params)?
    };
    let max = max_results(params, 200, 200)?;
    let query = GroupQuery::parse(params.get("query").unwrap_or(""))?;
    let order = params.get("orderBy").map(str::to_ascii_lowercase);
    if order.as_deref().is_some_and(|o| o != "email") {
        return Err(ApiError::invalid_parameter(
            "orderBy",
            params.get("orderBy").unwrap_or(""),
            "Allowed values: [email]",
        ));
    }
    let desc = order.is_some() && descending(params)?;
    let member_filter = match user_key.or(query.member_key.as_deref()) {
        Some(key) => Some(match dir.resolve_member(key) {
            Some(Resolved::User(id) | Resolved::Group(id) | Resolved::External(id)) => id,
            Some(Resolved::Customer) => Id::from(dir.customer_id.as_str()),
            None if user_key.is_some() => return Err(ApiError::not_found("userKey")),
            None => Id::from(""),
        }),
        None => None,
    };
    let hash = query_hash(
        "groups.list",
        &[
            ("domain", domain.as_deref().unwrap_or("")),
            ("member", member_filter.as_deref().unwrap_or("")),
            ("orderBy", order.as_deref().unwrap_or("")),
            ("desc", if desc { "1" } else { "0" }),
            ("query", params.get("query").unwrap_or("")),
        ],
    );
    let position = check_token(ctx, hash)?;
    let page = position.as_ref().map_or(1, |p| p.page);
    let after = position.as_ref().map(|p| p.after.as_str());
    let keep = |group: &super::directory::Group| {
        in_domain(group.email(), domain.as_ref())
            && query.matches(group)
            && member_filter
                .as_ref()
                .is_none_or(|member| group.members.contains_key(member))
    };
    let (groups, next) = if order.is_some() {
        take_page(
            range_after(&dir.groups_by_email, after, desc)
                .filter_map(|(key, id)| dir.group(id).map(|g| (key, g)))
                .filter(|(_, g)| keep(g))
                .map(|(key, g)| (Cow::Borrowed(key), g)),
            max,
        )
    } else if let Some(member) = &member_filter {
        // The reverse index: only the groups that contain the member.
        let ids: Vec<&Id> = dir
            .groups_of(member)
            .filter(|id| after.is_none_or(|after| &***id > after))
            .collect();
        take_page(
            ids.into_iter()
                .filter_map(|id| dir.group(id))
                .filter(|g| keep(g))
                .map(|g| (Cow::Borrowed(&*g.id), g)),
            max,
        )
    } else {
        take_page(
            range_after(&dir.groups, after, false)
                .filter(|(_, g)| keep(g))
                .map(|(key, g)| (Cow::Borrowed(key), g)),
            max,
        )
    };
    let views: Vec<GroupView<'_>> = groups
        .into_iter()
        .map(|group| GroupView { dir, group })
        .collect();
    ctx.render.write(&ListView {
        kind: "admin#directory#groups",
        etag: list_etag(dir, hash, page, views.len()),
        items_key: "groups",
        items: &views,
        next_page_token: next_token(ctx, hash, page, next),
    })
}

/// groups.get (and the reply of groups.insert/update/patch).
pub fn groups_get(dir: &Directory, key: &str, render: &Render) -> Result<Vec<u8>, ApiError> {
    let id = dir
        .resolve_group(key)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    let group = dir
        .group(&id)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    render.write(&GroupView { dir, group })
}

/// members.list.
pub fn members_list(
    dir: &Directory,
    group_key: &str,
    ctx: &ListContext<'_>,
) -> Result<Vec<u8>, ApiError> {
    let params = ctx.params;
    let group_id = dir
        .resolve_group(group_key)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    let group = dir
        .group(&group_id)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    let max = max_results(params, 200, 200)?;
    let mut roles: Vec<Role> = Vec::new();
    if let Some(list) = params.get("roles") {
        for role in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            roles.push(Role::parse(role).ok_or_else(|| {
                ApiError::invalid_parameter("roles", list, "Allowed values: OWNER, MANAGER, MEMBER")
            })?);
        }
        roles.sort();
        roles.dedup();
    }
    let derived = params.bool("includeDerivedMembership")?;
    let role_text: Vec<&str> = roles.iter().map(|r| r.api_name()).collect();
    let hash = query_hash(
        "members.list",
        &[
            ("group", &group_id),
            ("roles", &role_text.join(",")),
            ("derived", if derived { "1" } else { "0" }),
        ],
    );
    let position = check_token(ctx, hash)?;
    let page = position.as_ref().map_or(1, |p| p.page);
    let after = position.as_ref().map(|p| p.after.as_str());
    let role_ok = |member: &Member| roles.is_empty() || roles.contains(&member.role);
    let expanded;
    let source = if derived {
        expanded = dir.derived_members(&group_id);
        &expanded
    } else {
        &group.members
    };
    let (members, next) = take_page(
        range_after(source, after, false)
            .filter(|(_, m)| role_ok(m))
            .map(|(key, m)| (Cow::Borrowed(key), m)),
        max,
    );
    let views: Vec<MemberView<'_>> = members
        .into_iter()
        .map(|member| MemberView {
            dir,
            group: &group_id,
            member,
            with_delivery: false,
        })
        .collect();
    ctx.render.write(&ListView {
        kind: "admin#directory#members",
        etag: list_etag(dir, hash, page, views.len()),
        items_key: "members",
        items: &views,
        next_page_token: next_token(ctx, hash, page, next),
    })
}

fn member_id(dir: &Directory, key: &str) -> Option<Id> {
    match dir.resolve_member(key)? {
        Resolved::User(id) | Resolved::Group(id) | Resolved::External(id) => Some(id),
        Resolved::Customer => Some(Id::from(dir.customer_id.as_str())),
    }
}

/// members.get (and the reply of members.insert/update/patch).
pub fn members_get(
    dir: &Directory,
    group_key: &str,
    member_key: &str,
    render: &Render,
) -> Result<Vec<u8>, ApiError> {
    let group_id = dir
        .resolve_group(group_key)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    let group = dir
        .group(&group_id)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    let member = member_id(dir, member_key)
        .and_then(|id| group.members.get(&id))
        .ok_or_else(|| ApiError::not_found("memberKey"))?;
    render.write(&MemberView {
        dir,
        group: &group_id,
        member,
        with_delivery: true,
    })
}

/// members.hasMember: direct or nested; an unknown member key is 400 invalid, not false.
pub fn has_member(
    dir: &Directory,
    group_key: &str,
    member_key: &str,
    render: &Render,
) -> Result<Vec<u8>, ApiError> {
    let group_id = dir
        .resolve_group(group_key)
        .ok_or_else(|| ApiError::not_found("groupKey"))?;
    let resolved = dir
        .resolve_member(member_key)
        .ok_or_else(|| ApiError::invalid_input("memberKey"))?;
    let is_member = match resolved {
        Resolved::User(id) | Resolved::Group(id) => dir.has_member(&group_id, &id),
        Resolved::External(id) => {
            let direct = dir
                .group(&group_id)
                .is_some_and(|g| g.members.contains_key(&id));
            if !direct && dir.has_member(&group_id, &id) {
                // Nested checks only work within the domain.
                return Err(ApiError::invalid_input("memberKey"));
            }
            direct
        }
        Resolved::Customer => dir
            .group(&group_id)
            .is_some_and(|g| g.members.values().any(|m| m.kind == MemberType::Customer)),
    };
    render.write(&json!({ "isMember": is_member }))
}

fn customer_path(dir: &Directory, customer: &str) -> Result<(), ApiError> {
    if customer == "my_customer" || customer.eq_ignore_ascii_case(&dir.customer_id) {
        Ok(())
    } else {
        Err(ApiError::forbidden())
    }
}

/// orgunits.list: `type` children (default), all, allIncludingParent; no paging.
pub fn orgunits_list(
    dir: &Directory,
    customer: &str,
    params: &Params,
    render: &Render,
) -> Result<Vec<u8>, ApiError> {
    customer_path(dir, customer)?;
    let base = match params
        .get("orgUnitPath")
        .filter(|p| !p.is_empty() && *p != "/")
    {
        Some(path) => dir
            .org_unit(path)
            .map(|ou| ou.path.to_lowercase())
            .ok_or_else(|| ApiError::new(404, "notFound", "Org unit not found"))?,
        None => "/".to_owned(),
    };
    let kind = params
        .get("type")
        .unwrap_or("children")
        .to_ascii_lowercase();
    if !matches!(kind.as_str(), "children" | "all" | "allincludingparent") {
        return Err(ApiError::invalid_parameter(
            "type",
            params.get("type").unwrap_or(""),
            "Allowed values: [all, allIncludingParent, children]",
        ));
    }
    let prefix = if base == "/" {
        "/".to_owned()
    } else {
        format!("{base}/")
    };
    let units: Vec<OrgUnitView<'_>> = dir
        .org_units
        .iter()
        .filter(|(path, unit)| match kind.as_str() {
            "children" => unit
                .parent_path
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(&base)),
            "all" => path.starts_with(&prefix),
            _ => path.starts_with(&prefix) || **path == base,
        })
        .map(|(_, unit)| OrgUnitView { dir, unit })
        .collect();
    render.write(&ListView {
        kind: "admin#directory#orgUnits",
        etag: dir.etag(&format!("orgunits:{base}:{kind}"), units.len() as u64),
        items_key: "organizationUnits",
        items: &units,
        next_page_token: None,
    })
}

/// orgunits.get by path (without leading `/`) or id.
pub fn orgunits_get(
    dir: &Directory,
    customer: &str,
    path: &str,
    render: &Render,
) -> Result<Vec<u8>, ApiError> {
    customer_path(dir, customer)?;
    let unit = dir
        .org_unit(path)
        .ok_or_else(|| ApiError::new(404, "notFound", "Org unit not found"))?;
    render.write(&OrgUnitView { dir, unit })
}

/// Parses a write method's JSON body.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|err| ApiError::new(400, "parseError", format!("Parse Error: {err}")))
}
