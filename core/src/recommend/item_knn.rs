//! Item-based k-nearest-neighbours on the binary interaction matrix.
//!
//! `sim(i, j) = |U_i ∩ U_j| / (√|U_i|·√|U_j| + shrink)` (cosine with shrinkage
//! towards 0 for items with little support). Each item keeps its `k` most similar
//! items; a user's score for `j` is `Σ_{i ∈ history(u)} sim_k(i, j)`.
//! Online updates extend the user's history.

use super::{best_history_item, top_k, History, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItemKnnConfig {
    /// Neighbours kept per item (≥ 1).
    pub neighbours: usize,
    /// Shrinkage term added to the cosine denominator (≥ 0).
    pub shrink: f32,
}

impl Default for ItemKnnConfig {
    fn default() -> Self {
        ItemKnnConfig {
            neighbours: 100,
            shrink: 10.0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ItemKnn {
    /// `neighbours[i]` = (j, sim) pairs, most similar first.
    neighbours: Vec<Vec<(u32, f32)>>,
    hist: History,
}

impl ItemKnn {
    pub fn train(ds: &Dataset, cfg: &ItemKnnConfig) -> Result<Self, RecommendError> {
        if cfg.neighbours == 0 || !(cfg.shrink.is_finite() && cfg.shrink >= 0.0) {
            return Err(RecommendError::InvalidConfig(format!(
                "item-kNN needs neighbours ≥ 1 and finite shrink ≥ 0, got {cfg:?}"
            )));
        }
        if ds.interactions.is_empty() {
            return Err(RecommendError::NoInteractions);
        }
        let hist = History::from_dataset(ds)?;
        let n = ds.n_items();
        // Distinct items per user and distinct users per item.
        let user_items: Vec<Vec<u32>> = hist
            .by_user
            .iter()
            .map(|v| {
                let mut s: Vec<u32> = v.iter().map(|e| e.0).collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let mut item_users: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (u, items) in user_items.iter().enumerate() {
            for &i in items {
                item_users[i as usize].push(u as u32);
            }
        }
        let norm: Vec<f32> = item_users.iter().map(|u| (u.len() as f32).sqrt()).collect();
        let mut co = vec![0.0f32; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut neighbours = Vec::with_capacity(n);
        for i in 0..n {
            for &u in &item_users[i] {
                for &j in &user_items[u as usize] {
                    if co[j as usize] == 0.0 {
                        touched.push(j);
                    }
                    co[j as usize] += 1.0;
                }
            }
            let mut cand: Vec<(u32, f32)> = touched
                .iter()
                .filter(|&&j| j as usize != i)
                .map(|&j| {
                    (
                        j,
                        co[j as usize] / (norm[i] * norm[j as usize] + cfg.shrink),
                    )
                })
                .collect();
            for &j in &touched {
                co[j as usize] = 0.0;
            }
            touched.clear();
            cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            cand.truncate(cfg.neighbours);
            neighbours.push(cand);
        }
        Ok(ItemKnn { neighbours, hist })
    }

    /// The stored neighbours of `item`, most similar first.
    pub fn neighbours(&self, item: u32) -> &[(u32, f32)] {
        self.neighbours
            .get(item as usize)
            .map_or(&[], |v| v.as_slice())
    }

    pub fn scores(&self, user: u32) -> Vec<f32> {
        let mut s = vec![0.0f32; self.neighbours.len()];
        for i in self.hist.items(user) {
            for &(j, w) in &self.neighbours[i as usize] {
                s[j as usize] += w;
            }
        }
        s
    }
}

impl OnlineRecommender for ItemKnn {
    fn name(&self) -> &str {
        "item_knn"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], _now: i64) -> Vec<u32> {
        top_k(&self.scores(user), k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        self.hist.check(x)?;
        self.hist.push(x);
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, _now: i64) -> Option<Reason> {
        best_history_item(&self.hist, user, |i| {
            self.neighbours(i)
                .iter()
                .find(|e| e.0 == item)
                .map_or(0.0, |e| e.1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::{dataset, two_clusters};

    #[test]
    fn similarity_matches_hand_computed_cosine_with_shrinkage() {
        // Item 0: users {0,1,2}; item 1: users {0,1}; item 2: user {2}.
        let ds = dataset(3, 3, &[(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 2)]);
        let m = ItemKnn::train(
            &ds,
            &ItemKnnConfig {
                neighbours: 5,
                shrink: 1.0,
            },
        )
        .unwrap();
        let n0 = m.neighbours(0);
        let s01 = 2.0 / (3f32.sqrt() * 2f32.sqrt() + 1.0);
        let s02 = 1.0 / (3f32.sqrt() * 1.0 + 1.0);
        assert_eq!(n0.len(), 2);
        assert_eq!(n0[0].0, 1);
        assert!((n0[0].1 - s01).abs() < 1e-6);
        assert_eq!(n0[1].0, 2);
        assert!((n0[1].1 - s02).abs() < 1e-6);
        // Items 1 and 2 share no user: not neighbours.
        assert!(m.neighbours(1).iter().all(|&(j, _)| j != 2));
        let m1 = ItemKnn::train(
            &ds,
            &ItemKnnConfig {
                neighbours: 1,
                shrink: 0.0,
            },
        )
        .unwrap();
        assert_eq!(m1.neighbours(0).len(), 1);
    }

    #[test]
    fn recovers_held_out_items_and_learns_online() {
        let ds = two_clusters(20, 10);
        let mut m = ItemKnn::train(&ds, &ItemKnnConfig::default()).unwrap();
        let h = History::from_dataset(&ds).unwrap();
        for u in 0..20u32 {
            let mut ex = vec![false; 10];
            h.items(u).for_each(|i| ex[i as usize] = true);
            let held = if u < 10 { u % 5 } else { 5 + u % 5 };
            assert_eq!(m.recommend(u, 1, &ex, 0), [held], "user {u}");
        }
        // A viewer never seen has no evidence for any item (one zero per item) ...
        assert_eq!(m.scores(25), [0.0; 10]);
        assert_eq!(m.explain(25, 0, 0), None);
        m.observe(&Interaction {
            user: 25,
            item: 1,
            rating: 4.0,
            timestamp: 0,
        })
        .unwrap();
        // ... and after one title, exactly that title's neighbour similarities.
        let mut want = [0.0f32; 10];
        for &(j, w) in m.neighbours(1) {
            want[j as usize] += w;
        }
        assert!(want.iter().filter(|&&w| w > 0.0).count() >= 4, "{want:?}");
        assert_eq!(m.scores(25), want);
        let rec = m.recommend(25, 3, &[false, true], 0);
        assert!(rec.iter().all(|&i| i < 5), "{rec:?}");
        assert_eq!(m.explain(25, rec[0], 0), Some(Reason::BecauseYouWatched(1)));
        assert_eq!(m.explain(25, 7, 0), None);
        assert!(ItemKnn::train(
            &ds,
            &ItemKnnConfig {
                neighbours: 0,
                shrink: 1.0
            }
        )
        .is_err());
    }
}
