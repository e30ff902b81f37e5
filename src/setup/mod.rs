//! `dirsync setup google|scim|scim-push TENANT`: onboarding a tenant in one guided command. Collects the
//! values (flags, or prompts in a terminal), tells the customer's admin exactly what to do,
//! stages a commented tenant file (and its key or token file, mode 0600) and validates it with
//! the real config loader, then verifies the connection step by step, turning each failure into
//! the fix, and ends with a dry-run fetch: how much a first sync reads and how long it takes.
//!
//! The tenant file lands in `tenants_dir` only after verification succeeds (or with
//! `--write-anyway`), so a half-connected tenant never reaches a running daemon; an existing
//! tenant file is replaced only with `--force`.
//!
//! `dirsync setup scim-push TENANT --idp IDP` is the other way round: the IdP calls dirsync, so
//! there is nothing to fetch; it writes the tenant file and a fresh token, prints the IdP's
//! steps, and waits for the IdP's first request (`scim_push`).
//!
//! Must not: write to the store (the dry run fetches and applies policy in memory; the push
//! wait only reads the request log), or print a secret (but the push token setup just made,
//! once, for the admin to paste).

pub mod args;
pub mod console;
pub mod google;
/// Google's console texts, kept beside the Google source that also shows them.
pub use crate::source::google::console as messages;
pub mod scim;
pub mod scim_push;
mod tenant_file;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{self, GlobalConfig, TenantConfig};
use crate::source::{FetchStats, Source, SourceError};
pub use console::Console;
use tenant_file::Staged;

/// Exit codes of `setup` (the contract's: verification is a run that failed).
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const VERIFICATION_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
}

pub const DEFAULT_SCHEDULE: &str = "0 */15 * * * *";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Bad or missing input, or a config problem: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The connection could not be verified: exit code 1.
    #[error("verification failed at {}: {}\n  fix: {}", .0.step, .0.problem, .0.fix)]
    Verification(Diagnosis),
    /// Writing the tenant's files failed: exit code 1.
    #[error("{0}")]
    Write(String),
}

impl SetupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::Usage(_) => exit::USAGE,
            SetupError::Verification(_) | SetupError::Write(_) => exit::VERIFICATION_FAILED,
        }
    }
}

/// A failed verification step, explained: what failed and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// The step that failed, e.g. "access token", "users.list".
    pub step: String,
    /// What went wrong, as the server said it.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

/// Explains a source error in terms of the source being set up.
pub trait Explain {
    fn explain(&self, err: &SourceError) -> Diagnosis;
}

/// Where setup writes and how to name the next command.
pub struct Context {
    pub global: GlobalConfig,
    /// `--config` as given, to repeat it in the next command printed.
    pub config_flag: Option<PathBuf>,
}

impl Context {
    /// `dirsync [--config FILE] ARGS`, as the operator should type it next.
    pub fn command(&self, args: &str) -> String {
        match &self.config_flag {
            Some(path) => format!("dirsync --config {} {args}", path.display()),
            None => format!("dirsync {args}"),
        }
    }

    pub fn tenant_path(&self, tenant: &str) -> PathBuf {
        self.global.tenants_dir.join(format!("{tenant}.toml"))
    }
}

/// What a source's setup hands to the shared verify-and-write steps.
pub struct Prepared<'a> {
    pub tenant: &'a str,
    pub toml: String,
    /// A file name next to the tenant file and its bytes (the key or the token), mode 0600.
    pub secret: Option<(String, Vec<u8>)>,
    pub common: &'a args::CommonSetupArgs,
}

/// Checks the tenant id and that nothing would be overwritten without `--force`.
pub fn check_target(
    context: &Context,
    tenant: &str,
    secret_name: Option<&str>,
    force: bool,
) -> Result<(), SetupError> {
    if !config::valid_tenant_id(tenant) {
        return Err(SetupError::Usage(format!(
            "tenant id {tenant:?} must match [a-z0-9_-]+ (it becomes the file name {tenant}.toml)"
        )));
    }
    if force {
        return Ok(());
    }
    let mut existing: Vec<PathBuf> = vec![context.tenant_path(tenant)];
    existing.extend(secret_name.map(|name| context.global.tenants_dir.join(name)));
    existing.retain(|path| path.exists());
    if existing.is_empty() {
        return Ok(());
    }
    Err(SetupError::Usage(format!(
        "{} already exist{}: setup never overwrites a tenant without --force",
        existing
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        if existing.len() == 1 { "s" } else { "" }
    )))
}

