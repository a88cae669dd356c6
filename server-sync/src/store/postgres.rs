//! PostgreSQL store (tokio-postgres). Writes go through one writer task that
//! folds every queued command into one transaction, pipelining its
//! statements (group commit; `synchronous_commit` makes the commit durable);
//! reads use a second connection, which pipelines concurrent queries.

use std::sync::Mutex;

use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::{
    check_prefix, BoxFuture, GlobalRecord, Store, StoreError, StoreResult, StoredUpdate,
    UpdateRecord,
};

const MAX_BATCH: usize = 4096;

enum Cmd {
    Append(UpdateRecord, oneshot::Sender<StoreResult<i64>>),
    PutGlobal(GlobalRecord, oneshot::Sender<StoreResult<()>>),
    PutAdapter(String, Vec<u8>, oneshot::Sender<StoreResult<()>>),
    InitMeta(String, String, oneshot::Sender<StoreResult<String>>),
    PutMeta(String, String, oneshot::Sender<StoreResult<()>>),
    PutBank(String, Vec<u8>, oneshot::Sender<StoreResult<()>>),
    Close(oneshot::Sender<()>),
}

#[derive(Clone)]
struct Tables {
    updates: String,
    globals: String,
    adapters: String,
    meta: String,
    banks: String,
}

pub struct PgStore {
    tx: Mutex<Option<mpsc::UnboundedSender<Cmd>>>,
    reader: Client,
    t: Tables,
}

async fn client(url: &str) -> StoreResult<Client> {
    let (c, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::error!(error = %e, "postgres connection ended");
        }
    });
    Ok(c)
}

impl PgStore {
    /// Connect and migrate. Tables are named `{prefix}updates` etc.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        check_prefix(prefix)?;
        let t = Tables {
            updates: format!("{prefix}updates"),
            globals: format!("{prefix}globals"),
            adapters: format!("{prefix}adapters"),
            meta: format!("{prefix}meta"),
            banks: format!("{prefix}banks"),
        };
        let writer = client(url).await?;
        writer
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {u} (seq BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, global_version BIGINT NOT NULL, bytes BYTEA NOT NULL);
                 CREATE TABLE IF NOT EXISTS {g} (version BIGINT PRIMARY KEY, state BYTEA NOT NULL, consumed_seq BIGINT NOT NULL);
                 CREATE TABLE IF NOT EXISTS {a} (user_id TEXT PRIMARY KEY, bytes BYTEA NOT NULL);
                 CREATE TABLE IF NOT EXISTS {m} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS {b} (segment TEXT PRIMARY KEY, bytes BYTEA NOT NULL);",
                u = t.updates,
                g = t.globals,
                a = t.adapters,
                m = t.meta,
                b = t.banks
            ))
            .await?;
        let reader = client(url).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer_loop(writer, t.clone(), rx));
        Ok(PgStore {
            tx: Mutex::new(Some(tx)),
            reader,
            t,
        })
    }

    /// Drop this store's tables (tests clean up their unique prefix).
    pub async fn drop_tables(&self) -> StoreResult<()> {
        let t = &self.t;
        self.reader
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {}, {}, {}, {}, {}",
                t.updates, t.globals, t.adapters, t.meta, t.banks
            ))
            .await?;
        Ok(())
    }

    fn send(&self, cmd: Cmd) -> StoreResult<()> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(cmd).map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }
}

