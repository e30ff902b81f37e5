//! SCIM push writes to one tenant arriving at two nodes of one PostgreSQL store serialize:
//! every write is applied once, the stream is gap-free and folds to what either node serves.

#![allow(clippy::unwrap_used)]

use dirsync_testkit::{ConfigDir, PgDatabase};
use serde_json::json;

use crate::push_support::{write_push_tenant, Push, Rules, GROUP_SCHEMA, USER_SCHEMA};

fn node(database: &PgDatabase) -> Push {
    let setup = ConfigDir::builder(crate::support::dirsync())
        .http_listen()
        .global(&format!("database_url = {:?}\n", database.url()))
        .build();
    write_push_tenant(&setup, "okta", "", "");
    Push::new(setup, "okta")
}

#[tokio::test]
async fn push_writes_to_one_tenant_on_two_nodes_serialize_gap_free() {
    let database = PgDatabase::create();
    let mut first = node(&database);
    let mut second = node(&database);
    first.start_daemon().await;
    second.start_daemon().await;

    // Users created on both nodes at once.
    let creations = (0..24).map(|n| {
        let target = if n % 2 == 0 { &first } else { &second };
        target.post(
            "/Users",
            json!({"schemas": [USER_SCHEMA], "userName": format!("u{n:02}@example.com"),
                   "name": {"givenName": format!("U{n}"), "familyName": "X"},
                   "emails": [{"value": format!("u{n:02}@example.com"), "primary": true}],
                   "active": true}),
        )
    });
    let users: Vec<String> = futures_util::future::join_all(creations)
        .await
        .iter()
        .map(|user| user["id"].as_str().unwrap().to_owned())
        .collect();
    let group = first
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Everyone"}),
        )
        .await;
    let group_id = group["id"].as_str().unwrap().to_owned();
    // Members added to the group through both nodes at once, one per PATCH.
    let path = format!("/Groups/{group_id}");
    let additions = users.iter().enumerate().map(|(n, user)| {
        let target = if n % 2 == 0 { &second } else { &first };
        target.patch(
            &path,
            json!([{"op": "add", "path": "members", "value": [{"value": user}]}]),
        )
    });
    futures_util::future::join_all(additions).await;

    // Both nodes serve the same directory, and the stream (gap-free, checked by the fold)
    // builds it.
    let on_first = first.assert_fold_matches(Rules::default()).await;
    let on_second = second.assert_fold_matches(Rules::default()).await;
    assert_eq!(on_first, on_second);
    assert_eq!(on_first.users.len(), 24);
    assert_eq!(on_first.members.len(), 24);
    assert_eq!(first.last_seq().await, 24 + 1 + 24);
}
