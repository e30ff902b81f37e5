//! `dirsync inspect TENANT WHO`: what dirsync knows about a user or group, and for something
//! not stored, why.

use serde_json::{json, Value};

use super::{open_store, tenant, Failure, Outcome};
use crate::cli::InspectArgs;
use crate::config::Config;
use crate::store::lookup;

pub async fn run(config: &Config, args: &InspectArgs) -> Outcome {
    let tenant_config = tenant(config, &args.tenant)?;
    let store = open_store(config)?;
    let (tenant_id, who) = (tenant_config.id.clone(), args.who.clone());
    let report = tokio::task::spawn_blocking(move || -> Result<Value, crate::store::StoreError> {
        let conn = store.connect()?;
        if let Some(user) = lookup::find_user(&conn, &tenant_id, &who)? {
            let groups = lookup::groups_of_user(&conn, &tenant_id, &user.id)?;
            let events: Vec<Value> = lookup::events_about(&conn, &tenant_id, &user.id, 10)?
                .iter()
                .filter_map(|body| serde_json::from_str(body).ok())
                .collect();
            return Ok(json!({
                "kind": "user",
                "stored": true,
                "user": user,
                "groups": groups.iter().map(|g| json!({"id": g.id, "email": g.email, "name": g.name})).collect::<Vec<_>>(),
                "roles": user.roles,
                "custom_attributes": user.custom_attributes,
                "recent_events": events,
            }));
        }
        if let Some(group) = lookup::find_group(&conn, &tenant_id, &who)? {
            let members = lookup::members_of_group(&conn, &tenant_id, &group.id)?;
            let events: Vec<Value> = lookup::events_about(&conn, &tenant_id, &group.id, 10)?
                .iter()
                .filter_map(|body| serde_json::from_str(body).ok())
                .collect();
            return Ok(json!({
                "kind": "group",
                "stored": true,
                "group": group,
                "members": members.iter().map(|u| json!({"id": u.id, "email": u.email, "state": u.state})).collect::<Vec<_>>(),
                "recent_events": events,
            }));
        }
        if let Some(exclusion) = lookup::find_exclusion(&conn, &tenant_id, &who)? {
            let why = match exclusion.reason.as_str() {
                "outside_org_units" => format!(
                    "filtered out: org unit {} is outside [filters] org_units",
                    exclusion.detail.as_deref().unwrap_or("?")
                ),
                "not_in_synced_group" => "filtered out: not an effective member of any synced group ([filters] users = \"group_members\")".to_owned(),
                "suspended_dropped" => "suspended upstream and dropped by policy (suspended_users = \"delete\")".to_owned(),
                "group_filter" => "filtered out: the group does not match [filters] groups".to_owned(),
                other => other.to_owned(),
            };
            return Ok(json!({"kind": exclusion.kind, "stored": false, "reason": exclusion.reason, "why": why, "exclusion": exclusion}));
        }
        if let Some(body) = lookup::last_deletion(&conn, &tenant_id, &who)? {
            let event: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let why = format!(
                "deleted upstream: {} at {} (sync {}, seq {})",
                event["type"].as_str().unwrap_or("deleted"),
                event["occurred_at"].as_str().unwrap_or("?"),
                event["sync_id"],
                event["seq"]
            );
            return Ok(json!({"kind": "unknown", "stored": false, "reason": "deleted_upstream", "why": why, "event": event}));
        }
        Ok(json!({"kind": "unknown", "stored": false, "reason": "never_seen", "why": "never seen upstream: no user or group with this id, email or name was ever fetched for this tenant"}))
    })
    .await
    .map_err(|err| Failure::run(anyhow::anyhow!("{err}")))?
    .map_err(Failure::run)?;

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_text(&args.who, &report);
    }
    Ok(if report["stored"].as_bool() == Some(true) {
        super::exit::SUCCESS
    } else {
        super::exit::RUN_FAILED
    })
}

fn print_text(who: &str, report: &Value) {
    match report["kind"].as_str() {
        Some("user") if report["stored"] == true => {
            let user = &report["user"];
            println!(
                "user {} ({})",
                user["email"].as_str().unwrap_or(""),
                user["id"].as_str().unwrap_or("")
            );
            println!(
                "  name:   {} {}",
                user["first_name"].as_str().unwrap_or(""),
                user["last_name"].as_str().unwrap_or("")
            );
            println!("  state:  {}", user["state"].as_str().unwrap_or(""));
            println!("  roles:  {}", report["roles"]);
            println!("  custom attributes: {}", report["custom_attributes"]);
            println!("  groups:");
            for group in report["groups"].as_array().into_iter().flatten() {
                println!(
                    "    {} ({})",
                    group["email"]
                        .as_str()
                        .or(group["name"].as_str())
                        .unwrap_or(""),
                    group["id"].as_str().unwrap_or("")
                );
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
                group["id"].as_str().unwrap_or("")
            );
            println!(
                "  members ({}):",
                report["members"].as_array().map_or(0, Vec::len)
            );
            for member in report["members"].as_array().into_iter().flatten() {
                println!(
                    "    {} ({})",
                    member["email"].as_str().unwrap_or(""),
                    member["state"].as_str().unwrap_or("")
                );
            }
            print_events(report);
        }
        _ => println!(
            "{who} is not in the store: {}",
            report["why"].as_str().unwrap_or("unknown")
        ),
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
}
