//! Evaluation protocols.
//!
//! - **static** ([`static_split`] + [`eval_static`]): every rating is an
//!   interaction; each user's interactions are shuffled (seeded) and the first
//!   `round(0.75·n)` go to training. The model ranks every item the user has not
//!   seen in training; all of the user's test items are relevant.
//! - **streaming** ([`temporal_split`] + [`replay`]): models train on every
//!   interaction before the `q`-quantile timestamp; the rest are replayed in time
//!   order. Before each event the model ranks its top k for that user (excluding
//!   items the user has already seen, in training or earlier in the replay); the
//!   event is a hit if its item is there. Only then is the event passed to
//!   [`OnlineRecommender::observe`].
//! - **cold_start** (from the same replay): users with no interaction before the
//!   cutoff, scored on their events from the `(warmup + 1)`-th on.
//!
//! Streaming metrics are per event (relevant set = the event's item), averaged per
//! user, then over users.

use super::metrics::{Accumulator, Summary};
use crate::data::{Dataset, Interaction};
use crate::recommend::{OnlineRecommender, RecommendError};
use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("train fraction / quantile must be in (0, 1), got {0}")]
    BadFraction(f64),
    #[error("the dataset has no interactions")]
    NoInteractions,
    #[error("the split left no test interactions")]
    EmptyTest,
    #[error(transparent)]
    Recommend(#[from] RecommendError),
}

/// A train/test split. `train` keeps the full catalog and user table.
#[derive(Clone, Debug)]
pub struct Split {
    pub train: Dataset,
    /// Test interactions. For temporal splits: sorted by (timestamp, user, item).
    pub test: Vec<Interaction>,
    /// Temporal splits: the first timestamp that belongs to the test side.
    pub cutoff: Option<i64>,
}

fn with_interactions(ds: &Dataset, interactions: Vec<Interaction>) -> Dataset {
    Dataset {
        items: ds.items.clone(),
        user_source_ids: ds.user_source_ids.clone(),
        interactions,
    }
}

/// Per-user stratified random split: each user's interactions are shuffled with a
/// generator seeded from `seed`, and `round(train_frac · n)` of them train.
pub fn static_split(ds: &Dataset, train_frac: f64, seed: u64) -> Result<Split, EvalError> {
    if !(train_frac > 0.0 && train_frac < 1.0) {
        return Err(EvalError::BadFraction(train_frac));
    }
    if ds.interactions.is_empty() {
        return Err(EvalError::NoInteractions);
    }
    let mut by_user: Vec<Vec<usize>> = vec![Vec::new(); ds.n_users()];
    for (idx, x) in ds.interactions.iter().enumerate() {
        let u = x.user as usize;
        if u >= by_user.len() {
            by_user.resize(u + 1, Vec::new());
        }
        by_user[u].push(idx);
    }
    let mut rng = Rng::new(seed);
    let mut is_train = vec![false; ds.interactions.len()];
    for idxs in &mut by_user {
        rng.shuffle(idxs);
        let n_train = (train_frac * idxs.len() as f64).round() as usize;
        for &i in &idxs[..n_train] {
            is_train[i] = true;
        }
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (x, t) in ds.interactions.iter().zip(is_train) {
        if t {
            train.push(*x);
        } else {
            test.push(*x);
        }
    }
    if test.is_empty() {
        return Err(EvalError::EmptyTest);
    }
    Ok(Split {
        train: with_interactions(ds, train),
        test,
        cutoff: None,
    })
}

/// Temporal split at the `quantile` of all timestamps: interactions strictly before
/// the cutoff train, the rest are test (sorted by time, then user, then item).
pub fn temporal_split(ds: &Dataset, quantile: f64) -> Result<Split, EvalError> {
    if !(quantile > 0.0 && quantile < 1.0) {
        return Err(EvalError::BadFraction(quantile));
    }
    if ds.interactions.is_empty() {
        return Err(EvalError::NoInteractions);
    }
    let mut ts: Vec<i64> = ds.interactions.iter().map(|x| x.timestamp).collect();
    ts.sort_unstable();
    let idx = ((quantile * ts.len() as f64).floor() as usize).min(ts.len() - 1);
    let cutoff = ts[idx];
    let (mut train, mut test): (Vec<Interaction>, Vec<Interaction>) =
        ds.interactions.iter().partition(|x| x.timestamp < cutoff);
    test.sort_by_key(|x| (x.timestamp, x.user, x.item));
    if test.is_empty() {
        return Err(EvalError::EmptyTest);
    }
    train.shrink_to_fit();
    Ok(Split {
        train: with_interactions(ds, train),
        test,
        cutoff: Some(cutoff),
    })
}

/// Sets `mask[i] = v` for the listed items (out-of-range items are ignored; the
/// model rejects them when observed).
fn set_mask(mask: &mut [bool], items: &[u32], v: bool) {
    for &i in items {
        if let Some(m) = mask.get_mut(i as usize) {
            *m = v;
        }
    }
}

/// Sorted distinct items per user of the training side.
fn train_items(split: &Split) -> Vec<Vec<u32>> {
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); split.train.n_users()];
    for x in &split.train.interactions {
        let u = x.user as usize;
        if u >= seen.len() {
            seen.resize(u + 1, Vec::new());
        }
        seen[u].push(x.item);
    }
    for s in &mut seen {
        s.sort_unstable();
        s.dedup();
    }
    seen
}