async fn writer_loop(mut c: Client, t: Tables, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let ins_update = format!(
        "INSERT INTO {} (user_id, global_version, bytes) VALUES ($1, $2, $3) RETURNING seq",
        t.updates
    );
    let ins_adapter = format!(
        "INSERT INTO {} (user_id, bytes) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET bytes = EXCLUDED.bytes",
        t.adapters
    );
    let mut closing = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut appends = Vec::new();
        let mut others = Vec::new();
        for cmd in batch {
            match cmd {
                Cmd::Append(r, s) => appends.push((r, s)),
                Cmd::Close(s) => closing.push(s),
                other => others.push(other),
            }
        }
        let result: Result<(Vec<i64>, Vec<Done>), tokio_postgres::Error> = async {
            let tx = c.transaction().await?;
            let stmt = tx.prepare(&ins_update).await?;
            let versions: Vec<i64> = appends.iter().map(|(r, _)| r.global_version as i64).collect();
            let blobs: Vec<&[u8]> = appends.iter().map(|(r, _)| &r.bytes[..]).collect();
            let params: Vec<[&(dyn ToSql + Sync); 3]> = appends
                .iter()
                .zip(&versions)
                .zip(&blobs)
                .map(|(((r, _), v), b)| [&r.user_id as &(dyn ToSql + Sync), v, b])
                .collect();
            let seqs = join_all(params.iter().map(|p| tx.query_one(&stmt, p)))
            .await
            .into_iter()
            .map(|row| row.map(|r| r.get::<_, i64>(0)))
            .collect::<Result<Vec<_>, _>>()?;
            let mut done = Vec::new();
            for cmd in others.drain(..) {
                match cmd {
                    Cmd::PutGlobal(g, s) => {
                        let latest: Option<i64> = tx
                            .query_one(&format!("SELECT MAX(version) FROM {}", t.globals), &[])
                            .await?
                            .get(0);
                        if latest.is_some_and(|v| g.version as i64 <= v) {
                            done.push(Done::Unit(
                                s,
                                Err(format!("global version {} is not newer than stored {:?}", g.version, latest)),
                            ));
                            continue;
                        }
                        let previous: Option<i64> = tx
                            .query_opt(&format!("SELECT consumed_seq FROM {} ORDER BY version DESC LIMIT 1", t.globals), &[])
                            .await?
                            .map(|r| r.get(0));
                        if let Some(p) = previous {
                            tx.execute(&format!("DELETE FROM {} WHERE seq <= $1", t.updates), &[&p]).await?;
                        }
                        tx.execute(
                            &format!("INSERT INTO {} (version, state, consumed_seq) VALUES ($1, $2, $3)", t.globals),
                            &[&(g.version as i64), &g.state, &g.consumed_seq],
                        )
                        .await?;
                        tx.execute(&format!("DELETE FROM {} WHERE version < $1", t.globals), &[&(g.version as i64 - 4)])
                            .await?;
                        done.push(Done::Unit(s, Ok(())));
                    }
                    Cmd::PutAdapter(u, b, s) => {
                        tx.execute(&ins_adapter, &[&u, &b]).await?;
                        done.push(Done::Unit(s, Ok(())));
                    }
                    Cmd::InitMeta(k, v, s) => {
                        tx.execute(
                            &format!("INSERT INTO {} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", t.meta),
                            &[&k, &v],
                        )
                        .await?;
                        let row = tx
                            .query_one(&format!("SELECT value FROM {} WHERE key = $1", t.meta), &[&k])
                            .await?;
                        done.push(Done::Text(s, row.get(0)));
                    }
                    Cmd::PutMeta(k, v, s) => {
                        tx.execute(
                            &format!("INSERT INTO {} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", t.meta),
                            &[&k, &v],
                        )
                        .await?;
                        done.push(Done::Unit(s, Ok(())));
                    }
                    Cmd::PutBank(segment, b, s) => {
                        tx.execute(
                            &format!("INSERT INTO {} (segment, bytes) VALUES ($1, $2) ON CONFLICT (segment) DO UPDATE SET bytes = EXCLUDED.bytes", t.banks),
                            &[&segment, &b],
                        )
                        .await?;
                        done.push(Done::Unit(s, Ok(())));
                    }
                    Cmd::Append(..) | Cmd::Close(_) => unreachable!("split above"),
                }
            }
            tx.commit().await?;
            Ok((seqs, done))
        }
        .await;
        match result {
            Ok((seqs, done)) => {
                for ((_, s), seq) in appends.into_iter().zip(seqs) {
                    let _ = s.send(Ok(seq));
                }
                for d in done {
                    match d {
                        Done::Unit(s, r) => drop(s.send(r.map_err(StoreError::Other))),
                        Done::Text(s, v) => drop(s.send(Ok(v))),
                    }
                }
            }
            Err(e) => {
                let msg = format!("transaction failed: {e}");
                tracing::error!(%msg);
                for (_, s) in appends {
                    let _ = s.send(Err(StoreError::Other(msg.clone())));
                }
                // Commands of a failed batch that had not run get the error too.
                for cmd in others {
                    fail(cmd, &msg);
                }
            }
        }
        if !closing.is_empty() {
            break;
        }
    }
    for s in closing {
        let _ = s.send(());
    }
}

enum Done {
    Unit(oneshot::Sender<StoreResult<()>>, Result<(), String>),
    Text(oneshot::Sender<StoreResult<String>>, String),
}

fn fail(cmd: Cmd, msg: &str) {
    let e = || StoreError::Other(msg.to_string());
    match cmd {
        Cmd::Append(_, s) => drop(s.send(Err(e()))),
        Cmd::PutGlobal(_, s)
        | Cmd::PutAdapter(_, _, s)
        | Cmd::PutMeta(_, _, s)
        | Cmd::PutBank(_, _, s) => drop(s.send(Err(e()))),
        Cmd::InitMeta(_, _, s) => drop(s.send(Err(e()))),
        Cmd::Close(s) => drop(s.send(())),
    }
}

async fn ask<T>(
    store: &PgStore,
    make: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Cmd,
) -> StoreResult<T> {
    let (s, r) = oneshot::channel();
    store.send(make(s))?;
    r.await.map_err(|_| StoreError::Closed)?
}

