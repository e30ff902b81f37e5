//! What a SCIM server says about itself (`/ServiceProviderConfig`, `/ResourceTypes`,
//! `/Schemas`) and the plan dirsync derives from it plus the tenant's overrides. Pure parsing
//! and deciding; the requests are made by the source.

use serde_json::Value;

use super::normalize::{as_bool, get};
use crate::config::{ScimPagination, ScimSourceConfig};

/// Page size when neither the config nor the server names one.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The parts of `/ServiceProviderConfig` dirsync uses. `None`: the server did not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// False when `/ServiceProviderConfig` was missing (404): everything below is unknown.
    pub advertised: bool,
    pub filter: Option<bool>,
    pub filter_max_results: Option<u32>,
    pub index: Option<bool>,
    pub cursor: Option<bool>,
    pub default_method: Option<String>,
    pub default_page_size: Option<u32>,
    pub max_page_size: Option<u32>,
    pub etag: Option<bool>,
}

fn number(value: Option<&Value>) -> Option<u32> {
    match value? {
        Value::Number(number) => number.as_u64().map(|n| n.min(u64::from(u32::MAX)) as u32),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| *n > 0)
}

fn flag(object: Option<&Value>, name: &str) -> Option<bool> {
    object
        .and_then(Value::as_object)
        .and_then(|object| get(object, name))
        .and_then(|value| as_bool(value).ok().flatten())
}

impl ServerInfo {
    /// Reads a `/ServiceProviderConfig` body; `Err` when it is not one.
    pub fn parse(body: &Value) -> Result<Self, String> {
        let object = body
            .as_object()
            .ok_or("it is not a JSON object (a ServiceProviderConfig is)")?;
        let schema_says = get(object, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| {
                schemas.iter().filter_map(Value::as_str).any(|schema| {
                    schema
                        .to_ascii_lowercase()
                        .ends_with(":serviceproviderconfig")
                })
            });
        let has_features = ["patch", "filter", "bulk", "authenticationSchemes"]
            .iter()
            .any(|name| get(object, name).is_some());
        if !schema_says && !has_features {
            return Err(
                "it has neither the ServiceProviderConfig schema nor its attributes".into(),
            );
        }
        let filter = get(object, "filter");
        let pagination = get(object, "pagination").and_then(Value::as_object);
        Ok(Self {
            advertised: true,
            filter: flag(filter, "supported"),
            filter_max_results: filter
                .and_then(Value::as_object)
                .and_then(|filter| number(get(filter, "maxResults"))),
            index: pagination
                .and_then(|p| get(p, "index"))
                .and_then(|v| as_bool(v).ok().flatten()),
            cursor: pagination
                .and_then(|p| get(p, "cursor"))
                .and_then(|v| as_bool(v).ok().flatten()),
            default_method: pagination
                .and_then(|p| get(p, "defaultPaginationMethod"))
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase),
            default_page_size: pagination.and_then(|p| number(get(p, "defaultPageSize"))),
            max_page_size: pagination.and_then(|p| number(get(p, "maxPageSize"))),
            etag: flag(get(object, "etag"), "supported"),
        })
    }
}

/// Where the User and Group resources live, from `/ResourceTypes` (defaults `/Users`, `/Groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub users: String,
    pub groups: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            users: "/Users".into(),
            groups: "/Groups".into(),
        }
    }
}

