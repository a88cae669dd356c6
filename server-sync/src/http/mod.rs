//! HTTP API (axum). Each resource module exposes `router()`; they are merged
//! here. Bodies are JSON or MessagePack by `Content-Type`; replies are JSON
//! unless the client sends `Accept: application/msgpack`.

pub mod adapter;
pub mod admin;
pub mod bank;
pub mod health;
pub mod router;
pub mod sync;
pub mod users;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{Auth, Claims, Role};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::sync::{SyncError, SyncService};

pub const MSGPACK: &str = "application/msgpack";

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub sync: Arc<SyncService>,
    pub auth: Arc<Auth>,
    pub metrics: Arc<Metrics>,
    pub adapters: Arc<adapter::AdapterService>,
    pub router: Arc<router::RouterService>,
    pub bank: Arc<crate::bank::BankService>,
}

/// The whole API, with body-size limit and response metrics.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(health::router())
        .merge(sync::router())
        .merge(users::router())
        .merge(admin::router())
        .merge(adapter::router())
        .merge(router::router())
        .merge(bank::router())
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    s.metrics.response(res.status().as_u16());
    res
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What the API tells clients; the cause is logged server-side.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized(&'static str),
    Forbidden(&'static str),
    BadRequest(String),
    Unprocessable(String),
    Conflict(String),
    NotFound(&'static str),
    Unavailable(&'static str),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m.to_string()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.to_string()),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m.to_string()),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m.to_string()),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_string(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        use sona_core::federated::Rejection;
        match e {
            SyncError::Undecodable(e) => ApiError::BadRequest(e.to_string()),
            SyncError::WrongUser { .. } => ApiError::Forbidden("the update belongs to another user"),
            SyncError::Rejected(Rejection::Stale { update, current, max }) => ApiError::Conflict(format!(
                "stale update: trained on global version {update}, current {current}, at most {max} behind; fetch the global adapter and retrain"
            )),
            SyncError::Rejected(Rejection::FromFuture { update, current }) => {
                ApiError::Conflict(format!("update claims global version {update}, server is at {current}"))
            }
            SyncError::Rejected(Rejection::Invalid(m)) => ApiError::Unprocessable(m),
            SyncError::Rejected(Rejection::Empty) => ApiError::Unprocessable("update has no trained samples".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// A verified bearer token.
pub struct Authed(pub Claims);

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(ApiError::Unauthorized(
                "expected Authorization: Bearer <token>",
            ))?;
        s.auth
            .verify(token.trim(), now_secs())
            .map(Authed)
            .map_err(|_| ApiError::Unauthorized("invalid or expired token"))
    }
}

/// An admin token.
pub struct Admin(pub Claims);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let Authed(c) = Authed::from_request_parts(parts, s).await?;
        if c.role != Role::Admin {
            return Err(ApiError::Forbidden("admin token required"));
        }
        Ok(Admin(c))
    }
}

pub fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .unwrap_or("")
}

/// Decode a JSON or MessagePack body by Content-Type.
pub fn decode<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    match content_type(headers) {
        MSGPACK | "application/x-msgpack" => rmp_serde::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("bad MessagePack body: {e}"))),
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("bad JSON body: {e}"))),
    }
}

/// Reply as MessagePack when the client accepts it, JSON otherwise.
pub fn reply<T: Serialize>(headers: &HeaderMap, status: StatusCode, v: &T) -> Response {
    let wants_msgpack = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(MSGPACK));
    if wants_msgpack {
        match rmp_serde::to_vec_named(v) {
            Ok(b) => (
                status,
                [(CONTENT_TYPE, HeaderValue::from_static(MSGPACK))],
                b,
            )
                .into_response(),
            Err(e) => ApiError::Internal(e.to_string()).into_response(),
        }
    } else {
        (status, Json(v)).into_response()
    }
}

#[cfg(test)]
mod tests;
