//! `dirsync inspect TENANT WHO`: what dirsync knows about a user or group, and for something
//! not stored, why — the answer of `triage::inspect` (shared with the web console), with the
//! IdP's requests behind it for a push tenant.
//!
//! The JSON (`--json`) is the answer; the text form is rendered from it, with every string
//! escaped first (names and emails are IdP text and must not drive the terminal).

use serde_json::Value;

use super::{open_store, tenant, Failure, Outcome};
use crate::cli::InspectArgs;
use crate::config::Config;
use crate::triage;

pub async fn run(config: &Config, args: &InspectArgs) -> Outcome {
    let tenant_config = tenant(config, &args.tenant)?.clone();
    let store = open_store(config)?;
    let who = args.who.clone();
    let report = store
        .run(move |conn| triage::inspect(conn, &tenant_config, &who, triage::Limits::default()))
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
