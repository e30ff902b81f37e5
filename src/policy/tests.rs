#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::config::{default_attributes, FiltersConfig, RolesConfig, UserScope};
use crate::glob::glob_matches;
use crate::model::{Email, Group, RawAttributes, User};
use crate::source::{Fetched, FetchedUser, MemberRef, OtherMember};

fn user(id: &str, org_unit: &str, active: bool) -> FetchedUser {
    let email = format!("{id}@example.com");
    FetchedUser {
        user: User {
            id: Id::from(id),
            email: email.clone(),
            username: email.clone(),
            first_name: None,
            last_name: None,
            display_name: None,
            emails: vec![Email {
                value: email,
                primary: true,
            }],
            state: if active {
                UserState::Active
            } else {
                UserState::Inactive
            },
            roles: Vec::new(),
            custom_attributes: Default::default(),
            raw_attributes: RawAttributes::from_value(&serde_json::json!({
                "externalIds": [{"type": "account", "value": "A-1"}, {"type": "organization", "value": format!("E-{id}")}],
                "customSchemas": {"HR": {"CostCenter": "CC-9"}},
                "organizations": [{"title": "Engineer", "primary": true}],
            })),
        },
        org_unit_path: Some(org_unit.to_owned()),
        aliases: Vec::new(),
    }
}

fn group(id: &str) -> Group {
    Group {
        id: Id::from(id),
        email: Some(format!("{id}@example.com")),
        name: id.to_uppercase(),
        description: None,
        raw_attributes: RawAttributes::empty(),
    }
}

fn fetched() -> Fetched {
    // eng contains alice and the group platform; platform contains bob and (cycle) eng.
    let members = BTreeMap::from([
        (
            Id::from("eng"),
            vec![
                MemberRef::User(Id::from("alice")),
                MemberRef::Group(Id::from("platform")),
            ],
        ),
        (
            Id::from("platform"),
            vec![
                MemberRef::User(Id::from("bob")),
                MemberRef::Group(Id::from("eng")),
                MemberRef::Other(Box::new(OtherMember {
                    kind: "EXTERNAL".into(),
                    id: Some("x".into()),
                    email: Some("x@other.example".into()),
                })),
            ],
        ),
        (Id::from("admins"), vec![MemberRef::User(Id::from("carol"))]),
    ]);
    Fetched {
        source: crate::event::SourceKind::Google,
        users: vec![
            user("alice", "/Engineering", true),
            user("bob", "/Engineering/Platform", true),
            user("carol", "/Sales", false),
            user("dave", "/", true),
        ],
        groups: vec![group("eng"), group("platform"), group("admins")],
        members,
    }
}

fn tenant(edit: impl FnOnce(&mut TenantConfig)) -> TenantConfig {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dirsync.toml");
    let mut tenant = crate::config::load_strict(&dir)
        .unwrap()
        .tenants
        .remove("acme")
        .unwrap();
    tenant.filters = FiltersConfig::default();
    tenant.roles = RolesConfig::default();
    tenant.attributes = default_attributes(Some(crate::event::SourceKind::Google));
    edit(&mut tenant);
    tenant
}

fn ids<'a>(it: impl IntoIterator<Item = &'a Id>) -> Vec<&'a str> {
    it.into_iter().map(|id| &**id).collect()
}

#[test]
fn nested_groups_are_flattened_through_cycles_and_externals_are_ignored() {
    let applied = apply(fetched(), &tenant(|_| {}));
    let members = &applied.snapshot.members;
    assert_eq!(ids(&members[&Id::from("eng")]), ["alice", "bob"]);
    assert_eq!(ids(&members[&Id::from("platform")]), ["alice", "bob"]);
    assert_eq!(ids(&members[&Id::from("admins")]), ["carol"]);
}

#[test]
fn direct_mode_counts_only_direct_user_members() {
    let applied = apply(fetched(), &tenant(|t| set_nested(t, NestedGroups::Direct)));
    assert_eq!(ids(&applied.snapshot.members[&Id::from("eng")]), ["alice"]);
}

