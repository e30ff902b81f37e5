//! The HTTP face of the emulator (axum): the token endpoint, the Directory API routes (matched
//! by hand so each request knows its method id before anything else happens), the request
//! pipeline (latency, concurrency, auth, scope, admin, quota, fault rules, counters) and the
//! `/_emulator` admin endpoints.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use chrono::Utc;
use serde_json::{json, Value};

use super::api::{self, ListContext, Params, Render};
use super::auth::{self, method_scopes, OAuthError, ServiceAccount, Tokens};
use super::counters::Counters;
use super::directory::{Directory, Id};
use super::error::ApiError;
use super::faults::{FaultKind, FaultRule, Faults, RequestFacts, Settings, TOKEN_METHOD};
use super::paging::PageTokens;

/// Everything the server and the library handles share.
#[derive(Debug)]
pub struct Shared {
    pub directory: RwLock<Directory>,
    pub account: ServiceAccount,
    pub tokens: Tokens,
    pub faults: Faults,
    pub counters: Counters,
    pub page_tokens: PageTokens,
    /// Domain-wide delegation allow-list of the service account (scopes without prefix).
    pub dwd_scopes: RwLock<BTreeSet<String>>,
    pub token_uri: String,
    pub base_url: String,
}

impl Shared {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Directory> {
        self.directory
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, Directory> {
        self.directory
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    pub fn key_json(&self) -> Value {
        self.account.key_json(&self.token_uri)
    }
}

const JSON: &str = "application/json; charset=UTF-8";

fn json_response(status: u16, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

fn error_response(err: &ApiError) -> Response {
    let mut response = match err.raw_body() {
        Some((content_type, body)) => {
            let mut response = Response::new(Body::from(body.clone()));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        None => {
            let body = serde_json::to_vec_pretty(&err.to_json()).unwrap_or_default();
            json_response(err.status, body)
        }
    };
    *response.status_mut() =
        StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(seconds) = err.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if err.status == 401 {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
        );
    }
    response
}

fn oauth_response(err: &OAuthError) -> Response {
    json_response(err.status, err.to_json().to_string().into_bytes())
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/token", post(token_endpoint))
        .route(
            "/_emulator/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/_emulator/stats", get(admin_stats))
        .route("/_emulator/key", get(admin_key))
        .route(
            "/_emulator/counters",
            get(admin_counters).delete(admin_counters_reset),
        )
        .route("/_emulator/counters/reset", post(admin_counters_reset))
        .route(
            "/_emulator/faults",
            get(admin_faults_list)
                .post(admin_faults_add)
                .delete(admin_faults_clear),
        )
        .route("/_emulator/faults/{name}", delete(admin_fault_remove))
        .route(
            "/_emulator/settings",
            get(admin_settings)
                .patch(admin_settings_set)
                .put(admin_settings_set),
        )
        .route("/_emulator/token", post(admin_token))
        .route("/_emulator/tokens/expire", post(admin_tokens_expire))
        .route("/_emulator/logins", post(admin_logins))
        .fallback(api_entry)
        .with_state(shared)
}

// ----- the token endpoint ----------------------------------------------------------------------

async fn token_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let latency = shared.faults.settings().latency_ms;
    let response = token_inner(&shared, &body, latency).await;
    shared
        .counters
        .record(TOKEN_METHOD, response.status().as_u16());
    response
}

async fn token_inner(shared: &Shared, body: &[u8], mut latency_ms: u64) -> Response {
    let fired = shared.faults.fire(&RequestFacts {
        method: TOKEN_METHOD,
        path: "/token",
        page: 1,
        has_page_token: false,
    });
    latency_ms += fired.iter().filter_map(|r| r.latency_ms).sum::<u64>();
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let mut forced: Option<Response> = None;
    for rule in &fired {
        let response = match rule.fault {
            FaultKind::RefuseDelegation => Some(oauth_response(&OAuthError::unauthorized_client())),
            FaultKind::RejectSubject => Some(oauth_response(&OAuthError::invalid_subject())),
            FaultKind::Error => rule.error().map(|err| error_response(&err)),
            _ => None,
        };
        if forced.is_none() {
            forced = response;
        }
    }
    if let Some(response) = forced {
        return response;
    }
    match grant(shared, body) {
        Ok((token, expires_in)) => json_response(
            200,
            json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"})
                .to_string()
                .into_bytes(),
        ),
        Err(err) => oauth_response(&err),
    }
}

fn grant(shared: &Shared, body: &[u8]) -> Result<(String, u64), OAuthError> {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let invalid_request = |what: &str| OAuthError {
        status: 400,
        error: "invalid_request",
        description: what.to_owned(),
    };
    match field("grant_type") {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {}
        Some(other) => {
            return Err(OAuthError {
                status: 400,
                error: "unsupported_grant_type",
                description: format!("Invalid grant_type: {other}"),
            })
        }
        None => return Err(invalid_request("Missing required parameter: grant_type")),
    }
    let assertion = field("assertion")
        .ok_or_else(|| invalid_request("Missing required parameter: assertion"))?;
    let grant = auth::verify_assertion(
        &shared.account,
        assertion,
        &shared.token_uri,
        Utc::now().timestamp(),
    )?;
    {
        let allowed = shared
            .dwd_scopes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !grant.scopes.iter().all(|scope| allowed.contains(scope)) {
            return Err(OAuthError::unauthorized_client());
        }
    }
    if let Some(subject) = &grant.subject {
        if shared.read().resolve_user(subject).is_none() {
            return Err(OAuthError::invalid_subject());
        }
    }
    Ok(shared
        .tokens
        .issue(grant.subject, grant.scopes, &shared.account.client_id))
}

// ----- the Directory API -----------------------------------------------------------------------

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(value) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A routed API request.
struct Call {
    method: &'static str,
    /// Decoded path keys (userKey, groupKey, memberKey, customerId, orgUnitPath).
    keys: Vec<String>,
}

fn route(http: &Method, segments: &[String]) -> Option<Call> {
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let keys = |indexes: &[usize]| indexes.iter().map(|&i| segments[i].clone()).collect();
    let (method, keys): (&'static str, Vec<String>) = match (http.as_str(), s.as_slice()) {
        ("GET", ["users"]) => ("users.list", vec![]),
        ("POST", ["users"]) => ("users.insert", vec![]),
        ("GET", ["users", _]) => ("users.get", keys(&[1])),
        ("PUT", ["users", _]) => ("users.update", keys(&[1])),
        ("PATCH", ["users", _]) => ("users.patch", keys(&[1])),
        ("DELETE", ["users", _]) => ("users.delete", keys(&[1])),
        ("POST", ["users", _, "undelete"]) => ("users.undelete", keys(&[1])),
        ("GET", ["groups"]) => ("groups.list", vec![]),
        ("POST", ["groups"]) => ("groups.insert", vec![]),
        ("GET", ["groups", _]) => ("groups.get", keys(&[1])),
        ("PUT", ["groups", _]) => ("groups.update", keys(&[1])),
        ("PATCH", ["groups", _]) => ("groups.patch", keys(&[1])),
        ("DELETE", ["groups", _]) => ("groups.delete", keys(&[1])),
        ("GET", ["groups", _, "members"]) => ("members.list", keys(&[1])),
        ("POST", ["groups", _, "members"]) => ("members.insert", keys(&[1])),
        ("GET", ["groups", _, "members", _]) => ("members.get", keys(&[1, 3])),
        ("PUT", ["groups", _, "members", _]) => ("members.update", keys(&[1, 3])),
        ("PATCH", ["groups", _, "members", _]) => ("members.patch", keys(&[1, 3])),
        ("DELETE", ["groups", _, "members", _]) => ("members.delete", keys(&[1, 3])),
        ("GET", ["groups", _, "hasMember", _]) => ("members.hasMember", keys(&[1, 3])),
        ("GET", ["customer", _, "orgunits"]) => ("orgunits.list", keys(&[1])),
        ("GET", ["customer", _, "orgunits", ..]) if s.len() > 3 => (
            "orgunits.get",
            vec![segments[1].clone(), segments[3..].join("/")],
        ),
        _ => return None,
    };
    Some(Call { method, keys })
}

/// Decrements the in-flight count when the request ends, however it ends.
struct InFlight<'a>(&'a Faults);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn api_entry(
    State(shared): State<Arc<Shared>>,
    http: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/admin/directory/v1/") else {
        shared.counters.record("unknown", 404);
        return error_response(&ApiError::new(
            404,
            "notFound",
            format!("Not Found: {path}"),
        ));
    };
    let segments: Vec<String> = rest.split('/').map(percent_decode).collect();
    let Some(call) = route(&http, &segments) else {
        shared.counters.record("unknown", 404);
        return error_response(&ApiError::new(
            404,
            "notFound",
            format!("Not Found: {path}"),
        ));
    };
    let decoded_path = format!("/admin/directory/v1/{}", segments.join("/"));
    let params = Params::parse(uri.query());
    let response = match pipeline(&shared, &call, &decoded_path, &params, &headers, &body).await {
        Ok(response) => response,
        Err(err) => error_response(&err),
    };
    shared
        .counters
        .record(call.method, response.status().as_u16());
    response
}

