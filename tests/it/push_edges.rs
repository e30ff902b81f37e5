//! Corners of the SCIM push receiver that real IdPs reach only now and then, against the real
//! `dirsync run`: nested groups in a cycle, a group named as its own member (by PUT, by the
//! PATCH engine, by the member fast path), paging exact at every boundary, filters on every
//! kind of attribute (a user's read-only `groups` included), projections.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::push_okta::urlencode;
use crate::push_support::{summaries, Push, Rules, GROUP_SCHEMA, PATCH_SCHEMA, USER_SCHEMA};

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

fn member_ids(group: &Value) -> BTreeSet<String> {
    group["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_never_its_own_member_and_a_cycle_of_groups_is_harmless() {
    let push = Push::start("cycles", "", "").await;
    let u1 = id(&push
        .post(
            "/Users",
            json!({"schemas": [USER_SCHEMA], "userName": "u1@corp.example"}),
        )
        .await);
    let u2 = id(&push
        .post(
            "/Users",
            json!({"schemas": [USER_SCHEMA], "userName": "u2@corp.example"}),
        )
        .await);
    let a = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "A", "members": [{"value": u1}]}),
        )
        .await);
    let b = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "B"}),
        )
        .await);
    let (a_path, b_path) = (format!("/Groups/{a}"), format!("/Groups/{b}"));
    // A ⊂ B, then B ⊂ A: a cycle.
    push.patch(
        &b_path,
        json!([{"op": "add", "path": "members", "value": [{"value": a, "type": "Group"}]}]),
    )
    .await;
    push.patch(
        &a_path,
        json!([{"op": "add", "path": "members", "value": [{"value": b, "type": "Group"}]}]),
    )
    .await;
    // A member of one is a member of both.
    push.patch(
        &b_path,
        json!([{"op": "add", "path": "members", "value": [{"value": u2}]}]),
    )
    .await;
    let settled = push.events().await.len();

    // A group as its own member is refused however it is asked for, and changes nothing.
    let refusals = [
        (
            Method::PUT,
            b_path.clone(),
            json!({"schemas": [GROUP_SCHEMA], "displayName": "B",
                   "members": [{"value": b}, {"value": a}, {"value": u2}]}),
        ),
        (
            Method::PATCH,
            a_path.clone(),
            json!({"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "replace", "path": "members", "value": [{"value": a}, {"value": u1}, {"value": b}]}]}),
        ),
        (
            Method::PATCH,
            a_path.clone(),
            json!({"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "add", "value": {"members": [{"value": a}]}}]}),
        ),
        (
            Method::PATCH,
            a_path.clone(),
            json!({"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": a, "type": "Group"}]}]}),
        ),
    ];
    for (method, path, body) in refusals {
        let reply = push
            .request(method.clone(), &path, Some(body.clone()))
            .await;
        assert_eq!(reply.status, 400, "{method} {path} {body}: {}", reply.body);
        assert_eq!(reply.body["scimType"], "invalidValue", "{}", reply.body);
    }
    assert_eq!(
        member_ids(&push.get(&a_path).await.body),
        [u1.clone(), b.clone()].into()
    );
    assert_eq!(
        member_ids(&push.get(&b_path).await.body),
        [a.clone(), u2.clone()].into()
    );
    assert_eq!(push.events().await.len(), settled);

    // Filtered removal of the member groups (the PATCH engine's path): B leaves A.
    push.patch(
        &a_path,
        json!([{"op": "remove", "path": "members[type eq \"Group\"]"}]),
    )
    .await;
    assert_eq!(
        member_ids(&push.get(&a_path).await.body),
        [u1.clone()].into()
    );
    // Removing every member empties the group.
    push.patch(&a_path, json!([{"op": "remove", "path": "members"}]))
        .await;
    assert_eq!(member_ids(&push.get(&a_path).await.body), BTreeSet::new());

    let events = push.events().await;
    assert_eq!(
        summaries(&events),
        [
            "user.created u1@corp.example",
            "user.created u2@corp.example",
            "group.created A",
            "group.user_added A u1@corp.example",
            "group.created B",
            "group.user_added B u1@corp.example",
            "group.user_added A u2@corp.example",
            "group.user_added B u2@corp.example",
            "group.user_removed A u2@corp.example",
            "group.user_removed A u1@corp.example",
            "group.user_removed B u1@corp.example",
        ],
        "{events:#?}"
    );
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_exactly_at_every_boundary_and_filter_every_attribute() {
    let push = Push::start("reads", "", "").await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let body = json!({"schemas": [USER_SCHEMA], "userName": format!("p{n}@corp.example"),
                          "title": if n % 2 == 0 { Value::from("Engineer") } else { Value::Null },
                          "emails": [{"type": "work", "value": format!("p{n}@work.example"), "primary": true}],
                          "name": {"givenName": format!("P{n}"), "familyName": "Page"}});
        ids.push(id(&push.post("/Users", body).await));
    }
    let group = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Evens",
                   "members": [{"value": ids[0]}, {"value": ids[2]}]}),
        )
        .await);
    let all: Vec<String> = push
        .list_all("Users")
        .await
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all.len(), 7);
    for start in 0..=9usize {
        for count in 0..=8usize {
            let page = push
                .expect(
                    200,
                    Method::GET,
                    &format!("/Users?startIndex={start}&count={count}&attributes=userName"),
                    None,
                )
                .await;
            let names: Vec<&str> = page["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["userName"].as_str().unwrap())
                .collect();
            let from = start.max(1) - 1;
            let expected: Vec<&str> = all
                .iter()
                .skip(from)
                .take(count)
                .map(String::as_str)
                .collect();
            assert_eq!(names, expected, "startIndex={start} count={count}");
            assert_eq!(page["totalResults"], 7);
            assert_eq!(page["startIndex"], start.max(1));
            assert_eq!(page["itemsPerPage"], expected.len());
            // The projection keeps what it names, and id and schemas.
            for resource in page["Resources"].as_array().unwrap() {
                assert!(resource["id"].is_string() && resource["schemas"].is_array());
                assert!(resource.get("emails").is_none(), "{resource}");
            }
        }
    }

    let query = |filter: &str| format!("/Users?filter={}", urlencode(filter));
    let matching = |page: &Value| -> BTreeSet<String> {
        page["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let evens: BTreeSet<String> = [
        ids[0].clone(),
        ids[2].clone(),
        ids[4].clone(),
        ids[6].clone(),
    ]
    .into();
    let in_group: BTreeSet<String> = [ids[0].clone(), ids[2].clone()].into();
    for (filter, expected) in [
        ("title pr".to_owned(), evens.clone()),
        ("title eq \"engineer\"".to_owned(), evens.clone()),
        (
            "not (title pr)".to_owned(),
            ids.iter()
                .filter(|i| !evens.contains(*i))
                .cloned()
                .collect(),
        ),
        (
            "userName sw \"P1\" or userName co \"3@\"".to_owned(),
            [ids[1].clone(), ids[3].clone()].into(),
        ),
        (
            "emails[type eq \"work\"].value eq \"p5@work.example\"".to_owned(),
            [ids[5].clone()].into(),
        ),
        (
            "name.givenName eq \"p6\" and name.familyName eq \"Page\"".to_owned(),
            [ids[6].clone()].into(),
        ),
        // A user's groups are read-only, derived from the groups' members: filterable still.
        (format!("groups.value eq \"{group}\""), in_group.clone()),
        (format!("groups[value eq \"{group}\"]"), in_group.clone()),
        ("groups pr".to_owned(), in_group.clone()),
    ] {
        let page = push.expect(200, Method::GET, &query(&filter), None).await;
        assert_eq!(matching(&page), expected, "{filter}");
        assert_eq!(page["totalResults"], expected.len(), "{filter}");
    }
    // A filtered list pages too.
    let page = push
        .expect(
            200,
            Method::GET,
            &format!("{}&startIndex=2&count=2", query("title pr")),
            None,
        )
        .await;
    assert_eq!(page["totalResults"], 4);
    assert_eq!(page["Resources"].as_array().unwrap().len(), 2);
    // Groups by member, and without their members.
    let page = push
        .expect(
            200,
            Method::GET,
            &format!(
                "/Groups?filter={}",
                urlencode(&format!("members[value eq \"{}\"]", ids[2]))
            ),
            None,
        )
        .await;
    assert_eq!(page["totalResults"], 1);
    let page = push
        .expect(200, Method::GET, "/Groups?excludedAttributes=members", None)
        .await;
    assert!(page["Resources"][0].get("members").is_none(), "{page}");
    let one = push
        .expect(
            200,
            Method::GET,
            &format!("/Users/{}?attributes=name.givenName", ids[3]),
            None,
        )
        .await;
    assert_eq!(one["name"], json!({"givenName": "P3"}));
    assert!(one.get("userName").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_nested_group_or_a_nested_member_removes_the_memberships_it_carried() {
    let push = Push::start("nested", "", "").await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat"] {
        users.push(id(&push
            .post(
                "/Users",
                json!({"schemas": [USER_SCHEMA], "userName": format!("{name}@corp.example")}),
            )
            .await));
    }
    // team ⊂ dept ⊂ org; ann in team, ben in dept, cat in org.
    let team = id(&push
        .post("/Groups", json!({"schemas": [GROUP_SCHEMA], "displayName": "Team", "members": [{"value": users[0]}]}))
        .await);
    let dept = id(&push
        .post("/Groups", json!({"schemas": [GROUP_SCHEMA], "displayName": "Dept",
                                "members": [{"value": users[1]}, {"value": team, "type": "Group"}]}))
        .await);
    push.post(
        "/Groups",
        json!({"schemas": [GROUP_SCHEMA], "displayName": "Org",
               "members": [{"value": users[2]}, {"value": dept, "type": "Group"}]}),
    )
    .await;
    let built = push.events().await.len();
    // ann (in team, so dept and org too) is deleted; then dept goes.
    push.delete(&format!("/Users/{}", users[0])).await;
    push.delete(&format!("/Groups/{dept}")).await;
    let events = push.events().await;
    assert_eq!(
        summaries(&events[built..]),
        [
            "group.user_removed Dept ann@corp.example",
            "group.user_removed Org ann@corp.example",
            "group.user_removed Team ann@corp.example",
            "user.deleted ann@corp.example",
            // dept's own member leaves it, and org loses what dept brought.
            "group.user_removed Dept ben@corp.example",
            "group.user_removed Org ben@corp.example",
            "group.deleted Dept",
        ],
        "{events:#?}"
    );
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_patch_adds_and_removes_thousands_of_members() {
    let push = Push::start("bulk", "", "").await;
    // The users, created from 8 connections at once.
    let push = std::sync::Arc::new(push);
    let mut creators = Vec::new();
    for client in 0..8 {
        let push = push.clone();
        creators.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in (client..1500).step_by(8) {
                let body =
                    json!({"schemas": [USER_SCHEMA], "userName": format!("bulk{n}@corp.example")});
                ids.push(id(&push.post("/Users", body).await));
            }
            ids
        }));
    }
    let mut users = Vec::new();
    for creator in creators {
        users.extend(creator.await.unwrap());
    }
    let group = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Everyone"}),
        )
        .await);
    let before = push.events().await.len();
    let all: Vec<Value> = users.iter().map(|u| json!({"value": u})).collect();
    // A group this large is not echoed (204): a GET shows it.
    let added = push
        .request(
            Method::PATCH,
            &format!("/Groups/{group}"),
            Some(json!({"schemas": [PATCH_SCHEMA],
                        "Operations": [{"op": "Add", "path": "members", "value": all}]})),
        )
        .await;
    assert_eq!(added.status, 204, "{}", added.body);
    let now = push.get(&format!("/Groups/{group}")).await.body;
    assert_eq!(member_ids(&now).len(), 1500);
    // Then every other one leaves, by filter and by value list, in one request.
    let mut operations: Vec<Value> = users
        .iter()
        .step_by(4)
        .map(|u| json!({"op": "remove", "path": format!("members[value eq \"{u}\"]")}))
        .collect();
    operations.push(json!({"op": "Remove", "path": "members",
                           "value": users.iter().skip(2).step_by(4).map(|u| json!({"value": u})).collect::<Vec<_>>()}));
    // Still over 100 members: answered 204, so the GET tells.
    push.patch(&format!("/Groups/{group}"), Value::Array(operations))
        .await;
    let now = push.get(&format!("/Groups/{group}")).await.body;
    assert_eq!(member_ids(&now).len(), 750);
    let events = push.events().await;
    let added = events[before..]
        .iter()
        .filter(|e| e["type"] == "group.user_added")
        .count();
    let removed = events[before..]
        .iter()
        .filter(|e| e["type"] == "group.user_removed")
        .count();
    assert_eq!((added, removed, events.len() - before), (1500, 750, 2250));
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let mut push = Push::new(crate::support::config_dir(true), "one");
    crate::push_support::write_push_tenant(&push.setup, "one", "", "");
    crate::push_support::write_push_tenant(&push.setup, "two", "", "");
    push.start_daemon().await;
    let two_base = push.base.replace("/scim/v2/one", "/scim/v2/two");
    let body =
        json!({"schemas": [USER_SCHEMA], "userName": "same@corp.example", "externalId": "x-1"});
    // The same userName and externalId in each tenant.
    let in_one = id(&push.post("/Users", body.clone()).await);
    let reply = push
        .client
        .post(format!("{two_base}/Users"))
        .bearer_auth(crate::push_support::TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    let in_two = id(&reply.json::<Value>().await.unwrap());
    // Neither sees, nor can name as a member, the other's user.
    let reply = push
        .client
        .get(format!("{two_base}/Users/{in_one}"))
        .bearer_auth(crate::push_support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404);
    let reply = push
        .request(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "G", "members": [{"value": in_two}]})),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(push.list_all("Users").await.len(), 1);
    assert_eq!(push.events().await.len(), 1);
    assert_eq!(push.setup.events_async("two", 0).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_members_by_any_filter_empties_the_group() {
    let push = Push::start("last-member", "", "").await;
    let ann = id(&push
        .post(
            "/Users",
            json!({"schemas": [USER_SCHEMA], "userName": "ann@corp.example"}),
        )
        .await);
    let ben = id(&push
        .post(
            "/Users",
            json!({"schemas": [USER_SCHEMA], "userName": "ben@corp.example"}),
        )
        .await);
    let group = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "G", "members": [{"value": ann}, {"value": ben}]}),
        )
        .await);
    let path = format!("/Groups/{group}");
    // Filters the member fast path leaves to the PATCH engine: an `or`, a `type`.
    let after = push
        .patch(
            &path,
            json!([{"op": "remove", "path": format!("members[value eq \"nobody\" or value eq \"{ann}\"]")}]),
        )
        .await;
    assert_eq!(member_ids(&after), [ben.clone()].into());
    let after = push
        .patch(
            &path,
            json!([{"op": "remove", "path": "members[type eq \"User\"]"}]),
        )
        .await;
    assert_eq!(member_ids(&after), BTreeSet::new(), "{after}");
    assert_eq!(member_ids(&push.get(&path).await.body), BTreeSet::new());
    let events = push.events().await;
    assert_eq!(
        summaries(&events[5..]),
        [
            "group.user_removed G ann@corp.example",
            "group.user_removed G ben@corp.example",
        ]
    );
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_made_primary_by_patch_is_the_users_email() {
    let push = Push::start("primary", "", "").await;
    let user = id(&push
        .post(
            "/Users",
            json!({"schemas": [USER_SCHEMA], "userName": "ada@corp.example",
                   "emails": [{"type": "work", "value": "ada@work.example", "primary": true}]}),
        )
        .await);
    let path = format!("/Users/{user}");
    let patched = push
        .patch(
            &path,
            json!([
                {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "ada@home.example"},
                {"op": "Replace", "path": "emails[type eq \"home\"].primary", "value": "True"}
            ]),
        )
        .await;
    let primary: Vec<&Value> = patched["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == true)
        .collect();
    assert_eq!(primary.len(), 1, "{patched}");
    assert_eq!(primary[0]["value"], "ada@home.example");
    let events = push.events().await;
    assert_eq!(
        summaries(&events),
        [
            "user.created ada@corp.example",
            "user.updated ada@corp.example email=\"ada@work.example\" emails=[{\"primary\":true,\"value\":\"ada@work.example\"}] raw",
        ]
    );
    assert_eq!(events[1]["data"]["email"], "ada@home.example");
    push.assert_fold_matches(Rules::default()).await;
}
