//! The events API, the pull side of delivery: `GET /v1/tenants/{tenant}/events?after=SEQ&limit=N&wait=SECONDS`
//! answers `{"tenant", "events": [...], "next_after", "last_seq"}` with the stored events
//! (exactly the JSON of `dirsync events`) in `seq` order. A consumer keeps `next_after` as its
//! cursor. With `wait`, an empty answer is held until an event is committed (woken by the
//! process's commit feed, with a poll for commits made by other processes) or the wait ends.
//!
//! Protected by the bearer token of `events_api_token_file` (the scheme is case-insensitive,
//! RFC 9110); without one the API is disabled and answers 404. Only tenants with a
//! configuration are served ([`ServedTenants`], kept by the daemon): a removed tenant's events
//! stay in the store (until `dirsync forget`) but are not answered. `after` above the largest
//! storable seq (2^63 − 1) and `limit=0` are refused with 400. The daemon merges this router
//! into its HTTP listener. Must not: write to the store, or read it other than through
//! `Store::run`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::POLL_INTERVAL;
use crate::config::{valid_tenant_id, Secret};
use crate::feed::CommitFeed;
use crate::store::{self, Store};

/// Events per answer unless `limit` says otherwise, and the most one answer holds.
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;
/// The largest `after`: seqs are stored as SQLite integers (i64).
pub const MAX_SEQ: u64 = i64::MAX as u64;
/// The longest `wait` honoured, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

struct ApiState {
    store: Store,
    token: Option<Secret>,
    commits: CommitFeed,
    served: ServedTenants,
}

/// The tenants the events API answers for: those the daemon runs with a configuration. Shared
/// with the daemon, which adds a tenant when it starts it and removes it when its file goes.
#[derive(Debug, Clone, Default)]
pub struct ServedTenants(Arc<Mutex<BTreeSet<String>>>);

impl ServedTenants {
    pub fn insert(&self, tenant: &str) {
        crate::mutex::lock(&self.0).insert(tenant.to_owned());
    }
    pub fn remove(&self, tenant: &str) {
        crate::mutex::lock(&self.0).remove(tenant);
    }
    pub fn contains(&self, tenant: &str) -> bool {
        crate::mutex::lock(&self.0).contains(tenant)
    }
}

/// The events API routes; merge into the daemon's HTTP router.
pub fn events_api_router(
    store: Store,
    token: Option<Secret>,
    commits: CommitFeed,
    served: ServedTenants,
) -> Router {
    Router::new()
        .route("/v1/tenants/{tenant}/events", get(list_events))
        .with_state(Arc::new(ApiState {
            store,
            token,
            commits,
            served,
        }))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u64>,
    #[serde(default)]
    wait: u64,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some((scheme, given)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
    else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    aws_lc_rs::constant_time::verify_slices_are_equal(
        given.trim().as_bytes(),
        token.expose().as_bytes(),
    )
    .is_ok()
}

async fn list_events(
    State(state): State<Arc<ApiState>>,
    Path(tenant): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = &state.token else {
        return error(
            StatusCode::NOT_FOUND,
            "the events API is disabled: set events_api_token_file in the global config",
        );
    };
    if !authorized(&headers, token) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <the token in events_api_token_file>)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let Ok(Query(query)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "after, limit and wait must be non-negative integers",
        );
    };
    if query.after > MAX_SEQ {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("after must be at most {MAX_SEQ}, the largest seq dirsync stores"),
        );
    }
    if query.limit == Some(0) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("limit must be between 1 and {MAX_LIMIT} (larger values are capped)"),
        );
    }
    if !valid_tenant_id(&tenant) || !state.served.contains(&tenant) {
        return error(
            StatusCode::NOT_FOUND,
            "no such tenant (only tenants with a config file are served)",
        );
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as usize;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(query.wait.min(MAX_WAIT_SECONDS));
    // Subscribe before reading so a commit between the read and the wait is not missed.
    let mut commits = state.commits.subscribe(&tenant);
    loop {
        let (id, after) = (tenant.clone(), query.after);
        let read = state
            .store
            .run(move |conn| {
                let events = store::pending_events(conn, &id, after, limit)?;
                let last_seq = store::last_seq(conn, &id)?;
                Ok((events, last_seq))
            })
            .await;
        let (events, last_seq) = match read {
            Ok(found) => found,
            Err(store::StoreError::Task(err)) => {
                tracing::warn!(tenant, "events API: {err}");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
            Err(err) => {
                tracing::warn!(tenant, "events API: {err}");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is unavailable; retry",
                );
            }
        };
        if !events.is_empty() || tokio::time::Instant::now() >= deadline {
            return answer(&tenant, query.after, &events, last_seq);
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            _ = commits.changed() => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
}

fn answer(tenant: &str, after: u64, events: &[store::PendingEvent], last_seq: u64) -> Response {
    let mut raw: Vec<&RawValue> = Vec::with_capacity(events.len());
    for event in events {
        match serde_json::from_str::<&RawValue>(&event.body) {
            Ok(value) => raw.push(value),
            // Skipping it would silently move the consumer's cursor past it.
            Err(err) => {
                tracing::error!(tenant, seq = event.seq, "stored event is not JSON: {err}");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!(
                        "stored event seq {} is corrupt; see the daemon's log",
                        event.seq
                    ),
                );
            }
        }
    }
    let next_after = events.last().map_or(after, |e| e.seq);
    axum::Json(serde_json::json!({
        "tenant": tenant,
        "events": raw,
        "next_after": next_after,
        "last_seq": last_seq,
    }))
    .into_response()
}