/// Resources of a discovery list: a ListResponse, or (some servers) a bare array.
pub fn discovery_resources(body: &Value) -> Vec<&Value> {
    match body {
        Value::Array(items) => items.iter().collect(),
        Value::Object(object) => get(object, "Resources")
            .and_then(Value::as_array)
            .map(|items| items.iter().collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

impl Endpoints {
    pub fn parse(body: &Value) -> Self {
        let mut endpoints = Self::default();
        for resource_type in discovery_resources(body) {
            let Some(object) = resource_type.as_object() else {
                continue;
            };
            let name = get(object, "name").and_then(Value::as_str).unwrap_or("");
            let schema = get(object, "schema").and_then(Value::as_str).unwrap_or("");
            let Some(endpoint) = get(object, "endpoint")
                .and_then(Value::as_str)
                .filter(|e| !e.trim().is_empty())
            else {
                continue;
            };
            if name.eq_ignore_ascii_case("user") || schema.eq_ignore_ascii_case(USER_SCHEMA) {
                endpoints.users = endpoint.trim().to_owned();
            } else if name.eq_ignore_ascii_case("group")
                || schema.eq_ignore_ascii_case(GROUP_SCHEMA)
            {
                endpoints.groups = endpoint.trim().to_owned();
            }
        }
        endpoints
    }
}

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// When the Group schema says `members` is returned (`always`, `default`, `request`, `never`).
pub fn members_returned(schemas: &Value) -> Option<String> {
    discovery_resources(schemas).into_iter().find_map(|schema| {
        let object = schema.as_object()?;
        let id = get(object, "id").and_then(Value::as_str)?;
        if !id.eq_ignore_ascii_case(GROUP_SCHEMA) {
            return None;
        }
        get(object, "attributes")?
            .as_array()?
            .iter()
            .filter_map(Value::as_object)
            .find(|attribute| {
                get(attribute, "name")
                    .and_then(Value::as_str)
                    .is_some_and(|name| name.eq_ignore_ascii_case("members"))
            })
            .map(|attribute| {
                get(attribute, "returned")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_ascii_lowercase()
            })
            .or(Some("absent".to_owned()))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    Index,
    Cursor,
}

impl Paging {
    pub fn name(self) -> &'static str {
        match self {
            Paging::Index => "index",
            Paging::Cursor => "cursor",
        }
    }
}

/// How dirsync reads this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub paging: Paging,
    pub page_size: u32,
    pub filter: bool,
}

impl Plan {
    /// Config overrides win; otherwise cursors when the server offers them (they do not shift
    /// when resources are deleted mid-listing, offsets do), else index paging.
    pub fn choose(config: &ScimSourceConfig, server: &ServerInfo) -> Self {
        let paging = match config.pagination {
            ScimPagination::Index => Paging::Index,
            ScimPagination::Cursor => Paging::Cursor,
            ScimPagination::Auto => {
                if server.cursor == Some(true)
                    || (server.index == Some(false)
                        && server.default_method.as_deref() == Some("cursor"))
                {
                    Paging::Cursor
                } else {
                    Paging::Index
                }
            }
        };
        let mut page_size = config
            .page_size
            .or(server.default_page_size)
            .unwrap_or(DEFAULT_PAGE_SIZE);
        // Asking for more than the server's caps gains nothing; a capped page is handled anyway.
        for cap in [server.max_page_size, server.filter_max_results]
            .into_iter()
            .flatten()
        {
            page_size = page_size.min(cap);
        }
        Self {
            paging,
            page_size: page_size.max(1),
            filter: config.filter_supported.or(server.filter).unwrap_or(false),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn config(pagination: ScimPagination, page_size: Option<u32>) -> ScimSourceConfig {
        ScimSourceConfig {
            base_url: "http://127.0.0.1:1/v2".into(),
            auth: crate::config::ScimAuth::None,
            page_size,
            pagination,
            filter_supported: None,
            suspended_users: Default::default(),
            nested_groups: Default::default(),
            max_concurrency: 1,
            requests_per_minute: 0,
            retry_max: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_run: Duration::from_secs(3600),
        }
    }

    #[test]
    fn reads_the_rfc_9865_pagination_block() {
        let spc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "filter": {"supported": true, "maxResults": 1000},
            "pagination": {"cursor": true, "index": false, "defaultPaginationMethod": "cursor",
                           "defaultPageSize": 100, "maxPageSize": 1000}});
        let info = ServerInfo::parse(&spc).unwrap();
        assert_eq!(info.cursor, Some(true));
        assert_eq!(info.index, Some(false));
        let plan = Plan::choose(&config(ScimPagination::Auto, None), &info);
        assert_eq!(
            plan,
            Plan {
                paging: Paging::Cursor,
                page_size: 100,
                filter: true
            }
        );
        let forced = Plan::choose(&config(ScimPagination::Index, Some(5000)), &info);
        assert_eq!(
            forced,
            Plan {
                paging: Paging::Index,
                page_size: 1000,
                filter: true
            }
        );
    }

    #[test]
    fn without_pagination_block_index_paging_of_100() {
        let spc = json!({"patch": {"supported": "True"}, "filter": {"supported": "False"}});
        let info = ServerInfo::parse(&spc).unwrap();
        assert_eq!(info.filter, Some(false));
        let plan = Plan::choose(&config(ScimPagination::Auto, None), &info);
        assert_eq!(
            plan,
            Plan {
                paging: Paging::Index,
                page_size: 100,
                filter: false
            }
        );
    }

    #[test]
    fn something_else_is_not_a_service_provider_config() {
        assert!(ServerInfo::parse(&json!({"hello": "world"})).is_err());
        assert!(ServerInfo::parse(&json!([1, 2])).is_err());
    }

    #[test]
    fn endpoints_and_members_from_discovery() {
        let types = json!({"Resources": [
            {"name": "User", "endpoint": "/people", "schema": USER_SCHEMA},
            {"id": "g", "name": "Team", "endpoint": "/teams", "schema": GROUP_SCHEMA}]});
        assert_eq!(
            Endpoints::parse(&types),
            Endpoints {
                users: "/people".into(),
                groups: "/teams".into()
            }
        );
        assert_eq!(Endpoints::parse(&json!({})), Endpoints::default());
        let schemas = json!([{"id": GROUP_SCHEMA, "attributes": [{"name": "members", "returned": "Request"}]}]);
        assert_eq!(members_returned(&schemas).as_deref(), Some("request"));
        assert_eq!(members_returned(&json!({"Resources": []})), None);
    }
}
