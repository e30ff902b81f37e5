//! The console's pages, rendered with `maud`: every `(value)` is HTML-escaped by the macro,
//! and outside text (anything from the IdP, errors quoting it) goes through [`t`] first, so
//! control characters and bidi overrides show as visible escapes (`\x1b`) rather than reaching
//! the page. Nothing here renders a secret: configs are shown only through the fields named
//! below (no key, token, webhook URL or secret).
//!
//! Must not: read the store or decide access (the handlers do both and hand in what to show).

use std::borrow::Cow;

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use super::auth::Access;
use super::chart::{outcome_class, runs_chart};
use super::health::{client_name, fix_for, problem_text, Health, Problem, PushHealth};
use crate::config::TenantConfig;
use crate::run::{RunOutcome, RunSummary};
use crate::store::console::{EventPage, EventQuery, EventRow};
use crate::store::push::PushRequest;

/// Outside text, with control characters made visible (HTML escaping is maud's).
pub fn t(text: &str) -> Cow<'_, str> {
    crate::terminal::escape(text)
}

/// Who is looking, and where their pages live.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub access: Access,
    /// The link token, for an IT admin's link (its pages live under it).
    pub link: Option<String>,
}

impl Viewer {
    pub fn is_operator(&self) -> bool {
        matches!(self.access, Access::Operator { .. })
    }

    /// The URL of one of `tenant`'s pages (`rest` is "" for its main page, or "/inspect"…).
    pub fn tenant_url(&self, tenant: &str, rest: &str) -> String {
        match &self.link {
            Some(token) => format!(
                "/console/l/{token}{}",
                if rest.is_empty() { "/" } else { rest }
            ),
            None => format!("/console/t/{tenant}{rest}"),
        }
    }

    fn csrf(&self) -> Option<&str> {
        match &self.access {
            Access::Operator { csrf } => Some(csrf),
            Access::Tenant { .. } => None,
        }
    }
}

/// A POST form's hidden CSRF field.
fn csrf_field(viewer: &Viewer) -> Markup {
    html! { @if let Some(token) = viewer.csrf() { input type="hidden" name="csrf" value=(token); } }
}

