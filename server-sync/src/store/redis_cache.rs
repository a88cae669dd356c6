//! Redis hot cache for per-user adapters over any [`Store`]: key
//! `{prefix}user:{user_id}:lora_adapter`, TTL 30 days refreshed on every read
//! (GETEX) and write. The inner store stays the source of truth: writes go to
//! it first, then to Redis; a Redis failure on read falls back to the store.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;

use super::{BoxFuture, GlobalRecord, Store, StoreResult, StoredUpdate, UpdateRecord};

pub const ADAPTER_TTL_SECS: u64 = 30 * 24 * 3600;

pub struct RedisCache {
    inner: Arc<dyn Store>,
    conn: MultiplexedConnection,
    prefix: String,
}

impl RedisCache {
    pub async fn connect(url: &str, prefix: &str, inner: Arc<dyn Store>) -> StoreResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(RedisCache {
            inner,
            conn,
            prefix: prefix.to_string(),
        })
    }

    pub fn key(&self, user_id: &str) -> String {
        format!("{}user:{user_id}:lora_adapter", self.prefix)
    }

    /// Remaining TTL of a user's cached adapter in seconds (-2: not cached).
    pub async fn ttl(&self, user_id: &str) -> StoreResult<i64> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("TTL")
            .arg(self.key(user_id))
            .query_async(&mut c)
            .await?)
    }

    /// Is the user's adapter in the cache? (tests)
    pub async fn cached(&self, user_id: &str) -> StoreResult<Option<Vec<u8>>> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.key(user_id))
            .query_async(&mut c)
            .await?)
    }

    async fn set(&self, user_id: &str, bytes: &[u8]) -> StoreResult<()> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(user_id))
            .arg(bytes)
            .arg("EX")
            .arg(ADAPTER_TTL_SECS)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }
}

impl Store for RedisCache {
    fn append_update(&self, rec: UpdateRecord) -> BoxFuture<'_, StoreResult<i64>> {
        self.inner.append_update(rec)
    }
    fn updates_after(
        &self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredUpdate>>> {
        self.inner.updates_after(after, limit)
    }
    fn latest_per_user(
        &self,
        after: i64,
        max_users: usize,
    ) -> BoxFuture<'_, StoreResult<(Vec<StoredUpdate>, i64)>> {
        self.inner.latest_per_user(after, max_users)
    }
    fn count_after(&self, after: i64) -> BoxFuture<'_, StoreResult<i64>> {
        self.inner.count_after(after)
    }
    fn has_update(&self, seq: i64) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.has_update(seq)
    }
    fn latest_global(&self) -> BoxFuture<'_, StoreResult<Option<GlobalRecord>>> {
        self.inner.latest_global()
    }
    fn put_global(&self, rec: GlobalRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_global(rec)
    }

    fn get_adapter(&self, user_id: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let user = user_id.to_string();
        Box::pin(async move {
            let mut c = self.conn.clone();
            let hit: Result<Option<Vec<u8>>, _> = redis::cmd("GETEX")
                .arg(self.key(&user))
                .arg("EX")
                .arg(ADAPTER_TTL_SECS)
                .query_async(&mut c)
                .await;
            match hit {
                Ok(Some(bytes)) => return Ok(Some(bytes)),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "redis read failed; using the store"),
            }
            let found = self.inner.get_adapter(&user).await?;
            if let Some(b) = &found {
                if let Err(e) = self.set(&user, b).await {
                    tracing::warn!(error = %e, "redis fill failed");
                }
            }
            Ok(found)
        })
    }

    fn put_adapter(&self, user_id: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>> {
        let user = user_id.to_string();
        Box::pin(async move {
            self.inner.put_adapter(&user, bytes.clone()).await?;
            self.set(&user, &bytes).await
        })
    }

    fn get_meta(&self, key: &str) -> BoxFuture<'_, StoreResult<Option<String>>> {
        self.inner.get_meta(key)
    }
    fn init_meta(&self, key: &str, value: String) -> BoxFuture<'_, StoreResult<String>> {
        self.inner.init_meta(key, value)
    }
    fn put_meta(&self, key: &str, value: String) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_meta(key, value)
    }
    fn get_bank(&self, segment: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        self.inner.get_bank(segment)
    }
    fn put_bank(&self, segment: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_bank(segment, bytes)
    }
    fn bank_segments(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.inner.bank_segments()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
    fn backend(&self) -> &'static str {
        "redis-cache"
    }
}
