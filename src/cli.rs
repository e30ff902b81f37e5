//! Command-line arguments: the verbs and flags of the contract, parsed by clap. Parsing only;
//! `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dirsync",
    version,
    about = "Directory Sync: Google Workspace and SCIM directories to normalized change events"
)]
pub struct Cli {
    /// The global config file [default: $DIRSYNC_CONFIG, else /etc/dirsync/dirsync.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The daemon: schedules every enabled tenant, serves the control socket and HTTP listener.
    Run(RunArgs),
    /// Force a sync of one tenant now (through the daemon when one runs).
    Sync(SyncArgs),
    /// Print stored events as JSON lines, oldest first.
    Events(EventsArgs),
    /// Per tenant: last run, next run, stored counts, last event seq.
    Status(StatusArgs),
    /// Triage: what dirsync knows about a user or group, and why something is missing.
    Inspect(InspectArgs),
    /// Validate every config file; --connect also reaches every tenant's source.
    CheckConfig(CheckConfigArgs),
    /// Delete the stored data of a tenant whose config file is gone (extension).
    Forget(ForgetArgs),
    /// Copy the SQLite store (state_dir) into an empty PostgreSQL database, seq and ids kept
    /// (extension; then set database_url).
    MigrateStore(MigrateStoreArgs),
    /// Print a signed link to one tenant's console pages for its IT admin (web console).
    ConsoleLink(ConsoleLinkArgs),
    /// Onboard a tenant: guided connection to Google Workspace or a SCIM server, verified.
    Setup(crate::setup::args::SetupArgs),
    /// A local Google Directory API + OAuth token endpoint for tests and demos.
    Emulator(dirsync_emulator::cli::EmulatorArgs),
    /// The main job on the built-in emulator: generated org, daemon, changes, events.
    Demo(DemoArgs),
    /// Deliver stored events to the tenants' [[sinks]] without the daemon (extension).
    #[command(hide = true)]
    Deliver(DeliverArgs),
}

#[derive(Debug, Args)]
pub struct MigrateStoreArgs {
    /// The PostgreSQL database to copy into, `postgres://USER@HOST:5432/DATABASE`; it must
    /// hold no dirsync data yet
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// A file holding the database password (instead of one in the URL)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DeliverArgs {
    /// Only this tenant [default: every tenant with sinks]
    pub tenant: Option<String>,
    /// Deliver what is pending and exit (exit code 1 if a sink failed) instead of delivering
    /// until stopped
    #[arg(long)]
    pub once: bool,
    /// Let this parked sink of TENANT deliver again from its held cursor, then exit
    #[arg(long, value_name = "SINK", requires = "tenant")]
    pub unpark: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {}

#[derive(Debug, Args)]
pub struct ConsoleLinkArgs {
    /// The tenant id (its file name without .toml)
    pub tenant: String,
    /// How long the link works: a number with s, m, h, d or w (e.g. 12h, 7d)
    #[arg(long, default_value = "7d", value_name = "DURATION", value_parser = parse_duration)]
    pub expires: std::time::Duration,
    /// The console's address as the IT admin reaches it (behind a proxy, say) instead of
    /// http_listen, e.g. https://dirsync.example.com
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

/// `90s`, `30m`, `12h`, `7d`, `2w`: at least a second, at most a year.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 12h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "{text:?}: the unit must be s, m, h, d or w (e.g. 7d)"
            ))
        }
    };
    let total = number.saturating_mul(seconds);
    if total == 0 || total > 366 * 86_400 {
        return Err(format!("{text:?}: a link lasts from 1s to 366d"));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The tenant id (its file name without .toml)
    pub tenant: String,
    /// Fetch and diff, print the events it would emit, commit nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Commit even if the run deletes more than the deletion guard allows
    #[arg(long)]
    pub allow_mass_delete: bool,
    /// Print one JSON object summarising the run
    #[arg(long)]
    pub json: bool,
    /// Run in this process even when a daemon is running
    #[arg(long)]
    pub local: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    pub tenant: String,
    /// Only events with seq greater than this (at most 2^63 − 1, the largest stored seq)
    #[arg(long, default_value_t = 0, value_parser = parse_seq)]
    pub after: u64,
    /// At most this many events
    #[arg(long)]
    pub limit: Option<u64>,
    /// Keep printing new events as they are committed
    #[arg(long)]
    pub follow: bool,
    /// Re-deliver the selected events (--after, --limit) to this sink of the tenant now, in
    /// order, with their original ids; the sink's cursor does not move
    #[arg(long, value_name = "SINK", conflicts_with = "follow")]
    pub resend_to: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The tenant id; its file `TENANT.toml` must no longer exist in tenants_dir
    pub tenant: String,
}

/// A seq as SQLite stores it: larger values would wrap to negative ones.
fn parse_seq(text: &str) -> Result<u64, String> {
    let seq: u64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a non-negative integer"))?;
    if seq > i64::MAX as u64 {
        return Err(format!(
            "{seq} is larger than {}, the largest seq dirsync stores",
            i64::MAX
        ));
    }
    Ok(seq)
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub tenant: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Only the nodes sharing the store (`dirsync run` processes) and when each was last seen.
    #[arg(long, conflicts_with = "tenant")]
    pub nodes: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    pub tenant: String,
    /// A user's email, alias or id, or a group's email, name or id
    pub who: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Also fetch a token and one page from each tenant's source
    #[arg(long)]
    pub connect: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: until Ctrl-C)
    #[arg(long)]
    pub duration: Option<u64>,
    /// Users in the generated organisation
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    /// Groups in the generated organisation
    #[arg(long, default_value_t = 20)]
    pub groups: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Seconds between syncs (1-59)
    #[arg(long, default_value_t = 5)]
    pub every: u64,
}
