//! Attribute paths (RFC 7644 §3.10): `userName`, `name.givenName`, and with a schema URN in
//! front, `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`. A path
//! names an attribute of a resource object, found case-insensitively; an extension attribute
//! lives in the object keyed by its schema URN (or, as some clients write it, under the whole
//! prefixed name at the top level).

use std::fmt;

use serde_json::{Map, Value};

use super::{ScimError, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// The extension schemas whose URN alone is a path (their object).
const EXTENSION_SCHEMAS: &[&str] = &[ENTERPRISE_USER_SCHEMA];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The extension schema the attribute belongs to; `None` for the core schema.
    pub urn: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

impl AttrPath {
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        let bad = |why: &str| ScimError::invalid_path(format!("attribute path {text:?}: {why}"));
        let text = text.trim();
        // A known extension's URN alone names its whole object, which lives at the top level
        // under that URN (`remove` of the enterprise extension, `add` of all its attributes).
        if let Some(urn) = EXTENSION_SCHEMAS
            .iter()
            .find(|urn| text.eq_ignore_ascii_case(urn))
        {
            return Ok(Self {
                urn: None,
                attr: (*urn).to_owned(),
                sub: None,
            });
        }
        let (urn, rest) = if text.len() > 4 && text[..4].eq_ignore_ascii_case("urn:") {
            let (urn, rest) = text
                .rsplit_once(':')
                .ok_or_else(|| bad("no attribute after the schema URN"))?;
            (Some(urn), rest)
        } else {
            (None, text)
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((attr, sub)) => (attr, Some(sub)),
            None => (rest, None),
        };
        if !is_attr_name(attr) {
            return Err(bad("not an attribute name"));
        }
        if let Some(sub) = sub {
            if !is_attr_name(sub) {
                return Err(bad("not a sub-attribute name"));
            }
        }
        let urn = urn.filter(|urn| !is_core_schema(urn)).map(str::to_owned);
        Ok(Self {
            urn,
            attr: attr.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    /// The same path without its sub-attribute.
    pub fn parent(&self) -> Self {
        Self {
            sub: None,
            ..self.clone()
        }
    }

    /// The value the path names in `resource`, if any (`sub` looked up in a complex value;
    /// for a multi-valued attribute, use [`AttrPath::attr_value`] and look into each element).
    pub fn attr_value<'a>(&self, resource: &'a Value) -> Option<&'a Value> {
        let object = resource.as_object()?;
        match &self.urn {
            None => get_ci(object, &self.attr),
            Some(urn) => match get_ci(object, urn).and_then(Value::as_object) {
                Some(extension) => get_ci(extension, &self.attr),
                None => get_ci(object, &format!("{urn}:{}", self.attr)),
            },
        }
    }

    /// The object that holds the attribute, created on the way (the extension object for an
    /// extension attribute).
    pub fn container_mut<'a>(
        &self,
        resource: &'a mut Map<String, Value>,
    ) -> &'a mut Map<String, Value> {
        match &self.urn {
            None => resource,
            Some(urn) => {
                let key = key_ci(resource, urn).unwrap_or_else(|| urn.clone());
                let slot = resource
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                match slot {
                    Value::Object(map) => map,
                    _ => unreachable!("the slot was just made an object"),
                }
            }
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

fn is_core_schema(urn: &str) -> bool {
    urn.eq_ignore_ascii_case(USER_SCHEMA) || urn.eq_ignore_ascii_case(GROUP_SCHEMA)
}

/// RFC 7643 §2.1 ATTRNAME (`$ref` included, as members and groups carry it).
pub fn is_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some('$') => name == "$ref",
        Some(first) if first.is_ascii_alphabetic() => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        _ => false,
    }
}

/// A key of `object` equal to `name` ignoring ASCII case.
pub fn key_ci(object: &Map<String, Value>, name: &str) -> Option<String> {
    if object.contains_key(name) {
        return Some(name.to_owned());
    }
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}

pub fn get_ci<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::scim_protocol::ENTERPRISE_USER_SCHEMA;

    #[test]
    fn paths_split_into_urn_attribute_and_sub_attribute() {
        let path = AttrPath::parse("name.givenName").unwrap();
        assert_eq!(
            (path.urn, path.attr.as_str(), path.sub.as_deref()),
            (None, "name", Some("givenName"))
        );
        let path = AttrPath::parse(&format!("{ENTERPRISE_USER_SCHEMA}:manager.value")).unwrap();
        assert_eq!(path.urn.as_deref(), Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!(
            (path.attr.as_str(), path.sub.as_deref()),
            ("manager", Some("value"))
        );
        // The core schema's URN names top-level attributes.
        let path = AttrPath::parse(&format!("{USER_SCHEMA}:userName")).unwrap();
        assert_eq!((path.urn, path.attr.as_str()), (None, "userName"));
        // The extension's URN alone names its object, not an attribute "User" of a schema
        // "urn:…:enterprise:2.0".
        let path = AttrPath::parse(&ENTERPRISE_USER_SCHEMA.to_lowercase()).unwrap();
        assert_eq!(
            (path.urn, path.attr.as_str(), path.sub),
            (None, ENTERPRISE_USER_SCHEMA, None)
        );
        for bad in ["", "1abc", "name.", "na me", "urn:x:", "a.b.c"] {
            assert!(AttrPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_found_case_insensitively_nested_or_flat() {
        let user = json!({
            "UserName": "ada",
            ENTERPRISE_USER_SCHEMA: {"employeeNumber": "E-1"},
            "urn:example:flat:1.0:User:badge": "B-7",
        });
        assert_eq!(
            AttrPath::parse("username").unwrap().attr_value(&user),
            Some(&json!("ada"))
        );
        let enterprise = format!("{}:EMPLOYEENUMBER", ENTERPRISE_USER_SCHEMA.to_lowercase());
        assert_eq!(
            AttrPath::parse(&enterprise).unwrap().attr_value(&user),
            Some(&json!("E-1"))
        );
        let flat = AttrPath::parse("urn:example:flat:1.0:User:badge").unwrap();
        assert_eq!(flat.attr_value(&user), Some(&json!("B-7")));
    }
}
