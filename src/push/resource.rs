//! A pushed resource in and out: what an IdP's body becomes before it is stored (one
//! canonical form whatever the IdP's dialect), and the SCIM JSON dirsync answers with.

use serde_json::{json, Map, Value};

use crate::scim_protocol::path::{get_ci, key_ci};
use crate::scim_protocol::{
    AttrPath, ScimError, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA,
};
use crate::store::push::{ScimKind, ScimMember, ScimRow};

/// Extension schemas a User may carry; flat keys under them (Okta's
/// `"urn:…:enterprise:2.0:User:department"`) are nested under the URN.
const USER_EXTENSIONS: &[&str] = &[ENTERPRISE_USER_SCHEMA];

/// Attributes the service provider owns: whatever a client sends for them is ignored.
const SERVER_OWNED: &[&str] = &["id", "meta"];

/// A resource body in canonical form, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    /// Without `id`, `meta`, `password`, and (groups) `members`, (users) `groups`.
    pub data: Map<String, Value>,
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    /// A group's `members` when the body had them (`None`: it did not mention members).
    pub members: Option<Vec<MemberIn>>,
}

/// A member as a body names it, before it is resolved against the tenant's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIn {
    pub id: String,
    /// `User`/`Group` when the body said so.
    pub kind: Option<ScimKind>,
    pub display: Option<String>,
}

pub fn schema_of(kind: ScimKind) -> &'static str {
    match kind {
        ScimKind::User => USER_SCHEMA,
        ScimKind::Group => GROUP_SCHEMA,
    }
}

/// The path segment of a resource type.
pub fn endpoint_of(kind: ScimKind) -> &'static str {
    match kind {
        ScimKind::User => "Users",
        ScimKind::Group => "Groups",
    }
}

/// Turns a body (POST or PUT, or a resource after PATCH) into its canonical form, or says
/// what is wrong with it.
pub fn canonical(kind: ScimKind, body: Value) -> Result<Canonical, ScimError> {
    let Value::Object(object) = body else {
        return Err(ScimError::bad_request(
            crate::scim_protocol::ScimType::InvalidSyntax,
            format!("a {} is a JSON object", kind.as_str()),
        ));
    };
    let mut data = Map::new();
    let mut members = None;
    for (key, value) in object {
        if SERVER_OWNED
            .iter()
            .any(|name| key.eq_ignore_ascii_case(name))
            || key.eq_ignore_ascii_case("password")
            || key.eq_ignore_ascii_case("schemas")
        {
            continue;
        }
        if kind == ScimKind::User && key.eq_ignore_ascii_case("groups") {
            // Read-only: derived from the groups' members.
            continue;
        }
        if kind == ScimKind::Group && key.eq_ignore_ascii_case("members") {
            members = Some(members_in(&value)?);
            continue;
        }
        if let Some((urn, attribute)) = flat_extension_key(&key) {
            let extension = data
                .entry(urn.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(extension) = extension {
                extension.insert(attribute.to_owned(), value);
            }
            continue;
        }
        if let Some(urn) = USER_EXTENSIONS
            .iter()
            .find(|urn| key.eq_ignore_ascii_case(urn))
        {
            let Value::Object(fields) = value else {
                return Err(ScimError::invalid_value(format!(
                    "{urn} is an object of extension attributes, not {value}"
                )));
            };
            let extension = data
                .entry((*urn).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(extension) = extension {
                extension.extend(fields);
            }
            continue;
        }
        let existing = key_ci(&data, &key);
        let key = existing.unwrap_or(key);
        data.insert(key, value);
    }
    normalize_values(&mut data)?;
    let string_of = |name: &str| -> Result<Option<String>, ScimError> {
        match get_ci(&data, name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(ScimError::invalid_value(format!(
                "{name} must be a string, not {other}"
            ))),
        }
    };
    let user_name = string_of("userName")?;
    let external_id = string_of("externalId")?;
    let display_name = string_of("displayName")?;
    match kind {
        ScimKind::User
            if user_name
                .as_deref()
                .is_none_or(|name| name.trim().is_empty()) =>
        {
            return Err(ScimError::invalid_value(
                "userName is required: a User needs a non-empty userName",
            ))
        }
        ScimKind::Group
            if display_name
                .as_deref()
                .is_none_or(|name| name.trim().is_empty()) =>
        {
            return Err(ScimError::invalid_value(
                "displayName is required: a Group needs a non-empty displayName",
            ))
        }
        _ => {}
    }
    Ok(Canonical {
        data,
        user_name: user_name.map(|name| name.to_lowercase()),
        external_id,
        display_name: display_name.map(|name| name.to_lowercase()),
        members,
    })
}

/// `urn:…:enterprise:2.0:User:department` → (`urn:…:enterprise:2.0:User`, `department`).
fn flat_extension_key(key: &str) -> Option<(&'static str, &str)> {
    USER_EXTENSIONS.iter().find_map(|urn| {
        let prefix = key.get(..urn.len())?;
        let rest = key.get(urn.len()..)?;
        (prefix.eq_ignore_ascii_case(urn) && rest.len() > 1 && rest.starts_with(':'))
            .then(|| (*urn, &rest[1..]))
    })
}

/// Booleans as booleans (`"False"` from Entra), `manager` as an object.
fn normalize_values(data: &mut Map<String, Value>) -> Result<(), ScimError> {
    if let Some(key) = key_ci(data, "active") {
        if let Some(value) = data.get_mut(&key) {
            *value = boolean("active", value.take())?;
        }
    }
    for (_, value) in data.iter_mut() {
        if let Value::Array(items) = value {
            for item in items.iter_mut() {
                if let Value::Object(fields) = item {
                    if let Some(key) = key_ci(fields, "primary") {
                        if let Some(flag) = fields.get_mut(&key) {
                            *flag = boolean("primary", flag.take())?;
                        }
                    }
                }
            }
        }
    }
    if let Some(Value::Object(extension)) = data.get_mut(ENTERPRISE_USER_SCHEMA) {
        if let Some(key) = key_ci(extension, "manager") {
            if let Some(manager) = extension.get_mut(&key) {
                if let Value::String(id) = manager {
                    *manager = json!({ "value": id.clone() });
                }
            }
        }
    }
    Ok(())
}

fn boolean(name: &str, value: Value) -> Result<Value, ScimError> {
    match &value {
        Value::Bool(_) | Value::Null => Ok(value),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        other => Err(ScimError::invalid_value(format!(
            "{name} must be true or false, not {other}"
        ))),
    }
}

fn members_in(value: &Value) -> Result<Vec<MemberIn>, ScimError> {
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(ScimError::invalid_value(format!(
                "members is a list of {{\"value\": id}}, not {other}"
            )))
        }
    };
    items.iter().map(member_in).collect()
}

