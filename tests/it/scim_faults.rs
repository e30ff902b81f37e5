//! The SCIM pull source against scripted servers on loopback: failures mid-listing, listings
//! that change under it, servers that ignore paging, and the shapes real IdPs send (Entra's
//! lowercase `resources`, no `totalResults`, booleans as strings, groups without members).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dirsync::model::MemberKind;
use dirsync::model::{Id, UserState};
use dirsync::source::scim::ScimSource;
use dirsync::source::{FetchStats, MemberRef, OtherMember, SourceError};
use dirsync_testkit::scim_fixture::{index_page, spc, user, Answer, Fixture, Request};

use crate::support::scim_config;
use serde_json::{json, Value};

fn source(fixture: &Fixture) -> (ScimSource, Arc<FetchStats>) {
    let stats = Arc::new(FetchStats::default());
    let mut config = scim_config(&fixture.base_url, Some("t"));
    config.retry_max = Duration::from_secs(1);
    (ScimSource::new(config, stats.clone()).unwrap(), stats)
}

fn small_index_pages() -> Value {
    json!({"index": true, "cursor": false, "defaultPageSize": 2, "maxPageSize": 2})
}

fn empty_list() -> Answer {
    Answer::json(
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0}),
    )
}

fn ids_of(users: &[dirsync::source::FetchedUser]) -> BTreeSet<String> {
    users.iter().map(|u| u.user.id.to_string()).collect()
}

#[tokio::test]
async fn a_server_failing_mid_listing_fails_the_fetch() {
    let fixture = Fixture::start(|request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(small_index_pages(), false)),
        "/Users" if request.number("startIndex") == Some(1) => Answer::json(index_page(
            &[
                user("a", json!(true)),
                user("b", json!(true)),
                user("c", json!(true)),
            ],
            request,
        )),
        "/Users" => Answer::text(500, "text/plain", "boom"),
        "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let stats = Arc::new(FetchStats::default());
    let mut config = scim_config(&fixture.base_url, Some("t"));
    config.retry_max = Duration::from_secs(3);
    let source = ScimSource::new(config, stats.clone()).unwrap();
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, SourceError::Http { status: 500, .. }),
        "{err}"
    );
    assert!(stats.retries() >= 1, "a 500 is retried before giving up");
}

#[tokio::test]
async fn a_resource_deleted_between_pages_does_not_hide_another() {
    // Page 1 = [a, b]; then a is deleted, so offset 3 is [d, e] and c would be skipped.
    let users = Arc::new(Mutex::new(
        ["a", "b", "c", "d", "e"]
            .map(|id| user(id, json!(true)))
            .to_vec(),
    ));
    let deleted = Arc::new(AtomicBool::new(false));
    let user_pages = Arc::new(AtomicU64::new(0));
    let fixture = {
        let users = users.clone();
        let user_pages = user_pages.clone();
        Fixture::start(move |request: &Request| {
            let path = request.path.as_str();
            match path {
                "/ServiceProviderConfig" => Answer::json(spc(small_index_pages(), false)),
                "/Users" => {
                    user_pages.fetch_add(1, Ordering::Relaxed);
                    let mut all = users.lock().unwrap();
                    let page = index_page(&all, request);
                    if !deleted.swap(true, Ordering::Relaxed) {
                        all.remove(0);
                    }
                    Answer::json(page)
                }
                "/Groups" => empty_list(),
                _ => match path.strip_prefix("/Users/") {
                    Some(id) if users.lock().unwrap().iter().any(|u| u["id"] == id) => {
                        Answer::json(user(id, json!(true)))
                    }
                    _ => Answer::not_found(),
                },
            }
        })
        .await
    };
    let (source, _) = source(&fixture);
    let fetched = source.fetch().await.unwrap();
    assert_eq!(
        ids_of(&fetched.users),
        BTreeSet::from(["b", "c", "d", "e"].map(String::from))
    );
    assert!(
        user_pages.load(Ordering::Relaxed) >= 4,
        "the torn listing (2 pages) was repeated (2 pages)"
    );
    let gone = source
        .confirm_absent(MemberKind::User, &[Id::from("a"), Id::from("c")])
        .await
        .unwrap();
    assert_eq!(gone, vec![Id::from("a")]);
}

#[tokio::test]
async fn a_listing_that_keeps_changing_fails_without_a_result() {
    let counter = Arc::new(AtomicU64::new(0));
    let fixture = Fixture::start(move |request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(small_index_pages(), false)),
        "/Users" => {
            // Every page reports a different total.
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let all: Vec<Value> = (0..3 + n % 2)
                .map(|i| user(&format!("u{i}"), json!(true)))
                .collect();
            Answer::json(index_page(&all, request))
        }
        "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let err = source(&fixture).0.fetch().await.unwrap_err();
    assert!(err.to_string().contains("changed under dirsync"), "{err}");
}

