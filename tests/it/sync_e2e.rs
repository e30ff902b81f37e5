//! The sync core end to end: the real `dirsync` binary against the Google Directory API
//! emulator (in this process, on loopback): initial sync, a no-change resync under
//! volatile-field churn, a day of changes, every fault kind, racing force syncs, the deletion
//! guard, dry runs and every kind of bad input.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dirsync_emulator::{Emulator, EmulatorHandle, FaultKind, FaultRule};
use dirsync_testkit::{ConfigDir, Run};
use serde_json::{json, Value};

/// 31 users (u00..u29 and the admin), four groups, one nested group, an external member and
/// the whole customer as a member.
fn fixture() -> Value {
    let mut users = vec![
        json!({"primaryEmail": "admin@example.com", "name": {"givenName": "Ada", "familyName": "Admin"}}),
    ];
    for n in 0..30 {
        users.push(json!({
            "primaryEmail": format!("u{n:02}@example.com"),
            "name": {"givenName": format!("User{n}"), "familyName": "Example"},
            "orgUnitPath": if n < 15 { "/Engineering" } else { "/Sales" },
            "externalIds": [{"type": "organization", "value": format!("E{n:03}")}],
        }));
    }
    let member = |n: u32| json!({"email": format!("u{n:02}@example.com")});
    json!({
        "domain": "example.com",
        "users": users,
        "groups": [
            {"email": "all-staff@example.com", "name": "All staff",
             "members": (0..30).map(member).chain([json!({"email": "partner@other.example"}), json!({"type": "CUSTOMER"})]).collect::<Vec<_>>()},
            {"email": "eng@example.com", "name": "Engineering",
             "members": (0..10).map(member).chain([json!({"email": "platform@example.com", "type": "GROUP"})]).collect::<Vec<_>>()},
            {"email": "platform@example.com", "name": "Platform", "members": (10..15).map(member).collect::<Vec<_>>()},
            {"email": "sales@example.com", "name": "Sales", "members": (15..25).map(member).collect::<Vec<_>>()},
        ]
    })
}

/// Users, groups and effective memberships of the fixture (eng includes platform's members).
const USERS: usize = 31;
const GROUPS: usize = 4;
const MEMBERSHIPS: usize = 30 + 15 + 5 + 10;
/// Direct member entries listed upstream (all-staff's external and customer members, eng's
/// nested group): `sync --json`'s `memberships`, before policy.
const UPSTREAM_MEMBERSHIPS: usize = 32 + 11 + 5 + 10;

struct Env {
    emulator: EmulatorHandle,
    dir: ConfigDir,
}

impl Env {
    async fn start() -> Self {
        let dir = crate::support::config_dir(false);
        let fixture_path = dir.write("org.json", fixture().to_string());
        let emulator = Emulator::builder()
            .fixture_file(&fixture_path)
            .build()
            .unwrap()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        emulator
            .write_key(&dir.path().join("tenants/key.json"))
            .unwrap();
        let env = Self { emulator, dir };
        env.tenant("acme", "");
        env
    }

    /// Writes tenant `id` against the emulator, with extra `[source]` keys.
    fn tenant(&self, id: &str, source_extra: &str) {
        let retry = if source_extra.contains("retry_max_seconds") {
            ""
        } else {
            "retry_max_seconds = 20"
        };
        let text = format!(
            "schedule = \"0 0 * * * *\"\n[source]\ntype = \"google\"\ncredentials_file = \"key.json\"\n\
             subject = \"admin@example.com\"\napi_base = \"{}\"\nrequests_per_minute = 0\n{retry}\n{source_extra}\n",
            self.emulator.base_url
        );
        self.dir.write_tenant(id, &text);
    }

    async fn dirsync(&self, args: &[&str]) -> (i32, String, String) {
        let Run {
            code,
            stdout,
            stderr,
        } = self.dir.run_async(args).await;
        (code, stdout, stderr)
    }

    /// `dirsync sync TENANT --json` (plus `extra`): exit code and the summary.
    async fn sync(&self, tenant: &str, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["sync", tenant, "--json"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = self.dirsync(&args).await;
        let summary = stdout
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("no JSON summary (exit {code}): {stdout}\n{stderr}"));
        (code, summary)
    }

