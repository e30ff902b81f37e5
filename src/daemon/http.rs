//! The optional HTTP listener (`http_listen`): `/healthz` (200 only while the scheduler is
//! alive and no tenant is wedged: a run past its max run time, a task stopped by a panic), `/metrics` (the process's metrics registry in the Prometheus text format), and
//! whatever routes extensions merge in (the events API).
//!
//! Must not: run syncs or write to the store.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

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
    if !shared.alive() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "scheduler not running\n".to_owned(),
        );
    }
    let wedged = shared.wedged();
    if wedged.is_empty() {
        (StatusCode::OK, "ok\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", wedged.join("\n")),
        )
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            crate::telemetry::metrics::CONTENT_TYPE,
        )],
        shared.registry.render(),
    )
}
