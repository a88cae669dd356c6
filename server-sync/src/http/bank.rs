//! The spec's ReasoningBankService over HTTP (StorePattern,
//! FindSimilarPatterns, ApplyPatterns, RunMaintenance), per segment: requests
//! name a `segment` (`default` when absent); see [`crate::bank`] for the
//! banks, the global tier and the schedule. A user token stores patterns
//! owned by its user and searches its own patterns plus the aggregated ones
//! of the segment and the universal ones; an admin token stores unowned
//! patterns, searches everything in the segment and triggers maintenance or
//! aggregation. A segment's bank is saved to the store before the reply.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use sona_core::bank::{Candidate, MatchedPattern, PatternContext, ResultId};

use super::{decode, now_secs, reply, Admin, ApiError, AppState, Authed};
use crate::auth::{Claims, Role};
pub use crate::bank::{owner, BankServiceError, LEGACY_BANK_KEY as BANK_KEY};
use crate::bank::{segment_or_default, AggregateReport, Caller, MaintainReport};

/// User ids with this prefix get no tokens and no adapter routes.
pub const RESERVED_PREFIX: &str = "__sona__";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/bank/patterns", post(store_pattern))
        .route("/v1/bank/similar", post(find_similar))
        .route("/v1/bank/apply", post(apply))
        .route("/v1/admin/bank/maintenance", post(maintenance))
}

pub(crate) fn caller(c: &Claims) -> Caller {
    Caller {
        user: (c.role == Role::User).then(|| owner(&c.user_id)),
    }
}

impl From<BankServiceError> for ApiError {
    fn from(e: BankServiceError) -> Self {
        match e {
            BankServiceError::BadSegment(_)
            | BankServiceError::Bank(_)
            | BankServiceError::Invalid(_) => ApiError::Unprocessable(e.to_string()),
            BankServiceError::TooManySegments(_) => ApiError::Conflict(e.to_string()),
            BankServiceError::Store(e) => ApiError::Internal(e.to_string()),
            BankServiceError::Task(m) => ApiError::Internal(m),
        }
    }
}

#[derive(Deserialize, Serialize)]
pub struct StorePatternRequest {
    /// Segment (content segment / cohort); `default` when absent.
    #[serde(default)]
    pub segment: Option<String>,
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
    let segment = segment_or_default(req.segment.as_deref())?;
    let id = s
        .bank
        .store_pattern(
            &segment,
            caller(&c),
            req.query_embedding,
            req.successful_results,
            req.context,
            req.confidence,
            req.usage_count,
            now_secs(),
        )
        .await?;
    Ok(reply(
        &headers,
        StatusCode::OK,
        &serde_json::json!({ "id": id }),
    ))
}

#[derive(Deserialize, Serialize)]
pub struct SimilarRequest {
    /// Segment (content segment / cohort); `default` when absent.
    #[serde(default)]
    pub segment: Option<String>,
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
    s: &AppState,
    c: &Claims,
    req: &SimilarRequest,
) -> Result<crate::bank::Found, ApiError> {
    let segment = segment_or_default(req.segment.as_deref())?;
    Ok(s.bank
        .find(
            &segment,
            caller(c),
            &req.query_embedding,
            &req.context,
            req.limit,
            req.min_similarity,
        )
        .await?)
}

async fn find_similar(
    State(s): State<AppState>,
    Authed(c): Authed,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: SimilarRequest = decode(&headers, &body)?;
    let found = find(&s, &c, &req).await?;
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
    let found = find(&s, &c, &req.search).await?;
    let candidates: Vec<Candidate> = req
        .candidates
        .iter()
        .map(|c| Candidate {
            id: c.id,
            score: c.score,
        })
        .collect();
    let boosted = s.bank.apply(&candidates, &found.matches)?;
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

/// Which job the admin trigger runs.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceKind {
    /// The daily job: decay, prune, merge, compact (the default).
    #[default]
    Maintain,
    /// The weekly job: global (cross-segment and per-segment) aggregation.
    Aggregate,
    /// Both, maintenance first.
    All,
}

impl std::str::FromStr for MaintenanceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "maintain" => Ok(MaintenanceKind::Maintain),
            "aggregate" => Ok(MaintenanceKind::Aggregate),
            "all" => Ok(MaintenanceKind::All),
            other => Err(format!(
                "unknown maintenance kind {other:?} (maintain, aggregate or all)"
            )),
        }
    }
}

#[derive(Deserialize, Serialize, Debug, Default)]
pub struct MaintenanceRequest {
    #[serde(default)]
    pub kind: MaintenanceKind,
    /// Maintain only this segment (all when absent); aggregation always spans all.
    #[serde(default)]
    pub segment: Option<String>,
}

#[derive(Deserialize, Serialize, Debug, PartialEq)]
pub struct MaintenanceReply {
    pub maintained: Option<MaintainReport>,
    pub aggregated: Option<AggregateReport>,
}

/// Run the admin-triggered job(s) now.
pub(crate) async fn run_maintenance(
    s: &AppState,
    req: &MaintenanceRequest,
) -> Result<MaintenanceReply, crate::bank::BankServiceError> {
    let segment = match req.segment.as_deref() {
        None | Some("") => None,
        Some(seg) => {
            crate::bank::check_segment(seg)?;
            Some(seg)
        }
    };
    let now = now_secs();
    let maintained = match req.kind {
        MaintenanceKind::Maintain | MaintenanceKind::All => {
            Some(s.bank.maintain(segment, now).await?)
        }
        MaintenanceKind::Aggregate => None,
    };
    let aggregated = match req.kind {
        MaintenanceKind::Aggregate | MaintenanceKind::All => Some(s.bank.aggregate(now).await?),
        MaintenanceKind::Maintain => None,
    };
    Ok(MaintenanceReply {
        maintained,
        aggregated,
    })
}

/// RunMaintenance: `{kind?: "maintain"|"aggregate"|"all", segment?}`; an
/// empty body runs the daily maintenance of every segment.
async fn maintenance(
    State(s): State<AppState>,
    Admin(_): Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: MaintenanceRequest = if body.is_empty() {
        MaintenanceRequest::default()
    } else {
        decode(&headers, &body)?
    };
    let out = run_maintenance(&s, &req).await?;
    Ok(reply(&headers, StatusCode::OK, &out))
}