#[tokio::test]
async fn the_same_page_again_is_an_error() {
    let fixture = Fixture::start(|request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(json!({"index": true}), false)),
        // Ignores startIndex: always the first two of five.
        "/Users" => Answer::json(json!({
            "totalResults": 5, "itemsPerPage": 2,
            "Resources": [user("a", json!(true)), user("b", json!(true))]})),
        "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let err = source(&fixture).0.fetch().await.unwrap_err();
    assert!(err.to_string().contains("same page again"), "{err}");
}

/// Entra ID's SCIM API as documented: cursor-only, lowercase `resources`, no `totalResults`,
/// booleans as strings, groups that never carry members (membership by filter).
#[tokio::test]
async fn an_entra_like_server_is_read_completely() {
    let fixture = Fixture::start(|request: &Request| {
        let cursor = request.param("cursor");
        match request.path.as_str() {
            "/ServiceProviderConfig" => Answer::json(spc(
                json!({"cursor": true, "index": false, "defaultPaginationMethod": "cursor",
                       "defaultPageSize": 2, "maxPageSize": 100}),
                true,
            )),
            "/Users" => match cursor {
                Some("") => Answer::json(json!({"itemsPerPage": 2, "nextCursor": "p2",
                    "resources": [user("u1", json!("True")), user("u2", json!("False"))]})),
                Some("p2") => Answer::json(json!({"itemsPerPage": 1,
                    "resources": [user("u3", json!(null))]})),
                _ => Answer::status_json(400, json!({"scimType": "invalidCursor", "detail": "bad cursor"})),
            },
            "/Groups" => {
                let filter = request.param("filter").unwrap_or("");
                let parents: Vec<Value> = match filter {
                    "" => vec![
                        json!({"id": "g1", "displayName": "Staff", "meta": {"resourceType": "group"}}),
                        json!({"id": "g2", "displayName": "Ops"}),
                    ],
                    r#"members.value eq "u1""# => vec![json!({"id": "g1"})],
                    r#"members.value eq "u2""# => vec![json!({"id": "g2"})],
                    r#"members.value eq "g2""# => vec![json!({"id": "g1"})],
                    _ => vec![],
                };
                Answer::json(json!({"totalResults": parents.len(), "resources": parents}))
            }
            path if path.starts_with("/Groups/") => {
                Answer::json(json!({"id": &path[8..], "displayName": "x"}))
            }
            _ => Answer::not_found(),
        }
    })
    .await;
    let (source, _) = source(&fixture);
    let check = source.check().await.unwrap();
    assert!(check.contains("dirsync uses cursor paging"), "{check}");
    assert!(check.contains("2 of an unknown number of users"), "{check}");
    let fetched = source.fetch().await.unwrap();
    assert_eq!(
        ids_of(&fetched.users),
        BTreeSet::from(["u1", "u2", "u3"].map(String::from))
    );
    let state = |id: &str| {
        fetched
            .users
            .iter()
            .find(|u| &*u.user.id == id)
            .unwrap()
            .user
            .state
    };
    assert_eq!(state("u1"), UserState::Active);
    assert_eq!(state("u2"), UserState::Inactive);
    assert_eq!(state("u3"), UserState::Active);
    assert!(fetched.users[0].user.emails[0].primary);
    assert_eq!(
        fetched.members[&Id::from("g1")],
        vec![
            MemberRef::Group(Id::from("g2")),
            MemberRef::User(Id::from("u1"))
        ]
    );
    assert_eq!(
        fetched.members[&Id::from("g2")],
        vec![MemberRef::User(Id::from("u2"))]
    );
}

#[tokio::test]
async fn groups_listed_without_members_are_read_one_by_one() {
    let fixture = Fixture::start(|request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(json!({"index": true}), false)),
        "/Users" => Answer::json(index_page(
            &[user("u1", json!(true)), user("u2", json!(true))],
            request,
        )),
        "/Groups" => Answer::json(index_page(
            &[
                json!({"id": "g1", "displayName": "one"}),
                json!({"id": "g2", "displayName": "two"}),
                json!({"id": "g3", "displayName": "three"}),
            ],
            request,
        )),
        "/Groups/g1" => {
            assert_eq!(request.param("attributes"), Some("members"));
            Answer::json(json!({"id": "g1", "members": [{"value": "u1"}, {"value": "ghost"}]}))
        }
        // A projected answer without its id.
        "/Groups/g2" => Answer::json(json!({"members": [{"value": "u2", "type": "User"}]})),
        "/Groups/g3" => Answer::json(json!({"id": "g3", "members": null})),
        _ => Answer::not_found(),
    })
    .await;
    let fetched = source(&fixture).0.fetch().await.unwrap();
    assert_eq!(
        fetched.members[&Id::from("g1")],
        vec![
            MemberRef::User(Id::from("u1")),
            MemberRef::Other(Box::new(OtherMember {
                kind: "unknown".into(),
                id: Some("ghost".into()),
                email: None
            }))
        ]
    );
    assert_eq!(
        fetched.members[&Id::from("g2")],
        vec![MemberRef::User(Id::from("u2"))]
    );
    assert!(fetched.members[&Id::from("g3")].is_empty());
    // The list's names are kept, not the projected answer's.
    assert!(fetched.groups.iter().any(|g| g.name == "one"));
}

