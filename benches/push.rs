//! `cargo bench --bench push`: provisioning by SCIM push (issue 15). One `dirsync run` of the
//! release binary serves a push tenant; a load generator on the same machine (this program:
//! tokio + reqwest, `--connections` concurrent connections) provisions a directory the way an
//! IdP's first provisioning does — POST every user, POST every group, then PATCH members in
//! (`--members-per-patch` at a time) — and then times single-member PATCHes to a group that
//! holds every user. It prints, per phase: requests, requests/s, p50/p99 latency, 429s; and
//! the daemon's peak RSS (sampled from /proc) and events/s.
//!
//! Targets (2-core machine): ≥ 5,000 write requests/s with 32 connections, p99 < 100 ms, a
//! single-member PATCH to a group of every user < 5 ms p50, peak RSS < 1 GiB. The bench exits
//! non-zero when one is missed.
//!
//! ```text
//! cargo bench --bench push                       # 100k users, 10k groups, 1M memberships
//! cargo bench --bench push -- --users 10000 --groups 1000 --memberships 100000
//! ```
//!
//! `DIRSYNC_BENCH_LOG` sets the daemon's `RUST_LOG` (default `warn`; `dirsync=debug` logs each
//! group commit's size and duration) and `DIRSYNC_BENCH_KEEP_LOG=FILE` copies its log there.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dirsync_testkit::bench::{mib, Targets};
use dirsync_testkit::daemon::Daemon;
use dirsync_testkit::{ConfigDir, Dirsync};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_dirsync");
const TOKEN: &str = "push-bench-token-0123456789abcdef";
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Debug, Clone)]
struct Options {
    users: usize,
    groups: usize,
    memberships: usize,
    members_per_patch: usize,
    connections: usize,
    single_patches: usize,
    targets: bool,
}

fn usage(message: &str) -> ! {
    eprintln!("push bench: {message}\nusage: cargo bench --bench push -- [--users N] [--groups N] [--memberships N] [--members-per-patch N] [--connections N] [--single-patches N]");
    std::process::exit(2);
}

impl Options {
    fn parse() -> Self {
        let mut options = Options {
            users: 100_000,
            groups: 10_000,
            memberships: 1_000_000,
            members_per_patch: 10,
            connections: 32,
            single_patches: 1_000,
            targets: true,
        };
        // cargo bench passes --bench to every harness = false target; cargo test does not.
        let benchmarking = std::env::args().any(|arg| arg == "--bench");
        let mut unknown: Vec<String> = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> usize {
                let text = args
                    .next()
                    .unwrap_or_else(|| usage(&format!("{name} needs a value")));
                text.replace('_', "")
                    .parse()
                    .unwrap_or_else(|_| usage(&format!("{name}: {text:?} is not a number")))
            };
            match arg.as_str() {
                "--users" => options.users = number("--users"),
                "--groups" => options.groups = number("--groups"),
                "--memberships" => options.memberships = number("--memberships"),
                "--members-per-patch" => options.members_per_patch = number("--members-per-patch"),
                "--connections" => options.connections = number("--connections"),
                "--single-patches" => options.single_patches = number("--single-patches"),
                "--bench" => {}
                // `cargo test` hands libtest's arguments to every target: see below.
                other if !benchmarking => unknown.push(other.to_owned()),
                other => usage(&format!("unknown argument {other:?}")),
            }
        }
        if options.users == 0 || options.groups == 0 || options.connections == 0 {
            usage("--users, --groups and --connections must be at least 1");
        }
        options.members_per_patch = options.members_per_patch.max(1);
        if !benchmarking {
            dirsync_testkit::bench::exit_unless_a_filter_names("push", &unknown);
            // `cargo test --all-targets` runs this target too: a small directory checks that
            // the benchmark works; no targets on a machine busy with other tests.
            eprintln!("push bench: smoke run (no --bench); `cargo bench --bench push` measures");
            options.users = 300;
            options.groups = 20;
            options.memberships = 2_000;
            options.single_patches = 50;
            options.connections = 8;
            options.targets = false;
        }
        options
    }
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    throttled: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[index]
    }

    fn print(&self) {
        println!(
            "  {:<28} {:>9} requests in {:>7.1} s = {:>7.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   429s {}",
            self.name,
            self.requests,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.percentile(0.50).as_secs_f64() * 1000.0,
            self.percentile(0.99).as_secs_f64() * 1000.0,
            self.throttled
        );
    }
}

/// One request of a phase: method, path below the base URL, body.
type Request = (reqwest::Method, String, Option<Value>);