pub fn member_in(item: &Value) -> Result<MemberIn, ScimError> {
    let Value::Object(fields) = item else {
        return Err(ScimError::invalid_value(format!(
            "a member is an object with a \"value\", not {item}"
        )));
    };
    let id = match get_ci(fields, "value") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(ScimError::invalid_value(
                "a member needs a \"value\": the id of a user or group",
            ))
        }
    };
    let kind = match get_ci(fields, "type").and_then(Value::as_str) {
        Some(kind) if kind.eq_ignore_ascii_case("user") => Some(ScimKind::User),
        Some(kind) if kind.eq_ignore_ascii_case("group") => Some(ScimKind::Group),
        _ => match get_ci(fields, "$ref").and_then(Value::as_str) {
            Some(link) if link.contains("/Groups/") => Some(ScimKind::Group),
            Some(link) if link.contains("/Users/") => Some(ScimKind::User),
            _ => None,
        },
    };
    let display = get_ci(fields, "display")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(MemberIn { id, kind, display })
}

/// The stored data of a row as a JSON object.
pub fn data_of(row: &ScimRow) -> Map<String, Value> {
    match serde_json::from_str(&row.data) {
        Ok(Value::Object(data)) => data,
        _ => Map::new(),
    }
}

/// The resource as the IdP sees it: `schemas`, `id`, its attributes, `members` (groups, when
/// given), `meta`.
pub fn render(row: &ScimRow, members: Option<&[ScimMember]>, base_url: &str) -> Map<String, Value> {
    let mut resource = Map::new();
    let mut schemas = vec![Value::from(schema_of(row.kind))];
    let data = data_of(row);
    for urn in USER_EXTENSIONS {
        if row.kind == ScimKind::User && data.contains_key(*urn) {
            schemas.push(Value::from(*urn));
        }
    }
    resource.insert("schemas".into(), Value::Array(schemas));
    resource.insert("id".into(), Value::from(row.id.clone()));
    resource.extend(data);
    if let Some(members) = members {
        let members = members
            .iter()
            .map(|member| {
                let mut fields = Map::new();
                fields.insert("value".into(), Value::from(member.id.clone()));
                fields.insert(
                    "$ref".into(),
                    Value::from(format!(
                        "{base_url}/{}/{}",
                        endpoint_of(member.kind),
                        member.id
                    )),
                );
                fields.insert("type".into(), Value::from(member.kind.as_str()));
                if let Some(display) = &member.display {
                    fields.insert("display".into(), Value::from(display.clone()));
                }
                Value::Object(fields)
            })
            .collect();
        resource.insert("members".into(), Value::Array(members));
    }
    resource.insert(
        "meta".into(),
        json!({
            "resourceType": row.kind.as_str(),
            "created": timestamp(row.created),
            "lastModified": timestamp(row.modified),
            "version": format!("W/\"{}\"", row.version),
            "location": format!("{base_url}/{}/{}", endpoint_of(row.kind), row.id),
        }),
    );
    resource
}

