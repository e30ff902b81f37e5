//! `dirsync inspect TENANT WHO`: what dirsync knows about a user or group, and for something
//! not stored, why. Reads the store only (never the IdP), plus the tenant's config to say which
//! `[roles]` mapping granted a role, which `[attributes]` path an attribute came from and which
//! `[filters]` pattern let a group in.
//!
//! The JSON (`--json`) is the answer; the text form is rendered from it, with every string
//! escaped first (names and emails are IdP text and must not drive the terminal).

use std::collections::{BTreeMap, VecDeque};

use rusqlite::Connection;
use serde_json::{json, Value};

use super::{open_store, tenant, Failure, Outcome};
use crate::cli::InspectArgs;
use crate::config::TenantConfig;
use crate::config::{Config, SourceConfig};
use crate::glob::glob_matches;
use crate::model::{Group, User};
use crate::store::push;
use crate::store::{lookup, StoreError};

const RECENT_EVENTS: u32 = 10;

pub async fn run(config: &Config, args: &InspectArgs) -> Outcome {
    let tenant_config = tenant(config, &args.tenant)?.clone();
    let store = open_store(config)?;
    let who = args.who.clone();
    let report = store
        .run(move |conn| inspect(conn, &tenant_config, &who))
        .await
        .map_err(Failure::run)?;

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_text(
            &crate::terminal::escape(&args.who),
            &escaped(report.clone()),
        );
    }
    Ok(if report["stored"].as_bool() == Some(true) {
        super::exit::SUCCESS
    } else {
        super::exit::RUN_FAILED
    })
}

