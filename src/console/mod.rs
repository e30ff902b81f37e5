//! The web console (`console_token_file`): triage and onboarding in a browser, served at
//! `/console/` on the daemon's `http_listen`. Operators sign in with the console token and see
//! every tenant (problems first, each with its fix), a tenant's runs, errors, sinks and event
//! stream, the inspect page, and two actions: force sync or dry run (through the daemon's
//! control socket, the path `dirsync sync` takes) and unparking a sink. A link from
//! `dirsync console-link` shows one tenant's health, onboarding steps and inspect page to the
//! customer's IT admin, until it expires.
//!
//! Pages are rendered on the server (`pages`, `chart`), read the store through bounded queries
//! (`store::console`, `triage`), and carry no script; the stylesheet is compiled in. Access is
//! decided here before anything is read (`auth`). Must not: write to the store other than
//! through the actions above, or render a secret.

pub mod auth;
pub mod chart;
pub mod health;
pub mod pages;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::Markup;
use serde::Deserialize;

use crate::config::{valid_tenant_id, GlobalConfig, TenantConfig};
use crate::daemon::control::{self, Request};
use crate::daemon::tenant::TenantState;
use crate::daemon::{Extension, ExtensionContext, TenantHook};
use crate::mutex::lock;
use crate::store::console::{events_page, EventQuery};
use crate::store::{self, Store, StoreError};
use auth::{Access, Auth, COOKIE, SESSION_TTL};
use pages::Viewer;

/// Runs drawn on a tenant's chart.
const CHART_RUNS: u32 = 60;
/// Events on a tenant's page, and per page of its stream.
const RECENT_EVENTS: u32 = 20;
const EVENTS_PER_PAGE: u32 = 100;
/// A push tenant's logged IdP requests per page of its tenant page.
const PUSH_REQUESTS_PER_PAGE: usize = 50;
/// Members of a group listed on the inspect page.
const INSPECT_MEMBERS: u32 = 200;

/// The console as a daemon extension: its routes, and the tenants the daemon runs.
pub struct ConsoleExtension {
    auth: Arc<Auth>,
    tenants: Arc<Mutex<BTreeMap<String, Arc<TenantConfig>>>>,
}

impl ConsoleExtension {
    /// The console of `global`, or `None` when `console_token_file` is not set.
    pub fn new(global: &GlobalConfig) -> Option<Self> {
        let token = global.console_token.clone()?;
        Some(Self {
            auth: Arc::new(Auth::new(token)),
            tenants: Arc::default(),
        })
    }
}

impl Extension for ConsoleExtension {
    fn routes(&self, context: &ExtensionContext) -> Option<Router> {
        Some(router(Arc::new(Console {
            auth: self.auth.clone(),
            tenants: self.tenants.clone(),
            store: context.store.clone(),
            control_socket: context.global.control_socket.clone(),
        })))
    }

    fn start_tenant(&self, hook: TenantHook) {
        lock(&self.tenants).insert(hook.config.id.clone(), hook.config.clone());
    }

    fn stop_tenant(&self, tenant: &str) {
        lock(&self.tenants).remove(tenant);
    }
}

struct Console {
    auth: Arc<Auth>,
    tenants: Arc<Mutex<BTreeMap<String, Arc<TenantConfig>>>>,
    store: Store,
    control_socket: std::path::PathBuf,
}

type Shared = State<Arc<Console>>;

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(tenants_page))
        .route("/console/style.css", get(style))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/t/{tenant}", get(tenant_page))
        .route("/console/t/{tenant}/events", get(tenant_events))
        .route("/console/t/{tenant}/inspect", get(tenant_inspect))
        .route("/console/t/{tenant}/sync", post(force_sync))
        .route("/console/t/{tenant}/sinks/{sink}/unpark", post(unpark))
        .route("/console/l/{token}", get(link_page))
        .route("/console/l/{token}/", get(link_page))
        .route("/console/l/{token}/inspect", get(link_inspect))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

/// Every console answer: no caching, no framing, no referrer, nothing loaded from elsewhere.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

fn page(markup: Markup) -> Response {
    html(StatusCode::OK, markup)
}

