//! Google Directory JSON → the normalized model: users, groups and direct members. Pure: no
//! I/O, so captured API responses can be turned into model objects in unit tests.
//!
//! Volatile fields are removed from `raw_attributes` so that a sync where no admin changed
//! anything emits nothing. "Volatile" means it changes without an admin changing the person or
//! group:
//! - everywhere (any depth, except inside `customSchemas`, whose field names are the
//!   customer's): `etag`;
//! - users: `kind` (constant), `lastLoginTime`, `thumbnailPhotoEtag`, `thumbnailPhotoUrl` (the
//!   photo is the user's own and its URL rotates), `agreedToTerms` and `isEnrolledIn2Sv` (set by
//!   the user signing in), `isEnforcedIn2Sv` (follows org-unit policy, so one policy change
//!   would update every user), `isMailboxSetup` (flips asynchronously after creation);
//! - groups: `kind`, `directMembersCount` (membership events already report it).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use crate::model::{Email, Group, Id, RawAttributes, User, UserState};
use crate::source::{FetchedUser, MemberRef, OtherMember};

/// Top-level user fields that never reach `raw_attributes`.
pub const VOLATILE_USER_FIELDS: &[&str] = &[
    "kind",
    "etag",
    "lastLoginTime",
    "thumbnailPhotoEtag",
    "thumbnailPhotoUrl",
    "agreedToTerms",
    "isEnrolledIn2Sv",
    "isEnforcedIn2Sv",
    "isMailboxSetup",
];

/// Top-level group fields that never reach `raw_attributes`.
pub const VOLATILE_GROUP_FIELDS: &[&str] = &["kind", "etag", "directMembersCount"];

/// Why an item of a list page could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ItemError(pub String);

fn string_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