fn inspect(conn: &Connection, tenant: &TenantConfig, who: &str) -> Result<Value, StoreError> {
    let mut report = if let Some(user) = lookup::find_user(conn, &tenant.id, who)? {
        inspect_user(conn, tenant, &user)?
    } else if let Some(group) = lookup::find_group(conn, &tenant.id, who)? {
        inspect_group(conn, tenant, &group)?
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
) -> Result<Value, StoreError> {
    let id = &tenant.id;
    let members = lookup::members_of_group(conn, id, &group.id)?;
    let mut direct_users = Vec::new();
    let mut children = Vec::new();
    for (kind, member) in lookup::direct_members(conn, id, &group.id)? {
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

/// `report` with every string (keys included) escaped for the terminal.
fn escaped(report: Value) -> Value {
    use crate::terminal::escape;
    match report {
        Value::String(text) => Value::String(escape(&text).into_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(escaped).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (escape(&key).into_owned(), escaped(value)))
                .collect(),
        ),
        other => other,
    }
}

fn print_text(who: &str, report: &Value) {
    let text = |value: &Value| value.as_str().unwrap_or("").to_owned();
    match report["kind"].as_str() {
        Some("user") if report["stored"] == true => {
            let user = &report["user"];
            println!("user {} ({})", text(&user["email"]), text(&user["id"]));
            println!(
                "  name:   {} {}",
                text(&user["first_name"]),
                text(&user["last_name"])
            );
            println!("  state:  {}", text(&user["state"]));
            println!("  roles:");
            for role in report["roles"].as_array().into_iter().flatten() {
                let from: Vec<String> = role["granted_by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|g| {
                        let path = g["path"]
                            .as_str()
                            .map(|p| format!(" ({p})"))
                            .unwrap_or_default();
                        format!("{}{path}", text(&g["group"]))
                    })
                    .collect();
                let from = if role["default_role"] == true {
                    "default_role".to_owned()
                } else {
                    from.join(", ")
                };
                println!("    {} ← {from}", text(&role["role"]));
            }
            println!("  custom attributes:");
            for attribute in report["custom_attributes"].as_array().into_iter().flatten() {
                println!(
                    "    {} = {} (from {})",
                    text(&attribute["name"]),
                    attribute["value"],
                    attribute["path"].as_str().unwrap_or("?")
                );
            }
            for attribute in report["unresolved_attributes"]
                .as_array()
                .into_iter()
                .flatten()
            {
                println!(
                    "    {} not set ({} does not resolve)",
                    text(&attribute["name"]),
                    text(&attribute["path"])
                );
            }
            println!("  groups (effective):");
            for group in report["groups"].as_array().into_iter().flatten() {
                let name = group["email"]
                    .as_str()
                    .or(group["name"].as_str())
                    .unwrap_or("");
                match group["path"].as_str() {
                    Some(path) => println!("    {name}: {path}"),
                    None => println!("    {name}"),
                }
            }
            println!("  direct groups:");
            for group in report["direct_groups"].as_array().into_iter().flatten() {
                let note = if group["synced"] == true {
                    ""
                } else {
                    " (not synced)"
                };
                println!("    {}{note}", text(&group["group"]));
            }
            print_events(report);
        }
        Some("group") if report["stored"] == true => {
            let group = &report["group"];
            println!(
                "group {} ({})",
                group["email"]
                    .as_str()
                    .or(group["name"].as_str())
                    .unwrap_or(""),
                text(&group["id"])
            );
            let filter = &report["filter"];
            match filter["matched"].as_str() {
                Some(glob) => println!("  synced: matches [filters] groups pattern {glob:?}"),
                None => println!("  synced: no [filters] groups, every group is synced"),
            }
            println!(
                "  members, effective ({}):",
                report["members"].as_array().map_or(0, Vec::len)
            );
            for member in report["members"].as_array().into_iter().flatten() {
                println!(
                    "    {} ({})",
                    text(&member["email"]),
                    text(&member["state"])
                );
            }
            println!("  direct user members:");
            for member in report["direct_members"].as_array().into_iter().flatten() {
                println!(
                    "    {}",
                    member["email"].as_str().unwrap_or(&text(&member["id"]))
                );
            }
            for (title, key) in [
                ("child groups", "child_groups"),
                ("parent groups", "parent_groups"),
            ] {
                println!("  {title}:");
                for child in report[key].as_array().into_iter().flatten() {
                    let note = if child["synced"] == true {
                        ""
                    } else {
                        " (not synced)"
                    };
                    println!("    {}{note}", text(&child["group"]));
                }
            }
            print_events(report);
        }
        _ => {
            println!("{who} is not in the store: {}", text(&report["why"]));
            if let Some(left) = report["left_store"].as_str() {
                println!("  it left the store with {left}");
            }
            if let Some(run) = report["since_sync"].as_i64() {
                println!("  excluded for this reason since sync {run}");
            }
            print_idp_requests(report);
        }
    }
}

fn print_events(report: &Value) {
    println!("  recent events:");
    for event in report["recent_events"].as_array().into_iter().flatten() {
        println!(
            "    seq {} {} {} (sync {})",
            event["seq"],
            event["occurred_at"].as_str().unwrap_or(""),
            event["type"].as_str().unwrap_or(""),
            event["sync_id"]
        );
    }
    print_idp_requests(report);
}

/// "Okta deactivated this user at 10:02 with PATCH …": what the IdP sent, newest first.
fn print_idp_requests(report: &Value) {
    let Some(requests) = report["idp_requests"].as_array() else {
        return;
    };
    println!("  requests from the IdP (newest first):");
    if requests.is_empty() {
        println!("    none logged");
    }
    for request in requests {
        let at = request["at_ms"]
            .as_i64()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(crate::event::format_timestamp)
            .unwrap_or_default();
        let events = match (request["first_seq"].as_u64(), request["last_seq"].as_u64()) {
            (Some(first), Some(last)) if first == last => format!(", event seq {first}"),
            (Some(first), Some(last)) => format!(", events seq {first}-{last}"),
            _ => String::new(),
        };
        let agent = request["user_agent"]
            .as_str()
            .map(|agent| format!(" from {agent}"))
            .unwrap_or_default();
        println!(
            "    {at} {} {} -> {}{events}{agent}",
            request["method"].as_str().unwrap_or(""),
            request["path"].as_str().unwrap_or(""),
            request["status"],
        );
        if let Some(detail) = request["detail"].as_str() {
            println!("      error: {detail}");
        }
        if let Some(body) = request["body"].as_str() {
            println!("      body: {body}");
        }
    }
}
