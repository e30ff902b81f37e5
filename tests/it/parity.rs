//! Source parity (GitHub issue 6): the same directory loaded into the Google Directory API
//! emulator and into a real SCIM server (scim2-server) yields the same event stream from the
//! real `dirsync` binary — same event types in the same order, same normalized objects —
//! except for what differs by definition between the two sources:
//!
//! - ids (each IdP mints its own), and so the order of events of one type within a step of a
//!   sync (the diff orders them by id);
//! - `raw_attributes` (each IdP's own object);
//! - group `email`: Google groups are mailing lists with an address, core SCIM groups have no
//!   email (`null`), so config names them by `name` (displayName) instead;
//! - group `description`: the core SCIM Group schema has none (scim2-server refuses it), so
//!   the Google groups here have none either;
//! - the manager attribute: Google's relation holds the manager's email (`manager_email`), the
//!   SCIM enterprise extension holds the manager's id (`manager_id`); the test checks both name
//!   the same person;
//! - `emails`: Google lists every address it routes to the user, aliases and non-editable
//!   aliases (`…@example.com.test-google-a.com`) included; the SCIM users here carry the same
//!   addresses, as an IdP provisioning those addresses would.
//!
//! The SCIM side is built from what the emulator serves (userName = the primary email, so the
//! usernames match too), then both sides get the same changes: a renamed primary email, a
//! suspension, a deletion, a member moved between groups, a nested group added, a group
//! renamed. The SCIM users come in shapes real IdPs send (no display name, the primary address
//! listed last, no address flagged primary), which must not change the normalized objects.
//!
//! The SCIM push receiver (issue 15) joins the comparison: the same users and groups pushed to
//! a `scim_push` tenant of `dirsync run` request by request, each request mirrored by the same
//! change in the emulator and a sync of the Google tenant, give the same events per request
//! (apart from the same differences, and `source` and `sync_id`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use dirsync_testkit::emulator::GoogleEmulator;
use dirsync_testkit::scim::{ScimServer, Spc, ENTERPRISE, TOKEN};
use dirsync_testkit::ConfigDir;
use serde_json::{json, Map, Value};

const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn org(title: &str, department: &str, cost_center: &str) -> Value {
    json!([{"title": title, "department": department, "costCenter": cost_center, "primary": true}])
}

/// Six users (dave suspended, erin with an alias), four groups (platform nested in
/// engineering), managers, titles and employee ids.
fn fixture() -> Value {
    json!({
        "domain": "example.com",
        "org_units": ["/Engineering/Platform", "/Sales"],
        "users": [
            {"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"},
             "organizations": org("IT Lead", "IT", "CC-100"),
             "externalIds": [{"value": "E-100", "type": "organization"}]},
            {"primaryEmail": "alice@example.com", "name": {"givenName": "Alice", "familyName": "Anders"},
             "orgUnitPath": "/Engineering", "organizations": org("Staff Engineer", "Engineering", "CC-200"),
             "externalIds": [{"value": "E-101", "type": "organization"}],
             "relations": [{"value": "admin@example.com", "type": "manager"}]},
            {"primaryEmail": "bob@example.com", "name": {"givenName": "Bob", "familyName": "Brown"},
             "orgUnitPath": "/Engineering/Platform", "organizations": org("Engineer", "Platform", "CC-210"),
             "externalIds": [{"value": "E-102", "type": "organization"}],
             "relations": [{"value": "alice@example.com", "type": "manager"}]},
            {"primaryEmail": "carol@example.com", "name": {"givenName": "Carol", "familyName": "Chen"},
             "orgUnitPath": "/Sales", "organizations": org("Account Executive", "Sales", "CC-300"),
             "externalIds": [{"value": "E-103", "type": "organization"}],
             "relations": [{"value": "admin@example.com", "type": "manager"}]},
            {"primaryEmail": "dave@example.com", "name": {"givenName": "Dave", "familyName": "Diaz"},
             "orgUnitPath": "/Sales", "suspended": true, "organizations": org("Sales Rep", "Sales", "CC-300"),
             "externalIds": [{"value": "E-104", "type": "organization"}]},
            {"primaryEmail": "erin@example.com", "name": {"givenName": "Erin", "familyName": "Evans"},
             "orgUnitPath": "/Engineering", "aliases": ["erin.e@example.com"],
             "organizations": org("Engineer", "Engineering", "CC-200"),
             "externalIds": [{"value": "E-105", "type": "organization"}],
             "relations": [{"value": "alice@example.com", "type": "manager"}]}
        ],
        "groups": [
            {"email": "platform@example.com", "name": "Platform", "members": [
                {"email": "bob@example.com"}, {"email": "erin@example.com"}]},
            {"email": "engineering@example.com", "name": "Engineering", "members": [
                {"email": "alice@example.com", "role": "OWNER"},
                {"email": "platform@example.com", "type": "GROUP"}]},
            {"email": "admins@example.com", "name": "Admins", "members": [
                {"email": "admin@example.com"}, {"email": "alice@example.com"}]},
            {"email": "sales@example.com", "name": "Sales", "members": [
                {"email": "carol@example.com"}, {"email": "dave@example.com"}]}
        ]
    })
}

