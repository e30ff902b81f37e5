//! The public contract (CONTRACT.md), checked the way an outside test suite would: only through
//! the real `dirsync` binary, its flags, exit codes, stdout/stderr and files. Google is played
//! by the emulator, and by an independent fake (`support/contract.rs`) with its own paging,
//! tokens, JSON quirks and JWT verification.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::fake_google as fake;
use dirsync_testkit::{closed_port, ConfigDir};

use crate::support::config_dir;
use dirsync_emulator::{Emulator, EmulatorHandle, FaultKind, FaultRule, Fixture};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

const EVENT_TYPES: &[&str] = &[
    "user.created",
    "user.updated",
    "user.deleted",
    "group.created",
    "group.updated",
    "group.deleted",
    "group.user_added",
    "group.user_removed",
];
const USER_KEYS: &[&str] = &[
    "id",
    "email",
    "username",
    "first_name",
    "last_name",
    "display_name",
    "emails",
    "state",
    "roles",
    "custom_attributes",
    "raw_attributes",
];
const GROUP_KEYS: &[&str] = &["id", "email", "name", "description", "raw_attributes"];
const USER_SUMMARY_KEYS: &[&str] = &[
    "id",
    "email",
    "username",
    "first_name",
    "last_name",
    "display_name",
    "state",
];
const GROUP_SUMMARY_KEYS: &[&str] = &["id", "email", "name"];
const REPORT_KEYS: &[&str] = &[
    "tenant",
    "sync_id",
    "outcome",
    "events",
    "counts",
    "users",
    "groups",
    "memberships",
    "api_requests",
    "duration_ms",
];

/// `users` users (u00.. plus the admin) and `groups` groups of three members each.
fn fixture(users: usize, groups: usize) -> Value {
    let mut list = vec![json!({"primaryEmail": "admin@example.com",
        "name": {"givenName": "Ada", "familyName": "Admin"}})];
    for n in 0..users {
        list.push(json!({"primaryEmail": format!("u{n:02}@example.com"),
            "name": {"givenName": format!("User{n}"), "familyName": "Example"}}));
    }
    let groups: Vec<Value> = (0..groups)
        .map(|g| {
            json!({"email": format!("g{g:02}@example.com"), "name": format!("Group {g}"),
                "members": (0..3).map(|k| json!({"email": format!("u{:02}@example.com", (g * 3 + k) % users)})).collect::<Vec<_>>()})
        })
        .collect();
    json!({"domain": "example.com", "users": list, "groups": groups})
}

async fn emulator(users: usize, groups: usize) -> EmulatorHandle {
    let fixture: Fixture = serde_json::from_value(fixture(users, groups)).unwrap();
    Emulator::builder()
        .fixture(fixture)
        .build()
        .unwrap()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Writes `tenants/{id}.toml` against a Google API at `base_url`, the key beside it.
fn google_tenant(
    setup: &ConfigDir,
    id: &str,
    base_url: &str,
    key_json: &str,
    subject: &str,
    extra: &str,
) {
    std::fs::write(
        setup.path().join(format!("tenants/{id}-key.json")),
        key_json,
    )
    .unwrap();
    setup.write_tenant(
        id,
        &format!(
            "schedule = \"0 0 0 1 1 *\"\n[source]\ntype = \"google\"\ncredentials_file = \"{id}-key.json\"\n\
             subject = \"{subject}\"\napi_base = \"{base_url}\"\nretry_max_seconds = 2\n{extra}"
        ),
    );
}

fn emulator_tenant(setup: &ConfigDir, id: &str, emulator: &EmulatorHandle, extra: &str) {
    google_tenant(
        setup,
        id,
        &emulator.base_url,
        &emulator.service_account_key_json(),
        emulator.admin_email(),
        extra,
    );
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("not JSON ({err}): {line}\n{}", self.stdout))
            })
            .collect()
    }
    fn report(&self) -> Value {
        let line =
            self.stdout.lines().last().unwrap_or_else(|| {
                panic!("no output (exit {}); stderr: {}", self.code, self.stderr)
            });
        serde_json::from_str(line).unwrap()
    }
}

/// Runs `dirsync ARGS` with the environment given (and nothing of the test's own config).
async fn dirsync_env(
    args: &[&str],
    env: &[(&str, &std::path::Path)],
    cwd: Option<&std::path::Path>,
) -> Out {
    // The testkit's runner: nothing of the test's own environment reaches the binary.
    let mut command = crate::support::dirsync().tokio_command(args);
    for (key, value) in env {
        command.env(key, value);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let output = command.output().await.unwrap();
    let out = Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "dirsync {args:?} panicked: {}",
        out.stderr
    );
    out
}

async fn dirsync(setup: &ConfigDir, args: &[&str]) -> Out {
    let config = setup.config();
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    dirsync_env(&all, &[], None).await
}