fn bearer(headers: &HeaderMap, params: &Params) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .or_else(|| params.get("access_token").map(str::to_owned))
}

async fn pipeline(
    shared: &Shared,
    call: &Call,
    path: &str,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let settings = shared.faults.settings();
    if settings.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(settings.latency_ms)).await;
    }
    let in_flight = shared.faults.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = InFlight(&shared.faults);
    if settings
        .max_concurrent
        .is_some_and(|max| in_flight > max as usize)
    {
        return Err(ApiError::rate_limit());
    }
    let token = bearer(headers, params).ok_or_else(ApiError::login_required)?;
    let grant = shared
        .tokens
        .check(&token)
        .ok_or_else(ApiError::invalid_credentials)?;
    let allowed = method_scopes(call.method);
    if !allowed.iter().any(|scope| grant.scopes.contains(*scope)) {
        return Err(ApiError::insufficient_scopes(call.method));
    }
    let subject = grant.subject.as_deref().unwrap_or("");
    if subject.is_empty() || !shared.read().is_admin(subject) {
        return Err(ApiError::forbidden());
    }
    if !shared
        .faults
        .take_quota(&format!("{}/{}", grant.client_id, subject.to_lowercase()))
    {
        return Err(ApiError::user_rate_limit());
    }
    let page_token = params.get("pageToken").filter(|t| !t.is_empty());
    let fired = shared.faults.fire(&RequestFacts {
        method: call.method,
        path,
        page: shared.page_tokens.page_of(page_token),
        has_page_token: page_token.is_some(),
    });
    let extra: u64 = fired.iter().filter_map(|rule| rule.latency_ms).sum();
    if extra > 0 {
        tokio::time::sleep(Duration::from_millis(extra)).await;
    }
    for rule in &fired {
        if rule.fault == FaultKind::DeleteGroup && call.method.starts_with("members.") {
            if let Some(group) = call.keys.first() {
                // Ignoring "already gone": the call below then reports the 404 itself.
                let _ = shared.write().delete_group(group);
            }
        }
    }
    if let Some(err) = fired.iter().find_map(FaultRule::error) {
        return Err(err);
    }
    let response = execute(shared, call, params, body)?;
    if fired.iter().any(|rule| rule.fault == FaultKind::Truncate) {
        return Ok(truncate(response).await);
    }
    Ok(response)
}