/// Users in an order where a manager comes before the people they manage.
const USERS: &[&str] = &["admin", "alice", "bob", "carol", "dave", "erin"];
/// Groups in an order where a member group comes before the groups that contain it.
const GROUPS: &[&str] = &["platform", "engineering", "admins", "sales"];

const GOOGLE_POLICY: &str = r#"
[roles]
"admins@example.com" = "admin"
"engineering@example.com" = "engineer"
default_role = "member"
"#;

const SCIM_POLICY: &str = r#"
[roles]
Admins = "admin"
Engineering = "engineer"
default_role = "member"
"#;

fn first<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|item| item[key] == value)
}

/// The SCIM resource for a user as the emulator serves it: what an IdP that provisions the
/// same person sends. `scim_ids`: Google primary email → SCIM id (for the manager).
fn scim_user(google: &Value, scim_ids: &BTreeMap<String, String>) -> Value {
    let organization = first(&google["organizations"], "primary", "true")
        .or_else(|| google["organizations"].get(0))
        .cloned()
        .unwrap_or(Value::Null);
    // `primaryEmail` is the primary address: after a rename the emulator keeps the old entry
    // in `emails`, still flagged primary.
    let primary = google["primaryEmail"].as_str().unwrap();
    let emails: Vec<Value> = google["emails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let address = e["address"].as_str().unwrap();
            json!({"value": address, "primary": address.eq_ignore_ascii_case(primary)})
        })
        .collect();
    let mut enterprise = Map::new();
    if let Some(id) = first(&google["externalIds"], "type", "organization") {
        enterprise.insert("employeeNumber".into(), id["value"].clone());
    }
    enterprise.insert("department".into(), organization["department"].clone());
    enterprise.insert("costCenter".into(), organization["costCenter"].clone());
    if let Some(manager) = first(&google["relations"], "type", "manager") {
        let id = &scim_ids[manager["value"].as_str().unwrap()];
        enterprise.insert("manager".into(), json!({"value": id}));
    }
    let suspended = google["suspended"] == true || google["archived"] == true;
    let mut resource = json!({
        "schemas": [CORE_USER, ENTERPRISE],
        "userName": google["primaryEmail"],
        "name": {"givenName": google["name"]["givenName"], "familyName": google["name"]["familyName"],
                 "formatted": google["name"]["fullName"]},
        "displayName": google["name"]["fullName"],
        "title": organization["title"],
        "active": !suspended,
        "emails": emails,
        ENTERPRISE: enterprise
    });
    idp_shape(primary, &mut resource);
    resource
}

