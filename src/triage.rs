//! Triage: what the store knows about one user or group of a tenant, and for something not
//! stored, why (outside the org-unit filter, only in unsynced groups, suspended and dropped by
//! policy, deleted upstream on run N, never seen). One implementation for `dirsync inspect` and
//! the web console's inspect page. Reads the store only (never the IdP), plus the tenant's
//! config to say which `[roles]` mapping granted a role, which `[attributes]` path an
//! attribute came from and which `[filters]` pattern let a group in.
//!
//! The answer is JSON (the `inspect --json` contract); callers render it and escape its strings
//! for their medium (IdP text). Must not: write anything, or render.

use std::collections::{BTreeMap, VecDeque};

use crate::store::Connection;
use serde_json::{json, Value};

use crate::config::{SourceConfig, TenantConfig};
use crate::glob::glob_matches;
use crate::model::{Group, User};
use crate::store::push;
use crate::store::{lookup, StoreError};

const RECENT_EVENTS: u32 = 10;

/// Bounds on the lists of an answer; `Limits::default()` bounds nothing (the CLI).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// At most this many members (effective and direct) of a group.
    pub members: Option<u32>,
}

/// What the store knows about `who` (an id, email, alias or group name) in `tenant`, and for
/// something not stored, why: the JSON of `dirsync inspect --json`. For a push tenant, also
/// the IdP's requests behind it. `limits` bounds the lists that grow with the directory (a
/// group's members), for callers that must answer quickly.
pub fn inspect(
    conn: &Connection,
    tenant: &TenantConfig,
    who: &str,
    limits: Limits,
) -> Result<Value, StoreError> {
    let mut report = if let Some(user) = lookup::find_user(conn, &tenant.id, who)? {
        inspect_user(conn, tenant, &user)?
    } else if let Some(group) = lookup::find_group(conn, &tenant.id, who)? {
        inspect_group(conn, tenant, &group, limits)?
    } else {
        not_stored(conn, tenant, who)?
    };
    if tenant.source.is_push() {
        let requests = idp_requests(conn, &tenant.id, who, &report)?;
        report["idp_requests"] = serde_json::to_value(requests).unwrap_or_default();
    }
    Ok(report)
}

/// The IdP's requests behind a pushed user or group: those addressed to it, and those that
/// produced its recent events (a membership PATCH to a group names the user only in its
/// body), newest first.
fn idp_requests(
    conn: &Connection,
    tenant: &str,
    who: &str,
    report: &Value,
) -> Result<Vec<push::PushRequest>, StoreError> {
    const SHOWN: usize = 10;
    let mut ids: Vec<String> = ["user", "group"]
        .iter()
        .filter_map(|kind| report[kind]["id"].as_str().map(str::to_owned))
        .collect();
    for kind in [push::ScimKind::User, push::ScimKind::Group] {
        for lookup in [
            push::Lookup::Id,
            push::Lookup::UserName,
            push::Lookup::DisplayName,
        ] {
            for row in push::find_resources(conn, tenant, kind, lookup, who)? {
                ids.push(row.id);
            }
        }
    }
    ids.push(who.to_owned());
    let mut found: std::collections::BTreeMap<i64, push::PushRequest> = Default::default();
    for id in &ids {
        for request in push::requests_touching(conn, tenant, id, SHOWN)? {
            found.insert(request.id, request);
        }
    }
    let producing: Vec<i64> = report["recent_events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| event["source"] == "scim_push")
        .filter_map(|event| event["sync_id"].as_i64())
        .collect();
    for id in producing {
        if let Some(request) = push::request_by_id(conn, tenant, id)? {
            found.insert(request.id, request);
        }
    }
    Ok(found.into_values().rev().take(SHOWN).collect())
}

fn events(conn: &Connection, tenant: &str, id: &str) -> Result<Vec<Value>, StoreError> {
    Ok(lookup::events_about(conn, tenant, id, RECENT_EVENTS)?
        .iter()
        .filter_map(|body| serde_json::from_str(body).ok())
        .collect())
}

/// For every group a user is in directly or through nested groups, the shortest chain of
/// groups from it down to the user (breadth-first up the stored direct graph).
fn paths_up(
    conn: &Connection,
    tenant: &str,
    user_id: &str,
) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for parent in lookup::direct_parents(conn, tenant, "user", user_id)? {
        paths.insert(parent.clone(), vec![parent.clone()]);
        queue.push_back(parent);
    }
    while let Some(group) = queue.pop_front() {
        let below = paths[&group].clone();
        for parent in lookup::direct_parents(conn, tenant, "group", &group)? {
            if paths.contains_key(&parent) {
                continue;
            }
            let mut path = vec![parent.clone()];
            path.extend(below.iter().cloned());
            paths.insert(parent.clone(), path);
            queue.push_back(parent);
        }
    }
    Ok(paths)
}

