//! Top-k ranking metrics with binary relevance, computed per user and then averaged
//! over users (macro average).
//!
//! For a ranked list `L` (at most k items) and relevant set `R`:
//! - precision@k = |L ∩ R| / k (k, not |L|: a short list is penalised)
//! - recall@k = |L ∩ R| / |R|
//! - ndcg@k = DCG / IDCG with DCG = Σ_{rank r (1-based), L_r ∈ R} 1 / log2(r + 1) and
//!   IDCG the DCG of min(|R|, k) relevant items at the top
//! - hr@k = 1 if |L ∩ R| > 0
//! - mrr = 1 / (rank of the first relevant item) **within the top k** (0 if none
//!   there), i.e. MRR@k; the full ranking is never materialised.
//! - coverage = |∪ L over all users| / n_items.

use serde::{Deserialize, Serialize};

/// Metrics of one ranked list.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UserMetrics {
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub hr: f64,
    pub mrr: f64,
}

/// Metrics of `ranked` (best first) against the sorted, deduplicated `relevant`.
/// Returns `None` when `relevant` is empty or `k` is 0 (the user is not scored).
pub fn user_metrics(ranked: &[u32], relevant_sorted: &[u32], k: usize) -> Option<UserMetrics> {
    if relevant_sorted.is_empty() || k == 0 {
        return None;
    }
    let mut hits = 0usize;
    let mut dcg = 0.0f64;
    let mut first: Option<usize> = None;
    for (r, item) in ranked.iter().take(k).enumerate() {
        if relevant_sorted.binary_search(item).is_ok() {
            hits += 1;
            dcg += 1.0 / ((r + 2) as f64).log2();
            first.get_or_insert(r + 1);
        }
    }
    let ideal: f64 = (0..relevant_sorted.len().min(k))
        .map(|r| 1.0 / ((r + 2) as f64).log2())
        .sum();
    Some(UserMetrics {
        precision: hits as f64 / k as f64,
        recall: hits as f64 / relevant_sorted.len() as f64,
        ndcg: dcg / ideal,
        hr: if hits > 0 { 1.0 } else { 0.0 },
        mrr: first.map_or(0.0, |r| 1.0 / r as f64),
    })
}

/// Averaged metrics of one system under one protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub hr: f64,
    pub mrr: f64,
    pub coverage: f64,
    /// Users that contributed (had at least one scored list).
    pub users: usize,
    /// Ranked lists scored (users in `static`, events in the replay protocols).
    pub lists: usize,
}

impl Summary {
    /// `("precision@10", v), …` in report order.
    pub fn named(&self) -> Vec<(String, f64)> {
        let k = self.k;
        vec![
            (format!("precision@{k}"), self.precision),
            (format!("recall@{k}"), self.recall),
            (format!("ndcg@{k}"), self.ndcg),
            (format!("hr@{k}"), self.hr),
            ("mrr".to_string(), self.mrr),
            ("coverage".to_string(), self.coverage),
        ]
    }
}

/// Accumulates per-user averages (a user may contribute several lists, which are
/// averaged first) and catalog coverage.
#[derive(Clone, Debug)]
pub struct Accumulator {
    k: usize,
    per_user: Vec<(UserMetrics, usize)>,
    covered: Vec<bool>,
    lists: usize,
}

impl Accumulator {
    pub fn new(k: usize, n_items: usize) -> Self {
        Accumulator {
            k,
            per_user: Vec::new(),
            covered: vec![false; n_items],
            lists: 0,
        }
    }

    /// Records the list `ranked` shown to `user` (it counts for coverage) and its
    /// metrics against `relevant_sorted` (when non-empty).
    pub fn add(&mut self, user: u32, ranked: &[u32], relevant_sorted: &[u32]) {
        for &i in ranked.iter().take(self.k) {
            if let Some(c) = self.covered.get_mut(i as usize) {
                *c = true;
            }
        }
        let Some(m) = user_metrics(ranked, relevant_sorted, self.k) else {
            return;
        };
        let u = user as usize;
        if u >= self.per_user.len() {
            self.per_user.resize(u + 1, (UserMetrics::default(), 0));
        }
        let (s, n) = &mut self.per_user[u];
        s.precision += m.precision;
        s.recall += m.recall;
        s.ndcg += m.ndcg;
        s.hr += m.hr;
        s.mrr += m.mrr;
        *n += 1;
        self.lists += 1;
    }

