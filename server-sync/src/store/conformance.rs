//! The same behaviour checks for every back end (SQLite here; PostgreSQL and
//! Redis against the real services on 127.0.0.1, with a unique prefix per run).

use std::sync::Arc;

use super::*;

/// A prefix no other test run uses.
pub fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("t{tag}_{}_{}_", std::process::id(), nanos % 1_000_000_000)
}

pub async fn exercise(store: Arc<dyn Store>) {
    // Concurrent appends get distinct, increasing seqs, all readable.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.append_update(UpdateRecord {
                user_id: format!("u{}", i % 7),
                global_version: 0,
                bytes: vec![i as u8; 100].into(),
            })
            .await
            .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 50);
    for &s in &seqs {
        assert!(store.has_update(s).await.unwrap());
    }
    assert!(!store.has_update(sorted[49] + 1000).await.unwrap());
    assert_eq!(store.count_after(0).await.unwrap(), 50);
    assert_eq!(store.count_after(sorted[9]).await.unwrap(), 40);
    let page = store.updates_after(sorted[9], 5).await.unwrap();
    assert_eq!(
        page.iter().map(|u| u.seq).collect::<Vec<_>>(),
        sorted[10..15].to_vec()
    );

    // A round's pick: the latest update of each user, most recently active first.
    let mut last_of: std::collections::HashMap<String, i64> = Default::default();
    for (i, &seq) in seqs.iter().enumerate() {
        let e = last_of.entry(format!("u{}", i % 7)).or_insert(seq);
        *e = (*e).max(seq);
    }
    let mut expect: Vec<i64> = last_of.values().copied().collect();
    expect.sort();
    let (all, max) = store.latest_per_user(0, 100).await.unwrap();
    assert_eq!(max, sorted[49]);
    assert_eq!(all.iter().map(|u| u.seq).collect::<Vec<_>>(), expect);
    let (three, _) = store.latest_per_user(0, 3).await.unwrap();
    assert_eq!(
        three.iter().map(|u| u.seq).collect::<Vec<_>>(),
        expect[4..].to_vec()
    );
    assert_eq!(
        store.latest_per_user(sorted[49], 3).await.unwrap(),
        (vec![], sorted[49])
    );

    // Globals: latest wins; versions must increase.
    assert_eq!(store.latest_global().await.unwrap(), None);
    let g1 = GlobalRecord {
        version: 1,
        state: vec![1; 10],
        consumed_seq: sorted[9],
    };
    store.put_global(g1.clone()).await.unwrap();
    assert!(store.put_global(g1.clone()).await.is_err());
    let g2 = GlobalRecord {
        version: 2,
        state: vec![2; 10],
        consumed_seq: sorted[49],
    };
    store.put_global(g2.clone()).await.unwrap();
    assert_eq!(store.latest_global().await.unwrap(), Some(g2));
    // Publishing v2 pruned what v1 had consumed.
    assert_eq!(store.count_after(0).await.unwrap(), 40);
    assert!(!store.has_update(sorted[9]).await.unwrap());
    assert!(store.has_update(sorted[10]).await.unwrap());

    // Adapters: upsert.
    assert_eq!(store.get_adapter("alice").await.unwrap(), None);
    store.put_adapter("alice", vec![1, 2, 3]).await.unwrap();
    store.put_adapter("alice", vec![4, 5]).await.unwrap();
    assert_eq!(store.get_adapter("alice").await.unwrap(), Some(vec![4, 5]));

    // Meta: first writer wins.
    assert_eq!(store.init_meta("k", "first".into()).await.unwrap(), "first");
    assert_eq!(
        store.init_meta("k", "second".into()).await.unwrap(),
        "first"
    );
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("first"));
    // put_meta overwrites.
    store.put_meta("k", "third".into()).await.unwrap();
    store.put_meta("fresh", "1".into()).await.unwrap();
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("third"));
    assert_eq!(store.get_meta("fresh").await.unwrap().as_deref(), Some("1"));

    // Banks: one row per segment, upsert, listed sorted.
    assert!(store.bank_segments().await.unwrap().is_empty());
    assert_eq!(store.get_bank("kids").await.unwrap(), None);
    store.put_bank("kids", vec![1, 2]).await.unwrap();
    store.put_bank("drama", vec![3]).await.unwrap();
    store.put_bank("kids", vec![4, 5, 6]).await.unwrap();
    assert_eq!(store.get_bank("kids").await.unwrap(), Some(vec![4, 5, 6]));
    assert_eq!(store.get_bank("drama").await.unwrap(), Some(vec![3]));
    assert_eq!(store.bank_segments().await.unwrap(), vec!["drama", "kids"]);
}

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

