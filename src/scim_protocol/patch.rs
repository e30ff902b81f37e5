//! The PATCH engine (RFC 7644 §3.5.2): applies every operation of a request, in order, to a
//! resource as a JSON object, or refuses the whole request. What IdPs really send is handled
//! as the RFC means it: ops in any letter case (`Replace`), any number of operations and of
//! members in one, no-path values with dotted and URN-prefixed keys, value-filtered paths
//! (`members[value eq "…"]`, `emails[type eq "work"].value`, also on a multi-valued attribute
//! that does not exist yet), `"True"`/`"False"` strings for booleans, `manager` as a plain id.
//!
//! Anything it cannot apply is an error with `invalidPath`, `invalidValue`, `noTarget`,
//! `mutability` or `invalidSyntax` — never a silent success. Removing what is not there (a
//! member who is not one) is not an error: it changes nothing.

use serde_json::{Map, Value};

use super::filter::Filter;
use super::path::{get_ci, key_ci, AttrPath};
use super::{ScimError, ScimType, ENTERPRISE_USER_SCHEMA};

/// The PatchOp message schema.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Operations one request may carry before it is refused (`tooMany`).
pub const MAX_OPERATIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// Where an operation applies: an attribute, optionally narrowed to the elements a filter
/// selects, optionally a sub-attribute of those.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

impl PatchPath {
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        let Some(open) = text.find('[') else {
            return Ok(Self {
                attr: AttrPath::parse(text)?,
                filter: None,
            });
        };
        let close = text
            .rfind(']')
            .filter(|close| *close > open)
            .ok_or_else(|| {
                ScimError::invalid_path(format!("path {text:?}: \"[\" is not closed"))
            })?;
        let mut attr = AttrPath::parse(&text[..open])?;
        if attr.sub.is_some() {
            return Err(ScimError::invalid_path(format!(
                "path {text:?}: a filter applies to an attribute, not a sub-attribute"
            )));
        }
        let filter = Filter::parse(&text[open + 1..close])
            .map_err(|err| ScimError::invalid_path(format!("path {text:?}: {}", err.detail)))?;
        let rest = &text[close + 1..];
        if !rest.is_empty() {
            let sub = rest.strip_prefix('.').ok_or_else(|| {
                ScimError::invalid_path(format!("path {text:?}: unexpected {rest:?} after \"]\""))
            })?;
            if !super::path::is_attr_name(sub) {
                return Err(ScimError::invalid_path(format!(
                    "path {text:?}: {sub:?} is not a sub-attribute name"
                )));
            }
            attr.sub = Some(sub.to_owned());
        }
        Ok(Self {
            attr,
            filter: Some(filter),
        })
    }
}

/// The operations of a PATCH request body.
pub fn parse_request(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let object = body.as_object().ok_or_else(|| {
        ScimError::bad_request(ScimType::InvalidSyntax, "a PATCH body is a JSON object")
    })?;
    if let Some(schemas) = get_ci(object, "schemas") {
        let names_patch = schemas.as_array().is_some_and(|list| {
            list.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
            })
        });
        if !names_patch {
            return Err(ScimError::bad_request(
                ScimType::InvalidSyntax,
                format!("a PATCH body's schemas must list {PATCH_OP_SCHEMA}"),
            ));
        }
    }
    let operations = get_ci(object, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ScimError::bad_request(
                ScimType::InvalidSyntax,
                "a PATCH body needs an \"Operations\" array",
            )
        })?;
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::bad_request(
            ScimType::TooMany,
            format!(
                "{} operations in one PATCH; at most {MAX_OPERATIONS}",
                operations.len()
            ),
        ));
    }
    operations
        .iter()
        .enumerate()
        .map(|(index, operation)| parse_operation(index, operation))
        .collect()
}

