//! gRPC (tonic) mirrors of the spec services, generated from
//! `proto/sona.proto`: SONAAdapterService, SemanticRouterService,
//! ReasoningBankService. Same tokens (metadata `authorization: Bearer …`),
//! same access rules and the same shared services as the HTTP API.

use tonic::{Request, Response, Status};

use crate::auth::{Claims, Role};
use crate::http::{now_secs, ApiError, AppState};

pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("sona.v1");
}

use pb::reasoning_bank_service_server::{ReasoningBankService, ReasoningBankServiceServer};
use pb::semantic_router_service_server::{SemanticRouterService, SemanticRouterServiceServer};
use pb::sona_adapter_service_server::{SonaAdapterService, SonaAdapterServiceServer};

/// One handle implementing the three services over the shared state.
#[derive(Clone)]
pub struct Grpc {
    pub state: AppState,
}

impl Grpc {
    pub fn adapter_server(&self) -> SonaAdapterServiceServer<Grpc> {
        SonaAdapterServiceServer::new(self.clone())
    }
    pub fn router_server(&self) -> SemanticRouterServiceServer<Grpc> {
        SemanticRouterServiceServer::new(self.clone())
    }
    pub fn bank_server(&self) -> ReasoningBankServiceServer<Grpc> {
        ReasoningBankServiceServer::new(self.clone())
    }

    fn claims<T>(&self, req: &Request<T>) -> Result<Claims, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("expected authorization: Bearer <token>"))?;
        self.state
            .auth
            .verify(token.trim(), now_secs())
            .map_err(|_| Status::unauthenticated("invalid or expired token"))
    }

    fn user<T>(&self, req: &Request<T>, user_id: &str) -> Result<Claims, Status> {
        let c = self.claims(req)?;
        if !c.may_access(user_id) || user_id.starts_with(crate::http::bank::RESERVED_PREFIX) {
            return Err(Status::permission_denied(
                "a token may use only its own user's adapter",
            ));
        }
        Ok(c)
    }
}

