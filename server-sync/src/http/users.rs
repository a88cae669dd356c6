//! Per-user adapter storage: `GET/PUT /v1/users/{user}/adapter` with the
//! device's `SNAD` bytes. A user token reaches only its own user (403 otherwise).

use std::sync::atomic::Ordering::Relaxed;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sona_core::codec;
use sona_core::personalize::format::{ADAPTER_FORMAT_VERSION, ADAPTER_MAGIC};

use super::{ApiError, AppState, Authed};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/users/{user}/adapter",
        get(get_adapter).put(put_adapter),
    )
}

async fn get_adapter(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    if !c.may_access(&user) || user.starts_with(super::bank::RESERVED_PREFIX) {
        return Err(ApiError::Forbidden(
            "a token may read only its own user's adapter",
        ));
    }
    s.metrics.adapter_reads.fetch_add(1, Relaxed);
    match s.store.get_adapter(&user).await? {
        Some(b) => Ok(([(CONTENT_TYPE, "application/octet-stream")], b).into_response()),
        None => Err(ApiError::NotFound("no adapter stored for this user")),
    }
}

async fn put_adapter(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(user): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    if !c.may_access(&user) || user.starts_with(super::bank::RESERVED_PREFIX) {
        return Err(ApiError::Forbidden(
            "a token may write only its own user's adapter",
        ));
    }
    // Envelope check (magic, version, length, CRC): corrupt bytes are not stored.
    codec::open("adapter", ADAPTER_MAGIC, ADAPTER_FORMAT_VERSION, &body)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    s.store.put_adapter(&user, body.to_vec()).await?;
    s.metrics.adapter_writes.fetch_add(1, Relaxed);
    Ok(StatusCode::NO_CONTENT)
}
