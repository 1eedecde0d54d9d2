//! The HTTP side: `/metrics` (Prometheus), `/healthz` (the process answers)
//! and `/readyz` (Redis answers PING within the timeout).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::engine::Engine;
use crate::metrics::Metrics;

#[derive(Clone)]
struct Shared {
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

pub fn router(engine: Arc<Engine>, metrics: Arc<Metrics>, timeout: Duration) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Shared {
            engine,
            metrics,
            timeout,
        })
}

async fn metrics_text(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn ready(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(shared.timeout, shared.engine.ready()).await {
        Ok(true) => (StatusCode::OK, "ready: redis answers\n"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: redis does not answer\n",
        ),
    }
}
