//! Wiring: config → store → migrate (on open) → services → serve with
//! graceful shutdown (in-flight requests finish, then the store's writer
//! flushes and stops).

use std::sync::Arc;
use std::time::Duration;

use sona_core::federated::FederatedConfig;
use sona_core::personalize::PersonalizeConfig;
use tokio::net::TcpListener;

use crate::auth::{random_secret, Auth};
use crate::config::ServeConfig;
use crate::http::adapter::AdapterService;
use crate::http::{app, AppState};
use crate::metrics::Metrics;
use crate::store::{self, StoreError};
use crate::sync::{SyncError, SyncService};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid adapter shape: {0}")]
    Config(String),
}

/// The token secret: the flag, or one created once and kept in the store.
pub async fn token_secret(
    cfg: &ServeConfig,
    store: &dyn store::Store,
) -> Result<String, StartError> {
    match &cfg.token_secret {
        Some(s) if !s.is_empty() => Ok(s.clone()),
        _ => Ok(store.init_meta("token_secret", random_secret()?).await?),
    }
}

pub fn federated_config(cfg: &ServeConfig) -> Result<FederatedConfig, StartError> {
    let p = PersonalizeConfig {
        d: cfg.dim,
        rank: cfg.rank,
        alpha: cfg.alpha,
        ..Default::default()
    };
    p.validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
    Ok(FederatedConfig::for_personalize(&p))
}

/// Open the store and build the application state.
pub async fn build_state(cfg: &ServeConfig) -> Result<AppState, StartError> {
    let store = store::open(&cfg.store_url, &cfg.table_prefix, cfg.redis_url.as_deref()).await?;
    let fcfg = federated_config(cfg)?;
    let secret = token_secret(cfg, store.as_ref()).await?;
    let metrics = Arc::new(Metrics::default());
    let sync = Arc::new(
        SyncService::open(
            store.clone(),
            fcfg.clone(),
            cfg.round_max_users,
            metrics.clone(),
        )
        .await?,
    );
    let router = match &cfg.router_model {
        Some(path) => {
            let bytes = std::fs::read(path)?;
            let r = sona_core::router::Router::from_bytes(&bytes)
                .map_err(|e| StartError::Config(format!("router model {}: {e}", path.display())))?;
            Some(r)
        }
        None => None,
    };
    let bank = Arc::new(
        crate::bank::BankService::open(store.clone(), cfg.dim, cfg.bank_max_segments).await?,
    );
    Ok(AppState {
        bank,
        router: Arc::new(crate::http::router::RouterService::new(router)),
        store,
        sync,
        auth: Arc::new(Auth::new(secret.as_bytes())),
        metrics,
        adapters: Arc::new(AdapterService::new(fcfg.personalize())),
    })
}

/// Serve until `shutdown` resolves; then finish in-flight requests and flush the store.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    cfg: &ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let router = app(state.clone(), cfg.max_body_bytes);
    let ticker = (cfg.round_interval_secs > 0).then(|| {
        let sync = state.sync.clone();
        let every = Duration::from_secs(cfg.round_interval_secs);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                if let Err(e) = sync.run_round().await {
                    tracing::error!(error = %e, "aggregation round failed");
                }
            }
        })
    });
    let schedule = crate::bank::Schedule {
        maintain_every: cfg.bank_maintain_interval_secs,
        aggregate_every: cfg.bank_aggregate_interval_secs,
    };
    let bank_jobs = (schedule.maintain_every > 0 || schedule.aggregate_every > 0).then(|| {
        let bank = state.bank.clone();
        // Check often enough for the shortest interval, at least once a minute.
        let check = [schedule.maintain_every, schedule.aggregate_every]
            .into_iter()
            .filter(|&x| x > 0)
            .min()
            .unwrap_or(60)
            .min(60);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(check));
            loop {
                t.tick().await;
                match bank.tick(schedule, crate::http::now_secs()).await {
                    Ok(r) => {
                        if let Some(m) = r.maintained {
                            tracing::info!(?m, "bank maintenance ran");
                        }
                        if let Some(a) = r.aggregated {
                            tracing::info!(?a, "bank global aggregation ran");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "scheduled bank job failed"),
                }
            }
        })
    });
    // One shutdown signal for both servers.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let grpc = match cfg.grpc_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).await?;
            tracing::info!(addr = %l.local_addr()?, "gRPC listening");
            Some(tokio::spawn(serve_grpc(
                l,
                state.clone(),
                stopped(stop_rx.clone()),
            )))
        }
        None => None,
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(stopped(stop_rx))
        .await?;
    if let Some(g) = grpc {
        match g.await {
            Ok(Err(e)) => tracing::error!(error = %e, "gRPC server failed"),
            Err(e) => tracing::error!(error = %e, "gRPC task failed"),
            Ok(Ok(())) => {}
        }
    }
    for t in [ticker, bank_jobs].into_iter().flatten() {
        t.abort();
    }
    state.store.close().await;
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Serve the three gRPC services on `listener` until `shutdown` resolves.
pub async fn serve_grpc(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let g = crate::grpc::Grpc { state };
    tonic::transport::Server::builder()
        .add_service(g.adapter_server())
        .add_service(g.router_server())
        .add_service(g.bank_server())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}
