//! The gRPC services over a real socket with the generated clients: auth
//! (unauthenticated / permission denied) and one call per RPC checked against
//! sona-core.

mod common;

use common::*;
use sona_sync::auth::Role;
use sona_sync::grpc::pb;
use tonic::{Code, Request};

fn with<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_services_delegate_to_core_and_enforce_tokens() {
    let dir = std::env::temp_dir().join(unique("grpc"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = sona_sync::config::ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        grpc_listen: None,
        store_url: format!("sqlite://{}", dir.join("g.db").display()),
        redis_url: None,
        table_prefix: String::new(),
        token_secret: Some(SECRET.into()),
        max_body_bytes: 1 << 20,
        round_interval_secs: 0,
        round_max_users: 64,
        bank_maintain_interval_secs: 0,
        bank_aggregate_interval_secs: 0,
        bank_max_segments: 8,
        router_model: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../wasm/tests/fixtures/router.bin"),
        ),
        dim: 16,
        rank: 4,
        alpha: 8.0,
    };
    let state = sona_sync::server::build_state(&cfg).await.unwrap();
    let auth = state.auth.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sona_sync::server::serve_grpc(
        listener,
        state.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    let url = format!("http://{addr}");
    let alice = auth.issue(Role::User, "alice", i64::MAX / 2);
    let admin = auth.issue(Role::Admin, "ops", i64::MAX / 2);

    // SONAAdapterService
    let mut ad = pb::sona_adapter_service_client::SonaAdapterServiceClient::connect(url.clone())
        .await
        .unwrap();
    let e = |k: usize| {
        (0..16)
            .map(|i| if i == k { 1.0 } else { 0.0 })
            .collect::<Vec<f32>>()
    };
    let err = ad
        .load_adapter(Request::new(pb::UserRequest {
            user_id: "alice".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = ad
        .load_adapter(with(
            &alice,
            pb::UserRequest {
                user_id: "bob".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let st = ad
        .load_adapter(with(
            &alice,
            pb::UserRequest {
                user_id: "alice".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((st.d, st.rank, st.interaction_count), (16, 4, 0));
    let out = ad
        .update_from_interaction(with(
            &alice,
            pb::InteractionRequest {
                user_id: "alice".into(),
                interaction_type: "watch_complete".into(),
                rating: None,
                content_id: "m1".into(),
                query: e(0),
                item: e(1),
                negatives: e(2),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(out.strength > 0.0);
    let st = ad
        .get_adapter_stats(with(
            &alice,
            pb::UserRequest {
                user_id: "alice".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.interaction_count, 1);
    let bad = ad
        .adapt_embeddings(with(
            &alice,
            pb::AdaptEmbeddingsRequest {
                user_id: "alice".into(),
                embedding: vec![1.0],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let r = ad
        .adapt_embeddings(with(
            &alice,
            pb::AdaptEmbeddingsRequest {
                user_id: "alice".into(),
                embedding: e(3),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.embedding.len(), 16);

    // SemanticRouterService
    let mut rt =
        pb::semantic_router_service_client::SemanticRouterServiceClient::connect(url.clone())
            .await
            .unwrap();
    let q = "a cozy mystery for a rainy evening";
    let d = rt
        .route(with(
            &alice,
            pb::RouteRequest {
                query: Some(q.into()),
                embedding: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let lib = state.router.router.as_ref().unwrap().route_text(q).unwrap();
    assert_eq!(d.route, lib.route.name());
    assert_eq!(d.scores.len(), 6);
    let c = rt
        .select_model(with(
            &alice,
            pb::SelectModelRequest {
                route: "vector_search".into(),
                complexity: 0.3,
                budget: 1.0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        c.model_id,
        sona_core::router::select_model("vector_search", 0.3, 1.0)
            .unwrap()
            .model_id
    );
    let s = rt
        .get_routing_stats(with(&alice, pb::RoutingStatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((s.total, s.per_route[&d.route]), (1, 1));

    // ReasoningBankService
    let mut bk = pb::reasoning_bank_service_client::ReasoningBankServiceClient::connect(url)
        .await
        .unwrap();
    let id = bk
        .store_pattern(with(
            &alice,
            pb::StorePatternRequest {
                query_embedding: e(0),
                successful_results: vec![7],
                confidence: 0.9,
                usage_count: 1,
                segment: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let search = pb::FindSimilarRequest {
        query_embedding: e(0),
        limit: 5,
        min_similarity: 0.0,
        segment: String::new(),
    };
    let f = bk
        .find_similar_patterns(with(&alice, search.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f.matches.len(), 1);
    assert_eq!(
        (f.matches[0].id, f.matches[0].successful_results.clone()),
        (id, vec![7])
    );
    let bob = auth.issue(Role::User, "bob", i64::MAX / 2);
    assert!(bk
        .find_similar_patterns(with(&bob, search.clone()))
        .await
        .unwrap()
        .into_inner()
        .matches
        .is_empty());
    let ranked = bk
        .apply_patterns(with(
            &alice,
            pb::ApplyPatternsRequest {
                search: Some(search),
                candidates: vec![
                    pb::Candidate { id: 3, score: 0.6 },
                    pb::Candidate { id: 7, score: 0.5 },
                ],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .ranked;
    assert_eq!(ranked[0].id, 7);
    assert!(ranked[0].boost > 0.0);
    let err = bk
        .run_maintenance(with(&alice, pb::MaintenanceRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let m = bk
        .run_maintenance(with(&admin, pb::MaintenanceRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((m.patterns, m.segments, m.aggregated), (1, 1, false));
    let m = bk
        .run_maintenance(with(
            &admin,
            pb::MaintenanceRequest {
                kind: "aggregate".into(),
                segment: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    // One user's pattern: one cluster, too few users for an aggregated pattern.
    assert_eq!(
        (m.aggregated, m.clusters, m.universal_patterns),
        (true, 1, 0)
    );
    for (kind, segment) in [("weekly", ""), ("maintain", "../etc")] {
        let err = bk
            .run_maintenance(with(
                &admin,
                pb::MaintenanceRequest {
                    kind: kind.into(),
                    segment: segment.into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{kind} {segment}");
    }
    // Another segment does not see alice's pattern.
    let other = pb::FindSimilarRequest {
        query_embedding: e(0),
        limit: 5,
        min_similarity: 0.0,
        segment: "kids".into(),
    };
    assert!(bk
        .find_similar_patterns(with(&alice, other))
        .await
        .unwrap()
        .into_inner()
        .matches
        .is_empty());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    state.store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