fn timestamp(ms: i64) -> String {
    crate::event::format_timestamp(
        chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(chrono::Utc::now),
    )
}

/// `attributes` / `excludedAttributes` of a query (RFC 7644 §3.4.2.5), applied to a rendered
/// resource. `id`, `schemas` and `meta` are always returned.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    include: Vec<AttrPath>,
    exclude: Vec<AttrPath>,
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        let list = |text: Option<&str>| -> Result<Vec<AttrPath>, ScimError> {
            text.into_iter()
                .flat_map(|text| text.split(','))
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    AttrPath::parse(name).map_err(|err| {
                        ScimError::invalid_value(format!("attribute {name:?}: {}", err.detail))
                    })
                })
                .collect()
        };
        Ok(Self {
            include: list(attributes)?,
            exclude: list(excluded)?,
        })
    }

    /// Whether the query leaves out a group's members (so they need not be read).
    pub fn wants(&self, attribute: &str) -> bool {
        let named = |paths: &[AttrPath]| {
            paths
                .iter()
                .any(|path| path.urn.is_none() && path.attr.eq_ignore_ascii_case(attribute))
        };
        if !self.include.is_empty() {
            return named(&self.include);
        }
        !named(&self.exclude)
    }

    pub fn apply(&self, resource: Map<String, Value>) -> Map<String, Value> {
        const ALWAYS: &[&str] = &["id", "schemas", "meta"];
        let mut resource = resource;
        if !self.include.is_empty() {
            let mut kept = Map::new();
            for name in ALWAYS {
                if let Some(value) = resource.remove(*name) {
                    kept.insert((*name).to_owned(), value);
                }
            }
            for path in &self.include {
                copy_path(&resource, &mut kept, path);
            }
            resource = kept;
        }
        for path in &self.exclude {
            if ALWAYS
                .iter()
                .any(|name| path.urn.is_none() && path.attr.eq_ignore_ascii_case(name))
            {
                continue;
            }
            remove_path(&mut resource, path);
        }
        resource
    }
}

/// The object a path's attribute lives in: the resource, or an extension's object.
fn container<'a>(
    resource: &'a Map<String, Value>,
    path: &AttrPath,
) -> Option<&'a Map<String, Value>> {
    match &path.urn {
        None => Some(resource),
        Some(urn) => get_ci(resource, urn).and_then(Value::as_object),
    }
}

