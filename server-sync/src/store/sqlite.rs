//! Embedded store: one SQLite file (64 KiB pages) in WAL mode with `synchronous = FULL`.
//! All writes go through one writer thread that drains every queued command
//! into a single transaction (group commit: one fsync for the whole batch)
//! and acknowledges each command only after its commit returned. WAL
//! checkpoints run on a separate thread and connection (`PASSIVE`: they never
//! block the writer), so a commit does not wait for a checkpoint; the writer
//! itself checkpoints only if the WAL grows past `WAL_CAP_BYTES`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{
    check_prefix, BoxFuture, GlobalRecord, Store, StoreError, StoreResult, StoredUpdate,
    UpdateRecord,
};

/// Most commands folded into one transaction.
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

pub struct SqliteStore {
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    reader: Arc<Mutex<Connection>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    t: Tables,
}

#[derive(Clone)]
struct Tables {
    updates: String,
    globals: String,
    adapters: String,
    meta: String,
    banks: String,
}

impl Tables {
    fn new(prefix: &str) -> Self {
        Tables {
            updates: format!("{prefix}updates"),
            globals: format!("{prefix}globals"),
            adapters: format!("{prefix}adapters"),
            meta: format!("{prefix}meta"),
            banks: format!("{prefix}banks"),
        }
    }
}

fn env_or(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Page size of a new database file. A 49 KB update then fits in one page
/// (no overflow chain): one WAL frame per update instead of ~13 with 4 KiB
/// pages, which cut the server's CPU per upload by a third (README, "Load
/// benchmark"). An existing file keeps its page size.
const PAGE_SIZE: i64 = 65_536;
/// SQLite's own autocheckpoint (in the committing connection) is off unless
/// `SONA_SQLITE_WAL_AUTOCHECKPOINT` sets it: the checkpointer thread does it.
const WAL_AUTOCHECKPOINT: i64 = 0;
/// How often the checkpointer thread runs a passive checkpoint.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// If the WAL file still grows past this (the checkpointer cannot keep up, or
/// a reader pins old frames), the writer runs a blocking `RESTART` checkpoint.
const WAL_CAP_BYTES: u64 = 256 << 20;

fn connect(path: &str) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    // Takes effect only on a new, empty file (before WAL mode is set).
    c.pragma_update(
        None,
        "page_size",
        env_or("SONA_SQLITE_PAGE_SIZE", PAGE_SIZE),
    )?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(
        None,
        "wal_autocheckpoint",
        env_or("SONA_SQLITE_WAL_AUTOCHECKPOINT", WAL_AUTOCHECKPOINT),
    )?;
    c.pragma_update(
        None,
        "synchronous",
        std::env::var("SONA_SQLITE_SYNCHRONOUS").unwrap_or_else(|_| "FULL".into()),
    )?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(c)
}

impl SqliteStore {
    /// Open (creating and migrating) the database file at `path`.
    pub fn open(path: &str, prefix: &str) -> StoreResult<Self> {
        check_prefix(prefix)?;
        let t = Tables::new(prefix);
        let mut w = connect(path)?;
        w.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {u} (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, global_version INTEGER NOT NULL, bytes BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS {g} (version INTEGER PRIMARY KEY, state BLOB NOT NULL, consumed_seq INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS {a} (user_id TEXT PRIMARY KEY, bytes BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS {m} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS {b} (segment TEXT PRIMARY KEY, bytes BLOB NOT NULL);",
            u = t.updates,
            g = t.globals,
            a = t.adapters,
            m = t.meta,
            b = t.banks
        ))?;
        let reader = connect(path)?;
        let (tx, rx) = mpsc::channel();
        let tw = t.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ckpt = connect(path)?;
        let stop_ck = stop.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&ckpt, &stop_ck))
            .map_err(|e| StoreError::Other(format!("cannot start the checkpoint thread: {e}")))?;
        let wal = std::path::PathBuf::from(format!("{path}-wal"));
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                writer_loop(&mut w, &tw, rx, &wal);
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            })
            .map_err(|e| StoreError::Other(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            tx: Mutex::new(Some(tx)),
            reader: Arc::new(Mutex::new(reader)),
            writer: Mutex::new(Some(writer)),
            t,
        })
    }

    fn send(&self, cmd: Cmd) -> StoreResult<()> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(tx) => tx.send(cmd).map_err(|_| StoreError::Closed),
            None => Err(StoreError::Closed),
        }
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Tables) -> rusqlite::Result<T> + Send + 'static,
    ) -> BoxFuture<'_, StoreResult<T>> {
        let reader = self.reader.clone();
        let t = self.t.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let c = reader.lock().unwrap_or_else(|p| p.into_inner());
                f(&c, &t).map_err(StoreError::from)
            })
            .await
            .map_err(|e| StoreError::Other(format!("reader task failed: {e}")))?
        })
    }
}