/// `""` and absent are the same thing: no value.
fn non_empty(text: Option<&str>) -> Option<String> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn strip_etags(value: &mut Value) {
    match value {
        Value::Object(object) => {
            object.remove("etag");
            for (key, child) in object.iter_mut() {
                if key != "customSchemas" {
                    strip_etags(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_etags),
        _ => {}
    }
}

fn raw_without(mut object: Map<String, Value>, volatile: &[&str]) -> RawAttributes {
    for key in volatile {
        object.remove(*key);
    }
    let mut value = Value::Object(object);
    strip_etags(&mut value);
    RawAttributes::from_value(&value)
}

fn lowercase_list(object: &Map<String, Value>, key: &str) -> Vec<String> {
    object
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_lowercase)
        .collect()
}

/// One `users[]` item of `users.list`.
pub fn user(value: Value) -> Result<FetchedUser, ItemError> {
    let Value::Object(object) = value else {
        return Err(ItemError("a user that is not a JSON object".into()));
    };
    let id = non_empty(string_field(&object, "id"))
        .ok_or_else(|| ItemError("a user without an `id`".into()))?;
    let email = non_empty(string_field(&object, "primaryEmail"))
        .map(|e| e.to_lowercase())
        .ok_or_else(|| ItemError(format!("user {id} has no `primaryEmail`")))?;
    let name = object.get("name").and_then(Value::as_object);
    let name_field = |key: &str| name.and_then(|n| non_empty(string_field(n, key)));
    let first_name = name_field("givenName");
    let last_name = name_field("familyName");
    let display_name = name_field("displayName").or_else(|| name_field("fullName"));

    let mut emails = vec![Email {
        value: email.clone(),
        primary: true,
    }];
    for entry in object
        .get("emails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(address) = entry
            .get("address")
            .and_then(Value::as_str)
            .map(|a| a.trim().to_lowercase())
            .filter(|a| !a.is_empty())
        else {
            continue;
        };
        if !emails.iter().any(|known| known.value == address) {
            emails.push(Email {
                value: address,
                primary: false,
            });
        }
    }

    let flag = |key: &str| object.get(key).and_then(Value::as_bool).unwrap_or(false);
    let state = if flag("suspended") || flag("archived") {
        UserState::Inactive
    } else {
        UserState::Active
    };
    let org_unit_path = non_empty(string_field(&object, "orgUnitPath"));
    let mut aliases = lowercase_list(&object, "aliases");
    aliases.extend(lowercase_list(&object, "nonEditableAliases"));

    let raw_attributes = raw_without(object, VOLATILE_USER_FIELDS);
    Ok(FetchedUser {
        user: User {
            id: Id::from(id),
            username: email.clone(),
            email,
            first_name,
            last_name,
            display_name,
            emails,
            state,
            roles: Vec::new(),
            custom_attributes: Default::default(),
            raw_attributes,
        },
        org_unit_path,
        aliases,
    })
}

/// One `groups[]` item of `groups.list`.
pub fn group(value: Value) -> Result<Group, ItemError> {
    let Value::Object(object) = value else {
        return Err(ItemError("a group that is not a JSON object".into()));
    };
    let id = non_empty(string_field(&object, "id"))
        .ok_or_else(|| ItemError("a group without an `id`".into()))?;
    let email = non_empty(string_field(&object, "email")).map(|e| e.to_lowercase());
    let name = non_empty(string_field(&object, "name"))
        .or_else(|| email.clone())
        .unwrap_or_else(|| id.clone());
    let description = non_empty(string_field(&object, "description"));
    Ok(Group {
        id: Id::from(id),
        email,
        name,
        description,
        raw_attributes: raw_without(object, VOLATILE_GROUP_FIELDS),
    })
}

/// One `members[]` item of `members.list`. `users` and `groups` are the ids of the fetched
/// directory: a `USER` member that is not one of them (an external account, or a user left out
/// by an org-unit push-down) is `Other`, never a membership.
pub fn member(
    value: &Value,
    users: &HashSet<Id>,
    groups: &HashSet<Id>,
    unknown_user_kind: &str,
) -> MemberRef {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty());
    let email = value
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(str::to_lowercase);
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN");
    let other = |kind: &str| {
        MemberRef::Other(Box::new(OtherMember {
            kind: kind.to_owned(),
            id: id.map(str::to_owned),
            email: email.clone(),
        }))
    };
    match (kind, id) {
        ("USER", Some(id)) => match users.get(id) {
            Some(known) => MemberRef::User(known.clone()),
            None => other(unknown_user_kind),
        },
        ("GROUP", Some(id)) => match groups.get(id) {
            Some(known) => MemberRef::Group(known.clone()),
            None => other("GROUP"),
        },
        (kind, _) => other(kind),
    }
}

/// Every user member id seen while listing members, once: its shared `Id` (so a million
/// memberships hold pointers, not strings) and its email, for members that turn out not to be
/// users of the directory. Shared by the member-listing tasks.
pub type MemberEmails = std::sync::Mutex<HashMap<Box<str>, (Id, Option<String>)>>;

/// A member listed before `users.list` has finished: a `USER` member is provisionally
/// `MemberRef::User` with its Google id, its email kept in `emails`;
/// `settle_user_members` decides once the users are known.
pub fn member_before_users(value: &Value, groups: &HashSet<Id>, seen: &MemberEmails) -> MemberRef {
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty());
    match (value.get("type").and_then(Value::as_str), id) {
        (Some("USER"), Some(id)) => {
            let mut seen = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((shared, _)) = seen.get(id) {
                return MemberRef::User(shared.clone());
            }
            let email = value
                .get("email")
                .and_then(Value::as_str)
                .filter(|e| !e.is_empty())
                .map(str::to_lowercase);
            let shared = Id::from(id);
            seen.insert(id.into(), (shared.clone(), email));
            MemberRef::User(shared)
        }
        _ => member(value, &HashSet::new(), groups, "EXTERNAL"),
    }
}