/// Static protocol: one top-k list per test user, all test items relevant. `now`
/// given to the model is the user's latest training timestamp (0 if none), so the
/// test timestamps never reach the model.
pub fn eval_static(split: &Split, model: &dyn OnlineRecommender, k: usize) -> Summary {
    let n_items = split.train.n_items();
    let seen = train_items(split);
    let mut last_ts: Vec<i64> = vec![0; seen.len()];
    for x in &split.train.interactions {
        let t = &mut last_ts[x.user as usize];
        *t = (*t).max(x.timestamp);
    }
    let mut relevant: Vec<Vec<u32>> = vec![Vec::new(); seen.len()];
    for x in &split.test {
        let u = x.user as usize;
        if u >= relevant.len() {
            relevant.resize(u + 1, Vec::new());
        }
        relevant[u].push(x.item);
    }
    let mut acc = Accumulator::new(k, n_items);
    let mut mask = vec![false; n_items];
    for (u, rel) in relevant.iter_mut().enumerate() {
        if rel.is_empty() {
            continue;
        }
        rel.sort_unstable();
        rel.dedup();
        let s = seen.get(u).map_or(&[][..], |v| v.as_slice());
        set_mask(&mut mask, s, true);
        let now = last_ts.get(u).copied().unwrap_or(0);
        let ranked = model.recommend(u as u32, k, &mask, now);
        set_mask(&mut mask, s, false);
        acc.add(u as u32, &ranked, rel);
    }
    acc.summary()
}

/// Result of one replay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayReport {
    pub streaming: Summary,
    pub cold_start: Summary,
}

/// Streaming replay of `split.test` (must be a temporal split's time-ordered test
/// side). Scores every event for `streaming`, and events after the first `warmup`
/// of users absent from training for `cold_start`. `now` given to the model is the
/// event's timestamp (the time of the request, not a label).
pub fn replay(
    split: &Split,
    model: &mut dyn OnlineRecommender,
    k: usize,
    warmup: usize,
) -> Result<ReplayReport, EvalError> {
    let n_items = split.train.n_items();
    let mut seen = train_items(split);
    let cold: Vec<bool> = seen.iter().map(|s| s.is_empty()).collect();
    let mut events_so_far: Vec<usize> = vec![0; seen.len()];
    let mut stream = Accumulator::new(k, n_items);
    let mut cold_acc = Accumulator::new(k, n_items);
    let mut mask = vec![false; n_items];
    for x in &split.test {
        let u = x.user as usize;
        if u >= seen.len() {
            seen.resize(u + 1, Vec::new());
            events_so_far.resize(u + 1, 0);
        }
        set_mask(&mut mask, &seen[u], true);
        let ranked = model.recommend(x.user, k, &mask, x.timestamp);
        set_mask(&mut mask, &seen[u], false);
        let rel = [x.item];
        stream.add(x.user, &ranked, &rel);
        if cold.get(u).copied().unwrap_or(true) && events_so_far[u] >= warmup {
            cold_acc.add(x.user, &ranked, &rel);
        }
        events_so_far[u] += 1;
        model.observe(x)?;
        if let Err(p) = seen[u].binary_search(&x.item) {
            seen[u].insert(p, x.item);
        }
    }
    Ok(ReplayReport {
        streaming: stream.summary(),
        cold_start: cold_acc.summary(),
    })
}

/// One replayed event with every model's list as it was before the event.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub user: u32,
    pub item: u32,
    /// Counted in `cold_start` (the user was absent from training and this is
    /// their event number `warmup + 1` or later).
    pub cold: bool,
    /// `lists[m]`: model m's top-`depth` list for this request.
    pub lists: Vec<Vec<u32>>,
}

