//! EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).
//!
//! With the binary user–item matrix X: `P = (XᵀX + λI)⁻¹`, `B = I − P·diag(1/diag(P))`,
//! i.e. `B_ij = −P_ij / P_jj` off the diagonal and `B_jj = 0`. A user's scores are
//! `x_u · B`. Online updates add the new item to `x_u`, so scores change at once.

use std::collections::HashMap;

use super::linalg::spd_inverse;
use super::{best_history_item, top_k, History, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EaseConfig {
    /// L2 regularisation λ (> 0).
    pub lambda: f64,
    /// Refuse catalogs larger than this (the dense inverse is O(n³) time; training
    /// holds 12·n² bytes, 4.8 GB at 20,000 titles).
    pub max_items: usize,
}

impl Default for EaseConfig {
    fn default() -> Self {
        EaseConfig {
            lambda: 250.0,
            max_items: 20_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Ease {
    n_items: usize,
    /// Row-major `n_items × n_items` weights.
    b: Vec<f32>,
    hist: History,
    /// Score vectors of viewers seen by [`OnlineRecommender::observe`], kept up to
    /// date there (one row added per new title instead of every history row summed
    /// again per request). The additions happen in the same order as in
    /// [`Ease::scores`], so the cached vector is bit-identical to a fresh one.
    live: HashMap<u32, Vec<f32>>,
    /// Most viewers `live` holds before it is emptied (about 64 MB of scores).
    live_cap: usize,
}

/// Bytes of cached score vectors an [`Ease`] keeps at most.
const LIVE_CACHE_BYTES: usize = 64 << 20;

impl Ease {
    pub fn train(ds: &Dataset, cfg: &EaseConfig) -> Result<Self, RecommendError> {
        if !(cfg.lambda.is_finite() && cfg.lambda > 0.0) {
            return Err(RecommendError::InvalidConfig(format!(
                "EASE lambda must be > 0, got {}",
                cfg.lambda
            )));
        }
        let n = ds.n_items();
        if n > cfg.max_items {
            return Err(RecommendError::InvalidConfig(format!(
                "EASE needs a dense {n}×{n} inverse; the limit is {} items",
                cfg.max_items
            )));
        }
        if ds.interactions.is_empty() {
            return Err(RecommendError::NoInteractions);
        }
        let hist = History::from_dataset(ds)?;
        // Gram matrix of the binary matrix (duplicates counted once).
        let mut g = vec![0.0f64; n * n];
        let mut items: Vec<u32> = Vec::new();
        for u in &hist.by_user {
            items.clear();
            items.extend(u.iter().map(|e| e.0));
            items.sort_unstable();
            items.dedup();
            for (a, &i) in items.iter().enumerate() {
                let row = &mut g[i as usize * n..(i as usize + 1) * n];
                for &j in &items[..=a] {
                    row[j as usize] += 1.0;
                }
            }
        }
        for i in 0..n {
            g[i * n + i] += cfg.lambda;
        }
        let p = spd_inverse(g, n)?;
        let mut b = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    b[i * n + j] = (-p[i * n + j] / p[j * n + j]) as f32;
                }
            }
        }
        Ok(Ease {
            n_items: n,
            b,
            hist,
            live: HashMap::new(),
            live_cap: (LIVE_CACHE_BYTES / (4 * n.max(1))).max(1),
        })
    }

    /// Scores of every item for `user` (`x_u · B`).
    pub fn scores(&self, user: u32) -> Vec<f32> {
        if let Some(s) = self.live.get(&user) {
            return s.clone();
        }
        self.sum_rows(user)
    }

    /// `x_u · B` from the history: each distinct title's row, in history order.
    fn sum_rows(&self, user: u32) -> Vec<f32> {
        let n = self.n_items;
        let mut s = vec![0.0f32; n];
        // X is binary: a title watched twice counts once.
        let mut counted = vec![false; n];
        for i in self.hist.items(user) {
            if std::mem::replace(&mut counted[i as usize], true) {
                continue;
            }
            let row = &self.b[i as usize * n..(i as usize + 1) * n];
            for (x, &w) in s.iter_mut().zip(row) {
                *x += w;
            }
        }
        s
    }

    /// `B[i][j]`: how much having `i` raises the score of `j`.
    /// 0 for out-of-range items.
    pub fn weight(&self, i: u32, j: u32) -> f32 {
        let (i, j) = (i as usize, j as usize);
        if i >= self.n_items || j >= self.n_items {
            return 0.0;
        }
        self.b[i * self.n_items + j]
    }
}

impl OnlineRecommender for Ease {
    fn name(&self) -> &str {
        "ease"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], _now: i64) -> Vec<u32> {
        top_k(&self.scores(user), k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        self.hist.check(x)?;
        let new_title = !self.hist.items(x.user).any(|i| i == x.item);
        self.hist.push(x);
        if let Some(s) = self.live.get_mut(&x.user) {
            if new_title {
                let n = self.n_items;
                let row = &self.b[x.item as usize * n..(x.item as usize + 1) * n];
                s.iter_mut().zip(row).for_each(|(v, &w)| *v += w);
            }
        } else {
            if self.live.len() >= self.live_cap {
                self.live.clear();
            }
            let s = self.sum_rows(x.user);
            self.live.insert(x.user, s);
        }
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, _now: i64) -> Option<Reason> {
        if item as usize >= self.n_items {
            return None;
        }
        best_history_item(&self.hist, user, |i| self.weight(i, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::{dataset, two_clusters};

    #[test]
    fn live_scores_stay_bit_identical_to_a_fresh_sum() {
        let ds = two_clusters(6, 12);
        let mut m = Ease::train(&ds, &EaseConfig::default()).unwrap();
        m.live_cap = 2; // three replayed viewers: the cache is emptied along the way
        let mut r = crate::rng::Rng::new(5);
        let mut cached_at_some_point = false;
        for t in 0..200 {
            // Viewers 0–2 and a new viewer 9; titles repeat often.
            let user = [0, 1, 2, 9][r.below(4)];
            let x = Interaction {
                user,
                item: r.below(12) as u32,
                rating: 4.0,
                timestamp: t,
            };
            m.observe(&x).unwrap();
            cached_at_some_point |= m.live.contains_key(&user);
            for u in [0, 1, 2, 3, 9] {
                assert_eq!(m.scores(u), m.sum_rows(u), "viewer {u} after event {t}");
            }
        }
        assert!(cached_at_some_point);
        assert!(m.live.len() <= 2);
    }

    #[test]
    fn weights_match_closed_form_on_a_tiny_matrix() {
        // X rows: {0,1}, {0,1}, {1,2}. G = XᵀX = [[2,2,0],[2,3,1],[0,1,1]].
        let ds = dataset(3, 3, &[(0, 0), (0, 1), (1, 0), (1, 1), (2, 1), (2, 2)]);
        let lambda = 1.0;
        let m = Ease::train(
            &ds,
            &EaseConfig {
                lambda,
                ..Default::default()
            },
        )
        .unwrap();
        let g = [3.0, 2.0, 0.0, 2.0, 4.0, 1.0, 0.0, 1.0, 2.0];
        let p = spd_inverse(g.to_vec(), 3).unwrap();
        for i in 0..3 {
            assert_eq!(m.weight(i, i), 0.0);
            for j in 0..3 {
                if i != j {
                    let want = -p[i as usize * 3 + j as usize] / p[j as usize * 3 + j as usize];
                    assert!((m.weight(i, j) as f64 - want).abs() < 1e-6);
                }
            }
        }
        // Item 1 predicts item 0 (co-watched twice) more than item 2 (once).
        assert!(m.weight(1, 0) > m.weight(1, 2));
        // X is binary: a repeated interaction leaves the Gram matrix, so B, as is.
        let mut dup = ds.clone();
        dup.interactions.push(dup.interactions[0]);
        dup.interactions.push(dup.interactions[5]);
        let md = Ease::train(
            &dup,
            &EaseConfig {
                lambda,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..3 {
            for j in 0..3 {
                assert_eq!(md.weight(i, j), m.weight(i, j), "B[{i}][{j}]");
            }
        }
    }

    #[test]
    fn recovers_held_out_items_and_learns_online() {
        let ds = two_clusters(20, 10);
        let mut m = Ease::train(
            &ds,
            &EaseConfig {
                lambda: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
        let h = History::from_dataset(&ds).unwrap();
        for u in 0..20u32 {
            let mut ex = vec![false; 10];
            h.items(u).for_each(|i| ex[i as usize] = true);
            let held = if u < 10 { u % 5 } else { 5 + u % 5 };
            assert_eq!(m.recommend(u, 1, &ex, 0), [held], "user {u}");
        }
        // A new user who watches item 6 is steered to the second cluster.
        let new = 20;
        m.observe(&Interaction {
            user: new,
            item: 6,
            rating: 4.0,
            timestamp: 0,
        })
        .unwrap();
        let rec = m.recommend(new, 4, &[false, false, false, false, false, false, true], 0);
        assert!(rec.iter().all(|&i| i >= 5), "{rec:?}");
        // The viewer's row of X is binary: watching item 6 again changes nothing.
        let once = m.scores(new);
        assert_eq!(once[..], m.b[6 * m.n_items..7 * m.n_items]);
        m.observe(&Interaction {
            user: new,
            item: 6,
            rating: 5.0,
            timestamp: 1,
        })
        .unwrap();
        assert_eq!(m.scores(new), once);
        assert_eq!(
            m.explain(new, rec[0], 0),
            Some(Reason::BecauseYouWatched(6))
        );
        assert_eq!(m.explain(new, 1, 0), None);
        assert!(m
            .observe(&Interaction {
                user: 0,
                item: 10,
                rating: 4.0,
                timestamp: 0
            })
            .is_err());
    }

    #[test]
    fn rejects_bad_config() {
        let ds = two_clusters(4, 4);
        assert!(Ease::train(
            &ds,
            &EaseConfig {
                lambda: 0.0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(Ease::train(
            &ds,
            &EaseConfig {
                lambda: 1.0,
                max_items: 3
            }
        )
        .is_err());
    }
}
