//! `dirsync emulator`: arguments and the command. Builds the emulator, writes the key file,
//! prints the one line tests parse, and serves until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::{Emulator, EmulatorError, FaultRule};

/// A local Google Admin SDK Directory API + OAuth token endpoint for tests and demos.
///
/// Serves users, groups, members and org units (read and write methods, on Google's paths),
/// the service-account JWT bearer flow at /token, fault injection and request counters at
/// /_emulator/... (see docs/emulator.md). On start it prints one line:
/// `dirsync emulator listening on http://127.0.0.1:PORT (token_uri http://127.0.0.1:PORT/token)`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  dirsync emulator --listen 127.0.0.1:0 --users 1000 --groups 80 --key-out /tmp/sa.json\n  dirsync emulator --users 100000 --groups 10000 --seed 42       (about 1M memberships)\n  dirsync emulator --fixture org.json --admin boss@acme.test --quota-per-minute 2400\n\nAdmin endpoints: GET /_emulator/counters, POST /_emulator/faults, PATCH /_emulator/settings,\nPOST /_emulator/token, GET /_emulator/key, GET /_emulator/stats (see docs/emulator.md)."
)]
pub struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free port (printed on start)
    #[arg(long, default_value = "127.0.0.1:8085", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Users in the generated organisation, the admin included [default: 100]
    #[arg(long, value_name = "N", conflicts_with = "fixture")]
    pub users: Option<usize>,
    /// Groups in the generated organisation [default: 10]
    #[arg(long, value_name = "N", conflicts_with = "fixture")]
    pub groups: Option<usize>,
    /// Direct user memberships in total, spread over groups with a long tail [default: about
    /// 100 per group, at most users/4 per group on average]
    #[arg(long, value_name = "N", conflicts_with = "fixture")]
    pub members: Option<usize>,
    /// Seed of the generator (same seed and sizes, same organisation)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Primary domain of the organisation
    #[arg(
        long,
        default_value = "example.com",
        value_name = "DOMAIN",
        conflicts_with = "fixture"
    )]
    pub domain: String,
    /// Customer id (alias my_customer) [default: derived from the seed, like C0abc1234]
    #[arg(long, value_name = "ID")]
    pub customer_id: Option<String>,
    /// Load the organisation from a JSON fixture file instead of generating one
    #[arg(long, value_name = "FILE")]
    pub fixture: Option<PathBuf>,
    /// A subject the service account may impersonate (made an admin; created if missing).
    /// Repeatable [default: admin@DOMAIN]
    #[arg(long = "admin", value_name = "EMAIL")]
    pub admins: Vec<String>,
    /// Write a service-account key JSON whose token_uri points at the emulator
    #[arg(long, value_name = "FILE")]
    pub key_out: Option<PathBuf>,
    /// Reuse the key of a service-account key JSON (e.g. an earlier --key-out), so restarts
    /// keep the same key
    #[arg(long, value_name = "FILE")]
    pub key_in: Option<PathBuf>,
    /// Latency added to every API and token request, in milliseconds
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Requests per minute per (service account, subject); beyond: 403 userRateLimitExceeded
    /// (Google's default is 2400)
    #[arg(long, value_name = "N")]
    pub quota_per_minute: Option<u32>,
    /// API requests in flight at once; beyond: 429 rateLimitExceeded
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<u32>,
    /// Lifetime of issued access tokens, in seconds
    #[arg(long, default_value_t = 3600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub token_ttl_secs: u64,
    /// Domain-wide delegation allow-list: comma-separated scopes (with or without the
    /// https://www.googleapis.com/auth/ prefix) [default: every Directory scope]
    #[arg(long, value_name = "SCOPES", value_delimiter = ',')]
    pub dwd_scopes: Option<Vec<String>>,
    /// Fault rules active from the start: a JSON file holding one rule or an array of rules
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
}

