//! Recommendation strategies. Every strategy is a trained model that implements
//! [`OnlineRecommender`]: it ranks unseen items for a user and learns from each new
//! interaction the user makes ("on-device" online updates).
//!
//! - [`popularity`]: interaction counts.
//! - [`item_knn`]: cosine item–item neighbours on the binary matrix, with shrinkage.
//! - [`ease`]: EASE (Steck 2019), closed-form item–item regression.
//! - [`bpr`]: matrix factorisation trained with BPR (SGD), online user fold-in.
//! - [`content`]: genre / tag / title / year vectors, user profile = weighted mean.
//! - [`graph`]: GraphSAGE-style mean aggregation over the user–item–genre graph, BPR.
//! - [`context`]: time-of-day / day-of-week item priors.
//! - [`fusion`]: weighted reciprocal rank fusion with explanations.
//! - [`memory`]: the ReasoningBank as a live "viewers in this state watched next" memory.
//! - [`trajectory`]: live exact-title links "viewers who watched A watched B next to it".
//! - [`device`]: the on-device fused ranking of the npm engine (taste, query match,
//!   neighbours of recent titles, context, freshness; RRF weights by route).
//! - [`sona`]: BPR-MF plus the on-device LoRA + EWC++ adapter of [`crate::personalize`]
//!   (the adapter half of the evaluation's SONA layer).
//! - [`linalg`]: dense SPD inverse (Cholesky) used by EASE.

pub mod bpr;
pub mod content;
pub mod context;
pub mod device;
pub mod ease;
pub mod fusion;
pub mod graph;
pub mod item_knn;
pub mod linalg;
pub mod memory;
pub mod popularity;
pub mod sona;
pub mod trajectory;

use crate::data::{Dataset, Interaction};

/// Errors from building or updating a recommender.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecommendError {
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("the training data has no interactions")]
    NoInteractions,
    #[error("item {item} is out of range (catalog has {n_items} items)")]
    ItemOutOfRange { item: u32, n_items: usize },
    #[error("user {user} is out of range (model has {n_users} users)")]
    UserOutOfRange { user: u32, n_users: usize },
    #[error("interaction has a non-finite rating or timestamp")]
    NonFinite,
    #[error("personalization: {0}")]
    Personalize(String),
    #[error("matrix is not positive definite (pivot {pivot} = {value})")]
    NotPositiveDefinite { pivot: usize, value: f64 },
}

/// A trained model that ranks items and keeps learning from new interactions.
pub trait OnlineRecommender {
    /// Short stable name used in reports ("popularity", "ease", …).
    fn name(&self) -> &str;
    /// The `k` best items for `user`, best first. Items with `exclude[item] == true`
    /// never appear (a shorter mask leaves later items allowed). `now` (unix
    /// seconds) is the request time; models without a notion of time ignore it.
    /// Users the model has never seen get a non-personal ranking.
    fn recommend(&self, user: u32, k: usize, exclude: &[bool], now: i64) -> Vec<u32>;
    /// Learns from one new interaction. Rejects out-of-range items and leaves the
    /// model unchanged then.
    fn observe(&mut self, interaction: &Interaction) -> Result<(), RecommendError>;
    /// Why `item` would be recommended to `user`, when the model can say.
    fn explain(&self, _user: u32, _item: u32, _now: i64) -> Option<Reason> {
        None
    }
}

/// `ds`'s interactions in stream order: by time, ties by user then item.
pub(crate) fn time_order(ds: &Dataset) -> Vec<&Interaction> {
    let mut order: Vec<&Interaction> = ds.interactions.iter().collect();
    order.sort_by_key(|x| (x.timestamp, x.user, x.item));
    order
}

/// Each viewer's last `keep` distinct titles, newest last (a title watched again
/// moves to the end).
#[derive(Clone, Debug)]
pub(crate) struct RecentTitles {
    keep: usize,
    by_user: Vec<std::collections::VecDeque<u32>>,
}

impl RecentTitles {
    pub(crate) fn new(n_users: usize, keep: usize) -> Self {
        RecentTitles {
            keep,
            by_user: vec![Default::default(); n_users],
        }
    }

    pub(crate) fn push(&mut self, user: u32, item: u32) {
        let u = user as usize;
        if u >= self.by_user.len() {
            self.by_user.resize(u + 1, Default::default());
        }
        let r = &mut self.by_user[u];
        r.retain(|&i| i != item);
        r.push_back(item);
        while r.len() > self.keep {
            r.pop_front();
        }
    }

