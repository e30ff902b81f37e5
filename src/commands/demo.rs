//! `dirsync demo`: the main job on the built-in emulator, with nothing else installed. Starts
//! the Google Directory API emulator in this process with a generated organisation, writes a
//! throw-away configuration in a temporary folder, runs the daemon on a short schedule, changes
//! the organisation after each sync (hires, leavers, suspensions, renames, group moves) and
//! prints each run's events as they are committed, until Ctrl-C or `--duration`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{exit, Failure, Outcome};
use crate::cli::DemoArgs;
use crate::config::{self, LogFormat};
use crate::daemon::{self, DaemonOptions, Extension, TenantHook};
use crate::store;
use dirsync_emulator::{DirectoryHandle, Emulator};

const TENANT: &str = "demo";

pub async fn run(args: &DemoArgs) -> Outcome {
    super::init_tracing(LogFormat::Text, "warn");
    if !(1..=59).contains(&args.every) {
        return Err(Failure::usage(anyhow::anyhow!(
            "--every must be between 1 and 59 seconds"
        )));
    }
    let dir = std::env::temp_dir().join(format!("dirsync-demo-{}", std::process::id()));
    let result = demo(args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn demo(args: &DemoArgs, dir: &Path) -> Outcome {
    let emulator = Emulator::builder()
        .users(args.users)
        .groups(args.groups)
        .seed(args.seed)
        .build()
        .context("building the emulated organisation")?;
    let emulator = emulator
        .start(([127, 0, 0, 1], 0).into())
        .await
        .context("starting the emulator on 127.0.0.1")?;
    let config_path = write_config(dir, &emulator, args.every)?;
    let config = config::load_strict(&config_path)
        .map_err(|err| Failure::run(anyhow::anyhow!("the demo's own config is invalid: {err}")))?;

    println!(
        "dirsync demo: emulated Google Workspace at {} ({} users, {} groups); tenant \"{TENANT}\" syncs every {} s",
        emulator.base_url, args.users, args.groups, args.every
    );
    println!("config in {}; Ctrl-C to stop\n", dir.display());

    let printer = Arc::new(Printer {
        directory: emulator.directory(),
        seed: args.seed,
        every: args.every,
    });
    let options = DaemonOptions {
        extensions: vec![printer],
        ..DaemonOptions::new(config_path)
    };
    let duration = args.duration;
    let stop = async move {
        match duration {
            Some(seconds) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                    () = super::run::shutdown_signal() => {}
                }
            }
            None => super::run::shutdown_signal().await,
        }
    };
    let outcome = daemon::run(config, options, stop).await;
    emulator.shutdown().await;
    outcome.map_err(Failure::run)?;
    println!("\ndemo stopped");
    Ok(exit::SUCCESS)
}

fn write_config(
    dir: &Path,
    emulator: &dirsync_emulator::EmulatorHandle,
    every: u64,
) -> Result<PathBuf, Failure> {
    let tenants = dir.join("tenants");
    std::fs::create_dir_all(&tenants).with_context(|| format!("creating {}", tenants.display()))?;
    emulator
        .write_key(&tenants.join("demo-service-account.json"))
        .context("writing the demo's service-account key")?;
    let global = dir.join("dirsync.toml");
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(
        &global,
        "state_dir = \"state\"\ntenants_dir = \"tenants\"\ncontrol_socket = \"control.sock\"\n"
            .to_owned(),
    )?;
    write(
        &tenants.join(format!("{TENANT}.toml")),
        format!(
            "schedule = \"*/{every} * * * * *\"\n\n[source]\ntype = \"google\"\ncredentials_file = \"demo-service-account.json\"\nsubject = \"{}\"\napi_base = \"{}\"\nrequests_per_minute = 0\n",
            emulator.admin_email(),
            emulator.base_url
        ),
    )?;
    Ok(global)
}

/// Prints the events of each commit and makes the next change to the organisation.
struct Printer {
    directory: DirectoryHandle,
    seed: u64,
    every: u64,
}

impl Extension for Printer {
    fn start_tenant(&self, hook: TenantHook) {
        let directory = self.directory.clone();
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let TenantHook {
            config,
            store,
            mut commits,
            stop,
            tracker,
        } = hook;
        let (printed_first, first_printed) = tokio::sync::oneshot::channel::<()>();
        let mut printed_first = Some(printed_first);
        let changes_stop = stop.clone();
        let every = self.every;
        tracker.spawn(async move {
            let mut printed = *commits.borrow_and_update();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = commits.changed() => if changed.is_err() { return },
                }
                let last = *commits.borrow_and_update();
                let tenant = config.id.clone();
                let events = store
                    .run(move |conn| store::events_after(conn, &tenant, printed, None))
                    .await;
                match events {
                    Ok(events) => print_events(&events),
                    Err(err) => eprintln!("cannot read the events: {err}"),
                }
                printed = last;
                if let Some(first) = printed_first.take() {
                    let _ = first.send(());
                }
            }
        });
        // Changes on their own clock (a change may emit nothing), once the first sync is shown.
        tracker.spawn(async move {
            tokio::select! {
                () = changes_stop.cancelled() => return,
                printed = first_printed => if printed.is_err() { return },
            }
            let mut hires = 0u32;
            let period = Duration::from_millis(every * 1000 + 500);
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period / 2, period);
            loop {
                tokio::select! {
                    () = changes_stop.cancelled() => return,
                    _ = interval.tick() => {}
                }
                match change(&directory, &mut rng, &mut hires) {
                    Ok(what) => println!("\n~ the IdP changes: {what}"),
                    Err(err) => println!("\n~ the IdP refused a change: {err}"),
                }
            }
        });
    }
}

