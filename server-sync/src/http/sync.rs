//! Federated sync: upload an update, fetch the global adapter, read the config.
//!
//! `POST /v1/sync/updates` takes the device's `exportUpdate()` bytes (`SNAU`
//! envelope) as `application/octet-stream`, or a bare `AdapterUpdate` as
//! `application/msgpack` or `application/json`. `GET /v1/sync/global` returns
//! `SNAG` bytes for `apply_global` (header `x-sona-global-version`).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sona_core::personalize::AdapterUpdate;

use super::{content_type, decode, reply, ApiError, AppState, Authed};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sync/updates", post(upload))
        .route("/v1/sync/global", get(global))
        .route("/v1/sync/config", get(config))
}

async fn upload(
    State(s): State<AppState>,
    Authed(claims): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let (update, raw) = match content_type(&headers) {
        "application/octet-stream" | "application/x-sona-update" | "" => {
            let u = AdapterUpdate::from_bytes(&body)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            (u, Some(body))
        }
        _ => {
            let u: AdapterUpdate = decode(&headers, &body)?;
            u.validate()
                .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
            (u, None)
        }
    };
    if !claims.may_access(&update.user_id) {
        s.metrics
            .updates_rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::Forbidden("the update belongs to another user"));
    }
    let user = update.user_id.clone();
    let ack = s.sync.submit(&user, update, raw).await?;
    s.metrics.upload_latency(t0.elapsed().as_secs_f64());
    Ok(reply(&headers, StatusCode::OK, &ack))
}

async fn global(State(s): State<AppState>, Authed(_): Authed) -> Response {
    let p = s.sync.published();
    (
        [
            (CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                "x-sona-global-version".parse().unwrap(),
                p.state.version.to_string(),
            ),
        ],
        p.global_bytes.as_ref().clone(),
    )
        .into_response()
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
pub struct SyncConfig {
    pub d: usize,
    pub rank: usize,
    pub alpha: f32,
    pub global_version: u64,
    pub max_staleness: u64,
}

async fn config(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let c = &s.sync.cfg;
    reply(
        &headers,
        StatusCode::OK,
        &SyncConfig {
            d: c.d,
            rank: c.rank,
            alpha: c.alpha,
            global_version: s.sync.version(),
            max_staleness: c.max_staleness,
        },
    )
}