enum Reply {
    Seq(oneshot::Sender<StoreResult<i64>>, StoreResult<i64>),
    Unit(oneshot::Sender<StoreResult<()>>, StoreResult<()>),
    Text(oneshot::Sender<StoreResult<String>>, StoreResult<String>),
}

/// Passive checkpoints every `CHECKPOINT_EVERY` until `stop` (set when the
/// writer exits). A passive checkpoint copies committed WAL frames into the
/// database without blocking writers; errors (e.g. busy) are retried next time.
fn checkpoint_loop(c: &Connection, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}

fn writer_loop(c: &mut Connection, t: &Tables, rx: mpsc::Receiver<Cmd>, wal: &std::path::Path) {
    let mut closing: Vec<oneshot::Sender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let res = (|| -> rusqlite::Result<()> {
            let tx = c.transaction()?;
            {
                let mut ins = tx.prepare_cached(&format!(
                    "INSERT INTO {} (user_id, global_version, bytes) VALUES (?1, ?2, ?3)",
                    t.updates
                ))?;
                for cmd in batch.drain(..) {
                    match cmd {
                        Cmd::Append(r, reply) => {
                            let out = ins
                                .execute(params![r.user_id, r.global_version as i64, &r.bytes[..]])
                                .map(|_| tx.last_insert_rowid())
                                .map_err(StoreError::from);
                            replies.push(Reply::Seq(reply, out));
                        }
                        Cmd::PutGlobal(g, reply) => {
                            let out = put_global(&tx, t, &g);
                            replies.push(Reply::Unit(reply, out));
                        }
                        Cmd::PutAdapter(user, bytes, reply) => {
                            let out = upsert(&tx, &t.adapters, ("user_id", "bytes"), &user, &bytes);
                            replies.push(Reply::Unit(reply, out));
                        }
                        Cmd::InitMeta(k, v, reply) => {
                            let out = (|| {
                                tx.execute(
                                    &format!(
                                        "INSERT OR IGNORE INTO {} (key, value) VALUES (?1, ?2)",
                                        t.meta
                                    ),
                                    params![k, v],
                                )?;
                                tx.query_row(
                                    &format!("SELECT value FROM {} WHERE key = ?1", t.meta),
                                    [&k],
                                    |r| r.get(0),
                                )
                            })()
                            .map_err(StoreError::from);
                            replies.push(Reply::Text(reply, out));
                        }
                        Cmd::PutMeta(k, v, reply) => {
                            let out = upsert(&tx, &t.meta, ("key", "value"), &k, &v);
                            replies.push(Reply::Unit(reply, out));
                        }
                        Cmd::PutBank(segment, bytes, reply) => {
                            let out = upsert(&tx, &t.banks, ("segment", "bytes"), &segment, &bytes);
                            replies.push(Reply::Unit(reply, out));
                        }
                        Cmd::Close(done) => closing.push(done),
                    }
                }
            }
            tx.commit()
        })();
        // Acknowledge only after the commit: on failure every command in the batch fails.
        let failed = res.err().map(|e| e.to_string());
        if std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_CAP_BYTES) {
            let _ = c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        }
        for r in replies {
            let err = || {
                StoreError::Other(format!(
                    "commit failed: {}",
                    failed.clone().unwrap_or_default()
                ))
            };
            match r {
                Reply::Seq(s, v) => drop(s.send(if failed.is_some() { Err(err()) } else { v })),
                Reply::Unit(s, v) => drop(s.send(if failed.is_some() { Err(err()) } else { v })),
                Reply::Text(s, v) => drop(s.send(if failed.is_some() { Err(err()) } else { v })),
            }
        }
        if !closing.is_empty() {
            break;
        }
    }
    for done in closing {
        let _ = done.send(());
    }
}

