//! Handler tests without a socket: `app().oneshot(request)`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::config::ServeConfig;
use crate::http::sync::SyncConfig;
use crate::store::conformance::unique_prefix;

pub fn test_config(store_url: String) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store_url,
        redis_url: None,
        table_prefix: String::new(),
        token_secret: Some("test-secret".into()),
        max_body_bytes: 64 * 1024,
        round_interval_secs: 0,
        round_max_users: 64,
        router_model: None,
        bank_maintain_interval_secs: 0,
        bank_aggregate_interval_secs: 0,
        bank_max_segments: 8,
        grpc_listen: None,
        dim: 16,
        rank: 4,
        alpha: 8.0,
    }
}

async fn setup() -> (AppState, Router, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(unique_prefix("http"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = test_config(format!("sqlite://{}", dir.join("s.db").display()));
    let state = crate::server::build_state(&cfg).await.unwrap();
    let app = app(state.clone(), cfg.max_body_bytes);
    (state, app, dir)
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    ctype: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(c) = ctype {
        b = b.header("content-type", c);
    }
    let res = app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = res.status();
    (
        status,
        res.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

fn token(s: &AppState, role: Role, user: &str) -> String {
    s.auth.issue(role, user, now_secs() + 3600)
}

fn update_for(s: &AppState, user: &str) -> Vec<u8> {
    let c = &s.sync.cfg;
    let cfg = SyncConfig {
        d: c.d,
        rank: c.rank,
        alpha: c.alpha,
        global_version: s.sync.version(),
        max_staleness: c.max_staleness,
    };
    crate::bench::device_update(&cfg, user, 7)
}

#[tokio::test]
async fn health_and_metrics() {
    let (_s, app, dir) = setup().await;
    let (st, body) = send(&app, "GET", "/healthz", None, None, vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(String::from_utf8(body).unwrap().contains("\"sqlite\""));
    let (st, body) = send(&app, "GET", "/metrics", None, None, vec![]).await;
    assert_eq!(st, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("sona_http_responses_total{class=\"2xx\"} 1"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn uploads_need_a_token_for_the_same_user_and_rejections_store_nothing() {
    let (s, app, dir) = setup().await;
    let alice = update_for(&s, "alice");
    let oct = Some("application/octet-stream");
    // 401: no token, garbage token, token signed with another secret, expired token.
    assert_eq!(
        send(&app, "POST", "/v1/sync/updates", None, oct, alice.clone())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some("nope"),
            oct,
            alice.clone()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let foreign = crate::auth::Auth::new(b"other").issue(Role::User, "alice", now_secs() + 60);
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some(&foreign),
            oct,
            alice.clone()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let expired = s.auth.issue(Role::User, "alice", now_secs() - 1);
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some(&expired),
            oct,
            alice.clone()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    // 403: bob's token cannot upload alice's update.
    let bob = token(&s, Role::User, "bob");
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some(&bob),
            oct,
            alice.clone()
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // 400: corrupt bytes.
    let mut bad = alice.clone();
    let n = bad.len();
    bad[n / 2] ^= 1;
    let t_alice = token(&s, Role::User, "alice");
    assert_eq!(
        send(&app, "POST", "/v1/sync/updates", Some(&t_alice), oct, bad)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.store.count_after(0).await.unwrap(),
        0,
        "a rejected request stored something"
    );
    // 200: the right user.
    let (st, body) = send(
        &app,
        "POST",
        "/v1/sync/updates",
        Some(&t_alice),
        oct,
        alice.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let ack: crate::sync::Ack = serde_json::from_slice(&body).unwrap();
    assert!(s.store.has_update(ack.seq).await.unwrap());
    assert_eq!(s.store.count_after(0).await.unwrap(), 1);
    // The same update as bare MessagePack and as JSON.
    let u = sona_core::personalize::AdapterUpdate::from_bytes(&alice).unwrap();
    let mp = rmp_serde::to_vec_named(&u).unwrap();
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some(&t_alice),
            Some(MSGPACK),
            mp
        )
        .await
        .0,
        StatusCode::OK
    );
    let js = serde_json::to_vec(&u).unwrap();
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some(&t_alice),
            Some("application/json"),
            js
        )
        .await
        .0,
        StatusCode::OK
    );
    // NaN in a JSON update: 400/422, nothing stored.
    let mut v = serde_json::to_value(&u).unwrap();
    v["scale"] = serde_json::json!(-1.0);
    let before = s.store.count_after(0).await.unwrap();
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some(&t_alice),
            Some("application/json"),
            serde_json::to_vec(&v).unwrap()
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(s.store.count_after(0).await.unwrap(), before);
    // 413: body over the limit.
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/sync/updates",
            Some(&t_alice),
            oct,
            vec![0; 100 * 1024]
        )
        .await
        .0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn stale_updates_are_refused_with_409() {
    let (s, app, dir) = setup().await;
    let t = token(&s, Role::User, "alice");
    let old = update_for(&s, "alice");
    // Publish 5 versions (max_staleness is 4).
    for i in 0..5 {
        let u = update_for(&s, &format!("p{i}"));
        s.sync
            .submit(
                &format!("p{i}"),
                sona_core::personalize::AdapterUpdate::from_bytes(&u).unwrap(),
                None,
            )
            .await
            .unwrap();
        assert!(s.sync.run_round().await.unwrap().is_some());
    }
    assert_eq!(s.sync.version(), 5);
    let before = s.store.count_after(0).await.unwrap();
    let (st, body) = send(
        &app,
        "POST",
        "/v1/sync/updates",
        Some(&t),
        Some("application/octet-stream"),
        old,
    )
    .await;
    assert_eq!(
        st,
        StatusCode::CONFLICT,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(s.store.count_after(0).await.unwrap(), before);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn adapters_are_private_to_their_user() {
    let (s, app, dir) = setup().await;
    let alice = token(&s, Role::User, "alice");
    let bob = token(&s, Role::User, "bob");
    let admin = token(&s, Role::Admin, "ops");
    let adapter = sona_core::codec::seal(
        sona_core::personalize::format::ADAPTER_MAGIC,
        sona_core::personalize::format::ADAPTER_FORMAT_VERSION,
        b"opaque adapter payload",
    );
    let uri = "/v1/users/alice/adapter";
    assert_eq!(
        send(&app, "PUT", uri, None, None, adapter.clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, "PUT", uri, Some(&bob), None, adapter.clone())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.store.get_adapter("alice").await.unwrap(), None);
    assert_eq!(
        send(
            &app,
            "PUT",
            uri,
            Some(&alice),
            None,
            b"not an adapter".to_vec()
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(s.store.get_adapter("alice").await.unwrap(), None);
    assert_eq!(
        send(&app, "GET", uri, Some(&alice), None, vec![]).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&app, "PUT", uri, Some(&alice), None, adapter.clone())
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, "GET", uri, Some(&alice), None, vec![]).await,
        (StatusCode::OK, adapter.clone())
    );
    assert_eq!(
        send(&app, "GET", uri, Some(&bob), None, vec![]).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, "GET", uri, Some(&admin), None, vec![]).await,
        (StatusCode::OK, adapter)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn admin_endpoints_need_an_admin_token() {
    let (s, app, dir) = setup().await;
    let alice = token(&s, Role::User, "alice");
    let admin = token(&s, Role::Admin, "ops");
    let req = serde_json::to_vec(&serde_json::json!({"user_id": "carol"})).unwrap();
    let js = Some("application/json");
    assert_eq!(
        send(&app, "POST", "/v1/admin/tokens", None, js, req.clone())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/admin/tokens",
            Some(&alice),
            js,
            req.clone()
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(&app, "POST", "/v1/admin/round", Some(&alice), None, vec![])
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (st, body) = send(&app, "POST", "/v1/admin/tokens", Some(&admin), js, req).await;
    assert_eq!(st, StatusCode::OK);
    let tok: admin::TokenReply = serde_json::from_slice(&body).unwrap();
    let claims = s.auth.verify(&tok.token, now_secs()).unwrap();
    assert_eq!(
        (claims.role, claims.user_id.as_str()),
        (Role::User, "carol")
    );
    // MessagePack request and reply.
    let mp = rmp_serde::to_vec_named(&serde_json::json!({"user_id": "dave"})).unwrap();
    let res = app
        .clone()
        .oneshot(
            Request::post("/v1/admin/tokens")
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", MSGPACK)
                .header("accept", MSGPACK)
                .body(Body::from(mp))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], MSGPACK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let tok: admin::TokenReply = rmp_serde::from_slice(&body).unwrap();
    assert_eq!(
        s.auth.verify(&tok.token, now_secs()).unwrap().user_id,
        "dave"
    );
    let reserved =
        serde_json::to_vec(&serde_json::json!({"user_id": "__sona__reasoning_bank"})).unwrap();
    assert_eq!(
        send(&app, "POST", "/v1/admin/tokens", Some(&admin), js, reserved)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send(
            &app,
            "GET",
            "/v1/users/__sona__reasoning_bank/adapter",
            Some(&admin),
            None,
            vec![]
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    // Round with nothing pending publishes nothing.
    let (st, body) = send(&app, "POST", "/v1/admin/round", Some(&admin), None, vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        !serde_json::from_slice::<admin::RoundReply>(&body)
            .unwrap()
            .published
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn adapter_service_learns_and_persists() {
    let (s, app, dir) = setup().await;
    let alice = token(&s, Role::User, "alice");
    let bob = token(&s, Role::User, "bob");
    let js = Some("application/json");
    let d = 16;
    let e = |k: usize| {
        (0..d)
            .map(|i| if i == k { 1.0 } else { 0.0 })
            .collect::<Vec<f32>>()
    };
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/adapter/alice/load",
            Some(&bob),
            js,
            vec![]
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (st, _) = send(
        &app,
        "POST",
        "/v1/adapter/alice/load",
        Some(&alice),
        js,
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let body = serde_json::to_vec(&serde_json::json!({
        "interaction": {"kind": "watch_complete", "content_id": "m1", "context": {"hour_of_day": 20, "day_of_week": 5, "device": "tv", "moods": []}},
        "query": e(0), "item": e(1), "negatives": e(2)
    }))
    .unwrap();
    let (st, out) = send(
        &app,
        "POST",
        "/v1/adapter/alice/interactions",
        Some(&alice),
        js,
        body,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&out));
    let (st, out) = send(
        &app,
        "GET",
        "/v1/adapter/alice/stats",
        Some(&alice),
        None,
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let stats: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(stats["interaction_count"], 1);
    let bad = serde_json::to_vec(&serde_json::json!({"embedding": [1.0, 2.0]})).unwrap();
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/adapter/alice/adapt",
            Some(&alice),
            js,
            bad
        )
        .await
        .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let ok = serde_json::to_vec(&serde_json::json!({"embedding": e(3)})).unwrap();
    let (st, out) = send(
        &app,
        "POST",
        "/v1/adapter/alice/adapt",
        Some(&alice),
        js,
        ok,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r: adapter::AdaptReply = serde_json::from_slice(&out).unwrap();
    assert_eq!(r.embedding.len(), d);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn router_service_routes_selects_and_counts() {
    let dir = std::env::temp_dir().join(unique_prefix("router"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = test_config(format!("sqlite://{}", dir.join("s.db").display()));
    let plain = crate::server::build_state(&cfg).await.unwrap();
    let app0 = app(plain.clone(), cfg.max_body_bytes);
    let t0 = token(&plain, Role::User, "alice");
    let js = Some("application/json");
    let q = serde_json::to_vec(&serde_json::json!({"query": "something funny like the office"}))
        .unwrap();
    assert_eq!(
        send(&app0, "POST", "/v1/router/route", Some(&t0), js, q.clone())
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    plain.store.close().await;
    // The router model shipped with the wasm package's tests.
    cfg.router_model = Some(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm/tests/fixtures/router.bin"),
    );
    let s = crate::server::build_state(&cfg).await.unwrap();
    let app = app(s.clone(), cfg.max_body_bytes);
    let t = token(&s, Role::User, "alice");
    assert_eq!(
        send(&app, "POST", "/v1/router/route", None, js, q.clone())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (st, body) = send(&app, "POST", "/v1/router/route", Some(&t), js, q).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let d: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let name = d["route"].as_str().unwrap().to_string();
    assert!(
        sona_core::router::Route::ALL
            .iter()
            .any(|r| r.name() == name),
        "{name}"
    );
    // The same decision as the library gives.
    let lib = s
        .router
        .router
        .as_ref()
        .unwrap()
        .route_text("something funny like the office")
        .unwrap();
    assert_eq!(lib.route.name(), name);
    let bad = serde_json::to_vec(&serde_json::json!({})).unwrap();
    assert_eq!(
        send(&app, "POST", "/v1/router/route", Some(&t), js, bad)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let (st, body) = send(&app, "GET", "/v1/router/stats", Some(&t), None, vec![]).await;
    assert_eq!(st, StatusCode::OK);
    let stats: router::RoutingStats = serde_json::from_slice(&body).unwrap();
    assert!(stats.model_loaded);
    assert_eq!(stats.total, 1);
    assert_eq!(stats.per_route[&name], 1);
    let sel = serde_json::to_vec(
        &serde_json::json!({"route": "vector_search", "complexity": 0.3, "budget": 1.0}),
    )
    .unwrap();
    let (st, body) = send(&app, "POST", "/v1/router/select-model", Some(&t), js, sel).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let choice: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let expect = sona_core::router::select_model("vector_search", 0.3, 1.0).unwrap();
    assert_eq!(choice["model_id"], expect.model_id);
    let sel =
        serde_json::to_vec(&serde_json::json!({"route": "nope", "complexity": 0.3, "budget": 1.0}))
            .unwrap();
    assert_eq!(
        send(&app, "POST", "/v1/router/select-model", Some(&t), js, sel)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    s.store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bank_service_is_scoped_per_user_and_segment_and_persists() {
    let (s, app, dir) = setup().await;
    let alice = token(&s, Role::User, "alice");
    let bob = token(&s, Role::User, "bob");
    let admin = token(&s, Role::Admin, "ops");
    let js = Some("application/json");
    let e: Vec<f32> = (0..16).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
    let store = |results: Vec<u64>| {
        serde_json::to_vec(&serde_json::json!({"query_embedding": e, "successful_results": results, "confidence": 0.9})).unwrap()
    };
    assert_eq!(
        send(&app, "POST", "/v1/bank/patterns", None, js, store(vec![1]))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/bank/patterns",
            Some(&alice),
            js,
            store(vec![1, 2])
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        send(
            &app,
            "POST",
            "/v1/bank/patterns",
            Some(&bob),
            js,
            store(vec![3])
        )
        .await
        .0,
        StatusCode::OK
    );
    let bad = serde_json::to_vec(&serde_json::json!({"query_embedding": [1.0], "successful_results": [1], "confidence": 0.9})).unwrap();
    assert_eq!(
        send(&app, "POST", "/v1/bank/patterns", Some(&alice), js, bad)
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let q = serde_json::to_vec(&serde_json::json!({"query_embedding": e, "limit": 5})).unwrap();
    let (st, body) = send(
        &app,
        "POST",
        "/v1/bank/similar",
        Some(&alice),
        js,
        q.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let r: bank::SimilarReply = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.matches.len(), 1, "alice sees only her own pattern");
    assert_eq!(r.matches[0].successful_results, vec![1, 2]);
    let (_, body) = send(&app, "POST", "/v1/bank/similar", Some(&admin), js, q).await;
    assert_eq!(
        serde_json::from_slice::<bank::SimilarReply>(&body)
            .unwrap()
            .matches
            .len(),
        2
    );
    // Apply: alice's pattern lifts item 1 above the higher-scored item 9; bob's does not.
    let apply = serde_json::to_vec(&serde_json::json!({"query_embedding": e, "candidates": [{"id": 9, "score": 0.6}, {"id": 1, "score": 0.5}]})).unwrap();
    let (st, body) = send(
        &app,
        "POST",
        "/v1/bank/apply",
        Some(&alice),
        js,
        apply.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let ranked: Vec<bank::BoostedOut> = serde_json::from_slice(&body).unwrap();
    assert_eq!(ranked[0].id, 1);
    assert!(ranked[0].boost > 0.0);
    let (_, body) = send(&app, "POST", "/v1/bank/apply", Some(&bob), js, apply).await;
    let ranked: Vec<bank::BoostedOut> = serde_json::from_slice(&body).unwrap();
    assert_eq!((ranked[0].id, ranked[0].boost), (9, 0.0));
    // The admin trigger: 401 without a token, 403 for a user, either kind.
    let agg = serde_json::to_vec(&serde_json::json!({"kind": "aggregate"})).unwrap();
    for (tok, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(&alice), StatusCode::FORBIDDEN),
    ] {
        for body in [vec![], agg.clone()] {
            let t = tok.map(|t| t.as_str());
            let (st, _) = send(&app, "POST", "/v1/admin/bank/maintenance", t, js, body).await;
            assert_eq!(st, want);
        }
    }
    let (st, body) = send(
        &app,
        "POST",
        "/v1/admin/bank/maintenance",
        Some(&admin),
        None,
        vec![],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let r: bank::MaintenanceReply = serde_json::from_slice(&body).unwrap();
    assert_eq!(r.maintained.unwrap().segments, 1);
    assert!(r.aggregated.is_none());
    let (st, body) = send(
        &app,
        "POST",
        "/v1/admin/bank/maintenance",
        Some(&admin),
        js,
        agg,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let r: bank::MaintenanceReply = serde_json::from_slice(&body).unwrap();
    assert!(r.maintained.is_none());
    assert_eq!(r.aggregated.unwrap().input_patterns, 2);
    for bad in [
        serde_json::json!({"kind": "weekly"}),
        serde_json::json!({"segment": "a/b"}),
    ] {
        let (st, _) = send(
            &app,
            "POST",
            "/v1/admin/bank/maintenance",
            Some(&admin),
            js,
            serde_json::to_vec(&bad).unwrap(),
        )
        .await;
        assert!(
            st == StatusCode::BAD_REQUEST || st == StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {st}"
        );
    }
    // Segments: a bad name is refused; another segment does not see alice's pattern.
    let seg = |name: &str| {
        serde_json::to_vec(&serde_json::json!({"query_embedding": e, "segment": name})).unwrap()
    };
    let (st, _) = send(
        &app,
        "POST",
        "/v1/bank/similar",
        Some(&alice),
        js,
        seg("a b"),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, body) = send(
        &app,
        "POST",
        "/v1/bank/similar",
        Some(&alice),
        js,
        seg("kids"),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert!(serde_json::from_slice::<bank::SimilarReply>(&body)
        .unwrap()
        .matches
        .is_empty());
    let (_, body) = send(
        &app,
        "POST",
        "/v1/bank/similar",
        Some(&alice),
        js,
        seg("default"),
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<bank::SimilarReply>(&body)
            .unwrap()
            .matches
            .len(),
        1
    );
    // The bank survives a restart.
    s.store.close().await;
    let cfg = test_config(format!("sqlite://{}", dir.join("s.db").display()));
    let s2 = crate::server::build_state(&cfg).await.unwrap();
    let app2 = super::app(s2.clone(), cfg.max_body_bytes);
    let q = serde_json::to_vec(&serde_json::json!({"query_embedding": e})).unwrap();
    let (_, body) = send(&app2, "POST", "/v1/bank/similar", Some(&alice), js, q).await;
    assert_eq!(
        serde_json::from_slice::<bank::SimilarReply>(&body)
            .unwrap()
            .matches
            .len(),
        1
    );
    s2.store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The scheduler's timer (not only `tick`): with a 1 s maintenance interval
/// a weak pattern is pruned without any request (bounded wait on the effect).
#[tokio::test]
async fn scheduled_bank_maintenance_runs_on_its_timer() {
    let dir = std::env::temp_dir().join(unique_prefix("bankloop"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = test_config(format!("sqlite://{}", dir.join("s.db").display()));
    cfg.bank_maintain_interval_secs = 1;
    let state = crate::server::build_state(&cfg).await.unwrap();
    let e: Vec<f32> = (0..16).map(|i| if i == 3 { 1.0 } else { 0.0 }).collect();
    let alice = crate::bank::Caller {
        user: Some(crate::bank::owner("alice")),
    };
    state
        .bank
        .store_pattern(
            "kids",
            alice,
            e.clone(),
            vec![1],
            Default::default(),
            0.1,
            0,
            now_secs(),
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let (state, cfg) = (state.clone(), cfg.clone());
        tokio::spawn(async move {
            crate::server::serve(listener, state, &cfg, async {
                let _ = stopped.await;
            })
            .await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let found = state
            .bank
            .find("kids", alice, &e, &Default::default(), 5, 0.0)
            .await
            .unwrap();
        if found.matches.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "maintenance never ran"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(state
        .store
        .get_meta(crate::bank::META_LAST_MAINTAIN)
        .await
        .unwrap()
        .is_some());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
