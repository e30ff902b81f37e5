//! The write engine against the whole-directory path: after any sequence of pushed writes,
//! the stored directory is exactly what policy over the whole pushed directory gives, so an
//! incremental write never drifts from a full run.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use serde_json::{json, Value};

use super::batch::{apply_batch, BatchOutcome, Input};
use super::write::{WriteOp, Written};
use crate::config::{ScimPushConfig, SourceConfig, TenantConfig};
use crate::model::Snapshot;
use crate::scim_protocol::ScimError;
use crate::store::push::{NewPushRequest, ScimKind, ScimMember};
use crate::store::{load_snapshot, Store};

fn push_tenant(extra: &str) -> (tempfile::TempDir, TenantConfig, ScimPushConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tenants")).unwrap();
    std::fs::write(
        dir.path().join("dirsync.toml"),
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tenants/token"),
        "0123456789abcdef0123456789\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tenants/t.toml"),
        format!("[source]\ntype = \"scim_push\"\ntoken_file = \"token\"\n{extra}"),
    )
    .unwrap();
    let mut config = crate::config::load_strict(&dir.path().join("dirsync.toml")).unwrap();
    let tenant = config.tenants.remove("t").unwrap();
    let SourceConfig::ScimPush(push) = tenant.source.clone() else {
        unreachable!()
    };
    (dir, tenant, push)
}

/// A tiny deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

fn write(
    store: &Store,
    tenant: &TenantConfig,
    push: &ScimPushConfig,
    op: WriteOp,
) -> Option<String> {
    answer(store, tenant, push, op)
        .ok()
        .map(|written| written.resource_id)
}

/// The write's result as the receiver answers it.
fn answer(
    store: &Store,
    tenant: &TenantConfig,
    push: &ScimPushConfig,
    op: WriteOp,
) -> Result<Written, ScimError> {
    let input = Input {
        op,
        log: NewPushRequest {
            tenant: tenant.id.clone(),
            method: "TEST".into(),
            ..NewPushRequest::default()
        },
        received: Instant::now(),
    };
    let (tenant, push) = (tenant.clone(), push.clone());
    let outcome = store
        .run_blocking(move |conn| apply_batch(conn, &tenant, &push, vec![input]))
        .unwrap();
    let BatchOutcome::Done { mut results, .. } = outcome else {
        panic!("busy without a sync")
    };
    results.pop().unwrap()
}

/// What an answer says, without the times a store stamps on the resource (which differ
/// between two stores given the same writes).
type Said = (
    u16,
    String,
    Option<(String, i64)>,
    Option<Vec<ScimMember>>,
    Option<(u64, u64)>,
);

fn said(answer: Result<Written, ScimError>) -> Result<Said, ScimError> {
    answer.map(|written| {
        (
            written.status,
            written.resource_id,
            written.row.map(|row| (row.data, row.version)),
            written.members,
            written.seqs,
        )
    })
}

/// Policy over the whole pushed directory, as a run of the tenant computes it.
fn full_policy(store: &Store, tenant: &TenantConfig, push: &ScimPushConfig) -> Snapshot {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let fetched = runtime
        .block_on(crate::source::scim_push::fetch(
            store,
            &tenant.id,
            push.email_from,
        ))
        .unwrap();
    let mut snapshot = crate::policy::apply(fetched, tenant).snapshot;
    snapshot.prune_dangling_memberships();
    snapshot
}

fn stored(store: &Store, tenant: &str) -> Snapshot {
    let tenant = tenant.to_owned();
    store
        .run_blocking(move |conn| load_snapshot(conn, &tenant))
        .unwrap()
}

/// Group names the generated writes use: some match the policy configs' filters and roles.
const GROUP_NAMES: [&str; 5] = ["admins", "eng-core", "eng-web", "sales", "all"];