    async fn events(&self, tenant: &str) -> Vec<Value> {
        let (code, stdout, stderr) = self.dirsync(&["events", tenant]).await;
        assert_eq!(code, 0, "{stderr}");
        stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    async fn status(&self, tenant: &str) -> Value {
        let (code, stdout, stderr) = self.dirsync(&["status", tenant, "--json"]).await;
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    }

    fn fault(&self, rule: FaultRule) {
        self.emulator.faults().add(rule).unwrap();
    }
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

/// Folds a whole stream into (users by id, groups by id, memberships), checking on the way
/// that every event refers only to objects that exist at its point of the stream.
type Directory = (
    BTreeMap<String, Value>,
    BTreeMap<String, Value>,
    BTreeSet<(String, String)>,
);

fn fold(events: &[Value]) -> Directory {
    let (mut users, mut groups, mut members) = (BTreeMap::new(), BTreeMap::new(), BTreeSet::new());
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event["seq"].as_u64().unwrap(),
            index as u64 + 1,
            "seq is gap-free from 1"
        );
        let data = &event["data"];
        let id = || data["id"].as_str().unwrap().to_owned();
        match event["type"].as_str().unwrap() {
            "user.created" => assert!(users.insert(id(), data.clone()).is_none()),
            "user.updated" => assert!(users.insert(id(), data.clone()).is_some()),
            "user.deleted" => {
                assert!(
                    members.iter().all(|(_, u)| *u != id()),
                    "user deleted before its memberships"
                );
                assert!(users.remove(&id()).is_some());
            }
            "group.created" => assert!(groups.insert(id(), data.clone()).is_none()),
            "group.updated" => assert!(groups.insert(id(), data.clone()).is_some()),
            "group.deleted" => {
                assert!(
                    members.iter().all(|(g, _)| *g != id()),
                    "group deleted before its memberships"
                );
                assert!(groups.remove(&id()).is_some());
            }
            "group.user_added" => {
                let key = (
                    data["group"]["id"].as_str().unwrap().to_owned(),
                    data["user"]["id"].as_str().unwrap().to_owned(),
                );
                assert!(
                    groups.contains_key(&key.0) && users.contains_key(&key.1),
                    "membership of unknown objects"
                );
                assert!(members.insert(key));
            }
            "group.user_removed" => {
                let key = (
                    data["group"]["id"].as_str().unwrap().to_owned(),
                    data["user"]["id"].as_str().unwrap().to_owned(),
                );
                assert!(members.remove(&key));
            }
            other => panic!("unknown event type {other}"),
        }
    }
    (users, groups, members)
}