fn label(conn: &Connection, tenant: &str, id: &str) -> Result<String, StoreError> {
    Ok(lookup::group_label(conn, tenant, id)?.0)
}

fn inspect_user(
    conn: &Connection,
    tenant: &TenantConfig,
    user: &User,
) -> Result<Value, StoreError> {
    let id = &tenant.id;
    let paths = paths_up(conn, id, &user.id)?;
    let groups = lookup::groups_of_user(conn, id, &user.id)?;
    let mut effective = Vec::new();
    for group in &groups {
        let path = match paths.get(&*group.id) {
            Some(chain) => {
                let mut labels = chain
                    .iter()
                    .map(|g| label(conn, id, g))
                    .collect::<Result<Vec<_>, _>>()?;
                labels.push("you".to_owned());
                Value::String(labels.join(" ← "))
            }
            None => Value::Null,
        };
        effective.push(json!({
            "id": group.id,
            "email": group.email,
            "name": group.name,
            "direct": paths.get(&*group.id).is_some_and(|chain| chain.len() == 1),
            "path": path,
        }));
    }
    let mut direct = Vec::new();
    for group_id in lookup::direct_parents(conn, id, "user", &user.id)? {
        let (label, synced) = lookup::group_label(conn, id, &group_id)?;
        direct.push(json!({"id": group_id, "group": label, "synced": synced}));
    }

    let mut roles = Vec::new();
    for role in &user.roles {
        let granted_by: Vec<Value> = effective
            .iter()
            .zip(&groups)
            .filter(|(_, group)| {
                tenant
                    .roles
                    .by_group
                    .get(&group.config_key().to_lowercase())
                    == Some(role)
            })
            .map(|(entry, group)| json!({"group": group.config_key(), "path": entry["path"]}))
            .collect();
        let default = granted_by.is_empty() && tenant.roles.default_role.as_ref() == Some(role);
        roles.push(json!({"role": role, "granted_by": granted_by, "default_role": default}));
    }
    let custom_attributes = user.custom_attributes.to_map();
    let attributes: Vec<Value> = custom_attributes
        .iter()
        .map(|(name, value)| {
            json!({
                "name": name,
                "value": value,
                "path": tenant.attributes.paths.get(name).map(|p| p.text.clone()),
            })
        })
        .collect();
    let unresolved: Vec<Value> = tenant
        .attributes
        .paths
        .iter()
        .filter(|(name, _)| !custom_attributes.contains_key(*name))
        .map(|(name, path)| json!({"name": name, "path": path.text}))
        .collect();

    Ok(json!({
        "kind": "user",
        "stored": true,
        "tenant": id,
        "user": user,
        "groups": effective,
        "direct_groups": direct,
        "roles": roles,
        "custom_attributes": attributes,
        "unresolved_attributes": unresolved,
        "recent_events": events(conn, id, &user.id)?,
    }))
}

/// Whether `[filters] groups` lets a group in, and by which pattern.
fn filter_status(tenant: &TenantConfig, key: &str) -> Value {
    let patterns = &tenant.filters.groups;
    if patterns.is_empty() {
        return json!({"synced": true, "matched": null, "patterns": []});
    }
    let matched = patterns.iter().find(|glob| glob_matches(glob, key));
    json!({"synced": matched.is_some(), "matched": matched, "patterns": patterns})
}

