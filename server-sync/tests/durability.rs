//! Every acknowledged upload survives SIGKILL of the server mid-stream
//! (embedded SQLite and PostgreSQL).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sona_sync::auth::{Auth, Role};
use sona_sync::client::Client;

async fn kill_mid_stream(store_url: &str, prefix: &str) {
    let (mut child, addr) = spawn_server(store_url, prefix);
    let auth = Auth::new(SECRET.as_bytes());
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let user = format!("dev{w}");
        let token = format!("Bearer {}", auth.issue(Role::User, &user, i64::MAX / 2));
        let update = sona_sync::bench::device_update(&small(), &user, w);
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = Client::connect(addr).await else {
                return 0usize;
            };
            let mut failures = 0;
            loop {
                match c
                    .request(
                        "POST",
                        "/v1/sync/updates",
                        &[
                            ("authorization", &token),
                            ("content-type", "application/octet-stream"),
                        ],
                        update.clone(),
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => {
                        let ack: sona_sync::sync::Ack = serde_json::from_slice(&r.body).unwrap();
                        acked.lock().unwrap().push(ack.seq);
                    }
                    Ok(r) => panic!("unexpected status {}", r.status),
                    Err(_) => {
                        failures += 1;
                        break;
                    }
                }
            }
            failures
        }));
    }
    // Let the uploads run, then SIGKILL while they are still streaming.
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if acked.lock().unwrap().len() >= 400 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut failures = 0;
    for t in tasks {
        failures += t.await.unwrap();
    }
    assert_eq!(
        failures, 8,
        "every client should see the connection die mid-stream"
    );
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);

    // Restart on the same store: every acknowledged update is there.
    let (mut child, addr) = spawn_server(store_url, prefix);
    let store = sona_sync::store::open(store_url, prefix, None)
        .await
        .unwrap();
    for seq in &acked {
        assert!(
            store.has_update(*seq).await.unwrap(),
            "acknowledged update {seq} lost"
        );
    }
    assert!(store.count_after(0).await.unwrap() >= acked.len() as i64);
    // The restarted server serves and aggregates what it had acknowledged.
    let mut c = Client::connect(addr).await.unwrap();
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
    let round: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(round["published"], true);
    assert_eq!(round["accepted"], 8);
    child.kill().unwrap();
    child.wait().unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_update_across_sigkill() {
    let dir = std::env::temp_dir().join(unique("durable"));
    std::fs::create_dir_all(&dir).unwrap();
    kill_mid_stream(&format!("sqlite://{}", dir.join("d.db").display()), "").await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_update_across_sigkill() {
    let prefix = unique("durable");
    kill_mid_stream(PG_URL, &prefix).await;
    let pg = sona_sync::store::postgres::PgStore::connect(PG_URL, &prefix)
        .await
        .unwrap();
    pg.drop_tables().await.unwrap();
}
