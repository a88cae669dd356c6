//! `/healthz` and Prometheus `/metrics`.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "store": s.store.backend(),
        "global_version": s.sync.version(),
    }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(s.store.backend()),
    )
}