/// The same data in shapes real IdPs send: some send only the name parts (no `displayName`,
/// no `name.formatted`), some list secondary addresses before the primary one, some flag no
/// address as primary and type the main one `work`.
fn idp_shape(primary: &str, resource: &mut Value) {
    let user = resource.as_object_mut().unwrap();
    if primary.starts_with("bob@") {
        user.remove("displayName");
        user["name"].as_object_mut().unwrap().remove("formatted");
    }
    let emails = user["emails"].as_array_mut().unwrap();
    if primary.starts_with("erin@") {
        emails.reverse();
    }
    if primary.starts_with("carol") {
        for email in emails {
            let main = email["primary"] == true;
            let email = email.as_object_mut().unwrap();
            email.remove("primary");
            email.insert("type".into(), json!(if main { "work" } else { "other" }));
        }
    }
}

/// Both sides loaded with the same directory.
struct Both {
    google: GoogleEmulator,
    scim: ScimServer,
    config: ConfigDir,
    /// Google primary email (at creation) → SCIM user id; group name → SCIM group id.
    scim_users: BTreeMap<String, String>,
    scim_groups: BTreeMap<String, String>,
}

impl Both {
    async fn start() -> Self {
        let google = GoogleEmulator::start(&fixture());
        let scim = ScimServer::start(Spc::Default).await;
        let mut scim_users = BTreeMap::new();
        for name in USERS {
            let email = format!("{name}@example.com");
            let resource = scim_user(&google.user(&email), &scim_users);
            let created = scim.post("/Users", resource).await;
            scim_users.insert(email, created["id"].as_str().unwrap().to_owned());
        }
        let mut scim_groups = BTreeMap::new();
        for name in GROUPS {
            let email = format!("{name}@example.com");
            let group = google.group(&email);
            let members = Self::scim_members(&google, &email, &scim_users, &scim_groups);
            let created = scim
                .post(
                    "/Groups",
                    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                           "displayName": group["name"], "members": members}),
                )
                .await;
            scim_groups.insert(
                group["name"].as_str().unwrap().to_owned(),
                created["id"].as_str().unwrap().to_owned(),
            );
        }
        let config = crate::support::config_dir(false);
        config.emulator_tenant("google", &google, "", GOOGLE_POLICY);
        config.scim_tenant("scim", &scim.base_url, TOKEN, "", SCIM_POLICY);
        Self {
            google,
            scim,
            config,
            scim_users,
            scim_groups,
        }
    }

    /// The SCIM members of a Google group: its direct user and group members.
    fn scim_members(
        google: &GoogleEmulator,
        group: &str,
        scim_users: &BTreeMap<String, String>,
        scim_groups: &BTreeMap<String, String>,
    ) -> Vec<Value> {
        google
            .directory()
            .members(group)
            .unwrap()
            .iter()
            .map(|member| {
                let email = member["email"].as_str().unwrap();
                if member["type"] == "GROUP" {
                    let name = google.group(email)["name"].as_str().unwrap().to_owned();
                    json!({"value": scim_groups[&name], "type": "Group"})
                } else {
                    json!({"value": scim_users[email], "type": "User"})
                }
            })
            .collect()
    }

    fn scim_user_path(&self, email: &str) -> String {
        format!("/Users/{}", self.scim_users[email])
    }

    fn scim_group_path(&self, name: &str) -> String {
        format!("/Groups/{}", self.scim_groups[name])
    }

    /// Replaces the SCIM user with the Google user as it is now: a full PUT, as Okta pushes
    /// profile changes.
    async fn push_user(&self, created_as: &str, google_key: &str) {
        let mut resource = scim_user(&self.google.user(google_key), &self.scim_users);
        resource["id"] = json!(self.scim_users[created_as]);
        let url = format!("{}{}", self.scim.base_url, self.scim_user_path(created_as));
        let response = reqwest::Client::new()
            .put(&url)
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .body(resource.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            status.is_success(),
            "PUT {url}: {status} {}",
            response.text().await.unwrap()
        );
    }

    /// Syncs both tenants and returns their events after the given seqs.
    fn sync_both(&self, after: (u64, u64)) -> (Vec<Value>, Vec<Value>) {
        self.config.sync_committed("google");
        self.config.sync_committed("scim");
        (
            self.config.events("google", after.0),
            self.config.events("scim", after.1),
        )
    }
}

