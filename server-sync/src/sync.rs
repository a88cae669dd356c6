//! The sync service: accepts federated updates (validated by
//! `AdapterUpdate::from_bytes`/`validate` and `sona_core::federated::admit_validated`,
//! then made durable), runs aggregation
//! rounds with `sona_core::federated::aggregate_round`, publishes the global tier.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};

use sona_core::federated::{
    admit_validated, aggregate_round, FederatedConfig, FederatedError, GlobalState, Rejection,
    RoundReport,
};
use sona_core::personalize::{AdapterUpdate, PersonalizeError};
use thiserror::Error;

use crate::metrics::Metrics;
use crate::store::{GlobalRecord, Store, StoreError, UpdateRecord};

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("undecodable update: {0}")]
    Undecodable(#[from] PersonalizeError),
    #[error("update rejected: {0:?}")]
    Rejected(Rejection),
    #[error("update belongs to user {found:?}, token is for {expected:?}")]
    WrongUser { expected: String, found: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Federated(#[from] FederatedError),
    #[error("aggregation task failed: {0}")]
    Task(String),
}

/// The published global tier.
pub struct Published {
    pub state: GlobalState,
    /// `SNAG` bytes devices load with `apply_global`.
    pub global_bytes: Arc<Vec<u8>>,
    pub consumed_seq: i64,
}

pub struct SyncService {
    pub store: Arc<dyn Store>,
    pub cfg: FederatedConfig,
    pub round_max_users: usize,
    published: RwLock<Arc<Published>>,
    round_lock: tokio::sync::Mutex<()>,
    pub metrics: Arc<Metrics>,
}

/// What an accepted upload returns.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Ack {
    pub seq: i64,
    pub global_version: u64,
}

impl SyncService {
    /// Load the latest published state from the store (or start at version 0).
    pub async fn open(
        store: Arc<dyn Store>,
        cfg: FederatedConfig,
        round_max_users: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SyncError> {
        cfg.validate()?;
        let (state, consumed_seq) = match store.latest_global().await? {
            Some(rec) => (GlobalState::from_bytes(&rec.state, &cfg)?, rec.consumed_seq),
            None => (GlobalState::new(&cfg), 0),
        };
        let global_bytes = Arc::new(state.global_bytes(&cfg)?);
        metrics.global_version.store(state.version, Relaxed);
        Ok(SyncService {
            store,
            cfg,
            round_max_users: round_max_users.max(1),
            published: RwLock::new(Arc::new(Published {
                state,
                global_bytes,
                consumed_seq,
            })),
            round_lock: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    pub fn published(&self) -> Arc<Published> {
        self.published
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn version(&self) -> u64 {
        self.published().state.version
    }

    /// Admit an update for `user_id` and make it durable. Nothing is stored
    /// when it is rejected. `update` must have passed `AdapterUpdate::validate`
    /// (`AdapterUpdate::from_bytes` does that); here only the server-side rules
    /// (`sona_core::federated::admit_validated`: shape, staleness, samples) run.
    /// `raw`: the uploaded `SNAU` bytes when the client sent the envelope
    /// (stored as is, saving a re-encode and a copy); otherwise the update is encoded.
    pub async fn submit(
        &self,
        user_id: &str,
        update: AdapterUpdate,
        raw: Option<axum::body::Bytes>,
    ) -> Result<Ack, SyncError> {
        let result = self.submit_inner(user_id, update, raw).await;
        match &result {
            Ok(_) => self.metrics.updates_accepted.fetch_add(1, Relaxed),
            Err(_) => self.metrics.updates_rejected.fetch_add(1, Relaxed),
        };
        result
    }

    async fn submit_inner(
        &self,
        user_id: &str,
        update: AdapterUpdate,
        raw: Option<axum::body::Bytes>,
    ) -> Result<Ack, SyncError> {
        if update.user_id != user_id {
            return Err(SyncError::WrongUser {
                expected: user_id.to_string(),
                found: update.user_id,
            });
        }
        let current = self.version();
        admit_validated(&self.cfg, current, &update).map_err(SyncError::Rejected)?;
        let seq = self
            .store
            .append_update(UpdateRecord {
                user_id: update.user_id.clone(),
                global_version: update.global_version,
                bytes: raw.unwrap_or_else(|| update.to_bytes().into()),
            })
            .await?;
        Ok(Ack {
            seq,
            global_version: current,
        })
    }

    /// Aggregate the updates received since the last round (the latest of
    /// each user; when more than `round_max_users` users uploaded, the most
    /// recently active ones) and publish the next version. The round consumes
    /// every update up to the newest seq it saw. Returns `None` when there is
    /// nothing to aggregate.
    pub async fn run_round(&self) -> Result<Option<RoundReport>, SyncError> {
        let _guard = self.round_lock.lock().await;
        let published = self.published();
        let (chosen, consumed) = self
            .store
            .latest_per_user(published.consumed_seq, self.round_max_users)
            .await?;
        if chosen.is_empty() {
            return Ok(None);
        }
        let ups: Vec<Vec<u8>> = chosen.into_iter().map(|u| u.bytes).collect();
        let cfg = self.cfg.clone();
        let state = published.state.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let decoded: Vec<AdapterUpdate> = ups
                .iter()
                .filter_map(|b| AdapterUpdate::from_bytes(b).ok())
                .collect();
            aggregate_round(&cfg, &state, &decoded)
        })
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?;
        let (next, report) = match outcome {
            Ok(x) => x,
            // Everything went stale or invalid: consume it and publish nothing.
            Err(FederatedError::NotEnoughUpdates { .. }) => {
                let mut w = self.published.write().unwrap_or_else(|p| p.into_inner());
                *w = Arc::new(Published {
                    state: published.state.clone(),
                    global_bytes: published.global_bytes.clone(),
                    consumed_seq: consumed,
                });
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        self.store
            .put_global(GlobalRecord {
                version: next.version,
                state: next.to_bytes(),
                consumed_seq: consumed,
            })
            .await?;
        let global_bytes = Arc::new(next.global_bytes(&self.cfg)?);
        self.metrics.rounds.fetch_add(1, Relaxed);
        self.metrics.global_version.store(next.version, Relaxed);
        tracing::info!(
            version = next.version,
            accepted = report.accepted,
            rejected = report.rejected.len(),
            clipped = report.clipped,
            refactor_rel_error = report.refactor_rel_error,
            "published global adapter"
        );
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Published {
            state: next,
            global_bytes,
            consumed_seq: consumed,
        });
        Ok(Some(report))
    }
}