fn failure(status: StatusCode, viewer: Option<&Viewer>, text: &str) -> Response {
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::UNAUTHORIZED => "Sign in first",
        _ => "Something went wrong",
    };
    html(status, pages::message(title, viewer, text))
}

fn store_failure(err: &StoreError) -> Response {
    tracing::warn!("console: {err}");
    failure(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "the store is unavailable; see the daemon's log and retry",
    )
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        pages::STYLE,
    )
        .into_response()
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

impl Console {
    /// The signed-in operator, or the answer that sends them to sign in.
    fn operator(&self, headers: &HeaderMap) -> Result<Viewer, Box<Response>> {
        match cookie(headers).and_then(|id| self.auth.session(&id)) {
            Some(access) => Ok(Viewer { access, link: None }),
            None => Err(Box::new(Redirect::to("/console/login").into_response())),
        }
    }

    /// The operator, for an action: signed in and carrying the session's CSRF token.
    fn operator_action(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Result<Viewer, Box<Response>> {
        let Some(access) = cookie(headers).and_then(|id| self.auth.session(&id)) else {
            return Err(Box::new(failure(
                StatusCode::UNAUTHORIZED,
                None,
                "sign in first: this action needs an operator session",
            )));
        };
        let Access::Operator { csrf: expected } = &access else {
            return Err(Box::new(failure(
                StatusCode::FORBIDDEN,
                None,
                "operators only",
            )));
        };
        if !csrf.is_some_and(|given| auth::same_secret(given, expected)) {
            return Err(Box::new(failure(
                StatusCode::FORBIDDEN,
                None,
                "this form is missing its CSRF token or it does not match the session: reload the page and try again",
            )));
        }
        Ok(Viewer { access, link: None })
    }

    /// The viewer of an IT admin's link.
    fn link(&self, token: &str) -> Result<Viewer, Box<Response>> {
        match self.auth.verify_link(token, auth::unix_now()) {
            Ok(access) => Ok(Viewer {
                access,
                link: Some(token.to_owned()),
            }),
            Err(err) => Err(Box::new(failure(
                StatusCode::FORBIDDEN,
                None,
                &err.to_string(),
            ))),
        }
    }

    /// The tenant's config, when `viewer` may see it. Unknown and not-allowed look the same
    /// to a link, so a link cannot probe for other tenants.
    fn tenant(&self, viewer: &Viewer, id: &str) -> Result<Arc<TenantConfig>, Box<Response>> {
        let found = (valid_tenant_id(id) && viewer.access.allows(id))
            .then(|| lock(&self.tenants).get(id).cloned())
            .flatten();
        found.ok_or_else(|| {
            Box::new(failure(
                StatusCode::NOT_FOUND,
                Some(viewer),
                &format!("no tenant {:?} here", pages::t(id)),
            ))
        })
    }

    /// The daemon's view of every tenant (next run, a run in progress), from its control
    /// socket, as `dirsync status` asks for it; empty when it does not answer.
    async fn daemon_states(&self, tenant: Option<&str>) -> BTreeMap<String, TenantState> {
        let request = Request::Status {
            tenant: tenant.map(str::to_owned),
        };
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            control::request(&self.control_socket, &request),
        )
        .await;
        match answer {
            Ok(Ok(Some(response))) if response.ok => response
                .tenants
                .into_iter()
                .map(|state| (state.tenant.clone(), state))
                .collect(),
            _ => BTreeMap::new(),
        }
    }
}

async fn login_page(State(console): Shared, headers: HeaderMap) -> Response {
    if console.operator(&headers).is_ok() {
        return Redirect::to("/console/").into_response();
    }
    page(pages::login(None))
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(State(console): Shared, Form(form): Form<LoginForm>) -> Response {
    match console.auth.sign_in(&form.token) {
        Some(session) => {
            let cookie = format!(
                "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}",
                SESSION_TTL.as_secs()
            );
            let mut response = Redirect::to("/console/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => {
            tracing::warn!("console: a sign-in with a wrong token was refused");
            html(
                StatusCode::UNAUTHORIZED,
                pages::login(Some(
                    "wrong token: use the one in the file named by console_token_file",
                )),
            )
        }
    }
}

#[derive(Deserialize)]
struct ActionForm {
    csrf: Option<String>,
    #[serde(default)]
    dry_run: Option<String>,
}

async fn logout(
    State(console): Shared,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    if let Err(response) = console.operator_action(&headers, form.csrf.as_deref()) {
        return *response;
    }
    if let Some(id) = cookie(&headers) {
        console.auth.sign_out(&id);
    }
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "dirsync_console=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0",
        ),
    );
    response
}