/// Labels that identify an object across the two sources: a user by its email when it was
/// created, a group by its name. Built from every event of the tenant so far.
fn labels(all_events: &[Value]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for event in all_events {
        let data = &event["data"];
        match event["type"].as_str().unwrap() {
            "user.created" => {
                labels.insert(
                    data["id"].as_str().unwrap().to_owned(),
                    data["email"].as_str().unwrap().to_owned(),
                );
            }
            "group.created" => {
                labels.insert(
                    data["id"].as_str().unwrap().to_owned(),
                    format!("group:{}", data["name"].as_str().unwrap()),
                );
            }
            _ => {}
        }
    }
    labels
}

/// An object (or a set of previous attributes) without what differs by design, ids replaced
/// by labels.
fn canonical_object(object: &Value, labels: &BTreeMap<String, String>) -> Value {
    let mut object = object.as_object().unwrap().clone();
    object.remove("raw_attributes");
    if let Some(id) = object.get("id").and_then(Value::as_str) {
        let label = labels
            .get(id)
            .unwrap_or_else(|| panic!("no label for id {id}"));
        object.insert("id".into(), json!(label));
    }
    if object.contains_key("name") && object.contains_key("email") && !object.contains_key("state")
    {
        // A group: Google's address vs SCIM's null.
        object.remove("email");
    }
    if let Some(Value::Object(attributes)) = object.get_mut("custom_attributes") {
        if let Some(manager) = attributes.remove("manager_id") {
            let label = labels[manager.as_str().unwrap()].clone();
            attributes.insert("manager_email".into(), json!(label));
        }
    }
    Value::Object(object)
}

fn canonical_event(event: &Value, labels: &BTreeMap<String, String>) -> Value {
    let kind = event["type"].as_str().unwrap();
    let data = if kind.starts_with("group.user_") {
        json!({"user": canonical_object(&event["data"]["user"], labels),
               "group": canonical_object(&event["data"]["group"], labels)})
    } else {
        canonical_object(&event["data"], labels)
    };
    let mut canonical = json!({"type": kind, "data": data});
    if let Some(previous) = event.get("previous_attributes") {
        canonical["previous_attributes"] = canonical_object(previous, labels);
    }
    canonical
}

/// The events as runs of one type each, each run's events canonical and sorted: the diff orders
/// events of a type by id, and ids differ between the sources.
fn runs(events: &[Value], labels: &BTreeMap<String, String>) -> Vec<(String, Vec<Value>)> {
    let mut runs: Vec<(String, Vec<Value>)> = Vec::new();
    for event in events {
        let kind = event["type"].as_str().unwrap().to_owned();
        let canonical = canonical_event(event, labels);
        match runs.last_mut() {
            Some((last, items)) if *last == kind => items.push(canonical),
            _ => runs.push((kind, vec![canonical])),
        }
    }
    for (_, items) in &mut runs {
        items.sort_by_key(Value::to_string);
    }
    runs
}

fn assert_same_stream(google: &[Value], scim: &[Value], google_all: &[Value], scim_all: &[Value]) {
    assert_same_stream_from(google, scim, google_all, scim_all, "scim");
}