/// Cuts a response body in half, keeping the status: a reply the client cannot parse.
async fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        axum::body::Body::from(bytes.slice(..bytes.len() / 2)),
    )
}

fn execute(
    shared: &Shared,
    call: &Call,
    params: &Params,
    body: &[u8],
) -> Result<Response, ApiError> {
    let render = Render::from_params(params)?;
    let key = |i: usize| call.keys.get(i).map_or("", String::as_str);
    let now = Utc::now();
    let ctx = ListContext {
        params,
        tokens: &shared.page_tokens,
        render: &render,
        now: u64::try_from(now.timestamp()).unwrap_or(0),
    };
    let ok = |bytes: Vec<u8>| Ok(json_response(200, bytes));
    let no_content = || {
        let mut response = StatusCode::NO_CONTENT.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        Ok(response)
    };
    match call.method {
        "users.list" => ok(api::users_list(&shared.read(), &ctx)?),
        "users.get" => ok(api::users_get(&shared.read(), key(0), params, &render)?),
        "groups.list" => ok(api::groups_list(&shared.read(), &ctx)?),
        "groups.get" => ok(api::groups_get(&shared.read(), key(0), &render)?),
        "members.list" => ok(api::members_list(&shared.read(), key(0), &ctx)?),
        "members.get" => ok(api::members_get(&shared.read(), key(0), key(1), &render)?),
        "members.hasMember" => ok(api::has_member(&shared.read(), key(0), key(1), &render)?),
        "orgunits.list" => ok(api::orgunits_list(&shared.read(), key(0), params, &render)?),
        "orgunits.get" => ok(api::orgunits_get(&shared.read(), key(0), key(1), &render)?),
        "users.insert" => {
            let input = api::parse_body(body)?;
            let mut dir = shared.write();
            let id = dir.insert_user(&input, now)?;
            ok(api::user_reply(&dir, &id, &render)?)
        }
        "users.update" | "users.patch" => {
            let input = api::parse_body(body)?;
            let mut dir = shared.write();
            let id = dir.update_user(key(0), &input, now)?;
            ok(api::user_reply(&dir, &id, &render)?)
        }
        "users.delete" => {
            shared.write().delete_user(key(0), now)?;
            no_content()
        }
        "users.undelete" => {
            shared.write().undelete_user(key(0))?;
            no_content()
        }
        "groups.insert" => {
            let input = api::parse_body(body)?;
            let mut dir = shared.write();
            let id = dir.insert_group(&input)?;
            ok(api::groups_get(&dir, &id, &render)?)
        }
        "groups.update" | "groups.patch" => {
            let input = api::parse_body(body)?;
            let mut dir = shared.write();
            let id = dir.update_group(key(0), &input)?;
            ok(api::groups_get(&dir, &id, &render)?)
        }
        "groups.delete" => {
            shared.write().delete_group(key(0))?;
            no_content()
        }
        "members.insert" => {
            let input = api::parse_body(body)?;
            let mut dir = shared.write();
            let member: Id = dir.insert_member(key(0), &input)?;
            ok(api::members_get(&dir, key(0), &member, &render)?)
        }
        "members.update" | "members.patch" => {
            let input = api::parse_body(body)?;
            let mut dir = shared.write();
            let (group, member) = dir.update_member(key(0), key(1), &input)?;
            ok(api::members_get(&dir, &group, &member, &render)?)
        }
        "members.delete" => {
            shared.write().delete_member(key(0), key(1))?;
            no_content()
        }
        _ => Err(ApiError::new(404, "notFound", "Not Found")),
    }
}

