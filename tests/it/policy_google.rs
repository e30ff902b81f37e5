//! Tenant policy end to end against the Google Directory API emulator: the real `dirsync`
//! binary syncs a fixture organisation with `[filters] org_units`, `[filters] groups` globs,
//! `users = "group_members"`, `[roles]` through nested groups, `[attributes]` (custom schemas,
//! external ids, manager relations) and `suspended_users = "delete"`, and
//! `dirsync inspect --json` explains every "why not" for Google users. The SCIM counterpart
//! is `tests/policy_scim.rs`.
#![allow(clippy::unwrap_used)]

use dirsync_testkit::emulator::{EmulatorProcess, GoogleEmulator};
use serde_json::{json, Value};

fn user(email: &str, given: &str, org_unit: &str) -> Value {
    json!({"primaryEmail": email, "name": {"givenName": given, "familyName": "Test"},
           "orgUnitPath": org_unit})
}

/// Org units /Engineering{,/Platform}, /Sales, /Support. Groups: eng-all ⊃ platform ⊃ bob,
/// eng-all ∋ alice, gina; eng-leads {alice, erin}; admins {admin, alice}; sales {carol, dave};
/// mixed {carol, bob}. frank is in no group. dave and gina are suspended. The custom schema
/// `HR.CostCenter` is the one the emulator generates.
fn fixture() -> Value {
    let mut alice = user("alice@example.com", "Alice", "/Engineering");
    alice["customSchemas"] = json!({"HR": {"CostCenter": "CC-7", "EmployeeId": "HR-1"}});
    alice["externalIds"] = json!([{"value": "E-001", "type": "organization"}]);
    alice["relations"] = json!([{"value": "admin@example.com", "type": "manager"}]);
    alice["aliases"] = json!(["a.test@example.com"]);
    let mut bob = user("bob@example.com", "Bob", "/Engineering/Platform");
    bob["relations"] = json!([{"value": "alice@example.com", "type": "manager"}]);
    bob["customSchemas"] = json!({"HR": {"CostCenter": "CC-8"}});
    let mut dave = user("dave@example.com", "Dave", "/Sales");
    dave["suspended"] = json!(true);
    let mut gina = user("gina@example.com", "Gina", "/Engineering");
    gina["suspended"] = json!(true);
    json!({
        "domain": "example.com",
        "org_units": ["/Engineering/Platform", "/Sales", "/Support"],
        "users": [
            user("admin@example.com", "Ada", "/"),
            alice, bob,
            user("carol@example.com", "Carol", "/Sales"),
            dave,
            user("erin@example.com", "Erin", "/Engineering"),
            user("frank@example.com", "Frank", "/Support"),
            gina
        ],
        "groups": [
            {"email": "platform@example.com", "name": "Platform", "members": [{"email": "bob@example.com"}]},
            {"email": "eng-all@example.com", "name": "Engineering", "members": [
                {"email": "alice@example.com"}, {"email": "gina@example.com"},
                {"email": "platform@example.com", "type": "GROUP"}]},
            {"email": "eng-leads@example.com", "name": "Leads", "members": [
                {"email": "alice@example.com"}, {"email": "erin@example.com"}]},
            {"email": "admins@example.com", "name": "Admins", "members": [
                {"email": "admin@example.com"}, {"email": "alice@example.com"}]},
            {"email": "sales@example.com", "name": "Sales", "members": [
                {"email": "carol@example.com"}, {"email": "dave@example.com"}]},
            {"email": "mixed@example.com", "name": "Mixed", "members": [
                {"email": "carol@example.com"}, {"email": "bob@example.com"}]}
        ]
    })
}

const ROLES_AND_ATTRIBUTES: &str = r#"
[roles]
"eng-all@example.com" = "engineer"
"admins@example.com" = "admin"
default_role = "member"

[attributes]
cost_center = "customSchemas.HR.CostCenter"
employee_id = "externalIds[type=organization].value"
manager = "relations[type=manager].value"
"#;

