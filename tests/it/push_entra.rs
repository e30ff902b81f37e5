//! Replays of Microsoft Entra ID provisioning sessions against the real `dirsync run`
//! (shared/reference/scim-push-idps.md): the default dialect (capitalised ops, `"False"`
//! strings, enterprise attributes by URN path, dotted no-path keys, a filtered path on emails
//! the user does not have, `manager` as a plain id, group lookups without members, hard
//! deletion) and the RFC-conforming one behind the `aadOptscim062020` flag. Each is checked
//! against the exact event stream and the folded state.
#![allow(clippy::unwrap_used)]

use reqwest::Method;
use serde_json::{json, Value};

use crate::push_okta::urlencode;
use crate::push_support::{
    assert_pushed, summaries, Push, Rules, ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA,
};

/// An Entra user: the UPN as `userName`, no emails, enterprise attributes nested.
fn entra_user(upn: &str, given: &str, family: &str, employee: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": upn.split('@').next().unwrap(),
        "userName": upn,
        "active": true,
        "displayName": format!("{given} {family}"),
        "name": {"formatted": format!("{given} {family}"), "familyName": family, "givenName": given},
        ENTERPRISE: {"employeeNumber": employee, "department": "Retail"}
    })
}

async fn filter(push: &Push, endpoint: &str, expression: &str, extra: &str) -> Value {
    push.expect(
        200,
        Method::GET,
        &format!("/{endpoint}?{extra}filter={}", urlencode(expression)),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_default_session() {
    let push = Push::start("entra", "", "").await;

    // "Test connection": a random user and group that do not exist.
    let none = filter(
        &push,
        "Users",
        "userName eq \"8e3c1c55-test@contoso.com\"",
        "",
    )
    .await;
    assert_eq!(none["totalResults"], 0);
    let none = filter(
        &push,
        "Groups",
        "displayName eq \"8e3c1c55-test\"",
        "excludedAttributes=members&",
    )
    .await;
    assert_eq!(none["totalResults"], 0);

    // The manager first, then the user; Entra looks each up by userName and externalId.
    let megan = push
        .post(
            "/Users",
            entra_user("MeganB@contoso.onmicrosoft.com", "Megan", "Bowen", "E-1"),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        filter(&push, "Users", "externalId eq \"AdeleV\"", "").await["totalResults"],
        0
    );
    let created = push
        .post(
            "/Users",
            entra_user("AdeleV@contoso.onmicrosoft.com", "Adele", "Vance", "E-2"),
        )
        .await;
    let adele = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created[ENTERPRISE]["employeeNumber"], "E-2");
    assert!(created["schemas"]
        .as_array()
        .unwrap()
        .contains(&json!(ENTERPRISE)));
    let by_external = filter(&push, "Users", "externalId eq \"AdeleV\"", "").await;
    assert_eq!(by_external["Resources"][0]["id"], adele.as_str());
    let path = format!("/Users/{adele}");

    // The work email on a user without emails: it becomes the user's email.
    push.patch(
        &path,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "adele.vance@contoso.com"}]),
    )
    .await;
    let found = filter(
        &push,
        "Users",
        "emails[type eq \"work\"].value eq \"adele.vance@contoso.com\"",
        "",
    )
    .await;
    assert_eq!(found["Resources"][0]["id"], adele.as_str());
    // Enterprise attributes by URN path, the manager as a bare id.
    let patched = push
        .patch(
            &path,
            json!([
                {"op": "Replace", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "Eqpj"},
                {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": megan}
            ]),
        )
        .await;
    assert_eq!(patched[ENTERPRISE]["employeeNumber"], "Eqpj");
    assert_eq!(patched[ENTERPRISE]["manager"]["value"], megan.as_str());
    // A no-path replace with dotted and URN-prefixed keys.
    let patched = push
        .patch(
            &path,
            json!([{"op": "Replace", "value": {"displayName": "Bjfe", "name.givenName": "Kkom",
                                               format!("{ENTERPRISE}:employeeNumber"): "Aklq"}}]),
        )
        .await;
    assert_eq!(patched["name"]["givenName"], "Kkom");
    assert_eq!(patched["name"]["familyName"], "Vance");
    assert_eq!(patched[ENTERPRISE]["employeeNumber"], "Aklq");
    // Soft delete and back, with booleans as strings.
    let soft = push
        .patch(
            &path,
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .await;
    assert_eq!(soft["active"], false);
    push.patch(
        &path,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await;

    // Groups: looked up without members, created empty, members added in one PATCH.
    let none = filter(
        &push,
        "Groups",
        "displayName eq \"Retail\"",
        "excludedAttributes=members&",
    )
    .await;
    assert_eq!(none["totalResults"], 0);
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "externalId": "0b7a-retail", "displayName": "Retail", "members": []}),
        )
        .await;
    let group_id = group["id"].as_str().unwrap().to_owned();
    let group_path = format!("/Groups/{group_id}");
    push.patch(
        &group_path,
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": adele}, {"$ref": null, "value": megan}]}]),
    )
    .await;
    let looked_up = filter(
        &push,
        "Groups",
        "displayName eq \"Retail\"",
        "excludedAttributes=members&",
    )
    .await;
    assert_eq!(looked_up["totalResults"], 1);
    assert_eq!(looked_up["Resources"][0]["id"], group_id.as_str());
    assert!(
        looked_up["Resources"][0].get("members").is_none(),
        "{looked_up}"
    );
    push.patch(
        &group_path,
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": megan}]}]),
    )
    .await;
    push.patch(
        &group_path,
        json!([{"op": "Replace", "path": "displayName", "value": "Retail Team"}]),
    )
    .await;
    // Hard delete: memberships go first, then the user.
    push.delete(&path).await;
    assert_eq!(push.get(&path).await.status, 404);
    let group_now = push.get(&group_path).await.body;
    assert!(
        group_now["members"].as_array().is_none_or(Vec::is_empty),
        "{group_now}"
    );

    let events = push.events().await;
    assert_pushed(&events);
    assert_eq!(
        summaries(&events),
        [
            "user.created MeganB@contoso.onmicrosoft.com",
            "user.created AdeleV@contoso.onmicrosoft.com",
            "user.updated AdeleV@contoso.onmicrosoft.com email=\"adelev@contoso.onmicrosoft.com\" emails=[] raw",
            // The enterprise attributes are the default custom attributes.
            "user.updated AdeleV@contoso.onmicrosoft.com custom_attributes={\"department\":\"Retail\",\"employee_id\":\"E-2\"} raw",
            &format!("user.updated AdeleV@contoso.onmicrosoft.com custom_attributes={{\"department\":\"Retail\",\"employee_id\":\"Eqpj\",\"manager_id\":\"{megan}\"}} display_name=\"Adele Vance\" first_name=\"Adele\" raw"),
            "user.updated AdeleV@contoso.onmicrosoft.com raw state=\"active\"",
            "user.updated AdeleV@contoso.onmicrosoft.com raw state=\"inactive\"",
            "group.created Retail",
            "group.user_added Retail AdeleV@contoso.onmicrosoft.com",
            "group.user_added Retail MeganB@contoso.onmicrosoft.com",
            "group.user_removed Retail MeganB@contoso.onmicrosoft.com",
            "group.updated Retail Team name=\"Retail\" raw",
            "group.user_removed Retail Team AdeleV@contoso.onmicrosoft.com",
            "user.deleted AdeleV@contoso.onmicrosoft.com",
        ],
        "{events:#?}"
    );
    // The email rule: the UPN until a work email arrives.
    assert_eq!(events[1]["data"]["email"], "adelev@contoso.onmicrosoft.com");
    assert_eq!(events[2]["data"]["email"], "adele.vance@contoso.com");
    assert_eq!(
        events[3]["data"]["raw_attributes"][ENTERPRISE]["manager"]["value"],
        megan.as_str()
    );
    // A group keeps its externalId in raw_attributes; it has no email.
    assert_eq!(
        events[7]["data"]["raw_attributes"]["externalId"],
        "0b7a-retail"
    );
    assert_eq!(events[7]["data"]["email"], Value::Null);
    // The hard delete was one request.
    assert_eq!(events[12]["sync_id"], events[13]["sync_id"]);
    push.assert_fold_matches(Rules::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_aadoptscim062020_session() {
    let push = Push::start("entra-rfc", "", "").await;
    let user = push
        .post(
            "/Users",
            entra_user("AlexW@contoso.onmicrosoft.com", "Alex", "Wilber", "E-7"),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = push
        .post(
            "/Users",
            entra_user(
                "DiegoS@contoso.onmicrosoft.com",
                "Diego",
                "Siciliani",
                "E-8",
            ),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/Users/{user}");
    // Lower-case ops, real booleans, RFC paths.
    push.patch(
        &path,
        json!([
            {"op": "replace", "path": "name.familyName", "value": "Wilber-Smith"},
            {"op": "replace", "path": "displayName", "value": "Alex Wilber-Smith"},
            {"op": "add", "path": "emails", "value": [{"type": "work", "primary": true, "value": "alex@contoso.com"}]}
        ]),
    )
    .await;
    push.patch(
        &path,
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let group = push
        .post(
            "/Groups",
            json!({"schemas": [GROUP_SCHEMA], "externalId": "5c1e-mark", "displayName": "Mark 8 Project Team"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group_path = format!("/Groups/{group}");
    push.patch(
        &group_path,
        json!([{"op": "add", "path": "members", "value": [{"value": user}, {"value": other}]}]),
    )
    .await;
    push.patch(
        &group_path,
        json!([{"op": "remove", "path": format!("members[value eq \"{other}\"]")}]),
    )
    .await;
    // Removing a member who is not one changes nothing; nor does adding one again.
    push.patch(
        &group_path,
        json!([
            {"op": "remove", "path": format!("members[value eq \"{other}\"]")},
            {"op": "add", "path": "members", "value": [{"value": user}]}
        ]),
    )
    .await;
    push.delete(&group_path).await;

    let events = push.events().await;
    assert_pushed(&events);
    assert_eq!(
        summaries(&events),
        [
            "user.created AlexW@contoso.onmicrosoft.com",
            "user.created DiegoS@contoso.onmicrosoft.com",
            "user.updated AlexW@contoso.onmicrosoft.com display_name=\"Alex Wilber\" email=\"alexw@contoso.onmicrosoft.com\" emails=[] last_name=\"Wilber\" raw",
            "user.updated AlexW@contoso.onmicrosoft.com raw state=\"active\"",
            "group.created Mark 8 Project Team",
            "group.user_added Mark 8 Project Team AlexW@contoso.onmicrosoft.com",
            "group.user_added Mark 8 Project Team DiegoS@contoso.onmicrosoft.com",
            "group.user_removed Mark 8 Project Team DiegoS@contoso.onmicrosoft.com",
            "group.user_removed Mark 8 Project Team AlexW@contoso.onmicrosoft.com",
            "group.deleted Mark 8 Project Team",
        ],
        "{events:#?}"
    );
    assert_eq!(events[2]["data"]["email"], "alex@contoso.com");
    push.assert_fold_matches(Rules::default()).await;
}