/// A random write over the users and groups created so far; `None` when none fits yet.
fn random_op(rng: &mut Rng, step: usize, users: &[String], groups: &[String]) -> Option<WriteOp> {
    let names = GROUP_NAMES;
    let member = |rng: &mut Rng, users: &[String], groups: &[String]| -> Option<Value> {
        if rng.below(4) == 0 {
            rng.pick(groups)
                .map(|id| json!({"value": id, "type": "Group"}))
        } else {
            rng.pick(users).map(|id| json!({"value": id}))
        }
    };
    let op = match rng.below(11) {
        0 | 1 => WriteOp::Create {
            kind: ScimKind::User,
            body: json!({"userName": format!("u{}@x.example", rng.below(60)),
                         "name": {"givenName": "G", "familyName": format!("F{step}")},
                         "active": rng.below(5) != 0}),
        },
        2 => match rng.pick(users) {
            Some(id) => WriteOp::Patch {
                kind: ScimKind::User,
                id: id.clone(),
                body: json!({"Operations": [{"op": "Replace", "path": "active", "value": if rng.below(2) == 0 { "False" } else { "True" }}]}),
            },
            None => return None,
        },
        3 => match rng.pick(users) {
            Some(id) => WriteOp::Delete {
                kind: ScimKind::User,
                id: id.clone(),
            },
            None => return None,
        },
        4 => {
            let members: Vec<Value> = (0..rng.below(4))
                .filter_map(|_| member(rng, users, groups))
                .collect();
            WriteOp::Create {
                kind: ScimKind::Group,
                body: json!({"displayName": names[rng.below(names.len())], "members": members}),
            }
        }
        5 | 6 => {
            let group = rng.pick(groups).cloned()?;
            // Several members at a time, a repeated one, a display label: as IdPs send them.
            let mut members: Vec<Value> = (0..1 + rng.below(3))
                .filter_map(|_| member(rng, users, groups))
                .collect();
            if let (Some(first), 0) = (members.first().cloned(), rng.below(4)) {
                let mut labelled = first;
                labelled["display"] = json!(format!("label {step}"));
                members.push(labelled);
            }
            WriteOp::Patch {
                kind: ScimKind::Group,
                id: group,
                body: json!({"Operations": [{"op": "Add", "path": "members", "value": members}]}),
            }
        }
        7 => match (rng.pick(groups).cloned(), member(rng, users, groups)) {
            (Some(group), Some(member)) => WriteOp::Patch {
                kind: ScimKind::Group,
                id: group,
                body: json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", member["value"].as_str().unwrap())}]}),
            },
            _ => return None,
        },
        8 => match rng.pick(groups).cloned() {
            Some(group) => WriteOp::Patch {
                kind: ScimKind::Group,
                id: group,
                body: json!({"Operations": [{"op": "replace", "value": {"displayName": names[rng.below(names.len())]}}]}),
            },
            None => return None,
        },
        9 => match rng.pick(groups).cloned() {
            Some(group) => {
                let members: Vec<Value> = (0..rng.below(5))
                    .filter_map(|_| member(rng, users, groups))
                    .collect();
                WriteOp::Replace {
                    kind: ScimKind::Group,
                    id: group,
                    body: json!({"displayName": names[rng.below(names.len())], "members": members}),
                }
            }
            None => return None,
        },
        _ => match rng.pick(groups).cloned() {
            Some(group) if rng.below(3) == 0 => WriteOp::Delete {
                kind: ScimKind::Group,
                id: group,
            },
            _ => return None,
        },
    };
    Some(op)
}