impl Store for PgStore {
    fn append_update(&self, rec: UpdateRecord) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(ask(self, |s| Cmd::Append(rec, s)))
    }

    fn updates_after(
        &self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredUpdate>>> {
        Box::pin(async move {
            let rows = self
                .reader
                .query(
                    &format!(
                        "SELECT seq, user_id, bytes FROM {} WHERE seq > $1 ORDER BY seq LIMIT $2",
                        self.t.updates
                    ),
                    &[&after, &(limit as i64)],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| StoredUpdate {
                    seq: r.get(0),
                    user_id: r.get(1),
                    bytes: r.get(2),
                })
                .collect())
        })
    }

    fn latest_per_user(
        &self,
        after: i64,
        max_users: usize,
    ) -> BoxFuture<'_, StoreResult<(Vec<StoredUpdate>, i64)>> {
        Box::pin(async move {
            let u = &self.t.updates;
            let max: Option<i64> = self
                .reader
                .query_one(
                    &format!("SELECT MAX(seq) FROM {u} WHERE seq > $1"),
                    &[&after],
                )
                .await?
                .get(0);
            let Some(max) = max else {
                return Ok((Vec::new(), after));
            };
            let rows = self
                .reader
                .query(
                    &format!(
                        "SELECT u.seq, u.user_id, u.bytes FROM {u} u JOIN
                           (SELECT MAX(seq) AS s FROM {u} WHERE seq > $1 AND seq <= $2
                            GROUP BY user_id ORDER BY s DESC LIMIT $3) m ON u.seq = m.s
                         ORDER BY u.seq"
                    ),
                    &[&after, &max, &(max_users as i64)],
                )
                .await?;
            let ups = rows
                .into_iter()
                .map(|r| StoredUpdate {
                    seq: r.get(0),
                    user_id: r.get(1),
                    bytes: r.get(2),
                })
                .collect();
            Ok((ups, max))
        })
    }

    fn count_after(&self, after: i64) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async move {
            let row = self
                .reader
                .query_one(
                    &format!("SELECT COUNT(*) FROM {} WHERE seq > $1", self.t.updates),
                    &[&after],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn has_update(&self, seq: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move {
            let rows = self
                .reader
                .query(
                    &format!("SELECT 1 FROM {} WHERE seq = $1", self.t.updates),
                    &[&seq],
                )
                .await?;
            Ok(!rows.is_empty())
        })
    }

    fn latest_global(&self) -> BoxFuture<'_, StoreResult<Option<GlobalRecord>>> {
        Box::pin(async move {
            let row = self
                .reader
                .query_opt(
                    &format!(
                        "SELECT version, state, consumed_seq FROM {} ORDER BY version DESC LIMIT 1",
                        self.t.globals
                    ),
                    &[],
                )
                .await?;
            Ok(row.map(|r| GlobalRecord {
                version: r.get::<_, i64>(0) as u64,
                state: r.get(1),
                consumed_seq: r.get(2),
            }))
        })
    }

    fn put_global(&self, rec: GlobalRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(ask(self, |s| Cmd::PutGlobal(rec, s)))
    }

    fn get_adapter(&self, user_id: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let user = user_id.to_string();
        Box::pin(async move {
            let row = self
                .reader
                .query_opt(
                    &format!("SELECT bytes FROM {} WHERE user_id = $1", self.t.adapters),
                    &[&user],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn put_adapter(&self, user_id: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>> {
        let user = user_id.to_string();
        Box::pin(ask(self, |s| Cmd::PutAdapter(user, bytes, s)))
    }

    fn get_meta(&self, key: &str) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let key = key.to_string();
        Box::pin(async move {
            let row = self
                .reader
                .query_opt(
                    &format!("SELECT value FROM {} WHERE key = $1", self.t.meta),
                    &[&key],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn init_meta(&self, key: &str, value: String) -> BoxFuture<'_, StoreResult<String>> {
        let key = key.to_string();
        Box::pin(ask(self, |s| Cmd::InitMeta(key, value, s)))
    }

    fn put_meta(&self, key: &str, value: String) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.to_string();
        Box::pin(ask(self, |s| Cmd::PutMeta(key, value, s)))
    }

    fn get_bank(&self, segment: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let segment = segment.to_string();
        Box::pin(async move {
            let row = self
                .reader
                .query_opt(
                    &format!("SELECT bytes FROM {} WHERE segment = $1", self.t.banks),
                    &[&segment],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn put_bank(&self, segment: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>> {
        let segment = segment.to_string();
        Box::pin(ask(self, |s| Cmd::PutBank(segment, bytes, s)))
    }

    fn bank_segments(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        Box::pin(async move {
            let rows = self
                .reader
                .query(
                    &format!("SELECT segment FROM {} ORDER BY segment", self.t.banks),
                    &[],
                )
                .await?;
            Ok(rows.into_iter().map(|r| r.get(0)).collect())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (s, r) = oneshot::channel();
            if self.send(Cmd::Close(s)).is_ok() {
                let _ = r.await;
            }
            self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        })
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
