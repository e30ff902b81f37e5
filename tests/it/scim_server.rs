//! The SCIM pull source against a real SCIM 2.0 server (scim2-server from PyPI) on loopback:
//! seeded through its SCIM API, changed the way Okta and Entra ID change it, fetched again.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dirsync::config::ScimPagination;
use dirsync::model::MemberKind;
use dirsync::model::{Email, Id, UserState};
use dirsync::source::scim::ScimSource;
use dirsync::source::{FetchStats, Fetched, MemberRef};
use dirsync_testkit::scim::{ScimServer, Spc, ENTERPRISE};

use crate::support::{scim_config, ScimServerExt};
use serde_json::json;

fn users_by_name(fetched: &Fetched) -> BTreeMap<String, &dirsync::model::User> {
    fetched
        .users
        .iter()
        .map(|u| (u.user.username.clone(), &u.user))
        .collect()
}

fn group_named<'a>(fetched: &'a Fetched, name: &str) -> &'a dirsync::model::Group {
    fetched.groups.iter().find(|g| g.name == name).unwrap()
}

fn user_members(fetched: &Fetched, group: &str) -> BTreeSet<Id> {
    let id = &group_named(fetched, group).id;
    fetched.members[id]
        .iter()
        .filter_map(|m| match m {
            MemberRef::User(id) => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn named(ids: &BTreeMap<String, String>, names: &[&str]) -> BTreeSet<Id> {
    names.iter().map(|n| Id::from(ids[*n].as_str())).collect()
}

#[tokio::test]
async fn a_seeded_directory_is_fetched_and_normalized() {
    let server = ScimServer::start(Spc::Default).await;
    let ids = server.seed().await;
    let fetched = server.source().fetch().await.unwrap();

    assert_eq!(fetched.users.len(), 5);
    let users = users_by_name(&fetched);
    let alice = users["alice@example.com"];
    assert_eq!(&*alice.id, ids["alice"].as_str());
    assert_eq!(alice.email, "alice@example.com");
    assert_eq!(alice.first_name.as_deref(), Some("Alice"));
    assert_eq!(alice.last_name.as_deref(), Some("Test"));
    assert_eq!(alice.display_name.as_deref(), Some("Alice Test"));
    assert_eq!(alice.state, UserState::Active);
    assert_eq!(
        alice.emails,
        vec![Email {
            value: "alice@example.com".into(),
            primary: true
        }]
    );
    let raw = alice.raw_attributes.to_value();
    assert!(raw.get("meta").is_none(), "{raw}");
    assert_eq!(raw[ENTERPRISE]["employeeNumber"], "E-alice");
    assert_eq!(raw["externalId"], "ext-alice");

    assert_eq!(fetched.groups.len(), 2);
    let engineering = group_named(&fetched, "engineering");
    assert_eq!(engineering.email, None);
    assert_eq!(engineering.description, None);
    let raw = engineering.raw_attributes.to_value();
    assert!(
        raw.get("members").is_none() && raw.get("meta").is_none(),
        "{raw}"
    );
    assert_eq!(raw["externalId"], "ext-engineering");
    assert_eq!(
        user_members(&fetched, "engineering"),
        named(&ids, &["alice", "bob", "carol"])
    );
    assert_eq!(
        user_members(&fetched, "admins"),
        named(&ids, &["alice", "erin"])
    );

    // A second fetch of an unchanged directory is identical.
    let again = server.source().fetch().await.unwrap();
    let plain = |f: &Fetched| {
        let mut users: Vec<_> = f.users.iter().map(|u| u.user.clone()).collect();
        users.sort_by(|a, b| a.id.cmp(&b.id));
        let mut groups = f.groups.clone();
        groups.sort_by(|a, b| a.id.cmp(&b.id));
        (users, groups, f.members.clone())
    };
    assert_eq!(plain(&fetched), plain(&again));
}

#[tokio::test]
async fn changes_made_the_way_okta_and_entra_make_them_are_fetched() {
    let server = ScimServer::start(Spc::Default).await;
    let ids = server.seed().await;
    // Okta deactivates with a path-less replace.
    server
        .patch(
            &format!("/Users/{}", ids["bob"]),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    // Entra (no compliance flag) sends a capitalized op and a boolean as a string.
    server
        .patch(
            &format!("/Users/{}", ids["carol"]),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    // Entra deletes only after its soft delete; the server keeps the id in the group.
    server
        .patch(
            &format!("/Users/{}", ids["dave"]),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    server.delete(&format!("/Users/{}", ids["dave"])).await;
    server
        .patch(
            &format!("/Groups/{}", ids["engineering"]),
            json!([{"op": "Add", "path": "members", "value": [{"value": ids["dave"]}]}]),
        )
        .await;
    // Okta renames a group with a path-less replace, and moves erin from admins to engineering.
    server
        .patch(
            &format!("/Groups/{}", ids["admins"]),
            json!([{"op": "replace", "value": {"id": ids["admins"], "displayName": "admins-renamed"}},
                   {"op": "remove", "path": format!("members[value eq \"{}\"]", ids["erin"])}]),
        )
        .await;
    server
        .patch(
            &format!("/Groups/{}", ids["engineering"]),
            json!([{"op": "add", "path": "members", "value": [{"value": ids["erin"], "display": "erin@example.com"}]}]),
        )
        .await;
    // A nested group: `all` holds engineering (typed) and admins (untyped).
    let all = server
        .create_group(
            "all",
            json!([{"value": ids["engineering"], "type": "Group"}, {"value": ids["admins"]}]),
        )
        .await;

    let fetched = server.source().fetch().await.unwrap();
    let users = users_by_name(&fetched);
    assert_eq!(users.len(), 4, "dave is gone");
    assert_eq!(users["bob@example.com"].state, UserState::Inactive);
    assert_eq!(users["carol@example.com"].state, UserState::Inactive);
    assert_eq!(users["alice@example.com"].state, UserState::Active);
    assert!(fetched.groups.iter().all(|g| g.name != "admins"));
    assert_eq!(
        &*group_named(&fetched, "admins-renamed").id,
        ids["admins"].as_str()
    );
    assert_eq!(
        user_members(&fetched, "engineering"),
        named(&ids, &["alice", "bob", "carol", "erin"])
    );
    assert_eq!(
        user_members(&fetched, "admins-renamed"),
        named(&ids, &["alice"])
    );
    let engineering_members = &fetched.members[&Id::from(ids["engineering"].as_str())];
    assert!(
        engineering_members.iter().any(|m| matches!(m,
            MemberRef::Other(other) if other.id.as_ref() == Some(&ids["dave"]))),
        "the deleted user's dangling id is Other: {engineering_members:?}"
    );
    assert_eq!(
        fetched.members[&Id::from(all.as_str())],
        vec![
            MemberRef::Group(Id::from(ids["engineering"].as_str())),
            MemberRef::Group(Id::from(ids["admins"].as_str())),
        ]
    );

    let source = server.source();
    let gone = source
        .confirm_absent(
            MemberKind::User,
            &[
                Id::from(ids["dave"].as_str()),
                Id::from(ids["bob"].as_str()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(gone, vec![Id::from(ids["dave"].as_str())]);
    let gone = source
        .confirm_absent(MemberKind::Group, &[Id::from(ids["admins"].as_str())])
        .await
        .unwrap();
    assert!(gone.is_empty());
}

#[tokio::test]
async fn a_server_capping_pages_at_two_is_read_to_the_end() {
    let server = ScimServer::start(Spc::SmallPages).await;
    let ids = server.seed().await;
    for extra in ["frank", "grace"] {
        server.create_user(extra).await;
    }
    let stats = Arc::new(FetchStats::default());
    let mut config = server.config();
    config.page_size = Some(100); // the server caps it at 2 anyway
    let source = ScimSource::new(config, stats.clone()).unwrap();
    let check = source.check().await.unwrap();
    assert!(check.contains("index paging, page size 2"), "{check}");
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.users.len(), 7);
    assert_eq!(
        user_members(&fetched, "engineering"),
        named(&ids, &["alice", "bob", "carol"])
    );
    // 3 discovery requests, 4 user pages of at most 2, 1 group page.
    assert!(stats.requests() >= 8, "{}", stats.requests());
}

#[tokio::test]
async fn cursor_paging_is_used_when_the_server_offers_it() {
    let server = ScimServer::start(Spc::Cursor).await;
    let ids = server.seed().await;
    let source = server.source();
    let check = source.check().await.unwrap();
    assert!(check.contains("paging index+cursor"), "{check}");
    assert!(
        check.contains("dirsync uses cursor paging, page size 2"),
        "{check}"
    );
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.users.len(), 5);
    assert_eq!(
        user_members(&fetched, "admins"),
        named(&ids, &["alice", "erin"])
    );

    // The same server read with index paging (an override) gives the same directory.
    let mut config = server.config();
    config.pagination = ScimPagination::Index;
    let by_index = ScimSource::new(config, Arc::new(FetchStats::default()))
        .unwrap()
        .fetch()
        .await
        .unwrap();
    let names = |f: &Fetched| -> BTreeSet<String> {
        f.users.iter().map(|u| u.user.username.clone()).collect()
    };
    assert_eq!(names(&fetched), names(&by_index));
}

#[tokio::test]
async fn a_cursor_only_server_like_entra_is_read_with_cursors() {
    let server = ScimServer::start(Spc::CursorOnly).await;
    server.seed().await;
    let fetched = server.source().fetch().await.unwrap();
    assert_eq!(fetched.users.len(), 5);
    assert_eq!(fetched.groups.len(), 2);

    // Forcing index paging on it fails clearly instead of returning a part.
    let mut config = server.config();
    config.pagination = ScimPagination::Index;
    let err = ScimSource::new(config, Arc::new(FetchStats::default()))
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("501"), "{err}");
}

#[tokio::test]
async fn a_wrong_token_names_the_token_file() {
    let server = ScimServer::start(Spc::Default).await;
    let config = scim_config(&server.base_url, Some("not-the-token"));
    let source = ScimSource::new(config, Arc::new(FetchStats::default())).unwrap();
    let err = source.fetch().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("source.token_file") && text.contains("401"),
        "{text}"
    );
    let err = source.check().await.unwrap_err();
    assert!(err.hint().unwrap().contains("source.token_file"));
}