fn copy_path(from: &Map<String, Value>, to: &mut Map<String, Value>, path: &AttrPath) {
    let Some(source) = container(from, path) else {
        return;
    };
    let Some(key) = key_ci(source, &path.attr) else {
        return;
    };
    let Some(value) = source.get(&key) else {
        return;
    };
    let target = match &path.urn {
        None => to,
        Some(urn) => {
            let urn_key = key_ci(from, urn).unwrap_or_else(|| urn.clone());
            match to
                .entry(urn_key)
                .or_insert_with(|| Value::Object(Map::new()))
            {
                Value::Object(target) => target,
                _ => return,
            }
        }
    };
    match &path.sub {
        None => {
            target.insert(key, value.clone());
        }
        Some(sub) => {
            let pick = |item: &Value| -> Option<Value> {
                let fields = item.as_object()?;
                let sub_key = key_ci(fields, sub)?;
                let mut picked = Map::new();
                picked.insert(sub_key.clone(), fields.get(&sub_key)?.clone());
                Some(Value::Object(picked))
            };
            let picked = match value {
                Value::Array(items) => Value::Array(items.iter().filter_map(pick).collect()),
                other => match pick(other) {
                    Some(picked) => picked,
                    None => return,
                },
            };
            match (target.get_mut(&key), picked) {
                (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                (_, picked) => {
                    target.insert(key, picked);
                }
            }
        }
    }
}

fn remove_path(resource: &mut Map<String, Value>, path: &AttrPath) {
    let target = match &path.urn {
        None => resource,
        Some(urn) => {
            let Some(urn_key) = key_ci(resource, urn) else {
                return;
            };
            match resource.get_mut(&urn_key) {
                Some(Value::Object(target)) => target,
                _ => return,
            }
        }
    };
    let Some(key) = key_ci(target, &path.attr) else {
        return;
    };
    match &path.sub {
        None => {
            target.remove(&key);
        }
        Some(sub) => {
            let strip = |item: &mut Value| {
                if let Value::Object(fields) = item {
                    if let Some(sub_key) = key_ci(fields, sub) {
                        fields.remove(&sub_key);
                    }
                }
            };
            match target.get_mut(&key) {
                Some(Value::Array(items)) => items.iter_mut().for_each(strip),
                Some(other) => strip(other),
                None => {}
            }
        }
    }
}

/// The body with secrets replaced, for the request log.
pub fn redacted(body: &Value) -> Value {
    match body {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| {
                    if key.eq_ignore_ascii_case("password") {
                        (key.clone(), Value::from("[redacted]"))
                    } else {
                        (key.clone(), redacted(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => {
            // A PATCH operation on `password` carries the secret as its value.
            let patches_password = |item: &Value| {
                item.as_object()
                    .and_then(|op| get_ci(op, "path"))
                    .and_then(Value::as_str)
                    .is_some_and(|path| path.eq_ignore_ascii_case("password"))
            };
            Value::Array(
                items
                    .iter()
                    .map(|item| {
                        if patches_password(item) {
                            let mut op = item.clone();
                            if let Some(fields) = op.as_object_mut() {
                                if let Some(key) = key_ci(fields, "value") {
                                    fields.insert(key, Value::from("[redacted]"));
                                }
                            }
                            op
                        } else {
                            redacted(item)
                        }
                    })
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn okta_flat_urn_keys_and_entra_nested_ones_give_one_form() {
        let okta = canonical(
            ScimKind::User,
            json!({"userName": "A@x.example", "password": "s3cret",
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Eng",
                   "active": "False", "id": "ignored"}),
        )
        .unwrap();
        let entra = canonical(
            ScimKind::User,
            json!({"userName": "A@x.example",
                   "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Eng"},
                   "active": false}),
        )
        .unwrap();
        assert_eq!(okta, entra);
        assert_eq!(okta.user_name.as_deref(), Some("a@x.example"));
        assert!(!okta.data.contains_key("password") && !okta.data.contains_key("id"));
    }

    #[test]
    fn a_user_without_user_name_and_a_group_without_name_are_refused() {
        let err = canonical(ScimKind::User, json!({"displayName": "x"})).unwrap_err();
        assert_eq!(
            err.scim_type,
            Some(crate::scim_protocol::ScimType::InvalidValue)
        );
        assert!(canonical(ScimKind::Group, json!({"members": []})).is_err());
        assert!(canonical(
            ScimKind::Group,
            json!({"displayName": "g", "members": [{"display": "no value"}]})
        )
        .is_err());
    }

    #[test]
    fn projection_keeps_id_and_the_named_attributes() {
        let resource = json!({"schemas": [], "id": "1", "userName": "a", "name": {"givenName": "A", "familyName": "B"},
                              "emails": [{"value": "a@x", "type": "work"}], "meta": {}});
        let Value::Object(resource) = resource else {
            unreachable!()
        };
        let only = Projection::parse(Some("userName,name.givenName"), None).unwrap();
        assert_eq!(
            Value::Object(only.apply(resource.clone())),
            json!({"schemas": [], "id": "1", "userName": "a", "name": {"givenName": "A"}, "meta": {}})
        );
        let without = Projection::parse(None, Some("emails,id")).unwrap();
        let out = without.apply(resource);
        assert!(out.contains_key("id") && !out.contains_key("emails"));
    }

    #[test]
    fn passwords_are_redacted_in_bodies_and_patch_operations() {
        let body = json!({"userName": "a", "password": "p1", "Operations": [{"op": "replace", "path": "password", "value": "p2"}]});
        let text = redacted(&body).to_string();
        assert!(!text.contains("p1") && !text.contains("p2"), "{text}");
    }
}
