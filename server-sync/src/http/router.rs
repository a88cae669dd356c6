//! The spec's SemanticRouterService over HTTP (Route, SelectModel,
//! GetRoutingStats). Delegates to `sona_core::router`; the model file is
//! given with `--router-model` (without one, Route answers 503).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router as Routes;
use serde::{Deserialize, Serialize};
use sona_core::router::{select_model, Route, Router};

use super::{decode, reply, ApiError, AppState, Authed};

/// A loaded router (optional) and its decision counters.
#[derive(Default)]
pub struct RouterService {
    pub router: Option<Router>,
    total: AtomicU64,
    fell_back: AtomicU64,
    per_route: [AtomicU64; 6],
}

impl RouterService {
    pub fn new(router: Option<Router>) -> Self {
        RouterService {
            router,
            ..Default::default()
        }
    }

    /// Count one decision.
    pub fn record(&self, d: &sona_core::router::RouteDecision) {
        self.total.fetch_add(1, Relaxed);
        if d.fell_back {
            self.fell_back.fetch_add(1, Relaxed);
        }
        self.per_route[d.route.index()].fetch_add(1, Relaxed);
    }

    pub fn stats(&self) -> RoutingStats {
        RoutingStats {
            model_loaded: self.router.is_some(),
            total: self.total.load(Relaxed),
            fell_back: self.fell_back.load(Relaxed),
            per_route: Route::ALL
                .iter()
                .map(|rt| {
                    (
                        rt.name().to_string(),
                        self.per_route[rt.index()].load(Relaxed),
                    )
                })
                .collect(),
        }
    }
}

pub fn router() -> Routes<AppState> {
    Routes::new()
        .route("/v1/router/route", post(route))
        .route("/v1/router/select-model", post(select))
        .route("/v1/router/stats", get(stats))
}

#[derive(Deserialize, Serialize, Default)]
pub struct RouteRequest {
    /// The query text (text models) …
    #[serde(default)]
    pub query: Option<String>,
    /// … or its embedding (embedding models).
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
}

async fn route(
    State(s): State<AppState>,
    Authed(_): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RouteRequest = decode(&headers, &body)?;
    let Some(r) = &s.router.router else {
        return Err(ApiError::Unavailable(
            "no router model loaded (start with --router-model)",
        ));
    };
    let decision = match (&req.query, &req.embedding) {
        (Some(q), None) => r.route_text(q),
        (None, Some(e)) => r.route_embedding(e),
        _ => {
            return Err(ApiError::Unprocessable(
                "give exactly one of query, embedding".into(),
            ))
        }
    }
    .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    s.router.record(&decision);
    Ok(reply(&headers, StatusCode::OK, &decision))
}

#[derive(Deserialize, Serialize)]
pub struct SelectModelRequest {
    pub route: String,
    pub complexity: f64,
    pub budget: f64,
}

async fn select(Authed(_): Authed, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let req: SelectModelRequest = decode(&headers, &body)?;
    let choice = select_model(&req.route, req.complexity, req.budget)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok(reply(&headers, StatusCode::OK, &choice))
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
pub struct RoutingStats {
    pub model_loaded: bool,
    pub total: u64,
    pub fell_back: u64,
    pub per_route: std::collections::BTreeMap<String, u64>,
}

async fn stats(State(s): State<AppState>, Authed(_): Authed, headers: HeaderMap) -> Response {
    reply(&headers, StatusCode::OK, &s.router.stats())
}