fn parse_operation(index: usize, operation: &Value) -> Result<PatchOp, ScimError> {
    let syntax = |why: String| {
        ScimError::bad_request(
            ScimType::InvalidSyntax,
            format!("Operations[{index}]: {why}"),
        )
    };
    let object = operation
        .as_object()
        .ok_or_else(|| syntax("an operation is a JSON object".into()))?;
    let op = match get_ci(object, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        Some("replace") => OpKind::Replace,
        Some(other) => {
            return Err(syntax(format!(
                "op {other:?} is not add, remove or replace"
            )))
        }
        None => return Err(syntax("\"op\" is missing".into())),
    };
    let path = match get_ci(object, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(PatchPath::parse(text).map_err(|err| {
            ScimError::invalid_path(format!("Operations[{index}]: {}", err.detail))
        })?),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "Operations[{index}]: \"path\" is not a string"
            )))
        }
    };
    let value = get_ci(object, "value").cloned();
    if op != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "Operations[{index}]: add and replace need a \"value\""
        )));
    }
    if op == OpKind::Remove && path.is_none() {
        return Err(ScimError::no_target(format!(
            "Operations[{index}]: remove needs a \"path\""
        )));
    }
    Ok(PatchOp { op, path, value })
}

/// Applies `operations` to `resource` in order. On an error the resource may be partly
/// changed: apply to a copy and keep it only on success.
pub fn apply(resource: &mut Map<String, Value>, operations: &[PatchOp]) -> Result<(), ScimError> {
    for (index, operation) in operations.iter().enumerate() {
        let before = primaries(resource);
        apply_one(resource, operation).map_err(|err| ScimError {
            detail: format!("Operations[{index}]: {}", err.detail),
            ..err
        })?;
        keep_one_primary(resource, &before);
    }
    Ok(())
}

fn is_primary(element: &Value) -> bool {
    element
        .as_object()
        .and_then(|fields| get_ci(fields, "primary"))
        == Some(&Value::Bool(true))
}

/// The elements flagged primary, by multi-valued attribute (its name lower-cased).
fn primaries(resource: &Map<String, Value>) -> Vec<(String, Value)> {
    resource
        .iter()
        .filter(|(key, _)| is_multi_valued(key) && !key.eq_ignore_ascii_case("members"))
        .filter_map(|(key, value)| Some((key.to_ascii_lowercase(), value.as_array()?)))
        .flat_map(|(key, elements)| {
            elements
                .iter()
                .filter(|element| is_primary(element))
                .map(move |element| (key.clone(), element.clone()))
        })
        .collect()
}

/// RFC 7644 §3.5.2: a value an operation makes primary is its attribute's only primary one;
/// the values that were primary lose the flag (or the user would have two primary emails, and
/// dirsync's `email` would stay the old one).
fn keep_one_primary(resource: &mut Map<String, Value>, before: &[(String, Value)]) {
    for (key, value) in resource.iter_mut() {
        if !is_multi_valued(key) || key.eq_ignore_ascii_case("members") {
            continue;
        }
        let Value::Array(elements) = value else {
            continue;
        };
        let name = key.to_ascii_lowercase();
        let was_primary = |element: &Value| {
            before
                .iter()
                .any(|(attr, old)| *attr == name && same_element(old, element))
        };
        let made_primary = elements
            .iter()
            .any(|element| is_primary(element) && !was_primary(element));
        if !made_primary {
            continue;
        }
        for element in elements.iter_mut() {
            if is_primary(element) && was_primary(element) {
                if let Value::Object(fields) = element {
                    set_field(fields, "primary", Value::Bool(false));
                }
            }
        }
    }
}