#[derive(Deserialize)]
struct FilterQuery {
    #[serde(default)]
    q: String,
}

async fn tenants_page(
    State(console): Shared,
    headers: HeaderMap,
    Query(query): Query<FilterQuery>,
) -> Response {
    let viewer = match console.operator(&headers) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let configs: Vec<Arc<TenantConfig>> = lock(&console.tenants).values().cloned().collect();
    let mut states = console.daemon_states(None).await;
    let with_states: Vec<(Arc<TenantConfig>, Option<TenantState>)> = configs
        .into_iter()
        .map(|config| {
            let state = states.remove(&config.id);
            (config, state)
        })
        .collect();
    let read = console
        .store
        .run(move |conn| {
            with_states
                .into_iter()
                .map(|(config, state)| health::read(conn, &config, state))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let mut healths = match read {
        Ok(healths) => healths,
        Err(err) => return store_failure(&err),
    };
    let filter = query.q.trim().to_lowercase();
    if !filter.is_empty() {
        healths.retain(|h| {
            h.tenant.contains(&filter)
                || h.source.to_lowercase().contains(&filter)
                || h.problems.iter().any(|p| {
                    p.what.to_lowercase().contains(&filter)
                        || p.fix.to_lowercase().contains(&filter)
                })
        });
    }
    // Problems first, then by id (the map's order).
    healths.sort_by_key(|h| h.problems.is_empty());
    page(pages::tenants(
        &viewer,
        &healths,
        query.q.trim(),
        store::now_ms(),
    ))
}

#[derive(Deserialize)]
struct TenantQuery {
    notice: Option<String>,
    /// The push request log's page: the requests logged before this id.
    before: Option<String>,
}

async fn tenant_page(
    State(console): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<TenantQuery>,
) -> Response {
    let viewer = match console.operator(&headers) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let config = match console.tenant(&viewer, &id) {
        Ok(config) => config,
        Err(response) => return *response,
    };
    let before = match query.before.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match text.parse::<i64>() {
            Ok(id) if id > 0 => Some(id),
            _ => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    Some(&viewer),
                    "before must be a request id: a whole number from 1",
                )
            }
        },
    };
    let state = console.daemon_states(Some(&id)).await.remove(&id);
    let read_config = config.clone();
    let read = console
        .store
        .run(move |conn| {
            let health = health::read(conn, &read_config, state)?;
            let push_requests = if read_config.source.is_push() {
                let mut requests = store::push::requests_before(
                    conn,
                    &read_config.id,
                    before,
                    PUSH_REQUESTS_PER_PAGE + 1,
                )?;
                let older = requests.len() > PUSH_REQUESTS_PER_PAGE;
                requests.truncate(PUSH_REQUESTS_PER_PAGE);
                let older_than = older.then(|| requests.last().map(|r| r.id)).flatten();
                // Pages follow the log's order (indexed); a page shows arrival order, as
                // reads are logged a moment after the writes around them.
                requests.sort_by_key(|r| std::cmp::Reverse((r.at_ms, r.id)));
                Some(pages::PushRequestPage {
                    older_than,
                    requests,
                    before,
                })
            } else {
                None
            };
            let runs = store::last_runs(conn, &read_config.id, CHART_RUNS)?;
            let memberships = store::stored_counts(conn, &read_config.id)?.memberships;
            let events = events_page(
                conn,
                &read_config.id,
                &EventQuery {
                    limit: RECENT_EVENTS,
                    ..EventQuery::default()
                },
            )?;
            Ok((health, runs, memberships, events, push_requests))
        })
        .await;
    let (health, runs, memberships, events, push_requests) = match read {
        Ok(found) => found,
        Err(err) => return store_failure(&err),
    };
    page(pages::tenant(
        &viewer,
        &pages::TenantPage {
            health: &health,
            config: &config,
            runs: &runs,
            memberships,
            events: &events,
            push_requests,
            notice: query.notice.as_deref(),
            now_ms: store::now_ms(),
        },
    ))
}

