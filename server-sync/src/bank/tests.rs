//! The bank service with an injected clock: segment isolation, the schedule
//! (daily maintenance, weekly aggregation), persistence across a restart.

use std::sync::Arc;

use super::*;
use crate::store::conformance::unique_prefix;

const DIM: usize = 16;
const T0: i64 = 1_700_000_000;
const DAY: u64 = 86_400;
const SCHEDULE: Schedule = Schedule {
    maintain_every: DAY,
    aggregate_every: 7 * DAY,
};

fn user(name: &str) -> Caller {
    Caller {
        user: Some(owner(name)),
    }
}

/// A unit vector near axis `axis` (a small per-`jitter` tilt keeps patterns
/// distinct but far above the aggregation similarity).
fn emb(axis: usize, jitter: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[axis] = 1.0;
    v[(axis + 1 + jitter) % DIM] = 0.05;
    v
}

async fn open(dir: &std::path::Path) -> (Arc<dyn Store>, BankService) {
    let url = format!("sqlite://{}", dir.join("s.db").display());
    let store = crate::store::open(&url, "", None).await.unwrap();
    let svc = BankService::open(store.clone(), DIM, 8).await.unwrap();
    (store, svc)
}

async fn store(svc: &BankService, seg: &str, who: &str, e: Vec<f32>, res: Vec<u64>, conf: f32) {
    svc.store_pattern(seg, user(who), e, res, Default::default(), conf, 1, T0)
        .await
        .unwrap();
}

async fn results(svc: &BankService, seg: &str, who: &str, e: &[f32]) -> Vec<(bool, Vec<u64>)> {
    svc.find(seg, user(who), e, &Default::default(), 10, 0.5)
        .await
        .unwrap()
        .matches
        .into_iter()
        .map(|m| {
            assert_eq!(m.aggregated, m.id & GLOBAL_ID_BIT != 0);
            (m.aggregated, m.successful_results)
        })
        .collect()
}