// ----- /_emulator admin endpoints --------------------------------------------------------------

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn parse_admin<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|err| {
        Box::new(admin_error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {err}"),
        ))
    })
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Response {
    let dir = shared.read();
    axum::Json(json!({
        "stats": dir.stats(),
        "customer_id": dir.customer_id,
        "domain": dir.domain,
        "base_url": shared.base_url,
        "token_uri": shared.token_uri,
        "in_flight": shared.faults.in_flight.load(Ordering::Relaxed),
    }))
    .into_response()
}

async fn admin_key(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.key_json()).into_response()
}

async fn admin_counters(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.counters.snapshot()).into_response()
}

async fn admin_counters_reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.counters.reset();
    axum::Json(json!({"reset": true})).into_response()
}

async fn admin_faults_list(State(shared): State<Arc<Shared>>) -> Response {
    let rules: Vec<Value> = shared
        .faults
        .list()
        .into_iter()
        .map(|(rule, fired)| {
            let mut value = serde_json::to_value(rule).unwrap_or(Value::Null);
            value["fired"] = json!(fired);
            value
        })
        .collect();
    axum::Json(json!({ "rules": rules, "settings": shared.faults.settings() })).into_response()
}

async fn admin_faults_add(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let value: Value = match parse_admin(&body) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let items = match value {
        Value::Array(items) => items,
        single => vec![single],
    };
    let mut rules = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match serde_json::from_value::<FaultRule>(item) {
            Ok(rule) => match rule.validate() {
                Ok(()) => rules.push(rule),
                Err(problem) => {
                    return admin_error(StatusCode::BAD_REQUEST, format!("rule {index}: {problem}"))
                }
            },
            Err(err) => {
                return admin_error(StatusCode::BAD_REQUEST, format!("rule {index}: {err}"))
            }
        }
    }
    let mut names = Vec::new();
    for rule in rules {
        match shared.faults.add(rule) {
            Ok(name) => names.push(name),
            Err(problem) => return admin_error(StatusCode::BAD_REQUEST, problem),
        }
    }
    axum::Json(json!({ "names": names })).into_response()
}