#[tokio::test]
async fn sqlite_store_conforms_and_persists() {
    let dir = std::env::temp_dir().join(unique_prefix("sqlite"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.db");
    let url = format!("sqlite://{}", path.display());
    let s = open(&url, "", None).await.unwrap();
    exercise(s.clone()).await;
    s.close().await;
    assert!(matches!(
        s.append_update(UpdateRecord {
            user_id: "x".into(),
            global_version: 0,
            bytes: Default::default()
        })
        .await,
        Err(StoreError::Closed)
    ));
    let again = open(&url, "", None).await.unwrap();
    assert_eq!(again.count_after(0).await.unwrap(), 40);
    assert_eq!(again.get_adapter("alice").await.unwrap(), Some(vec![4, 5]));
    assert_eq!(again.get_bank("kids").await.unwrap(), Some(vec![4, 5, 6]));
    assert_eq!(again.get_meta("k").await.unwrap().as_deref(), Some("third"));
    again.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_store_conforms() {
    let prefix = unique_prefix("pg");
    let pg = postgres::PgStore::connect(PG_URL, &prefix)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (see server-sync/ci.sh)");
    let pg = Arc::new(pg);
    exercise(pg.clone()).await;
    pg.drop_tables().await.unwrap();
    pg.close().await;
}

#[tokio::test]
async fn redis_cache_serves_adapters_with_ttl() {
    let dir = std::env::temp_dir().join(unique_prefix("redis"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("s.db").display());
    let prefix = unique_prefix("rd");
    let inner = open(&url, "", None).await.unwrap();
    let cache = Arc::new(
        redis_cache::RedisCache::connect(REDIS_URL, &prefix, inner.clone())
            .await
            .expect("Redis on 127.0.0.1:6379 (see server-sync/ci.sh)"),
    );
    assert_eq!(cache.key("bob"), format!("{prefix}user:bob:lora_adapter"));
    exercise(cache.clone()).await;
    // Written through to both; TTL 30 days.
    assert_eq!(cache.cached("alice").await.unwrap(), Some(vec![4, 5]));
    assert_eq!(inner.get_adapter("alice").await.unwrap(), Some(vec![4, 5]));
    let ttl = cache.ttl("alice").await.unwrap();
    assert!(
        ttl > 30 * 24 * 3600 - 60 && ttl <= 30 * 24 * 3600,
        "ttl {ttl}"
    );
    // A miss in Redis falls back to the store and refills the cache.
    inner.put_adapter("carol", vec![9]).await.unwrap();
    assert_eq!(cache.cached("carol").await.unwrap(), None);
    assert_eq!(cache.get_adapter("carol").await.unwrap(), Some(vec![9]));
    assert_eq!(cache.cached("carol").await.unwrap(), Some(vec![9]));
    // Reads are served from Redis (the store copy is not consulted on a hit).
    let mut c = redis::Client::open(REDIS_URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("SET")
        .arg(cache.key("carol"))
        .arg(vec![7u8])
        .arg("EX")
        .arg(5)
        .query_async::<()>(&mut c)
        .await
        .unwrap();
    assert_eq!(cache.get_adapter("carol").await.unwrap(), Some(vec![7]));
    // ... and the read refreshed the TTL to 30 days.
    assert!(cache.ttl("carol").await.unwrap() > 30 * 24 * 3600 - 60);
    for u in ["alice", "carol"] {
        redis::cmd("DEL")
            .arg(cache.key(u))
            .query_async::<()>(&mut c)
            .await
            .unwrap();
    }
    cache.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
