//! The HTTP side of the receiver: `/scim/v2/{tenant}/…` on the daemon's listener. Every
//! request is authenticated first (the tenant's bearer token, compared in constant time; an
//! unknown tenant gets the same 401 as a wrong token), its body bounded (`413`) and parsed
//! (`400` for malformed or absurdly nested JSON), before anything reads or writes the store.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};

use super::discovery;
use super::read::{self, ListQuery};
use super::resource::{self, endpoint_of, Projection};
use super::write::{WriteOp, Written};
use super::{PushTenant, Receiver, WriteRefusal};
use crate::scim_protocol::{ScimError, ScimType};
use crate::store::now_ms;
use crate::store::push::{NewPushRequest, ScimKind};

pub const SCIM_JSON: &str = "application/scim+json";

/// Bodies kept in the request log are cut at this size.
const LOGGED_BODY_BYTES: usize = 16 * 1024;

pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route("/scim/v2/{tenant}", any(handle_base))
        .route("/scim/v2/{tenant}/{*rest}", any(handle))
        .with_state(receiver)
}

async fn handle_base(
    State(receiver): State<Arc<Receiver>>,
    Path(tenant): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(receiver, tenant, String::new(), method, uri, headers, body).await
}

async fn handle(
    State(receiver): State<Arc<Receiver>>,
    Path((tenant, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    serve(receiver, tenant, rest, method, uri, headers, body).await
}

/// The resource a path names.
enum Target {
    ServiceProviderConfig,
    ResourceTypes(Option<String>),
    Schemas(Option<String>),
    Collection(ScimKind),
    Resource(ScimKind, String),
    /// `/.search` at the root: a query across resource types (RFC 7644 §3.4.3).
    RootSearch,
}

fn target_of(rest: &str) -> Option<Target> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let kind = |name: &str| {
        if name.eq_ignore_ascii_case("Users") {
            Some(ScimKind::User)
        } else if name.eq_ignore_ascii_case("Groups") {
            Some(ScimKind::Group)
        } else {
            None
        }
    };
    match segments.as_slice() {
        [name] if name.eq_ignore_ascii_case("ServiceProviderConfig") => {
            Some(Target::ServiceProviderConfig)
        }
        [name] if name.eq_ignore_ascii_case("ResourceTypes") => Some(Target::ResourceTypes(None)),
        [name, id] if name.eq_ignore_ascii_case("ResourceTypes") => {
            Some(Target::ResourceTypes(Some((*id).to_owned())))
        }
        [name] if name.eq_ignore_ascii_case("Schemas") => Some(Target::Schemas(None)),
        [name, id] if name.eq_ignore_ascii_case("Schemas") => {
            Some(Target::Schemas(Some((*id).to_owned())))
        }
        [".search"] => Some(Target::RootSearch),
        [name] => kind(name).map(Target::Collection),
        [name, id] => kind(name).map(|kind| Target::Resource(kind, (*id).to_owned())),
        _ => None,
    }
}

/// One answer, and what the request log keeps of it.
struct Answer {
    status: u16,
    body: Option<Value>,
    location: Option<String>,
    retry_after: Option<u64>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            location: None,
            retry_after: None,
        }
    }

    fn error(error: &ScimError) -> Self {
        Self::json(error.status, error.body())
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            Some(body) => (
                status,
                [(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))],
                body.to_string(),
            )
                .into_response(),
            None => status.into_response(),
        };
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == 401 {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"dirsync\""),
            );
        }
        response
    }
}

fn unauthorized() -> Answer {
    Answer::error(&ScimError {
        status: 401,
        scim_type: None,
        detail: "authentication failed: send the tenant's token as Authorization: Bearer <token>"
            .into(),
    })
}

/// Compares the request's bearer token with the tenant's in constant time.
fn authorized(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or("");
    // An unknown tenant compares against a token of its own so it costs the same time.
    const NONE: &str = "dirsync-no-such-tenant-token-000000000000";
    let expected_or_dummy = expected.unwrap_or(NONE);
    let equal = aws_lc_rs::constant_time::verify_slices_are_equal(
        given.as_bytes(),
        expected_or_dummy.as_bytes(),
    )
    .is_ok();
    equal && expected.is_some() && !given.is_empty()
}

fn base_url(headers: &HeaderMap, tenant: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .filter(|scheme| matches!(*scheme, "http" | "https"))
        .unwrap_or("http");
    format!("{scheme}://{host}/scim/v2/{tenant}")
}

