//! A tenant's health as the console shows it: the last run and its age, how long it has been
//! failing, the next run and whether one is going (from the daemon's own view), sink lag and
//! parked sinks, counts — and every problem with its fix in words, taken from the hints the
//! sources and sinks already give (the stored run error carries the source's hint) and from
//! `dirsync setup`'s texts. A push tenant's health is also its IdP's requests: the last one
//! and the error rate over the last hour, as `dirsync status` counts them. Must not: write
//! anything.

use crate::store::Connection;

use crate::config::TenantConfig;
use crate::daemon::tenant::TenantState;
use crate::run::{RunOutcome, RunSummary};
use crate::sink::SinkStatus;
use crate::store::push::{PushRequest, RequestCounts};
use crate::store::{self, StoreError};

/// Runs read to find when a failing streak began.
const STREAK_RUNS: u32 = 200;
/// The window of a push tenant's error rate (the one `dirsync status` gives).
pub const PUSH_WINDOW_MS: i64 = 3_600_000;
/// Logged requests searched for the latest arrival.
const LAST_REQUEST_AMONG: usize = 16;

/// One problem of a tenant and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
    /// A delivery problem (the app's side: not shown on an IT admin's link).
    pub sink: bool,
}

/// A sink's error with its webhook URL replaced by the sink's name: a URL can carry a token.
pub fn redacted_sink_error(tenant: &TenantConfig, sink: &str, error: &str) -> String {
    let url = tenant
        .sinks
        .iter()
        .find(|s| s.name == sink)
        .and_then(|s| match &s.kind {
            crate::config::SinkKind::Webhook(webhook) => Some(webhook.url.as_str()),
            crate::config::SinkKind::Jsonl(_) => None,
        });
    match url {
        Some(url) if !url.is_empty() => error.replace(url, &format!("<the URL of sink {sink}>")),
        _ => error.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct Health {
    pub tenant: String,
    pub source: String,
    pub enabled: bool,
    pub last_run: Option<RunSummary>,
    /// The first failed run of the current streak of failures (`None` when not failing).
    pub failing_since: Option<RunSummary>,
    /// The streak is longer than the runs read.
    pub failing_longer: bool,
    pub next_run: Option<String>,
    pub daemon: Option<TenantState>,
    pub users: u64,
    pub groups: u64,
    pub last_seq: u64,
    pub sinks: Vec<SinkStatus>,
    /// A push tenant's IdP requests (`None` for a tenant that pulls).
    pub push: Option<PushHealth>,
    pub problems: Vec<Problem>,
}

/// What a push tenant's IdP sent lately.
#[derive(Debug, Clone)]
pub struct PushHealth {
    /// The latest logged request, without its body.
    pub last: Option<PushRequest>,
    /// Requests and refusals over the last [`PUSH_WINDOW_MS`].
    pub last_hour: RequestCounts,
}

impl PushHealth {
    /// The share of the last hour's requests refused (status 400 and up).
    pub fn error_rate(&self) -> Option<f64> {
        (self.last_hour.requests > 0)
            .then(|| self.last_hour.errors as f64 / self.last_hour.requests as f64)
    }
}

/// The IdP behind a request, by its User-Agent ("Okta"), else the agent itself.
pub fn client_name(user_agent: Option<&str>) -> Option<String> {
    let agent = user_agent?;
    Some(
        crate::source::push_console::Idp::from_user_agent(agent)
            .map_or_else(|| agent.to_owned(), |idp| idp.name().to_owned()),
    )
}

/// What the tenant reads from, in a few words (no secret: the subject and the host only).
pub fn source_label(tenant: &TenantConfig) -> String {
    use crate::config::SourceConfig;
    if let SourceConfig::Google(google) = &tenant.source {
        return format!(
            "Google Workspace ({}, as {})",
            google.domain.as_deref().unwrap_or(&google.customer),
            google.subject
        );
    }
    if let SourceConfig::Scim(scim) = &tenant.source {
        return format!("SCIM ({})", crate::setup::google::host_of(&scim.base_url));
    }
    if tenant.source.is_push() {
        return format!("SCIM push (/scim/v2/{})", tenant.id);
    }
    tenant.source.kind().as_str().to_owned()
}

/// Reads the tenant's health; `daemon` is the running daemon's view of it.
pub fn read(
    conn: &Connection,
    tenant: &TenantConfig,
    daemon: Option<TenantState>,
) -> Result<Health, StoreError> {
    let runs = store::last_runs(conn, &tenant.id, STREAK_RUNS)?;
    let (users, groups) = store::console::user_and_group_counts(conn, &tenant.id)?;
    let last_seq = store::last_seq(conn, &tenant.id)?;
    let sinks = crate::sink::sink_statuses(conn, tenant)?;
    let streak: Vec<&RunSummary> = runs
        .iter()
        .filter(|r| r.outcome != RunOutcome::DryRun)
        .take_while(|r| !r.outcome.is_success())
        .collect();
    let failing_longer = !streak.is_empty()
        && streak.len()
            == runs
                .iter()
                .filter(|r| r.outcome != RunOutcome::DryRun)
                .count()
        && runs.len() as u32 == STREAK_RUNS;
    let failing_since = streak.last().map(|r| (*r).clone());
    let last_run = runs.into_iter().next();
    let push = if tenant.source.is_push() {
        // Reads are logged a moment after the writes around them (off the request path),
        // so the log's order is not quite arrival order: the last request is the latest
        // arrival among the last few logged.
        let last = store::push::latest_requests(conn, &tenant.id, LAST_REQUEST_AMONG)?
            .into_iter()
            .max_by_key(|request| (request.at_ms, request.id))
            .map(|request| PushRequest {
                body: None,
                ..request
            });
        let last_hour =
            store::push::request_counts(conn, &tenant.id, store::now_ms() - PUSH_WINDOW_MS)?;
        Some(PushHealth { last, last_hour })
    } else {
        None
    };
    let next_run = daemon.as_ref().and_then(|d| d.next_run.clone());
    let mut health = Health {
        tenant: tenant.id.clone(),
        source: source_label(tenant),
        enabled: tenant.enabled,
        last_run,
        failing_since,
        failing_longer,
        next_run,
        daemon,
        users,
        groups,
        last_seq,
        sinks,
        push,
        problems: Vec::new(),
    };
    health.problems = problems(tenant, &health);
    Ok(health)
}

fn problems(tenant: &TenantConfig, health: &Health) -> Vec<Problem> {
    let mut found = Vec::new();
    if let Some(run) = &health.failing_since {
        let last = health.last_run.as_ref().unwrap_or(run);
        let error = last
            .error
            .clone()
            .unwrap_or_else(|| "no error recorded".into());
        found.push(Problem {
            fix: fix_for(tenant, last.outcome, &error),
            what: format!(
                "last run {}: {}",
                last.outcome.as_str(),
                problem_text(&error)
            ),
            sink: false,
        });
    }
    let refused_token = health
        .push
        .as_ref()
        .and_then(|push| push.last.as_ref())
        .filter(|last| last.status == 401);
    if let Some(last) = refused_token {
        found.push(Problem {
            what: format!(
                "the IdP's last request ({} {} at {}) was refused: {}",
                last.method,
                last.path,
                crate::run::Millis(last.at_ms).to_rfc3339(),
                last.detail.as_deref().unwrap_or("missing or wrong bearer token")
            ),
            fix: format!(
                "set the Bearer token in the IdP's SCIM provisioning settings for /scim/v2/{} to this tenant's token (the operator sends it over a secure channel; `dirsync setup scim-push {} --yes` issues a new one)",
                tenant.id, tenant.id
            ),
            sink: false,
        });
    }
    for sink in &health.sinks {
        if sink.parked {
            found.push(Problem {
                what: format!(
                    "sink {} is parked at seq {}: {}",
                    sink.name,
                    sink.delivered_seq,
                    redacted_sink_error(
                        tenant,
                        &sink.name,
                        sink.last_error.as_deref().unwrap_or("no error recorded")
                    )
                ),
                sink: true,
                fix: format!(
                    "fix the receiver, then unpark the sink (the Unpark button on the tenant's page, or `dirsync deliver {} --unpark {}`)",
                    tenant.id, sink.name
                ),
            });
        }
    }
    found
}

/// The error without the hint the source appended (the hint is the fix).
pub fn problem_text(error: &str) -> &str {
    error
        .split_once(" (hint: ")
        .map_or(error, |(problem, _)| problem)
}

/// What to do about a run's error, in words.
pub fn fix_for(tenant: &TenantConfig, outcome: RunOutcome, error: &str) -> String {
    use crate::config::SourceConfig;
    if let Some((_, hint)) = error.split_once(" (hint: ") {
        return hint.strip_suffix(')').unwrap_or(hint).to_owned();
    }
    if outcome == RunOutcome::Refused {
        return format!(
            "the deletion guard refused the run: check in the IdP that the deletions are meant (a filter or an admin's mistake can look like mass deletion); if they are, run `dirsync sync {} --allow-mass-delete` once",
            tenant.id
        );
    }
    if let Some(rest) = error.strip_prefix("cannot reach ") {
        let url = rest.split(": ").next().unwrap_or(rest);
        return format!(
            "{} could not be reached: check DNS, the firewall and any proxy (HTTPS_PROXY) between this machine and it",
            crate::setup::google::host_of(url)
        );
    }
    if error.contains("answered HTTP 401") {
        if let SourceConfig::Scim(scim) = &tenant.source {
            return format!(
                "{} refused the token: put a bearer token the IdP issued for SCIM provisioning in the tenant's token_file, and check it has not expired",
                crate::setup::google::host_of(&scim.base_url)
            );
        }
    }
    format!(
        "see the error above; `dirsync check-config --connect` checks {}'s connection step by step, and `dirsync sync {}` retries now",
        tenant.id, tenant.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_the_source_appended_is_the_fix() {
        let error = "authentication failed: refused: unauthorized_client: Client is unauthorized (hint: domain-wide delegation is not granted for client ID 42 with these scopes: a,b (Admin console: X))";
        assert_eq!(
            problem_text(error),
            "authentication failed: refused: unauthorized_client: Client is unauthorized"
        );
        let (_, hint) = error.split_once(" (hint: ").unwrap_or_default();
        assert!(hint.starts_with("domain-wide delegation is not granted for client ID 42"));
    }
}
