//! Turns SCIM resources (RFC 7643 User and Group, as real servers send them) into dirsync's
//! normalized objects, and group `members` into `MemberRef`s. Pure: no I/O.
//!
//! Tolerated here: attribute names in any case (RFC 7643 §2.1 makes them case-insensitive),
//! booleans sent as strings ("True"/"False"), a missing `active` (= active), members without
//! `type`/`$ref`/`display`, members named only by `$ref`, dangling member ids, `members: null`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::model::{Email, Group, Id, RawAttributes, User, UserState};
use crate::source::{FetchedUser, MemberRef, OtherMember};

/// Why one resource could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadResource(pub String);

/// Looks an attribute up by name, case-insensitively (an exact match wins).
pub fn get<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

fn get_str<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    get(object, name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// A SCIM boolean, also when sent as a string ("True", "false") or 0/1. `None`: absent or null.
pub fn as_bool(value: &Value) -> Result<Option<bool>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(flag) => Ok(Some(*flag)),
        Value::String(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            "" => Ok(None),
            _ => Err(format!("{text:?} is not a boolean")),
        },
        Value::Number(number) => match number.as_i64() {
            Some(1) => Ok(Some(true)),
            Some(0) => Ok(Some(false)),
            _ => Err(format!("{number} is not a boolean")),
        },
        other => Err(format!("{other} is not a boolean")),
    }
}

/// The resource's `id`, which every resource a server lists must have.
pub fn resource_id(resource: &Value) -> Option<&str> {
    resource
        .as_object()
        .and_then(|object| get_str(object, "id"))
}

/// Removes what changes without the directory changing, and sorts `schemas` (JumpCloud sends
/// them in varying order) so equal resources give equal raw text.
fn stripped(object: &Map<String, Value>, also: &[&str]) -> Value {
    let mut copy = Map::new();
    for (key, value) in object {
        let drop = key.eq_ignore_ascii_case("meta")
            // Never store a secret some servers echo back.
            || key.eq_ignore_ascii_case("password")
            || also.iter().any(|name| key.eq_ignore_ascii_case(name));
        if drop {
            continue;
        }
        let value = if key.eq_ignore_ascii_case("schemas") {
            match value {
                Value::Array(items) => {
                    let mut items = items.clone();
                    items.sort_by_key(|item| item.to_string());
                    Value::Array(items)
                }
                other => other.clone(),
            }
        } else {
            value.clone()
        };
        copy.insert(key.clone(), value);
    }
    Value::Object(copy)
}

/// One entry of a multi-valued attribute such as `emails`.
struct Entry<'a> {
    value: &'a str,
    kind: Option<&'a str>,
    primary: bool,
}

fn entries<'a>(object: &'a Map<String, Value>, name: &str) -> Vec<Entry<'a>> {
    let Some(Value::Array(items)) = get(object, name) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|item| {
            Some(Entry {
                value: get_str(item, "value")?,
                kind: get_str(item, "type"),
                primary: get(item, "primary")
                    .and_then(|flag| as_bool(flag).ok().flatten())
                    .unwrap_or(false),
            })
        })
        .collect()
}

/// The primary entry, else the one of type `work`, else the first.
fn preferred<'a>(entries: &'a [Entry<'a>]) -> Option<&'a Entry<'a>> {
    entries
        .iter()
        .find(|entry| entry.primary)
        .or_else(|| {
            entries.iter().find(|entry| {
                entry
                    .kind
                    .is_some_and(|kind| kind.eq_ignore_ascii_case("work"))
            })
        })
        .or_else(|| entries.first())
}