/// Turns provisional user members into users of the directory (sharing the users' ids) or,
/// when the directory has no such user, into `Other` members of `unknown_user_kind`.
pub fn settle_user_members(
    members: &mut [MemberRef],
    users: &HashSet<Id>,
    seen: &HashMap<Box<str>, (Id, Option<String>)>,
    unknown_user_kind: &str,
) {
    for member in members {
        if let MemberRef::User(id) = member {
            *member = match users.get(id) {
                Some(known) => MemberRef::User(known.clone()),
                None => MemberRef::Other(Box::new(OtherMember {
                    kind: unknown_user_kind.to_owned(),
                    id: Some(id.to_string()),
                    email: seen.get(&**id).and_then(|(_, email)| email.clone()),
                })),
            };
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// users.list page 1 from google-directory-api.md §2.6.
    const USERS_PAGE: &str = r#"{
      "kind": "admin#directory#users",
      "etag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/Lq8xTqjvN1n7oYwqkz3oGv4A0ZQ\"",
      "users": [
        {
          "kind": "admin#directory#user",
          "id": "103874021357762894512",
          "etag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/c2Ic9W1yXn8dQKcVj0m2r2N7Q9E\"",
          "primaryEmail": "alice@example.com",
          "name": { "givenName": "Alice", "familyName": "Anders", "fullName": "Alice Anders" },
          "isAdmin": true,
          "isDelegatedAdmin": false,
          "lastLoginTime": "2026-11-27T08:14:03.000Z",
          "creationTime": "2019-03-04T10:22:51.000Z",
          "agreedToTerms": true,
          "suspended": false,
          "archived": false,
          "changePasswordAtNextLogin": false,
          "ipWhitelisted": false,
          "emails": [
            { "address": "alice@example.com", "primary": true },
            { "address": "a.anders@example.com" },
            { "address": "alice@example.com.test-google-a.com" }
          ],
          "aliases": ["a.anders@example.com"],
          "nonEditableAliases": ["alice@example.com.test-google-a.com"],
          "organizations": [
            { "title": "Staff Engineer", "primary": true, "customType": "", "department": "Platform", "costCenter": "CC-42" }
          ],
          "relations": [ { "value": "bob@example.com", "type": "manager" } ],
          "externalIds": [ { "value": "E-00017", "type": "organization" } ],
          "phones": [ { "value": "+16505550101", "type": "work" } ],
          "customSchemas": {
            "HR": { "employeeNumber": "00017", "startDate": "2019-03-04", "projects": [ { "value": "atlas" }, { "value": "zephyr" } ] }
          },
          "customerId": "C03az79cb",
          "orgUnitPath": "/Engineering/Platform",
          "isMailboxSetup": true,
          "isEnrolledIn2Sv": true,
          "isEnforcedIn2Sv": true,
          "includeInGlobalAddressList": true,
          "thumbnailPhotoUrl": "https://lh3.googleusercontent.com/a-/ALV-UjXexample=s96-c",
          "thumbnailPhotoEtag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/9a1s4zE0l6ZtA6jQ0uS5x8bJf4U\""
        },
        {
          "kind": "admin#directory#user",
          "id": "112507770188715252026",
          "etag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/0Wm3mYv2Jdt9ZpQ6m3Ck5xK3nUg\"",
          "primaryEmail": "Carol@Example.com",
          "name": { "givenName": "Carol", "familyName": "Chen", "fullName": "Carol Chen" },
          "isAdmin": false,
          "isDelegatedAdmin": false,
          "lastLoginTime": "1970-01-01T00:00:00.000Z",
          "creationTime": "2026-11-20T20:48:53.000Z",
          "agreedToTerms": false,
          "suspended": true,
          "suspensionReason": "ADMIN",
          "archived": false,
          "changePasswordAtNextLogin": true,
          "ipWhitelisted": false,
          "emails": [ { "address": "carol@example.com", "primary": true } ],
          "customerId": "C03az79cb",
          "orgUnitPath": "/",
          "isMailboxSetup": false,
          "isEnrolledIn2Sv": false,
          "isEnforcedIn2Sv": false,
          "includeInGlobalAddressList": true
        }
      ],
      "nextPageToken": "Q0pZQ0NtTmhjbTlzUUdWNFlXMXdiR1V1WTI5dEVnd0lBUkFCR0FFZ0FTZ0I"
    }"#;

    const GROUPS_PAGE: &str = r#"{
      "kind": "admin#directory#groups",
      "etag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/tRq1vS2n3K5z6W7Y8x9A0b1C2d3\"",
      "groups": [
        {
          "kind": "admin#directory#group",
          "id": "01x0gk373c9z46j",
          "etag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/aB3cD4eF5gH6iJ7kL8mN9oP0qR1\"",
          "email": "eng@example.com",
          "name": "Engineering",
          "directMembersCount": "3",
          "description": "All engineers",
          "adminCreated": true,
          "aliases": ["engineering@example.com"],
          "nonEditableAliases": ["eng@example.com.test-google-a.com"]
        },
        {
          "kind": "admin#directory#group",
          "id": "03x8tuzt3eexmvz",
          "etag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/sT2uV3wX4yZ5aB6cD7eF8gH9iJ0\"",
          "email": "Platform@example.com",
          "name": "Platform team",
          "directMembersCount": "1",
          "description": "",
          "adminCreated": true,
          "nonEditableAliases": ["platform@example.com.test-google-a.com"]
        }
      ]
    }"#;

    const MEMBERS_PAGE: &str = r#"{
      "kind": "admin#directory#members",
      "etag": "\"nMfNm7bkp8xuKhqI0RrVasvT1Y1Vd3ZQ8ZfSW6vjqA8/kL1mN2oP3qR4sT5uV6wX7yZ8aB9\"",
      "members": [
        { "kind": "admin#directory#member", "etag": "\"nMfN.../m1\"", "id": "103874021357762894512",
          "email": "alice@example.com", "role": "OWNER", "type": "USER", "status": "ACTIVE" },
        { "kind": "admin#directory#member", "etag": "\"nMfN.../m2\"", "id": "03x8tuzt3eexmvz",
          "email": "platform@example.com", "role": "MEMBER", "type": "GROUP", "status": "ACTIVE" },
        { "kind": "admin#directory#member", "etag": "\"nMfN.../m3\"", "id": "109876543210987654321",
          "email": "partner@othercorp.com", "role": "MEMBER", "type": "USER" },
        { "kind": "admin#directory#member", "etag": "\"nMfN.../m4\"", "id": "C03az79cb",
          "role": "MEMBER", "type": "CUSTOMER" }
      ]
    }"#;

    fn items(page: &str, key: &str) -> Vec<Value> {
        let mut page: Value = serde_json::from_str(page).unwrap();
        page[key].take().as_array().unwrap().clone()
    }

    #[test]
    fn users_from_the_reference_page() {
        let users: Vec<FetchedUser> = items(USERS_PAGE, "users")
            .into_iter()
            .map(|u| user(u).unwrap())
            .collect();
        let alice = &users[0];
        assert_eq!(&*alice.user.id, "103874021357762894512");
        assert_eq!(alice.user.email, "alice@example.com");
        assert_eq!(alice.user.username, "alice@example.com");
        assert_eq!(alice.user.first_name.as_deref(), Some("Alice"));
        assert_eq!(alice.user.last_name.as_deref(), Some("Anders"));
        assert_eq!(alice.user.display_name.as_deref(), Some("Alice Anders"));
        assert_eq!(alice.user.state, UserState::Active);
        assert!(alice.user.roles.is_empty() && alice.user.custom_attributes.is_empty());
        let emails: Vec<(&str, bool)> = alice
            .user
            .emails
            .iter()
            .map(|e| (e.value.as_str(), e.primary))
            .collect();
        assert_eq!(
            emails,
            [
                ("alice@example.com", true),
                ("a.anders@example.com", false),
                ("alice@example.com.test-google-a.com", false)
            ]
        );
        assert_eq!(
            alice.org_unit_path.as_deref(),
            Some("/Engineering/Platform")
        );
        assert_eq!(
            alice.aliases,
            [
                "a.anders@example.com",
                "alice@example.com.test-google-a.com"
            ]
        );

        let raw = alice.user.raw_attributes.to_value();
        for gone in VOLATILE_USER_FIELDS {
            assert!(raw.get(gone).is_none(), "{gone} is volatile");
        }
        assert_eq!(raw["customSchemas"]["HR"]["employeeNumber"], "00017");
        assert_eq!(raw["organizations"][0]["costCenter"], "CC-42");
        assert_eq!(raw["primaryEmail"], "alice@example.com");
        assert_eq!(raw["isAdmin"], true);

        let carol = &users[1];
        assert_eq!(carol.user.email, "carol@example.com");
        assert_eq!(carol.user.state, UserState::Inactive);
        assert_eq!(carol.user.emails.len(), 1);
        assert!(carol.aliases.is_empty());
        assert_eq!(carol.org_unit_path.as_deref(), Some("/"));
    }

    #[test]
    fn volatile_changes_leave_raw_attributes_equal() {
        let before = items(USERS_PAGE, "users")[0].clone();
        let mut after = before.clone();
        after["etag"] = json!("\"new\"");
        after["lastLoginTime"] = json!("2026-12-01T00:00:00.000Z");
        after["thumbnailPhotoEtag"] = json!("\"photo2\"");
        after["thumbnailPhotoUrl"] = json!("https://lh3.googleusercontent.com/other");
        after["isEnrolledIn2Sv"] = json!(false);
        after["organizations"][0]["etag"] = json!("\"nested\"");
        assert_eq!(
            user(before.clone()).unwrap().user,
            user(after).unwrap().user
        );

        let mut renamed = before.clone();
        renamed["name"]["familyName"] = json!("Andersson");
        assert_ne!(user(before).unwrap().user, user(renamed).unwrap().user);
    }

    #[test]
    fn archived_users_are_inactive_and_display_name_wins() {
        let fetched = user(json!({
            "id": "1", "primaryEmail": "x@example.com", "archived": true,
            "name": {"givenName": "", "fullName": "Full", "displayName": "Shown"}
        }))
        .unwrap();
        assert_eq!(fetched.user.state, UserState::Inactive);
        assert_eq!(fetched.user.first_name, None);
        assert_eq!(fetched.user.display_name.as_deref(), Some("Shown"));
        assert_eq!(fetched.org_unit_path, None);
        assert_eq!(
            fetched.user.emails,
            [Email {
                value: "x@example.com".into(),
                primary: true
            }]
        );
    }

    #[test]
    fn unusable_users_are_errors_not_panics() {
        assert!(user(json!("text")).is_err());
        assert!(user(json!({"primaryEmail": "x@example.com"})).is_err());
        assert!(user(json!({"id": "1"})).is_err());
        assert!(group(json!({"email": "g@example.com"})).is_err());
    }

    #[test]
    fn groups_from_the_reference_page() {
        let groups: Vec<Group> = items(GROUPS_PAGE, "groups")
            .into_iter()
            .map(|g| group(g).unwrap())
            .collect();
        assert_eq!(&*groups[0].id, "01x0gk373c9z46j");
        assert_eq!(groups[0].email.as_deref(), Some("eng@example.com"));
        assert_eq!(groups[0].name, "Engineering");
        assert_eq!(groups[0].description.as_deref(), Some("All engineers"));
        let raw = groups[0].raw_attributes.to_value();
        for gone in VOLATILE_GROUP_FIELDS {
            assert!(raw.get(gone).is_none(), "{gone} is volatile");
        }
        assert_eq!(raw["aliases"][0], "engineering@example.com");
        assert_eq!(groups[1].email.as_deref(), Some("platform@example.com"));
        assert_eq!(groups[1].description, None, "\"\" is no description");
    }

    #[test]
    fn members_from_the_reference_page() {
        let users: HashSet<Id> = [Id::from("103874021357762894512")].into();
        let groups: HashSet<Id> = [Id::from("03x8tuzt3eexmvz")].into();
        let members: Vec<MemberRef> = items(MEMBERS_PAGE, "members")
            .iter()
            .map(|m| member(m, &users, &groups, "EXTERNAL"))
            .collect();
        assert_eq!(
            members,
            [
                MemberRef::User("103874021357762894512".into()),
                MemberRef::Group("03x8tuzt3eexmvz".into()),
                MemberRef::Other(Box::new(OtherMember {
                    kind: "EXTERNAL".into(),
                    id: Some("109876543210987654321".into()),
                    email: Some("partner@othercorp.com".into()),
                })),
                MemberRef::Other(Box::new(OtherMember {
                    kind: "CUSTOMER".into(),
                    id: Some("C03az79cb".into()),
                    email: None,
                })),
            ]
        );
        // A group member that is not a fetched group (another domain's, or gone) is no nesting.
        assert_eq!(
            member(
                &json!({"type": "GROUP", "id": "elsewhere"}),
                &users,
                &HashSet::new(),
                "EXTERNAL"
            ),
            MemberRef::Other(Box::new(OtherMember {
                kind: "GROUP".into(),
                id: Some("elsewhere".into()),
                email: None
            }))
        );
        assert!(matches!(
            member(&json!({}), &users, &groups, "EXTERNAL"),
            MemberRef::Other(_)
        ));
    }

    #[test]
    fn members_listed_before_the_users_are_settled_once_they_are_known() {
        let groups: HashSet<Id> = [Id::from("g1")].into_iter().collect();
        let seen = MemberEmails::default();
        let listed = [
            serde_json::json!({"type": "USER", "id": "u1", "email": "A@example.com"}),
            serde_json::json!({"type": "USER", "id": "x9", "email": "Friend@Other.example"}),
            serde_json::json!({"type": "GROUP", "id": "g1", "email": "team@example.com"}),
            serde_json::json!({"type": "CUSTOMER", "id": "C01"}),
        ];
        let mut members: Vec<MemberRef> = listed
            .iter()
            .map(|m| member_before_users(m, &groups, &seen))
            .collect();
        let users: HashSet<Id> = [Id::from("u1")].into_iter().collect();
        settle_user_members(
            &mut members,
            &users,
            &seen.into_inner().unwrap(),
            "EXTERNAL",
        );
        assert_eq!(members[0], MemberRef::User(Id::from("u1")));
        assert!(std::sync::Arc::ptr_eq(
            match &members[0] {
                MemberRef::User(id) => id,
                _ => unreachable!(),
            },
            users.get("u1").unwrap()
        ));
        assert_eq!(
            members[1],
            MemberRef::Other(Box::new(OtherMember {
                kind: "EXTERNAL".into(),
                id: Some("x9".into()),
                email: Some("friend@other.example".into())
            }))
        );
        assert_eq!(members[2], MemberRef::Group(Id::from("g1")));
        assert!(matches!(&members[3], MemberRef::Other(other) if other.kind == "CUSTOMER"));
    }
}