/// The tenant's schedule: `--schedule`, else asked (default every 15 minutes), checked the
/// way the config loader will.
pub fn ask_schedule(
    console: &mut console::Console<'_>,
    given: Option<String>,
) -> Result<String, SetupError> {
    console.valid(
        given,
        "--schedule",
        "Schedule (cron with seconds, UTC)",
        Some(DEFAULT_SCHEDULE),
        |text| {
            check_schedule(text)
                .map(|()| text.to_owned())
                .map_err(|e| e.to_string())
        },
    )
}

/// Checks a cron schedule the way the config loader will.
pub fn check_schedule(schedule: &str) -> Result<(), SetupError> {
    <cron::Schedule as std::str::FromStr>::from_str(schedule)
        .map(|_| ())
        .map_err(|err| {
            SetupError::Usage(format!(
                "--schedule {schedule:?} is not a cron expression with seconds (e.g. \"{DEFAULT_SCHEDULE}\"): {err}"
            ))
        })
}

/// The counts of a dry-run fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRun {
    pub users: usize,
    pub groups: usize,
    pub memberships: usize,
    pub api_requests: u64,
    pub elapsed: Duration,
}

/// Stages the files, verifies, dry-runs, and writes (or not). Returns the exit code.
pub async fn verify_and_write(
    context: &Context,
    prepared: Prepared<'_>,
    explain: &dyn Explain,
    console: &mut Console<'_>,
) -> Result<u8, SetupError> {
    let tenants_dir = &context.global.tenants_dir;
    let staged = Staged::new(
        tenants_dir,
        prepared.tenant,
        &prepared.toml,
        prepared
            .secret
            .as_ref()
            .map(|(n, b)| (n.as_str(), b.as_slice())),
    )?;
    let tenant = load_staged(&staged)?;
    let tenant = with_short_retries(tenant);
    let result = loop {
        console.say("\nVerifying the connection:");
        let result = verify(&tenant, explain, console).await;
        match &result {
            Err(diagnosis) if console.is_interactive() => {
                console.say(format!(
                    "  ✗ {}: {}\n    fix: {}",
                    diagnosis.step, diagnosis.problem, diagnosis.fix
                ));
                let again = console.confirm("Fix it, then verify again?", true)?;
                if again {
                    continue;
                }
                break result;
            }
            Err(diagnosis) => {
                // The detail and the fix follow on stderr, where the exit status goes.
                console.say(format!("  ✗ {}", diagnosis.step));
                break result;
            }
            Ok(_) => break result,
        }
    };
    let write = result.is_ok() || prepared.common.write_anyway;
    let written = if write {
        Some(staged.commit()?)
    } else {
        staged.discard();
        None
    };
    match result {
        Ok(dry_run) => {
            let written = written.unwrap_or_default();
            let secret = prepared.secret.as_ref().map(|(name, _)| name.as_str());
            console.say(summary(
                context,
                prepared.tenant,
                &tenant,
                &dry_run,
                &written,
                secret,
            ));
            Ok(exit::SUCCESS)
        }
        Err(diagnosis) => {
            match &written {
                Some(path) => console.say(format!(
                    "\nVerification failed; the tenant file was written anyway (--write-anyway): {}\n\
                     Check it again with `{}` once the problem is fixed.",
                    path.display(),
                    context.command("check-config --connect")
                )),
                None => console.say(format!(
                    "\nVerification failed: nothing was written to {}. Run setup again once it is \
                     fixed (--write-anyway writes the tenant file regardless).",
                    tenants_dir.display()
                )),
            }
            Err(SetupError::Verification(diagnosis))
        }
    }
}

