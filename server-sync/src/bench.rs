//! `sona-sync bench-load`: `concurrency` clients (one user each, keep-alive
//! connections) upload real `SNAU` updates for `seconds` to a server on
//! loopback; prints updates/s and latency percentiles of acknowledged uploads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sona_core::personalize::{
    load_adapter, BaseProjection, GlobalAdapter, InteractionKind, Observation, PersonalizeConfig,
    ViewerInteraction,
};
use sona_core::rng::Rng;

use crate::client::{loopback_addr, Client};
use crate::config::BenchArgs;
use crate::http::admin::TokenReply;
use crate::http::sync::SyncConfig;

pub struct BenchResult {
    pub updates: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub update_bytes: usize,
}

/// A trained device's update for `user` at the server's shape and version.
pub fn device_update(cfg: &SyncConfig, user: &str, seed: u64) -> Vec<u8> {
    let p = PersonalizeConfig {
        d: cfg.d,
        rank: cfg.rank,
        alpha: cfg.alpha,
        ..Default::default()
    };
    let mut global = GlobalAdapter::zero(&p);
    if cfg.global_version > 0 {
        global = GlobalAdapter::from_factors(
            cfg.global_version,
            &p,
            global.a().to_vec(),
            global.b().to_vec(),
        )
        .expect("zero factors are valid");
    }
    let mut ad = load_adapter(
        None,
        user,
        &p,
        Arc::new(BaseProjection::identity(p.d)),
        Arc::new(global),
    )
    .expect("valid config");
    let mut rng = Rng::new(seed);
    let unit = |rng: &mut Rng| -> Vec<f32> {
        let v: Vec<f32> = (0..p.d).map(|_| rng.normal()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    };
    let pool: Vec<f32> = (0..8).flat_map(|_| unit(&mut rng)).collect();
    let q = unit(&mut rng);
    for i in 0..6 {
        let item = unit(&mut rng);
        let kind = if i % 2 == 0 {
            InteractionKind::WatchComplete
        } else {
            InteractionKind::Skip
        };
        ad.update_from_interaction(
            &ViewerInteraction::new(kind, format!("c{i}")),
            10_000 + i * 4000,
            Observation {
                query: &q,
                item: &item,
            },
            &pool,
            &mut rng,
        )
        .expect("valid interaction");
    }
    let _ = ad.adapt_pending(40_000, &pool, &mut rng);
    ad.export_update().to_bytes()
}

pub async fn run(args: &BenchArgs) -> Result<BenchResult, String> {
    let addr = loopback_addr(&args.url)?;
    let mut c = Client::connect(addr).await.map_err(|e| e.to_string())?;
    let r = c
        .request("GET", "/v1/sync/config", &[], vec![])
        .await
        .map_err(|e| e.to_string())?;
    let cfg: SyncConfig = serde_json::from_slice(&r.body)
        .map_err(|e| format!("config: {e} (status {})", r.status))?;
    let admin = format!("Bearer {}", args.admin_token);
    let mut prepared = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let user = format!("bench-{w}");
        let body = serde_json::json!({ "user_id": user })
            .to_string()
            .into_bytes();
        let r = c
            .request(
                "POST",
                "/v1/admin/tokens",
                &[
                    ("authorization", &admin),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!(
                "token request failed with {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        let tok: TokenReply = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        // Encoded once; each request shares the bytes (no per-request copy).
        let update = hyper::body::Bytes::from(device_update(&cfg, &user, w as u64));
        prepared.push((tok, update));
    }
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for (tok, update) in prepared {
        workers.push(tokio::spawn(async move {
            let auth = format!("Bearer {}", tok.token);
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let Ok(mut c) = Client::connect(addr).await else {
                return (lat, 1);
            };
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match c
                    .request(
                        "POST",
                        "/v1/sync/updates",
                        &[
                            ("authorization", &auth),
                            ("content-type", "application/octet-stream"),
                        ],
                        update.clone(),
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => lat.push(t0.elapsed().as_micros() as u32),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        match Client::connect(addr).await {
                            Ok(n) => c = n,
                            Err(_) => break,
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
    }
    let secs = start
        .elapsed()
        .as_secs_f64()
        .min(args.seconds as f64)
        .max(1e-9);
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() {
            0.0
        } else {
            all[((all.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        }
    };
    Ok(BenchResult {
        updates: all.len() as u64,
        errors,
        seconds: secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        update_bytes: device_update(&cfg, "bench-0", 0).len(),
    })
}