/// The same replay as [`replay`], for several models at once, recording each
/// model's top-`depth` list before every event (then every model observes the
/// event). Weighted fusions of these models can then be scored for many weight
/// sets without replaying again ([`score_recorded`]); the result equals replaying
/// a [`crate::recommend::fusion::Fusion`] of the same models with `depth` as its
/// fusion depth.
pub fn replay_record(
    split: &Split,
    models: &mut [Box<dyn OnlineRecommender>],
    depth: usize,
    warmup: usize,
) -> Result<Vec<RecordedEvent>, EvalError> {
    let n_items = split.train.n_items();
    let mut seen = train_items(split);
    let cold: Vec<bool> = seen.iter().map(|s| s.is_empty()).collect();
    let mut events_so_far: Vec<usize> = vec![0; seen.len()];
    let mut mask = vec![false; n_items];
    let mut out = Vec::with_capacity(split.test.len());
    for x in &split.test {
        let u = x.user as usize;
        if u >= seen.len() {
            seen.resize(u + 1, Vec::new());
            events_so_far.resize(u + 1, 0);
        }
        set_mask(&mut mask, &seen[u], true);
        let lists = models
            .iter()
            .map(|m| m.recommend(x.user, depth, &mask, x.timestamp))
            .collect();
        set_mask(&mut mask, &seen[u], false);
        out.push(RecordedEvent {
            user: x.user,
            item: x.item,
            cold: cold.get(u).copied().unwrap_or(true) && events_so_far[u] >= warmup,
            lists,
        });
        events_so_far[u] += 1;
        for m in models.iter_mut() {
            m.observe(x)?;
        }
        if let Err(p) = seen[u].binary_search(&x.item) {
            seen[u].insert(p, x.item);
        }
    }
    Ok(out)
}