fn status(e: ApiError) -> Status {
    match e {
        ApiError::Unauthorized(m) => Status::unauthenticated(m),
        ApiError::Forbidden(m) => Status::permission_denied(m),
        ApiError::BadRequest(m) | ApiError::Unprocessable(m) => Status::invalid_argument(m),
        ApiError::Conflict(m) => Status::failed_precondition(m),
        ApiError::NotFound(m) => Status::not_found(m),
        ApiError::Unavailable(m) => Status::unavailable(m),
        ApiError::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            Status::internal("internal error")
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn stats_pb(s: sona_core::personalize::AdapterStats) -> pb::AdapterStats {
    pb::AdapterStats {
        user_id: s.user_id,
        d: s.d as u32,
        rank: s.rank as u32,
        interaction_count: s.interaction_count,
        adaptations: s.adaptations,
        pending_interactions: s.pending_interactions,
        update_norm: s.update_norm,
        global_update_norm: s.global_update_norm,
        global_version: s.global_version,
        next_lr: s.next_lr,
    }
}

#[tonic::async_trait]
impl SonaAdapterService for Grpc {
    async fn load_adapter(
        &self,
        req: Request<pb::UserRequest>,
    ) -> Result<Response<pb::AdapterStats>, Status> {
        let user = req.get_ref().user_id.clone();
        self.user(&req, &user)?;
        let s = &self.state;
        let a = s
            .adapters
            .load(s.store.as_ref(), &s.sync, &user)
            .await
            .map_err(status)?;
        Ok(Response::new(stats_pb(a.stats())))
    }

    async fn adapt_embeddings(
        &self,
        req: Request<pb::AdaptEmbeddingsRequest>,
    ) -> Result<Response<pb::AdaptEmbeddingsResponse>, Status> {
        let user = req.get_ref().user_id.clone();
        self.user(&req, &user)?;
        let s = &self.state;
        let a = s
            .adapters
            .load(s.store.as_ref(), &s.sync, &user)
            .await
            .map_err(status)?;
        let (embedding, magnitude) = a
            .adapt_embedding(&req.get_ref().embedding)
            .map_err(invalid)?;
        Ok(Response::new(pb::AdaptEmbeddingsResponse {
            embedding,
            magnitude,
        }))
    }

    async fn update_from_interaction(
        &self,
        req: Request<pb::InteractionRequest>,
    ) -> Result<Response<pb::UpdateOutcome>, Status> {
        let user = req.get_ref().user_id.clone();
        self.user(&req, &user)?;
        let r = req.into_inner();
        let kind = sona_core::personalize::InteractionKind::parse(&r.interaction_type, r.rating)
            .map_err(invalid)?;
        let interaction = sona_core::personalize::ViewerInteraction::new(kind, r.content_id);
        let s = &self.state;
        let _guard = s.adapters.stripe(&user).lock().await;
        let mut a = s
            .adapters
            .load(s.store.as_ref(), &s.sync, &user)
            .await
            .map_err(status)?;
        let now = now_secs();
        let mut rng = sona_core::rng::Rng::new(now as u64 ^ r.item.len() as u64);
        let out = a
            .update_from_interaction(
                &interaction,
                now,
                sona_core::personalize::Observation {
                    query: &r.query,
                    item: &r.item,
                },
                &r.negatives,
                &mut rng,
            )
            .map_err(invalid)?;
        s.store
            .put_adapter(&user, a.to_bytes())
            .await
            .map_err(|e| status(e.into()))?;
        Ok(Response::new(pb::UpdateOutcome {
            adapted: out.adapted,
            decision: format!("{:?}", out.decision),
            strength: out.strength,
            buffered: out.buffered as u32,
            pairs: out.pairs as u32,
        }))
    }

    async fn get_adapter_stats(
        &self,
        req: Request<pb::UserRequest>,
    ) -> Result<Response<pb::AdapterStats>, Status> {
        let user = req.get_ref().user_id.clone();
        self.user(&req, &user)?;
        let s = &self.state;
        if s.store
            .get_adapter(&user)
            .await
            .map_err(|e| status(e.into()))?
            .is_none()
        {
            return Err(Status::not_found("no adapter stored for this user"));
        }
        let a = s
            .adapters
            .load(s.store.as_ref(), &s.sync, &user)
            .await
            .map_err(status)?;
        Ok(Response::new(stats_pb(a.stats())))
    }
}

#[tonic::async_trait]
impl SemanticRouterService for Grpc {
    async fn route(
        &self,
        req: Request<pb::RouteRequest>,
    ) -> Result<Response<pb::RouteResponse>, Status> {
        self.claims(&req)?;
        let svc = &self.state.router;
        let Some(router) = &svc.router else {
            return Err(Status::unavailable(
                "no router model loaded (start with --router-model)",
            ));
        };
        let r = req.into_inner();
        let d = match (&r.query, r.embedding.is_empty()) {
            (Some(q), true) => router.route_text(q),
            (None, false) => router.route_embedding(&r.embedding),
            _ => {
                return Err(Status::invalid_argument(
                    "give exactly one of query, embedding",
                ))
            }
        }
        .map_err(invalid)?;
        svc.record(&d);
        Ok(Response::new(pb::RouteResponse {
            route: d.route.name().to_string(),
            confidence: d.confidence,
            scores: d.scores.to_vec(),
            fell_back: d.fell_back,
            original_route: d.original_route.name().to_string(),
        }))
    }

    async fn select_model(
        &self,
        req: Request<pb::SelectModelRequest>,
    ) -> Result<Response<pb::SelectModelResponse>, Status> {
        self.claims(&req)?;
        let r = req.into_inner();
        let c =
            sona_core::router::select_model(&r.route, r.complexity, r.budget).map_err(invalid)?;
        Ok(Response::new(pb::SelectModelResponse {
            model_id: c.model_id,
            estimated_cost: c.estimated_cost,
            estimated_latency_ms: c.estimated_latency_ms,
            expected_accuracy: c.expected_accuracy,
            estimated_tokens: c.estimated_tokens,
            required_accuracy: c.required_accuracy,
        }))
    }

    async fn get_routing_stats(
        &self,
        req: Request<pb::RoutingStatsRequest>,
    ) -> Result<Response<pb::RoutingStats>, Status> {
        self.claims(&req)?;
        let s = self.state.router.stats();
        Ok(Response::new(pb::RoutingStats {
            model_loaded: s.model_loaded,
            total: s.total,
            fell_back: s.fell_back,
            per_route: s.per_route.into_iter().collect(),
        }))
    }
}

fn find_args(f: &pb::FindSimilarRequest) -> Result<usize, Status> {
    let limit = if f.limit == 0 { 10 } else { f.limit as usize };
    if limit > 1000 {
        return Err(Status::invalid_argument("limit must be 1..=1000"));
    }
    Ok(limit)
}

fn bank_status(e: crate::bank::BankServiceError) -> Status {
    status(e.into())
}

fn segment(s: &str) -> Result<String, Status> {
    crate::bank::segment_or_default(Some(s)).map_err(bank_status)
}

fn matches_pb(found: &crate::bank::Found) -> Vec<pb::MatchedPattern> {
    found
        .matches
        .iter()
        .map(|m| pb::MatchedPattern {
            id: m.id,
            similarity: m.similarity,
            confidence: m.confidence,
            usage_count: m.usage_count,
            successful_results: m.successful_results.clone(),
            aggregated: m.aggregated,
        })
        .collect()
}

impl Grpc {
    async fn find(
        &self,
        c: &Claims,
        f: &pb::FindSimilarRequest,
    ) -> Result<crate::bank::Found, Status> {
        let limit = find_args(f)?;
        self.state
            .bank
            .find(
                &segment(&f.segment)?,
                crate::http::bank::caller(c),
                &f.query_embedding,
                &Default::default(),
                limit,
                f.min_similarity,
            )
            .await
            .map_err(bank_status)
    }
}

#[tonic::async_trait]
impl ReasoningBankService for Grpc {
    async fn store_pattern(
        &self,
        req: Request<pb::StorePatternRequest>,
    ) -> Result<Response<pb::StorePatternResponse>, Status> {
        let c = self.claims(&req)?;
        let r = req.into_inner();
        let id = self
            .state
            .bank
            .store_pattern(
                &segment(&r.segment)?,
                crate::http::bank::caller(&c),
                r.query_embedding,
                r.successful_results,
                Default::default(),
                r.confidence,
                r.usage_count,
                now_secs(),
            )
            .await
            .map_err(bank_status)?;
        Ok(Response::new(pb::StorePatternResponse { id }))
    }

    async fn find_similar_patterns(
        &self,
        req: Request<pb::FindSimilarRequest>,
    ) -> Result<Response<pb::FindSimilarResponse>, Status> {
        let c = self.claims(&req)?;
        let found = self.find(&c, req.get_ref()).await?;
        Ok(Response::new(pb::FindSimilarResponse {
            matches: matches_pb(&found),
            total_patterns_searched: found.total_patterns_searched as u64,
            used_index: found.used_index,
        }))
    }

    async fn apply_patterns(
        &self,
        req: Request<pb::ApplyPatternsRequest>,
    ) -> Result<Response<pb::ApplyPatternsResponse>, Status> {
        let c = self.claims(&req)?;
        let r = req.into_inner();
        let f = r.search.unwrap_or_default();
        let found = self.find(&c, &f).await?;
        let candidates: Vec<sona_core::bank::Candidate> = r
            .candidates
            .iter()
            .map(|c| sona_core::bank::Candidate {
                id: c.id,
                score: c.score,
            })
            .collect();
        let ranked = self
            .state
            .bank
            .apply(&candidates, &found.matches)
            .map_err(bank_status)?;
        Ok(Response::new(pb::ApplyPatternsResponse {
            ranked: ranked
                .into_iter()
                .map(|b| pb::BoostedCandidate {
                    id: b.id,
                    score: b.score,
                    original_score: b.original_score,
                    boost: b.boost,
                    pattern: b.pattern,
                    explanation: b.explanation,
                })
                .collect(),
        }))
    }

    async fn run_maintenance(
        &self,
        req: Request<pb::MaintenanceRequest>,
    ) -> Result<Response<pb::MaintenanceResponse>, Status> {
        let c = self.claims(&req)?;
        if c.role != Role::Admin {
            return Err(Status::permission_denied("admin token required"));
        }
        let r = req.into_inner();
        let kind: crate::http::bank::MaintenanceKind = r.kind.parse().map_err(invalid)?;
        let out = crate::http::bank::run_maintenance(
            &self.state,
            &crate::http::bank::MaintenanceRequest {
                kind,
                segment: (!r.segment.is_empty()).then_some(r.segment),
            },
        )
        .await
        .map_err(bank_status)?;
        let m = out.maintained.unwrap_or_default();
        let a = out.aggregated.as_ref();
        Ok(Response::new(pb::MaintenanceResponse {
            decayed: m.decayed as u32,
            pruned: m.pruned as u32,
            merged: m.merged as u32,
            compacted: m.compacted > 0,
            patterns: m.patterns as u64,
            segments: m.segments as u32,
            aggregated: a.is_some(),
            clusters: a.map_or(0, |a| a.clusters as u32),
            segment_patterns: a.map_or(0, |a| a.segment_patterns as u32),
            universal_patterns: a.map_or(0, |a| a.universal_patterns as u32),
        }))
    }
}
