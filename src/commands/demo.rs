//! `dirsync demo`: the main job on the built-in emulator, with nothing else installed. Starts
//! the Google Directory API emulator in this process with a generated organisation, writes a
//! throw-away configuration in a temporary folder, runs the daemon on a short schedule, changes
//! the organisation after each sync (hires, leavers, suspensions, renames, group moves) and
//! prints each run's events as they are committed, until Ctrl-C or `--duration`.
//!
//! Beside it, a push tenant: the daemon serves SCIM on a free loopback port, and a simulated
//! Okta (`demo_idp`) in this process provisions a small organisation into it over HTTP and
//! changes it now and then; its events are printed the same way, with their source. The web
//! console is on, with a throw-away token printed at the start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::demo_idp::SimulatedIdp;
use super::{exit, Failure, Outcome};
use crate::cli::DemoArgs;
use crate::config::{self, LogFormat};
use crate::daemon::{self, DaemonOptions, Extension, TenantHook};
use crate::store;
use dirsync_emulator::{DirectoryHandle, Emulator};

const TENANT: &str = "demo";
/// The push tenant the simulated Okta provisions.
const PUSH_TENANT: &str = "okta-demo";

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
    let secrets = Secrets::generate();
    let http = free_loopback_port()?;
    let config_path = write_config(dir, &emulator, args.every, http, &secrets)?;
    let config = config::load_strict(&config_path)
        .map_err(|err| Failure::run(anyhow::anyhow!("the demo's own config is invalid: {err}")))?;

    println!(
        "dirsync demo: emulated Google Workspace at {} ({} users, {} groups); tenant \"{TENANT}\" syncs every {} s",
        emulator.base_url, args.users, args.groups, args.every
    );
    println!(
        "push tenant \"{PUSH_TENANT}\": a simulated Okta provisions it at http://{http}/scim/v2/{PUSH_TENANT}"
    );
    println!(
        "web console: http://{http}/console/ (sign in with {})",
        secrets.console_token
    );
    println!("config in {}; Ctrl-C to stop\n", dir.display());

    let printer = Arc::new(Printer {
        directory: emulator.directory(),
        seed: args.seed,
        every: args.every,
        push_base_url: format!("http://{http}/scim/v2/{PUSH_TENANT}"),
        push_token: secrets.push_token.clone(),
    });
    let mut extensions = super::extensions(&config.global);
    extensions.push(printer);
    let options = DaemonOptions {
        extensions,
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

/// The demo's throw-away tokens: the push tenant's bearer token and the console's.
struct Secrets {
    push_token: String,
    console_token: String,
}

impl Secrets {
    fn generate() -> Self {
        let token = || {
            (0..4)
                .map(|_| format!("{:016x}", rand::random::<u64>()))
                .collect::<String>()
        };
        Self {
            push_token: token(),
            console_token: token(),
        }
    }
}

/// A loopback address no one listens on now, for the daemon's `http_listen`.
fn free_loopback_port() -> Result<std::net::SocketAddr, Failure> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("finding a free port on 127.0.0.1 for the demo's http_listen")?;
    Ok(listener
        .local_addr()
        .context("finding a free port on 127.0.0.1 for the demo's http_listen")?)
}

fn write_config(
    dir: &Path,
    emulator: &dirsync_emulator::EmulatorHandle,
    every: u64,
    http: std::net::SocketAddr,
    secrets: &Secrets,
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
    let secret = |path: &Path, text: &str| -> Result<(), Failure> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(format!("{text}\n").as_bytes()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    };
    write(
        &global,
        format!(
            "state_dir = \"state\"\ntenants_dir = \"tenants\"\ncontrol_socket = \"control.sock\"\nhttp_listen = \"{http}\"\nconsole_token_file = \"console-token\"\n"
        ),
    )?;
    secret(&dir.join("console-token"), &secrets.console_token)?;
    secret(
        &tenants.join(format!("{PUSH_TENANT}-scim-token")),
        &secrets.push_token,
    )?;
    write(
        &tenants.join(format!("{PUSH_TENANT}.toml")),
        format!("[source]\ntype = \"scim_push\"\ntoken_file = \"{PUSH_TENANT}-scim-token\"\n"),
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
    push_base_url: String,
    push_token: String,
}

impl Extension for Printer {
    fn start_tenant(&self, hook: TenantHook) {
        let is_push = hook.config.source.is_push();
        let (printed_first, first_printed) = tokio::sync::oneshot::channel::<()>();
        let TenantHook {
            config,
            store,
            commits,
            stop,
            tracker,
        } = hook;
        tracker.spawn(print_commits(
            config.id.clone(),
            store,
            commits,
            stop.clone(),
            printed_first,
        ));
        let every = self.every;
        if is_push {
            let idp = SimulatedIdp::new(self.push_base_url.clone(), self.push_token.clone());
            tracker.spawn(simulate_okta(idp, self.seed, every, stop));
        } else {
            let directory = self.directory.clone();
            let rng = SmallRng::seed_from_u64(self.seed);
            tracker.spawn(change_google(directory, rng, every, stop, first_printed));
        }
    }
}

/// Prints the events of each commit of `tenant`; says when the first is printed.
async fn print_commits(
    tenant: String,
    store: store::Store,
    mut commits: tokio::sync::watch::Receiver<u64>,
    stop: tokio_util::sync::CancellationToken,
    printed_first: tokio::sync::oneshot::Sender<()>,
) {
    let mut printed_first = Some(printed_first);
    let mut printed = *commits.borrow_and_update();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = commits.changed() => if changed.is_err() { return },
        }
        let last = *commits.borrow_and_update();
        let id = tenant.clone();
        let events = store
            .run(move |conn| store::events_after(conn, &id, printed, None))
            .await;
        // The read can see commits the feed has not announced yet: they are printed now,
        // and not again when their announcement comes.
        match events {
            Ok(events) => {
                print_events(&tenant, &events);
                let read = events.last().map_or(0, |(seq, _)| *seq);
                printed = printed.max(last).max(read);
            }
            Err(err) => {
                eprintln!("cannot read the events of {tenant}: {err}");
                printed = printed.max(last);
            }
        }
        if let Some(first) = printed_first.take() {
            let _ = first.send(());
        }
    }
}