#[derive(Deserialize)]
struct EventsParams {
    #[serde(default, rename = "type")]
    event_type: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl EventsParams {
    fn query(&self) -> Result<EventQuery, String> {
        let seq = |text: &str, name: &str| -> Result<Option<u64>, String> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse::<u64>()
                .ok()
                .filter(|seq| *seq <= crate::sink::api::MAX_SEQ)
                .map(Some)
                .ok_or_else(|| format!("{name} must be a seq: a whole number from 1"))
        };
        let kind = self.event_type.trim();
        if !kind.is_empty() && !pages::EVENT_TYPES.contains(&kind) {
            return Err(format!("unknown event type {:?}", pages::t(kind)));
        }
        Ok(EventQuery {
            event_type: (!kind.is_empty()).then(|| kind.to_owned()),
            subject: Some(self.subject.trim().to_owned()).filter(|s| !s.is_empty()),
            from_seq: seq(&self.from, "from")?,
            to_seq: seq(&self.to, "to")?,
            limit: EVENTS_PER_PAGE,
        })
    }
}

async fn tenant_events(
    State(console): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<EventsParams>,
) -> Response {
    let viewer = match console.operator(&headers) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    if let Err(response) = console.tenant(&viewer, &id) {
        return *response;
    }
    let query = match params.query() {
        Ok(query) => query,
        Err(message) => return failure(StatusCode::BAD_REQUEST, Some(&viewer), &message),
    };
    let (tenant, read_query) = (id.clone(), query.clone());
    match console
        .store
        .run(move |conn| events_page(conn, &tenant, &read_query))
        .await
    {
        Ok(found) => page(pages::events(&viewer, &id, &query, &found)),
        Err(err) => store_failure(&err),
    }
}

#[derive(Deserialize)]
struct InspectQuery {
    #[serde(default)]
    q: String,
}

async fn inspect(console: &Console, viewer: &Viewer, id: &str, who: &str) -> Response {
    let config = match console.tenant(viewer, id) {
        Ok(config) => config,
        Err(response) => return *response,
    };
    let who = who.trim().to_owned();
    if who.is_empty() {
        return page(pages::inspect(viewer, id, "", None));
    }
    let asked = who.clone();
    let limits = crate::triage::Limits {
        members: Some(INSPECT_MEMBERS),
    };
    match console
        .store
        .run(move |conn| crate::triage::inspect(conn, &config, &asked, limits))
        .await
    {
        Ok(report) => page(pages::inspect(viewer, id, &who, Some(&report))),
        Err(err) => store_failure(&err),
    }
}

async fn tenant_inspect(
    State(console): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<InspectQuery>,
) -> Response {
    match console.operator(&headers) {
        Ok(viewer) => inspect(&console, &viewer, &id, &query.q).await,
        Err(response) => *response,
    }
}

fn link_tenant(viewer: &Viewer) -> String {
    match &viewer.access {
        Access::Tenant { tenant, .. } => tenant.clone(),
        Access::Operator { .. } => String::new(),
    }
}

async fn link_page(State(console): Shared, Path(token): Path<String>) -> Response {
    let viewer = match console.link(&token) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let id = link_tenant(&viewer);
    let config = match console.tenant(&viewer, &id) {
        Ok(config) => config,
        Err(response) => return *response,
    };
    let state = console.daemon_states(Some(&id)).await.remove(&id);
    let read_config = config.clone();
    match console
        .store
        .run(move |conn| health::read(conn, &read_config, state))
        .await
    {
        Ok(mut health) => {
            // Delivery is the app's side of the tenant, not the IT admin's.
            health.problems.retain(|problem| !problem.sink);
            health.sinks.clear();
            page(pages::link_overview(
                &viewer,
                &health,
                &config,
                store::now_ms(),
            ))
        }
        Err(err) => store_failure(&err),
    }
}