fn assert_report_shape(report: &Value, outcome: &str) {
    assert_eq!(report["outcome"], outcome, "{report}");
    for key in REPORT_KEYS {
        assert!(
            report.get(*key).is_some(),
            "sync --json lacks {key:?}: {report}"
        );
    }
    assert!(report["tenant"].is_string());
    assert!(report["events"].is_u64());
    assert!(report["api_requests"].is_u64());
    assert!(report["duration_ms"].is_u64());
    let counts = report["counts"].as_object().unwrap();
    assert!(
        counts.keys().all(|k| EVENT_TYPES.contains(&k.as_str())),
        "{report}"
    );
    assert_eq!(
        counts.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        report["events"].as_u64().unwrap(),
        "counts add up to events: {report}"
    );
    match outcome {
        "failed" | "refused" => assert!(
            report["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{report}"
        ),
        _ => assert!(report.get("error").is_none_or(Value::is_null), "{report}"),
    }
    if outcome != "failed" {
        assert!(report["sync_id"].is_i64(), "{report}");
        for key in ["users", "groups", "memberships"] {
            assert!(report[key].is_u64(), "{key}: {report}");
        }
    }
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Every rule about one event's shape that holds whatever the stream.
fn assert_event_shape(event: &Value, tenant: &str) {
    let kind = event["type"].as_str().unwrap();
    assert!(EVENT_TYPES.contains(&kind), "{event}");
    assert!(event["id"].as_str().unwrap().starts_with("evt_"), "{event}");
    assert_eq!(event["tenant"], tenant);
    assert!(event["seq"].is_u64());
    assert!(event["sync_id"].is_i64(), "{event}");
    assert!(event["source"] == "google" || event["source"] == "scim");
    let at = event["occurred_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
        "{at}"
    );
    let data = &event["data"];
    if kind.starts_with("user.") {
        assert_eq!(keys(data), set(USER_KEYS), "{event}");
        let email = data["email"].as_str().unwrap();
        assert_eq!(email, email.to_lowercase());
        let emails = data["emails"].as_array().unwrap();
        assert!(
            emails.iter().all(|e| keys(e) == set(&["value", "primary"])),
            "{event}"
        );
        assert_eq!(
            emails
                .iter()
                .filter(|e| e["primary"] == true)
                .map(|e| e["value"].clone())
                .collect::<Vec<_>>(),
            vec![data["email"].clone()],
            "{event}"
        );
        assert!(data["state"] == "active" || data["state"] == "inactive");
        let roles: Vec<&str> = data["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let mut sorted = roles.clone();
        sorted.sort();
        assert_eq!(roles, sorted);
        assert!(data["custom_attributes"].is_object() && data["raw_attributes"].is_object());
        let raw = data["raw_attributes"].to_string();
        for volatile in ["etag", "lastLoginTime", "thumbnailPhotoEtag"] {
            assert!(
                !raw.contains(&format!("\"{volatile}\"")),
                "{volatile} in {raw}"
            );
        }
    } else if kind == "group.user_added" || kind == "group.user_removed" {
        assert_eq!(keys(data), set(&["user", "group"]), "{event}");
        assert_eq!(keys(&data["user"]), set(USER_SUMMARY_KEYS), "{event}");
        assert_eq!(keys(&data["group"]), set(GROUP_SUMMARY_KEYS), "{event}");
    } else {
        assert_eq!(keys(data), set(GROUP_KEYS), "{event}");
        let raw = data["raw_attributes"].to_string();
        assert!(
            !raw.contains("directMembersCount") && !raw.contains("\"etag\""),
            "{raw}"
        );
    }
    if kind.ends_with(".updated") {
        let previous = event["previous_attributes"].as_object().unwrap();
        assert!(!previous.is_empty(), "{event}");
        for key in previous.keys() {
            assert!(
                data.get(key).is_some(),
                "previous {key} is not a field: {event}"
            );
            assert_ne!(previous[key], data[key], "{key} did not change: {event}");
        }
    } else {
        assert!(event.get("previous_attributes").is_none(), "{event}");
    }
}

/// The stream folded from seq 1: users by id, groups by id, (group, user) memberships.
#[derive(Default, Debug)]
struct Folded {
    users: BTreeMap<String, Value>,
    groups: BTreeMap<String, Value>,
    members: BTreeSet<(String, String)>,
}

/// Folds `events` into `folded`, checking seq continuity and that every event refers only to
/// what exists at that point of the stream.
fn fold(folded: &mut Folded, events: &[Value], mut seq: u64) -> u64 {
    for event in events {
        seq += 1;
        assert_eq!(event["seq"], seq, "seq grows by exactly 1: {event}");
        let data = &event["data"];
        let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
        let event_type = event["type"].as_str().unwrap();
        match event_type {
            "user.created" | "user.updated" | "user.deleted" | "group.created"
            | "group.updated" | "group.deleted" => {
                let (kind, action) = event_type.split_once('.').unwrap();
                let objects = if kind == "user" {
                    &mut folded.users
                } else {
                    &mut folded.groups
                };
                let member_of = |(g, u): &(String, String)| {
                    if kind == "user" {
                        u.clone()
                    } else {
                        g.clone()
                    }
                };
                match action {
                    "created" => {
                        assert!(objects.insert(id(data), data.clone()).is_none(), "{event}")
                    }
                    "updated" => {
                        let old = objects
                            .insert(id(data), data.clone())
                            .expect("updated object exists");
                        for (key, value) in event["previous_attributes"].as_object().unwrap() {
                            assert_eq!(
                                old.get(key).unwrap_or(&Value::Null),
                                value,
                                "previous {key}: {event}"
                            );
                        }
                    }
                    _ => {
                        assert!(
                            folded.members.iter().all(|m| member_of(m) != id(data)),
                            "memberships removed first: {event}"
                        );
                        assert!(objects.remove(&id(data)).is_some(), "{event}");
                    }
                }
            }
            "group.user_added" | "group.user_removed" => {
                let (g, u) = (id(&data["group"]), id(&data["user"]));
                assert!(
                    folded.groups.contains_key(&g) && folded.users.contains_key(&u),
                    "{event}"
                );
                if event_type == "group.user_added" {
                    assert!(folded.members.insert((g, u)), "{event}");
                } else {
                    assert!(folded.members.remove(&(g, u)), "{event}");
                }
            }
            other => panic!("unknown type {other}"),
        }
    }
    seq
}

/// Within one sync: creations, updates, additions, removals, deletions.
fn assert_sync_order(events: &[Value]) {
    let rank = |t: &str| match t {
        "user.created" | "group.created" => 0,
        "user.updated" | "group.updated" => 1,
        "group.user_added" => 2,
        "group.user_removed" => 3,
        _ => 4,
    };
    let ranks: Vec<u8> = events
        .iter()
        .map(|e| rank(e["type"].as_str().unwrap()))
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {:?}",
        events.iter().map(|e| &e["type"]).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_lookup_exit_codes_and_usage_errors() {
    let setup = config_dir(false);
    // A tenant whose source refuses connections: a run failure, not a usage error.
    let closed = closed_port();
    let port = closed.port;
    let emulator = emulator(3, 1).await;
    google_tenant(
        &setup,
        "acme",
        &format!("http://127.0.0.1:{port}"),
        &emulator.service_account_key_json(),
        emulator.admin_email(),
        "",
    );
    let config = setup.config();

    // Neither --config nor DIRSYNC_CONFIG: the default path, named, with what to do.
    for verb in [
        &["status"][..],
        &["sync", "acme"],
        &["events", "acme"],
        &["check-config"],
        &["inspect", "acme", "x"],
    ] {
        let out = dirsync_env(verb, &[], Some(setup.path())).await;
        assert_eq!(out.code, 2, "{verb:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("/etc/dirsync/dirsync.toml"),
            "{verb:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("--config") && out.stderr.contains("DIRSYNC_CONFIG"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.lines().count() <= 4, "{}", out.stderr);
    }
    // DIRSYNC_CONFIG is the fallback; --config wins over it.
    let out = dirsync_env(&["status", "--json"], &[("DIRSYNC_CONFIG", &config)], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap()[0]["tenant"],
        "acme"
    );
    let missing = setup.path().join("nowhere.toml");
    let out = dirsync_env(
        &["--config", config.to_str().unwrap(), "status", "acme"],
        &[("DIRSYNC_CONFIG", &missing)],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = dirsync_env(&["status"], &[("DIRSYNC_CONFIG", &missing)], None).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nowhere.toml"), "{}", out.stderr);
    // --config works before and after the verb.
    let out = dirsync_env(
        &["status", "acme", "--config", config.to_str().unwrap()],
        &[],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // --config on every verb that reads it.
    for verb in [
        &["events", "acme"][..],
        &["status", "acme"],
        &["check-config"],
    ] {
        let out = dirsync(&setup, verb).await;
        assert_eq!(out.code, 0, "{verb:?}: {}", out.stderr);
    }
    // inspect of something never seen: exit 1 (README), and it names the tenant.
    let out = dirsync(&setup, &["inspect", "acme", "nobody@example.com"]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);

    // Unknown tenant: usage error naming it, for every verb taking one.
    for verb in [
        &["sync", "nope"][..],
        &["events", "nope"],
        &["status", "nope"],
        &["inspect", "nope", "a@b.c"],
    ] {
        let out = dirsync(&setup, verb).await;
        assert_eq!(out.code, 2, "{verb:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("nope") && out.stderr.contains("nope.toml"),
            "{}",
            out.stderr
        );
    }
    // Bad flags and arguments.
    for args in [
        &["sync", "acme", "--bogus"][..],
        &["sync"],
        &["events", "acme", "--after", "x"],
        &["events", "acme", "--limit", "-1"],
        &["frobnicate"],
        &["status", "--json", "--json"],
    ] {
        let out = dirsync(&setup, args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.is_empty());
    }

    // The source cannot be reached: exit 1, one readable error naming the tenant, nothing stored.
    let out = dirsync(&setup, &["sync", "acme"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("acme"), "{}", out.stderr);
    // Besides the progress lines of the retries (one per retry, issue 13.6).
    let error_lines = out
        .stderr
        .lines()
        .filter(|line| !line.contains("; retry "))
        .count();
    assert!(error_lines <= 4, "{}", out.stderr);
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.code, 1);
    assert_report_shape(&out.report(), "failed");
    assert!(
        !out.stderr.trim().is_empty(),
        "a failed --json run still says why on stderr"
    );
    let status = setup.status_async("acme").await;
    assert_eq!(status["last_seq"], 0);
    assert_eq!(status["last_run"]["outcome"], "failed");
    assert!(status["last_run"]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_reports_every_problem_in_every_file_at_once() {
    let setup = config_dir(false);
    let emulator = emulator(3, 1).await;
    emulator_tenant(&setup, "good", &emulator, "");
    let good = std::fs::read_to_string(setup.path().join("tenants/good.toml")).unwrap();
    std::fs::write(
        setup.path().join("tenants/good-key.json"),
        emulator.service_account_key_json(),
    )
    .unwrap();
    // The global file has an unknown key too: tenant files are still checked.
    let global = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("{global}colour = \"blue\"\n")).unwrap();
    let broken = [
        ("top", format!("surprise = 1\n{good}"), "surprise"),
        (
            "src",
            good.replace("[source]\n", "[source]\nflavour = \"x\"\n"),
            "flavour",
        ),
        (
            "grd",
            format!("{good}[guard]\nmax_delete_percent = 20\nmin_delete = 3\n"),
            "min_delete",
        ),
        (
            "flt",
            format!("{good}[filters]\ngroup = [\"a*\"]\n"),
            "group",
        ),
        (
            "snk",
            format!("{good}[[sinks]]\ntype = \"jsonl\"\npath = \"x.jsonl\"\nurl = \"http://x\"\n"),
            "url",
        ),
        (
            "cred",
            good.replace("good-key.json", "missing-key.json"),
            "missing-key.json",
        ),
        ("Bad.Name", good.clone(), "Bad.Name"),
    ];
    for (id, text, _) in &broken {
        std::fs::write(setup.path().join(format!("tenants/{id}.toml")), text).unwrap();
    }
    let out = dirsync(&setup, &["check-config"]).await;
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("colour") && out.stderr.contains("dirsync.toml"),
        "{}",
        out.stderr
    );
    for (id, _, needle) in &broken {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains(&format!("{id}.toml")) && l.contains(needle)),
            "{id}: {needle} not reported:\n{}",
            out.stderr
        );
    }
    // Every other verb refuses a broken global file with exit 2, naming the file.
    let out = dirsync(&setup, &["status"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("colour"));
    let out = dirsync(&setup, &["sync", "good"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);

    // Fixed global: the good tenant connects, the broken ones are still listed.
    std::fs::write(setup.config(), &global).unwrap();
    // Another tenant's broken file warns but does not stop verbs about a good tenant; the
    // broken tenant itself and the whole-config verbs are usage errors.
    let out = dirsync(&setup, &["sync", "good", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_report_shape(&out.report(), "committed");
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("top.toml"),
        "{}",
        out.stderr
    );
    for args in [
        &["events", "good"][..],
        &["status", "good"],
        &["inspect", "good", "admin@example.com"],
    ] {
        let out = dirsync(&setup, args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let out = dirsync(&setup, &["sync", "src"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("flavour"), "{}", out.stderr);
    let out = dirsync(&setup, &["status"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = dirsync(&setup, &["check-config", "--connect"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    for (id, ..) in &broken {
        assert!(
            out.stderr.contains(&format!("{id}.toml")),
            "{id}: {}",
            out.stderr
        );
    }
    assert!(out.stdout.contains("good"), "{}", out.stdout);

    for (id, ..) in &broken {
        std::fs::remove_file(setup.path().join(format!("tenants/{id}.toml"))).unwrap();
    }
    emulator.counters().reset();
    let out = dirsync(&setup, &["check-config", "--connect"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("good") && out.stdout.contains("connected"),
        "{}",
        out.stdout
    );
    let counters = emulator.counters();
    assert!(
        counters.get("oauth.token") >= 1 && counters.get("users.list") >= 1,
        "{:?}",
        counters.snapshot()
    );

    // --connect against a source that is down: exit 1, naming the tenant.
    let closed = closed_port();
    google_tenant(
        &setup,
        "down",
        &format!("http://127.0.0.1:{}", closed.port),
        &emulator.service_account_key_json(),
        emulator.admin_email(),
        "",
    );
    let out = dirsync(&setup, &["check-config", "--connect"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("down"), "{}", out.stderr);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_paths_resolve_against_the_file_that_names_them() {
    let emulator = emulator(4, 2).await;
    let root = tempfile::tempdir().unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(etc.join("conf.d/tenants/keys")).unwrap();
    std::fs::write(
        etc.join("main.toml"),
        "state_dir = \"../var/state\"\ntenants_dir = \"conf.d/tenants\"\ncontrol_socket = \"../run/c.sock\"\n",
    )
    .unwrap();
    std::fs::write(
        etc.join("conf.d/tenants/keys/sa.json"),
        emulator.service_account_key_json(),
    )
    .unwrap();
    std::fs::write(
        etc.join("conf.d/tenants/acme.toml"),
        format!(
            "[source]\ntype = \"google\"\ncredentials_file = \"keys/sa.json\"\nsubject = \"{}\"\napi_base = \"{}\"\n\
             [[sinks]]\ntype = \"jsonl\"\npath = \"out/acme.jsonl\"\n",
            emulator.admin_email(),
            emulator.base_url
        ),
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("run")).unwrap();
    std::fs::create_dir_all(etc.join("conf.d/tenants/out")).unwrap();
    // Run from an unrelated folder: nothing may resolve against the working directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = etc.join("main.toml");
    let out = dirsync_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "sync",
            "acme",
            "--json",
        ],
        &[],
        Some(elsewhere.path()),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_report_shape(&out.report(), "committed");
    assert!(root.path().join("var/state/dirsync.db").exists());
    assert_eq!(
        std::fs::read_dir(elsewhere.path()).unwrap().count(),
        0,
        "nothing written to the cwd"
    );
    // The sink path resolves beside the tenant file: deliver once and find the file there.
    let out = dirsync_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "deliver",
            "acme",
            "--once",
        ],
        &[],
        Some(elsewhere.path()),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(etc.join("conf.d/tenants/out/acme.jsonl").exists());
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_guard_defaults_and_rule_for_users_or_groups() {
    let emulator = emulator(60, 14).await;
    let setup = config_dir(false);
    emulator_tenant(&setup, "acme", &emulator, "");
    let first = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_report_shape(&first.report(), "committed");
    let directory = emulator.directory();

    // 11 of 61 users (18%): more than min_deletes but not more than 20% → committed.
    for n in 0..11 {
        directory
            .delete_user(&format!("u{n:02}@example.com"))
            .unwrap();
    }
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.report()["counts"]["user.deleted"], 11);
    // 10 of 50 (20%, not more) → committed; then 11 of 40 (27.5% and 11 > 10) → refused.
    for n in 11..21 {
        directory
            .delete_user(&format!("u{n:02}@example.com"))
            .unwrap();
    }
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(
        (out.code, out.report()["counts"]["user.deleted"].as_u64()),
        (0, Some(10)),
        "{}",
        out.stdout
    );
    for n in 21..32 {
        directory
            .delete_user(&format!("u{n:02}@example.com"))
            .unwrap();
    }
    let seq = setup.status_async("acme").await["last_seq"].clone();
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.code, 3, "{}", out.stdout);
    assert_report_shape(&out.report(), "refused");
    assert!(
        out.stderr.contains("--allow-mass-delete"),
        "the refusal is on stderr too: {}",
        out.stderr
    );
    assert_eq!(
        setup.status_async("acme").await["last_seq"],
        seq,
        "nothing committed"
    );
    let out = dirsync(&setup, &["sync", "acme"]).await;
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains("acme") && out.stderr.contains("--allow-mass-delete"),
        "{}",
        out.stderr
    );
    let out = dirsync(&setup, &["sync", "acme", "--json", "--allow-mass-delete"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);

    // Groups alone trip it: 11 of 14 groups, no user deleted.
    for g in 0..11 {
        directory
            .delete_group(&format!("g{g:02}@example.com"))
            .unwrap();
    }
    let out = dirsync(&setup, &["sync", "acme", "--json", "--dry-run"]).await;
    assert_eq!(out.code, 0, "a dry run is never refused: {}", out.stdout);
    assert_report_shape(&out.report(), "dry_run");
    assert_eq!(out.report()["counts"]["group.deleted"], 11);
    assert!(
        out.stderr.contains("--allow-mass-delete"),
        "a dry run warns: {}",
        out.stderr
    );
    let text = dirsync(&setup, &["sync", "acme", "--dry-run"]).await;
    assert_eq!(text.code, 0);
    let shown = text
        .stdout
        .lines()
        .filter(|l| l.contains("\"group.deleted\""))
        .count();
    assert_eq!(
        shown, 11,
        "the dry run shows what a real run would emit: {}",
        text.stdout
    );
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.code, 3, "{}", out.stdout);
    // Configured off.
    emulator_tenant(
        &setup,
        "acme",
        &emulator,
        "[guard]\nmax_delete_percent = 100\nmin_deletes = 0\n",
    );
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(out.report()["counts"]["group.deleted"], 11);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_limit_and_follow() {
    let emulator = emulator(6, 2).await;
    let setup = config_dir(false);
    emulator_tenant(&setup, "acme", &emulator, "");
    let out = dirsync(&setup, &["events", "acme"]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, ""),
        "no events yet: {}",
        out.stderr
    );
    let report = dirsync(&setup, &["sync", "acme", "--json"]).await.report();
    let total = report["events"].as_u64().unwrap();
    assert!(total > 8);

    let all = dirsync(&setup, &["events", "acme"]).await.json_lines();
    assert_eq!(all.len() as u64, total);
    let mut folded = Folded::default();
    fold(&mut folded, &all, 0);
    for event in &all {
        assert_event_shape(event, "acme");
    }
    let page = dirsync(&setup, &["events", "acme", "--after", "5", "--limit", "3"])
        .await
        .json_lines();
    assert_eq!(
        page.iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![6, 7, 8]
    );
    assert_eq!(
        page,
        all[5..8].to_vec(),
        "the same events, byte for byte, on every read"
    );
    let tail = dirsync(&setup, &["events", "acme", "--after", &total.to_string()]).await;
    assert_eq!((tail.code, tail.stdout.as_str()), (0, ""));
    let beyond = dirsync(&setup, &["events", "acme", "--after", "100000"]).await;
    assert_eq!(beyond.code, 0);

    // --follow: the backlog after SEQ, then new events as they are committed.
    let mut child = setup
        .tokio_command(&[
            "events",
            "acme",
            "--follow",
            "--after",
            &(total - 1).to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(next_event(&mut lines).await["seq"], total);
    emulator
        .directory()
        .update_user(
            "u01@example.com",
            &json!({"name": {"givenName": "Renamed", "familyName": "Example"}}),
        )
        .unwrap();
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.report()["counts"]["user.updated"], 1, "{}", out.stdout);
    let new = next_event(&mut lines).await;
    assert_eq!(new["seq"], total + 1);
    assert_eq!(new["type"], "user.updated");
    assert_eq!(new["data"]["first_name"], "Renamed");
    assert_eq!(new["previous_attributes"]["first_name"], "User1");
    child.kill().await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_sync_json_with_and_without_a_daemon() {
    let emulator = emulator(8, 3).await;
    let setup = config_dir(false);
    emulator_tenant(&setup, "acme", &emulator, "");
    // Never synced.
    let status = setup.status_async("acme").await;
    assert!(status["last_run"].is_null(), "{status}");
    assert!(status["next_run"].is_string(), "{status}");
    assert_eq!(status["last_seq"], 0);
    assert_eq!(
        status["stored"],
        json!({"users": 0, "groups": 0, "memberships": 0})
    );

    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    let report = out.report();
    assert_report_shape(&report, "committed");
    assert_eq!(report["users"], 9);
    assert_eq!(report["groups"], 3);
    let status = setup.status_async("acme").await;
    assert_status(&status, &report);
    let text = dirsync(&setup, &["status"]).await;
    assert_eq!(text.code, 0);
    for needle in [
        "acme",
        "last run",
        "next run",
        "committed",
        "9 users",
        "3 groups",
    ] {
        assert!(text.stdout.contains(needle), "{needle}: {}", text.stdout);
    }
    let all = dirsync(&setup, &["status", "--json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&all.stdout).unwrap()[0]["tenant"],
        "acme"
    );

    // The same through a running daemon.
    let daemon = Daemon::start(&setup, None).await;
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = out.report();
    assert_report_shape(&report, "no_changes");
    let status = setup.status_async("acme").await;
    assert_status(&status, &report);
    assert!(status["next_run"].is_string());
    emulator.directory().delete_user("u03@example.com").unwrap();
    let out = dirsync(&setup, &["sync", "acme", "--json", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_report_shape(&out.report(), "dry_run");
    assert_eq!(out.report()["counts"]["user.deleted"], 1);
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_report_shape(&out.report(), "committed");
    // A failing source through the daemon: exit 1, `failed` with the error, and on stderr.
    emulator
        .faults()
        .add(FaultRule {
            method: Some("users.list".into()),
            fault: FaultKind::Error,
            status: Some(400),
            times: 0,
            ..FaultRule::default()
        })
        .unwrap();
    let out = dirsync(&setup, &["sync", "acme", "--json"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_report_shape(&out.report(), "failed");
    assert!(!out.stderr.trim().is_empty(), "the error is on stderr too");
    let status = setup.status_async("acme").await;
    assert_eq!(status["last_run"]["outcome"], "failed");
    assert!(status["last_run"]["error"].is_string());
    let text = dirsync(&setup, &["status", "acme"]).await;
    assert!(text.stdout.contains("failed"), "{}", text.stdout);
    drop(daemon);
    emulator.shutdown().await;
}

fn assert_status(status: &Value, report: &Value) {
    let run = &status["last_run"];
    assert_eq!(run["outcome"], report["outcome"], "{status}");
    assert_eq!(run["sync_id"], report["sync_id"]);
    assert_eq!(run["events"], report["events"]);
    assert!(run["duration_ms"].is_u64() || run["duration_ms"].is_i64());
    assert!(chrono::DateTime::parse_from_rfc3339(run["finished_at"].as_str().unwrap()).is_ok());
    assert!(run.get("error").is_some());
    assert!(status["next_run"].is_string(), "{status}");
    assert_eq!(status["stored"]["users"], report["stored_users"]);
    assert_eq!(status["stored"]["groups"], report["stored_groups"]);
    assert_eq!(
        status["stored"]["memberships"],
        report["stored_memberships"]
    );
    assert!(status["last_seq"].is_u64());
}

/// The independent fake: small pages, opaque tokens, quirky JSON, JWT checks.
fn fake_directory() -> fake::Directory {
    let users = vec![
        fake::user("1001", "Alice@Fake.example", "Alice", "Anders"),
        fake::user("1002", "bob@fake.example", "Bob", "Baker"),
        fake::user("1003", "carol@fake.example", "Carol", "Chen"),
        fake::user("1004", "dave@fake.example", "Dave", "Dunn"),
        fake::user("1005", "erin@fake.example", "Erin", "Evans"),
    ];
    let mut groups = vec![
        fake::group("g-eng", "eng@fake.example", "Engineering", 3),
        fake::group("g-all", "all@fake.example", "Everyone", 2),
        fake::group("g-plat", "platform@fake.example", "Platform", 2),
        fake::group("g-empty", "empty@fake.example", "Empty", 0),
    ];
    groups[3].as_object_mut().unwrap().remove("description");
    let mut members = BTreeMap::new();
    members.insert(
        "g-eng".to_owned(),
        vec![
            fake::member("1001", "alice@fake.example", "USER"),
            fake::member("1002", "bob@fake.example", "USER"),
            fake::member("g-plat", "platform@fake.example", "GROUP"),
        ],
    );
    members.insert(
        "g-all".to_owned(),
        vec![
            fake::customer_member(),
            fake::member("9999", "partner@else.example", "USER"),
        ],
    );
    members.insert(
        "g-plat".to_owned(),
        vec![
            fake::member("1003", "carol@fake.example", "USER"),
            fake::member("1004", "dave@fake.example", "USER"),
        ],
    );
    members.insert("g-empty".to_owned(), vec![]);
    fake::Directory {
        users,
        groups,
        members,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_google_fake_with_small_pages_quirks_and_jwt_checks() {
    let google = fake::FakeGoogle::start(fake_directory()).await;
    let setup = config_dir(false);
    google_tenant(
        &setup,
        "fk",
        &google.base_url,
        &google.key_json,
        fake::SUBJECT,
        "",
    );

    let out = dirsync(&setup, &["sync", "fk", "--json"]).await;
    assert_eq!(
        out.code,
        0,
        "{}\n{}\nviolations: {:?}",
        out.stdout,
        out.stderr,
        google.violations()
    );
    assert!(google.violations().is_empty(), "{:?}", google.violations());
    let report = out.report();
    assert_report_shape(&report, "committed");
    assert_eq!(
        (
            report["users"].as_u64(),
            report["groups"].as_u64(),
            report["memberships"].as_u64()
        ),
        // Upstream totals: every listed user and group, every direct member entry.
        (Some(5), Some(4), Some(7)),
        "{report}"
    );
    assert!(
        report["api_requests"].as_u64().unwrap() >= 15, // users 4 pages, groups 3, members 3+2+2+1
        "every small page was read: {report}"
    );
    let events = dirsync(&setup, &["events", "fk"]).await.json_lines();
    assert_eq!(events.len(), 5 + 4 + 6, "{events:#?}");
    let mut folded = Folded::default();
    let mut seq = fold(&mut folded, &events, 0);
    assert_sync_order(&events);
    for event in &events {
        assert_event_shape(event, "fk");
        assert_eq!(event["source"], "google");
    }
    let alice = &folded.users["1001"];
    assert_eq!(alice["email"], "alice@fake.example");
    assert_eq!(alice["username"], "alice@fake.example");
    assert_eq!(alice["first_name"], "Alice");
    assert_eq!(alice["display_name"], "Alice Anders");
    assert_eq!(
        alice["emails"],
        json!([{"value": "alice@fake.example", "primary": true}])
    );
    assert_eq!(alice["state"], "active");
    assert_eq!(
        alice["raw_attributes"]["primaryEmail"],
        "Alice@Fake.example"
    );
    assert_eq!(folded.groups["g-eng"]["name"], "Engineering");
    assert_eq!(
        folded.groups["g-eng"]["description"],
        "the Engineering group"
    );
    // Effective (flattened) membership: eng = alice, bob + platform's carol, dave.
    let eng: BTreeSet<&str> = folded
        .members
        .iter()
        .filter(|(g, _)| g == "g-eng")
        .map(|(_, u)| u.as_str())
        .collect();
    assert_eq!(eng, BTreeSet::from(["1001", "1002", "1003", "1004"]));
    assert!(
        folded.members.iter().all(|(g, _)| g != "g-all"),
        "customer and external members are no users"
    );
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "ids are unique");
    let tokens_after_first = google.tokens_issued();

    // New etags, login times, photo etags, page tokens: nothing to report.
    google.edit(|d| {
        for user in &mut d.users {
            user["etag"] = json!(format!("\"{}\"", rand::random::<u32>()));
            user["lastLoginTime"] = json!("2026-12-01T00:00:00.000Z");
            user["thumbnailPhotoEtag"] = json!("\"new\"");
        }
        for group in &mut d.groups {
            group["etag"] = json!("\"new\"");
            group["directMembersCount"] = json!("7");
        }
    });
    let out = dirsync(&setup, &["sync", "fk", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_report_shape(&out.report(), "no_changes");
    assert_eq!(out.report()["events"], 0);
    assert!(
        google.tokens_issued() > tokens_after_first,
        "a new process signs a new assertion"
    );

    // Real changes: alice's primary email changes and another user takes her old address (a
    // user is her id, not her email); bob is suspended; platform is deleted (its members leave
    // eng, through it, before it goes); dave is deleted; the empty group gets a description.
    google.edit(|d| {
        d.users[0]["primaryEmail"] = json!("alice.anders@fake.example");
        d.users[0]["emails"] = json!([{"address": "alice.anders@fake.example", "primary": true}, {"address": "alice@fake.example"}]);
        d.users.push(fake::user("1006", "alice@fake.example", "Alice", "Other"));
        d.users[1]["suspended"] = json!(true);
        d.users.retain(|u| u["id"] != "1004");
        d.groups.retain(|g| g["id"] != "g-plat");
        d.members.remove("g-plat");
        d.members.get_mut("g-eng").unwrap().retain(|m| m["id"] != "g-plat");
        d.groups[2]["description"] = json!("no longer undescribed");
    });
    let out = dirsync(&setup, &["sync", "fk", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report = out.report();
    assert_report_shape(&report, "committed");
    let new = dirsync(&setup, &["events", "fk", "--after", &seq.to_string()])
        .await
        .json_lines();
    for event in &new {
        assert_event_shape(event, "fk");
        assert_eq!(event["sync_id"], report["sync_id"]);
    }
    seq = fold(&mut folded, &new, seq);
    assert_sync_order(&new);
    assert_eq!(report["events"], new.len());
    let of = |kind: &str| new.iter().filter(|e| e["type"] == kind).collect::<Vec<_>>();
    let updated = of("user.updated");
    let alice = updated
        .iter()
        .find(|e| e["data"]["id"] == "1001")
        .expect("alice updated");
    assert_eq!(alice["data"]["email"], "alice.anders@fake.example");
    assert_eq!(alice["previous_attributes"]["email"], "alice@fake.example");
    assert_eq!(
        alice["previous_attributes"]["username"],
        "alice@fake.example"
    );
    assert!(alice["previous_attributes"].get("emails").is_some());
    assert!(
        alice["previous_attributes"].get("first_name").is_none(),
        "only what changed"
    );
    let bob = updated
        .iter()
        .find(|e| e["data"]["id"] == "1002")
        .expect("bob updated");
    assert_eq!(bob["data"]["state"], "inactive");
    assert_eq!(bob["previous_attributes"]["state"], "active");
    let created: Vec<&Value> = of("user.created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["data"]["id"], "1006");
    assert_eq!(of("user.deleted").len(), 1);
    assert_eq!(of("user.deleted")[0]["data"]["id"], "1004");
    assert_eq!(
        of("user.deleted")[0]["data"]["email"],
        "dave@fake.example",
        "as it was"
    );
    assert_eq!(of("group.deleted").len(), 1);
    let empty = of("group.updated");
    assert_eq!(empty.len(), 1, "{new:#?}");
    assert_eq!(empty[0]["previous_attributes"]["description"], Value::Null);
    assert!(empty[0]["previous_attributes"]
        .as_object()
        .unwrap()
        .contains_key("description"));
    let removed: BTreeSet<(String, String)> = of("group.user_removed")
        .iter()
        .map(|e| {
            (
                e["data"]["group"]["id"].as_str().unwrap().to_owned(),
                e["data"]["user"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        removed,
        BTreeSet::from([
            ("g-eng".into(), "1003".into()),
            ("g-eng".into(), "1004".into()),
            ("g-plat".into(), "1003".into()),
            ("g-plat".into(), "1004".into()),
        ])
    );
    // The stream folds to exactly what is stored.
    let status = setup.status_async("fk").await;
    assert_eq!(status["last_seq"], seq);
    assert_eq!(status["stored"]["users"], folded.users.len());
    assert_eq!(status["stored"]["groups"], folded.groups.len());
    assert_eq!(status["stored"]["memberships"], folded.members.len());
    assert!(google.violations().is_empty(), "{:?}", google.violations());

    // HTTP 200 with an HTML page instead of JSON: the run fails, nothing is committed.
    google.edit(|d| d.users.retain(|u| u["id"] != "1005"));
    google.set_mode(fake::Mode::Html);
    let out = dirsync(&setup, &["sync", "fk"]).await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("fk"), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("json") || out.stderr.contains("html"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.lines().count() <= 4, "{}", out.stderr);
    assert!(
        !out.stderr.contains("<!DOCTYPE") || out.stderr.len() < 600,
        "{}",
        out.stderr
    );
    let out = dirsync(&setup, &["sync", "fk", "--json"]).await;
    assert_eq!(out.code, 1);
    assert_report_shape(&out.report(), "failed");
    let status = setup.status_async("fk").await;
    assert_eq!(status["last_seq"], seq, "nothing committed");
    assert_eq!(status["stored"]["users"], folded.users.len());
    // Back to JSON: the next run catches up.
    google.set_mode(fake::Mode::Normal);
    let out = dirsync(&setup, &["sync", "fk", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.report()["counts"], json!({"user.deleted": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_answering_html_fails_the_run_with_a_clear_error() {
    let google = fake::FakeGoogle::start(fake_directory()).await;
    let setup = config_dir(false);
    let mut key: Value = serde_json::from_str(&google.key_json).unwrap();
    key["token_uri"] = json!(format!("{}/not-a-token-endpoint", google.base_url));
    google_tenant(
        &setup,
        "fk",
        &google.base_url,
        &key.to_string(),
        fake::SUBJECT,
        "",
    );
    let out = dirsync(&setup, &["sync", "fk"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("fk") && out.stderr.contains("token"),
        "{}",
        out.stderr
    );
    assert_eq!(setup.status_async("fk").await["last_seq"], 0);
}

async fn next_event(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("events --follow printed nothing within 20 s")
        .unwrap()
        .expect("events --follow exited");
    serde_json::from_str(&line).unwrap()
}