fn apply_one(resource: &mut Map<String, Value>, operation: &PatchOp) -> Result<(), ScimError> {
    let value = operation.value.clone().unwrap_or(Value::Null);
    match (&operation.path, operation.op) {
        (None, OpKind::Remove) => Err(ScimError::no_target("remove needs a path")),
        (None, op) => {
            let Value::Object(values) = value else {
                return Err(ScimError::invalid_value(
                    "an add or replace without a path needs an object of attributes as its value",
                ));
            };
            for (key, value) in values {
                if key.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                // `{"urn:…:enterprise:2.0:User": {"department": …}}` names an extension.
                if is_urn(&key) && value.is_object() && names_schema(resource, &key) {
                    if let Value::Object(attributes) = value {
                        for (name, value) in attributes {
                            let path = AttrPath {
                                urn: Some(key.clone()),
                                attr: name,
                                sub: None,
                            };
                            set(resource, &path, value, op)?;
                        }
                    }
                    continue;
                }
                let path = AttrPath::parse(&key)?;
                set(resource, &path, value, op)?;
            }
            Ok(())
        }
        (Some(PatchPath { attr, filter: None }), OpKind::Remove) => {
            remove(resource, attr, operation.value.as_ref())
        }
        (Some(PatchPath { attr, filter: None }), op) => set(resource, attr, value, op),
        (
            Some(PatchPath {
                attr,
                filter: Some(filter),
            }),
            op,
        ) => apply_filtered(resource, attr, filter, op, operation.value.as_ref()),
    }
}

fn is_urn(key: &str) -> bool {
    key.len() > 4 && key[..4].eq_ignore_ascii_case("urn:")
}

/// Whether the no-path key `urn:…:2.0:User` names a schema (its value an object of that
/// extension's attributes) rather than `urn:…:User:manager` an attribute. URNs are matched
/// case-insensitively (RFC 7643 §2.1): a schema is known when it is the enterprise extension
/// or the resource lists it or holds its object; only an unknown URN is told by its spelling.
fn names_schema(resource: &Map<String, Value>, key: &str) -> bool {
    let known = |urn: &str| {
        urn.eq_ignore_ascii_case(ENTERPRISE_USER_SCHEMA)
            || get_ci(resource, urn).is_some_and(Value::is_object)
            || get_ci(resource, "schemas")
                .and_then(Value::as_array)
                .is_some_and(|schemas| {
                    schemas
                        .iter()
                        .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(urn)))
                })
    };
    if known(key) {
        return true;
    }
    if key
        .rsplit_once(':')
        .is_some_and(|(schema, _)| known(schema))
    {
        return false;
    }
    !has_attribute_after_urn(key)
}

