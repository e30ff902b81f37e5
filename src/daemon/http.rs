//! The optional HTTP listener (`http_listen`): `/healthz` (200 only while the scheduler is
//! alive), `/metrics` (Prometheus text format), and whatever routes extensions merge in (the
//! events API).
//!
//! Must not: run syncs or write to the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::tenant::lock;
use super::Shared;

/// The daemon's own routes, with `extra` merged in.
pub fn router(shared: Arc<Shared>, extra: Vec<Router>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    for routes in extra {
        router = router.merge(routes);
    }
    router
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "scheduler not running\n")
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let states: Vec<_> = lock(&shared.tenants)
        .values()
        .map(|handle| handle.snapshot())
        .collect();
    let last_seqs: BTreeMap<String, u64> = states
        .iter()
        .map(|s| {
            (
                s.tenant.clone(),
                *shared.commits.subscribe(&s.tenant).borrow(),
            )
        })
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut text = shared.metrics.render(&states, &last_seqs);
            for extension in shared.extensions.iter() {
                extension.render_metrics(&mut text);
            }
            text
        },
    )
}
