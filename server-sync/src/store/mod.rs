//! Storage behind one trait, three back ends: embedded SQLite (default, one
//! file, WAL + fsync on every group commit), PostgreSQL, and a Redis hot cache
//! for per-user adapters layered over either.

pub mod postgres;
pub mod redis_cache;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use thiserror::Error;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("store writer has shut down")]
    Closed,
    #[error("unsupported store url {0:?} (expected sqlite://PATH or postgres://…)")]
    BadUrl(String),
    #[error("{0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One accepted federated update.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateRecord {
    pub user_id: String,
    pub global_version: u64,
    /// `SNAU` bytes exactly as uploaded (shared with the request body, not copied).
    pub bytes: axum::body::Bytes,
}

/// A stored update with its sequence number (monotone, assigned at commit).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredUpdate {
    pub seq: i64,
    pub user_id: String,
    pub bytes: Vec<u8>,
}

/// The published federated state (`SNFS` bytes) and the last update seq it consumed.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalRecord {
    pub version: u64,
    pub state: Vec<u8>,
    pub consumed_seq: i64,
}

/// Everything the server persists. Writes return only after they are durable.
pub trait Store: Send + Sync + 'static {
    /// Append one update; resolves to its seq once committed (group commit).
    fn append_update(&self, rec: UpdateRecord) -> BoxFuture<'_, StoreResult<i64>>;
    /// Updates with seq > `after`, oldest first, at most `limit`.
    fn updates_after(
        &self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredUpdate>>>;
    /// For a round: the latest update of each user among seq in
    /// (`after`, max], at most `max_users` users (the most recently active),
    /// oldest first, and that max seq (`after` when there is none). Reads
    /// only the chosen updates' bytes.
    fn latest_per_user(
        &self,
        after: i64,
        max_users: usize,
    ) -> BoxFuture<'_, StoreResult<(Vec<StoredUpdate>, i64)>>;
    /// Number of updates with seq > `after`.
    fn count_after(&self, after: i64) -> BoxFuture<'_, StoreResult<i64>>;
    /// Is update `seq` stored? (durability checks)
    fn has_update(&self, seq: i64) -> BoxFuture<'_, StoreResult<bool>>;
    fn latest_global(&self) -> BoxFuture<'_, StoreResult<Option<GlobalRecord>>>;
    /// Publish a new global version (must be newer than the latest). Updates
    /// consumed by the previous version (seq ≤ its `consumed_seq`) are pruned.
    fn put_global(&self, rec: GlobalRecord) -> BoxFuture<'_, StoreResult<()>>;
    fn get_adapter(&self, user_id: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>>;
    fn put_adapter(&self, user_id: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>>;
    fn get_meta(&self, key: &str) -> BoxFuture<'_, StoreResult<Option<String>>>;
    /// Insert if absent; returns the stored value (first writer wins).
    fn init_meta(&self, key: &str, value: String) -> BoxFuture<'_, StoreResult<String>>;
    /// Set (insert or overwrite) a meta value.
    fn put_meta(&self, key: &str, value: String) -> BoxFuture<'_, StoreResult<()>>;
    /// The saved ReasoningBank of one segment (`ReasoningBank::to_bytes`).
    fn get_bank(&self, segment: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>>;
    /// Save (insert or replace) one segment's bank.
    fn put_bank(&self, segment: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>>;
    /// Every segment with a saved bank, sorted.
    fn bank_segments(&self) -> BoxFuture<'_, StoreResult<Vec<String>>>;
    /// Flush pending writes and stop the writer (graceful shutdown).
    fn close(&self) -> BoxFuture<'_, ()>;
    fn backend(&self) -> &'static str;
}

/// Open the back end named by `url` (`sqlite://PATH`, `postgres://…`), with
/// table names prefixed by `prefix`; wrap it in the Redis cache when `redis_url` is set.
pub async fn open(url: &str, prefix: &str, redis_url: Option<&str>) -> StoreResult<Arc<dyn Store>> {
    let inner: Arc<dyn Store> = if let Some(path) = url.strip_prefix("sqlite://") {
        Arc::new(sqlite::SqliteStore::open(path, prefix)?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(postgres::PgStore::connect(url, prefix).await?)
    } else {
        return Err(StoreError::BadUrl(url.to_string()));
    };
    match redis_url {
        Some(r) if !r.is_empty() => Ok(Arc::new(
            redis_cache::RedisCache::connect(r, prefix, inner).await?,
        )),
        _ => Ok(inner),
    }
}

/// Table/key prefixes are interpolated into SQL: only [A-Za-z0-9_] allowed.
pub fn check_prefix(prefix: &str) -> StoreResult<()> {
    if prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(())
    } else {
        Err(StoreError::Other(format!(
            "table prefix {prefix:?} may only hold letters, digits and _"
        )))
    }
}

#[cfg(test)]
pub(crate) mod conformance;