    /// The viewer's titles, oldest first; `None` for a viewer never seen.
    pub(crate) fn get(&self, user: u32) -> Option<&std::collections::VecDeque<u32>> {
        self.by_user.get(user as usize)
    }

    pub(crate) fn latest(&self, user: u32) -> Option<u32> {
        self.get(user)?.back().copied()
    }

    pub(crate) fn clear(&mut self) {
        self.by_user.iter_mut().for_each(|r| r.clear());
    }
}

/// A model's reason for a recommendation.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// "Because you watched <item>": the history item that contributes most.
    BecauseYouWatched(u32),
    /// Any other reason, as text.
    Text(String),
}

/// The history item of `user` that maximises `contribution(history_item)`, if any
/// contributes a positive amount.
pub(crate) fn best_history_item(
    hist: &History,
    user: u32,
    mut contribution: impl FnMut(u32) -> f32,
) -> Option<Reason> {
    let mut best: Option<(f32, u32)> = None;
    for i in hist.items(user) {
        let c = contribution(i);
        if c > 0.0 && best.is_none_or(|(b, bi)| c > b || (c == b && i < bi)) {
            best = Some((c, i));
        }
    }
    best.map(|(_, i)| Reason::BecauseYouWatched(i))
}

/// The usual checks on an observed interaction (shared by several models): its item is in a
/// catalog of `n_items` titles and its rating is finite.
pub(crate) fn check_interaction(x: &Interaction, n_items: usize) -> Result<(), RecommendError> {
    if x.item as usize >= n_items {
        return Err(RecommendError::ItemOutOfRange {
            item: x.item,
            n_items,
        });
    }
    if !x.rating.is_finite() {
        return Err(RecommendError::NonFinite);
    }
    Ok(())
}

/// Per-user interaction lists (item, rating, timestamp), in input order.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub by_user: Vec<Vec<(u32, f32, i64)>>,
    pub n_items: usize,
}

impl History {
    /// Groups `ds.interactions` by user. Fails on out-of-range items.
    pub fn from_dataset(ds: &Dataset) -> Result<Self, RecommendError> {
        let mut h = History {
            by_user: vec![Vec::new(); ds.n_users()],
            n_items: ds.n_items(),
        };
        for x in &ds.interactions {
            h.check(x)?;
            if x.user as usize >= ds.n_users() {
                return Err(RecommendError::UserOutOfRange {
                    user: x.user,
                    n_users: ds.n_users(),
                });
            }
        }
        for x in &ds.interactions {
            h.push(x);
        }
        Ok(h)
    }

    /// Validates an interaction against the catalog size.
    pub fn check(&self, x: &Interaction) -> Result<(), RecommendError> {
        check_interaction(x, self.n_items)
    }

    /// Appends (growing the user table when needed). Call [`History::check`] first.
    pub fn push(&mut self, x: &Interaction) {
        let u = x.user as usize;
        if u >= self.by_user.len() {
            self.by_user.resize(u + 1, Vec::new());
        }
        self.by_user[u].push((x.item, x.rating, x.timestamp));
    }

    /// The user's items (empty for unknown users).
    pub fn items(&self, user: u32) -> impl Iterator<Item = u32> + '_ {
        self.by_user
            .get(user as usize)
            .into_iter()
            .flat_map(|v| v.iter().map(|e| e.0))
    }

    pub fn len(&self, user: u32) -> usize {
        self.by_user.get(user as usize).map_or(0, |v| v.len())
    }

    pub fn is_empty(&self, user: u32) -> bool {
        self.len(user) == 0
    }
}