/// Whether `urn:…:User:employeeNumber` (an attribute) rather than `urn:…:2.0:User` (a schema),
/// by convention: a schema URN's last segment is a resource type name that starts upper-case,
/// an attribute name lower-case.
fn has_attribute_after_urn(key: &str) -> bool {
    key.rsplit(':')
        .next()
        .is_some_and(|last| last.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
}

/// Attributes whose elements are a list (RFC 7643 §4.1.2, §4.2).
fn is_multi_valued(attr: &str) -> bool {
    [
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "members",
        "entitlements",
        "roles",
        "x509Certificates",
    ]
    .iter()
    .any(|name| name.eq_ignore_ascii_case(attr))
}

fn is_boolean(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("active") || attr.eq_ignore_ascii_case("primary")
}

fn is_read_only(path: &AttrPath) -> bool {
    path.urn.is_none()
        && (path.attr.eq_ignore_ascii_case("id") || path.attr.eq_ignore_ascii_case("meta"))
}

/// A value in the form dirsync keeps: booleans for boolean attributes (Entra sends
/// `"False"`), `manager` as an object (Entra may send the bare id).
fn normalize(name: &str, value: Value) -> Result<Value, ScimError> {
    if is_boolean(name) {
        return match &value {
            Value::Bool(_) | Value::Null => Ok(value),
            Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            other => Err(ScimError::invalid_value(format!(
                "{name} must be true or false, not {other}"
            ))),
        };
    }
    if name.eq_ignore_ascii_case("manager") {
        if let Value::String(id) = value {
            return Ok(serde_json::json!({ "value": id }));
        }
    }
    Ok(value)
}

/// Normalizes each element of a multi-valued attribute (its `primary` flags).
fn normalize_element(attr: &str, element: Value) -> Result<Value, ScimError> {
    match element {
        Value::Object(fields) => {
            let mut normalized = Map::new();
            for (key, value) in fields {
                let value = normalize(&key, value)?;
                normalized.insert(key, value);
            }
            if attr.eq_ignore_ascii_case("members")
                && !get_ci(&normalized, "value").is_some_and(Value::is_string)
            {
                return Err(ScimError::invalid_value(
                    "a member needs a \"value\": the id of a user or group",
                ));
            }
            Ok(Value::Object(normalized))
        }
        other if attr.eq_ignore_ascii_case("members") => Err(ScimError::invalid_value(format!(
            "a member is an object with a \"value\", not {other}"
        ))),
        other => Ok(other),
    }
}

/// Two elements of a multi-valued attribute are the same when their `value`s are (a member
/// named twice), else when they are equal.
fn same_element(a: &Value, b: &Value) -> bool {
    let value_of = |v: &Value| v.as_object().and_then(|o| get_ci(o, "value")).cloned();
    match (value_of(a), value_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn set(
    resource: &mut Map<String, Value>,
    path: &AttrPath,
    value: Value,
    op: OpKind,
) -> Result<(), ScimError> {
    if is_read_only(path) {
        let current = resource
            .get(&key_ci(resource, &path.attr).unwrap_or_default())
            .cloned();
        if path.sub.is_none() && current.as_ref() == Some(&value) {
            // Okta repeats the id inside a rename's value: it changes nothing.
            return Ok(());
        }
        return Err(ScimError::mutability(format!("{path} is read-only")));
    }
    let container = path.container_mut(resource);
    let key = key_ci(container, &path.attr).unwrap_or_else(|| path.attr.clone());
    if let Some(sub) = &path.sub {
        let value = normalize(sub, value)?;
        let slot = container
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        match slot {
            Value::Object(fields) => set_field(fields, sub, value),
            // `emails.type` without a filter: every element.
            Value::Array(items) => {
                for item in items.iter_mut() {
                    if let Value::Object(fields) = item {
                        set_field(fields, sub, value.clone());
                    }
                }
            }
            _ => {
                *slot = Value::Object(Map::new());
                if let Value::Object(fields) = slot {
                    set_field(fields, sub, value);
                }
            }
        }
        return Ok(());
    }
    if is_multi_valued(&path.attr) || value.is_array() {
        let incoming: Vec<Value> = match value {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            single => vec![single],
        };
        let incoming = incoming
            .into_iter()
            .map(|element| normalize_element(&path.attr, element))
            .collect::<Result<Vec<_>, _>>()?;
        match op {
            OpKind::Replace => {
                let mut unique: Vec<Value> = Vec::new();
                for element in incoming {
                    if !unique.iter().any(|have| same_element(have, &element)) {
                        unique.push(element);
                    }
                }
                if unique.is_empty() {
                    container.remove(&key);
                } else {
                    container.insert(key, Value::Array(unique));
                }
            }
            OpKind::Add | OpKind::Remove => {
                let slot = container
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !slot.is_array() {
                    let single = slot.take();
                    *slot = Value::Array(if single.is_null() {
                        Vec::new()
                    } else {
                        vec![single]
                    });
                }
                if let Value::Array(items) = slot {
                    for element in incoming {
                        match items.iter_mut().find(|have| same_element(have, &element)) {
                            // The same member again: its other fields (`display`) may change.
                            Some(have) => *have = element,
                            None => items.push(element),
                        }
                    }
                }
            }
        }
        return Ok(());
    }
    let value = normalize(&path.attr, value)?;
    match (container.get_mut(&key), value) {
        (_, Value::Null) if op == OpKind::Replace => {
            container.remove(&key);
        }
        // A complex attribute: the sub-attributes given replace theirs, the others stay.
        (Some(Value::Object(fields)), Value::Object(values)) => {
            for (sub, value) in values {
                let value = normalize(&sub, value)?;
                set_field(fields, &sub, value);
            }
        }
        (_, value) => {
            container.insert(key, value);
        }
    }
    Ok(())
}

/// Sets `name` in `fields`, under the existing key's spelling; `null` removes it.
fn set_field(fields: &mut Map<String, Value>, name: &str, value: Value) {
    let key = key_ci(fields, name).unwrap_or_else(|| name.to_owned());
    if value.is_null() {
        fields.remove(&key);
    } else {
        fields.insert(key, value);
    }
}

fn remove(
    resource: &mut Map<String, Value>,
    path: &AttrPath,
    values: Option<&Value>,
) -> Result<(), ScimError> {
    if is_read_only(path) {
        return Err(ScimError::mutability(format!("{path} is read-only")));
    }
    let container = path.container_mut(resource);
    let Some(key) = key_ci(container, &path.attr) else {
        return Ok(());
    };
    if let Some(sub) = &path.sub {
        match container.get_mut(&key) {
            Some(Value::Object(fields)) => set_field(fields, sub, Value::Null),
            Some(Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::Object(fields) = item {
                        set_field(fields, sub, Value::Null);
                    }
                }
            }
            _ => {}
        }
        return Ok(());
    }
    // `{"op":"Remove","path":"members","value":[{"value":"…"}]}`: those elements only.
    if let Some(values) = values.filter(|v| !v.is_null()) {
        let listed: Vec<Value> = match values {
            Value::Array(items) => items.clone(),
            single => vec![single.clone()],
        };
        if let Some(Value::Array(items)) = container.get_mut(&key) {
            items.retain(|item| !listed.iter().any(|gone| same_element(item, gone)));
            if items.is_empty() {
                container.remove(&key);
            }
        }
        return Ok(());
    }
    container.remove(&key);
    Ok(())
}

fn apply_filtered(
    resource: &mut Map<String, Value>,
    path: &AttrPath,
    filter: &Filter,
    op: OpKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if is_read_only(path) {
        return Err(ScimError::mutability(format!("{path} is read-only")));
    }
    let attr = path.parent();
    let container = attr.container_mut(resource);
    let key = key_ci(container, &attr.attr).unwrap_or_else(|| attr.attr.clone());
    let mut items = match container.remove(&key) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    };
    let matching: Vec<usize> = (0..items.len())
        .filter(|&i| filter.matches(&items[i]))
        .collect();
    let result = (|| {
        match op {
            OpKind::Remove => {
                match &path.sub {
                    Some(sub) => {
                        for &i in &matching {
                            if let Value::Object(fields) = &mut items[i] {
                                set_field(fields, sub, Value::Null);
                            }
                        }
                    }
                    None => {
                        let mut index = 0;
                        items.retain(|_| {
                            let keep = !matching.contains(&index);
                            index += 1;
                            keep
                        });
                    }
                }
                Ok(())
            }
            OpKind::Add | OpKind::Replace => {
                let value = value.cloned().unwrap_or(Value::Null);
                if matching.is_empty() {
                    // `emails[type eq "work"].value` on a user without a work email: the
                    // element the filter describes, with the value.
                    let (Some(sub), Some(seed)) = (&path.sub, filter.equalities()) else {
                        return Err(ScimError::no_target(format!(
                            "no element of {} matches the filter",
                            attr
                        )));
                    };
                    let mut element = Map::new();
                    for (name, value) in seed {
                        element.insert(name.clone(), normalize(&name, value)?);
                    }
                    set_field(&mut element, sub, normalize(sub, value)?);
                    items.push(normalize_element(&attr.attr, Value::Object(element))?);
                    return Ok(());
                }
                for &i in &matching {
                    match &path.sub {
                        Some(sub) => {
                            if let Value::Object(fields) = &mut items[i] {
                                set_field(fields, sub, normalize(sub, value.clone())?);
                            }
                        }
                        None => match (&mut items[i], &value) {
                            (Value::Object(fields), Value::Object(values)) if op == OpKind::Add => {
                                for (name, value) in values {
                                    set_field(fields, name, normalize(name, value.clone())?);
                                }
                            }
                            (item, value) => *item = normalize_element(&attr.attr, value.clone())?,
                        },
                    }
                }
                Ok(())
            }
        }
    })();
    if !items.is_empty() {
        container.insert(key, Value::Array(items));
    }
    result
}

#[cfg(test)]
mod tests;
