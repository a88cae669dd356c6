//! The ReasoningBank as a recommendation strategy: a shared memory of "viewers in
//! this state went on to watch that", learned live from the interaction stream.
//!
//! **State.** A viewer's query embedding is the recency-weighted mean of the item
//! vectors of their last `window` watched titles (weights `recency_decay^age`,
//! newest first), unit-normalized. The item vectors are any item embedding of the
//! global model (the evaluation uses BPR-MF item factors).
//!
//! **Learning.** When a viewer watches item `j` while in state `q`, the memory
//! stores the pattern `q → {j}` in a [`ReasoningBank`] (owner = the viewer).
//! Patterns become searchable `sync_delay_secs` after they were made (the device
//! uploads them to the sync server's shared bank and fetches the bank back; the
//! delay models that round trip, and applies to the viewer's own patterns too). When a viewer watches an item that a matched pattern
//! predicted, that pattern is reinforced (confidence towards 1, usage + 1, the
//! bank's rule), so patterns that keep predicting well weigh more.
//!
//! **Ranking.** The `neighbours` patterns most similar to the viewer's current
//! state (cosine ≥ `min_similarity`) vote for their results with weight
//! `similarity^sim_power · boost`, `boost = confidence · (1 + log2(usage)/10)`
//! (the bank's boost formula). Items are ranked by total vote; an item no pattern
//! voted for is not listed (the list can be shorter than `k`).
//!
//! **Where patterns come from.** A memory built with [`PatternMemory::new`] starts
//! empty. [`PatternMemory::warm_up`] streams a history through it first (the bank as
//! it would stand had it been running live through that period). With
//! `learn_patterns = false` the memory still follows each viewer's state but stores
//! and reinforces nothing (an ablation that isolates what live learning adds).
//! Prune / merge / decay maintenance is the sync server's job (scheduled there) and
//! is not run here.

use std::collections::VecDeque;

use super::{
    check_interaction, time_order, top_k, OnlineRecommender, Reason, RecentTitles, RecommendError,
};
use crate::bank::{BankConfig, NewPattern, PatternContext, ReasoningBank};
use crate::data::{Dataset, Interaction};

#[derive(Clone, Debug, PartialEq)]
pub struct MemoryConfig {
    /// Titles that make up a viewer's state.
    pub window: usize,
    /// Weight of each older title in the state, relative to the next newer one.
    pub recency_decay: f32,
    /// Patterns consulted per request.
    pub neighbours: usize,
    /// Cosine floor of a consulted pattern.
    pub min_similarity: f32,
    /// Exponent sharpening the similarity weights.
    pub sim_power: f32,
    /// How long a new pattern takes to reach the devices (upload + fetch).
    pub sync_delay_secs: i64,
    /// Store and reinforce patterns from observed events (false: read only).
    pub learn_patterns: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            window: 3,
            recency_decay: 0.6,
            neighbours: 300,
            min_similarity: 0.3,
            sim_power: 2.0,
            sync_delay_secs: 3_600,
            learn_patterns: true,
        }
    }
}