async fn admin_faults_clear(State(shared): State<Arc<Shared>>) -> Response {
    shared.faults.clear();
    axum::Json(json!({"cleared": true})).into_response()
}

async fn admin_fault_remove(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Response {
    if shared.faults.remove(&name) {
        axum::Json(json!({"removed": name})).into_response()
    } else {
        admin_error(
            StatusCode::NOT_FOUND,
            format!("no fault rule named {name:?}"),
        )
    }
}

async fn admin_settings(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(settings_json(&shared)).into_response()
}

fn settings_json(shared: &Shared) -> Value {
    let mut value = serde_json::to_value(shared.faults.settings()).unwrap_or(Value::Null);
    value["token_ttl_secs"] = json!(shared.tokens.ttl().as_secs());
    value
}

async fn admin_settings_set(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut value: Value = match parse_admin(&body) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let ttl = value
        .as_object_mut()
        .and_then(|object| object.remove("token_ttl_secs"));
    let mut current = serde_json::to_value(shared.faults.settings()).unwrap_or(Value::Null);
    if let (Some(current), Some(changes)) = (current.as_object_mut(), value.as_object()) {
        for (key, change) in changes {
            current.insert(key.clone(), change.clone());
        }
    }
    let settings: Settings = match serde_json::from_value(current) {
        Ok(settings) => settings,
        Err(err) => return admin_error(StatusCode::BAD_REQUEST, format!("settings: {err}")),
    };
    if let Some(ttl) = ttl {
        match ttl.as_u64().filter(|s| *s > 0) {
            Some(seconds) => shared.tokens.set_ttl(Duration::from_secs(seconds)),
            None => {
                return admin_error(
                    StatusCode::BAD_REQUEST,
                    "settings: token_ttl_secs must be a positive number of seconds",
                )
            }
        }
    }
    shared.faults.set_settings(settings);
    shared.faults.reset_quota();
    axum::Json(settings_json(&shared)).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

async fn admin_token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: TokenRequest = match parse_admin(if body.is_empty() { b"{}" } else { &body }) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let scopes: BTreeSet<String> = match request.scopes {
        Some(scopes) => scopes
            .iter()
            .map(|s| s.strip_prefix(auth::SCOPE_PREFIX).unwrap_or(s).to_owned())
            .collect(),
        None => auth::ALL_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
    };
    let (token, expires_in) =
        shared
            .tokens
            .issue(request.subject, scopes, &shared.account.client_id);
    axum::Json(json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}))
        .into_response()
}

async fn admin_tokens_expire(State(shared): State<Arc<Shared>>) -> Response {
    shared.tokens.expire_all();
    axum::Json(json!({"expired": true})).into_response()
}

async fn admin_logins(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Logins {
        count: usize,
    }
    let request: Logins = match parse_admin(&body) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    let changed = shared.write().record_logins(request.count, Utc::now());
    axum::Json(json!({"users": changed})).into_response()
}