/// `emails` the way the Google source shapes them, so one person gives one list whichever
/// IdP sent it: the preferred address (the user's `email`) first and the only one flagged
/// primary, then the others in server order, lower-case, each once. IdPs differ in the order
/// they list addresses and in whether they flag one primary at all.
fn normalized_emails(entries: &[Entry<'_>]) -> Vec<Email> {
    let mut emails: Vec<Email> = preferred(entries)
        .map(|entry| Email {
            value: entry.value.to_lowercase(),
            primary: true,
        })
        .into_iter()
        .collect();
    for entry in entries {
        let value = entry.value.to_lowercase();
        if !emails.iter().any(|known| known.value == value) {
            emails.push(Email {
                value,
                primary: false,
            });
        }
    }
    emails
}

pub fn user(resource: &Value) -> Result<FetchedUser, BadResource> {
    let object = resource
        .as_object()
        .ok_or_else(|| BadResource(format!("a User is not a JSON object: {resource}")))?;
    let id = get_str(object, "id").ok_or_else(|| BadResource("a User has no `id`".to_owned()))?;
    let emails = entries(object, "emails");
    let user_name = get_str(object, "userName");
    let email = preferred(&emails)
        .map(|entry| entry.value.to_lowercase())
        // A user without emails: its userName when that is an address.
        .or_else(|| {
            user_name
                .filter(|name| name.contains('@'))
                .map(str::to_lowercase)
        })
        .unwrap_or_default();
    let username = user_name
        .map(str::to_owned)
        .or_else(|| (!email.is_empty()).then(|| email.clone()))
        .ok_or_else(|| BadResource(format!("User {id} has neither `userName` nor an email")))?;
    let state = match get(object, "active").map(as_bool).transpose() {
        Ok(Some(Some(false))) => UserState::Inactive,
        Ok(_) => UserState::Active,
        Err(message) => return Err(BadResource(format!("User {id}: `active`: {message}"))),
    };
    let name = get(object, "name").and_then(Value::as_object);
    let name_part = |part: &str| name.and_then(|name| get_str(name, part)).map(str::to_owned);
    let first_name = name_part("givenName");
    let last_name = name_part("familyName");
    // Google always has a full name ("given family"); an IdP that sends only the name parts
    // means the same person, so the same display name.
    let display_name = get_str(object, "displayName")
        .map(str::to_owned)
        .or_else(|| name_part("formatted"))
        .or_else(|| {
            let joined = [first_name.as_deref(), last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            (!joined.is_empty()).then_some(joined)
        });
    let user = User {
        id: Id::from(id),
        first_name,
        last_name,
        display_name,
        emails: normalized_emails(&emails),
        email,
        username,
        state,
        roles: Vec::new(),
        custom_attributes: Default::default(),
        // `groups` is derived from memberships, which membership events already report.
        raw_attributes: RawAttributes::from_value(&stripped(object, &["groups"])),
    };
    Ok(FetchedUser {
        user,
        org_unit_path: None,
        aliases: Vec::new(),
    })
}

pub fn group(resource: &Value) -> Result<Group, BadResource> {
    let object = resource
        .as_object()
        .ok_or_else(|| BadResource(format!("a Group is not a JSON object: {resource}")))?;
    let id = get_str(object, "id").ok_or_else(|| BadResource("a Group has no `id`".to_owned()))?;
    let emails = entries(object, "emails");
    Ok(Group {
        id: Id::from(id),
        // Core SCIM groups have no email; some IdPs add `emails` to groups anyway.
        email: preferred(&emails).map(|entry| entry.value.to_lowercase()),
        name: get_str(object, "displayName").unwrap_or(id).to_owned(),
        description: get_str(object, "description").map(str::to_owned),
        raw_attributes: RawAttributes::from_value(&stripped(object, &["members"])),
    })
}

/// A member as the server described it, before knowing what the directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMember {
    pub id: String,
    /// `type`, or the kind `$ref` points at (`Users`/`Groups`).
    pub kind: Option<String>,
    pub display: Option<String>,
}

/// Whether the resource carries a `members` attribute at all (`null` counts: it says "none").
pub fn has_members(resource: &Value) -> bool {
    resource
        .as_object()
        .is_some_and(|object| get(object, "members").is_some())
}

pub fn members(resource: &Value) -> Vec<RawMember> {
    let Some(Value::Array(items)) = resource
        .as_object()
        .and_then(|object| get(object, "members"))
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|item| {
            let reference = get_str(item, "$ref");
            let from_ref = reference.and_then(|reference| {
                let mut segments = reference.trim_end_matches('/').rsplit('/');
                let id = segments.next()?;
                let kind = segments.next()?;
                Some((id, kind))
            });
            let id = get_str(item, "value").or(from_ref.map(|(id, _)| id))?;
            let kind = get_str(item, "type").or_else(|| {
                from_ref.and_then(|(_, kind)| match kind.to_ascii_lowercase().as_str() {
                    "users" => Some("User"),
                    "groups" => Some("Group"),
                    _ => None,
                })
            });
            Some(RawMember {
                id: id.to_owned(),
                kind: kind.map(str::to_owned),
                display: get_str(item, "display").map(str::to_owned),
            })
        })
        .collect()
}