impl MemoryConfig {
    fn validate(&self) -> Result<(), RecommendError> {
        let ok = self.window >= 1
            && self.recency_decay.is_finite()
            && self.recency_decay > 0.0
            && self.recency_decay <= 1.0
            && self.neighbours >= 1
            && self.min_similarity.is_finite()
            && (-1.0..=1.0).contains(&self.min_similarity)
            && self.sim_power.is_finite()
            && self.sim_power > 0.0
            && self.sync_delay_secs >= 0;
        if ok {
            Ok(())
        } else {
            Err(RecommendError::InvalidConfig(format!(
                "memory: window ≥ 1, 0 < recency_decay ≤ 1, neighbours ≥ 1, \
                 min_similarity in [-1, 1], sim_power > 0, delays ≥ 0 (got {self:?})"
            )))
        }
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct PatternMemory {
    cfg: MemoryConfig,
    bank: ReasoningBank,
    dim: usize,
    /// Unit-normalized item vectors, `n_items × dim`.
    item_vecs: Vec<f32>,
    /// Each viewer's last `window` titles.
    recent: RecentTitles,
    /// Other viewers' patterns on their way to this device: (visible at, pattern).
    pending: VecDeque<(i64, NewPattern)>,
    titles: Vec<String>,
}

fn normalize(v: &mut [f32]) -> bool {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
        true
    } else {
        false
    }
}

impl PatternMemory {
    /// An empty memory over `item_vecs` (`n_items × dim`, row-major). Each viewer's
    /// starting state is taken from their history in `history` (time order).
    pub fn new(
        history: &Dataset,
        item_vecs: &[f32],
        dim: usize,
        cfg: &MemoryConfig,
    ) -> Result<Self, RecommendError> {
        cfg.validate()?;
        let n_items = history.n_items();
        if dim == 0 || item_vecs.len() != n_items * dim {
            return Err(RecommendError::InvalidConfig(format!(
                "memory: item vectors must be n_items × dim = {n_items} × {dim}, got {} floats",
                item_vecs.len()
            )));
        }
        if item_vecs.iter().any(|x| !x.is_finite()) {
            return Err(RecommendError::NonFinite);
        }
        let mut vecs = item_vecs.to_vec();
        for row in vecs.chunks_exact_mut(dim) {
            normalize(row);
        }
        let bank = ReasoningBank::new(BankConfig {
            min_similarity: cfg.min_similarity,
            ..BankConfig::with_dim(dim)
        })
        .map_err(|e| RecommendError::InvalidConfig(format!("memory bank: {e}")))?;
        let mut m = PatternMemory {
            cfg: cfg.clone(),
            bank,
            dim,
            item_vecs: vecs,
            recent: RecentTitles::new(history.n_users(), cfg.window),
            pending: VecDeque::new(),
            titles: history.items.iter().map(|i| i.display_title()).collect(),
        };
        for x in time_order(history) {
            if x.item as usize >= n_items {
                return Err(RecommendError::ItemOutOfRange {
                    item: x.item,
                    n_items,
                });
            }
            m.recent.push(x.user, x.item);
        }
        Ok(m)
    }

    /// Learns from `history` as if it had been streamed live (time order): every
    /// interaction is observed. Viewer states restart from their first title.
    pub fn warm_up(&mut self, history: &Dataset) -> Result<(), RecommendError> {
        self.recent.clear();
        for x in time_order(history) {
            self.observe(x)?;
        }
        Ok(())
    }

    /// Turns pattern learning on or off (states keep following the viewers).
    pub fn set_learning(&mut self, on: bool) {
        self.cfg.learn_patterns = on;
    }

    /// Live patterns in the bank (not counting those still in transit).
    pub fn patterns(&self) -> usize {
        self.bank.len()
    }

    pub fn bank(&self) -> &ReasoningBank {
        &self.bank
    }

    /// The viewer's current state embedding, `None` before their first title.
    pub fn state(&self, user: u32) -> Option<Vec<f32>> {
        let r = self.recent.get(user)?;
        if r.is_empty() {
            return None;
        }
        let mut q = vec![0.0f32; self.dim];
        let mut w = 1.0f32;
        for &i in r.iter().rev() {
            let v = &self.item_vecs[i as usize * self.dim..(i as usize + 1) * self.dim];
            q.iter_mut().zip(v).for_each(|(a, b)| *a += w * b);
            w *= self.cfg.recency_decay;
        }
        normalize(&mut q).then_some(q)
    }

    /// The `neighbours` stored patterns most similar to state `q` (≥ `min_similarity`).
    fn nearest(&self, q: &[f32]) -> Option<Vec<crate::bank::MatchedPattern>> {
        self.bank
            .find_similar_patterns(
                q,
                &PatternContext::default(),
                self.cfg.neighbours,
                self.cfg.min_similarity,
            )
            .ok()
            .map(|f| f.matches)
    }