fn load_staged(staged: &Staged) -> Result<TenantConfig, SetupError> {
    let mut problems = Vec::new();
    match config::load_tenant(staged.tenant_file(), &mut problems) {
        Some(tenant) if problems.is_empty() => Ok(tenant),
        _ => Err(SetupError::Usage(format!(
            "the tenant file setup wrote does not validate:\n{}",
            problems
                .iter()
                .map(|p| format!("  {p}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))),
    }
}

/// Verification gives up on an unreachable host within seconds, not the sync's minutes, and
/// asks for every scope the delegation entry must hold.
fn with_short_retries(mut tenant: TenantConfig) -> TenantConfig {
    const BUDGET: Duration = Duration::from_secs(8);
    match &mut tenant.source {
        config::SourceConfig::Google(google) => {
            google.retry_max = google.retry_max.min(BUDGET);
            // The entry the admin made must hold every scope, also those only some policies use.
            google.all_scopes = true;
        }
        config::SourceConfig::Scim(scim) => scim.retry_max = scim.retry_max.min(BUDGET),
        config::SourceConfig::ScimPush(_) => {}
    }
    tenant
}

/// The source's own check (credentials and one page of each list), then a complete fetch with
/// policy applied in memory.
async fn verify(
    tenant: &TenantConfig,
    explain: &dyn Explain,
    console: &mut Console<'_>,
) -> Result<DryRun, Diagnosis> {
    let stats = Arc::new(FetchStats::default());
    let source = Source::new(tenant, stats.clone())
        .await
        .map_err(|err| explain.explain(&err))?;
    let description = source.check().await.map_err(|err| explain.explain(&err))?;
    for part in description.split("; ") {
        console.say(format!("  ✓ {part}"));
    }
    let checked = stats.requests();
    console.say("  … dry run: reading the whole directory (nothing is stored)");
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let fetched = source
        .fetch(&cancel)
        .await
        .map_err(|err| explain.explain(&err))?;
    let api_requests = stats.requests() - checked;
    let applied = crate::policy::apply(fetched, tenant);
    let dry_run = DryRun {
        users: applied.snapshot.users.len(),
        groups: applied.snapshot.groups.len(),
        memberships: applied.snapshot.membership_count(),
        api_requests,
        elapsed: started.elapsed(),
    };
    console.say(format!(
        "  ✓ dry run: {} users, {} groups, {} memberships",
        dry_run.users, dry_run.groups, dry_run.memberships
    ));
    Ok(dry_run)
}

/// The requests a first sync makes at the source's pace: `None` when it has no rate limit.
pub fn first_sync_estimate(api_requests: u64, requests_per_minute: u32) -> Option<Duration> {
    (requests_per_minute > 0).then(|| {
        Duration::from_secs_f64(api_requests as f64 * 60.0 / f64::from(requests_per_minute))
    })
}

pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64().ceil() as u64;
    match seconds {
        0..=1 => "about 1 second".to_owned(),
        2..=59 => format!("about {seconds} seconds"),
        60..=3599 => format!("about {} min {} s", seconds / 60, seconds % 60),
        _ => format!("about {} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

fn summary(
    context: &Context,
    id: &str,
    tenant: &TenantConfig,
    dry_run: &DryRun,
    written: &Path,
    secret: Option<&str>,
) -> String {
    let rate = match &tenant.source {
        config::SourceConfig::Google(google) => google.requests_per_minute,
        config::SourceConfig::Scim(scim) => scim.requests_per_minute,
        config::SourceConfig::ScimPush(_) => 0,
    };
    let pace = match first_sync_estimate(dry_run.api_requests, rate) {
        Some(estimate) => format!(
            "under the quota of {rate} requests/min ({:.0}/s) a first sync takes {}",
            f64::from(rate) / 60.0,
            human_duration(estimate)
        ),
        None => "no request rate limit is configured, so a first sync takes about as long as this dry run".to_owned(),
    };
    format!(
        "\nTenant {id} is connected. A first sync would store {} users, {} groups and {} memberships,\n\
         with {} API requests: {pace} (this dry run took {:.1} s).\n\
         Wrote {}{}.\n\
         Next: run the first sync now with `{}`.\n\
         A running daemon picks the tenant up on reload (`systemctl reload dirsync`) and syncs it\n\
         on its schedule (\"{}\").",
        dry_run.users,
        dry_run.groups,
        dry_run.memberships,
        dry_run.api_requests,
        dry_run.elapsed.as_secs_f64(),
        written.display(),
        secret
            .map(|name| format!(
                " and {} (mode 0600)",
                written.with_file_name(name).display()
            ))
            .unwrap_or_default(),
        context.command(&format!("sync {id}")),
        tenant.schedule_text,
    )
}

/// A TOML string literal (quoted and escaped).
pub(crate) fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sync_takes_requests_over_forty_per_second_at_the_default_quota() {
        assert_eq!(
            first_sync_estimate(400, 2400),
            Some(Duration::from_secs(10))
        );
        assert_eq!(first_sync_estimate(400, 0), None);
        assert_eq!(human_duration(Duration::from_secs(10)), "about 10 seconds");
        assert_eq!(human_duration(Duration::from_millis(300)), "about 1 second");
        assert_eq!(human_duration(Duration::from_secs(150)), "about 2 min 30 s");
        assert_eq!(human_duration(Duration::from_secs(7300)), "about 2 h 1 min");
    }

    #[test]
    fn schedules_are_checked_like_the_loader_does() {
        assert!(check_schedule(DEFAULT_SCHEDULE).is_ok());
        assert!(matches!(
            check_schedule("every hour"),
            Err(SetupError::Usage(_))
        ));
    }

    #[test]
    fn toml_strings_round_trip() {
        for text in ["a\"b", "it's", "back\\slash", "plain"] {
            let line = format!("v = {}", toml_string(text));
            let parsed: toml::Table = toml::from_str(&line).unwrap_or_default();
            assert_eq!(
                parsed.get("v").and_then(|v| v.as_str()),
                Some(text),
                "{line}"
            );
        }
    }
}