pub fn layout(title: &str, viewer: Option<&Viewer>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · dirsync console" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header class="top" {
                    span class="brand" { "dirsync" }
                    @if let Some(viewer) = viewer {
                        @match &viewer.access {
                            Access::Operator { .. } => {
                                nav {
                                    a href="/console/" { "Tenants" }
                                }
                                form method="post" action="/console/logout" class="inline right" {
                                    (csrf_field(viewer))
                                    button type="submit" class="link" { "Sign out" }
                                }
                            }
                            Access::Tenant { tenant, expires } => {
                                nav {
                                    a href=(viewer.tenant_url(tenant, "")) { "Tenant " (tenant) }
                                    a href=(viewer.tenant_url(tenant, "/inspect")) { "Inspect" }
                                }
                                span class="right muted" { "link valid until " (timestamp(*expires as i64 * 1000)) }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn timestamp(ms: i64) -> String {
    crate::run::Millis(ms).to_rfc3339()
}

/// "04:36:49.795" of a timestamp, with the date as its title, for a narrow column.
fn clock(ms: i64) -> Markup {
    let full = timestamp(ms);
    let time = full
        .split_once('T')
        .map_or(full.as_str(), |(_, time)| time.trim_end_matches('Z'));
    html! { span title=(full) { (time) } }
}

/// "3 min ago", for ages on the pages.
pub fn age(ms: i64, now_ms: i64) -> String {
    let seconds = (now_ms - ms).max(0) / 1000;
    match seconds {
        0..=59 => format!("{seconds} s ago"),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=172_799 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        &html! {
            section class="card narrow" {
                h1 { "Sign in" }
                p class="muted" { "The operator token is in the file named by console_token_file in dirsync.toml." }
                @if let Some(error) = error { p class="error" id="login-error" { (error) } }
                form method="post" action="/console/login" {
                    label for="token" { "Operator token" }
                    input type="password" id="token" name="token" autocomplete="current-password" required autofocus;
                    button type="submit" id="sign-in" { "Sign in" }
                }
            }
        },
    )
}

pub fn message(title: &str, viewer: Option<&Viewer>, text: &str) -> Markup {
    layout(
        title,
        viewer,
        &html! { section class="card" { h1 { (title) } p id="message" { (text) } } },
    )
}

fn outcome_badge(outcome: RunOutcome) -> Markup {
    html! { span class=(format!("badge {}", outcome_class(outcome))) { (outcome.as_str()) } }
}

fn health_badge(health: &Health) -> Markup {
    let (class, text) = if !health.problems.is_empty() {
        ("badge failed", "problem")
    } else if let Some(push) = &health.push {
        match push.last {
            Some(_) if health.enabled => ("badge ok", "healthy"),
            Some(_) => ("badge same", "disabled"),
            None => ("badge same", "no requests yet"),
        }
    } else if health.last_run.is_none() {
        ("badge same", "never run")
    } else if !health.enabled {
        ("badge same", "disabled")
    } else {
        ("badge ok", "healthy")
    };
    html! { span class=(class) { (text) } }
}

fn lag_text(health: &Health) -> String {
    if health.sinks.is_empty() {
        return "no sinks".into();
    }
    let behind: u64 = health.sinks.iter().map(|s| s.lag_events).max().unwrap_or(0);
    let parked = health.sinks.iter().filter(|s| s.parked).count();
    match (behind, parked) {
        (0, 0) => "up to date".into(),
        (n, 0) => format!("{n} events behind"),
        (n, p) => format!("{n} events behind, {p} parked"),
    }
}

fn problem_list(tenant: &str, problems: &[Problem]) -> Markup {
    html! {
        @for problem in problems {
            div class="problem" data-tenant=(tenant) {
                p class="what" { (t(&problem.what)) }
                p class="fix" { strong { "Fix: " } (t(&problem.fix)) }
            }
        }
    }
}

pub fn tenants(viewer: &Viewer, healths: &[Health], filter: &str, now_ms: i64) -> Markup {
    let troubled: Vec<&Health> = healths.iter().filter(|h| !h.problems.is_empty()).collect();
    layout(
        "Tenants",
        Some(viewer),
        &html! {
            h1 { "Tenants" }
            form method="get" action="/console/" class="filter" {
                input type="search" name="q" value=(filter) placeholder="filter by tenant, source or problem" aria-label="filter";
                button type="submit" { "Filter" }
            }
            @if !troubled.is_empty() {
                section class="card problems" id="problems" {
                    h2 { "Problems (" (troubled.len()) ")" }
                    @for health in &troubled {
                        h3 { a href=(viewer.tenant_url(&health.tenant, "")) { (health.tenant) } }
                        (problem_list(&health.tenant, &health.problems))
                    }
                }
            }
            table class="tenants" id="tenants" {
                thead { tr {
                    th { "tenant" } th { "source" } th { "health" } th { "last run" }
                    th { "failing since" } th { "next run" } th { "sinks" } th class="num" { "users" }
                    th class="num" { "groups" } th class="num" { "last seq" }
                } }
                tbody {
                    @for health in healths {
                        tr class=(if health.problems.is_empty() { "" } else { "troubled" }) data-tenant=(health.tenant) {
                            td { a href=(viewer.tenant_url(&health.tenant, "")) { (health.tenant) } }
                            td { (t(&health.source)) }
                            td { (health_badge(health))
                                @if let Some(push) = &health.push { br; span class="muted push-health" { (push_summary(push, now_ms)) } } }
                            td { @match &health.last_run {
                                Some(run) => { (outcome_badge(run.outcome)) " " span class="muted" { (age(run.finished_at.0, now_ms)) } }
                                None => { span class="muted" { "never" } }
                            } }
                            td { @match &health.failing_since {
                                Some(run) => { (age(run.finished_at.0, now_ms)) @if health.failing_longer { "+" } }
                                None => { "—" }
                            } }
                            td { (health.next_run.as_deref().unwrap_or("—")) }
                            td { (lag_text(health)) }
                            td class="num" { (health.users) }
                            td class="num" { (health.groups) }
                            td class="num" { (health.last_seq) }
                        }
                    }
                }
            }
            @if healths.is_empty() { p class="muted" { "No tenant matches." } }
        },
    )
}

/// What a tenant's page shows beyond its health.
pub struct TenantPage<'a> {
    pub health: &'a Health,
    pub config: &'a TenantConfig,
    pub runs: &'a [RunSummary],
    pub memberships: u64,
    pub events: &'a EventPage,
    /// A push tenant's page of its request log (`None` for a tenant that pulls).
    pub push_requests: Option<PushRequestPage>,
    pub notice: Option<&'a str>,
    pub now_ms: i64,
}

/// A page of a push tenant's request log, newest first.
#[derive(Debug, Clone, Default)]
pub struct PushRequestPage {
    pub requests: Vec<PushRequest>,
    /// The id to page back from ("older"), when there are older requests.
    pub older_than: Option<i64>,
    /// The page shown starts before this id (`None`: the latest).
    pub before: Option<i64>,
}

/// "PATCH 200" as a badge: refusals red.
fn status_badge(status: u16) -> Markup {
    let class = match status {
        200..=399 => "badge ok",
        429 | 503 => "badge refused",
        _ => "badge failed",
    };
    html! { span class=(class) { (status) } }
}

/// "3 of 40 requests refused in the last hour (7.5%)".
fn push_rate(push: &PushHealth) -> String {
    let counts = push.last_hour;
    match push.error_rate() {
        None => "no request in the last hour".to_owned(),
        Some(rate) => format!(
            "{} of {} request{} refused in the last hour ({:.1}%)",
            counts.errors,
            counts.requests,
            if counts.requests == 1 { "" } else { "s" },
            rate * 100.0
        ),
    }
}

/// A push tenant's line in the tenants list: the last request's age and the error rate.
fn push_summary(push: &PushHealth, now_ms: i64) -> String {
    let last = match &push.last {
        Some(last) => format!("last request {} ({})", age(last.at_ms, now_ms), last.status),
        None => "no request yet".to_owned(),
    };
    match push.error_rate() {
        Some(rate) => format!("{last}; {:.0}% errors in the last hour", rate * 100.0),
        None => last,
    }
}

/// A logged path with its query decoded (`/Users?filter=userName eq "pat@…"`), as a person
/// reads it; the raw one is the cell's title.
fn readable_path(path: &str) -> String {
    match path.split_once('?') {
        Some((base, query)) => {
            let pairs: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
        None => path.to_owned(),
    }
}

/// The request body as logged (secrets already redacted by the receiver), pretty-printed
/// when it is JSON.
fn pretty_body(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| body.to_owned())
}

/// The push request log panel: what the IdP sent, what dirsync answered, and the events
/// each request produced (a link to the event stream on that seq range).
fn push_requests(viewer: &Viewer, tenant: &str, page: &PushRequestPage, now_ms: i64) -> Markup {
    html! {
        section class="card" id="push-requests" {
            h2 { "Push requests" }
            p class="muted" {
                "What the IdP sent to /scim/v2/" (tenant) ", newest first"
                @if page.before.is_some() { " (older ones; " a href=(format!("{}#push-requests", viewer.tenant_url(tenant, ""))) { "the latest →" } ")" }
                ". Secrets in bodies (password) are redacted when logged."
            }
            @if page.requests.is_empty() { p class="muted" id="no-requests" { "No request logged." } } @else {
                table class="requests" {
                    thead { tr {
                        th { "time" } th { "method" } th { "path" } th { "status" } th class="num" { "latency" }
                        th { "client" } th { "events" }
                    } }
                    tbody { @for request in &page.requests {
                        tr data-request=(request.id) data-method=(request.method) data-path=(request.path) data-status=(request.status)
                            class=(if request.status >= 400 { "refused" } else { "" }) {
                            td class="nowrap" { (clock(request.at_ms)) br; span class="muted" { (age(request.at_ms, now_ms)) } }
                            td { code { (t(&request.method)) } }
                            td class="path" {
                                code title=(t(&request.path)) { (t(&readable_path(&request.path))) }
                                @if let Some(detail) = &request.detail { p class="detail" { (t(detail)) } }
                                @if let Some(body) = &request.body {
                                    details class="body" { summary { "body" } pre { (t_lines(&pretty_body(body))) } }
                                }
                            }
                            td { (status_badge(request.status)) }
                            td class="num" { (format!("{:.1} ms", request.latency_ms)) }
                            td class="client" { @match client_name(request.user_agent.as_deref()) {
                                Some(client) => { span title=(t(request.user_agent.as_deref().unwrap_or(""))) { (t(&client)) } }
                                None => { span class="muted" { "—" } }
                            } }
                            td { @match (request.first_seq, request.last_seq) {
                                (Some(first), Some(last)) => {
                                    a class="request-events nowrap" href=(format!("{}?from={first}&to={last}", viewer.tenant_url(tenant, "/events"))) {
                                        @if first == last { "seq " (first) } @else { "seq " (first) "–" (last) }
                                    }
                                }
                                _ => { span class="muted" { "none" } }
                            } }
                        }
                    } }
                }
                @if let Some(older) = page.older_than {
                    p { a id="older-requests" href=(format!("{}?before={older}#push-requests", viewer.tenant_url(tenant, ""))) { "Older →" } }
                }
            }
        }
    }
}

fn health_card(viewer: &Viewer, health: &Health, now_ms: i64) -> Markup {
    html! {
        section class="card" id="health" {
            h2 { "Health " (health_badge(health)) }
            dl class="facts" {
                dt { "source" } dd { (t(&health.source)) }
                dt { "last run" } dd { @match &health.last_run {
                    Some(run) => { (outcome_badge(run.outcome)) " " (run.finished_at.to_rfc3339()) " (" (age(run.finished_at.0, now_ms)) "), " (run.events) " events in " (format!("{:.1}", run.duration_ms as f64 / 1000.0)) " s" }
                    None => { "never" }
                } }
                dt { "failing since" } dd { @match &health.failing_since {
                    Some(run) => { (run.finished_at.to_rfc3339()) @if health.failing_longer { " or earlier" } }
                    None => { "—" }
                } }
                dt { "next run" } dd { (health.next_run.as_deref().unwrap_or("—"))
                    @if let Some(state) = &health.daemon { @if let Some(running) = &state.running { " · running since " (running.since) } } }
                dt { "stored" } dd { (health.users) " users, " (health.groups) " groups; last event seq " (health.last_seq) }
                @if let Some(push) = &health.push {
                    dt { "IdP requests" } dd id="push-health" {
                        @match &push.last {
                            Some(last) => {
                                "last: " code { (last.method) " " (t(&readable_path(&last.path))) } " → " (status_badge(last.status))
                                @if let Some(client) = client_name(last.user_agent.as_deref()) { " from " (t(&client)) }
                                ", " (timestamp(last.at_ms)) " (" (age(last.at_ms, now_ms)) ")"
                                br;
                            }
                            None => { "none received yet; the IdP provisions to /scim/v2/" (health.tenant) br; }
                        }
                        (push_rate(push))
                    }
                }
            }
            @if !health.problems.is_empty() {
                h3 { "Problems" }
                (problem_list(&health.tenant, &health.problems))
            }
            (search_box(viewer, &health.tenant, ""))
        }
    }
}

fn search_box(viewer: &Viewer, tenant: &str, value: &str) -> Markup {
    html! {
        form method="get" action=(viewer.tenant_url(tenant, "/inspect")) class="filter" id="inspect-form" {
            input type="search" name="q" value=(value) placeholder="email, alias, id or group name" aria-label="who" required;
            button type="submit" { "Inspect" }
        }
    }
}

pub fn tenant(viewer: &Viewer, page: &TenantPage<'_>) -> Markup {
    let health = page.health;
    let id = &health.tenant;
    let errors: Vec<&RunSummary> = page
        .runs
        .iter()
        .filter(|r| r.error.is_some())
        .take(5)
        .collect();
    layout(
        id,
        Some(viewer),
        &html! {
            h1 { "Tenant " (id) }
            @if let Some(notice) = page.notice { p class="notice" id="notice" { (t(notice)) } }
            (health_card(viewer, health, page.now_ms))
            @if viewer.is_operator() {
                section class="card" id="actions" {
                    h2 { "Actions" }
                    form method="post" action=(viewer.tenant_url(id, "/sync")) class="inline" {
                        (csrf_field(viewer))
                        button type="submit" id="force-sync" { "Sync now" }
                    }
                    form method="post" action=(viewer.tenant_url(id, "/sync")) class="inline" {
                        (csrf_field(viewer))
                        input type="hidden" name="dry_run" value="1";
                        button type="submit" id="dry-run" class="secondary" { "Dry run" }
                    }
                    p class="muted" { "Runs through the daemon's force-sync path; the page shows the result when the run finishes." }
                }
                // A push tenant's IdP requests are its activity: above its (rare) runs.
                @if let Some(requests) = &page.push_requests {
                    (push_requests(viewer, id, requests, page.now_ms))
                }
            }
            section class="card" id="runs" {
                h2 { "Runs" }
                @if page.runs.is_empty() { p class="muted" { "No runs yet." } } @else {
                    (runs_chart(page.runs))
                    p class="legend" {
                        @for outcome in [RunOutcome::Committed, RunOutcome::NoChanges, RunOutcome::DryRun, RunOutcome::Refused, RunOutcome::Failed] {
                            (outcome_badge(outcome)) " "
                        }
                    }
                }
            }
            @if !errors.is_empty() {
                section class="card" id="errors" {
                    h2 { "Latest errors" }
                    @for run in &errors {
                        @let error = run.error.as_deref().unwrap_or("");
                        div class="problem" {
                            p class="what" { (outcome_badge(run.outcome)) " run " (run.sync_id.unwrap_or_default()) ", " (run.finished_at.to_rfc3339()) ": " (t(problem_text(error))) }
                            p class="fix" { strong { "Fix: " } (t(&fix_for(page.config, run.outcome, error))) }
                        }
                    }
                }
            }
            @if viewer.is_operator() {
                section class="card" id="sinks" {
                    h2 { "Sinks" }
                    @if health.sinks.is_empty() { p class="muted" { "No [[sinks]]: events stay in the outbox (events API, `dirsync events`)." } } @else {
                        table {
                            thead { tr { th { "sink" } th { "type" } th class="num" { "cursor" } th class="num" { "lag" } th { "oldest pending" } th { "last error" } th {} } }
                            tbody { @for sink in &health.sinks {
                                tr data-sink=(sink.name) {
                                    td { (sink.name) } td { (sink.kind) } td class="num" { (sink.delivered_seq) }
                                    td class="num" { (sink.lag_events) }
                                    td { @match sink.lag_seconds { Some(s) if sink.lag_events > 0 => { (format!("{s:.0} s")) } _ => { "—" } } }
                                    td { @if let Some(error) = &sink.last_error { (t(&super::health::redacted_sink_error(page.config, &sink.name, error))) " " span class="muted" { (sink.last_error_at.as_deref().unwrap_or("")) } } @else { "—" } }
                                    td { @if sink.parked {
                                        span class="badge failed" { "parked" } " "
                                        form method="post" action=(viewer.tenant_url(id, &format!("/sinks/{}/unpark", sink.name))) class="inline" {
                                            (csrf_field(viewer))
                                            button type="submit" class="unpark" { "Unpark" }
                                        }
                                    } }
                                }
                            } }
                        }
                    }
                }
            }
            section class="card" id="recent-events" {
                h2 { "Events " a class="small" href=(viewer.tenant_url(id, "/events")) { "all, with filters →" } }
                p class="muted" { (page.memberships) " memberships stored." }
                (event_table(viewer, id, &page.events.events))
            }
        },
    )
}

/// One line about an event's object: the user's email, the group's email or name.
fn event_summary(body: &Value) -> String {
    let data = &body["data"];
    let name = |object: &Value| -> String {
        object["email"]
            .as_str()
            .or(object["name"].as_str())
            .or(object["id"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    if data.get("user").is_some() && data.get("group").is_some() {
        format!("{} in {}", name(&data["user"]), name(&data["group"]))
    } else {
        name(data)
    }
}

fn event_table(viewer: &Viewer, tenant: &str, events: &[EventRow]) -> Markup {
    html! {
        @if events.is_empty() { p class="muted" id="no-events" { "No events." } } @else {
            table class="events" {
                thead { tr { th class="num" { "seq" } th { "type" } th { "about" } th { "occurred" } th class="num" { "sync" } } }
                tbody { @for event in events {
                    @let body: Value = serde_json::from_str(&event.body).unwrap_or(Value::Null);
                    tr data-seq=(event.seq) {
                        td class="num" { (event.seq) }
                        td { code { (event.event_type) } }
                        td {
                            a href=(format!("{}?q={}", viewer.tenant_url(tenant, "/inspect"), url_encode(&event.subject_id))) { (t(&event_summary(&body))) }
                            details { summary { "JSON" } pre { (serde_json::to_string_pretty(&body).unwrap_or_default()) } }
                        }
                        td { (timestamp(event.occurred_at)) }
                        td class="num" { (event.sync_id) }
                    }
                } }
            }
        }
    }
}

pub fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub const EVENT_TYPES: [&str; 10] = [
    "user.",
    "group.",
    "user.created",
    "user.updated",
    "user.deleted",
    "group.created",
    "group.updated",
    "group.deleted",
    "group.user_added",
    "group.user_removed",
];

pub fn events(viewer: &Viewer, tenant: &str, query: &EventQuery, page: &EventPage) -> Markup {
    let mut next = None;
    if let Some(to) = page.next_to {
        let mut params = vec![format!("to={to}")];
        if let Some(kind) = &query.event_type {
            params.push(format!("type={}", url_encode(kind)));
        }
        if let Some(subject) = &query.subject {
            params.push(format!("subject={}", url_encode(subject)));
        }
        if let Some(from) = query.from_seq {
            params.push(format!("from={from}"));
        }
        next = Some(format!(
            "{}?{}",
            viewer.tenant_url(tenant, "/events"),
            params.join("&")
        ));
    }
    layout(
        &format!("{tenant} events"),
        Some(viewer),
        &html! {
            h1 { "Events of " a href=(viewer.tenant_url(tenant, "")) { (tenant) } }
            form method="get" action=(viewer.tenant_url(tenant, "/events")) class="filter" id="event-filter" {
                select name="type" aria-label="type" {
                    option value="" { "any type" }
                    @for kind in EVENT_TYPES {
                        option value=(kind) selected[query.event_type.as_deref() == Some(kind)] {
                            (if kind.ends_with('.') { format!("{kind}*") } else { kind.to_owned() })
                        }
                    }
                }
                input type="text" name="subject" value=(query.subject.as_deref().unwrap_or("")) placeholder="user or group id" aria-label="subject";
                input type="number" name="from" min="1" value=(query.from_seq.map(|s| s.to_string()).unwrap_or_default()) placeholder="from seq" aria-label="from seq";
                input type="number" name="to" min="1" value=(query.to_seq.map(|s| s.to_string()).unwrap_or_default()) placeholder="to seq" aria-label="to seq";
                button type="submit" { "Filter" }
            }
            @if let Some((from, to)) = page.searched {
                p class="muted" id="searched" { "Searched seq " (from) "–" (to) "; " (page.events.len()) " shown, newest first." }
            }
            (event_table(viewer, tenant, &page.events))
            @if let Some(next) = next { p { a href=(next) id="older" { "Older →" } } }
        },
    )
}

/// The inspect page: the search box and, once asked, `triage::inspect`'s answer.
pub fn inspect(viewer: &Viewer, tenant: &str, who: &str, report: Option<&Value>) -> Markup {
    layout(
        &format!("Inspect {tenant}"),
        Some(viewer),
        &html! {
            h1 { "Inspect " a href=(viewer.tenant_url(tenant, "")) { (tenant) } }
            (search_box(viewer, tenant, who))
            @if let Some(report) = report { (inspect_report(viewer, tenant, who, report)) }
        },
    )
}

fn text_of(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(text) => t(text),
        Value::Null => Cow::Borrowed("—"),
        other => Cow::Owned(other.to_string()),
    }
}

fn group_name(group: &Value) -> Cow<'_, str> {
    if group["email"].is_string() {
        text_of(&group["email"])
    } else if group["name"].is_string() {
        text_of(&group["name"])
    } else {
        text_of(&group["group"])
    }
}

fn inspect_report(viewer: &Viewer, tenant: &str, who: &str, report: &Value) -> Markup {
    let stored = report["stored"] == true;
    html! {
        @if stored && report["kind"] == "user" {
            @let user = &report["user"];
            section class="card" id="inspect-user" {
                h2 { "User " span class="who" { (text_of(&user["email"])) } }
                dl class="facts" {
                    dt { "id" } dd { code { (text_of(&user["id"])) } }
                    dt { "name" } dd class="user-name" { (text_of(&user["first_name"])) " " (text_of(&user["last_name"])) }
                    dt { "display name" } dd { (text_of(&user["display_name"])) }
                    dt { "username" } dd { (text_of(&user["username"])) }
                    dt { "state" } dd { (text_of(&user["state"])) }
                }
                h3 { "Roles" }
                (none_if_empty(report, "roles"))
                ul { @for role in report["roles"].as_array().into_iter().flatten() {
                    li { strong { (text_of(&role["role"])) } " ← "
                        @if role["default_role"] == true { "default_role" } @else {
                            @for (i, g) in role["granted_by"].as_array().into_iter().flatten().enumerate() {
                                @if i > 0 { ", " } (text_of(&g["group"])) @if g["path"].is_string() { " (" (text_of(&g["path"])) ")" }
                            }
                        }
                    }
                } }
                h3 { "Custom attributes" }
                ul {
                    @for a in report["custom_attributes"].as_array().into_iter().flatten() {
                        li { (text_of(&a["name"])) " = " code { (t(&a["value"].to_string())) } " " span class="muted" { "from " (text_of(&a["path"])) } }
                    }
                    @for a in report["unresolved_attributes"].as_array().into_iter().flatten() {
                        li class="muted" { (text_of(&a["name"])) " not set (" (text_of(&a["path"])) " does not resolve)" }
                    }
                }
                h3 { "Groups (effective)" }
                (none_if_empty(report, "groups"))
                ul { @for g in report["groups"].as_array().into_iter().flatten() {
                    li { (group_name(g)) @if g["path"].is_string() { span class="muted" { ": " (text_of(&g["path"])) } } }
                } }
                h3 { "Direct groups" }
                (none_if_empty(report, "direct_groups"))
                ul { @for g in report["direct_groups"].as_array().into_iter().flatten() {
                    li { (text_of(&g["group"])) @if g["synced"] != true { span class="muted" { " (not synced)" } } }
                } }
                (recent_events(report))
            }
        } @else if stored && report["kind"] == "group" {
            @let group = &report["group"];
            section class="card" id="inspect-group" {
                h2 { "Group " span class="who" { (group_name(group)) } }
                dl class="facts" {
                    dt { "id" } dd { code { (text_of(&group["id"])) } }
                    dt { "name" } dd { (text_of(&group["name"])) }
                    dt { "synced" } dd { @match report["filter"]["matched"].as_str() {
                        Some(glob) => { "matches [filters] groups pattern " code { (t(glob)) } }
                        None => { "no [filters] groups: every group is synced" }
                    } }
                }
                h3 { "Members, effective (" (report["members_total"].as_u64().unwrap_or(0)) ")" }
                ul { @for m in report["members"].as_array().into_iter().flatten() {
                    li { a href=(format!("{}?q={}", viewer.tenant_url(tenant, "/inspect"), url_encode(m["id"].as_str().unwrap_or("")))) { (text_of(&m["email"])) } " " span class="muted" { (text_of(&m["state"])) } }
                } }
                @let shown = report["members"].as_array().map_or(0, Vec::len) as u64;
                @if report["members_total"].as_u64().unwrap_or(0) > shown { p class="muted" { "The first " (shown) " shown." } }
                @for (title, key) in [("Child groups", "child_groups"), ("Parent groups", "parent_groups")] {
                    h3 { (title) }
                    (none_if_empty(report, key))
                    ul { @for g in report[key].as_array().into_iter().flatten() {
                        li { (text_of(&g["group"])) @if g["synced"] != true { span class="muted" { " (not synced)" } } }
                    } }
                }
                (recent_events(report))
            }
        } @else {
            section class="card why" id="inspect-missing" {
                h2 { span class="who" { (t(who)) } " is not in the store" }
                p class="reason" id="why" { (text_of(&report["why"])) }
                @if let Some(left) = report["left_store"].as_str() { p { "It left the store with " (t(left)) "." } }
                @if let Some(run) = report["since_sync"].as_i64() { p class="muted" { "Excluded for this reason since sync " (run) "." } }
            }
        }
    }
}

/// "none" for an empty list of the report.
fn none_if_empty(report: &Value, key: &str) -> Markup {
    html! { @if report[key].as_array().is_none_or(Vec::is_empty) { p class="muted" { "none" } } }
}

fn recent_events(report: &Value) -> Markup {
    html! {
        h3 { "Recent events" }
        ul class="plain" { @for e in report["recent_events"].as_array().into_iter().flatten() {
            li { "seq " (e["seq"]) " " code { (text_of(&e["type"])) } " " span class="muted" { (text_of(&e["occurred_at"])) " (sync " (e["sync_id"]) ")" } }
        } }
    }
}

/// The onboarding steps for the customer's admin, as `dirsync setup` gives them, with this
/// tenant's values filled in.
pub fn onboarding(config: &TenantConfig) -> Markup {
    use crate::config::SourceConfig;
    let steps: String = if let SourceConfig::Google(google) = &config.source {
        let key = &google.service_account_key;
        crate::setup::messages::admin_instructions(
            key.client_id
                .as_deref()
                .filter(|id| !id.is_empty())
                .unwrap_or(&key.client_email),
            &key.client_email,
            key.project_id.as_deref().filter(|p| !p.is_empty()),
            &google.subject,
        )
    } else if let SourceConfig::Scim(scim) = &config.source {
        format!(
            "What the IdP's admin must do (once):\n\n\
             1. Issue a bearer token for SCIM provisioning that may read Users and Groups at\n\
             \x20  {}\n\
             2. Send it to the operator over a secure channel: dirsync keeps it in a file readable\n\
             \x20  only by the service.",
            scim.base_url
        )
    } else if config.source.is_push() {
        format!(
            "What the IdP's admin must do (once), in the IdP's SCIM provisioning app for dirsync:\n\n\
             1. Base URL: this site's address followed by /scim/v2/{}\n\
             2. Authentication: HTTP header, Bearer token: the token the operator sends you over a\n\
             \x20  secure channel.\n\
             3. Provision users and groups (create, update, deactivate; push groups).",
            config.id
        )
    } else {
        "The operator has the steps for this kind of source.".to_owned()
    };
    html! {
        section class="card" id="onboarding" {
            h2 { "Onboarding steps" }
            pre class="steps" { (t_lines(&steps)) }
        }
    }
}

fn t_lines(text: &str) -> Cow<'_, str> {
    crate::terminal::escape_lines(text)
}

/// The IT admin's page: the tenant's health, onboarding and the inspect search box.
pub fn link_overview(
    viewer: &Viewer,
    health: &Health,
    config: &TenantConfig,
    now_ms: i64,
) -> Markup {
    layout(
        &health.tenant,
        Some(viewer),
        &html! {
            h1 { "Directory sync for " (health.tenant) }
            (health_card(viewer, health, now_ms))
            (onboarding(config))
        },
    )
}

/// What a force sync (or dry run) did.
pub fn sync_result(
    viewer: &Viewer,
    tenant: &str,
    config: &TenantConfig,
    response: &crate::daemon::control::Response,
    committed: Option<&EventPage>,
) -> Markup {
    let report = response.report.clone().unwrap_or(Value::Null);
    let outcome = RunOutcome::parse(report["outcome"].as_str().unwrap_or("failed"));
    let error = report["error"].as_str().or(response.error.as_deref());
    layout(
        &format!("{tenant} sync"),
        Some(viewer),
        &html! {
            h1 { "Sync of " a href=(viewer.tenant_url(tenant, "")) { (tenant) } }
            section class="card" id="sync-result" {
                h2 { (outcome_badge(outcome)) }
                @if let Some(summary) = &response.summary { p id="summary" { (t(summary)) } }
                @if let Some(error) = error {
                    div class="problem" {
                        p class="what" { (t(problem_text(error))) }
                        p class="fix" { strong { "Fix: " } (t(&fix_for(config, outcome, error))) }
                    }
                }
                @if let Some(warning) = report["warning"].as_str() { p class="notice" { (t(warning)) } }
            }
            @if !response.events.is_empty() {
                section class="card" id="dry-run-events" {
                    h2 { "Events the run would emit (" (response.events.len()) ")" }
                    table class="events" {
                        thead { tr { th { "type" } th { "about" } } }
                        tbody { @for event in response.events.iter().take(500) {
                            tr { td { code { (text_of(&event["type"])) } } td { (t(&event_summary(event))) } }
                        } }
                    }
                }
            }
            @if let Some(page) = committed {
                section class="card" id="committed-events" {
                    h2 { "Events committed" }
                    (event_table(viewer, tenant, &page.events))
                    @if page.next_to.is_some() {
                        p { a href=(format!("{}?from={}&to={}", viewer.tenant_url(tenant, "/events"), report["first_seq"], report["last_seq"])) { "all of them →" } }
                    }
                }
            }
        },
    )
}

/// The stylesheet, compiled in.
pub const STYLE: &str = include_str!("style.css");
