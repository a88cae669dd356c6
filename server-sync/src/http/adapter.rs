//! The spec's SONAAdapterService over HTTP (LoadAdapter, AdaptEmbeddings,
//! UpdateFromInteraction, GetAdapterStats): server-side personalization for
//! clients that cannot run the wasm package. Delegates to
//! `sona_core::personalize`; adapters live in the store.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sona_core::personalize::{
    load_adapter, Adapter, BaseProjection, GlobalAdapter, Observation, PersonalizeConfig,
    ViewerInteraction,
};
use sona_core::rng::Rng;

use super::{decode, now_secs, reply, ApiError, AppState, Authed};
use crate::store::Store;
use crate::sync::SyncService;

const STRIPES: usize = 64;

/// Loads, runs and saves per-user adapters; one lock stripe per user hash so
/// concurrent interactions of one user do not lose updates.
pub struct AdapterService {
    pub cfg: PersonalizeConfig,
    base: Arc<BaseProjection>,
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl AdapterService {
    pub fn new(cfg: PersonalizeConfig) -> Self {
        let base = Arc::new(BaseProjection::identity(cfg.d));
        AdapterService {
            cfg,
            base,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    pub(crate) fn stripe(&self, user: &str) -> &tokio::sync::Mutex<()> {
        let h = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        &self.stripes[(h % STRIPES as u64) as usize]
    }

    pub(crate) async fn load(
        &self,
        store: &dyn Store,
        sync: &SyncService,
        user: &str,
    ) -> Result<Adapter, ApiError> {
        let global = GlobalAdapter::from_bytes(&sync.published().global_bytes, &self.cfg)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let bytes = store.get_adapter(user).await?;
        load_adapter(
            bytes.as_deref(),
            user,
            &self.cfg,
            self.base.clone(),
            Arc::new(global),
        )
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/adapter/{user}/load", post(load))
        .route("/v1/adapter/{user}/adapt", post(adapt))
        .route("/v1/adapter/{user}/interactions", post(interaction))
        .route("/v1/adapter/{user}/stats", get(stats))
}

fn allow(c: &crate::auth::Claims, user: &str) -> Result<(), ApiError> {
    if c.may_access(user) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "a token may use only its own user's adapter",
        ))
    }
}

async fn load(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    allow(&c, &user)?;
    let a = s.adapters.load(s.store.as_ref(), &s.sync, &user).await?;
    Ok(reply(&headers, StatusCode::OK, &a.stats()))
}

async fn stats(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    allow(&c, &user)?;
    if s.store.get_adapter(&user).await?.is_none() {
        return Err(ApiError::NotFound("no adapter stored for this user"));
    }
    let a = s.adapters.load(s.store.as_ref(), &s.sync, &user).await?;
    Ok(reply(&headers, StatusCode::OK, &a.stats()))
}

#[derive(Deserialize, Serialize)]
pub struct AdaptRequest {
    pub embedding: Vec<f32>,
}

#[derive(Deserialize, Serialize)]
pub struct AdaptReply {
    pub embedding: Vec<f32>,
    pub magnitude: f32,
}

async fn adapt(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    allow(&c, &user)?;
    let req: AdaptRequest = decode(&headers, &body)?;
    let a = s.adapters.load(s.store.as_ref(), &s.sync, &user).await?;
    let (embedding, magnitude) = a
        .adapt_embedding(&req.embedding)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok(reply(
        &headers,
        StatusCode::OK,
        &AdaptReply {
            embedding,
            magnitude,
        },
    ))
}

#[derive(Deserialize, Serialize)]
pub struct InteractionRequest {
    pub interaction: ViewerInteraction,
    pub query: Vec<f32>,
    pub item: Vec<f32>,
    /// Flat n × d candidate items the viewer did not engage with.
    #[serde(default)]
    pub negatives: Vec<f32>,
}

async fn interaction(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    allow(&c, &user)?;
    let req: InteractionRequest = decode(&headers, &body)?;
    let _guard = s.adapters.stripe(&user).lock().await;
    let mut a = s.adapters.load(s.store.as_ref(), &s.sync, &user).await?;
    let now = now_secs();
    let mut rng = Rng::new(now as u64 ^ req.item.len() as u64);
    let out = a
        .update_from_interaction(
            &req.interaction,
            now,
            Observation {
                query: &req.query,
                item: &req.item,
            },
            &req.negatives,
            &mut rng,
        )
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    s.store.put_adapter(&user, a.to_bytes()).await?;
    Ok(reply(&headers, StatusCode::OK, &out))
}
