//! The SCIM push receiver of the real `dirsync run` under load and abuse: a storm of
//! concurrent PATCHes to one group, concurrent duplicate creates, a `kill -9` in the middle of
//! a stream of writes, backpressure, and every kind of bad request — none of which may lose an
//! acknowledged write, break `seq`, or change anything when it is refused.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dirsync_testkit::wait_for;
use reqwest::Method;
use serde_json::{json, Value};

use crate::push_support::{
    assert_pushed, fold, Push, Reply, Rules, GROUP_SCHEMA, PATCH_SCHEMA, TOKEN, USER_SCHEMA,
};

fn user(login: &str) -> Value {
    json!({"schemas": [USER_SCHEMA], "userName": login, "active": true,
           "name": {"givenName": "Storm", "familyName": login}})
}

fn patch_body(operations: Value) -> Value {
    let mut body = json!({"schemas": [PATCH_SCHEMA]});
    body["Operations"] = operations;
    body
}

/// A small deterministic generator, one per client.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

const CLIENTS: usize = 16;
const USERS_PER_CLIENT: usize = 3;
const PATCHES_PER_CLIENT: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_concurrent_member_patches_ends_in_the_folded_state() {
    let push = Push::start("storm", "", "").await;
    let mut owned: Vec<Vec<String>> = Vec::new();
    for client in 0..CLIENTS {
        let mut ids = Vec::new();
        for n in 0..USERS_PER_CLIENT {
            let created = push
                .post("/Users", user(&format!("c{client}-u{n}@storm.example")))
                .await;
            ids.push(created["id"].as_str().unwrap().to_owned());
        }
        owned.push(ids);
    }
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Storm"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = push.last_seq().await;

    // Each client adds and removes its own users, in every dialect, concurrently with the
    // others: each client's users end as its last acknowledged operation left them, whatever
    // the interleaving, and no client's write may undo another's.
    let push = Arc::new(push);
    let mut tasks = Vec::new();
    for (client, users) in owned.iter().cloned().enumerate() {
        let push = push.clone();
        let group = group.clone();
        tasks.push(tokio::spawn(async move {
            let mut random = Lcg(client as u64 + 1);
            let mut member: BTreeMap<String, bool> =
                users.iter().map(|u| (u.clone(), false)).collect();
            // Per user, the membership after each acknowledged operation that changed it.
            let mut transitions: BTreeMap<String, Vec<bool>> = BTreeMap::new();
            for _ in 0..PATCHES_PER_CLIENT {
                let target = users[random.next(users.len() as u64) as usize].clone();
                let second = users[random.next(users.len() as u64) as usize].clone();
                let (operations, result): (Value, Vec<(String, bool)>) = match random.next(5) {
                    0 => (
                        json!([{"op": "add", "path": "members", "value": [{"value": target}]}]),
                        vec![(target, true)],
                    ),
                    1 => (
                        json!([{"op": "Add", "path": "members",
                                "value": [{"$ref": null, "value": target}, {"value": second}]}]),
                        vec![(target, true), (second, true)],
                    ),
                    2 => (
                        json!([{"op": "remove", "path": format!("members[value eq \"{target}\"]")}]),
                        vec![(target, false)],
                    ),
                    3 => (
                        json!([{"op": "Remove", "path": "members", "value": [{"value": target}]}]),
                        vec![(target, false)],
                    ),
                    _ => (
                        json!([
                            {"op": "remove", "path": format!("members[value eq \"{target}\"]")},
                            {"op": "add", "path": "members", "value": [{"value": second}]}
                        ]),
                        if target == second {
                            vec![(second, true)]
                        } else {
                            vec![(target, false), (second, true)]
                        },
                    ),
                };
                let reply = push
                    .request(
                        Method::PATCH,
                        &format!("/Groups/{group}"),
                        Some(patch_body(operations)),
                    )
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.body);
                for (user, now) in result {
                    if member[&user] != now {
                        member.insert(user.clone(), now);
                        transitions.entry(user).or_default().push(now);
                    }
                }
            }
            (member, transitions)
        }));
    }
    let mut expected_members = BTreeSet::new();
    let mut expected_transitions: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for task in tasks {
        let (member, transitions) = task.await.unwrap();
        expected_members.extend(member.into_iter().filter(|(_, m)| *m).map(|(u, _)| u));
        expected_transitions.extend(transitions);
    }

    let served: BTreeSet<String> = push.get(&format!("/Groups/{group}")).await.body["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        served, expected_members,
        "every acknowledged PATCH is reflected"
    );
    let events = push.events().await;
    assert_pushed(&events);
    let folded = push.assert_fold_matches(Rules::default()).await;
    let folded_members: BTreeSet<String> = folded
        .members
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(_, u)| u.clone())
        .collect();
    assert_eq!(folded_members, served);
    // Exactly one membership event per real change, in each client's order.
    let mut seen: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for event in &events[before as usize..] {
        let added = match event["type"].as_str().unwrap() {
            "group.user_added" => true,
            "group.user_removed" => false,
            other => panic!("unexpected {other}: {event}"),
        };
        let user = event["data"]["user"]["id"].as_str().unwrap().to_owned();
        seen.entry(user).or_default().push(added);
    }
    assert_eq!(seen, expected_transitions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicate_creates_give_one_user_and_409s() {
    let push = Arc::new(Push::start("dupes", "", "").await);
    let mut tasks = Vec::new();
    for n in 0..16 {
        let push = push.clone();
        tasks.push(tokio::spawn(async move {
            // The same userName in other letter cases.
            let login = if n % 2 == 0 {
                "Dup.User@corp.example"
            } else {
                "dup.user@CORP.example"
            };
            push.request(Method::POST, "/Users", Some(user(login)))
                .await
        }));
    }
    let mut created = Vec::new();
    let mut conflicts = 0;
    for task in tasks {
        let reply: Reply = task.await.unwrap();
        match reply.status {
            201 => created.push(reply.id()),
            409 => {
                assert_eq!(reply.body["scimType"], "uniqueness", "{}", reply.body);
                assert_eq!(reply.body["status"], "409");
                conflicts += 1;
            }
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert_eq!((created.len(), conflicts), (1, 15));
    let events = push.events().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["type"], "user.created");
    assert_eq!(events[0]["data"]["id"], created[0].as_str());
    assert_eq!(push.list_all("Users").await.len(), 1);
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_stream_of_writes_loses_no_acknowledged_write() {
    let mut push = Push::start("crash", "", "").await;
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Crash"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let members = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let client = push.client.clone();
    let base = push.base.clone();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (client, base, group) = (client.clone(), base.clone(), group.clone());
        let (acknowledged, members, count) = (acknowledged.clone(), members.clone(), count.clone());
        writers.push(tokio::spawn(async move {
            // Until the daemon is gone: a user, then it joins the group.
            for n in 0.. {
                let body = user(&format!("w{writer}-{n}@crash.example")).to_string();
                let Ok(response) = client
                    .post(format!("{base}/Users"))
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/scim+json")
                    .body(body)
                    .send()
                    .await
                else {
                    return;
                };
                if response.status() != 201 {
                    return;
                }
                let Ok(created) = response.json::<Value>().await else {
                    return;
                };
                let id = created["id"].as_str().unwrap().to_owned();
                acknowledged.lock().unwrap().push(id.clone());
                count.fetch_add(1, Ordering::SeqCst);
                let patch =
                    patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
                let Ok(response) = client
                    .patch(format!("{base}/Groups/{group}"))
                    .bearer_auth(TOKEN)
                    .header("Content-Type", "application/scim+json")
                    .body(patch.to_string())
                    .send()
                    .await
                else {
                    return;
                };
                if response.status() != 200 || response.bytes().await.is_err() {
                    return;
                }
                members.lock().unwrap().push(id);
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    wait_for(60, "80 acknowledged writes", || {
        let count = count.load(Ordering::SeqCst);
        async move { count >= 80 }
    })
    .await;
    // SIGKILL, in the middle of the stream.
    let mut daemon = push.daemon.take().unwrap();
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let members = members.lock().unwrap().clone();

    assert!(acknowledged.len() >= 40, "{}", acknowledged.len());
    push.start_daemon().await;
    let served: BTreeSet<String> = push
        .list_all("Users")
        .await
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &acknowledged {
        assert!(
            served.contains(id),
            "acknowledged user {id} is gone after kill -9"
        );
    }
    let group_members: BTreeSet<String> = push.get(&format!("/Groups/{group}")).await.body
        ["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    for id in &members {
        assert!(
            group_members.contains(id),
            "acknowledged membership of {id} is gone"
        );
    }
    // seq is gap-free, and the stream folds to what is served.
    push.assert_fold_matches(Rules::default()).await;
    // The restarted daemon takes writes at once (nothing of the killed one holds the tenant).
    let after = push
        .post("/Users", user("after.restart@crash.example"))
        .await;
    let events = push.events().await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "user.created");
    assert_eq!(last["data"]["id"], after["id"]);
    fold(&events);
}

/// The directory as the receiver serves it, and the event count: what a refused request must
/// leave as it was.
async fn state_of(push: &Push) -> (Vec<Value>, Vec<Value>, usize) {
    (
        push.list_all("Users").await,
        push.list_all("Groups").await,
        push.events().await.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() {
    let push = Push::start("bad", "max_body_bytes = 65536", "").await;
    let user_body = json!({"schemas": [USER_SCHEMA], "userName": "kept@corp.example",
                           "externalId": "ext-kept", "active": true});
    let kept = push.post("/Users", user_body.clone()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Kept", "members": [{"value": kept}]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = state_of(&push).await;

    // 401: no token, a wrong token, an unknown tenant — the same answer, for reads and writes.
    let base_path = "/Users";
    let unauthorized = [
        push.raw(Method::GET, base_path, None, None).await,
        push.raw(
            Method::GET,
            base_path,
            Some("wrong-token-0123456789abcdef"),
            None,
        )
        .await,
        push.raw(
            Method::POST,
            base_path,
            Some("wrong"),
            Some(user_body.to_string()),
        )
        .await,
        push.raw(Method::DELETE, &format!("/Users/{kept}"), None, None)
            .await,
    ];
    let unknown_tenant = {
        let url = push.base.replace("/scim/v2/bad", "/scim/v2/no-such-tenant");
        let response = push
            .client
            .get(format!("{url}/Users"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    for reply in &unauthorized {
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.body.to_string(), unknown_tenant.1);
    }
    assert_eq!(unknown_tenant.0, 401);

    // 413 over max_body_bytes.
    let huge = json!({"schemas": [USER_SCHEMA], "userName": "huge@corp.example",
                      "displayName": "x".repeat(70_000)});
    let reply = push.request(Method::POST, "/Users", Some(huge)).await;
    assert_eq!(reply.status, 413, "{}", reply.body);

    // 400: malformed JSON, absurdly nested JSON, a body that is not an object.
    let nested_arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let nested_objects = format!(
        "{{\"schemas\":[\"{PATCH_SCHEMA}\"],\"Operations\":[{{\"op\":\"add\",\"path\":\"title\",\"value\":{}1{}}}]}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    for (method, path, body) in [
        (
            Method::POST,
            "/Users".to_owned(),
            "{\"userName\": ".to_owned(),
        ),
        (Method::POST, "/Users".to_owned(), nested_arrays.clone()),
        (Method::PUT, format!("/Users/{kept}"), nested_arrays.clone()),
        (Method::PATCH, format!("/Groups/{group}"), nested_objects),
        (Method::POST, "/Groups".to_owned(), "[]".to_owned()),
        (
            Method::PATCH,
            format!("/Users/{kept}"),
            "\"Operations\"".to_owned(),
        ),
    ] {
        let reply = push
            .raw(method.clone(), &path, Some(TOKEN), Some(body))
            .await;
        assert_eq!(reply.status, 400, "{method} {path}: {}", reply.body);
        assert_eq!(reply.body["status"], "400");
        assert_eq!(
            reply.body["schemas"],
            json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
        );
    }

    // 400 with the scimType of each refusal.
    let filters = [
        "userName eq",
        "userName zz \"a\"",
        "(userName eq \"a\"",
        "userName eq \"a\" and",
        "emails[type eq \"work\".value eq \"x\"",
    ];
    for filter in filters {
        let query = format!("/Users?filter={}", crate::push_okta::urlencode(filter));
        let reply = push.get(&query).await;
        assert_eq!(reply.status, 400, "{filter}: {}", reply.body);
        assert_eq!(
            reply.body["scimType"], "invalidFilter",
            "{filter}: {}",
            reply.body
        );
    }
    let user_path = format!("/Users/{kept}");
    let group_path = format!("/Groups/{group}");
    for (path, operations, scim_type) in [
        (
            &user_path,
            json!([{"op": "replace", "path": "emails[type eq", "value": "x"}]),
            "invalidPath",
        ),
        (
            &user_path,
            json!([{"op": "replace", "path": "na me", "value": "x"}]),
            "invalidPath",
        ),
        (
            &user_path,
            json!([{"op": "replace", "path": "active", "value": "maybe"}]),
            "invalidValue",
        ),
        (
            &user_path,
            json!([{"op": "replace", "path": "userName", "value": 7}]),
            "invalidValue",
        ),
        (
            &user_path,
            json!([{"op": "replace", "path": "id", "value": "other"}]),
            "mutability",
        ),
        (&user_path, json!([{"op": "remove"}]), "noTarget"),
        // A user's groups are read-only: memberships change on the group.
        (
            &user_path,
            json!([{"op": "add", "path": "groups", "value": [{"value": group}]}]),
            "mutability",
        ),
        (
            &user_path,
            json!([{"op": "Remove", "path": format!("groups[value eq \"{group}\"]")}]),
            "mutability",
        ),
        (
            &user_path,
            json!([{"op": "replace", "value": {"groups": []}}]),
            "mutability",
        ),
        (
            &group_path,
            json!([{"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}]),
            "invalidValue",
        ),
        (
            &group_path,
            json!([{"op": "replace", "path": "displayName", "value": ""}]),
            "invalidValue",
        ),
        // A valid operation before an invalid one: the whole request is refused.
        (
            &group_path,
            json!([
                {"op": "replace", "path": "displayName", "value": "Renamed"},
                {"op": "remove", "path": "members[value eq"}
            ]),
            "invalidPath",
        ),
    ] {
        let reply = push
            .request(Method::PATCH, path, Some(patch_body(operations.clone())))
            .await;
        assert_eq!(reply.status, 400, "{operations}: {}", reply.body);
        assert_eq!(
            reply.body["scimType"], scim_type,
            "{operations}: {}",
            reply.body
        );
    }
    let reply = push
        .request(
            Method::PATCH,
            &user_path,
            Some(json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "frobnicate", "path": "title", "value": "x"}]})),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    // 404 for an unknown id, on every method.
    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        for endpoint in ["Users", "Groups"] {
            let body = match method {
                Method::PUT => Some(
                    json!({"schemas": [USER_SCHEMA], "userName": "x@corp.example", "displayName": "x"}),
                ),
                Method::PATCH => Some(patch_body(
                    json!([{"op": "replace", "path": "displayName", "value": "x"}]),
                )),
                _ => None,
            };
            let reply = push
                .request(
                    method.clone(),
                    &format!("/{endpoint}/0000-no-such-id"),
                    body,
                )
                .await;
            assert_eq!(reply.status, 404, "{method} {endpoint}: {}", reply.body);
            assert_eq!(reply.body["status"], "404");
        }
    }

    // 409: a repeated POST, by externalId or by userName in another case; never an overwrite.
    for body in [
        json!({"schemas": [USER_SCHEMA], "userName": "other@corp.example", "externalId": "ext-kept"}),
        json!({"schemas": [USER_SCHEMA], "userName": "KEPT@corp.example", "displayName": "Overwrite?"}),
    ] {
        let reply = push.request(Method::POST, "/Users", Some(body)).await;
        assert_eq!(reply.status, 409, "{}", reply.body);
        assert_eq!(reply.body["scimType"], "uniqueness");
    }
    let reply = push
        .request(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "Dup",
                                                      "externalId": "g-1"})),
        )
        .await;
    assert_eq!(reply.status, 201);
    let duplicate = reply.id();
    let reply = push
        .request(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "Dup 2",
                                                      "externalId": "g-1"})),
        )
        .await;
    assert_eq!(reply.status, 409, "{}", reply.body);
    push.delete(&format!("/Groups/{duplicate}")).await;
    let events_with_dup = push.events().await;
    let after = state_of(&push).await;
    assert_eq!(after.0, before.0, "users changed");
    assert_eq!(after.1, before.1, "groups changed");
    // Only the accepted group create and delete made events.
    assert_eq!(after.2, before.2 + 2);
    assert_eq!(
        events_with_dup[before.2..]
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["group.created", "group.deleted"]
    );
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after_and_stores_nothing_of_it() {
    let push = Arc::new(Push::start("flood", "max_queued_writes = 1", "").await);
    let mut created = 0usize;
    let mut refused = 0usize;
    for round in 0..20 {
        let mut tasks = Vec::new();
        for n in 0..48 {
            let push = push.clone();
            tasks.push(tokio::spawn(async move {
                push.request(
                    Method::POST,
                    "/Users",
                    Some(user(&format!("flood-{round}-{n}@corp.example"))),
                )
                .await
            }));
        }
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                201 => created += 1,
                429 => {
                    refused += 1;
                    assert_eq!(
                        reply
                            .headers
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()),
                        Some("1")
                    );
                    assert_eq!(reply.body["status"], "429", "{}", reply.body);
                }
                other => panic!("{other}: {}", reply.body),
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(
        refused > 0,
        "no 429 with max_queued_writes = 1 after 20 rounds"
    );
    let users = push.list_all("Users").await;
    assert_eq!(users.len(), created, "a refused write was stored");
    let events = push.events().await;
    assert_eq!(events.len(), created);
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_of_thousands_of_terms_are_answered_and_the_daemon_stays_up() {
    let push = Push::start("long-filters", "", "").await;
    let user_id = push.post("/Users", user("long@corp.example")).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Long", "members": [{"value": user_id}]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A PATCH path's filter is bounded by the body only: 20,000 terms.
    let chain = |join: &str| {
        (0..20_000)
            .map(|n| format!("value eq \"m{n}\""))
            .collect::<Vec<_>>()
            .join(join)
    };
    push.patch(
        &format!("/Groups/{group}"),
        json!([{"op": "remove", "path": format!("members[{}]", chain(" and "))}]),
    )
    .await;
    // And 20,000 of `or`, one of which names the member: they leave (the last member, by a
    // filter only the PATCH engine applies).
    push.patch(
        &format!("/Groups/{group}"),
        json!([{"op": "remove", "path": format!("members[{} or value eq \"{user_id}\"]", chain(" or "))}]),
    )
    .await;
    // A list filter as long as a URL allows.
    let filter = (0..1_500)
        .map(|n| format!("userName eq \"u{n}\""))
        .collect::<Vec<_>>()
        .join(" or ");
    let found = push
        .expect(
            200,
            Method::GET,
            &format!(
                "/Users?filter={}",
                crate::push_okta::urlencode(&format!(
                    "{filter} or userName eq \"long@corp.example\""
                ))
            ),
            None,
        )
        .await;
    assert_eq!(found["totalResults"], 1);
    // Still serving; the member left.
    let events = push.events().await;
    assert_eq!(events.last().unwrap()["type"], "group.user_removed");
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn syncs_of_a_push_tenant_during_a_write_storm_never_interleave_with_its_writes() {
    let push = Arc::new(Push::start("sync-storm", "", "[roles]\nStorm = \"stormer\"\n").await);
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Storm"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut writers = Vec::new();
    for writer in 0..6 {
        let (push, group) = (push.clone(), group.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..15 {
                let id = push
                    .post("/Users", user(&format!("s{writer}-{n}@corp.example")))
                    .await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                push.patch(
                    &format!("/Groups/{group}"),
                    json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
                )
                .await;
                if n % 3 == 0 {
                    push.patch(
                        &format!("/Users/{id}"),
                        json!([{"op": "replace", "value": {"active": false}}]),
                    )
                    .await;
                }
            }
        }));
    }
    // Meanwhile, forced syncs of the tenant (policy over the whole pushed directory): each
    // sees the directory between two writes, so it finds nothing the writes did not emit.
    let mut syncs = 0;
    while !writers.iter().all(tokio::task::JoinHandle::is_finished) {
        let (code, report) = push.setup.sync_async(&push.tenant, &[]).await;
        assert_eq!(
            (code, report["outcome"].as_str()),
            (0, Some("no_changes")),
            "{report}"
        );
        syncs += 1;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(syncs > 0);
    let folded = push.assert_fold_matches(Rules::default()).await;
    assert_eq!(folded.users.len(), 90);
    assert!(folded
        .users
        .values()
        .all(|u| u["roles"] == json!(["stormer"])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_rotates_the_token_and_resizes_the_queue_under_writes_losing_none() {
    let push = Arc::new(Push::start("reload", "", "").await);
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Reload"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Writes keep coming while the tenant's file changes (a new queue bound) and the daemon
    // reloads: each is answered, and every acknowledged one is stored.
    let writer = {
        let (push, group) = (push.clone(), group.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..60 {
                let reply = push
                    .request(
                        Method::POST,
                        "/Users",
                        Some(user(&format!("r{n}@corp.example"))),
                    )
                    .await;
                match reply.status {
                    201 => acknowledged.push(reply.id()),
                    // The old writer's queue closing under a request: retryable, never lost.
                    503 => continue,
                    other => panic!("{other}: {}", reply.body),
                }
                let id = acknowledged.last().unwrap().clone();
                let reply = push
                    .request(
                        Method::PATCH,
                        &format!("/Groups/{group}"),
                        Some(patch_body(
                            json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
                        )),
                    )
                    .await;
                assert!(matches!(reply.status, 200 | 503), "{}", reply.body);
                if reply.status == 503 {
                    acknowledged.pop();
                    push.delete(&format!("/Users/{id}")).await;
                }
            }
            acknowledged
        })
    };
    crate::push_support::write_push_tenant(&push.setup, "reload", "max_queued_writes = 8", "");
    push.daemon.as_ref().unwrap().signal("HUP");
    let acknowledged = writer.await.unwrap();
    // The token rotates: the old one stops working, the new one works.
    std::fs::write(
        push.setup.path().join("tenants/reload-token"),
        "rotated-token-0123456789abcdef",
    )
    .unwrap();
    push.daemon.as_ref().unwrap().signal("HUP");
    let (client, base) = (push.client.clone(), push.base.clone());
    wait_for(20, "the rotated token to be accepted", || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}/Users"))
                .bearer_auth("rotated-token-0123456789abcdef")
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    assert_eq!(push.get("/Users").await.status, 401);
    let members: BTreeSet<String> = client
        .get(format!("{base}/Groups/{group}"))
        .bearer_auth("rotated-token-0123456789abcdef")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members, acknowledged.into_iter().collect());
    fold(&push.events().await);
}