fn set_nested(tenant: &mut TenantConfig, nested: NestedGroups) {
    if let crate::config::SourceConfig::Google(google) = &mut tenant.source {
        google.nested_groups = nested;
    }
}

fn set_suspended(tenant: &mut TenantConfig, policy: SuspendedUsers) {
    if let crate::config::SourceConfig::Google(google) = &mut tenant.source {
        google.suspended_users = policy;
    }
}

#[test]
fn org_unit_filter_keeps_the_subtree_and_says_why_others_are_out() {
    let applied = apply(
        fetched(),
        &tenant(|t| t.filters.org_units = vec!["/Engineering".into()]),
    );
    assert_eq!(ids(applied.snapshot.users.keys()), ["alice", "bob"]);
    let carol = applied
        .excluded_users
        .iter()
        .find(|e| &*e.id == "carol")
        .unwrap();
    assert_eq!(
        carol.reason,
        Exclusion::OutsideOrgUnits {
            org_unit: Some("/Sales".into())
        }
    );
    assert!(
        !applied.snapshot.members.contains_key(&Id::from("admins")),
        "no memberships of filtered users"
    );
}

#[test]
fn group_filter_and_group_members_scope() {
    let applied = apply(
        fetched(),
        &tenant(|t| {
            t.filters.groups = vec!["ENG@*".into()];
            t.filters.users = UserScope::GroupMembers;
        }),
    );
    assert_eq!(ids(applied.snapshot.groups.keys()), ["eng"]);
    assert_eq!(ids(applied.snapshot.users.keys()), ["alice", "bob"]);
    assert!(applied
        .excluded_users
        .iter()
        .any(|e| &*e.id == "dave" && e.reason == Exclusion::NotInSyncedGroup { groups: vec![] }));
    // carol is only in admins, which the group filter leaves out.
    assert!(applied.excluded_users.iter().any(|e| &*e.id == "carol"
        && e.reason
            == Exclusion::NotInSyncedGroup {
                groups: vec!["admins@example.com".into()]
            }));
    assert_eq!(applied.excluded_groups.len(), 2);
}

#[test]
fn suspended_users_are_inactive_or_dropped() {
    let applied = apply(fetched(), &tenant(|_| {}));
    assert_eq!(
        applied.snapshot.users[&Id::from("carol")].state,
        UserState::Inactive
    );
    let applied = apply(
        fetched(),
        &tenant(|t| set_suspended(t, SuspendedUsers::Delete)),
    );
    assert!(!applied.snapshot.users.contains_key(&Id::from("carol")));
    assert!(applied
        .excluded_users
        .iter()
        .any(|e| &*e.id == "carol" && e.reason == Exclusion::SuspendedDropped));
}

#[test]
fn roles_come_from_effective_membership_sorted_with_a_default() {
    let applied = apply(
        fetched(),
        &tenant(|t| {
            t.roles
                .by_group
                .insert("platform@example.com".into(), "platform".into());
            t.roles
                .by_group
                .insert("eng@example.com".into(), "engineer".into());
            t.roles.default_role = Some("member".into());
        }),
    );
    let users = &applied.snapshot.users;
    assert_eq!(users[&Id::from("alice")].roles, ["engineer", "platform"]);
    assert_eq!(users[&Id::from("dave")].roles, ["member"]);
}

#[test]
fn attributes_resolve_with_selectors_and_unresolved_paths_yield_nothing() {
    let applied = apply(
        fetched(),
        &tenant(|t| {
            t.attributes.insert(
                "cost_center".into(),
                crate::attribute_path::AttributePath::parse("customSchemas.HR.CostCenter").unwrap(),
            );
            t.attributes.insert(
                "missing".into(),
                crate::attribute_path::AttributePath::parse("customSchemas.Nope.X").unwrap(),
            );
        }),
    );
    let alice = &applied.snapshot.users[&Id::from("alice")];
    let attributes = alice.custom_attributes.to_map();
    assert_eq!(attributes["cost_center"], "CC-9");
    assert_eq!(attributes["employee_id"], "E-alice");
    assert_eq!(attributes["job_title"], "Engineer");
    assert!(!attributes.contains_key("missing"));
}