fn print_events(events: &[(u64, String)]) {
    let parsed: Vec<Value> = events
        .iter()
        .filter_map(|(_, body)| serde_json::from_str(body).ok())
        .collect();
    let Some(first) = parsed.first() else {
        return;
    };
    println!(
        "\nsync {}: {} event{} (seq {}..{})",
        first["sync_id"],
        parsed.len(),
        if parsed.len() == 1 { "" } else { "s" },
        first["seq"],
        parsed.last().map(|e| e["seq"].clone()).unwrap_or_default()
    );
    const DETAIL: usize = 40;
    if parsed.len() > DETAIL {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for event in &parsed {
            *counts
                .entry(event["type"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        for (kind, count) in counts {
            println!("  {count:>5} × {kind}");
        }
        return;
    }
    for event in &parsed {
        println!("  {}", describe(event));
    }
}

fn text(value: &Value) -> String {
    value.as_str().map(str::to_owned).unwrap_or_default()
}

fn name_of(object: &Value) -> String {
    let email = text(&object["email"]);
    if email.is_empty() {
        text(&object["name"])
    } else {
        email
    }
}

/// One readable line for an event.
fn describe(event: &Value) -> String {
    let kind = text(&event["type"]);
    let data = &event["data"];
    let what = match kind.as_str() {
        "group.user_added" | "group.user_removed" => format!(
            "{} {} {}",
            name_of(&data["user"]),
            if kind.ends_with("added") {
                "→"
            } else {
                "←"
            },
            name_of(&data["group"])
        ),
        _ => {
            let mut line = name_of(data);
            if let Some(previous) = event["previous_attributes"].as_object() {
                let changes: Vec<String> = previous
                    .iter()
                    .filter(|(key, _)| key.as_str() != "raw_attributes")
                    .map(|(key, old)| {
                        let new = &data[key];
                        format!("{key}: {} → {}", compact(old), compact(new))
                    })
                    .collect();
                if !changes.is_empty() {
                    line.push_str(&format!(" ({})", changes.join("; ")));
                }
            }
            line
        }
    };
    format!("#{:<5} {:<20} {what}", event["seq"], kind)
}

fn compact(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

/// Makes one change an admin would make; says what it did.
fn change(
    directory: &DirectoryHandle,
    rng: &mut SmallRng,
    hires: &mut u32,
) -> Result<String, dirsync_emulator::ApiError> {
    let users: Vec<String> = directory
        .user_emails()
        .into_iter()
        .filter(|email| !email.starts_with("admin@"))
        .collect();
    let groups = directory.group_emails();
    let pick = |rng: &mut SmallRng, from: &[String]| from[rng.random_range(0..from.len())].clone();
    let choice = if users.len() < 3 || groups.len() < 2 {
        0
    } else {
        rng.random_range(0..5)
    };
    match choice {
        0 => {
            *hires += 1;
            let email = format!("new.hire{hires}@example.com");
            directory.insert_user(&json!({
                "primaryEmail": email,
                "name": {"givenName": "New", "familyName": format!("Hire{hires}")}
            }))?;
            if let Some(group) = groups.first() {
                directory.add_member(group, &json!({"email": email}))?;
                Ok(format!("hired {email} into {group}"))
            } else {
                Ok(format!("hired {email}"))
            }
        }
        1 => {
            let user = pick(rng, &users);
            directory.delete_user(&user)?;
            Ok(format!("{user} left the company"))
        }
        2 => {
            let user = pick(rng, &users);
            directory.update_user(&user, &json!({"suspended": true}))?;
            Ok(format!("suspended {user}"))
        }
        3 => {
            let user = pick(rng, &users);
            let family = format!("Renamed{}", rng.random_range(100..1000));
            directory.update_user(&user, &json!({"name": {"familyName": family}}))?;
            Ok(format!("renamed {user}: family name {family}"))
        }
        _ => {
            let user = pick(rng, &users);
            let from = groups
                .iter()
                .find(|group| {
                    directory.members(group).is_some_and(|members| {
                        members
                            .iter()
                            .any(|m| m["email"].as_str() == Some(user.as_str()))
                    })
                })
                .cloned();
            let to = pick(rng, &groups);
            if let Some(from) = from.filter(|from| *from != to) {
                directory.remove_member(&from, &user)?;
                directory.add_member(&to, &json!({"email": user}))?;
                Ok(format!("moved {user} from {from} to {to}"))
            } else {
                directory.add_member(&to, &json!({"email": user}))?;
                Ok(format!("added {user} to {to}"))
            }
        }
    }
}