#[test]
fn segment_names_are_validated() {
    for ok in [
        "default",
        "kids",
        "de-DE",
        "cohort_7",
        "a.b",
        &"x".repeat(64),
    ] {
        assert!(check_segment(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "_x",
        "-x",
        "a/b",
        "../etc",
        "a b",
        "é",
        GLOBAL_KEY,
        &"x".repeat(65),
    ] {
        assert!(
            matches!(check_segment(bad), Err(BankServiceError::BadSegment(_))),
            "{bad:?}"
        );
    }
    assert_eq!(segment_or_default(None).unwrap(), DEFAULT_SEGMENT);
    assert_eq!(segment_or_default(Some("")).unwrap(), DEFAULT_SEGMENT);
}

#[tokio::test]
async fn segments_are_isolated_and_bounded() {
    let dir = std::env::temp_dir().join(unique_prefix("banksvc"));
    std::fs::create_dir_all(&dir).unwrap();
    let (st, svc) = open(&dir).await;
    store(&svc, "kids", "alice", emb(0, 0), vec![1, 2], 0.9).await;
    store(&svc, "drama", "alice", emb(0, 1), vec![3], 0.9).await;
    assert_eq!(
        results(&svc, "kids", "alice", &emb(0, 0)).await,
        vec![(false, vec![1, 2])]
    );
    assert_eq!(
        results(&svc, "drama", "alice", &emb(0, 0)).await,
        vec![(false, vec![3])]
    );
    assert!(results(&svc, "news", "alice", &emb(0, 0)).await.is_empty());
    assert!(results(&svc, "kids", "bob", &emb(0, 0)).await.is_empty());
    // An admin sees every pattern of the segment, and only that segment.
    let admin = Caller { user: None };
    let found = svc
        .find("kids", admin, &emb(0, 0), &Default::default(), 10, 0.5)
        .await
        .unwrap();
    assert_eq!(found.matches.len(), 1);
    // Searching a segment does not create it; a bad name is refused.
    assert_eq!(svc.segment_names(), vec!["drama", "kids"]);
    assert!(matches!(
        svc.find("../x", admin, &emb(0, 0), &Default::default(), 10, 0.5)
            .await,
        Err(BankServiceError::BadSegment(_))
    ));
    // At most 8 segments (the limit given to open).
    for i in 0..6 {
        store(&svc, &format!("s{i}"), "alice", emb(1, 0), vec![9], 0.9).await;
    }
    let err = svc
        .store_pattern(
            "s6",
            user("alice"),
            emb(1, 0),
            vec![9],
            Default::default(),
            0.9,
            1,
            T0,
        )
        .await;
    assert!(matches!(err, Err(BankServiceError::TooManySegments(8))));
    // Each segment is its own row in the store.
    assert_eq!(st.bank_segments().await.unwrap().len(), 8);
    st.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn schedule_runs_daily_maintenance_and_weekly_aggregation_and_persists() {
    let dir = std::env::temp_dir().join(unique_prefix("banksched"));
    std::fs::create_dir_all(&dir).unwrap();
    let (st, svc) = open(&dir).await;
    // A weak pattern (confidence 0.2 < prune_below 0.3) and a strong one.
    store(&svc, "kids", "weak", emb(5, 0), vec![50], 0.2).await;
    // Users with a similar query: 3 in "kids", 2 in "drama"; all had result 42,
    // the kids users also had 7.
    for (i, u) in ["k1", "k2", "k3"].iter().enumerate() {
        store(&svc, "kids", u, emb(0, i), vec![42, 7, 100 + i as u64], 0.9).await;
    }
    for (i, u) in ["d1", "d2"].iter().enumerate() {
        store(
            &svc,
            "drama",
            u,
            emb(0, 3 + i),
            vec![42, 200 + i as u64],
            0.9,
        )
        .await;
    }

    // First tick starts the clocks; nothing runs until an interval has passed.
    assert_eq!(svc.tick(SCHEDULE, T0).await.unwrap(), TickReport::default());
    assert_eq!(
        svc.tick(SCHEDULE, T0 + DAY as i64 - 1).await.unwrap(),
        TickReport::default()
    );
    assert_eq!(results(&svc, "kids", "weak", &emb(5, 0)).await.len(), 1);
    // One day later: maintenance (prunes the weak pattern), no aggregation.
    let r = svc.tick(SCHEDULE, T0 + DAY as i64).await.unwrap();
    let m = r.maintained.expect("daily maintenance ran");
    assert_eq!((m.segments, m.pruned, m.patterns), (2, 1, 5));
    assert!(r.aggregated.is_none());
    assert!(results(&svc, "kids", "weak", &emb(5, 0)).await.is_empty());
    assert_eq!(
        svc.tick(SCHEDULE, T0 + DAY as i64 + 60).await.unwrap(),
        TickReport::default()
    );
    // A viewer of another segment has nothing before the weekly aggregation.
    assert!(results(&svc, "news", "zed", &emb(0, 0)).await.is_empty());

    // One week after start: aggregation (and maintenance, due again).
    let week = T0 + 7 * DAY as i64;
    let r = svc.tick(SCHEDULE, week).await.unwrap();
    assert!(r.maintained.is_some());
    let a = r.aggregated.expect("weekly aggregation ran");
    assert_eq!((a.segments, a.input_patterns), (2, 5));
    assert_eq!((a.universal_patterns, a.segment_patterns), (1, 1));
    // Universal (5 users had 42) reaches every segment, even a new one;
    // the kids segment pattern (42 and 7) only kids viewers.
    assert_eq!(
        results(&svc, "news", "zed", &emb(0, 0)).await,
        vec![(true, vec![42])]
    );
    let mut kids = results(&svc, "kids", "newcomer", &emb(0, 0)).await;
    kids.sort();
    assert_eq!(kids, vec![(true, vec![7, 42]), (true, vec![42])]);
    assert_eq!(
        results(&svc, "drama", "newcomer", &emb(0, 0)).await,
        vec![(true, vec![42])]
    );
    // A member sees their own pattern and the aggregated ones.
    assert_eq!(results(&svc, "kids", "k1", &emb(0, 0)).await.len(), 3);

    // Restart: banks, the global tier and the schedule survive.
    st.close().await;
    let (st, svc) = open(&dir).await;
    assert_eq!(
        results(&svc, "news", "zed", &emb(0, 0)).await,
        vec![(true, vec![42])]
    );
    assert!(results(&svc, "kids", "weak", &emb(5, 0)).await.is_empty());
    assert_eq!(results(&svc, "drama", "d1", &emb(0, 3)).await.len(), 2);
    assert_eq!(
        svc.tick(SCHEDULE, week + 1).await.unwrap(),
        TickReport::default(),
        "the restarted service knows both jobs just ran"
    );
    let r = svc.tick(SCHEDULE, week + DAY as i64).await.unwrap();
    assert!(r.maintained.is_some() && r.aggregated.is_none());
    // A zero interval never runs.
    let off = Schedule {
        maintain_every: 0,
        aggregate_every: 0,
    };
    assert_eq!(
        svc.tick(off, week + 100 * DAY as i64).await.unwrap(),
        TickReport::default()
    );
    st.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_bank_saved_by_an_older_server_becomes_the_default_segment() {
    let dir = std::env::temp_dir().join(unique_prefix("banklegacy"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("s.db").display());
    let st = crate::store::open(&url, "", None).await.unwrap();
    let mut old = ReasoningBank::new(BankConfig::with_dim(DIM)).unwrap();
    old.store_pattern(
        NewPattern {
            query_embedding: emb(2, 0),
            successful_results: vec![77],
            user: Some(owner("alice")),
            segment: None,
            context: Default::default(),
            confidence: 0.9,
            usage_count: 1,
        },
        T0,
    )
    .unwrap();
    st.put_adapter(LEGACY_BANK_KEY, old.to_bytes())
        .await
        .unwrap();
    let svc = BankService::open(st.clone(), DIM, 8).await.unwrap();
    assert_eq!(
        results(&svc, DEFAULT_SEGMENT, "alice", &emb(2, 0)).await,
        vec![(false, vec![77])]
    );
    assert_eq!(st.bank_segments().await.unwrap(), vec![DEFAULT_SEGMENT]);
    st.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