/// The same for `other`, whose events have `source` `other_source`.
fn assert_same_stream_from(
    google: &[Value],
    scim: &[Value],
    google_all: &[Value],
    scim_all: &[Value],
    other_source: &str,
) {
    let google_types: Vec<&str> = google.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let scim_types: Vec<&str> = scim.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(google_types, scim_types, "event types differ");
    let google_runs = runs(google, &labels(google_all));
    let scim_runs = runs(scim, &labels(scim_all));
    for ((kind, google_items), (_, scim_items)) in google_runs.iter().zip(&scim_runs) {
        for (g, s) in google_items.iter().zip(scim_items) {
            assert_eq!(g, s, "{kind} differs:\ngoogle: {g:#}\nscim:   {s:#}");
        }
    }
    for event in google.iter().chain(scim) {
        assert!(event["seq"].as_u64().unwrap() > 0);
    }
    assert_eq!(google[0]["source"], "google");
    assert_eq!(scim[0]["source"], other_source);
}

fn counts(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts
            .entry(event["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    counts
}

fn find<'a>(events: &'a [Value], kind: &str, email: &str) -> &'a Value {
    events
        .iter()
        .find(|e| {
            e["type"] == kind
                && (e["data"]["email"] == email || e["data"]["user"]["email"] == email)
        })
        .unwrap_or_else(|| panic!("no {kind} for {email}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_directory_yields_the_same_events_from_google_and_scim() {
    let both = Both::start().await;

    // 1. The initial sync.
    let (google, scim) = both.sync_both((0, 0));
    assert_same_stream(&google, &scim, &google, &scim);
    let expected: BTreeMap<String, usize> = [
        ("user.created", 6),
        ("group.created", 4),
        // platform {bob, erin}, engineering {alice, bob, erin}, admins {admin, alice},
        // sales {carol, dave}
        ("group.user_added", 9),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts(&google), expected);

    // The normalized objects hold what the directory holds, on both sides.
    for events in [&google, &scim] {
        let alice = &find(events, "user.created", "alice@example.com")["data"];
        assert_eq!(alice["username"], "alice@example.com");
        assert_eq!(alice["display_name"], "Alice Anders");
        assert_eq!(alice["roles"], json!(["admin", "engineer"]));
        assert_eq!(alice["custom_attributes"]["employee_id"], "E-101");
        assert_eq!(alice["custom_attributes"]["job_title"], "Staff Engineer");
        assert_eq!(alice["custom_attributes"]["cost_center"], "CC-200");
        let dave = &find(events, "user.created", "dave@example.com")["data"];
        assert_eq!(dave["state"], "inactive");
        assert_eq!(dave["roles"], json!(["member"]));
        let erin = &find(events, "user.created", "erin@example.com")["data"];
        assert!(erin["emails"]
            .as_array()
            .unwrap()
            .contains(&json!({"value": "erin.e@example.com", "primary": false})));
    }
    // What differs by design.
    let google_group = &google
        .iter()
        .find(|e| e["type"] == "group.created" && e["data"]["name"] == "Engineering")
        .unwrap()["data"];
    let scim_group = &scim
        .iter()
        .find(|e| e["type"] == "group.created" && e["data"]["name"] == "Engineering")
        .unwrap()["data"];
    assert_eq!(google_group["email"], "engineering@example.com");
    assert_eq!(scim_group["email"], Value::Null);
    let google_bob = &find(&google, "user.created", "bob@example.com")["data"];
    let scim_bob = &find(&scim, "user.created", "bob@example.com")["data"];
    assert_eq!(
        google_bob["custom_attributes"]["manager_email"],
        "alice@example.com"
    );
    assert_eq!(
        scim_bob["custom_attributes"]["manager_id"].as_str(),
        Some(both.scim_users["alice@example.com"].as_str())
    );
    assert_eq!(
        google_bob["raw_attributes"]["primaryEmail"],
        "bob@example.com"
    );
    assert_eq!(scim_bob["raw_attributes"]["userName"], "bob@example.com");

    // A second sync with no change emits nothing on either side.
    for tenant in ["google", "scim"] {
        let (code, report) = both.config.sync(tenant, &[]);
        assert_eq!(
            (code, report["outcome"].as_str()),
            (0, Some("no_changes")),
            "{tenant}: {report}"
        );
    }
    let after = (google.len() as u64, scim.len() as u64);

    // 2. The same changes on both sides.
    let dir = both.google.directory();
    // carol's primary email is renamed.
    dir.update_user(
        "carol@example.com",
        &json!({"primaryEmail": "carol.chen@example.com"}),
    )
    .unwrap();
    both.push_user("carol@example.com", "carol.chen@example.com")
        .await;
    // erin is suspended.
    dir.update_user("erin@example.com", &json!({"suspended": true}))
        .unwrap();
    both.scim
        .patch(
            &both.scim_user_path("erin@example.com"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    // bob is deleted (and leaves platform, so engineering too).
    dir.delete_user("bob@example.com").unwrap();
    both.scim
        .patch(
            &both.scim_group_path("Platform"),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", both.scim_users["bob@example.com"])}]),
        )
        .await;
    both.scim
        .delete(&both.scim_user_path("bob@example.com"))
        .await;
    // alice moves from admins to sales.
    dir.remove_member("admins@example.com", "alice@example.com")
        .unwrap();
    dir.add_member("sales@example.com", &json!({"email": "alice@example.com"}))
        .unwrap();
    both.scim
        .patch(
            &both.scim_group_path("Admins"),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", both.scim_users["alice@example.com"])}]),
        )
        .await;
    both.scim
        .patch(
            &both.scim_group_path("Sales"),
            json!([{"op": "add", "path": "members", "value": [{"value": both.scim_users["alice@example.com"], "type": "User"}]}]),
        )
        .await;
    // platform becomes a member of admins too: erin becomes an admin, through it.
    dir.add_member(
        "admins@example.com",
        &json!({"email": "platform@example.com", "type": "GROUP"}),
    )
    .unwrap();
    both.scim
        .patch(
            &both.scim_group_path("Admins"),
            json!([{"op": "add", "path": "members", "value": [{"value": both.scim_groups["Platform"], "type": "Group"}]}]),
        )
        .await;

    // sales is renamed.
    dir.update_group("sales@example.com", &json!({"name": "Sales Team"}))
        .unwrap();
    both.scim
        .patch(
            &both.scim_group_path("Sales"),
            json!([{"op": "replace", "path": "displayName", "value": "Sales Team"}]),
        )
        .await;

    let (google2, scim2) = both.sync_both(after);
    let google_all = both.config.events("google", 0);
    let scim_all = both.config.events("scim", 0);
    assert_same_stream(&google2, &scim2, &google_all, &scim_all);
    let expected: BTreeMap<String, usize> = [
        // carol (email), erin (state, roles), alice (roles)
        ("user.updated", 3),
        ("group.updated", 1),
        // alice → sales, erin → admins (through platform)
        ("group.user_added", 2),
        // alice ← admins, bob ← platform and engineering
        ("group.user_removed", 3),
        ("user.deleted", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(counts(&google2), expected, "{google2:#?}");

    for events in [&google2, &scim2] {
        let sales = events
            .iter()
            .find(|e| e["type"] == "group.updated")
            .unwrap();
        assert_eq!(sales["data"]["name"], "Sales Team");
        assert_eq!(sales["previous_attributes"]["name"], "Sales");
        let carol = find(events, "user.updated", "carol.chen@example.com");
        assert_eq!(carol["data"]["username"], "carol.chen@example.com");
        assert_eq!(carol["previous_attributes"]["email"], "carol@example.com");
        assert_eq!(
            carol["previous_attributes"]["username"],
            "carol@example.com"
        );
        let erin = find(events, "user.updated", "erin@example.com");
        assert_eq!(erin["data"]["state"], "inactive");
        assert_eq!(erin["data"]["roles"], json!(["admin", "engineer"]));
        assert_eq!(erin["previous_attributes"]["state"], "active");
        let alice = find(events, "user.updated", "alice@example.com");
        assert_eq!(alice["data"]["roles"], json!(["engineer"]));
        assert_eq!(
            alice["previous_attributes"]["roles"],
            json!(["admin", "engineer"])
        );
    }
}

/// A Google tenant in `config` that runs only when forced (a yearly schedule).
fn forced_google_tenant(config: &ConfigDir, google: &GoogleEmulator) {
    config.emulator_tenant("google", google, "", GOOGLE_POLICY);
    let file = config.tenant_file("google");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("schedule = \"0 0 * * * *\"", "schedule = \"0 0 0 1 1 *\"");
    std::fs::write(file, text).unwrap();
}

/// Both tenants after one mirrored step: the Google tenant synced, both tenants' new events
/// compared, the cursors moved on.
struct Mirror {
    push: crate::push_support::Push,
    google_seq: u64,
    push_seq: u64,
}

impl Mirror {
    async fn step(&mut self, what: &str) {
        let config = &self.push.setup;
        let (code, report) = config.sync_async("google", &[]).await;
        assert_eq!(code, 0, "{what}: {report}");
        let google = config.events_async("google", self.google_seq).await;
        let pushed = self.push.events_after(self.push_seq).await;
        assert!(!google.is_empty(), "{what}: no Google events");
        let google_all = config.events_async("google", 0).await;
        let pushed_all = self.push.events().await;
        let google_types: Vec<&str> = google.iter().map(|e| e["type"].as_str().unwrap()).collect();
        let pushed_types: Vec<&str> = pushed.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(google_types, pushed_types, "{what}: event types differ");
        assert_same_stream_from(&google, &pushed, &google_all, &pushed_all, "scim_push");
        self.google_seq = google.last().unwrap()["seq"].as_u64().unwrap();
        self.push_seq = pushed.last().unwrap()["seq"].as_u64().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_directory_pushed_by_an_idp_yields_the_events_of_a_google_sync() {
    use crate::push_support::{write_push_tenant, Push};
    // Google starts with the users; the groups arrive one at a time, as an IdP pushes them.
    let mut users_only = fixture();
    users_only["groups"] = json!([]);
    let google = GoogleEmulator::start(&users_only);
    let config = crate::support::config_dir(true);
    forced_google_tenant(&config, &google);
    write_push_tenant(&config, "push", "", SCIM_POLICY);
    let mut push = Push::new(config, "push");
    push.start_daemon().await;
    let mut mirror = Mirror {
        push,
        google_seq: 0,
        push_seq: 0,
    };

    // The users, one POST each (a manager before the people they manage).
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for name in USERS {
        let email = format!("{name}@example.com");
        let mut body = scim_user(&google.user(&email), &ids);
        body["password"] = json!("pushed-secret");
        let created = mirror.push.post("/Users", body).await;
        ids.insert(email, created["id"].as_str().unwrap().to_owned());
    }
    mirror.step("the users").await;

    // Each group with its members: one POST, one sync.
    let mut group_ids: BTreeMap<String, String> = BTreeMap::new();
    for group in fixture()["groups"].as_array().unwrap() {
        let dir = google.directory();
        dir.insert_group(&json!({"email": group["email"], "name": group["name"]}))
            .unwrap();
        let mut members = Vec::new();
        for member in group["members"].as_array().unwrap() {
            dir.add_member(group["email"].as_str().unwrap(), member)
                .unwrap();
            let email = member["email"].as_str().unwrap();
            members.push(if member["type"] == "GROUP" {
                let name = google.group(email)["name"].as_str().unwrap().to_owned();
                json!({"value": group_ids[&name], "type": "Group"})
            } else {
                json!({"value": ids[email], "type": "User"})
            });
        }
        let created = mirror
            .push
            .post(
                "/Groups",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "displayName": group["name"], "members": members}),
            )
            .await;
        group_ids.insert(
            group["name"].as_str().unwrap().to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        );
        mirror.step(&format!("group {}", group["name"])).await;
    }

    let dir = google.directory();
    let user_path = |email: &str| format!("/Users/{}", ids[email]);
    let group_path = |name: &str| format!("/Groups/{}", group_ids[name]);
    // carol's primary email is renamed: Okta PUTs the whole user.
    dir.update_user(
        "carol@example.com",
        &json!({"primaryEmail": "carol.chen@example.com"}),
    )
    .unwrap();
    let mut carol = scim_user(&google.user("carol.chen@example.com"), &ids);
    carol["id"] = json!(ids["carol@example.com"]);
    mirror
        .push
        .put(&user_path("carol@example.com"), carol)
        .await;
    mirror.step("carol renamed").await;
    // erin is suspended (Okta's deactivation), and comes back (Entra's dialect), and leaves
    // again.
    dir.update_user("erin@example.com", &json!({"suspended": true}))
        .unwrap();
    mirror
        .push
        .patch(
            &user_path("erin@example.com"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    mirror.step("erin suspended").await;
    dir.update_user("erin@example.com", &json!({"suspended": false}))
        .unwrap();
    mirror
        .push
        .patch(
            &user_path("erin@example.com"),
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .await;
    mirror.step("erin reactivated").await;
    // bob is deleted: Entra's DELETE, memberships first.
    dir.delete_user("bob@example.com").unwrap();
    mirror.push.delete(&user_path("bob@example.com")).await;
    mirror.step("bob deleted").await;
    // alice leaves admins, then joins sales.
    dir.remove_member("admins@example.com", "alice@example.com")
        .unwrap();
    mirror
        .push
        .patch(
            &group_path("Admins"),
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids["alice@example.com"])}]),
        )
        .await;
    mirror.step("alice leaves admins").await;
    dir.add_member("sales@example.com", &json!({"email": "alice@example.com"}))
        .unwrap();
    mirror
        .push
        .patch(
            &group_path("Sales"),
            json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": ids["alice@example.com"]}]}]),
        )
        .await;
    mirror.step("alice joins sales").await;
    // platform joins admins: erin is an admin through it.
    dir.add_member(
        "admins@example.com",
        &json!({"email": "platform@example.com", "type": "GROUP"}),
    )
    .unwrap();
    mirror
        .push
        .patch(
            &group_path("Admins"),
            json!([{"op": "add", "path": "members", "value": [{"value": group_ids["Platform"], "type": "Group"}]}]),
        )
        .await;
    mirror.step("platform joins admins").await;
    // sales is renamed (Okta's no-path replace, its id repeated), then deleted.
    dir.update_group("sales@example.com", &json!({"name": "Sales Team"}))
        .unwrap();
    mirror
        .push
        .patch(
            &group_path("Sales"),
            json!([{"op": "replace", "value": {"id": group_ids["Sales"], "displayName": "Sales Team"}}]),
        )
        .await;
    mirror.step("sales renamed").await;
    dir.delete_group("sales@example.com").unwrap();
    mirror.push.delete(&group_path("Sales")).await;
    mirror.step("sales deleted").await;

    // Both streams end in the same directory, and the pushed one is what the receiver serves.
    let pushed = mirror.push.events().await;
    crate::push_support::assert_pushed(&pushed);
    mirror
        .push
        .assert_fold_matches(crate::push_support::Rules::default())
        .await;
    let google_all = mirror.push.setup.events_async("google", 0).await;
    let (google_fold, pushed_fold) = (
        crate::push_support::fold(&google_all),
        crate::push_support::fold(&pushed),
    );
    assert_eq!(google_fold.users.len(), pushed_fold.users.len());
    assert_eq!(google_fold.members.len(), pushed_fold.members.len());
    assert!(!serde_json::to_string(&pushed)
        .unwrap()
        .contains("pushed-secret"));
}