/// The users and groups that exist, as the writes so far left them.
#[derive(Default)]
struct Known {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Known {
    /// Notes what `op`, answered with `result` (the resource's id), created or deleted.
    fn note(&mut self, op: &WriteOp, result: Option<&String>) {
        match (op, result) {
            (
                WriteOp::Create {
                    kind: ScimKind::User,
                    ..
                },
                Some(id),
            ) => self.users.push(id.clone()),
            (
                WriteOp::Create {
                    kind: ScimKind::Group,
                    ..
                },
                Some(id),
            ) => {
                self.groups.push(id.clone());
            }
            (WriteOp::Delete { id, .. }, _) => {
                self.users.retain(|known| known != id);
                self.groups.retain(|known| known != id);
            }
            _ => {}
        }
    }
}

fn random_session(seed: u64, extra: &str) {
    let (dir, tenant, push) = push_tenant(extra);
    let store = Store::open(&dir.path().join("state")).unwrap();
    let mut rng = Rng(seed);
    let mut known = Known::default();
    for step in 0..400 {
        let Some(op) = random_op(&mut rng, step, &known.users, &known.groups) else {
            continue;
        };
        let result = write(&store, &tenant, &push, op.clone());
        known.note(&op, result.as_ref());
        if step % 50 == 49 {
            let expected = full_policy(&store, &tenant, &push);
            let got = stored(&store, &tenant.id);
            assert_eq!(
                crate::diff::diff(&got, &expected),
                vec![],
                "seed {seed}, step {step}: the stored directory drifted from policy over the pushed directory"
            );
        }
    }
}

#[test]
fn incremental_writes_store_what_policy_over_the_whole_pushed_directory_gives() {
    for seed in [1, 7, 42, 1000, 2024] {
        random_session(seed, "");
    }
}

#[test]
fn with_roles_group_filters_and_deleted_suspended_users_too() {
    let extra = "suspended_users = \"delete\"\n\n[filters]\ngroups = [\"eng-*\", \"admins\"]\n\n[roles]\n\"admins\" = \"admin\"\n\"eng-core\" = \"dev\"\n";
    for seed in [3, 11, 99] {
        random_session(seed, extra);
    }
}

#[test]
fn direct_membership_mode_too() {
    for seed in [5, 13] {
        random_session(
            seed,
            "nested_groups = \"direct\"\n[roles]\n\"all\" = \"member\"\n",
        );
    }
}

#[test]
fn a_group_filter_without_roles_too() {
    for seed in [17, 23, 31, 59] {
        random_session(seed, "[filters]\ngroups = [\"eng-*\", \"all\"]\n");
    }
}

/// Every event of the tenant: its seq, type, subject and body without the event's own id and
/// time (which differ between two stores given the same writes).
fn events(store: &Store, tenant: &str) -> Vec<(i64, String, String, Value)> {
    let tenant = tenant.to_owned();
    store
        .run_blocking(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, type, subject_id, body FROM events WHERE tenant = ?1 ORDER BY seq",
            )?;
            let mut rows = statement.query([tenant.as_str()])?;
            let mut found = Vec::new();
            while let Some(row) = rows.next()? {
                let mut body: Value = serde_json::from_str(&row.get::<_, String>(3)?).unwrap();
                let object = body.as_object_mut().unwrap();
                object.remove("id");
                object.remove("occurred_at");
                found.push((row.get(0)?, row.get(1)?, row.get(2)?, body));
            }
            Ok(found)
        })
        .unwrap()
}

/// The same writes to two stores, one taking the general path for every write: a PATCH that
/// only adds users to a group gives the same answer and the same events either way.
fn both_paths_session(seed: u64, extra: &str) {
    use super::write::{GENERAL_PATH_ONLY, NEXT_ID};
    let (dir, tenant, push) = push_tenant(extra);
    let lean = Store::open(&dir.path().join("lean")).unwrap();
    let general = Store::open(&dir.path().join("general")).unwrap();
    let mut rng = Rng(seed);
    let mut known = Known::default();
    for step in 0..300 {
        let Some(op) = random_op(&mut rng, step, &known.users, &known.groups) else {
            continue;
        };
        NEXT_ID.set(Some((step as u128) << 64));
        let result = said(answer(&lean, &tenant, &push, op.clone()));
        NEXT_ID.set(Some((step as u128) << 64));
        GENERAL_PATH_ONLY.set(true);
        let expected = said(answer(&general, &tenant, &push, op.clone()));
        GENERAL_PATH_ONLY.set(false);
        assert_eq!(
            result, expected,
            "seed {seed}, step {step}: the two paths answered differently"
        );
        known.note(&op, result.as_ref().ok().map(|said| &said.1));
    }
    NEXT_ID.set(None);
    let (got, expected) = (events(&lean, &tenant.id), events(&general, &tenant.id));
    assert!(
        expected.len() > 50,
        "seed {seed}: too few events to compare ({})",
        expected.len()
    );
    assert_eq!(got, expected, "seed {seed}: the event streams differ");
}

#[test]
fn adding_users_to_a_group_gives_the_events_of_the_general_path() {
    for (seed, extra) in [
        (2, ""),
        (8, ""),
        (19, "[filters]\ngroups = [\"eng-*\", \"all\"]\n"),
        (27, "suspended_users = \"delete\"\n"),
        (44, "nested_groups = \"direct\"\n"),
        // Roles by group: every write takes the general path; the streams agree trivially.
        (61, "[roles]\n\"admins\" = \"admin\"\n"),
    ] {
        both_paths_session(seed, extra);
    }
}
