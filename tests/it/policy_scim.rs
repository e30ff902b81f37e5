//! Tenant policy end to end against a real SCIM server (scim2-server on loopback): the real
//! `dirsync` binary syncs with [filters], [roles] and [attributes] from a temp config, and
//! `dirsync inspect --json` explains users and groups, including every "why not" case.
#![allow(clippy::unwrap_used)]

use dirsync_testkit::scim::{ScimServer, Spc, ENTERPRISE, TOKEN};
use dirsync_testkit::{ConfigDir, Run};
use serde_json::{json, Value};

/// A temp config folder with one SCIM tenant, `acme`.
struct Setup {
    dir: ConfigDir,
    base_url: String,
}

impl Setup {
    fn new(base_url: &str) -> Self {
        let dir = crate::support::config_dir(false);
        dir.write("tenants/acme-token", TOKEN);
        Self {
            dir,
            base_url: base_url.to_owned(),
        }
    }

    /// Writes the tenant file: the SCIM source plus `policy` (TOML sections) and
    /// `source_extra` (keys of [source]).
    fn tenant(&self, source_extra: &str, policy: &str) {
        let text = format!(
            "schedule = \"0 0 * * * *\"\n[source]\ntype = \"scim\"\nbase_url = \"{}\"\ntoken_file = \"acme-token\"\n{source_extra}\n{policy}\n",
            self.base_url
        );
        self.dir.write_tenant("acme", &text);
    }

    fn dirsync(&self, args: &[&str]) -> (i32, String, String) {
        let Run {
            code,
            stdout,
            stderr,
        } = self.dir.run(args);
        (code, stdout, stderr)
    }

    fn sync(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["sync", "acme", "--json"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = self.dirsync(&args);
        let line = stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
        (code, serde_json::from_str(line).unwrap())
    }

    fn inspect(&self, who: &str) -> Value {
        let (_, stdout, stderr) = self.dirsync(&["inspect", "acme", who, "--json"]);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|err| panic!("inspect {who}: {err}: {stdout} {stderr}"))
    }

    fn events_after(&self, seq: u64) -> Vec<Value> {
        let (code, stdout, stderr) = self.dirsync(&["events", "acme", "--after", &seq.to_string()]);
        assert_eq!(code, 0, "{stderr}");
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn roles_of(inspect: &Value) -> Vec<String> {
    inspect["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap().to_owned())
        .collect()
}

fn group_entry<'a>(inspect: &'a Value, name: &str) -> &'a Value {
    inspect["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {}", inspect["groups"]))
}

const POLICY: &str = r#"
[roles]
admins = "admin"
engineering = "engineer"
default_role = "member"

[attributes]
employee_id = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"
dept = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User.department"
work_email = 'emails[type eq "work"].value'
cost_center = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"
"#;