/// Changes the emulated Google organisation on its own clock (a change may emit nothing),
/// once the first sync is shown.
async fn change_google(
    directory: DirectoryHandle,
    mut rng: SmallRng,
    every: u64,
    stop: tokio_util::sync::CancellationToken,
    first_printed: tokio::sync::oneshot::Receiver<()>,
) {
    tokio::select! {
        () = stop.cancelled() => return,
        printed = first_printed => if printed.is_err() { return },
    }
    let mut hires = 0u32;
    let period = Duration::from_millis(every * 1000 + 500);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period / 2, period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        match change(&directory, &mut rng, &mut hires) {
            Ok(what) => println!("\n~ the IdP changes: {what}"),
            Err(err) => println!("\n~ the IdP refused a change: {err}"),
        }
    }
}

/// The simulated Okta: waits for the daemon's listener, provisions its organisation into the
/// push tenant, then changes it about as often as the Google one changes.
async fn simulate_okta(
    mut idp: SimulatedIdp,
    seed: u64,
    every: u64,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x6f6b_7461);
    let started = tokio::select! {
        () = stop.cancelled() => return,
        reached = idp.wait_until_reachable(Duration::from_secs(30)) => reached,
    };
    if let Err(err) = started {
        println!("\n~ Okta cannot reach the push tenant {PUSH_TENANT}: {err}");
        return;
    }
    let provisioned = tokio::select! {
        () = stop.cancelled() => return,
        provisioned = idp.provision() => provisioned,
    };
    match provisioned {
        Ok(what) => println!("\n~ Okta (push to {PUSH_TENANT}) {what}"),
        Err(err) => println!("\n~ Okta's provisioning was refused: {err}"),
    }
    let period = Duration::from_millis(every * 1000 + 700);
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let changed = tokio::select! {
            () = stop.cancelled() => return,
            changed = idp.change(&mut rng) => changed,
        };
        match changed {
            Ok(what) => println!("\n~ Okta (push to {PUSH_TENANT}) changes: {what}"),
            Err(err) => println!("\n~ Okta's change was refused: {err}"),
        }
    }
}

/// Prints a commit's events: a heading per sync (or push request), then one line per event,
/// or counts per type for a big one. Printed at once, so two tenants' commits do not mix.
fn print_events(tenant: &str, events: &[(u64, String)]) {
    let parsed: Vec<Value> = events
        .iter()
        .filter_map(|(_, body)| serde_json::from_str(body).ok())
        .collect();
    let mut out = String::new();
    for part in parsed.chunk_by(|a, b| a["sync_id"] == b["sync_id"]) {
        out.push_str(&describe_part(tenant, part));
    }
    if !out.is_empty() {
        print!("{out}");
    }
}

fn describe_part(tenant: &str, part: &[Value]) -> String {
    let Some(first) = part.first() else {
        return String::new();
    };
    let source = text(&first["source"]);
    let origin = if source == "scim_push" {
        format!("{tenant}, push request {}", first["sync_id"])
    } else {
        format!("{tenant}, sync {}", first["sync_id"])
    };
    let mut out = format!(
        "\n{origin} (source {source}): {} event{} (seq {}..{})\n",
        part.len(),
        if part.len() == 1 { "" } else { "s" },
        first["seq"],
        part.last().map(|e| e["seq"].clone()).unwrap_or_default()
    );
    const DETAIL: usize = 40;
    if part.len() > DETAIL {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for event in part {
            *counts
                .entry(event["type"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        for (kind, count) in counts {
            out.push_str(&format!("  {count:>5} × {kind}\n"));
        }
        return out;
    }
    for event in part {
        out.push_str(&format!("  {}\n", describe(event)));
    }
    out
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
    format!(
        "#{:<5} {:<20} {what}",
        event["seq"].as_u64().unwrap_or_default(),
        kind
    )
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