    pub fn summary(&self) -> Summary {
        let mut out = Summary {
            k: self.k,
            lists: self.lists,
            ..Default::default()
        };
        for (s, n) in self.per_user.iter().filter(|(_, n)| *n > 0) {
            let n = *n as f64;
            out.precision += s.precision / n;
            out.recall += s.recall / n;
            out.ndcg += s.ndcg / n;
            out.hr += s.hr / n;
            out.mrr += s.mrr / n;
            out.users += 1;
        }
        if out.users > 0 {
            let u = out.users as f64;
            out.precision /= u;
            out.recall /= u;
            out.ndcg /= u;
            out.hr /= u;
            out.mrr /= u;
        }
        if !self.covered.is_empty() {
            out.coverage =
                self.covered.iter().filter(|&&c| c).count() as f64 / self.covered.len() as f64;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn hand_computed_single_list() {
        // Ranked [5, 3, 9, 1], relevant {1, 3, 7}, k = 4.
        let m = user_metrics(&[5, 3, 9, 1], &[1, 3, 7], 4).unwrap();
        close(m.precision, 2.0 / 4.0);
        close(m.recall, 2.0 / 3.0);
        // DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4).
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
        close(m.ndcg, dcg / idcg);
        close(m.hr, 1.0);
        close(m.mrr, 0.5);
    }

    #[test]
    fn ideal_dcg_caps_at_k_and_misses_score_zero() {
        // 12 relevant items, k = 2, both top items relevant: ndcg = 1.
        let rel: Vec<u32> = (0..12).collect();
        let m = user_metrics(&[0, 1], &rel, 2).unwrap();
        close(m.ndcg, 1.0);
        close(m.precision, 1.0);
        close(m.recall, 2.0 / 12.0);
        let miss = user_metrics(&[20, 21], &rel, 2).unwrap();
        assert_eq!(miss, UserMetrics::default());
        // Only the top k of a longer list count.
        let m = user_metrics(&[20, 21, 0], &rel, 2).unwrap();
        close(m.hr, 0.0);
        assert!(user_metrics(&[1], &[], 10).is_none());
    }

    #[test]
    fn accumulator_averages_per_user_then_over_users_and_tracks_coverage() {
        let mut acc = Accumulator::new(2, 10);
        // User 0: two lists (hit at rank 1, miss) → hr 0.5, mrr 0.5.
        acc.add(0, &[1, 2], &[1]);
        acc.add(0, &[3, 4], &[9]);
        // User 5: one list, hit at rank 2 → hr 1, mrr 0.5.
        acc.add(5, &[6, 7], &[7]);
        let s = acc.summary();
        assert_eq!(s.users, 2);
        assert_eq!(s.lists, 3);
        close(s.hr, (0.5 + 1.0) / 2.0);
        close(s.mrr, (0.5 + 0.5) / 2.0);
        close(s.precision, (0.25 + 0.5) / 2.0);
        close(s.coverage, 6.0 / 10.0);
        assert_eq!(s.named()[0].0, "precision@2");
    }

    #[test]
    fn short_lists_are_penalised_and_coverage_counts_only_the_top_k() {
        // A 2-item list at k = 5 with one hit at rank 1, two relevant items.
        let m = user_metrics(&[3, 8], &[3, 5], 5).unwrap();
        close(m.precision, 1.0 / 5.0);
        close(m.recall, 1.0 / 2.0);
        // IDCG has min(|R|, k) = 2 terms: 1 + 1/log2(3).
        close(m.ndcg, 1.0 / (1.0 + 1.0 / 3f64.log2()));
        close(m.hr, 1.0);
        close(m.mrr, 1.0);
        // MRR uses the first hit: hits at ranks 2 and 3 → 1/2.
        close(user_metrics(&[9, 5, 3], &[3, 5], 3).unwrap().mrr, 0.5);
        let mut acc = Accumulator::new(2, 10);
        // Item 3 is ranked third: outside the top 2, neither a hit nor covered.
        acc.add(0, &[1, 2, 3], &[3]);
        // A list with no relevant items counts for coverage only.
        acc.add(1, &[4], &[]);
        let s = acc.summary();
        assert_eq!((s.users, s.lists), (1, 1));
        close(s.hr, 0.0);
        close(s.coverage, 3.0 / 10.0);
    }
}