/// Runs `total` requests from `connections` concurrent workers; `make(i)` builds request i.
/// A 429 is waited out (its Retry-After) and retried, as an IdP does. Returns the measured
/// phase and each request's answer body.
async fn phase(
    name: &'static str,
    client: &reqwest::Client,
    base: &str,
    total: usize,
    connections: usize,
    make: impl Fn(usize) -> Request + Send + Sync + 'static,
) -> (Phase, Vec<Value>) {
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let throttled = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(Mutex::new(vec![Value::Null; total]));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (client, base, make, next, throttled, answers, latencies) = (
            client.clone(),
            base.to_owned(),
            make.clone(),
            next.clone(),
            throttled.clone(),
            answers.clone(),
            latencies.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let (method, path, body) = make(index);
                loop {
                    let sent = Instant::now();
                    let mut request = client
                        .request(method.clone(), format!("{base}{path}"))
                        .bearer_auth(TOKEN);
                    if let Some(body) = &body {
                        request = request
                            .header("content-type", "application/scim+json")
                            .body(body.to_string());
                    }
                    let response = request.send().await.unwrap();
                    let status = response.status().as_u16();
                    if status == 429 {
                        throttled.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    let text = response.text().await.unwrap();
                    mine.push(sent.elapsed());
                    assert!(
                        (200..300).contains(&status),
                        "{name}: {method} {path} answered {status}: {text}"
                    );
                    let answer = serde_json::from_str(&text).unwrap_or(Value::Null);
                    answers.lock().unwrap()[index] = answer;
                    break;
                }
            }
            latencies.lock().unwrap().extend(mine);
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    let latencies = std::mem::take(&mut *latencies.lock().unwrap());
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    (
        Phase {
            name,
            requests: total,
            elapsed,
            latencies,
            throttled: throttled.load(Ordering::Relaxed),
        },
        answers,
    )
}

fn ids(answers: &[Value]) -> Arc<Vec<String>> {
    Arc::new(
        answers
            .iter()
            .map(|answer| answer["id"].as_str().unwrap().to_owned())
            .collect(),
    )
}

/// Samples the daemon's resident memory until stopped; returns the peak.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                for line in status.lines() {
                    if let Some(kib) = line.strip_prefix("VmRSS:") {
                        let kib: u64 = kib
                            .trim()
                            .trim_end_matches(" kB")
                            .trim()
                            .parse()
                            .unwrap_or(0);
                        peak = peak.max(kib * 1024);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

fn main() {
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let targets = runtime.block_on(bench(options.clone()));
    println!("{}", targets.report());
    if options.targets && targets.failed() > 0 {
        std::process::exit(1);
    }
}

async fn bench(options: Options) -> Targets {
    let setup = ConfigDir::builder(Dirsync::new(BIN)).http_listen().build();
    let token = setup.write("tenants/push-token", format!("{TOKEN}\n"));
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    setup.write_tenant(
        "acme",
        "[source]\ntype = \"scim_push\"\ntoken_file = \"push-token\"\nmax_queued_writes = 4096\n",
    );
    let log_level = std::env::var("DIRSYNC_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let mut daemon = Daemon::start_with_env(&setup, None, &[("RUST_LOG", &log_level)]).await;
    let base = format!("http://{}/scim/v2/acme", setup.http.unwrap());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.connections)
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(daemon.child.id(), stop.clone());
    println!(
        "push bench: {} users, {} groups, {} memberships ({} per PATCH), {} connections",
        options.users,
        options.groups,
        options.memberships,
        options.members_per_patch,
        options.connections
    );
    let started = Instant::now();

    let (users_phase, answers) = phase(
        "POST /Users",
        &client,
        &base,
        options.users,
        options.connections,
        |i| {
            (
                reqwest::Method::POST,
                "/Users".into(),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("user{i}@acme.example"),
                    "name": {"givenName": "User", "familyName": format!("Number {i}")},
                    "emails": [{"value": format!("user{i}@acme.example"), "type": "work", "primary": true}],
                    "externalId": format!("ext-{i}"),
                    "active": true,
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": format!("dept-{}", i % 50)}
                })),
            )
        },
    )
    .await;
    users_phase.print();
    let users = ids(&answers);

    let (groups_phase, answers) = phase(
        "POST /Groups",
        &client,
        &base,
        options.groups,
        options.connections,
        |i| {
            (
                reqwest::Method::POST,
                "/Groups".into(),
                Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": format!("group-{i}")})),
            )
        },
    )
    .await;
    groups_phase.print();
    let groups = ids(&answers);

    // PATCH i adds `per_patch` members to group (i % groups): users k, k+1, … shifted by the
    // group's own offset, so no pair repeats while memberships ≤ users × groups.
    let per_patch = options.members_per_patch;
    let patches = options.memberships.div_ceil(per_patch);
    let (member_users, member_groups) = (users.clone(), groups.clone());
    let (members_phase, _) = phase(
        "PATCH /Groups add members",
        &client,
        &base,
        patches,
        options.connections,
        move |i| {
            let group = i % member_groups.len();
            let first = (i / member_groups.len()) * per_patch;
            let members: Vec<Value> = (first..first + per_patch)
                .map(|k| json!({"value": member_users[(k + group * 7919) % member_users.len()]}))
                .collect();
            (
                reqwest::Method::PATCH,
                format!("/Groups/{}", member_groups[group]),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "Add", "path": "members", "value": members}]}),
                ),
            )
        },
    )
    .await;
    members_phase.print();

    // A group holding every user, then single-member PATCHes to it, one at a time.
    let (everyone, _) = phase("POST /Groups everyone", &client, &base, 1, 1, |_| {
        (
            reqwest::Method::POST,
            "/Groups".into(),
            Some(json!({"displayName": "everyone"})),
        )
    })
    .await;
    let everyone_id = {
        let listed: Value = client
            .get(format!(
                "{base}/Groups?filter=displayName%20eq%20%22everyone%22&excludedAttributes=members"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed["Resources"][0]["id"].as_str().unwrap().to_owned()
    };
    drop(everyone);
    let fill_users = users.clone();
    let fill_group = everyone_id.clone();
    let chunk = 1000;
    let (fill_phase, _) = phase(
        "PATCH everyone +1000 members",
        &client,
        &base,
        users.len().div_ceil(chunk),
        options.connections.min(4),
        move |i| {
            let members: Vec<Value> = fill_users
                [i * chunk..((i + 1) * chunk).min(fill_users.len())]
                .iter()
                .map(|id| json!({"value": id}))
                .collect();
            (
                reqwest::Method::PATCH,
                format!("/Groups/{fill_group}"),
                Some(json!({"Operations": [{"op": "add", "path": "members", "value": members}]})),
            )
        },
    )
    .await;
    fill_phase.print();
    let single_users = users.clone();
    let single_group = everyone_id.clone();
    let (single_phase, _) = phase(
        "PATCH everyone ±1 member",
        &client,
        &base,
        options.single_patches,
        1,
        move |i| {
            let user = &single_users[(i / 2) % single_users.len()];
            let op = if i % 2 == 0 {
                json!({"op": "remove", "path": format!("members[value eq \"{user}\"]")})
            } else {
                json!({"op": "add", "path": "members", "value": [{"value": user}]})
            };
            (
                reqwest::Method::PATCH,
                format!("/Groups/{single_group}"),
                Some(json!({"Operations": [op]})),
            )
        },
    )
    .await;
    single_phase.print();

    let total = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak_rss = sampler.join().unwrap();
    let status = setup.status("acme");
    let last_seq = status["last_seq"].as_u64().unwrap_or(0);
    let stored = &status["stored"];
    println!(
        "  stored: {} users, {} groups, {} memberships; {} events in {:.1} s = {:.0} events/s; daemon peak RSS {}",
        stored["users"],
        stored["groups"],
        stored["memberships"],
        last_seq,
        total.as_secs_f64(),
        last_seq as f64 / total.as_secs_f64(),
        mib(peak_rss as f64)
    );
    daemon.signal("TERM");
    daemon.wait_exit(30).await;
    if let Ok(keep) = std::env::var("DIRSYNC_BENCH_KEEP_LOG") {
        std::fs::copy(&daemon.log, keep).unwrap();
    }

    let mut targets = Targets::new();
    for phase in [&users_phase, &members_phase] {
        targets.check(
            &format!("{} requests/s", phase.name),
            Some(phase.rate()),
            |rate| rate >= 5_000.0,
            |rate| format!("{rate:.0}/s (target ≥ 5,000/s)"),
        );
        targets.check(
            &format!("{} p99", phase.name),
            Some(phase.percentile(0.99).as_secs_f64() * 1000.0),
            |ms| ms < 100.0,
            |ms| format!("{ms:.1} ms (target < 100 ms)"),
        );
    }
    targets.check(
        "single-member PATCH to a group of every user, p50",
        Some(single_phase.percentile(0.5).as_secs_f64() * 1000.0),
        |ms| ms < 5.0,
        |ms| format!("{ms:.2} ms (target < 5 ms)"),
    );
    targets.check(
        "daemon peak RSS",
        Some(peak_rss as f64),
        |bytes| bytes < 1024.0 * MIB,
        |bytes| format!("{} (target < 1 GiB)", mib(bytes)),
    );
    targets
}
