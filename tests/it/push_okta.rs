//! Replays of Okta provisioning sessions against the real `dirsync run`, as Okta sends them
//! (shared/reference/scim-push-idps.md): a catalogue integration (PATCH for activation and
//! passwords, PUT for profiles, group push with a no-op rename PATCH beside each membership
//! change) and a wizard-built one (PUT of whole objects, groups with their members). Each is
//! checked against the exact event stream it must produce and against the folded state.
#![allow(clippy::unwrap_used)]

use reqwest::Method;
use serde_json::{json, Value};

use crate::push_support::{assert_pushed, summaries, Push, Rules, GROUP_SCHEMA, USER_SCHEMA};

/// An Okta user body (what Okta's SCIM 2.0 reference shows), `password` included.
fn okta_user(login: &str, given: &str, family: &str, external_id: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": login,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "value": login, "type": "work"}],
        "displayName": format!("{given} {family}"),
        "locale": "en-US",
        "externalId": external_id,
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// Okta's lookup before a create: `userName eq` with its paging parameters.
async fn lookup(push: &Push, login: &str) -> Value {
    let filter = format!("userName eq \"{login}\"");
    let query = format!(
        "/Users?filter={}&startIndex=1&count=100",
        urlencode(&filter)
    );
    push.expect(200, Method::GET, &query, None).await
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The no-op rename Okta sends with every membership change: its own id and current name.
async fn okta_rename(push: &Push, group: &str, name: &str) {
    push.patch(
        &format!("/Groups/{group}"),
        json!([{"op": "replace", "value": {"id": group, "displayName": name}}]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_catalogue_session_patch_deactivation_and_group_push() {
    let push = Push::start("okta", "", "").await;

    // Okta looks the user up, finds nobody, creates them with a password.
    let found = lookup(&push, "test.user@okta.local").await;
    assert_eq!(found["totalResults"], 0);
    assert_eq!(found["Resources"], json!([]));
    assert_eq!(
        found["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    let reply = push
        .request(
            Method::POST,
            "/Users",
            Some(okta_user(
                "test.user@okta.local",
                "Test",
                "User",
                "00ujl29u0le5T6Aj10h7",
            )),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let test_user = reply.id();
    assert_eq!(
        reply.headers["location"].to_str().unwrap(),
        format!("{}/Users/{test_user}", push.base)
    );
    assert!(reply.body.get("password").is_none(), "{}", reply.body);
    assert_eq!(reply.body["userName"], "test.user@okta.local");
    assert_eq!(reply.body["externalId"], "00ujl29u0le5T6Aj10h7");
    // The lookup in another letter case finds them now.
    let found = lookup(&push, "Test.User@OKTA.local").await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["id"], test_user.as_str());
    let jane = push
        .post(
            "/Users",
            okta_user("jane.doe@okta.local", "Jane", "Doe", "00ujl29u0le5T6Aj10h8"),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Deactivation, a password change (nothing dirsync keeps), reactivation.
    let user_path = format!("/Users/{test_user}");
    let deactivated = push
        .patch(
            &user_path,
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(deactivated["active"], false);
    push.patch(
        &user_path,
        json!([{"op": "replace", "value": {"password": "n3w-secret"}}]),
    )
    .await;
    push.patch(
        &user_path,
        json!([{"op": "replace", "value": {"active": true}}]),
    )
    .await;
    // A profile change comes as a PUT of the whole user.
    let mut renamed = okta_user(
        "test.user@okta.local",
        "Testy",
        "User",
        "00ujl29u0le5T6Aj10h7",
    );
    renamed["id"] = json!(test_user);
    renamed["displayName"] = json!("Testy User");
    push.put(&user_path, renamed).await;

    // Group push: the group with its first member, then Okta's rename-and-membership pair.
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2",
                   "members": [{"value": test_user, "display": "test.user@okta.local"}]}),
        )
        .await;
    let group_id = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["members"][0]["value"], test_user.as_str());
    let group_path = format!("/Groups/{group_id}");
    okta_rename(&push, &group_id, "Test SCIMv2").await;
    push.patch(
        &group_path,
        json!([
            {"op": "remove", "path": format!("members[value eq \"{test_user}\"]")},
            {"op": "add", "path": "members", "value": [{"value": jane, "display": "jane.doe@okta.local"}]}
        ]),
    )
    .await;
    // Again, changing nothing: jane is a member already, test.user is not.
    okta_rename(&push, &group_id, "Test SCIMv2").await;
    push.patch(
        &group_path,
        json!([
            {"op": "remove", "path": format!("members[value eq \"{test_user}\"]")},
            {"op": "add", "path": "members", "value": [{"value": jane, "display": "jane.doe@okta.local"}]}
        ]),
    )
    .await;
    // A real rename, then test.user back in.
    okta_rename(&push, &group_id, "Test SCIMv2 Renamed").await;
    let after = push
        .patch(
            &group_path,
            json!([{"op": "add", "path": "members", "value": [{"value": test_user, "display": "test.user@okta.local"}]}]),
        )
        .await;
    let mut members: Vec<&str> = after["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort_unstable();
    let mut expected = vec![test_user.as_str(), jane.as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);
    // Deprovisioning: Okta never deletes users, it deactivates them.
    push.patch(
        &format!("/Users/{jane}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;

    let events = push.events().await;
    assert_pushed(&events);
    assert_eq!(
        summaries(&events),
        [
            "user.created test.user@okta.local",
            "user.created jane.doe@okta.local",
            "user.updated test.user@okta.local raw state=\"active\"",
            "user.updated test.user@okta.local raw state=\"inactive\"",
            "user.updated test.user@okta.local display_name=\"Test User\" first_name=\"Test\" raw",
            "group.created Test SCIMv2",
            "group.user_added Test SCIMv2 test.user@okta.local",
            "group.user_added Test SCIMv2 jane.doe@okta.local",
            "group.user_removed Test SCIMv2 test.user@okta.local",
            "group.updated Test SCIMv2 Renamed name=\"Test SCIMv2\" raw",
            "group.user_added Test SCIMv2 Renamed test.user@okta.local",
            "user.updated jane.doe@okta.local raw state=\"active\"",
        ],
        "{events:#?}"
    );
    // Each request's events carry its own sync_id: the membership pair was one request.
    assert_eq!(events[7]["sync_id"], events[8]["sync_id"]);
    assert_ne!(events[6]["sync_id"], events[7]["sync_id"]);
    let deactivation = &events[2];
    assert_eq!(deactivation["data"]["state"], "inactive");
    assert_eq!(deactivation["data"]["raw_attributes"]["active"], false);
    // The password is nowhere: not in events, not in what the receiver serves.
    let everything = format!(
        "{}{}",
        serde_json::to_string(&events).unwrap(),
        serde_json::to_string(&push.list_all("Users").await).unwrap()
    );
    assert!(!everything.contains("1mz050nq") && !everything.contains("n3w-secret"));
    assert!(!push.log().contains("1mz050nq") && !push.log().contains("n3w-secret"));
    // Triage: the requests behind test.user, each event's sync_id the request that made it,
    // the bodies kept with the password redacted.
    let report = push.setup.inspect("okta", "test.user@okta.local");
    let requests = report["idp_requests"].as_array().unwrap();
    for event in events.iter().filter(|e| {
        e["data"]["id"] == test_user.as_str() || e["data"]["user"]["id"] == test_user.as_str()
    }) {
        let request = requests
            .iter()
            .find(|r| r["id"] == event["sync_id"])
            .unwrap_or_else(|| panic!("no request {} in {report:#}", event["sync_id"]));
        let seq = event["seq"].as_u64().unwrap();
        assert!(
            request["first_seq"].as_u64().unwrap() <= seq
                && seq <= request["last_seq"].as_u64().unwrap(),
            "{request} {event}"
        );
    }
    let deactivation_request = requests
        .iter()
        .find(|r| r["id"] == events[2]["sync_id"])
        .unwrap();
    assert_eq!(deactivation_request["method"], "PATCH");
    assert_eq!(deactivation_request["status"], 200);
    let created_request = requests
        .iter()
        .find(|r| r["method"] == "POST" && r["path"] == "/Users")
        .unwrap();
    assert!(
        created_request["body"]
            .as_str()
            .unwrap()
            .contains("[redacted]"),
        "{created_request}"
    );
    // The password change made no event, and is there too, its value redacted.
    assert!(
        requests.iter().any(|r| r["first_seq"].is_null()
            && r["body"]
                .as_str()
                .unwrap_or_default()
                .contains("\"password\":\"[redacted]\"")),
        "{report:#}"
    );
    let stored = serde_json::to_string(&report).unwrap();
    assert!(!stored.contains("1mz050nq") && !stored.contains("n3w-secret"));
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_wizard_session_puts_whole_objects() {
    let push = Push::start("okta-wizard", "", "").await;
    let alice = push
        .post(
            "/Users",
            okta_user("alice@corp.example", "Alice", "Anders", "00u-alice"),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = push
        .post(
            "/Users",
            okta_user("bob@corp.example", "Bob", "Brown", "00u-bob"),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // A group with its members in the POST.
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering",
                   "members": [{"value": alice, "display": "alice@corp.example"},
                               {"value": bob, "display": "bob@corp.example"}]}),
        )
        .await;
    let group_id = group["id"].as_str().unwrap().to_owned();
    let group_path = format!("/Groups/{group_id}");

    // Every change is a PUT of the whole object: the user deactivated, with a new title.
    let mut alice_now = okta_user("alice@corp.example", "Alice", "Anders", "00u-alice");
    alice_now["id"] = json!(alice);
    alice_now["title"] = json!("Staff Engineer");
    alice_now["active"] = json!(false);
    let put = push
        .put(&format!("/Users/{alice}"), alice_now.clone())
        .await;
    assert_eq!(put["active"], false);
    assert_eq!(put["title"], "Staff Engineer");
    assert!(put.get("password").is_none());
    // The same PUT again changes nothing.
    push.put(&format!("/Users/{alice}"), alice_now.clone())
        .await;
    // Reactivated; a PUT without `title` removes it (a PUT replaces the whole resource).
    alice_now["active"] = json!(true);
    alice_now.as_object_mut().unwrap().remove("title");
    let put = push.put(&format!("/Users/{alice}"), alice_now).await;
    assert!(put.get("title").is_none(), "{put}");

    // The group renamed with its members in one PUT: bob leaves.
    push.put(
        &group_path,
        json!({"schemas": [GROUP_SCHEMA], "id": group_id, "displayName": "Engineering Team",
               "members": [{"value": alice, "display": "alice@corp.example"}]}),
    )
    .await;
    // The same PUT again: no event.
    push.put(
        &group_path,
        json!({"schemas": [GROUP_SCHEMA], "id": group_id, "displayName": "Engineering Team",
               "members": [{"value": alice, "display": "alice@corp.example"}]}),
    )
    .await;
    // A PUT without members empties the group.
    let emptied = push
        .put(
            &group_path,
            json!({"schemas": [GROUP_SCHEMA], "id": group_id, "displayName": "Engineering Team"}),
        )
        .await;
    assert!(
        emptied["members"].as_array().is_none_or(Vec::is_empty),
        "{emptied}"
    );
    // A PUT that changes the id is refused, and changes nothing.
    let refused = push
        .request(
            Method::PUT,
            &group_path,
            Some(json!({"schemas": [GROUP_SCHEMA], "id": bob, "displayName": "Hijack"})),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.body["scimType"], "mutability");
    // Okta unassigns the group from the app: the group is deleted.
    push.put(
        &group_path,
        json!({"schemas": [GROUP_SCHEMA], "id": group_id, "displayName": "Engineering Team",
               "members": [{"value": bob}]}),
    )
    .await;
    push.delete(&group_path).await;
    let gone = push.get(&group_path).await;
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );

    let events = push.events().await;
    assert_pushed(&events);
    assert_eq!(
        summaries(&events),
        [
            "user.created alice@corp.example",
            "user.created bob@corp.example",
            "group.created Engineering",
            "group.user_added Engineering alice@corp.example",
            "group.user_added Engineering bob@corp.example",
            // `title` is the default `job_title` custom attribute.
            "user.updated alice@corp.example custom_attributes={} raw state=\"active\"",
            "user.updated alice@corp.example custom_attributes={\"job_title\":\"Staff Engineer\"} raw state=\"inactive\"",
            "group.updated Engineering Team name=\"Engineering\" raw",
            // A removal shows the group as it was before the request (as in a sync: the
            // renderer takes removals from the stored side).
            "group.user_removed Engineering bob@corp.example",
            "group.user_removed Engineering Team alice@corp.example",
            "group.user_added Engineering Team bob@corp.example",
            "group.user_removed Engineering Team bob@corp.example",
            "group.deleted Engineering Team",
        ],
        "{events:#?}"
    );
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_deactivation_is_a_deletion_under_suspended_users_delete() {
    let push = Push::start("okta-delete", "suspended_users = \"delete\"", "").await;
    let user = push
        .post(
            "/Users",
            okta_user("leaver@corp.example", "Lee", "Ver", "00u-leaver"),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    push.post(
        "/Groups",
        json!({"schemas": [GROUP_SCHEMA], "displayName": "Sales", "members": [{"value": user}]}),
    )
    .await;
    let path = format!("/Users/{user}");
    push.patch(
        &path,
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    // Still served to Okta (it may reactivate them), but gone from the directory.
    assert_eq!(push.get(&path).await.body["active"], false);
    let events = push.events().await;
    assert_eq!(
        summaries(&events),
        [
            "user.created leaver@corp.example",
            "group.created Sales",
            "group.user_added Sales leaver@corp.example",
            "group.user_removed Sales leaver@corp.example",
            "user.deleted leaver@corp.example",
        ]
    );
    push.assert_fold_matches(Rules {
        drop_inactive: true,
        ..Rules::default()
    })
    .await;
    // Reactivation brings them back, with the membership Okta never removed.
    push.patch(&path, json!([{"op": "replace", "value": {"active": true}}]))
        .await;
    let events = push.events_after(5).await;
    assert_eq!(
        summaries(&events),
        [
            "user.created leaver@corp.example",
            "group.user_added Sales leaver@corp.example"
        ]
    );
    assert_eq!(events[0]["data"]["id"], user.as_str());
    push.assert_fold_matches(Rules {
        drop_inactive: true,
        ..Rules::default()
    })
    .await;
}