/// engineering {alice, bob, platform}, platform {carol}, admins {alice, erin}, sales {dave};
/// frank in no group; gina inactive.
async fn directory(server: &ScimServer) -> std::collections::BTreeMap<String, String> {
    let mut ids = std::collections::BTreeMap::new();
    for name in ["alice", "bob", "carol", "dave", "erin", "frank", "gina"] {
        ids.insert(name.to_owned(), server.create_user(name).await);
    }
    server
        .patch(
            &format!("/Users/{}", ids["gina"]),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    let platform = server
        .create_group("platform", json!([{"value": ids["carol"]}]))
        .await;
    let engineering = server
        .create_group(
            "engineering",
            json!([{"value": ids["alice"]}, {"value": ids["bob"]}, {"value": platform, "type": "Group"}]),
        )
        .await;
    let admins = server
        .create_group(
            "admins",
            json!([{"value": ids["alice"]}, {"value": ids["erin"]}]),
        )
        .await;
    let sales = server
        .create_group("sales", json!([{"value": ids["dave"]}]))
        .await;
    ids.insert("platform".into(), platform);
    ids.insert("engineering".into(), engineering);
    ids.insert("admins".into(), admins);
    ids.insert("sales".into(), sales);
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_roles_attributes_and_inspect_against_a_scim_server() {
    let server = ScimServer::start(Spc::Default).await;
    let ids = directory(&server).await;
    let setup = Setup::new(&server.base_url);

    // 1. Everything, with roles and attributes.
    setup.tenant("", POLICY);
    let (code, report) = setup.sync(&[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["outcome"], "committed");

    let carol = setup.inspect("carol@example.com");
    assert_eq!(carol["stored"], true);
    let engineering = group_entry(&carol, "engineering");
    assert_eq!(engineering["path"], "engineering ← platform ← you");
    assert_eq!(engineering["direct"], false);
    assert_eq!(group_entry(&carol, "platform")["path"], "platform ← you");
    assert_eq!(carol["direct_groups"][0]["group"], "platform");
    assert_eq!(roles_of(&carol), ["engineer"]);
    assert_eq!(carol["roles"][0]["granted_by"][0]["group"], "engineering");
    assert_eq!(
        carol["roles"][0]["granted_by"][0]["path"],
        "engineering ← platform ← you"
    );
    let attributes: std::collections::BTreeMap<String, Value> = carol["custom_attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a.clone()))
        .collect();
    assert_eq!(attributes["employee_id"]["value"], "E-carol");
    assert_eq!(
        attributes["employee_id"]["path"],
        format!("{ENTERPRISE}:employeeNumber")
    );
    assert_eq!(attributes["dept"]["value"], "Eng");
    assert_eq!(attributes["work_email"]["value"], "Carol@Example.com");
    assert!(
        !attributes.contains_key("cost_center"),
        "unresolved paths yield nothing"
    );
    assert!(carol["unresolved_attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "cost_center"));

    // Roles: sorted, deduplicated, the default for users in no mapped group.
    assert_eq!(
        roles_of(&setup.inspect("alice@example.com")),
        ["admin", "engineer"]
    );
    let frank = setup.inspect(&ids["frank"]);
    assert_eq!(roles_of(&frank), ["member"]);
    assert_eq!(frank["roles"][0]["default_role"], true);
    // Inactive users stay (suspended_users = "inactive" is the default).
    assert_eq!(
        setup.inspect("gina@example.com")["user"]["state"],
        "inactive"
    );

    let group = setup.inspect("engineering");
    assert_eq!(group["kind"], "group");
    assert_eq!(group["filter"]["synced"], true);
    assert_eq!(group["child_groups"][0]["group"], "platform");
    let members: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        ["alice@example.com", "bob@example.com", "carol@example.com"]
    );
    assert_eq!(group["direct_members"].as_array().unwrap().len(), 2);
    assert_eq!(
        setup.inspect("platform")["parent_groups"][0]["group"],
        "engineering"
    );

    // A sync with no change emits nothing.
    let (code, report) = setup.sync(&[]);
    assert_eq!((code, report["outcome"].as_str()), (0, Some("no_changes")));
    let last = report["last_seq"].as_u64().unwrap();

    // 2. Narrow the scope: two group globs, group members only, suspended users dropped.
    setup.tenant(
        "suspended_users = \"delete\"",
        &format!("[filters]\ngroups = [\"eng*\", \"ADMINS\"]\nusers = \"group_members\"\n{POLICY}"),
    );
    let (code, report) = setup.sync(&[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["counts"]["user.deleted"], 3, "{report}");
    assert_eq!(report["counts"]["group.deleted"], 2, "{report}");
    let events = setup.events_after(last);
    let position = |kind: &str, id: &str| {
        events
            .iter()
            .position(|e| {
                e["type"] == kind && (e["data"]["id"] == id || e["data"]["user"]["id"] == id)
            })
            .unwrap_or_else(|| panic!("no {kind} for {id}"))
    };
    // dave's membership of sales goes before dave and sales themselves.
    assert!(position("group.user_removed", &ids["dave"]) < position("user.deleted", &ids["dave"]));
    assert!(
        position("group.user_removed", &ids["dave"]) < position("group.deleted", &ids["sales"])
    );

    // carol is still in engineering, through platform, which is no longer synced.
    let carol = setup.inspect("carol@example.com");
    assert_eq!(
        group_entry(&carol, "engineering")["path"],
        "engineering ← platform ← you"
    );
    assert_eq!(carol["direct_groups"][0]["synced"], false);

    let dave = setup.inspect("dave@example.com");
    assert_eq!(dave["stored"], false);
    assert_eq!(dave["reason"], "not_in_synced_group");
    assert_eq!(dave["exclusion"]["detail"], "sales");
    assert!(dave["left_store"]
        .as_str()
        .unwrap()
        .starts_with("user.deleted on sync"));
    let frank = setup.inspect("frank@example.com");
    assert_eq!(frank["reason"], "not_in_synced_group");
    assert_eq!(frank["exclusion"]["detail"], Value::Null);
    assert_eq!(
        setup.inspect("gina@example.com")["reason"],
        "suspended_dropped"
    );
    let sales = setup.inspect("sales");
    assert_eq!(
        (sales["kind"].as_str(), sales["reason"].as_str()),
        (Some("group"), Some("group_filter"))
    );
    assert_eq!(sales["filter"]["synced"], false);
    assert_eq!(setup.inspect("engineering")["filter"]["matched"], "eng*");
    let nobody = setup.inspect("nobody@example.com");
    assert_eq!(nobody["reason"], "never_seen");
    let (code, text, _) = setup.dirsync(&["inspect", "acme", "dave@example.com"]);
    assert_eq!(code, 1);
    assert!(
        text.contains("only in groups that [filters] groups leaves out (sales)"),
        "{text}"
    );

    // 3. A role change is a user.updated with the old roles.
    let (_, report) = setup.sync(&[]);
    let last = report["last_seq"].as_u64().unwrap();
    server
        .patch(
            &format!("/Groups/{}", ids["admins"]),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids["alice"])}]),
        )
        .await;
    let (code, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    let events = setup.events_after(last);
    let updated = events
        .iter()
        .find(|e| e["type"] == "user.updated" && e["data"]["id"] == ids["alice"].as_str())
        .unwrap();
    assert_eq!(updated["data"]["roles"], json!(["engineer"]));
    assert_eq!(
        updated["previous_attributes"]["roles"],
        json!(["admin", "engineer"])
    );

    // 4. Deleted upstream.
    server.delete(&format!("/Users/{}", ids["bob"])).await;
    let (code, _) = setup.sync(&[]);
    assert_eq!(code, 0);
    let bob = setup.inspect("bob@example.com");
    assert_eq!(bob["reason"], "deleted_upstream");
    assert!(
        bob["why"]
            .as_str()
            .unwrap()
            .contains("user.deleted on sync"),
        "{bob}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_typo_that_would_delete_too_much_is_refused() {
    let server = ScimServer::start(Spc::Default).await;
    let ids = directory(&server).await;
    let setup = Setup::new(&server.base_url);
    setup.tenant("", "[guard]\nmax_delete_percent = 20\nmin_deletes = 2\n");
    assert_eq!(setup.sync(&[]).0, 0);

    // "engineerign" matches nothing: every user would go.
    setup.tenant(
        "",
        "[guard]\nmax_delete_percent = 20\nmin_deletes = 2\n[filters]\ngroups = [\"engineerign\"]\nusers = \"group_members\"\n",
    );
    let (code, report) = setup.sync(&[]);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["outcome"], "refused");
    assert!(
        report["error"].as_str().unwrap().contains("[filters]"),
        "{report}"
    );
    // Nothing changed: alice is still stored, and not reported as filtered out.
    let alice = setup.inspect(&ids["alice"]);
    assert_eq!(alice["stored"], true);

    // When it is meant, --allow-mass-delete commits it.
    let (code, report) = setup.sync(&["--allow-mass-delete"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["counts"]["user.deleted"], 7);
    assert_eq!(
        setup.inspect(&ids["alice"])["reason"],
        "not_in_synced_group"
    );
}

#[test]
fn an_unparseable_attribute_path_is_a_config_error_naming_the_key() {
    let setup = Setup::new("http://127.0.0.1:9/v2");
    setup.tenant("", "[attributes]\nbadge = \"emails[type=work.value\"\n");
    let (code, _, stderr) = setup.dirsync(&["check-config"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("attributes.badge"), "{stderr}");
    let (code, _, stderr) = setup.dirsync(&["sync", "acme"]);
    assert_eq!(code, 2, "{stderr}");
}
