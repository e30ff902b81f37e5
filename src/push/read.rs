//! The read side: a resource by id, and lists with `filter`, `startIndex`/`count` paging
//! and projections. A filter on `userName`, `externalId`, `displayName` or `id` equality (what
//! IdPs look resources up by) reads the matching rows by index; any other filter is
//! evaluated over the resources of the type.

use crate::store::Connection;
use serde_json::{json, Map, Value};

use super::discovery::MAX_RESULTS;
use super::resource::{self, Projection};
use crate::scim_protocol::{Filter, ScimError};
use crate::store::push::{
    all_resources, count_resources, find_resources, get_resource, groups_of_member, members_of,
    page_resources, Lookup, ScimKind, ScimRow,
};
use crate::store::StoreError;

pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A list query, validated.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub projection: Projection,
}

impl ListQuery {
    pub fn parse(
        filter: Option<&str>,
        start_index: Option<&str>,
        count: Option<&str>,
        projection: Projection,
    ) -> Result<Self, ScimError> {
        let number = |name: &str, text: Option<&str>| -> Result<Option<i64>, ScimError> {
            match text {
                None => Ok(None),
                Some(text) => text.trim().parse::<i64>().map(Some).map_err(|_| {
                    ScimError::invalid_value(format!("{name} must be an integer, not {text:?}"))
                }),
            }
        };
        let filter = match filter {
            Some(text) if !text.trim().is_empty() => Some(Filter::parse(text)?),
            _ => None,
        };
        // RFC 7644 §3.4.2.4: a startIndex below 1 means 1, a negative count means 0.
        let start_index = number("startIndex", start_index)?.unwrap_or(1).max(1) as usize;
        let count = number("count", count)?
            .unwrap_or(100)
            .clamp(0, MAX_RESULTS as i64) as usize;
        Ok(Self {
            filter,
            start_index,
            count,
            projection,
        })
    }
}

/// Renders a stored resource, with a group's members (when the projection wants them) and
/// a user's direct groups.
pub fn render_row(
    conn: &Connection,
    tenant: &str,
    row: &ScimRow,
    base_url: &str,
    projection: &Projection,
) -> Result<Map<String, Value>, StoreError> {
    let members = match row.kind {
        ScimKind::Group if projection.wants("members") => Some(members_of(conn, tenant, &row.id)?),
        _ => None,
    };
    let mut rendered = resource::render(row, members.as_deref(), base_url);
    if row.kind == ScimKind::User && projection.wants("groups") {
        let groups = groups_of_member(conn, tenant, &row.id)?;
        if !groups.is_empty() {
            let groups = groups
                .into_iter()
                .map(|group| {
                    json!({"value": group, "$ref": format!("{base_url}/Groups/{group}"), "type": "direct"})
                })
                .collect();
            rendered.insert("groups".into(), Value::Array(groups));
        }
    }
    Ok(projection.apply(rendered))
}

pub fn get(
    conn: &Connection,
    tenant: &str,
    kind: ScimKind,
    id: &str,
    base_url: &str,
    projection: &Projection,
) -> Result<Result<Value, ScimError>, StoreError> {
    match get_resource(conn, tenant, kind, id)? {
        Some(row) => Ok(Ok(Value::Object(render_row(
            conn, tenant, &row, base_url, projection,
        )?))),
        None => Ok(Err(ScimError::not_found(format!(
            "no {} with id {id:?}",
            kind.as_str()
        )))),
    }
}

pub fn list(
    conn: &Connection,
    tenant: &str,
    kind: ScimKind,
    query: &ListQuery,
    base_url: &str,
) -> Result<Value, StoreError> {
    let offset = query.start_index - 1;
    let (total, page): (usize, Vec<ScimRow>) = match &query.filter {
        None => (
            count_resources(conn, tenant, kind)? as usize,
            page_resources(conn, tenant, kind, offset as i64, query.count as i64)?,
        ),
        Some(filter) => {
            let candidates = match indexed_lookup(kind, filter) {
                Some((lookup, value)) => find_resources(conn, tenant, kind, lookup, &value)?,
                None => all_resources(conn, tenant, kind)?,
            };
            // Memberships (a group's members, a user's groups) are read only for a filter
            // that names them.
            let named = format!("{filter:?}").to_ascii_lowercase();
            let needs_members = named.contains("members") || named.contains("groups");
            let full = Projection::default();
            let mut matching = Vec::new();
            for row in candidates {
                let rendered = if needs_members {
                    render_row(conn, tenant, &row, base_url, &full)?
                } else {
                    resource::render(&row, None, base_url)
                };
                if filter.matches(&Value::Object(rendered)) {
                    matching.push(row);
                }
            }
            let total = matching.len();
            let page = matching
                .into_iter()
                .skip(offset)
                .take(query.count)
                .collect();
            (total, page)
        }
    };
    let resources: Vec<Value> = page
        .iter()
        .map(|row| render_row(conn, tenant, row, base_url, &query.projection).map(Value::Object))
        .collect::<Result<_, _>>()?;
    Ok(json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": query.start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

/// The index a filter can be answered from: an `eq` on an indexed attribute, alone or in a
/// conjunction (the candidates are then checked against the whole filter).
fn indexed_lookup(kind: ScimKind, filter: &Filter) -> Option<(Lookup, String)> {
    let pairs = filter.equalities()?;
    pairs.into_iter().find_map(|(attr, value)| {
        let value = value.as_str()?.to_owned();
        let lookup = if attr.eq_ignore_ascii_case("id") {
            Lookup::Id
        } else if attr.eq_ignore_ascii_case("userName") && kind == ScimKind::User {
            Lookup::UserName
        } else if attr.eq_ignore_ascii_case("externalId") {
            Lookup::ExternalId
        } else if attr.eq_ignore_ascii_case("displayName") {
            Lookup::DisplayName
        } else {
            return None;
        };
        Some((lookup, value))
    })
}