/// `INSERT … ON CONFLICT(key) DO UPDATE SET value = excluded.value` on `table`.
fn upsert(
    tx: &rusqlite::Transaction,
    table: &str,
    (key_col, value_col): (&str, &str),
    key: &str,
    value: &dyn rusqlite::ToSql,
) -> StoreResult<()> {
    tx.execute(
        &format!(
            "INSERT INTO {table} ({key_col}, {value_col}) VALUES (?1, ?2)
             ON CONFLICT({key_col}) DO UPDATE SET {value_col} = excluded.{value_col}"
        ),
        params![key, value],
    )
    .map(|_| ())
    .map_err(StoreError::from)
}

fn put_global(tx: &rusqlite::Transaction, t: &Tables, g: &GlobalRecord) -> StoreResult<()> {
    let latest: Option<i64> = tx.query_row(
        &format!("SELECT MAX(version) FROM {}", t.globals),
        [],
        |r| r.get(0),
    )?;
    if let Some(v) = latest {
        if g.version as i64 <= v {
            return Err(StoreError::Other(format!(
                "global version {} is not newer than stored {v}",
                g.version
            )));
        }
    }
    let previous: Option<i64> = tx
        .query_row(
            &format!(
                "SELECT consumed_seq FROM {} ORDER BY version DESC LIMIT 1",
                t.globals
            ),
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(p) = previous {
        tx.execute(&format!("DELETE FROM {} WHERE seq <= ?1", t.updates), [p])?;
    }
    tx.execute(
        &format!(
            "INSERT INTO {} (version, state, consumed_seq) VALUES (?1, ?2, ?3)",
            t.globals
        ),
        params![g.version as i64, g.state, g.consumed_seq],
    )?;
    // Keep the last few versions only (each holds a d × d Fisher).
    tx.execute(
        &format!("DELETE FROM {} WHERE version < ?1", t.globals),
        [g.version as i64 - 4],
    )?;
    Ok(())
}

async fn ask<T>(
    store: &SqliteStore,
    make: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Cmd,
) -> StoreResult<T> {
    let (s, r) = oneshot::channel();
    store.send(make(s))?;
    r.await.map_err(|_| StoreError::Closed)?
}

impl Store for SqliteStore {
    fn append_update(&self, rec: UpdateRecord) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(ask(self, |s| Cmd::Append(rec, s)))
    }

    fn updates_after(
        &self,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredUpdate>>> {
        self.read(move |c, t| {
            let mut st = c.prepare_cached(&format!(
                "SELECT seq, user_id, bytes FROM {} WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                t.updates
            ))?;
            let rows = st.query_map(params![after, limit as i64], |r| {
                Ok(StoredUpdate {
                    seq: r.get(0)?,
                    user_id: r.get(1)?,
                    bytes: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    fn latest_per_user(
        &self,
        after: i64,
        max_users: usize,
    ) -> BoxFuture<'_, StoreResult<(Vec<StoredUpdate>, i64)>> {
        self.read(move |c, t| {
            let max: Option<i64> = c.query_row(
                &format!("SELECT MAX(seq) FROM {} WHERE seq > ?1", t.updates),
                [after],
                |r| r.get(0),
            )?;
            let Some(max) = max else {
                return Ok((Vec::new(), after));
            };
            let mut st = c.prepare_cached(&format!(
                "SELECT u.seq, u.user_id, u.bytes FROM {u} u JOIN
                   (SELECT MAX(seq) AS s FROM {u} WHERE seq > ?1 AND seq <= ?2
                    GROUP BY user_id ORDER BY s DESC LIMIT ?3) m ON u.seq = m.s
                 ORDER BY u.seq",
                u = t.updates
            ))?;
            let rows = st.query_map(params![after, max, max_users as i64], |r| {
                Ok(StoredUpdate {
                    seq: r.get(0)?,
                    user_id: r.get(1)?,
                    bytes: r.get(2)?,
                })
            })?;
            Ok((rows.collect::<rusqlite::Result<Vec<_>>>()?, max))
        })
    }

    fn count_after(&self, after: i64) -> BoxFuture<'_, StoreResult<i64>> {
        self.read(move |c, t| {
            c.query_row(
                &format!("SELECT COUNT(*) FROM {} WHERE seq > ?1", t.updates),
                [after],
                |r| r.get(0),
            )
        })
    }

    fn has_update(&self, seq: i64) -> BoxFuture<'_, StoreResult<bool>> {
        self.read(move |c, t| {
            c.query_row(
                &format!("SELECT 1 FROM {} WHERE seq = ?1", t.updates),
                [seq],
                |_| Ok(()),
            )
            .optional()
            .map(|x| x.is_some())
        })
    }

    fn latest_global(&self) -> BoxFuture<'_, StoreResult<Option<GlobalRecord>>> {
        self.read(|c, t| {
            c.query_row(
                &format!(
                    "SELECT version, state, consumed_seq FROM {} ORDER BY version DESC LIMIT 1",
                    t.globals
                ),
                [],
                |r| {
                    Ok(GlobalRecord {
                        version: r.get::<_, i64>(0)? as u64,
                        state: r.get(1)?,
                        consumed_seq: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    fn put_global(&self, rec: GlobalRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(ask(self, |s| Cmd::PutGlobal(rec, s)))
    }

    fn get_adapter(&self, user_id: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let user = user_id.to_string();
        self.read(move |c, t| {
            c.query_row(
                &format!("SELECT bytes FROM {} WHERE user_id = ?1", t.adapters),
                [user],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn put_adapter(&self, user_id: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>> {
        let user = user_id.to_string();
        Box::pin(ask(self, |s| Cmd::PutAdapter(user, bytes, s)))
    }

    fn get_meta(&self, key: &str) -> BoxFuture<'_, StoreResult<Option<String>>> {
        let key = key.to_string();
        self.read(move |c, t| {
            c.query_row(
                &format!("SELECT value FROM {} WHERE key = ?1", t.meta),
                [key],
                |r| r.get(0),
            )
            .optional()
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
        self.read(move |c, t| {
            c.query_row(
                &format!("SELECT bytes FROM {} WHERE segment = ?1", t.banks),
                [segment],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn put_bank(&self, segment: &str, bytes: Vec<u8>) -> BoxFuture<'_, StoreResult<()>> {
        let segment = segment.to_string();
        Box::pin(ask(self, |s| Cmd::PutBank(segment, bytes, s)))
    }

    fn bank_segments(&self) -> BoxFuture<'_, StoreResult<Vec<String>>> {
        self.read(|c, t| {
            let mut st = c.prepare(&format!("SELECT segment FROM {} ORDER BY segment", t.banks))?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (s, r) = oneshot::channel();
            if self.send(Cmd::Close(s)).is_ok() {
                let _ = r.await;
            }
            self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
            let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = handle {
                let _ = tokio::task::spawn_blocking(move || h.join()).await;
            }
        })
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
