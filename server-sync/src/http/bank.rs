//! The spec's ReasoningBankService over HTTP (StorePattern,
//! FindSimilarPatterns, ApplyPatterns, RunMaintenance): one shared
//! `sona_core::bank::ReasoningBank`. A user token stores patterns owned by
//! its user and searches in that user's scope (own patterns plus aggregated
//! segment and universal ones); an admin token stores unowned patterns,
//! searches everything and runs maintenance. The bank is saved to the store
//! after every change, before the reply.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use sona_core::bank::{
    BankConfig, Candidate, MatchedPattern, NewPattern, PatternContext, ReasoningBank, ResultId,
    Scope,
};
use tokio::sync::Mutex;

use super::{decode, now_secs, reply, Admin, ApiError, AppState, Authed};
use crate::auth::{Claims, Role};
use crate::store::{Store, StoreError};

/// Where the bank's bytes live in the store's adapter table. User ids with
/// the reserved prefix [`RESERVED_PREFIX`] get no tokens and no adapter routes.
pub const BANK_KEY: &str = "__sona__reasoning_bank";
pub const RESERVED_PREFIX: &str = "__sona__";

pub struct BankService {
    pub(crate) bank: Mutex<ReasoningBank>,
}

/// A user id as the bank's numeric owner (FNV-1a 64).
pub fn owner(user_id: &str) -> u64 {
    user_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl BankService {
    /// Load the saved bank, or start an empty one of dimension `dim`.
    pub async fn open(store: &dyn Store, dim: usize) -> Result<Self, StoreError> {
        let bank = match store.get_adapter(BANK_KEY).await? {
            Some(b) => {
                ReasoningBank::from_bytes(&b).map_err(|e| StoreError::Other(e.to_string()))?
            }
            None => ReasoningBank::new(BankConfig::with_dim(dim))
                .map_err(|e| StoreError::Other(e.to_string()))?,
        };
        Ok(BankService {
            bank: Mutex::new(bank),
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/bank/patterns", post(store_pattern))
        .route("/v1/bank/similar", post(find_similar))
        .route("/v1/bank/apply", post(apply))
        .route("/v1/admin/bank/maintenance", post(maintenance))
}

pub(crate) fn scope(c: &Claims) -> Scope {
    match c.role {
        Role::Admin => Scope::All,
        Role::User => Scope::User {
            user: owner(&c.user_id),
            segment: None,
        },
    }
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unprocessable(e.to_string())
}

pub(crate) async fn save(s: &AppState, bank: &ReasoningBank) -> Result<(), ApiError> {
    s.store.put_adapter(BANK_KEY, bank.to_bytes()).await?;
    Ok(())
}

#[derive(Deserialize, Serialize)]
pub struct StorePatternRequest {
    pub query_embedding: Vec<f32>,
    pub successful_results: Vec<ResultId>,
    #[serde(default)]
    pub context: PatternContext,
    pub confidence: f32,
    #[serde(default)]
    pub usage_count: u32,
}

async fn store_pattern(
    State(s): State<AppState>,
    Authed(c): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: StorePatternRequest = decode(&headers, &body)?;
    let user = (c.role == Role::User).then(|| owner(&c.user_id));
    let mut bank = s.bank.bank.lock().await;
    let id = bank
        .store_pattern(
            NewPattern {
                query_embedding: req.query_embedding,
                successful_results: req.successful_results,
                user,
                segment: None,
                context: req.context,
                confidence: req.confidence,
                usage_count: req.usage_count,
            },
            now_secs(),
        )
        .map_err(bad)?;
    save(&s, &bank).await?;
    Ok(reply(
        &headers,
        StatusCode::OK,
        &serde_json::json!({ "id": id }),
    ))
}

#[derive(Deserialize, Serialize)]
pub struct SimilarRequest {
    pub query_embedding: Vec<f32>,
    #[serde(default)]
    pub context: PatternContext,
    #[serde(default = "default_limit")]
    pub limit: usize,
    #[serde(default)]
    pub min_similarity: f32,
}

fn default_limit() -> usize {
    10
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
pub struct MatchedPatternOut {
    pub id: u64,
    pub similarity: f32,
    pub confidence: f32,
    pub usage_count: u32,
    pub successful_results: Vec<ResultId>,
    pub aggregated: bool,
}

impl From<&MatchedPattern> for MatchedPatternOut {
    fn from(m: &MatchedPattern) -> Self {
        MatchedPatternOut {
            id: m.id,
            similarity: m.similarity,
            confidence: m.confidence,
            usage_count: m.usage_count,
            successful_results: m.successful_results.clone(),
            aggregated: m.aggregated,
        }
    }
}

#[derive(Deserialize, Serialize, Debug)]
pub struct SimilarReply {
    pub matches: Vec<MatchedPatternOut>,
    pub total_patterns_searched: usize,
    pub used_index: bool,
}

async fn find(
    bank: &ReasoningBank,
    c: &Claims,
    req: &SimilarRequest,
) -> Result<sona_core::bank::SimilarPatterns, ApiError> {
    if req.limit == 0 || req.limit > 1000 {
        return Err(ApiError::Unprocessable("limit must be 1..=1000".into()));
    }
    bank.find_similar_scoped(
        &req.query_embedding,
        &req.context,
        req.limit,
        req.min_similarity,
        scope(c),
    )
    .map_err(bad)
}

async fn find_similar(
    State(s): State<AppState>,
    Authed(c): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SimilarRequest = decode(&headers, &body)?;
    let bank = s.bank.bank.lock().await;
    let found = find(&bank, &c, &req).await?;
    let out = SimilarReply {
        matches: found.matches.iter().map(MatchedPatternOut::from).collect(),
        total_patterns_searched: found.total_patterns_searched,
        used_index: found.used_index,
    };
    Ok(reply(&headers, StatusCode::OK, &out))
}

#[derive(Deserialize, Serialize)]
pub struct CandidateIn {
    pub id: ResultId,
    pub score: f32,
}

#[derive(Deserialize, Serialize)]
pub struct ApplyRequest {
    #[serde(flatten)]
    pub search: SimilarRequest,
    pub candidates: Vec<CandidateIn>,
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
pub struct BoostedOut {
    pub id: ResultId,
    pub score: f32,
    pub original_score: f32,
    pub boost: f32,
    pub pattern: Option<u64>,
    pub explanation: Option<String>,
}

/// Find the caller's matching patterns, then re-rank the candidates with them.
async fn apply(
    State(s): State<AppState>,
    Authed(c): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ApplyRequest = decode(&headers, &body)?;
    let bank = s.bank.bank.lock().await;
    let found = find(&bank, &c, &req.search).await?;
    let candidates: Vec<Candidate> = req
        .candidates
        .iter()
        .map(|c| Candidate {
            id: c.id,
            score: c.score,
        })
        .collect();
    let boosted = bank
        .apply_patterns(&candidates, &found.matches)
        .map_err(bad)?;
    let out: Vec<BoostedOut> = boosted
        .into_iter()
        .map(|b| BoostedOut {
            id: b.id,
            score: b.score,
            original_score: b.original_score,
            boost: b.boost,
            pattern: b.pattern,
            explanation: b.explanation,
        })
        .collect();
    Ok(reply(&headers, StatusCode::OK, &out))
}

#[derive(Deserialize, Serialize, Debug)]
pub struct MaintenanceReply {
    pub decayed: usize,
    pub pruned: usize,
    pub merged: usize,
    pub compacted: bool,
    pub patterns: usize,
}

async fn maintenance(
    State(s): State<AppState>,
    Admin(_): Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut bank = s.bank.bank.lock().await;
    let r = bank.maintain(now_secs());
    save(&s, &bank).await?;
    let out = MaintenanceReply {
        decayed: r.decayed.len(),
        pruned: r.pruned.len(),
        merged: r.merged.len(),
        compacted: r.compacted,
        patterns: bank.len(),
    };
    Ok(reply(&headers, StatusCode::OK, &out))
}

/// Shared handle type for AppState.
pub type SharedBank = Arc<BankService>;