/// Query parameters, names matched case-insensitively.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(uri: &Uri) -> Self {
        Self(
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

async fn serve(
    receiver: Arc<Receiver>,
    tenant_id: String,
    rest: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = Instant::now();
    let tenant = receiver.tenant(&tenant_id);
    let is_authorized = authorized(&headers, tenant.as_ref().map(|t| t.push.token.expose()));
    let path_and_query = match uri.query() {
        Some(query) => format!("/{rest}?{query}"),
        None => format!("/{rest}"),
    };
    let mut log = NewPushRequest {
        tenant: tenant_id.clone(),
        at_ms: now_ms(),
        method: method.to_string(),
        path: path_and_query,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(200).collect()),
        ..NewPushRequest::default()
    };
    let (Some(tenant), true) = (tenant, is_authorized) else {
        // Known tenants log the refusal (an IdP with a wrong token shows up in triage).
        if receiver.tenant(&tenant_id).is_some() {
            log.status = 401;
            log.detail = Some("missing or wrong bearer token".into());
            log.latency_us = received.elapsed().as_micros() as i64;
            receiver.log_request(log);
        }
        return unauthorized().into_response();
    };
    let answer = answer(
        &receiver, &tenant, &tenant_id, &rest, &method, &uri, &headers, body, &mut log, received,
    )
    .await;
    if let Some(log) = answer.1 {
        receiver.log_request(log);
    }
    answer.0.into_response()
}

/// The answer, and the log line to write for it when the writer did not log it.
#[allow(clippy::too_many_arguments)]
async fn answer(
    receiver: &Receiver,
    tenant: &PushTenant,
    tenant_id: &str,
    rest: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    log: &mut NewPushRequest,
    received: Instant,
) -> (Answer, Option<NewPushRequest>) {
    let finish = |answer: Answer, log: &mut NewPushRequest| {
        log.status = answer.status;
        log.latency_us = received.elapsed().as_micros() as i64;
        if answer.status >= 400 {
            log.detail = answer
                .body
                .as_ref()
                .and_then(|body| body["detail"].as_str())
                .map(str::to_owned);
        }
        let line = std::mem::take(log);
        (answer, Some(line))
    };
    let base = base_url(headers, tenant_id);
    let Some(target) = target_of(rest) else {
        return finish(
            Answer::error(&ScimError::not_found(format!(
                "no such endpoint: /scim/v2/{tenant_id}/{rest} (see /scim/v2/{tenant_id}/ResourceTypes)"
            ))),
            log,
        );
    };
    let bytes = match read_body(body, tenant.push.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(answer) => return finish(answer, log),
    };
    let params = Params::of(uri);
    match (method.clone(), target) {
        (Method::GET, Target::ServiceProviderConfig) => finish(
            Answer::json(200, discovery::service_provider_config(&base)),
            log,
        ),
        (Method::GET, Target::ResourceTypes(None)) => finish(
            Answer::json(200, list_of(discovery::resource_types(&base))),
            log,
        ),
        (Method::GET, Target::ResourceTypes(Some(id))) => {
            let found = discovery::resource_types(&base).into_iter().find(|t| {
                t["id"]
                    .as_str()
                    .is_some_and(|known| known.eq_ignore_ascii_case(&id))
            });
            finish(found_or_404(found, "ResourceType", &id), log)
        }
        (Method::GET, Target::Schemas(None)) => {
            finish(Answer::json(200, list_of(discovery::schemas(&base))), log)
        }
        (Method::GET, Target::Schemas(Some(id))) => finish(
            found_or_404(discovery::schema(&base, &id), "Schema", &id),
            log,
        ),
        (Method::GET, Target::Collection(kind)) => {
            let query =
                Projection::parse(params.get("attributes"), params.get("excludedAttributes"))
                    .and_then(|projection| {
                        ListQuery::parse(
                            params.get("filter"),
                            params.get("startIndex"),
                            params.get("count"),
                            projection,
                        )
                    });
            let query = match query {
                Ok(query) => query,
                Err(error) => return finish(Answer::error(&error), log),
            };
            let tenant_id = tenant_id.to_owned();
            let result = receiver
                .store
                .run(move |conn| read::list(conn, &tenant_id, kind, &query, &base))
                .await;
            finish(read_answer(result.map(Ok)), log)
        }
        (Method::GET, Target::Resource(kind, id)) => {
            let projection =
                match Projection::parse(params.get("attributes"), params.get("excludedAttributes"))
                {
                    Ok(projection) => projection,
                    Err(error) => return finish(Answer::error(&error), log),
                };
            log.resource_kind = Some(kind);
            log.resource_id = Some(id.clone());
            let tenant_id = tenant_id.to_owned();
            let result = receiver
                .store
                .run(move |conn| read::get(conn, &tenant_id, kind, &id, &base, &projection))
                .await;
            finish(read_answer(result), log)
        }
        // RFC 7644 §3.12: 501 for an operation the service provider does not support (a 404
        // would say the tenant's base URL is wrong).
        (Method::POST, Target::RootSearch) => finish(
            Answer::error(&ScimError {
                status: 501,
                scim_type: None,
                detail: format!(
                    "searching several resource types at once (POST /scim/v2/{tenant_id}/.search) is not supported: query GET /Users?filter=… or GET /Groups?filter=…"
                ),
            }),
            log,
        ),
        (method @ (Method::POST | Method::PUT | Method::PATCH), target) => {
            let make: Box<dyn FnOnce(Value) -> WriteOp + Send> = match (method, target) {
                (Method::POST, Target::Collection(kind)) => {
                    Box::new(move |body| WriteOp::Create { kind, body })
                }
                (Method::PUT, Target::Resource(kind, id)) => {
                    Box::new(move |body| WriteOp::Replace { kind, id, body })
                }
                (Method::PATCH, Target::Resource(kind, id)) => {
                    Box::new(move |body| WriteOp::Patch { kind, id, body })
                }
                (method, _) => return finish(not_allowed(&method, tenant_id, rest), log),
            };
            let body = match parse_json(&bytes) {
                Ok(body) => body,
                Err(error) => return finish(Answer::error(&error), log),
            };
            log.body = Some(logged_body(&body));
            write(receiver, tenant, make(body), log, received, &base).await
        }
        (Method::DELETE, Target::Resource(kind, id)) => {
            write(
                receiver,
                tenant,
                WriteOp::Delete { kind, id },
                log,
                received,
                &base,
            )
            .await
        }
        (method, _) => finish(not_allowed(&method, tenant_id, rest), log),
    }
}