#[tokio::test]
async fn a_list_without_resources_but_a_positive_total_is_an_error() {
    let fixture = Fixture::start(|request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(json!({"index": true}), false)),
        "/Users" => Answer::json(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 3})),
        "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let err = source(&fixture).0.fetch().await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidResponse { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("no `Resources` although `totalResults` is 3"),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_directory_may_omit_resources() {
    let fixture = Fixture::start(|request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(json!({"index": true}), false)),
        "/Users" | "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let fetched = source(&fixture).0.fetch().await.unwrap();
    assert!(fetched.users.is_empty() && fetched.groups.is_empty());
}

#[tokio::test]
async fn an_html_page_is_not_a_scim_endpoint() {
    let fixture = Fixture::start(|_: &Request| {
        Answer::text(
            200,
            "text/html",
            "<!doctype html><html><body>Welcome to Acme</body></html>",
        )
    })
    .await;
    let (source, _) = source(&fixture);
    for err in [
        source.fetch().await.unwrap_err(),
        source.check().await.unwrap_err(),
    ] {
        let text = err.to_string();
        assert!(
            text.contains("not a SCIM endpoint") && text.contains("source.base_url"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn json_that_is_not_scim_is_not_a_scim_endpoint() {
    let fixture = Fixture::start(|_: &Request| Answer::json(json!({"status": "ok"}))).await;
    let err = source(&fixture).0.fetch().await.unwrap_err();
    assert!(err.to_string().contains("not a SCIM endpoint"), "{err}");
}

#[tokio::test]
async fn a_non_json_answer_is_a_clear_error() {
    let fixture = Fixture::start(|request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(json!({"index": true}), false)),
        "/Users" => Answer::text(200, "application/scim+json", r#"{"Resources": [{"id": "a""#),
        "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let err = source(&fixture).0.fetch().await.unwrap_err();
    assert!(matches!(err, SourceError::InvalidResponse { .. }), "{err}");
    assert!(err.to_string().contains("/Users"), "{err}");
}

#[tokio::test]
async fn a_401_names_the_token_file_and_is_not_retried() {
    let fixture = Fixture::start(|_: &Request| {
        Answer::status_json(401, json!({"status": "401", "detail": "invalid token"}))
    })
    .await;
    let (source, stats) = source(&fixture);
    let err = source.fetch().await.unwrap_err();
    assert!(matches!(err, SourceError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("source.token_file"), "{err}");
    assert_eq!(stats.retries(), 0);
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried() {
    let throttled = Arc::new(AtomicBool::new(false));
    let fixture = Fixture::start(move |request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(json!({"index": true}), false)),
        "/Users" if !throttled.swap(true, Ordering::Relaxed) => {
            let mut answer =
                Answer::status_json(429, json!({"status": "429", "detail": "slow down"}));
            answer.headers.push(("retry-after", "0".into()));
            answer
        }
        "/Users" => Answer::json(index_page(&[user("u1", json!(true))], request)),
        "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let (source, stats) = source(&fixture);
    let fetched = source.fetch().await.unwrap();
    assert_eq!(fetched.users.len(), 1);
    assert_eq!(stats.retries(), 1);
}

#[tokio::test]
async fn a_total_beyond_any_real_directory_is_refused_before_paging() {
    let pages = Arc::new(AtomicU64::new(0));
    let counted = pages.clone();
    let fixture = Fixture::start(move |request: &Request| match request.path.as_str() {
        "/ServiceProviderConfig" => Answer::json(spc(small_index_pages(), false)),
        "/Users" => {
            // Fresh users on every page, for ever, claiming a trillion.
            let n = counted.fetch_add(1, Ordering::SeqCst);
            Answer::json(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                "totalResults": 1_000_000_000_000u64,
                "Resources": [user(&format!("u{n}a"), json!(true)), user(&format!("u{n}b"), json!(true))],
            }))
        }
        "/Groups" => empty_list(),
        _ => Answer::not_found(),
    })
    .await;
    let (source, _) = source(&fixture);
    let err = tokio::time::timeout(Duration::from_secs(60), source.fetch())
        .await
        .expect("the endless listing was followed for ever")
        .unwrap_err();
    assert!(err.to_string().contains("totalResults"), "{err}");
    assert!(pages.load(Ordering::SeqCst) <= 3);
}