/// Dot product with eight independent accumulators (lets the compiler vectorise;
/// the summation order is fixed, so results are deterministic).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Indices of the `k` largest scores, best first, skipping excluded items. Ties go
/// to the lower index; NaN scores are never chosen.
pub fn top_k(scores: &[f32], k: usize, exclude: &[bool]) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return Vec::new();
    }
    for (i, &s) in scores.iter().enumerate() {
        if s.is_nan() || exclude.get(i).copied().unwrap_or(false) {
            continue;
        }
        if best.len() == k && s <= best[k - 1].0 {
            continue;
        }
        // Insert after every entry with score >= s (stable for ties: lower index first).
        let pos = best.partition_point(|&(b, _)| b >= s);
        best.insert(pos, (s, i as u32));
        if best.len() > k {
            best.pop();
        }
    }
    best.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::data::{Dataset, Interaction, Item};

    pub fn item(id: u32, genres: &[&str]) -> Item {
        Item {
            id,
            source_id: id as u64 + 1,
            title: format!("Item {id}"),
            year: Some(1990 + (id % 10) as u16),
            release_date: None,
            genres: genres.iter().map(|g| g.to_string()).collect(),
            tags: Vec::new(),
            platforms: Vec::new(),
        }
    }

    /// A dataset from (user, item) pairs, ratings 4, timestamps in list order.
    pub fn dataset(n_users: usize, n_items: usize, pairs: &[(u32, u32)]) -> Dataset {
        Dataset {
            items: (0..n_items as u32).map(|i| item(i, &[])).collect(),
            user_source_ids: (0..n_users as u64).collect(),
            interactions: pairs
                .iter()
                .enumerate()
                .map(|(t, &(user, item))| Interaction {
                    user,
                    item,
                    rating: 4.0,
                    timestamp: 1_000 + t as i64,
                })
                .collect(),
        }
    }

    /// Two taste clusters: users 0..n/2 like items 0..m/2, the others items m/2..m.
    /// Each user has every item of their cluster except one "held out" item.
    pub fn two_clusters(n_users: usize, n_items: usize) -> Dataset {
        let mut pairs = Vec::new();
        for u in 0..n_users as u32 {
            let (lo, hi) = if (u as usize) < n_users / 2 {
                (0, n_items / 2)
            } else {
                (n_items / 2, n_items)
            };
            for i in lo as u32..hi as u32 {
                if (i as usize - lo) % (hi - lo) != (u as usize) % (hi - lo) {
                    pairs.push((u, i));
                }
            }
        }
        dataset(n_users, n_items, &pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_titles_keep_the_newest_distinct_ones() {
        let mut r = RecentTitles::new(1, 3);
        assert_eq!(r.latest(5), None);
        for i in [1, 2, 3, 2, 4] {
            r.push(0, i);
        }
        // 2 moved to the end when watched again; 1 fell out.
        assert_eq!(
            r.get(0).unwrap().iter().copied().collect::<Vec<_>>(),
            [3, 2, 4]
        );
        r.push(4, 9); // a new viewer grows the table
        assert_eq!((r.latest(4), r.latest(0)), (Some(9), Some(4)));
        r.clear();
        assert_eq!((r.latest(4), r.latest(0)), (None, None));
    }

    #[test]
    fn top_k_orders_skips_excluded_and_breaks_ties_by_index() {
        let s = [0.5, 2.0, f32::NAN, 2.0, -1.0, 3.0];
        assert_eq!(top_k(&s, 3, &[]), [5, 1, 3]);
        assert_eq!(
            top_k(&s, 3, &[false, false, false, false, false, true]),
            [1, 3, 0]
        );
        assert_eq!(top_k(&s, 10, &[]), [5, 1, 3, 0, 4]);
        assert!(top_k(&s, 0, &[]).is_empty());
    }

    #[test]
    fn top_k_matches_full_sort() {
        let mut r = crate::rng::Rng::new(3);
        let s: Vec<f32> = (0..500).map(|_| (r.below(50) as f32) * 0.1).collect();
        let ex: Vec<bool> = (0..500).map(|_| r.chance(0.2)).collect();
        let mut idx: Vec<u32> = (0..500).filter(|&i| !ex[i as usize]).collect();
        idx.sort_by(|&a, &b| s[b as usize].total_cmp(&s[a as usize]).then(a.cmp(&b)));
        assert_eq!(top_k(&s, 25, &ex), idx[..25]);
    }

    #[test]
    fn dot_matches_naive_sum() {
        for n in [0usize, 3, 8, 13, 130] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let naive: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64) * (*y as f64))
                .sum();
            assert!(
                (dot(&a, &b) as f64 - naive).abs() < 1e-3 * (1.0 + naive.abs()),
                "n={n}"
            );
        }
    }

    #[test]
    fn history_rejects_bad_items() {
        let ds = testutil::dataset(2, 3, &[(0, 1), (1, 2)]);
        let mut h = History::from_dataset(&ds).unwrap();
        assert_eq!(h.items(0).collect::<Vec<_>>(), [1]);
        let bad = Interaction {
            user: 0,
            item: 3,
            rating: 1.0,
            timestamp: 0,
        };
        assert!(matches!(
            h.check(&bad),
            Err(RecommendError::ItemOutOfRange { .. })
        ));
        let mut bad_user = ds.clone();
        bad_user.interactions[0].user = 2;
        assert!(matches!(
            History::from_dataset(&bad_user),
            Err(RecommendError::UserOutOfRange { user: 2, .. })
        ));
        h.push(&Interaction {
            user: 5,
            item: 0,
            rating: 1.0,
            timestamp: 0,
        });
        assert_eq!(h.len(5), 1);
        assert!(h.is_empty(4));
    }
}