async fn write(
    receiver: &Receiver,
    tenant: &PushTenant,
    op: WriteOp,
    log: &mut NewPushRequest,
    received: Instant,
    base: &str,
) -> (Answer, Option<NewPushRequest>) {
    let line = std::mem::take(log);
    match receiver.write(tenant, op, line, received).await {
        Ok(written) => (answer_of(written, base), None),
        Err(WriteRefusal::Scim(error)) => (Answer::error(&error), None),
        Err(WriteRefusal::QueueFull(mut line)) => {
            let answer = Answer {
                retry_after: Some(1),
                ..Answer::error(&ScimError {
                    status: 429,
                    scim_type: None,
                    detail: format!(
                        "too many writes waiting for this tenant (max_queued_writes = {}): retry after a second",
                        tenant.push.max_queued_writes
                    ),
                })
            };
            line.status = 429;
            line.detail = Some("queue full".into());
            line.latency_us = received.elapsed().as_micros() as i64;
            (answer, Some(line))
        }
        Err(WriteRefusal::Stopping(mut line)) => {
            line.status = 503;
            line.detail = Some("the tenant's writer stopped".into());
            line.latency_us = received.elapsed().as_micros() as i64;
            (restarting(), Some(line))
        }
        Err(WriteRefusal::Unanswered) => (restarting(), None),
    }
}

fn not_allowed(method: &Method, tenant_id: &str, rest: &str) -> Answer {
    Answer::error(&ScimError {
        status: 405,
        scim_type: None,
        detail: format!("{method} is not supported on /scim/v2/{tenant_id}/{rest}"),
    })
}

fn restarting() -> Answer {
    Answer {
        retry_after: Some(5),
        ..Answer::error(&ScimError {
            status: 503,
            scim_type: None,
            detail: "dirsync is restarting or reloading this tenant: retry shortly".into(),
        })
    }
}

fn answer_of(written: Written, base: &str) -> Answer {
    match written.row {
        Some(row) => {
            let location = format!("{base}/{}/{}", endpoint_of(row.kind), row.id);
            let body = resource::render(&row, written.members.as_deref(), base);
            Answer {
                status: written.status,
                body: Some(Value::Object(body)),
                location: Some(location),
                retry_after: None,
            }
        }
        None => Answer {
            status: written.status,
            body: None,
            location: None,
            retry_after: None,
        },
    }
}

fn read_answer(result: Result<Result<Value, ScimError>, crate::store::StoreError>) -> Answer {
    match result {
        Ok(Ok(body)) => Answer::json(200, body),
        Ok(Err(error)) => Answer::error(&error),
        Err(err) => Answer::error(&ScimError::internal(format!(
            "cannot read the store: {err}"
        ))),
    }
}

fn found_or_404(found: Option<Value>, what: &str, id: &str) -> Answer {
    match found {
        Some(body) => Answer::json(200, body),
        None => Answer::error(&ScimError::not_found(format!("no {what} {id:?}"))),
    }
}

fn list_of(resources: Vec<Value>) -> Value {
    let total = resources.len();
    json!({
        "schemas": [read::LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": 1,
        "itemsPerPage": total,
        "Resources": Value::Array(resources),
    })
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Answer> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(_) => Err(Answer::error(&ScimError {
            status: 413,
            scim_type: None,
            detail: format!("the request body is over {limit} bytes (max_body_bytes)"),
        })),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(bytes).map_err(|err| {
        ScimError::bad_request(
            ScimType::InvalidSyntax,
            format!("the body is not valid JSON: {err}"),
        )
    })
}

fn logged_body(body: &Value) -> String {
    let mut text = resource::redacted(body).to_string();
    if text.len() > LOGGED_BODY_BYTES {
        let mut cut = LOGGED_BODY_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
