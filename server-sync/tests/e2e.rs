//! End to end over a real socket, with native sona-core standing in for the
//! wasm package: device A learns and uploads its exported update, a round
//! runs, device B fetches and applies the new global adapter. Also: graceful
//! shutdown finishes in-flight uploads before the store closes.

mod common;

use std::sync::Arc;

use common::*;
use sona_core::personalize::{load_adapter, BaseProjection, GlobalAdapter, PersonalizeConfig};
use sona_sync::auth::Role;
use sona_sync::client::Client;
use sona_sync::config::ServeConfig;

fn cfg(store_url: String) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store_url,
        redis_url: None,
        table_prefix: String::new(),
        token_secret: Some(SECRET.into()),
        max_body_bytes: 1 << 20,
        round_interval_secs: 0,
        round_max_users: 64,
        bank_maintain_interval_secs: 0,
        bank_aggregate_interval_secs: 0,
        bank_max_segments: 8,
        router_model: None,
        grpc_listen: None,
        dim: 16,
        rank: 4,
        alpha: 8.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_update_reaches_a_second_device_after_a_round() {
    let dir = std::env::temp_dir().join(unique("e2e"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = cfg(format!("sqlite://{}", dir.join("e.db").display()));
    let state = sona_sync::server::build_state(&cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let auth = state.auth.clone();
    let server = tokio::spawn({
        let cfg = cfg.clone();
        async move {
            sona_sync::server::serve(listener, state, &cfg, async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
        }
    });
    let mut c = Client::connect(addr).await.unwrap();
    // Device A: trained on-device, exports its update (what wasm exportUpdate() returns).
    let update = sona_sync::bench::device_update(&small(), "device-a", 1);
    let tok_a = format!(
        "Bearer {}",
        auth.issue(Role::User, "device-a", i64::MAX / 2)
    );
    let r = c
        .request(
            "POST",
            "/v1/sync/updates",
            &[
                ("authorization", &tok_a),
                ("content-type", "application/octet-stream"),
            ],
            update,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let admin = format!("Bearer {}", auth.issue(Role::Admin, "ops", i64::MAX / 2));
    let r = c
        .request(
            "POST",
            "/v1/admin/round",
            &[("authorization", &admin)],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Device B: fetches the global tier and applies it.
    let p = PersonalizeConfig {
        d: 16,
        rank: 4,
        alpha: 8.0,
        ..Default::default()
    };
    let mut b = load_adapter(
        None,
        "device-b",
        &p,
        Arc::new(BaseProjection::identity(16)),
        Arc::new(GlobalAdapter::zero(&p)),
    )
    .unwrap();
    let q: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
    let (before, _) = b.adapt_embedding(&q).unwrap();
    let tok_b = format!(
        "Bearer {}",
        auth.issue(Role::User, "device-b", i64::MAX / 2)
    );
    let r = c
        .request(
            "GET",
            "/v1/sync/global",
            &[("authorization", &tok_b)],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-sona-global-version"], "1");
    assert_eq!(b.apply_global(&r.body).unwrap(), 1);
    let (after, magnitude) = b.adapt_embedding(&q).unwrap();
    assert!(
        magnitude > 0.0,
        "the global tier should change B's projection"
    );
    assert_ne!(before, after);
    // Device B's own adapter round-trips through the server.
    let bytes = b.to_bytes();
    let r = c
        .request(
            "PUT",
            "/v1/users/device-b/adapter",
            &[("authorization", &tok_b)],
            bytes.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = c
        .request(
            "GET",
            "/v1/users/device-b/adapter",
            &[("authorization", &tok_b)],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.body, bytes);
    let r = c
        .request(
            "GET",
            "/v1/users/device-b/adapter",
            &[("authorization", &tok_a)],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // Graceful shutdown with uploads in flight: each acknowledged one is stored.
    let mut uploads = Vec::new();
    for w in 0..6 {
        let user = format!("late{w}");
        let tok = format!("Bearer {}", auth.issue(Role::User, &user, i64::MAX / 2));
        let u = sona_sync::bench::device_update(&SyncConfigV1::v1(), &user, w);
        uploads.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await.unwrap();
            let mut seqs = vec![];
            for _ in 0..20 {
                match c
                    .request(
                        "POST",
                        "/v1/sync/updates",
                        &[
                            ("authorization", &tok),
                            ("content-type", "application/octet-stream"),
                        ],
                        u.clone(),
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => seqs.push(
                        serde_json::from_slice::<sona_sync::sync::Ack>(&r.body)
                            .unwrap()
                            .seq,
                    ),
                    _ => break,
                }
            }
            seqs
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    stop.send(()).unwrap();
    let mut acked = vec![];
    for u in uploads {
        acked.extend(u.await.unwrap());
    }
    server.await.unwrap();
    let store = sona_sync::store::open(&cfg.store_url, "", None)
        .await
        .unwrap();
    for s in &acked {
        assert!(store.has_update(*s).await.unwrap());
    }
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// The small config at global version 1 (after the round above).
struct SyncConfigV1;
impl SyncConfigV1 {
    fn v1() -> sona_sync::http::sync::SyncConfig {
        sona_sync::http::sync::SyncConfig {
            global_version: 1,
            ..small()
        }
    }
}