/// Streaming and cold-start metrics of the weighted RRF (`rrf_k`) of recorded
/// lists: `weights[m]` weighs `lists[m]`.
pub fn score_recorded(
    events: &[RecordedEvent],
    weights: &[f32],
    rrf_k: f32,
    k: usize,
    n_items: usize,
) -> ReplayReport {
    let mut stream = Accumulator::new(k, n_items);
    let mut cold = Accumulator::new(k, n_items);
    for e in events {
        let refs: Vec<&[u32]> = e.lists.iter().map(|l| l.as_slice()).collect();
        let fused: Vec<u32> = crate::recommend::fusion::rrf(&refs, weights, rrf_k, k)
            .into_iter()
            .map(|x| x.0)
            .collect();
        let rel = [e.item];
        stream.add(e.user, &fused, &rel);
        if e.cold {
            cold.add(e.user, &fused, &rel);
        }
    }
    ReplayReport {
        streaming: stream.summary(),
        cold_start: cold.summary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::dataset;
    use std::cell::RefCell;
    use std::collections::HashSet;

    /// Records everything it is told and fails the test on any leak.
    struct Spy {
        known: RefCell<HashSet<(u32, u32)>>,
        test: HashSet<(u32, u32)>,
        log: RefCell<Vec<(char, u32, u32)>>,
        /// (user, now) of every request.
        nows: RefCell<Vec<(u32, i64)>>,
        n_items: usize,
    }

    impl Spy {
        fn new(train: &Dataset, test: &[Interaction]) -> Self {
            let known: HashSet<(u32, u32)> = train
                .interactions
                .iter()
                .map(|x| (x.user, x.item))
                .collect();
            let test: HashSet<(u32, u32)> = test.iter().map(|x| (x.user, x.item)).collect();
            assert!(
                known.is_disjoint(&test),
                "a test interaction is in training"
            );
            Spy {
                known: RefCell::new(known),
                test,
                log: RefCell::new(Vec::new()),
                nows: RefCell::new(Vec::new()),
                n_items: train.n_items(),
            }
        }
    }

    impl OnlineRecommender for Spy {
        fn name(&self) -> &str {
            "spy"
        }
        fn recommend(&self, user: u32, k: usize, exclude: &[bool], now: i64) -> Vec<u32> {
            // Excluded items are exactly what the model was told about for this
            // user: every seen item (training, earlier replayed events) and never
            // a not-yet-observed test item.
            for i in 0..self.n_items.max(exclude.len()) {
                let e = exclude.get(i).copied().unwrap_or(false);
                let known = self.known.borrow().contains(&(user, i as u32));
                assert_eq!(e, known, "user {user} item {i}: excluded {e}, seen {known}");
            }
            self.nows.borrow_mut().push((user, now));
            self.log.borrow_mut().push(('r', user, 0));
            (0..self.n_items as u32)
                .filter(|&i| !exclude[i as usize])
                .take(k)
                .collect()
        }
        fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
            assert!(self.test.contains(&(x.user, x.item)));
            assert!(
                self.known.borrow_mut().insert((x.user, x.item)),
                "observed twice"
            );
            let log = self.log.borrow();
            let last = log.last().copied();
            drop(log);
            assert_eq!(
                last,
                Some(('r', x.user, 0)),
                "event observed before it was ranked"
            );
            self.log.borrow_mut().push(('o', x.user, x.item));
            Ok(())
        }
    }

    fn sample() -> Dataset {
        let mut pairs = Vec::new();
        for u in 0..6u32 {
            for i in 0..8u32 {
                if (u + i) % 3 != 0 {
                    pairs.push((u, i));
                }
            }
        }
        let mut ds = dataset(8, 12, &pairs);
        // Users 6 and 7 only appear late (cold start).
        for (t, (u, i)) in [
            (6, 1),
            (6, 2),
            (7, 3),
            (6, 4),
            (6, 5),
            (7, 6),
            (6, 7),
            (6, 9),
        ]
        .into_iter()
        .enumerate()
        {
            ds.interactions.push(Interaction {
                user: u,
                item: i,
                rating: 3.0,
                timestamp: 5_000 + t as i64,
            });
        }
        ds
    }

    #[test]
    fn static_split_is_stratified_seeded_and_disjoint() {
        let ds = sample();
        let a = static_split(&ds, 0.75, 1).unwrap();
        let b = static_split(&ds, 0.75, 1).unwrap();
        let c = static_split(&ds, 0.75, 2).unwrap();
        assert_eq!(a.test, b.test);
        assert_ne!(a.test, c.test);
        assert_eq!(
            a.train.interactions.len() + a.test.len(),
            ds.interactions.len()
        );
        for u in 0..8u32 {
            let n = ds.interactions.iter().filter(|x| x.user == u).count();
            let nt = a.train.interactions.iter().filter(|x| x.user == u).count();
            assert_eq!(nt, (0.75 * n as f64).round() as usize, "user {u}");
        }
        assert!(static_split(&ds, 1.0, 1).is_err());
    }

    #[test]
    fn static_protocol_never_leaks_and_never_observes() {
        let ds = sample();
        let split = static_split(&ds, 0.75, 3).unwrap();
        let spy = Spy::new(&split.train, &split.test);
        let s = eval_static(&split, &spy, 3);
        assert!(spy.log.borrow().iter().all(|e| e.0 == 'r'));
        let test_users: HashSet<u32> = split.test.iter().map(|x| x.user).collect();
        assert_eq!(s.users, test_users.len());
        assert_eq!(spy.log.borrow().len(), test_users.len());
        // `now` is the user's latest training timestamp, never a test one.
        for &(u, now) in spy.nows.borrow().iter() {
            let last = split
                .train
                .interactions
                .iter()
                .filter(|x| x.user == u)
                .map(|x| x.timestamp)
                .max()
                .unwrap_or(0);
            assert_eq!(now, last, "user {u}");
        }
    }

    #[test]
    fn temporal_cutoff_is_the_floor_quantile_timestamp() {
        // 32 pair interactions at t = 1000..1031, then 8 at t = 5000..5007.
        let ds = sample();
        assert_eq!(ds.interactions.len(), 40);
        // floor(0.61 · 40) = 24 → the 25th smallest timestamp, 1024.
        let s = temporal_split(&ds, 0.61).unwrap();
        assert_eq!(s.cutoff, Some(1024));
        assert_eq!((s.train.interactions.len(), s.test.len()), (24, 16));
        // floor(0.8 · 40) = 32 → 5000: exactly the late events are test.
        let s = temporal_split(&ds, 0.8).unwrap();
        assert_eq!(s.cutoff, Some(5000));
        assert_eq!(s.test.len(), 8);
        assert!(temporal_split(&ds, 0.0).is_err());
    }

    #[test]
    fn replay_ranks_each_event_before_observing_it_and_finds_cold_users() {
        let ds = sample();
        let split = temporal_split(&ds, 0.8).unwrap();
        let cutoff = split.cutoff.unwrap();
        assert!(split
            .train
            .interactions
            .iter()
            .all(|x| x.timestamp < cutoff));
        assert!(split.test.iter().all(|x| x.timestamp >= cutoff));
        assert!(split
            .test
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp));
        let mut spy = Spy::new(&split.train, &split.test);
        let rep = replay(&split, &mut spy, 3, 2).unwrap();
        let log = spy.log.borrow();
        let observed: Vec<(u32, u32)> = log
            .iter()
            .filter(|e| e.0 == 'o')
            .map(|e| (e.1, e.2))
            .collect();
        let want: Vec<(u32, u32)> = split.test.iter().map(|x| (x.user, x.item)).collect();
        assert_eq!(observed, want);
        assert_eq!(rep.streaming.lists, split.test.len());
        // Each request is made at its event's time.
        let at: Vec<(u32, i64)> = split.test.iter().map(|x| (x.user, x.timestamp)).collect();
        assert_eq!(*spy.nows.borrow(), at);
        // Users 6 and 7 are cold; user 6 has 6 events (4 scored after warmup 2),
        // user 7 has 2 (none scored).
        assert_eq!(rep.cold_start.users, 1);
        assert_eq!(rep.cold_start.lists, 4);
    }

    #[test]
    fn bad_items_are_errors_not_panics() {
        let mut ds = sample();
        ds.interactions.last_mut().unwrap().item = 99;
        let split = temporal_split(&ds, 0.8).unwrap();
        let mut pop = crate::recommend::popularity::Popularity::train(&split.train).unwrap();
        assert!(replay(&split, &mut pop, 3, 2).is_err());
        let split = static_split(&ds, 0.75, 1).unwrap();
        let _ = eval_static(&split, &pop, 3);
    }

    #[test]
    fn metrics_reward_a_model_that_knows_the_answer() {
        // An oracle that is handed the test set scores 1.0 hit rate: the harness
        // does compare rankings against the held-out items.
        struct Oracle(Vec<Vec<u32>>);
        impl OnlineRecommender for Oracle {
            fn name(&self) -> &str {
                "oracle"
            }
            fn recommend(&self, user: u32, k: usize, _e: &[bool], _n: i64) -> Vec<u32> {
                self.0[user as usize].iter().copied().take(k).collect()
            }
            fn observe(&mut self, _x: &Interaction) -> Result<(), RecommendError> {
                Ok(())
            }
        }
        let ds = sample();
        let split = static_split(&ds, 0.75, 3).unwrap();
        let mut truth = vec![Vec::new(); 8];
        for x in &split.test {
            truth[x.user as usize].push(x.item);
        }
        let s = eval_static(&split, &Oracle(truth), 10);
        assert!((s.hr - 1.0).abs() < 1e-12 && (s.recall - 1.0).abs() < 1e-12);
        assert!((s.ndcg - 1.0).abs() < 1e-12);
    }

    #[test]
    fn recorded_lists_fuse_to_the_same_metrics_as_replaying_the_fusion() {
        use crate::recommend::fusion::{Component, Fusion, FusionConfig};
        use crate::recommend::item_knn::{ItemKnn, ItemKnnConfig};
        use crate::recommend::popularity::Popularity;
        let ds = sample();
        let split = temporal_split(&ds, 0.6).unwrap();
        let knn = ItemKnn::train(&split.train, &ItemKnnConfig::default()).unwrap();
        let pop = Popularity::train(&split.train).unwrap();
        let fc = FusionConfig { k: 60.0, depth: 5 };
        let w = [0.7f32, 0.3];
        let mut fusion = Fusion::new(
            "f",
            &split.train,
            vec![
                Component {
                    role: "cf".into(),
                    weight: w[0],
                    model: Box::new(knn.clone()),
                },
                Component {
                    role: "pop".into(),
                    weight: w[1],
                    model: Box::new(pop.clone()),
                },
            ],
            fc,
        )
        .unwrap();
        let direct = replay(&split, &mut fusion, 3, 1).unwrap();
        let mut models: Vec<Box<dyn OnlineRecommender>> = vec![Box::new(knn), Box::new(pop)];
        let events = replay_record(&split, &mut models, fc.depth, 1).unwrap();
        assert_eq!(events.len(), split.test.len());
        assert!(events
            .iter()
            .all(|e| e.lists.len() == 2 && e.lists[0].len() <= 5));
        let rec = score_recorded(&events, &w, fc.k, 3, ds.n_items());
        assert_eq!(rec, direct);
        // A different weight set gives different fused lists somewhere.
        let other = score_recorded(&events, &[0.0, 1.0], fc.k, 3, ds.n_items());
        assert_ne!(other.streaming, rec.streaming);
    }
}