fn inspect_group(
    conn: &Connection,
    tenant: &TenantConfig,
    group: &Group,
    limits: Limits,
) -> Result<Value, StoreError> {
    let id = &tenant.id;
    let members = lookup::members_of_group(conn, id, &group.id, limits.members)?;
    let members_total = match limits.members {
        Some(_) => lookup::count_members(conn, id, &group.id)?,
        None => members.len() as u64,
    };
    let mut direct_users = Vec::new();
    let mut children = Vec::new();
    for (kind, member) in lookup::direct_members(conn, id, &group.id, limits.members)? {
        if kind == "group" {
            let (label, synced) = lookup::group_label(conn, id, &member)?;
            children.push(json!({"id": member, "group": label, "synced": synced}));
        } else {
            let email = lookup::find_user(conn, id, &member)?.map(|u| u.email);
            direct_users.push(json!({"id": member, "email": email}));
        }
    }
    let mut parents = Vec::new();
    for parent in lookup::direct_parents(conn, id, "group", &group.id)? {
        let (label, synced) = lookup::group_label(conn, id, &parent)?;
        parents.push(json!({"id": parent, "group": label, "synced": synced}));
    }
    Ok(json!({
        "kind": "group",
        "stored": true,
        "tenant": id,
        "group": group,
        "filter": filter_status(tenant, group.config_key()),
        "members_total": members_total,
        "members": members.iter().map(|u| json!({"id": u.id, "email": u.email, "state": u.state})).collect::<Vec<_>>(),
        "direct_members": direct_users,
        "child_groups": children,
        "parent_groups": parents,
        "recent_events": events(conn, id, &group.id)?,
    }))
}

fn not_stored(conn: &Connection, tenant: &TenantConfig, who: &str) -> Result<Value, StoreError> {
    let id = &tenant.id;
    let deletion: Option<Value> =
        lookup::last_deletion(conn, id, who)?.and_then(|body| serde_json::from_str(&body).ok());
    let left = deletion.as_ref().map(|event| {
        format!(
            "{} on sync {} (seq {}, {})",
            event["type"].as_str().unwrap_or("deleted"),
            event["sync_id"],
            event["seq"],
            event["occurred_at"].as_str().unwrap_or("?")
        )
    });
    let org_units = format!("{:?}", tenant.filters.org_units);
    if let Some(exclusion) = lookup::find_exclusion(conn, id, who)? {
        let detail = exclusion.detail.clone();
        let why = match exclusion.reason.as_str() {
            "outside_org_units" => match &detail {
                Some(unit) => format!(
                    "outside the org-unit filter: the user is in {unit}, and [filters] org_units = {org_units}"
                ),
                None => format!(
                    "outside the org-unit filter: not listed under [filters] org_units = {org_units}, seen only as a member of a group"
                ),
            },
            "not_in_synced_group" => match &detail {
                Some(groups) => format!(
                    "only in groups that [filters] groups leaves out ({groups}), and [filters] users = \"group_members\""
                ),
                None => "in no group at all, and [filters] users = \"group_members\" keeps only members of synced groups".to_owned(),
            },
            "suspended_dropped" => "suspended upstream and dropped by policy (suspended_users = \"delete\")".to_owned(),
            "group_filter" => format!(
                "filtered out: the group matches none of [filters] groups = {:?}",
                tenant.filters.groups
            ),
            other => other.to_owned(),
        };
        let mut report = json!({
            "kind": exclusion.kind,
            "stored": false,
            "tenant": id,
            "reason": exclusion.reason,
            "why": why,
            "since_sync": exclusion.run_id,
            "exclusion": exclusion,
            "left_store": left,
            "event": deletion,
        });
        if report["kind"] == "group" {
            report["filter"] = filter_status(tenant, &exclusion.email);
        }
        return Ok(report);
    }
    if let Some(event) = deletion {
        return Ok(json!({
            "kind": if event["type"].as_str().is_some_and(|t| t.starts_with("group")) { "group" } else { "user" },
            "stored": false,
            "tenant": id,
            "reason": "deleted_upstream",
            "why": format!("deleted upstream: {}", left.unwrap_or_default()),
            "event": event,
        }));
    }
    let mut why =
        "never seen: no user or group with this id, email or name was ever fetched for this tenant"
            .to_owned();
    if matches!(tenant.source, SourceConfig::Google(_)) && !tenant.filters.org_units.is_empty() {
        why.push_str(&format!(
            "; only users in [filters] org_units = {org_units} are listed, so a user elsewhere who is in no synced group is never seen"
        ));
    }
    Ok(
        json!({"kind": "unknown", "stored": false, "tenant": id, "reason": "never_seen", "why": why}),
    )
}
