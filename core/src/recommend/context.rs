//! Context-aware recommender: time-of-day and day-of-week item priors learned from
//! interaction timestamps.
//!
//! Timestamps are read as UTC (MovieLens gives no time zone). Buckets: six 4-hour
//! slots of the day and the seven days of the week. With Dirichlet smoothing
//! towards the global popularity `p(j)`:
//! `P(j | slot) = (c_slot(j) + α·p(j)) / (N_slot + α)`, likewise per day, and the
//! naive-Bayes combination `score(j | now) = ln P(j|slot) + ln P(j|day) − ln p(j)`.
//! Online updates add the new interaction to the counts.

use super::{top_k, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction};

pub const SLOTS: usize = 6;
const SLOT_NAMES: [&str; SLOTS] = [
    "late nights",
    "early mornings",
    "mornings",
    "afternoons",
    "evenings",
    "nights",
];
const DAY_NAMES: [&str; 7] = [
    "Sundays",
    "Mondays",
    "Tuesdays",
    "Wednesdays",
    "Thursdays",
    "Fridays",
    "Saturdays",
];

/// (4-hour slot 0..6, day of week 0 = Sunday) of a unix time, UTC.
pub fn time_buckets(ts: i64) -> (usize, usize) {
    let secs = ts.rem_euclid(86_400);
    let days = ts.div_euclid(86_400);
    (
        (secs / (4 * 3600)) as usize,
        (days + 4).rem_euclid(7) as usize,
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContextConfig {
    /// Smoothing strength α (> 0).
    pub alpha: f32,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig { alpha: 50.0 }
    }
}

#[derive(Clone, Debug)]
pub struct ContextAware {
    alpha: f32,
    n_items: usize,
    global: Vec<f32>,
    slot: Vec<Vec<f32>>,
    day: Vec<Vec<f32>>,
    total: f32,
    slot_total: [f32; SLOTS],
    day_total: [f32; 7],
}

impl ContextAware {
    pub fn train(ds: &Dataset, cfg: &ContextConfig) -> Result<Self, RecommendError> {
        if !(cfg.alpha.is_finite() && cfg.alpha > 0.0) {
            return Err(RecommendError::InvalidConfig(format!(
                "context alpha {}",
                cfg.alpha
            )));
        }
        if ds.interactions.is_empty() {
            return Err(RecommendError::NoInteractions);
        }
        let n = ds.n_items();
        let mut m = ContextAware {
            alpha: cfg.alpha,
            n_items: n,
            global: vec![0.0; n],
            slot: vec![vec![0.0; n]; SLOTS],
            day: vec![vec![0.0; n]; 7],
            total: 0.0,
            slot_total: [0.0; SLOTS],
            day_total: [0.0; 7],
        };
        for x in &ds.interactions {
            if x.item as usize >= n {
                return Err(RecommendError::ItemOutOfRange {
                    item: x.item,
                    n_items: n,
                });
            }
        }
        for x in &ds.interactions {
            m.add(x);
        }
        Ok(m)
    }

    fn add(&mut self, x: &Interaction) {
        let (s, d) = time_buckets(x.timestamp);
        let i = x.item as usize;
        self.global[i] += 1.0;
        self.slot[s][i] += 1.0;
        self.day[d][i] += 1.0;
        self.total += 1.0;
        self.slot_total[s] += 1.0;
        self.day_total[d] += 1.0;
    }

    /// Context scores of every item at time `now`.
    pub fn scores(&self, now: i64) -> Vec<f32> {
        let (s, d) = time_buckets(now);
        let a = self.alpha;
        let denom = self.total + self.n_items as f32;
        (0..self.n_items)
            .map(|j| {
                let p = (self.global[j] + 1.0) / denom;
                let ps = (self.slot[s][j] + a * p) / (self.slot_total[s] + a);
                let pd = (self.day[d][j] + a * p) / (self.day_total[d] + a);
                ps.ln() + pd.ln() - p.ln()
            })
            .collect()
    }
}

impl OnlineRecommender for ContextAware {
    fn name(&self) -> &str {
        "context"
    }

    fn recommend(&self, _user: u32, k: usize, exclude: &[bool], now: i64) -> Vec<u32> {
        top_k(&self.scores(now), k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        if x.item as usize >= self.n_items {
            return Err(RecommendError::ItemOutOfRange {
                item: x.item,
                n_items: self.n_items,
            });
        }
        self.add(x);
        Ok(())
    }

    fn explain(&self, _user: u32, item: u32, now: i64) -> Option<Reason> {
        if item as usize >= self.n_items {
            return None;
        }
        let (s, d) = time_buckets(now);
        Some(Reason::Text(format!(
            "Popular on {} {}",
            DAY_NAMES[d], SLOT_NAMES[s]
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::dataset;

    // 1970-01-05 was a Monday.
    const MONDAY: i64 = 4 * 86_400;

    #[test]
    fn buckets_follow_the_calendar() {
        assert_eq!(time_buckets(0), (0, 4)); // Thursday 00:00
        assert_eq!(time_buckets(MONDAY + 9 * 3600), (2, 1));
        assert_eq!(time_buckets(MONDAY + 21 * 3600), (5, 1));
        assert_eq!(time_buckets(-1), (5, 3)); // Wednesday 23:59:59
    }

    #[test]
    fn ranking_follows_the_time_of_day_and_learns_online() {
        let mut ds = dataset(40, 3, &[]);
        // Item 0: mornings (10 views); item 1: evenings (14 views); item 2: rare.
        for u in 0..10 {
            ds.interactions.push(Interaction {
                user: u,
                item: 0,
                rating: 4.0,
                timestamp: MONDAY + 9 * 3600 + u as i64,
            });
        }
        for u in 10..24 {
            ds.interactions.push(Interaction {
                user: u,
                item: 1,
                rating: 4.0,
                timestamp: MONDAY + 21 * 3600 + u as i64,
            });
        }
        ds.interactions.push(Interaction {
            user: 30,
            item: 2,
            rating: 4.0,
            timestamp: MONDAY + 21 * 3600,
        });
        let mut m = ContextAware::train(&ds, &ContextConfig { alpha: 2.0 }).unwrap();
        let morning = MONDAY + 7 * 86_400 + 10 * 3600;
        let evening = MONDAY + 7 * 86_400 + 22 * 3600;
        assert_eq!(m.recommend(0, 3, &[], morning), [0, 1, 2]);
        assert_eq!(m.recommend(0, 3, &[], evening), [1, 0, 2]);
        assert_eq!(
            m.explain(0, 0, evening),
            Some(Reason::Text("Popular on Mondays nights".into()))
        );
        for t in 0..40 {
            m.observe(&Interaction {
                user: 39,
                item: 2,
                rating: 4.0,
                timestamp: morning + t,
            })
            .unwrap();
        }
        assert_eq!(m.recommend(0, 1, &[], morning), [2]);
        assert!(m
            .observe(&Interaction {
                user: 0,
                item: 3,
                rating: 1.0,
                timestamp: 0
            })
            .is_err());
        assert!(ContextAware::train(&ds, &ContextConfig { alpha: 0.0 }).is_err());
    }

    #[test]
    fn scores_match_the_smoothed_naive_bayes_formula_and_the_weekday_matters() {
        // Item 0: Monday 09:00; item 1: Monday 21:00 and Tuesday 09:00; item 2: never.
        // Smoothed popularity p = (c + 1) / (N + n) = (2/6, 3/6, 1/6); α = 2.
        let mut ds = dataset(3, 3, &[]);
        for (u, item, ts) in [
            (0, 0, MONDAY + 9 * 3600),
            (1, 1, MONDAY + 21 * 3600),
            (2, 1, MONDAY + 86_400 + 9 * 3600),
        ] {
            ds.interactions.push(Interaction {
                user: u,
                item,
                rating: 4.0,
                timestamp: ts,
            });
        }
        let m = ContextAware::train(&ds, &ContextConfig { alpha: 2.0 }).unwrap();
        let close = |got: &[f32], want: [f64; 3]| {
            for (g, w) in got.iter().zip(want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        };
        // Tuesday 10:00 (slot 2: items 0 and 1 once, N 2; Tuesday: item 1 once, N 1):
        // item 0: (1 + 2/3)/4 · (2/3)/3 / (1/3) = 5/18; item 1: (2/4)(2/3)/(1/2) = 2/3;
        // item 2: (1/3)/4 · (1/3)/3 / (1/6) = 1/18.
        let tuesday = MONDAY + 7 * 86_400 + 86_400 + 10 * 3600;
        close(
            &m.scores(tuesday),
            [
                (5.0f64 / 18.0).ln(),
                (2.0f64 / 3.0).ln(),
                (1.0f64 / 18.0).ln(),
            ],
        );
        // Monday 10:00, same slot, Monday's counts (items 0 and 1 once, N 2):
        // item 0: (5/12)(5/12)·3 = 75/144; item 1: (1/2)(1/2)·2 = 72/144.
        let monday = MONDAY + 7 * 86_400 + 10 * 3600;
        let s = m.scores(monday);
        assert!((s[0] as f64 - (75.0f64 / 144.0).ln()).abs() < 1e-5, "{s:?}");
        assert!((s[1] as f64 - 0.5f64.ln()).abs() < 1e-5, "{s:?}");
        // Only the day differs, and it flips the top item.
        assert_eq!(m.recommend(0, 2, &[], monday), [0, 1]);
        assert_eq!(m.recommend(0, 2, &[], tuesday), [1, 0]);
    }
}