async fn link_inspect(
    State(console): Shared,
    Path(token): Path<String>,
    Query(query): Query<InspectQuery>,
) -> Response {
    match console.link(&token) {
        Ok(viewer) => {
            let id = link_tenant(&viewer);
            inspect(&console, &viewer, &id, &query.q).await
        }
        Err(response) => *response,
    }
}

async fn force_sync(
    State(console): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    let viewer = match console.operator_action(&headers, form.csrf.as_deref()) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let config = match console.tenant(&viewer, &id) {
        Ok(config) => config,
        Err(response) => return *response,
    };
    let dry_run = form.dry_run.as_deref().is_some_and(|v| !v.is_empty());
    let request = Request::Sync {
        tenant: id.clone(),
        dry_run,
        allow_mass_delete: false,
    };
    let response = match control::request(&console.control_socket, &request).await {
        Ok(Some(response)) => response,
        Ok(None) => {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&viewer),
                "the daemon's control socket does not answer",
            )
        }
        Err(err) => {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(&viewer),
                &err.to_string(),
            )
        }
    };
    let report = response.report.clone().unwrap_or_default();
    let committed = match (report["first_seq"].as_u64(), report["last_seq"].as_u64()) {
        (Some(first), Some(last)) if !dry_run => {
            let tenant = id.clone();
            console
                .store
                .run(move |conn| {
                    events_page(
                        conn,
                        &tenant,
                        &EventQuery {
                            from_seq: Some(first),
                            to_seq: Some(last),
                            limit: EVENTS_PER_PAGE,
                            ..EventQuery::default()
                        },
                    )
                })
                .await
                .ok()
        }
        _ => None,
    };
    page(pages::sync_result(
        &viewer,
        &id,
        &config,
        &response,
        committed.as_ref(),
    ))
}

async fn unpark(
    State(console): Shared,
    headers: HeaderMap,
    Path((id, sink)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    let viewer = match console.operator_action(&headers, form.csrf.as_deref()) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let config = match console.tenant(&viewer, &id) {
        Ok(config) => config,
        Err(response) => return *response,
    };
    if !config.sinks.iter().any(|s| s.name == sink) {
        return failure(
            StatusCode::NOT_FOUND,
            Some(&viewer),
            &format!("tenant {id} has no sink {:?}", pages::t(&sink)),
        );
    }
    let (tenant, name) = (id.clone(), sink.clone());
    let notice = match console
        .store
        .run(move |conn| store::unpark(conn, &tenant, &name))
        .await
    {
        Ok(true) => format!("sink {sink} unparked: delivery resumes from its held cursor"),
        Ok(false) => format!("sink {sink} was not parked"),
        Err(err) => return store_failure(&err),
    };
    Redirect::to(&format!(
        "/console/t/{id}?notice={}",
        pages::url_encode(&notice)
    ))
    .into_response()
}

/// The URL of an IT admin's link to `tenant`, valid for `valid_for` from now.
pub fn link_url(
    global: &GlobalConfig,
    tenant: &str,
    valid_for: std::time::Duration,
) -> Result<String, String> {
    let Some(token) = global.console_token.clone() else {
        return Err(format!(
            "the web console is off: set console_token_file (and http_listen) in {}",
            global.file.display()
        ));
    };
    let Some(addr) = global.http_listen else {
        return Err(format!(
            "the web console is served on http_listen: set it in {}",
            global.file.display()
        ));
    };
    let expires = auth::unix_now().saturating_add(valid_for.as_secs());
    let host = if addr.ip().is_unspecified() {
        "localhost".to_owned()
    } else {
        addr.ip().to_string()
    };
    let host = if addr.is_ipv6() && host != "localhost" {
        format!("[{host}]")
    } else {
        host
    };
    Ok(format!(
        "http://{host}:{}/console/l/{}/",
        addr.port(),
        Auth::new(token).sign_link(tenant, expires)
    ))
}