#[test]
fn paths_parse_urns_selectors_and_reject_garbage() {
    let urn = crate::attribute_path::AttributePath::parse(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    )
    .unwrap();
    let user = serde_json::json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m-1"}}});
    assert_eq!(urn.resolve(&user).unwrap(), "m-1");
    let emails = crate::attribute_path::AttributePath::parse("emails[type=work].value").unwrap();
    assert_eq!(emails.resolve(&serde_json::json!({"emails": [{"type": "home", "value": "h"}, {"type": "work", "value": "w"}]})).unwrap(), "w");
    assert!(crate::attribute_path::AttributePath::parse("emails[0].value").is_ok());
    assert!(crate::attribute_path::AttributePath::parse("emails[").is_err());
    assert!(crate::attribute_path::AttributePath::parse("a..b").is_err());
    assert!(crate::attribute_path::AttributePath::parse("emails[x y]").is_err());
}

#[test]
fn glob_matching() {
    assert!(glob_matches(
        "eng-*@acme.example",
        "ENG-platform@acme.example"
    ));
    assert!(glob_matches("a?c", "abc"));
    assert!(!glob_matches("eng-*", "sales"));
    assert!(glob_matches("*", ""));
}

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn resolve(path: &str, user: &serde_json::Value) -> Option<serde_json::Value> {
    crate::attribute_path::AttributePath::parse(path)
        .unwrap()
        .resolve(user)
        .cloned()
}

#[test]
fn scim_extension_paths_in_the_forms_idps_write_them() {
    let user = serde_json::json!({
        "userName": "a@example.com",
        ENTERPRISE: {"employeeNumber": "E-1", "manager": {"value": "m-1", "displayName": "Boss"}},
        "urn:ietf:params:scim:schemas:extension:custom:2.0:User": {"custom_attr_1": "x"},
    });
    // RFC 7644 / Entra: URN, colon, attribute (and sub-attribute).
    assert_eq!(
        resolve(&format!("{ENTERPRISE}:employeeNumber"), &user).unwrap(),
        "E-1"
    );
    assert_eq!(
        resolve(&format!("{ENTERPRISE}:manager.value"), &user).unwrap(),
        "m-1"
    );
    // Entra's manager target is the complex attribute itself.
    assert_eq!(
        resolve(&format!("{ENTERPRISE}:manager"), &user).unwrap()["value"],
        "m-1"
    );
    // The `.`-joined form.
    assert_eq!(
        resolve(&format!("{ENTERPRISE}.employeeNumber"), &user).unwrap(),
        "E-1"
    );
    assert_eq!(
        resolve(&format!("{ENTERPRISE}.manager.value"), &user).unwrap(),
        "m-1"
    );
    // The whole extension object, and an Okta-style custom namespace.
    assert_eq!(resolve(ENTERPRISE, &user).unwrap()["employeeNumber"], "E-1");
    assert_eq!(
        resolve(
            "urn:ietf:params:scim:schemas:extension:custom:2.0:User:custom_attr_1",
            &user
        )
        .unwrap(),
        "x"
    );
    // SCIM attribute names are case-insensitive.
    assert_eq!(
        resolve(&format!("{ENTERPRISE}:EmployeeNumber"), &user).unwrap(),
        "E-1"
    );
    assert_eq!(resolve("USERNAME", &user).unwrap(), "a@example.com");
    // A server that stored the flattened key literally (Entra's PATCH with dotted keys).
    let flat = serde_json::json!({format!("{ENTERPRISE}:employeeNumber"): "E-2"});
    assert_eq!(
        resolve(&format!("{ENTERPRISE}:employeeNumber"), &flat).unwrap(),
        "E-2"
    );
    // Not there: no attribute, not an error.
    assert_eq!(resolve(&format!("{ENTERPRISE}:costCenter"), &user), None);
    assert_eq!(resolve("urn:example:other:1.0:User:x", &user), None);
}