    /// Votes per item from the patterns matching `user`'s state, plus the id of
    /// the pattern that voted most for each item. Patterns in transit whose time
    /// has come (`visible ≤ now`) are searched too.
    fn votes(&self, user: u32, now: i64) -> Vec<(u32, f32, u64)> {
        let Some(q) = self.state(user) else {
            return Vec::new();
        };
        let n_items = self.item_vecs.len() / self.dim;
        let mut best: std::collections::BTreeMap<u32, (f32, f32, u64)> = Default::default();
        let mut vote = |item: u64, w: f32, pid: u64| {
            if (item as usize) < n_items {
                let e = best.entry(item as u32).or_insert((0.0, 0.0, pid));
                e.0 += w;
                if w > e.1 {
                    e.1 = w;
                    e.2 = pid;
                }
            }
        };
        if let Some(matches) = self.nearest(&q) {
            for m in &matches {
                let w = m.similarity.max(0.0).powf(self.cfg.sim_power)
                    * self.bank.boost_of(m.confidence, m.usage_count);
                for &r in &m.successful_results {
                    vote(r, w, m.id);
                }
            }
        }
        // Arrived since the last observed event but not yet inserted.
        let init = self.bank.config().initial_confidence;
        for (visible, p) in &self.pending {
            if *visible > now {
                break;
            }
            let mut e = p.query_embedding.clone();
            if !normalize(&mut e) {
                continue;
            }
            let s = super::dot(&e, &q);
            if s >= self.cfg.min_similarity {
                let w = s.powf(self.cfg.sim_power) * self.bank.boost_of(init, 1);
                for &r in &p.successful_results {
                    vote(r, w, u64::MAX);
                }
            }
        }
        best.into_iter().map(|(i, (v, _, p))| (i, v, p)).collect()
    }