/// Resolves members against the fetched directory: a known user or group id becomes a
/// `MemberRef::User`/`Group`; anything else (a dangling id, another resource type) `Other`.
pub fn resolve(
    members: &[RawMember],
    users: &BTreeSet<Id>,
    groups: &BTreeSet<Id>,
) -> Vec<MemberRef> {
    let mut seen = BTreeSet::new();
    let mut resolved = Vec::new();
    for member in members {
        let kind = member.kind.as_deref().map(str::to_ascii_lowercase);
        if !seen.insert((kind.clone(), member.id.clone())) {
            continue;
        }
        let user = users.get(member.id.as_str());
        let group = groups.get(member.id.as_str());
        let reference = match (kind.as_deref(), user, group) {
            (Some("user") | None, Some(id), _) => MemberRef::User(id.clone()),
            (Some("group") | None, _, Some(id)) => MemberRef::Group(id.clone()),
            (kind, _, _) => MemberRef::Other(Box::new(OtherMember {
                kind: kind.unwrap_or("unknown").to_owned(),
                id: Some(member.id.clone()),
                email: member
                    .display
                    .clone()
                    .filter(|display| display.contains('@')),
            })),
        };
        resolved.push(reference);
    }
    resolved
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alice() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                        "urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "u1", "externalId": "ext-alice",
            "meta": {"resourceType": "User", "version": "W/\"3\"", "lastModified": "2026-11-28T14:44:25Z"},
            "userName": "alice@example.com",
            "name": {"formatted": "Alice Test", "familyName": "Test", "givenName": "Alice"},
            "displayName": "Alice Test", "active": true,
            "emails": [{"value": "Alice.Home@Example.net", "type": "home"},
                       {"value": "Alice@Example.com", "type": "work", "primary": true}],
            "groups": [{"value": "g1"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "E-1"}
        })
    }

    #[test]
    fn user_is_normalized() {
        let fetched = user(&alice()).unwrap();
        let user = fetched.user;
        assert_eq!(&*user.id, "u1");
        assert_eq!(user.email, "alice@example.com");
        assert_eq!(user.username, "alice@example.com");
        assert_eq!(user.first_name.as_deref(), Some("Alice"));
        assert_eq!(user.last_name.as_deref(), Some("Test"));
        assert_eq!(user.display_name.as_deref(), Some("Alice Test"));
        assert_eq!(user.state, UserState::Active);
        assert_eq!(
            user.emails,
            vec![
                Email {
                    value: "alice@example.com".into(),
                    primary: true
                },
                Email {
                    value: "alice.home@example.net".into(),
                    primary: false
                },
            ]
        );
        let raw = user.raw_attributes.to_value();
        assert!(raw.get("meta").is_none());
        assert!(raw.get("groups").is_none());
        assert_eq!(
            raw["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["employeeNumber"],
            "E-1"
        );
        assert_eq!(
            raw["schemas"][0],
            "urn:ietf:params:scim:schemas:core:2.0:User"
        );
    }

    #[test]
    fn volatile_fields_and_schema_order_do_not_change_raw_attributes() {
        let mut other = alice();
        other["meta"]["version"] = json!("W/\"9\"");
        other["schemas"] = json!([
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ]);
        assert_eq!(user(&alice()).unwrap().user, user(&other).unwrap().user);
    }

    #[test]
    fn email_falls_back_to_work_then_first_then_user_name() {
        let mut resource = alice();
        resource["emails"] = json!([{"value": "x@home.example", "type": "home"}, {"value": "W@Work.example", "type": "work"}]);
        assert_eq!(user(&resource).unwrap().user.email, "w@work.example");
        resource["emails"] = json!([{"value": "First@a.example"}, {"value": "second@a.example"}]);
        assert_eq!(user(&resource).unwrap().user.email, "first@a.example");
        resource.as_object_mut().unwrap().remove("emails");
        resource["userName"] = json!("Alice@Example.COM");
        let fetched = user(&resource).unwrap().user;
        assert_eq!(fetched.email, "alice@example.com");
        assert_eq!(fetched.username, "Alice@Example.COM");
        assert!(fetched.emails.is_empty());
    }

    #[test]
    fn active_accepts_strings_and_defaults_to_active() {
        let mut resource = alice();
        for (value, state) in [
            (json!("False"), UserState::Inactive),
            (json!("True"), UserState::Active),
            (json!(false), UserState::Inactive),
            (Value::Null, UserState::Active),
        ] {
            resource["active"] = value;
            assert_eq!(user(&resource).unwrap().user.state, state);
        }
        resource.as_object_mut().unwrap().remove("active");
        assert_eq!(user(&resource).unwrap().user.state, UserState::Active);
        resource["active"] = json!("maybe");
        let err = user(&resource).unwrap_err();
        assert!(err.0.contains("u1") && err.0.contains("active"), "{err:?}");
    }

    #[test]
    fn attribute_names_are_case_insensitive_and_primary_may_be_a_string() {
        let resource = json!({
            "ID": "u2", "UserName": "bob", "Active": "false",
            "Name": {"GivenName": "Bob"}, "Emails": [{"Value": "B@x.example", "Primary": "True"}]
        });
        let fetched = user(&resource).unwrap().user;
        assert_eq!(&*fetched.id, "u2");
        assert_eq!(fetched.username, "bob");
        assert_eq!(fetched.state, UserState::Inactive);
        assert_eq!(fetched.first_name.as_deref(), Some("Bob"));
        assert_eq!(fetched.email, "b@x.example");
        assert_eq!(fetched.display_name.as_deref(), Some("Bob"));
    }

    #[test]
    fn display_name_falls_back_to_formatted_name_then_the_name_parts() {
        let mut resource = alice();
        resource.as_object_mut().unwrap().remove("displayName");
        resource["name"]["formatted"] = json!("Dr. Alice Test");
        assert_eq!(
            user(&resource).unwrap().user.display_name.as_deref(),
            Some("Dr. Alice Test")
        );
        resource["name"]
            .as_object_mut()
            .unwrap()
            .remove("formatted");
        assert_eq!(
            user(&resource).unwrap().user.display_name.as_deref(),
            Some("Alice Test")
        );
        resource.as_object_mut().unwrap().remove("name");
        assert_eq!(user(&resource).unwrap().user.display_name, None);
    }

    #[test]
    fn emails_put_the_preferred_address_first_as_the_only_primary() {
        let mut resource = alice();
        // No primary flag: the work address is the user's email, and flagged primary.
        resource["emails"] = json!([
            {"value": "alias@example.com", "type": "other"},
            {"value": "Work@Example.com", "type": "work"},
            {"value": "ALIAS@example.com", "type": "home"}
        ]);
        let fetched = user(&resource).unwrap().user;
        assert_eq!(fetched.email, "work@example.com");
        let emails: Vec<(&str, bool)> = fetched
            .emails
            .iter()
            .map(|e| (e.value.as_str(), e.primary))
            .collect();
        assert_eq!(
            emails,
            [("work@example.com", true), ("alias@example.com", false)]
        );
        // Two flagged primary: the first wins, the other is a secondary address.
        resource["emails"] = json!([
            {"value": "b@example.com", "primary": true},
            {"value": "a@example.com", "primary": true}
        ]);
        let emails = user(&resource).unwrap().user.emails;
        assert_eq!(
            emails,
            vec![
                Email {
                    value: "b@example.com".into(),
                    primary: true
                },
                Email {
                    value: "a@example.com".into(),
                    primary: false
                }
            ]
        );
    }

    #[test]
    fn a_user_without_id_or_name_is_refused() {
        assert!(user(&json!({"userName": "x"})).is_err());
        assert!(user(&json!({"id": "u3"})).is_err());
    }

    #[test]
    fn group_is_normalized_without_members_and_meta() {
        let resource = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": "g1",
            "displayName": "engineering", "meta": {"version": "W/\"6\""},
            "members": [{"value": "u1"}]
        });
        let normalized = group(&resource).unwrap();
        assert_eq!(&*normalized.id, "g1");
        assert_eq!(normalized.name, "engineering");
        assert_eq!(normalized.email, None);
        assert_eq!(normalized.description, None);
        assert_eq!(
            normalized.raw_attributes.as_str(),
            r#"{"displayName":"engineering","id":"g1","schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"]}"#
        );
        let with_email = json!({"id": "g2", "displayName": "x", "emails": [{"value": "Team@X.example"}], "description": "d"});
        let normalized = group(&with_email).unwrap();
        assert_eq!(normalized.email.as_deref(), Some("team@x.example"));
        assert_eq!(normalized.description.as_deref(), Some("d"));
    }

    #[test]
    fn members_resolve_against_the_directory() {
        let resource = json!({"id": "g1", "members": [
            {"value": "u1"}, {"value": "u1"}, {"value": "u2", "type": "User", "display": "b@x"},
            {"value": "g2", "type": "Group"}, {"value": "g3"},
            {"$ref": "https://idp.example/scim/v2/Users/u3"},
            {"value": "gone", "display": "gone@x.example"},
            {"value": "sp1", "type": "ServicePrincipal"},
            {"display": "no id"}
        ]});
        assert!(has_members(&resource));
        let users: BTreeSet<Id> = ["u1", "u2", "u3"].into_iter().map(Id::from).collect();
        let groups: BTreeSet<Id> = ["g1", "g2", "g3"].into_iter().map(Id::from).collect();
        let resolved = resolve(&members(&resource), &users, &groups);
        assert_eq!(
            resolved,
            vec![
                MemberRef::User("u1".into()),
                MemberRef::User("u2".into()),
                MemberRef::Group("g2".into()),
                MemberRef::Group("g3".into()),
                MemberRef::User("u3".into()),
                MemberRef::Other(Box::new(OtherMember {
                    kind: "unknown".into(),
                    id: Some("gone".into()),
                    email: Some("gone@x.example".into())
                })),
                MemberRef::Other(Box::new(OtherMember {
                    kind: "serviceprincipal".into(),
                    id: Some("sp1".into()),
                    email: None
                })),
            ]
        );
        assert!(!has_members(&json!({"id": "g"})));
        assert!(has_members(&json!({"id": "g", "members": null})));
        assert!(members(&json!({"id": "g", "members": null})).is_empty());
    }

    #[test]
    fn a_member_typed_user_that_is_no_user_is_other() {
        let users = BTreeSet::new();
        let groups: BTreeSet<Id> = [Id::from("x")].into();
        let raw = vec![RawMember {
            id: "x".into(),
            kind: Some("User".into()),
            display: None,
        }];
        assert!(matches!(
            resolve(&raw, &users, &groups)[0],
            MemberRef::Other(_)
        ));
    }
}
