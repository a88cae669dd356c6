//! Admin: issue tokens, run an aggregation round now.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::{decode, now_secs, reply, Admin, ApiError, AppState};
use crate::auth::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/tokens", post(issue))
        .route("/v1/admin/round", post(round))
}

#[derive(Deserialize, Serialize, Debug)]
pub struct TokenRequest {
    pub user_id: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default = "default_ttl")]
    pub ttl_secs: i64,
}

fn default_ttl() -> i64 {
    30 * 24 * 3600
}

#[derive(Deserialize, Serialize, Debug)]
pub struct TokenReply {
    pub token: String,
    pub expires: i64,
}

async fn issue(
    State(s): State<AppState>,
    Admin(_): Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: TokenRequest = decode(&headers, &body)?;
    if req.user_id.starts_with(super::bank::RESERVED_PREFIX) {
        return Err(ApiError::Unprocessable(
            "user ids starting with __sona__ are reserved".into(),
        ));
    }
    if req.user_id.is_empty()
        || req.user_id.len() > 256
        || !(1..=366 * 24 * 3600).contains(&req.ttl_secs)
    {
        return Err(ApiError::Unprocessable(
            "user_id must be 1..=256 bytes and ttl_secs 1..=1 year".into(),
        ));
    }
    let expires = now_secs() + req.ttl_secs;
    let role = if req.admin { Role::Admin } else { Role::User };
    let token = s.auth.issue(role, &req.user_id, expires);
    Ok(reply(
        &headers,
        StatusCode::OK,
        &TokenReply { token, expires },
    ))
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
pub struct RoundReply {
    pub published: bool,
    pub version: u64,
    pub accepted: usize,
    pub rejected: usize,
    pub clipped: usize,
    pub refactor_rel_error: f64,
}

async fn round(
    State(s): State<AppState>,
    Admin(_): Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let r = s.sync.run_round().await?;
    let out = match r {
        Some(r) => RoundReply {
            published: true,
            version: r.version,
            accepted: r.accepted,
            rejected: r.rejected.len(),
            clipped: r.clipped,
            refactor_rel_error: r.refactor_rel_error,
        },
        None => RoundReply {
            published: false,
            version: s.sync.version(),
            accepted: 0,
            rejected: 0,
            clipped: 0,
            refactor_rel_error: 0.0,
        },
    };
    Ok(reply(&headers, StatusCode::OK, &out))
}