fn load_faults(path: &PathBuf) -> Result<Vec<FaultRule>, EmulatorError> {
    let problem = |problem: String| EmulatorError::Faults(format!("{}: {problem}", path.display()));
    let text =
        std::fs::read_to_string(path).map_err(|err| problem(format!("cannot read it: {err}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|err| problem(format!("not valid JSON: {err}")))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        single => vec![single],
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let rule: FaultRule = serde_json::from_value(item)
                .map_err(|err| problem(format!("rule {index}: {err}")))?;
            rule.validate()
                .map_err(|err| problem(format!("rule {index}: {err}")))?;
            Ok(rule)
        })
        .collect()
}

/// Builds the emulator from the arguments (no network).
pub fn builder_from_args(args: &EmulatorArgs) -> Result<super::EmulatorBuilder, EmulatorError> {
    let mut builder = Emulator::builder()
        .seed(args.seed)
        .domain(args.domain.clone())
        .latency(Duration::from_millis(args.latency_ms))
        .token_ttl(Duration::from_secs(args.token_ttl_secs));
    if let Some(users) = args.users {
        if users == 0 {
            return Err(EmulatorError::Config(
                "--users must be at least 1 (the admin is a user)".into(),
            ));
        }
        builder = builder.users(users);
    }
    if let Some(groups) = args.groups {
        builder = builder.groups(groups);
    }
    if let Some(members) = args.members {
        builder = builder.members(members);
    }
    if let Some(customer) = &args.customer_id {
        builder = builder.customer_id(customer.clone());
    }
    if let Some(fixture) = &args.fixture {
        builder = builder.fixture_file(fixture.clone());
    }
    for admin in &args.admins {
        builder = builder.admin(admin.clone());
    }
    if let Some(key) = &args.key_in {
        builder = builder.key_file(key.clone());
    }
    if let Some(quota) = args.quota_per_minute {
        builder = builder.quota_per_minute(quota);
    }
    if let Some(max) = args.max_concurrent {
        builder = builder.max_concurrent(max);
    }
    if let Some(scopes) = &args.dwd_scopes {
        builder = builder.dwd_scopes(scopes.iter().map(|s| s.trim().to_owned()));
    }
    if let Some(path) = &args.faults {
        for rule in load_faults(path)? {
            builder = builder.fault(rule);
        }
    }
    Ok(builder)
}

pub async fn run(args: EmulatorArgs) -> Result<(), EmulatorError> {
    // Handlers first: a SIGTERM right after the start line must still stop us gracefully.
    let shutdown = shutdown_signal()?;
    let started = Instant::now();
    let emulator = builder_from_args(&args)?.build()?;
    let stats = emulator.stats();
    let built = started.elapsed();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "dirsync emulator: warning: listening on {} (not loopback); it has no real security",
            args.listen
        );
    }
    let handle = emulator.start(args.listen).await?;
    if let Some(path) = &args.key_out {
        handle.write_key(path)?;
    }
    eprintln!(
        "dirsync emulator: {} users ({} suspended, {} archived, {} deleted), {} groups, {} memberships, {} org units in {:.2}s; customer {}, admin {}",
        stats.users,
        stats.suspended_users,
        stats.archived_users,
        stats.deleted_users,
        stats.groups,
        stats.memberships,
        stats.org_units,
        built.as_secs_f64(),
        handle.customer_id(),
        handle.admin_email()
    );
    let mut stdout = std::io::stdout();
    // A closed stdout must not stop the emulator: the line is for whoever listens.
    let _ = writeln!(
        stdout,
        "dirsync emulator listening on {} (token_uri {})",
        handle.base_url, handle.token_uri
    );
    let _ = stdout.flush();
    handle.serve_until(shutdown).await
}

/// SIGINT or SIGTERM, with the handlers installed now (not when first polled).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, EmulatorError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind| {
            signal(kind).map_err(|err| {
                EmulatorError::Config(format!("cannot install a signal handler: {err}"))
            })
        };
        let mut interrupt = install(SignalKind::interrupt())?;
        let mut terminate = install(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