    fn flush(&mut self, now: i64) -> Result<(), RecommendError> {
        while self.pending.front().is_some_and(|(t, _)| *t <= now) {
            let (t, p) = self.pending.pop_front().expect("front checked");
            self.bank
                .store_pattern(p, t)
                .map_err(|e| RecommendError::Personalize(format!("memory bank: {e}")))?;
        }
        Ok(())
    }
}

impl OnlineRecommender for PatternMemory {
    fn name(&self) -> &str {
        "memory"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], now: i64) -> Vec<u32> {
        let votes = self.votes(user, now);
        if votes.is_empty() {
            return Vec::new();
        }
        let n_items = self.item_vecs.len() / self.dim;
        let mut scores = vec![f32::NAN; n_items];
        for (i, v, _) in votes {
            scores[i as usize] = v;
        }
        top_k(&scores, k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        check_interaction(x, self.item_vecs.len() / self.dim)?;
        self.flush(x.timestamp)?;
        if let Some(q) = self.state(x.user).filter(|_| self.cfg.learn_patterns) {
            // Reinforce the viewer's matched patterns that predicted this title.
            if let Some(matches) = self.nearest(&q) {
                for m in matches {
                    if m.successful_results.contains(&(x.item as u64)) {
                        let _ = self.bank.reinforce_pattern(m.id, x.timestamp);
                    }
                }
            }
            let p = NewPattern {
                query_embedding: q,
                successful_results: vec![x.item as u64],
                user: Some(x.user as u64),
                segment: None,
                context: PatternContext::default(),
                confidence: self.bank.config().initial_confidence,
                usage_count: 1,
            };
            self.pending
                .push_back((x.timestamp + self.cfg.sync_delay_secs, p));
            self.flush(x.timestamp)?;
        }
        self.recent.push(x.user, x.item);
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, now: i64) -> Option<Reason> {
        let votes = self.votes(user, now);
        let (_, _, pid) = votes.into_iter().find(|v| v.0 == item)?;
        let last = self.recent.latest(user)?;
        let title = self.titles.get(last as usize)?;
        Some(Reason::Text(if pid == u64::MAX {
            format!("Matches a fresh pattern: viewers who watched {title} went on to this")
        } else {
            format!(
                "Matches successful pattern #{pid}: viewers who watched {title} went on to this"
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::dataset;

    /// Six items with one-hot vectors: states are exact, so similarities are 0 or 1.
    fn onehot(n: usize) -> Vec<f32> {
        let mut v = vec![0.0; n * n];
        for i in 0..n {
            v[i * n + i] = 1.0;
        }
        v
    }

    fn ev(user: u32, item: u32, t: i64) -> Interaction {
        Interaction {
            user,
            item,
            rating: 4.0,
            timestamp: t,
        }
    }

    fn cfg() -> MemoryConfig {
        MemoryConfig {
            window: 1,
            min_similarity: 0.5,
            sync_delay_secs: 100,
            ..Default::default()
        }
    }

    #[test]
    fn learns_what_viewers_in_a_state_watch_next_after_the_sync_delay() {
        // Users 0..3 all watched item 0 in training; nobody has gone anywhere from it.
        let ds = dataset(4, 6, &[(0, 0), (1, 0), (2, 0), (3, 0)]);
        let mut m = PatternMemory::new(&ds, &onehot(6), 6, &cfg()).unwrap();
        assert_eq!(m.patterns(), 0);
        assert!(m.recommend(3, 3, &[true], 10_000).is_empty());
        // Users 0 and 1 go 0 → 4, user 2 goes 0 → 5.
        m.observe(&ev(0, 4, 10_000)).unwrap();
        m.observe(&ev(1, 4, 10_010)).unwrap();
        m.observe(&ev(2, 5, 10_020)).unwrap();
        // Before the delay has passed nothing is visible (no peeking ahead).
        assert!(m.recommend(3, 3, &[true], 10_050).is_empty());
        // After it, item 4 (two votes) ranks above item 5 (one vote); the pending
        // patterns are visible even before the next event flushes them.
        assert_eq!(m.recommend(3, 3, &[true], 10_200), [4, 5]);
        m.observe(&ev(0, 1, 10_300)).unwrap();
        // The three are in the bank now; user 0's new pattern 4 → 1 is in transit.
        assert_eq!(m.patterns(), 3);
        assert_eq!(m.pending.len(), 1);
        // The explanation names the state's title.
        match m.explain(3, 4, 10_300) {
            Some(Reason::Text(t)) => assert!(t.contains("Item 0"), "{t}"),
            other => panic!("{other:?}"),
        }
        // A viewer in another state (item 1) gets what followed item 1: nothing yet.
        let ds2 = dataset(5, 6, &[(4, 1)]);
        let mut m2 = PatternMemory::new(&ds2, &onehot(6), 6, &cfg()).unwrap();
        m2.observe(&ev(0, 0, 0)).unwrap(); // user 0 had no state: no pattern
        assert_eq!(m2.patterns(), 0);
        assert!(m2.recommend(4, 3, &[], 1_000).is_empty());
    }

    #[test]
    fn reinforcement_favours_patterns_that_came_true() {
        let ds = dataset(4, 6, &[(0, 0), (1, 0), (2, 0), (3, 0)]);
        let mut m = PatternMemory::new(&ds, &onehot(6), 6, &cfg()).unwrap();
        m.observe(&ev(0, 4, 0)).unwrap();
        m.observe(&ev(1, 5, 1)).unwrap();
        // One vote each; tie → lower id first.
        assert_eq!(m.recommend(3, 2, &[true], 500), [4, 5]);
        // User 2 (in state 0) watches 5: the pattern 0 → 5 is reinforced.
        m.observe(&ev(2, 5, 600)).unwrap();
        let p5 = m
            .bank()
            .patterns()
            .into_iter()
            .find(|p| p.successful_results == [5] && p.user == Some(1))
            .unwrap();
        assert!(p5.usage_count == 2 && p5.confidence > m.bank().config().initial_confidence);
        assert_eq!(m.recommend(3, 2, &[true], 700)[0], 5);
    }

    #[test]
    fn read_only_memory_follows_states_but_stores_nothing() {
        let ds = dataset(2, 6, &[(0, 0), (1, 0)]);
        let mut m = PatternMemory::new(&ds, &onehot(6), 6, &cfg()).unwrap();
        m.set_learning(false);
        m.observe(&ev(0, 3, 0)).unwrap();
        m.observe(&ev(0, 4, 500)).unwrap();
        assert_eq!(m.patterns(), 0);
        assert_eq!(m.state(0).unwrap()[4], 1.0);
        // warm_up learns from a history streamed through it.
        let mut w = PatternMemory::new(&ds, &onehot(6), 6, &cfg()).unwrap();
        let hist = dataset(2, 6, &[(0, 0), (0, 2), (1, 0)]);
        w.warm_up(&hist).unwrap();
        w.observe(&ev(1, 3, 10_000)).unwrap(); // flushes the warm-up pattern
        assert_eq!(w.recommend(1, 2, &[], 10_000), Vec::<u32>::new()); // user 1 is at 3 now
        assert!(w
            .bank()
            .patterns()
            .iter()
            .any(|p| p.successful_results == [2]));
    }

    /// `window` titles, each weighted `recency_decay^age` (newest weight 1).
    #[test]
    fn state_is_the_recency_weighted_mean_of_the_last_window_titles() {
        // Item 4 comes first and falls out of the window of 3. Rows need not be unit.
        let ds = dataset(1, 5, &[(0, 4), (0, 0), (0, 1), (0, 2)]);
        let mut vecs = onehot(5);
        vecs[0] = 2.0;
        vecs[2 * 5 + 2] = 0.5;
        let c = MemoryConfig {
            window: 3,
            recency_decay: 0.5,
            ..cfg()
        };
        let m = PatternMemory::new(&ds, &vecs, 5, &c).unwrap();
        // Newest (2) weight 1, then 1 weight 0.5, oldest (0) weight 0.25.
        let n = (1.0f32 + 0.25 + 0.0625).sqrt();
        let want = [0.25 / n, 0.5 / n, 1.0 / n, 0.0, 0.0];
        let got = m.state(0).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    /// Patterns vote `similarity^sim_power · boost`: one exact match outweighs two
    /// patterns at cosine 0.5, whether they are in the bank or still in transit.
    #[test]
    fn votes_are_weighted_by_similarity_to_the_power() {
        // Item 0 = (1, 0), item 1 at 60° from it (row not unit), items 2, 3 = (0, 1).
        let vecs = [1.0, 0.0, 1.0, 3f32.sqrt(), 0.0, 1.0, 0.0, 1.0];
        // Users 0 and 3 are at item 0, users 1 and 2 at item 1; user 4 has no title.
        let ds = dataset(5, 4, &[(0, 0), (1, 1), (2, 1), (3, 0)]);
        for p in [1.0f32, 2.0, 3.0] {
            let c = MemoryConfig {
                sim_power: p,
                min_similarity: 0.3,
                ..cfg()
            };
            let mut m = PatternMemory::new(&ds, &vecs, 2, &c).unwrap();
            // Patterns (1, 0) → 2 and, twice, (0.5, 0.87) → 3.
            m.observe(&ev(0, 2, 10_000)).unwrap();
            m.observe(&ev(1, 3, 10_001)).unwrap();
            m.observe(&ev(2, 3, 10_002)).unwrap();
            // Each new pattern: confidence 0.6, usage 1 → boost 0.6.
            let boost = m.bank().boost_of(m.bank().config().initial_confidence, 1);
            assert!((boost - 0.6).abs() < 1e-6);
            let want = [(2u32, 0.6f32), (3, 2.0 * 0.5f32.powf(p) * 0.6)];
            let check = |m: &PatternMemory, path: &str| {
                let got: Vec<(u32, f32)> =
                    m.votes(3, 10_200).into_iter().map(|v| (v.0, v.1)).collect();
                assert_eq!(got.len(), 2, "{path} p={p}: {got:?}");
                for ((gi, gv), (wi, wv)) in got.iter().zip(want) {
                    assert!(*gi == wi && (gv - wv).abs() < 1e-5, "{path} p={p}: {got:?}");
                }
                // Unweighted, item 3 (two votes) would win.
                assert_eq!(m.recommend(3, 2, &[], 10_200), [2, 3], "{path} p={p}");
            };
            // Still in transit at 10 200 ...
            assert_eq!((m.patterns(), m.pending.len()), (0, 3));
            check(&m, "pending");
            // ... and in the bank once an event (user 4: no state, no pattern) flushes them.
            m.observe(&ev(4, 0, 10_200)).unwrap();
            assert_eq!((m.patterns(), m.pending.len()), (3, 0));
            check(&m, "bank");
        }
    }

    /// End to end with a window of 2: the newest title steers the state, hence the votes.
    #[test]
    fn the_newest_title_weighs_most_in_the_ranking() {
        // Patterns (1, 0) → 2 and (0, 1) → 3; user 2 watched 0, then 1.
        let vecs = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let ds = dataset(4, 4, &[(0, 0), (1, 1), (2, 0), (2, 1)]);
        let c = MemoryConfig {
            window: 2,
            recency_decay: 0.5,
            min_similarity: 0.3,
            ..cfg()
        };
        let mut m = PatternMemory::new(&ds, &vecs, 2, &c).unwrap();
        m.observe(&ev(0, 2, 10_000)).unwrap();
        m.observe(&ev(1, 3, 10_001)).unwrap();
        m.observe(&ev(3, 0, 10_200)).unwrap(); // flush; user 3 had no state
        assert_eq!(m.patterns(), 2);
        // State (0.5, 1)/√1.25: cosines 1/√5 and 2/√5, squared 0.2 and 0.8, × boost 0.6.
        let n = 1.25f32.sqrt();
        let q = m.state(2).unwrap();
        assert!((q[0] - 0.5 / n).abs() < 1e-6 && (q[1] - 1.0 / n).abs() < 1e-6);
        let got = m.votes(2, 10_200);
        assert_eq!(got.len(), 2);
        assert!(got[0].0 == 2 && (got[0].1 - 0.12).abs() < 1e-5, "{got:?}");
        assert!(got[1].0 == 3 && (got[1].1 - 0.48).abs() < 1e-5, "{got:?}");
        assert_eq!(m.recommend(2, 2, &[], 10_200), [3, 2]);
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let ds = dataset(2, 3, &[(0, 0)]);
        assert!(PatternMemory::new(&ds, &onehot(2), 2, &cfg()).is_err());
        let mut bad = onehot(3);
        bad[0] = f32::NAN;
        assert!(PatternMemory::new(&ds, &bad, 3, &cfg()).is_err());
        for c in [
            MemoryConfig { window: 0, ..cfg() },
            MemoryConfig {
                recency_decay: 1.5,
                ..cfg()
            },
            MemoryConfig {
                sim_power: f32::NAN,
                ..cfg()
            },
            MemoryConfig {
                sync_delay_secs: -1,
                ..cfg()
            },
        ] {
            assert!(PatternMemory::new(&ds, &onehot(3), 3, &c).is_err(), "{c:?}");
        }
        let mut m = PatternMemory::new(&ds, &onehot(3), 3, &cfg()).unwrap();
        assert!(matches!(
            m.observe(&ev(0, 7, 0)),
            Err(RecommendError::ItemOutOfRange { item: 7, .. })
        ));
        let mut nan = ev(0, 1, 0);
        nan.rating = f32::NAN;
        assert!(m.observe(&nan).is_err());
        assert_eq!(m.state(0).unwrap()[0], 1.0);
        assert!(m.pending.is_empty());
    }
}