#[test]
fn selectors_in_the_scim_filter_form_and_with_dots_inside() {
    let user = serde_json::json!({
        "emails": [{"type": "home", "value": "h@x.example"}, {"type": "work", "value": "w@x.example", "primary": "True"}],
        "phoneNumbers": [{"type": "mobile", "value": "+1"}],
        "externalIds": [{"type": "organization", "value": "E-9"}],
    });
    assert_eq!(
        resolve("emails[type eq \"work\"].value", &user).unwrap(),
        "w@x.example"
    );
    assert_eq!(
        resolve("phoneNumbers[type EQ \"mobile\"].value", &user).unwrap(),
        "+1"
    );
    assert_eq!(
        resolve("emails[value=h@x.example].type", &user).unwrap(),
        "home"
    );
    assert_eq!(
        resolve("emails[value eq \"w@x.example\"].type", &user).unwrap(),
        "work"
    );
    assert_eq!(
        resolve("emails[primary].value", &user).unwrap(),
        "w@x.example"
    );
    assert_eq!(resolve("emails[1].type", &user).unwrap(), "work");
    assert_eq!(resolve("emails[5].type", &user), None);
    assert_eq!(
        resolve("externalIds[type=organization].value", &user).unwrap(),
        "E-9"
    );
    for bad in [
        "emails[type eq]",
        "emails]",
        "emails[0",
        "emails[0]x",
        ".a",
        "a.",
        "emails[a b c]",
    ] {
        assert!(
            crate::attribute_path::AttributePath::parse(bad).is_err(),
            "{bad} parsed"
        );
    }
}

#[test]
fn google_custom_schema_paths_read_custom_schemas() {
    let user = serde_json::json!({
        "customSchemas": {"HR": {"CostCenter": "CC-1", "Skills": [{"type": "work", "value": "rust"}]}},
    });
    assert_eq!(
        resolve("customSchemas.HR.CostCenter", &user).unwrap(),
        "CC-1"
    );
    assert_eq!(
        resolve("customSchemas.HR.Skills[0].value", &user).unwrap(),
        "rust"
    );
    assert_eq!(resolve("customSchemas.Payroll.Id", &user), None);
}

#[test]
fn the_direct_graph_keeps_paths_through_unsynced_nested_groups() {
    // Only eng is synced; bob is in it through platform, so platform's edges are kept.
    let applied = apply(
        fetched(),
        &tenant(|t| t.filters.groups = vec!["eng@*".into()]),
    );
    let edges: Vec<(&str, &str, &str)> = applied
        .direct
        .iter()
        .map(|(g, k, m)| (&**g, k.as_str(), &**m))
        .collect();
    assert_eq!(
        edges,
        [
            ("eng", "user", "alice"),
            ("eng", "group", "platform"),
            ("platform", "user", "bob"),
            ("platform", "group", "eng"),
        ]
    );
    assert_eq!(
        ids(&applied.snapshot.members[&Id::from("eng")]),
        ["alice", "bob"]
    );
    // With direct membership only synced groups' edges are kept.
    let applied = apply(
        fetched(),
        &tenant(|t| {
            t.filters.groups = vec!["eng@*".into()];
            set_nested(t, NestedGroups::Direct);
        }),
    );
    assert_eq!(applied.direct.len(), 2);
}

#[test]
fn users_not_listed_under_a_pushed_down_org_unit_filter_are_explained() {
    let mut fetched = fetched();
    fetched
        .members
        .get_mut(&Id::from("eng"))
        .unwrap()
        .push(MemberRef::Other(Box::new(OtherMember {
            kind: "USER_NOT_FETCHED".into(),
            id: Some("zed".into()),
            email: Some("Zed@Example.com".into()),
        })));
    let applied = apply(
        fetched,
        &tenant(|t| t.filters.org_units = vec!["/Engineering".into()]),
    );
    let zed = applied
        .excluded_users
        .iter()
        .find(|e| &*e.id == "zed")
        .unwrap();
    assert_eq!(zed.email, "zed@example.com");
    assert_eq!(zed.reason, Exclusion::OutsideOrgUnits { org_unit: None });
}