fn email_of(users: &BTreeMap<String, Value>, id: &str) -> String {
    users[id]["email"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_then_volatile_churn_emits_nothing() {
    let env = Env::start().await;
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["outcome"], "committed");
    assert_eq!(summary["tenant"], "acme");
    assert_eq!(summary["users"], USERS);
    assert_eq!(summary["groups"], GROUPS);
    assert_eq!(summary["memberships"], UPSTREAM_MEMBERSHIPS);
    assert_eq!(summary["stored_users"], USERS);
    assert_eq!(summary["stored_groups"], GROUPS);
    assert_eq!(summary["stored_memberships"], MEMBERSHIPS);
    assert_eq!(summary["events"], USERS + GROUPS + MEMBERSHIPS);
    assert_eq!(summary["planned_events"], USERS + GROUPS + MEMBERSHIPS);
    assert_eq!(summary["counts"]["user.created"], USERS);
    assert_eq!(summary["counts"]["group.user_added"], MEMBERSHIPS);
    // One users page, one groups page, one members page per group.
    assert_eq!(summary["api_requests"], 1 + 1 + GROUPS);

    let events = env.events("acme").await;
    let first_membership = types(&events)
        .iter()
        .position(|t| *t == "group.user_added")
        .unwrap();
    assert!(
        types(&events)[..first_membership]
            .iter()
            .all(|t| t.ends_with(".created")),
        "creations come first"
    );
    let alice = events
        .iter()
        .find(|e| e["data"]["email"] == "u00@example.com")
        .unwrap();
    assert_eq!(alice["source"], "google");
    assert!(alice["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(alice["data"]["username"], "u00@example.com");
    assert_eq!(alice["data"]["state"], "active");
    assert_eq!(alice["data"]["custom_attributes"]["employee_id"], "E000");
    let raw = &alice["data"]["raw_attributes"];
    assert!(
        raw.get("etag").is_none() && raw.get("lastLoginTime").is_none(),
        "volatile fields are not stored: {raw}"
    );
    let added = events
        .iter()
        .find(|e| e["type"] == "group.user_added")
        .unwrap();
    assert!(
        added["data"]["user"].get("raw_attributes").is_none(),
        "membership events carry summaries"
    );

    // Logins, etags and member counts change upstream; nothing a consumer cares about does.
    env.emulator.directory().record_logins(USERS);
    env.emulator
        .directory()
        .update_group("sales@example.com", &json!({"description": null}))
        .unwrap();
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0);
    assert_eq!(summary["outcome"], "no_changes", "{summary}");
    assert_eq!(summary["events"], 0);
    assert_eq!(env.events("acme").await.len(), events.len());

    let status = env.status("acme").await;
    assert_eq!(status["stored"]["users"], USERS);
    assert_eq!(status["stored"]["memberships"], MEMBERSHIPS);
    assert_eq!(status["last_seq"], events.len());
    assert_eq!(status["last_run"]["outcome"], "no_changes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_changes_produces_exactly_the_right_events() {
    let env = Env::start().await;
    assert_eq!(env.sync("acme", &[]).await.0, 0);
    let before = env.events("acme").await.len();

    let dir = env.emulator.directory();
    dir.update_user(
        "u01@example.com",
        &json!({"primaryEmail": "u01.renamed@example.com"}),
    )
    .unwrap();
    dir.update_user("u02@example.com", &json!({"suspended": true}))
        .unwrap();
    dir.delete_user("u03@example.com").unwrap();
    dir.insert_user(&json!({"primaryEmail": "new.hire@example.com", "name": {"givenName": "New", "familyName": "Hire"}})).unwrap();
    dir.add_member(
        "sales@example.com",
        &json!({"email": "new.hire@example.com"}),
    )
    .unwrap();
    dir.delete_group("sales@example.com").unwrap();
    // Nesting: sales people are not in eng; platform moves its members under a new parent.
    dir.insert_group(&json!({"email": "leads@example.com", "name": "Leads"}))
        .unwrap();
    dir.add_member(
        "leads@example.com",
        &json!({"email": "platform@example.com", "type": "GROUP"}),
    )
    .unwrap();
    dir.remove_member("platform@example.com", "u14@example.com")
        .unwrap();

    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    let events = env.events("acme").await;
    let new = &events[before..];
    let by_type = |t: &str| new.iter().filter(|e| e["type"] == t).collect::<Vec<_>>();

    let updated = by_type("user.updated");
    let renamed = updated
        .iter()
        .find(|e| e["data"]["email"] == "u01.renamed@example.com")
        .unwrap();
    assert_eq!(renamed["previous_attributes"]["email"], "u01@example.com");
    // Google keeps the old address as an alias: one primary, the old one listed after it.
    let emails = renamed["data"]["emails"].as_array().unwrap();
    assert_eq!(
        emails[0],
        json!({"value": "u01.renamed@example.com", "primary": true})
    );
    assert!(
        emails[1..]
            .iter()
            .any(|e| e == &json!({"value": "u01@example.com", "primary": false})),
        "{emails:?}"
    );
    let suspended = updated
        .iter()
        .find(|e| e["data"]["email"] == "u02@example.com")
        .unwrap();
    assert_eq!(suspended["data"]["state"], "inactive");
    assert_eq!(suspended["previous_attributes"]["state"], "active");
    assert_eq!(updated.len(), 2, "{updated:?}");

    let deleted: Vec<_> = by_type("user.deleted")
        .iter()
        .map(|e| e["data"]["email"].clone())
        .collect();
    assert_eq!(deleted, [json!("u03@example.com")]);
    assert_eq!(by_type("user.created").len(), 1);
    assert_eq!(
        by_type("group.created")[0]["data"]["email"],
        "leads@example.com"
    );
    assert_eq!(
        by_type("group.deleted")[0]["data"]["email"],
        "sales@example.com"
    );
    // Removed: sales' 10 members, u03 from all-staff (u03 is in eng too), u14 from platform
    // and (through nesting) from eng.
    assert_eq!(
        by_type("group.user_removed").len(),
        10 + 2 + 2,
        "{:?}",
        types(new)
    );
    // Added: platform's 4 remaining members join leads (the new hire joined only sales, which is
    // gone).
    assert_eq!(by_type("group.user_added").len(), 4, "{:?}", types(new));
    assert_eq!(summary["events"], new.len());

    // Folding the whole stream gives what a fresh sync of the same directory stores.
    env.tenant("fresh", "");
    assert_eq!(env.sync("fresh", &[]).await.0, 0);
    let (users, groups, members) = fold(&events);
    let (fresh_users, fresh_groups, fresh_members) = fold(&env.events("fresh").await);
    assert_eq!(users, fresh_users);
    assert_eq!(groups, fresh_groups);
    assert_eq!(members, fresh_members);
    assert!(users.values().all(|u| u["email"] != "u03@example.com"));
    // Triage finds the renamed user by the old address.
    let (code, stdout, stderr) = env
        .dirsync(&["inspect", "acme", "u01@example.com", "--json"])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let inspected: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        inspected["user"]["email"], "u01.renamed@example.com",
        "{inspected}"
    );
    assert!(members
        .iter()
        .any(|(g, u)| groups[g]["email"] == "leads@example.com"
            && email_of(&users, u) == "u10@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_the_run_succeeds() {
    let env = Env::start().await;
    let error = |method: &str, status: u16| FaultRule {
        method: Some(method.into()),
        status: Some(status),
        retry_after: Some(0),
        ..FaultRule::default()
    };
    env.fault(error("users.list", 429));
    env.fault(FaultRule {
        reason: Some("userRateLimitExceeded".into()),
        ..error("groups.list", 403)
    });
    env.fault(FaultRule {
        html: true,
        ..error("members.list", 502)
    });
    env.fault(FaultRule {
        html: true,
        after: 1,
        ..error("members.list", 503)
    });
    env.fault(FaultRule {
        after: 2,
        ..error("members.list", 500)
    });
    env.fault(FaultRule {
        after: 3,
        ..error("members.list", 504)
    });
    // A group deleted between groups.list and members.list is gone, not empty.
    let sales = env.emulator.directory().group("sales@example.com").unwrap();
    env.fault(FaultRule {
        method: Some("members.list".into()),
        path: Some(format!("*/{}/members", sales["id"].as_str().unwrap())),
        fault: FaultKind::DeleteGroup,
        ..FaultRule::default()
    });
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["outcome"], "committed");
    assert!(summary["retries"].as_u64().unwrap() >= 6, "{summary}");
    assert_eq!(summary["groups"], GROUPS - 1);
    assert_eq!(summary["memberships"], UPSTREAM_MEMBERSHIPS - 10);
    assert_eq!(summary["stored_memberships"], MEMBERSHIPS - 10);
    assert_eq!(
        env.emulator
            .counters()
            .snapshot()
            .status("members.list", 404),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_faults_commit_nothing_and_the_next_run_catches_up() {
    let env = Env::start().await;
    env.tenant("acme", "retry_max_seconds = 2");
    assert_eq!(env.sync("acme", &[]).await.0, 0);
    let before = env.events("acme").await;

    env.emulator
        .directory()
        .delete_user("u05@example.com")
        .unwrap();
    env.emulator
        .directory()
        .update_user(
            "u06@example.com",
            &json!({"name": {"givenName": "Renamed", "familyName": "Example"}}),
        )
        .unwrap();
    let forever = |rule: FaultRule| FaultRule { times: 0, ..rule };
    let cases = [
        forever(FaultRule {
            method: Some("members.list".into()),
            page: Some(1),
            after: 2,
            status: Some(503),
            ..FaultRule::default()
        }),
        forever(FaultRule {
            method: Some("users.list".into()),
            fault: FaultKind::Truncate,
            ..FaultRule::default()
        }),
        forever(FaultRule {
            method: Some("groups.list".into()),
            status: Some(502),
            html: true,
            ..FaultRule::default()
        }),
        forever(FaultRule {
            method: Some("members.list".into()),
            status: Some(400),
            ..FaultRule::default()
        }),
    ];
    for rule in cases {
        let name = format!("{:?} {:?}", rule.fault, rule.status);
        env.emulator.faults().clear();
        env.fault(rule);
        let (code, summary) = env.sync("acme", &[]).await;
        assert_eq!(code, 1, "{name}: {summary}");
        assert_eq!(summary["outcome"], "failed", "{name}");
        assert!(
            summary["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {summary}"
        );
        assert_eq!(
            env.events("acme").await.len(),
            before.len(),
            "{name}: nothing committed"
        );
        assert_eq!(env.status("acme").await["last_run"]["outcome"], "failed");
    }
    env.emulator.faults().clear();
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    let after = env.events("acme").await;
    let new: Vec<&str> = types(&after[before.len()..]);
    assert_eq!(count(&after[before.len()..], "user.deleted"), 1, "{new:?}");
    assert_eq!(count(&after[before.len()..], "user.updated"), 1, "{new:?}");
    assert_eq!(
        count(&after[before.len()..], "group.user_removed"),
        2,
        "{new:?}"
    );
    assert_eq!(new.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_force_syncs_commit_once_and_serially() {
    let env = Env::start().await;
    env.emulator
        .faults()
        .set_latency(std::time::Duration::from_millis(30));
    let (a, b, c) = tokio::join!(
        env.sync("acme", &[]),
        env.sync("acme", &[]),
        env.sync("acme", &[])
    );
    let outcomes: BTreeMap<String, usize> =
        [a, b, c]
            .iter()
            .fold(BTreeMap::new(), |mut acc, (code, summary)| {
                assert_eq!(*code, 0, "{summary}");
                *acc.entry(summary["outcome"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                acc
            });
    assert_eq!(
        outcomes,
        BTreeMap::from([("committed".to_owned(), 1), ("no_changes".to_owned(), 2)])
    );
    let events = env.events("acme").await;
    assert_eq!(events.len(), USERS + GROUPS + MEMBERSHIPS);
    fold(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deletion_guard_refuses_mass_deletes_unless_allowed() {
    let env = Env::start().await;
    assert_eq!(env.sync("acme", &[]).await.0, 0);
    let before = env.events("acme").await.len();
    for n in 0..12 {
        env.emulator
            .directory()
            .delete_user(&format!("u{n:02}@example.com"))
            .unwrap();
    }
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 3, "{summary}");
    assert_eq!(summary["outcome"], "refused");
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains("12 of 31 users") && error.contains("--allow-mass-delete"),
        "{error}"
    );
    assert_eq!(env.events("acme").await.len(), before);
    let status = env.status("acme").await;
    assert_eq!(status["last_run"]["outcome"], "refused");
    assert_eq!(status["stored"]["users"], USERS);

    let (code, summary) = env.sync("acme", &["--allow-mass-delete"]).await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["counts"]["user.deleted"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_events_and_commits_nothing() {
    let env = Env::start().await;
    let (code, stdout, stderr) = env.dirsync(&["sync", "acme", "--dry-run"]).await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), USERS + GROUPS + MEMBERSHIPS);
    assert_eq!(lines[0]["seq"], 1);
    assert!(stdout.contains("dry_run"), "{stdout}");
    assert!(env.events("acme").await.is_empty());
    let (code, summary) = env.sync("acme", &["--dry-run"]).await;
    assert_eq!((code, summary["outcome"].as_str()), (0, Some("dry_run")));
    assert_eq!(summary["events"], USERS + GROUPS + MEMBERSHIPS);
    assert_eq!(env.status("acme").await["stored"]["users"], 0);
}

/// Replaces the tenant file, runs `sync acme`, and checks the exit code, that stderr names
/// what it should, and that nothing stored changed.
async fn expect_failure(env: &Env, tenant_text: Option<&str>, code: i32, needles: &[&str]) {
    if let Some(text) = tenant_text {
        std::fs::write(env.dir.path().join("tenants/acme.toml"), text).unwrap();
    }
    let seq_before = last_seq(env.dir.path());
    let (got, stdout, stderr) = env.dirsync(&["sync", "acme"]).await;
    assert_eq!(got, code, "stdout: {stdout}\nstderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    assert_eq!(last_seq(env.dir.path()), seq_before, "stored state changed");
}

fn last_seq(dir: &Path) -> i64 {
    let db = dir.join("state/dirsync.db");
    if !db.exists() {
        return 0;
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT coalesce(max(last_seq), 0) FROM tenants", [], |r| {
        r.get(0)
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_a_clear_usage_error() {
    let env = Env::start().await;
    assert_eq!(env.sync("acme", &[]).await.0, 0);
    let good = std::fs::read_to_string(env.dir.path().join("tenants/acme.toml")).unwrap();

    expect_failure(
        &env,
        Some("schedule = \"0 0 * * * *\"\n[source\n"),
        2,
        &["acme.toml", "line 2"],
    )
    .await;
    expect_failure(
        &env,
        Some(&format!("{good}\nsurprise = true\n")),
        2,
        &["acme.toml", "surprise"],
    )
    .await;
    expect_failure(
        &env,
        Some(&good.replace("0 0 * * * *", "every hour")),
        2,
        &["acme.toml", "schedule"],
    )
    .await;
    expect_failure(
        &env,
        Some(&good.replace("key.json", "missing.json")),
        2,
        &["acme.toml", "source.credentials_file", "missing.json"],
    )
    .await;
    std::fs::write(
        env.dir.path().join("tenants/broken.json"),
        "{\"type\": \"service_account\", \"private_key\": ",
    )
    .unwrap();
    expect_failure(
        &env,
        Some(&good.replace("key.json", "broken.json")),
        2,
        &["source.credentials_file", "not JSON"],
    )
    .await;
    std::fs::write(env.dir.path().join("tenants/acme.toml"), &good).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_and_api_failures_fail_the_run_with_the_fix() {
    let env = Env::start().await;
    assert_eq!(env.sync("acme", &[]).await.0, 0);
    env.emulator
        .directory()
        .delete_user("u07@example.com")
        .unwrap();
    let good = std::fs::read_to_string(env.dir.path().join("tenants/acme.toml")).unwrap();

    // A key the token endpoint does not know (another emulator's key, pointed at this one).
    let other = Emulator::builder()
        .users(3)
        .groups(1)
        .build()
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut foreign: Value = serde_json::from_str(&other.service_account_key_json()).unwrap();
    foreign["token_uri"] = json!(env.emulator.token_uri);
    std::fs::write(
        env.dir.path().join("tenants/foreign.json"),
        foreign.to_string(),
    )
    .unwrap();
    expect_failure(
        &env,
        Some(&good.replace("key.json", "foreign.json")),
        1,
        &["tenant acme", "authentication failed"],
    )
    .await;
    std::fs::write(env.dir.path().join("tenants/acme.toml"), &good).unwrap();

    // Delegation not granted for the scopes dirsync asks for.
    env.emulator.set_dwd_scopes(&[]);
    expect_failure(
        &env,
        None,
        1,
        &[
            "tenant acme",
            "unauthorized_client",
            "Domain-wide delegation",
        ],
    )
    .await;
    env.emulator.set_dwd_scopes(dirsync_emulator::ALL_SCOPES);

    // The impersonated user is not an admin.
    env.fault(FaultRule {
        fault: FaultKind::NotAdmin,
        times: 0,
        ..FaultRule::default()
    });
    expect_failure(&env, None, 1, &["tenant acme", "403", "admin"]).await;
    env.emulator.faults().clear();

    // Not JSON where JSON was expected.
    env.fault(FaultRule {
        method: Some("users.list".into()),
        fault: FaultKind::Truncate,
        ..FaultRule::default()
    });
    expect_failure(&env, None, 1, &["tenant acme", "cannot read"]).await;

    // The state dir cannot be created.
    std::fs::write(env.dir.path().join("not-a-dir"), "").unwrap();
    std::fs::write(
        env.dir.path().join("dirsync.toml"),
        "state_dir = \"not-a-dir/state\"\ntenants_dir = \"tenants\"\ncontrol_socket = \"control.sock\"\n",
    )
    .unwrap();
    let (code, _, stderr) = env.dirsync(&["sync", "acme"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("state_dir") && stderr.contains("not-a-dir"),
        "{stderr}"
    );
    other.shutdown().await;
}

/// Adds `n` users (`bulk000@…`) so that users.list takes more than one page of 500.
fn add_users(env: &Env, n: usize) {
    for i in 0..n {
        env.emulator
            .directory()
            .insert_user(&json!({
                "primaryEmail": format!("bulk{i:03}@example.com"),
                "name": {"givenName": format!("Bulk{i}"), "familyName": "Example"},
            }))
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_page_token_fails_the_run_naming_it_and_the_next_run_catches_up() {
    // Google answers 400 "Invalid Value" to a page token that expired mid-listing. dirsync
    // does not re-list from the first page: the run fails (nothing committed) naming the
    // request, and the next run (the daemon's backoff, or the operator) lists afresh.
    let env = Env::start().await;
    add_users(&env, 600);
    env.fault(FaultRule {
        method: Some("users.list".into()),
        fault: FaultKind::ExpirePageToken,
        ..FaultRule::default()
    });
    let (code, stdout, stderr) = env.dirsync(&["sync", "acme"]).await;
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    for needle in ["tenant acme", "400", "Invalid Value", "pageToken"] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    assert_eq!(last_seq(env.dir.path()), 0, "a failed run commits nothing");
    let counters = env.emulator.counters().snapshot();
    assert_eq!(
        counters.status("users.list", 400),
        1,
        "not retried: {counters:?}"
    );
    assert_eq!(env.status("acme").await["last_run"]["outcome"], "failed");

    // The rule fired once and retired: the next run lists every page.
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["users"], USERS + 600);
    assert_eq!(summary["memberships"], UPSTREAM_MEMBERSHIPS);
    assert_eq!(summary["stored_memberships"], MEMBERSHIPS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_response_past_the_request_timeout_is_retried_and_the_run_succeeds() {
    let env = Env::start().await;
    env.tenant("acme", "request_timeout_seconds = 1");
    // One members.list answer 3 s late: the client gives up after 1 s and asks again.
    env.fault(FaultRule {
        method: Some("members.list".into()),
        fault: FaultKind::Delay,
        latency_ms: Some(3_000),
        ..FaultRule::default()
    });
    // And a delay within the timeout, which is just slow, not a failure.
    env.fault(FaultRule {
        method: Some("groups.list".into()),
        fault: FaultKind::Delay,
        latency_ms: Some(300),
        ..FaultRule::default()
    });
    let started = std::time::Instant::now();
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["outcome"], "committed");
    assert_eq!(
        summary["retries"], 1,
        "only the timed-out request: {summary}"
    );
    assert_eq!(summary["users"], USERS);
    assert_eq!(summary["groups"], GROUPS);
    assert_eq!(summary["memberships"], UPSTREAM_MEMBERSHIPS);
    assert_eq!(summary["stored_memberships"], MEMBERSHIPS);
    assert!(started.elapsed() >= std::time::Duration::from_millis(1_300));
    // The 300 ms delay was waited out, not retried. (The abandoned members.list request is
    // not asserted on: the emulator counts it only if it answers before the client hangs up.)
    let counters = env.emulator.counters().snapshot();
    assert_eq!(counters.method("groups.list"), 1, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_the_token_endpoint_rejects_fails_the_run_naming_source_subject() {
    let env = Env::start().await;
    assert_eq!(env.sync("acme", &[]).await.0, 0);
    env.emulator
        .directory()
        .delete_user("u03@example.com")
        .unwrap();
    env.fault(FaultRule {
        method: Some("oauth.token".into()),
        fault: FaultKind::RejectSubject,
        times: 0,
        ..FaultRule::default()
    });
    expect_failure(
        &env,
        None,
        1,
        &[
            "tenant acme",
            "invalid_grant",
            "Invalid email or User ID",
            "source.subject (admin@example.com) must be an existing admin user",
        ],
    )
    .await;
    let counters = env.emulator.counters().snapshot();
    assert!(counters.status("oauth.token", 400) >= 1, "{counters:?}");
    assert_eq!(
        counters.method("users.list"),
        1,
        "only the first run listed: {counters:?}"
    );

    // Once the subject is accepted again the deletion that was waiting goes through.
    env.emulator.faults().clear();
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["users"], USERS - 1);
}

/// Whether this test runs as root, whom permission bits do not stop (CAP_DAC_OVERRIDE).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program ARGS` as a process that file permissions apply to. As root it runs under
/// `setpriv` with every capability dropped (bounding and inheritable sets): still uid 0, so it
/// owns and can read the test's files, but a directory without the write bit stops it as it
/// stops the `dirsync` service user. (`chattr +i` would stop root too, but only on file
/// systems with that attribute and with CAP_LINUX_IMMUTABLE; a read-only bind mount needs
/// mount rights.)
fn unprivileged(program: &std::ffi::OsStr) -> std::process::Command {
    if !running_as_root() {
        return std::process::Command::new(program);
    }
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--inh-caps=-all", "--bounding-set=-all", "--"])
        .arg(program);
    command
}

/// `dirsync ARGS` (the testkit's command: scrubbed environment, `--config`) unprivileged.
fn without_privileges(env: &Env, args: &[&str]) -> std::process::Command {
    let dirsync = env.dir.command(args);
    let mut command = unprivileged(dirsync.get_program());
    command
        .env_clear()
        .envs(
            dirsync
                .get_envs()
                .filter_map(|(name, value)| Some((name, value?))),
        )
        .args(dirsync.get_args())
        .stdin(std::process::Stdio::null());
    command
}

fn run_without_privileges(env: &Env, args: &[&str]) -> (i32, String) {
    let output = without_privileges(env, args).output().unwrap_or_else(|err| {
        panic!("cannot run dirsync without privileges (as root this needs `setpriv`, util-linux): {err}")
    });
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_state_dir_that_is_not_writable_fails_the_run_naming_it() {
    let env = Env::start().await;
    let state = env.dir.state_dir();
    std::fs::create_dir_all(&state).unwrap();
    // The check that the setup really denies writes (as root too).
    set_mode(&state, 0o555);
    let probe = state.join("probe");
    let touch = unprivileged("touch".as_ref()).arg(&probe).status().unwrap();
    assert!(
        !touch.success() && !probe.exists(),
        "the state dir is still writable"
    );

    // An empty state dir: the database cannot be created in it.
    let (code, stderr) = run_without_privileges(&env, &["sync", "acme"]);
    assert_eq!(code, 1, "{stderr}");
    for needle in [
        "state_dir",
        &state.display().to_string(),
        "Permission denied",
    ] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A state dir that holds the database of earlier runs, then lost its write bit: SQLite
    // cannot create its journal (-wal, -shm) next to the database.
    set_mode(&state, 0o755);
    assert_eq!(env.sync("acme", &[]).await.0, 0);
    env.emulator
        .directory()
        .delete_user("u04@example.com")
        .unwrap();
    let seq = last_seq(env.dir.path());
    for entry in std::fs::read_dir(&state).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            name == "dirsync.db",
            "a clean exit leaves only the database: {name:?}"
        );
    }
    set_mode(&state, 0o555);
    let (code, stderr) = run_without_privileges(&env, &["sync", "acme"]);
    set_mode(&state, 0o755);
    assert_eq!(code, 1, "{stderr}");
    for needle in ["state_dir", &state.display().to_string()] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(last_seq(env.dir.path()), seq, "nothing committed");
    // Writable again, the run that failed goes through.
    let (code, summary) = env.sync("acme", &[]).await;
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["users"], USERS - 1);
}

/// A self-signed CA certificate (its key was thrown away): a CA bundle that loads, so the TLS
/// client can be built, and trusts nothing a test connects to.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBxjCCAW2gAwIBAgIUHELP+VCUwOzri0YPJ89znG0yw8EwCgYIKoZIzj0EAwIw
MDEuMCwGA1UEAwwlZGlyc3luYyB0ZXN0IENBIChubyBwcml2YXRlIGtleSBrZXB0
KTAgFw0yNjEyMDIwMTQzNDlaGA8yMTI2MTEwODAxNDM0OVowMDEuMCwGA1UEAwwl
ZGlyc3luYyB0ZXN0IENBIChubyBwcml2YXRlIGtleSBrZXB0KTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABGSKAWTuYtk0nt2/Q2sJ3fe7Bc7UgEise9mhbQd320gj
UHJIrv2f+B5zcpnDYnzp+xhL4xPWgppllo2dgpWhgx2jYzBhMB0GA1UdDgQWBBTE
B+4iSeXBviFOkVMmZOKU0XXxEzAfBgNVHSMEGDAWgBTEB+4iSeXBviFOkVMmZOKU
0XXxEzAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwICBDAKBggqhkjOPQQD
AgNHADBEAiAjCLMqd8Ptl6nA9XDTBku/S4JU9VklCjwO1YoVmVCVOgIgFJapWog+
hlg4Y2u+CBzRU1eg2Cs1y4RtCzsbjdGctvQ=
-----END CERTIFICATE-----
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_token_endpoint_needs_ca_certificates_or_says_so() {
    // Both sides on every machine: which CA bundle dirsync loads is set per process with
    // SSL_CERT_FILE / SSL_CERT_DIR (then the system's locations are not read).
    let env = Env::start().await;
    let refusing = dirsync_testkit::closed_port();
    let mut key: Value = serde_json::from_str(
        &std::fs::read_to_string(env.dir.path().join("tenants/key.json")).unwrap(),
    )
    .unwrap();
    key["token_uri"] = json!(format!("https://127.0.0.1:{}/token", refusing.port));
    env.dir.write("tenants/key.json", key.to_string());
    let empty_dir = env.dir.path().join("no-certs");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let empty_file = env.dir.write("no-certs.pem", "");
    let bundle = env.dir.write("ca.pem", TEST_CA_PEM);
    let sync = |cert_file: &Path| {
        let output = env
            .dir
            .command(&["sync", "acme"])
            .env("SSL_CERT_FILE", cert_file)
            .env("SSL_CERT_DIR", &empty_dir)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    // No CA certificate at all: the fix is named before any connection is tried.
    let (code, stderr) = sync(&empty_file);
    assert_eq!(code, 1, "{stderr}");
    for needle in ["tenant acme", "install the ca-certificates package"] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }

    // With a CA bundle the token flow is built and the token endpoint is contacted (it
    // refuses the connection here): the failure names the host, not CA certificates.
    let (code, stderr) = sync(&bundle);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("tenant acme") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("ca-certificates"), "{stderr}");
    assert_eq!(last_seq(env.dir.path()), 0);
}
