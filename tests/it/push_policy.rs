//! Tenant policy on pushed writes, through the real `dirsync run`: `[roles]` through nested
//! groups (a group named by its displayName, as SCIM groups have no email), and `[attributes]`
//! read from Okta's flat URN-prefixed keys and Entra's nested extension objects alike. Each
//! write re-judges only what it touched, and the events say what changed.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use crate::push_support::{
    assert_pushed, summaries, Push, Rules, ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA,
};

const ACME: &str = "urn:example:params:scim:schemas:extension:acme:1.0:User";

const POLICY: &str = r#"
[roles]
Admins = "admin"
Engineering = "engineer"
default_role = "member"

[attributes]
department = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"
badge = "urn:example:params:scim:schemas:extension:acme:1.0:User:badge"
"#;

/// Okta sends extension attributes as flat keys with the URN in front.
fn okta_user(login: &str, department: &str, badge: &str) -> Value {
    let mut user = json!({"schemas": [USER_SCHEMA], "userName": login, "active": true,
                          "name": {"givenName": "Ok", "familyName": "Ta"}});
    user[format!("{ENTERPRISE}:department")] = json!(department);
    user[format!("{ACME}:badge")] = json!(badge);
    user
}

/// Entra nests them in an object under the schema URN.
fn entra_user(upn: &str, department: &str, badge: &str) -> Value {
    json!({"schemas": [USER_SCHEMA, ENTERPRISE, ACME], "userName": upn, "active": true,
           "name": {"givenName": "En", "familyName": "Tra"},
           ENTERPRISE: {"department": department}, ACME: {"badge": badge}})
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_through_nested_groups_and_custom_attributes_from_both_urn_forms() {
    let push = Push::start("policy", "", POLICY).await;
    let ada = id(&push
        .post("/Users", okta_user("ada@corp.example", "Eng", "B-1"))
        .await);
    let bob = id(&push
        .post("/Users", entra_user("bob@corp.example", "Eng", "B-2"))
        .await);

    let events = push.events().await;
    for (event, badge) in events.iter().zip(["B-1", "B-2"]) {
        assert_eq!(
            event["data"]["custom_attributes"],
            json!({"department": "Eng", "badge": badge}),
            "{event}"
        );
        assert_eq!(event["data"]["roles"], json!(["member"]));
    }

    // platform ⊂ engineering: bob is an engineer through platform.
    let platform = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Platform", "members": [{"value": bob}]}),
        )
        .await);
    let engineering = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering",
                   "members": [{"value": platform, "type": "Group"}]}),
        )
        .await);
    let admins = id(&push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Admins", "members": [{"value": ada}]}),
        )
        .await);
    // Platform leaves engineering, and comes back (Entra's and Okta's dialects).
    let engineering_path = format!("/Groups/{engineering}");
    push.patch(
        &engineering_path,
        json!([{"op": "Remove", "path": "members", "value": [{"value": platform}]}]),
    )
    .await;
    push.patch(
        &engineering_path,
        json!([{"op": "add", "path": "members", "value": [{"value": platform, "type": "Group"}]}]),
    )
    .await;
    // Renaming the group [roles] names takes the role away.
    push.patch(
        &format!("/Groups/{admins}"),
        json!([{"op": "replace", "value": {"id": admins, "displayName": "Administrators"}}]),
    )
    .await;
    // The custom attributes change by URN path (Entra) and by flat no-path key (Okta).
    push.patch(
        &format!("/Users/{bob}"),
        json!([{"op": "Replace", "path": format!("{ACME}:badge"), "value": "B-3"}]),
    )
    .await;
    push.patch(
        &format!("/Users/{ada}"),
        json!([{"op": "replace", "value": {format!("{ENTERPRISE}:department"): "Sales"}}]),
    )
    .await;

    let events = push.events().await;
    assert_pushed(&events);
    assert_eq!(
        summaries(&events),
        [
            "user.created ada@corp.example",
            "user.created bob@corp.example",
            "group.created Platform",
            "group.user_added Platform bob@corp.example",
            "group.created Engineering",
            "user.updated bob@corp.example roles=[\"member\"]",
            "group.user_added Engineering bob@corp.example",
            "group.created Admins",
            "user.updated ada@corp.example roles=[\"member\"]",
            "group.user_added Admins ada@corp.example",
            "user.updated bob@corp.example roles=[\"engineer\"]",
            "group.user_removed Engineering bob@corp.example",
            "user.updated bob@corp.example roles=[\"member\"]",
            "group.user_added Engineering bob@corp.example",
            // One request: user updates come before group updates (the diff's order).
            "user.updated ada@corp.example roles=[\"admin\"]",
            "group.updated Administrators name=\"Admins\" raw",
            "user.updated bob@corp.example custom_attributes={\"badge\":\"B-2\",\"department\":\"Eng\"} raw",
            "user.updated ada@corp.example custom_attributes={\"badge\":\"B-1\",\"department\":\"Eng\"} raw",
        ],
        "{events:#?}"
    );
    let folded = push.assert_fold_matches(Rules::default()).await;
    assert_eq!(folded.users[&bob]["roles"], json!(["engineer"]));
    assert_eq!(folded.users[&ada]["roles"], json!(["member"]));
    assert_eq!(
        folded.users[&bob]["custom_attributes"],
        json!({"department": "Eng", "badge": "B-3"})
    );
    assert_eq!(
        folded.users[&ada]["custom_attributes"],
        json!({"department": "Sales", "badge": "B-1"})
    );
}