fn roles_of(inspect: &Value) -> Vec<String> {
    inspect["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap().to_owned())
        .collect()
}

fn attribute(inspect: &Value, name: &str) -> Value {
    inspect["custom_attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| a["value"].clone())
        .unwrap_or(Value::Null)
}

fn group_entry<'a>(inspect: &'a Value, email: &str) -> &'a Value {
    inspect["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == email || g["email"] == email)
        .unwrap_or_else(|| panic!("{email} not in {}", inspect["groups"]))
}

fn emails_of(events: &[Value], kind: &str) -> Vec<String> {
    let mut emails: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["data"]["email"].as_str().unwrap().to_owned())
        .collect();
    emails.sort();
    emails
}

fn position(events: &[Value], kind: &str, user: &str, group: Option<&str>) -> usize {
    events
        .iter()
        .position(|e| {
            e["type"] == kind
                && (e["data"]["email"] == user
                    || (e["data"]["user"]["email"] == user
                        && group.is_none_or(|g| e["data"]["group"]["email"] == g)))
        })
        .unwrap_or_else(|| panic!("no {kind} for {user} {group:?} in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn org_units_roles_and_attributes_against_the_emulator() {
    let emulator = GoogleEmulator::start(&fixture());
    let config = crate::support::config_dir(false);
    config.emulator_tenant(
        "acme",
        &emulator,
        "",
        &format!("[filters]\norg_units = [\"/Engineering\"]\n{ROLES_AND_ATTRIBUTES}"),
    );

    let report = config.sync_committed("acme");
    // The subtree of /Engineering: alice, bob (/Engineering/Platform), erin, gina (suspended,
    // kept inactive).
    let events = config.events("acme", 0);
    assert_eq!(
        emails_of(&events, "user.created"),
        [
            "alice@example.com",
            "bob@example.com",
            "erin@example.com",
            "gina@example.com"
        ],
        "{report}"
    );
    assert_eq!(
        config.inspect("acme", "gina@example.com")["user"]["state"],
        "inactive"
    );

    // Roles: through nested groups, and from a group whose other members are out of scope.
    let alice = config.inspect("acme", "alice@example.com");
    assert_eq!(roles_of(&alice), ["admin", "engineer"]);
    assert_eq!(
        config.inspect("acme", "A.Test@example.com")["user"]["id"],
        alice["user"]["id"],
        "found by alias"
    );
    let bob = config.inspect("acme", "bob@example.com");
    assert_eq!(roles_of(&bob), ["engineer"]);
    assert_eq!(
        bob["roles"][0]["granted_by"][0]["path"],
        "eng-all@example.com ← platform@example.com ← you"
    );
    assert_eq!(group_entry(&bob, "eng-all@example.com")["direct"], false);
    assert_eq!(
        roles_of(&config.inspect("acme", "erin@example.com")),
        ["member"]
    );

    // Attributes: a custom schema field (the source asks for projection=full), an external
    // id, the manager's email; unresolved paths give nothing.
    assert_eq!(attribute(&alice, "cost_center"), "CC-7");
    assert_eq!(attribute(&alice, "employee_id"), "E-001");
    assert_eq!(attribute(&alice, "manager"), "admin@example.com");
    assert_eq!(attribute(&bob, "cost_center"), "CC-8");
    assert_eq!(attribute(&bob, "manager"), "alice@example.com");
    assert_eq!(attribute(&bob, "employee_id"), Value::Null);
    assert!(bob["unresolved_attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "employee_id"));
    let created = events
        .iter()
        .find(|e| e["type"] == "user.created" && e["data"]["email"] == "alice@example.com")
        .unwrap();
    assert_eq!(created["data"]["custom_attributes"]["cost_center"], "CC-7");
    assert_eq!(
        created["data"]["raw_attributes"]["customSchemas"]["HR"]["EmployeeId"],
        "HR-1"
    );

    // Why not: carol is only seen as a member of groups; frank is in no group, so never seen;
    // admin is not listed either, but seen in admins.
    let carol = config.inspect("acme", "carol@example.com");
    assert_eq!(carol["stored"], false);
    assert_eq!(carol["reason"], "outside_org_units");
    assert!(
        carol["why"].as_str().unwrap().contains("/Engineering"),
        "{carol}"
    );
    let frank = config.inspect("acme", "frank@example.com");
    assert_eq!(frank["reason"], "never_seen");
    assert!(
        frank["why"].as_str().unwrap().contains("org_units"),
        "{frank}"
    );
    let run = config.run(&["inspect", "acme", "carol@example.com"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout.contains("outside the org-unit filter"),
        "{run:?}"
    );

    // No change, no events.
    let (code, report) = config.sync("acme", &[]);
    assert_eq!((code, report["outcome"].as_str()), (0, Some("no_changes")));
    let last = report["last_seq"].as_u64().unwrap();

    // bob moves to /Sales: he leaves the scope, his memberships go first.
    emulator
        .directory()
        .update_user("bob@example.com", &json!({"orgUnitPath": "/Sales"}))
        .unwrap();
    let report = config.sync_committed("acme");
    assert_eq!(report["counts"]["user.deleted"], 1, "{report}");
    let events = config.events("acme", last);
    let deleted = position(&events, "user.deleted", "bob@example.com", None);
    for group in ["platform@example.com", "eng-all@example.com"] {
        assert!(
            position(
                &events,
                "group.user_removed",
                "bob@example.com",
                Some(group)
            ) < deleted,
            "{events:#?}"
        );
    }
    let bob = config.inspect("acme", "bob@example.com");
    assert_eq!(bob["reason"], "outside_org_units", "{bob}");
    assert_eq!(bob["exclusion"]["detail"], "/Sales");
    assert!(
        bob["why"]
            .as_str()
            .unwrap()
            .contains("the user is in /Sales"),
        "{bob}"
    );
    assert!(bob["left_store"]
        .as_str()
        .unwrap()
        .starts_with("user.deleted on sync"));

    // Back in scope: created again, with his memberships.
    emulator
        .directory()
        .update_user(
            "bob@example.com",
            &json!({"orgUnitPath": "/Engineering/Platform"}),
        )
        .unwrap();
    let report = config.sync_committed("acme");
    assert_eq!(report["counts"]["user.created"], 1, "{report}");
    assert_eq!(
        roles_of(&config.inspect("acme", "bob@example.com")),
        ["engineer"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn group_globs_group_members_and_suspended_users_against_the_emulator() {
    let emulator = GoogleEmulator::start(&fixture());
    let config = crate::support::config_dir(false);
    config.emulator_tenant(
        "acme",
        &emulator,
        "suspended_users = \"delete\"",
        &format!(
            "[filters]\ngroups = [\"eng-*@example.com\", \"ADMINS@example.com\"]\nusers = \"group_members\"\n{ROLES_AND_ATTRIBUTES}"
        ),
    );
    let report = config.sync_committed("acme");
    let events = config.events("acme", 0);
    // eng-all (bob through platform, which is not synced), eng-leads, admins; gina and dave
    // suspended, carol only in unsynced groups, frank in none.
    assert_eq!(
        emails_of(&events, "user.created"),
        [
            "admin@example.com",
            "alice@example.com",
            "bob@example.com",
            "erin@example.com"
        ],
        "{report}"
    );
    let mut groups: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "group.created")
        .map(|e| e["data"]["email"].as_str().unwrap())
        .collect();
    groups.sort_unstable();
    assert_eq!(
        groups,
        [
            "admins@example.com",
            "eng-all@example.com",
            "eng-leads@example.com"
        ]
    );

    let bob = config.inspect("acme", "bob@example.com");
    assert_eq!(roles_of(&bob), ["engineer"]);
    assert_eq!(
        group_entry(&bob, "eng-all@example.com")["path"],
        "eng-all@example.com ← platform@example.com ← you"
    );
    assert_eq!(bob["direct_groups"][0]["synced"], false);
    assert_eq!(
        roles_of(&config.inspect("acme", "admin@example.com")),
        ["admin"]
    );
    let engineering = config.inspect("acme", "eng-all@example.com");
    assert_eq!(engineering["filter"]["matched"], "eng-*@example.com");
    assert_eq!(engineering["child_groups"][0]["synced"], false);

    // Why not.
    let carol = config.inspect("acme", "carol@example.com");
    assert_eq!(carol["reason"], "not_in_synced_group");
    assert_eq!(
        carol["exclusion"]["detail"],
        "mixed@example.com, sales@example.com"
    );
    let frank = config.inspect("acme", "frank@example.com");
    assert_eq!(frank["reason"], "not_in_synced_group");
    assert_eq!(frank["exclusion"]["detail"], Value::Null);
    for suspended in ["dave@example.com", "gina@example.com"] {
        let answer = config.inspect("acme", suspended);
        assert_eq!(answer["reason"], "suspended_dropped", "{answer}");
    }
    let sales = config.inspect("acme", "sales@example.com");
    assert_eq!(
        (sales["kind"].as_str(), sales["reason"].as_str()),
        (Some("group"), Some("group_filter"))
    );
    assert_eq!(sales["filter"]["synced"], false);
    let nobody = config.inspect("acme", "nobody@example.com");
    assert_eq!(nobody["reason"], "never_seen");
    let run = config.run(&["inspect", "acme", "carol@example.com"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("only in groups that [filters] groups leaves out (mixed@example.com, sales@example.com)"),
        "{run:?}"
    );
    let last = config.events("acme", 0).len() as u64;

    // alice is suspended: dropped, memberships first; her roles are gone with her.
    let dir = emulator.directory();
    dir.update_user("alice@example.com", &json!({"suspended": true}))
        .unwrap();
    // erin is deleted upstream.
    dir.delete_user("erin@example.com").unwrap();
    let report = config.sync_committed("acme");
    assert_eq!(report["counts"]["user.deleted"], 2, "{report}");
    let events = config.events("acme", last);
    let deleted = position(&events, "user.deleted", "alice@example.com", None);
    for group in [
        "eng-all@example.com",
        "eng-leads@example.com",
        "admins@example.com",
    ] {
        assert!(
            position(
                &events,
                "group.user_removed",
                "alice@example.com",
                Some(group)
            ) < deleted
        );
    }
    let alice = config.inspect("acme", "alice@example.com");
    assert_eq!(alice["reason"], "suspended_dropped", "{alice:#}");
    assert!(alice["left_store"]
        .as_str()
        .unwrap()
        .starts_with("user.deleted on sync"));
    let erin = config.inspect("acme", "erin@example.com");
    assert_eq!(erin["reason"], "deleted_upstream", "{erin}");
    assert!(erin["why"]
        .as_str()
        .unwrap()
        .contains("user.deleted on sync"));

    // Reactivated: created again, with her roles and attributes.
    let last = last + events.len() as u64;
    dir.update_user("alice@example.com", &json!({"suspended": false}))
        .unwrap();
    let report = config.sync_committed("acme");
    assert_eq!(report["counts"]["user.created"], 1, "{report}");
    let events = config.events("acme", last);
    let created = &events[position(&events, "user.created", "alice@example.com", None)];
    assert_eq!(created["data"]["roles"], json!(["admin", "engineer"]));
    assert_eq!(created["data"]["state"], "active");
    assert_eq!(created["data"]["custom_attributes"]["cost_center"], "CC-7");
}

#[test]
fn an_org_unit_that_does_not_exist_fails_the_run_naming_the_key() {
    let emulator = EmulatorProcess::start(&crate::support::dirsync(), &fixture());
    let config = crate::support::config_dir(false);
    config.google_tenant(
        "acme",
        &emulator.base_url,
        &emulator.key_json,
        "admin@example.com",
        "",
        "[filters]\norg_units = [\"/Engineering\", \"/Enginering\"]\n",
    );
    let (code, report) = config.sync("acme", &[]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["outcome"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("org_units[1]") && error.contains("/Enginering"),
        "{error}"
    );
    assert!(
        error.contains("/Engineering"),
        "lists the real ones: {error}"
    );
    // Nothing was committed.
    assert!(config.events("acme", 0).is_empty());
    let run = config.run(&["sync", "acme"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("org_units[1]"), "{run:?}");

    // An org unit without a leading slash is a config error, found without connecting.
    config.google_tenant(
        "acme",
        &emulator.base_url,
        &emulator.key_json,
        "admin@example.com",
        "",
        "[filters]\norg_units = [\"Engineering\"]\n",
    );
    let run = config.run(&["check-config"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("org_units"), "{run:?}");
}
