//! Matrix factorisation trained with BPR (Rendle et al., UAI 2009).
//!
//! Score `ŷ_ui = p_u·q_i + b_i`. For a sampled triple (u, i observed, j unobserved)
//! the loss is `−ln σ(ŷ_ui − ŷ_uj) + λ/2 (‖p_u‖² + ‖q_i‖² + ‖q_j‖²) + λ_b/2 (b_i² + b_j²)`,
//! minimised by plain SGD. Negatives are drawn uniformly from the user's unseen
//! items. Everything is seeded.
//!
//! Online (on-device) updates: a new interaction is appended to the user's history
//! and `online_steps` SGD steps update only `p_u` (item factors stay frozen), so a
//! new user starts from `p_u = 0` (ranking by the learned item bias) and moves
//! towards their items.

use super::{best_history_item, dot, top_k, History, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction};
use crate::rng::Rng;

/// Defaults were chosen on a validation split (per-user 75/25 of the static
/// protocol's training side, ML-100K, seed 42 ^ 0x5A), never on test data.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BprConfig {
    pub factors: usize,
    pub epochs: usize,
    pub lr: f32,
    /// L2 on factors.
    pub reg: f32,
    /// L2 on item biases.
    pub reg_bias: f32,
    /// Initial factor scale (normal · init_std).
    pub init_std: f32,
    /// SGD steps on `p_u` per observed interaction.
    pub online_steps: usize,
    pub seed: u64,
}

impl Default for BprConfig {
    fn default() -> Self {
        BprConfig {
            factors: 128,
            epochs: 60,
            lr: 0.05,
            reg: 0.02,
            reg_bias: 0.001,
            init_std: 0.1,
            online_steps: 50,
            seed: 7,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bpr {
    cfg: BprConfig,
    n_items: usize,
    /// `n_users × factors`.
    p: Vec<f32>,
    /// `n_items × factors`.
    q: Vec<f32>,
    b: Vec<f32>,
    hist: History,
    /// Sorted distinct items per user (for negative sampling).
    seen: Vec<Vec<u32>>,
    rng: Rng,
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// BPR loss of one triple (u, i, j) given the involved parameters.
pub fn triple_loss(
    pu: &[f32],
    qi: &[f32],
    qj: &[f32],
    bi: f32,
    bj: f32,
    reg: f32,
    reg_b: f32,
) -> f64 {
    let x: f64 = pu
        .iter()
        .zip(qi.iter().zip(qj))
        .map(|(&p, (&a, &b))| p as f64 * (a as f64 - b as f64))
        .sum::<f64>()
        + bi as f64
        - bj as f64;
    let sq = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
    // −ln σ(x) = ln(1 + e^{−x}), computed stably.
    let nll = if x > 0.0 {
        (-x).exp().ln_1p()
    } else {
        -x + x.exp().ln_1p()
    };
    nll + 0.5 * reg as f64 * (sq(pu) + sq(qi) + sq(qj))
        + 0.5 * reg_b as f64 * (bi as f64 * bi as f64 + bj as f64 * bj as f64)
}

/// Gradients of [`triple_loss`]: (d p_u, d q_i, d q_j, d b_i, d b_j).
#[allow(clippy::type_complexity)]
pub fn triple_grad(
    pu: &[f32],
    qi: &[f32],
    qj: &[f32],
    bi: f32,
    bj: f32,
    reg: f32,
    reg_b: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, f32, f32) {
    let x: f32 = pu
        .iter()
        .zip(qi.iter().zip(qj))
        .map(|(&p, (&a, &b))| p * (a - b))
        .sum::<f32>()
        + bi
        - bj;
    let g = -sigmoid(-x); // d(−ln σ(x))/dx
    let dpu = pu
        .iter()
        .zip(qi.iter().zip(qj))
        .map(|(&p, (&a, &b))| g * (a - b) + reg * p)
        .collect();
    let dqi = pu.iter().zip(qi).map(|(&p, &a)| g * p + reg * a).collect();
    let dqj = pu.iter().zip(qj).map(|(&p, &b)| -g * p + reg * b).collect();
    (dpu, dqi, dqj, g + reg_b * bi, -g + reg_b * bj)
}

impl Bpr {
    pub fn train(ds: &Dataset, cfg: &BprConfig) -> Result<Self, RecommendError> {
        let finite = [cfg.lr, cfg.reg, cfg.reg_bias, cfg.init_std]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0);
        if cfg.factors == 0 || !finite || cfg.lr == 0.0 {
            return Err(RecommendError::InvalidConfig(format!("BPR: {cfg:?}")));
        }
        if ds.interactions.is_empty() {
            return Err(RecommendError::NoInteractions);
        }
        let hist = History::from_dataset(ds)?;
        let (n_users, n_items, d) = (ds.n_users(), ds.n_items(), cfg.factors);
        let mut rng = Rng::new(cfg.seed);
        let p: Vec<f32> = (0..n_users * d)
            .map(|_| rng.normal() * cfg.init_std)
            .collect();
        let q: Vec<f32> = (0..n_items * d)
            .map(|_| rng.normal() * cfg.init_std)
            .collect();
        let seen: Vec<Vec<u32>> = hist
            .by_user
            .iter()
            .map(|v| {
                let mut s: Vec<u32> = v.iter().map(|e| e.0).collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let mut m = Bpr {
            cfg: *cfg,
            n_items,
            p,
            q,
            b: vec![0.0; n_items],
            hist,
            seen,
            rng,
        };
        let pairs: Vec<(u32, u32)> = ds.interactions.iter().map(|x| (x.user, x.item)).collect();
        for _ in 0..cfg.epochs {
            for _ in 0..pairs.len() {
                let (u, i) = pairs[m.rng.below(pairs.len())];
                if let Some(j) = m.sample_negative(u) {
                    m.sgd_step(u, i, j, true);
                }
            }
        }
        Ok(m)
    }

    fn sample_negative(&mut self, u: u32) -> Option<u32> {
        let seen = self.seen.get(u as usize).map_or(&[][..], |v| v.as_slice());
        if seen.len() >= self.n_items {
            return None;
        }
        loop {
            let j = self.rng.below(self.n_items) as u32;
            if seen.binary_search(&j).is_err() {
                return Some(j);
            }
        }
    }

    fn sgd_step(&mut self, u: u32, i: u32, j: u32, update_items: bool) {
        let d = self.cfg.factors;
        let (u, i, j) = (u as usize, i as usize, j as usize);
        let pu = &self.p[u * d..(u + 1) * d];
        let qi = &self.q[i * d..(i + 1) * d];
        let qj = &self.q[j * d..(j + 1) * d];
        let (dpu, dqi, dqj, dbi, dbj) = triple_grad(
            pu,
            qi,
            qj,
            self.b[i],
            self.b[j],
            self.cfg.reg,
            self.cfg.reg_bias,
        );
        let lr = self.cfg.lr;
        for (x, g) in self.p[u * d..(u + 1) * d].iter_mut().zip(&dpu) {
            *x -= lr * g;
        }
        if update_items {
            for (x, g) in self.q[i * d..(i + 1) * d].iter_mut().zip(&dqi) {
                *x -= lr * g;
            }
            for (x, g) in self.q[j * d..(j + 1) * d].iter_mut().zip(&dqj) {
                *x -= lr * g;
            }
            self.b[i] -= lr * dbi;
            self.b[j] -= lr * dbj;
        }
    }

    pub fn scores(&self, user: u32) -> Vec<f32> {
        let d = self.cfg.factors;
        let u = user as usize;
        let Some(pu) = self.p.get(u * d..(u + 1) * d) else {
            return self.b.clone();
        };
        self.q
            .chunks_exact(d)
            .zip(&self.b)
            .map(|(qi, b)| dot(pu, qi) + b)
            .collect()
    }

    /// The user's factor vector (zeros for users the model has never seen).
    pub fn user_vector(&self, user: u32) -> Vec<f32> {
        let d = self.cfg.factors;
        self.p
            .get(user as usize * d..(user as usize + 1) * d)
            .map_or_else(|| vec![0.0; d], |v| v.to_vec())
    }

    /// Item biases.
    pub fn item_bias(&self) -> &[f32] {
        &self.b
    }

    pub fn factors(&self) -> usize {
        self.cfg.factors
    }

    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Sorted distinct items the user has interacted with (training + observed).
    pub fn seen(&self, user: u32) -> &[u32] {
        self.seen.get(user as usize).map_or(&[], |v| v.as_slice())
    }

    /// Item factor vectors (`n_items × factors`, row-major).
    pub fn item_factors(&self) -> &[f32] {
        &self.q
    }
}

impl OnlineRecommender for Bpr {
    fn name(&self) -> &str {
        "bpr_mf"
    }

    fn recommend(&self, user: u32, k: usize, exclude: &[bool], _now: i64) -> Vec<u32> {
        top_k(&self.scores(user), k, exclude)
    }

    fn observe(&mut self, x: &Interaction) -> Result<(), RecommendError> {
        self.hist.check(x)?;
        self.hist.push(x);
        let u = x.user as usize;
        let d = self.cfg.factors;
        if u >= self.seen.len() {
            self.seen.resize(u + 1, Vec::new());
            self.p.resize((u + 1) * d, 0.0);
        }
        if let Err(pos) = self.seen[u].binary_search(&x.item) {
            self.seen[u].insert(pos, x.item);
        }
        for _ in 0..self.cfg.online_steps {
            let hist = &self.hist.by_user[u];
            // Half the steps on the new item, half on the user's earlier ones.
            let i = if self.rng.chance(0.5) {
                x.item
            } else {
                hist[self.rng.below(hist.len())].0
            };
            if let Some(j) = self.sample_negative(x.user) {
                self.sgd_step(x.user, i, j, false);
            }
        }
        Ok(())
    }

    fn explain(&self, user: u32, item: u32, _now: i64) -> Option<Reason> {
        if item as usize >= self.n_items {
            return None;
        }
        let d = self.cfg.factors;
        let qj = &self.q[item as usize * d..(item as usize + 1) * d];
        best_history_item(&self.hist, user, |i| {
            let qi = &self.q[i as usize * d..(i as usize + 1) * d];
            qi.iter().zip(qj).map(|(a, b)| a * b).sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::two_clusters;

    #[test]
    fn gradient_matches_finite_differences() {
        let mut r = Rng::new(5);
        let d = 6;
        let v = |r: &mut Rng| (0..d).map(|_| r.normal() * 0.5).collect::<Vec<f32>>();
        let (pu, qi, qj) = (v(&mut r), v(&mut r), v(&mut r));
        let (bi, bj, reg, rb) = (0.3, -0.2, 0.05, 0.02);
        let (dpu, dqi, dqj, dbi, dbj) = triple_grad(&pu, &qi, &qj, bi, bj, reg, rb);
        let h = 1e-3f32;
        let check = |analytic: f32, plus: f64, minus: f64| {
            let num = (plus - minus) / (2.0 * h as f64);
            assert!(
                (num - analytic as f64).abs() < 2e-3,
                "num {num} vs {analytic}"
            );
        };
        for k in 0..d {
            let mut a = pu.clone();
            a[k] += h;
            let mut b = pu.clone();
            b[k] -= h;
            check(
                dpu[k],
                triple_loss(&a, &qi, &qj, bi, bj, reg, rb),
                triple_loss(&b, &qi, &qj, bi, bj, reg, rb),
            );
            let mut a = qi.clone();
            a[k] += h;
            let mut b = qi.clone();
            b[k] -= h;
            check(
                dqi[k],
                triple_loss(&pu, &a, &qj, bi, bj, reg, rb),
                triple_loss(&pu, &b, &qj, bi, bj, reg, rb),
            );
            let mut a = qj.clone();
            a[k] += h;
            let mut b = qj.clone();
            b[k] -= h;
            check(
                dqj[k],
                triple_loss(&pu, &qi, &a, bi, bj, reg, rb),
                triple_loss(&pu, &qi, &b, bi, bj, reg, rb),
            );
        }
        check(
            dbi,
            triple_loss(&pu, &qi, &qj, bi + h, bj, reg, rb),
            triple_loss(&pu, &qi, &qj, bi - h, bj, reg, rb),
        );
        check(
            dbj,
            triple_loss(&pu, &qi, &qj, bi, bj + h, reg, rb),
            triple_loss(&pu, &qi, &qj, bi, bj - h, reg, rb),
        );
    }

    #[test]
    fn learns_clusters_is_seeded_and_folds_in_new_users() {
        let ds = two_clusters(40, 20);
        let cfg = BprConfig {
            factors: 8,
            epochs: 60,
            ..Default::default()
        };
        let mut m = Bpr::train(&ds, &cfg).unwrap();
        let h = History::from_dataset(&ds).unwrap();
        let mut hits = 0;
        for u in 0..40u32 {
            let mut ex = vec![false; 20];
            h.items(u).for_each(|i| ex[i as usize] = true);
            let held = if u < 20 { u % 10 } else { 10 + u % 10 };
            if m.recommend(u, 1, &ex, 0) == [held] {
                hits += 1;
            }
        }
        assert!(hits >= 36, "hits {hits}/40");
        let again = Bpr::train(&ds, &cfg).unwrap();
        assert_eq!(again.scores(3), m.scores(3));
        // New user 40 watches two second-cluster items; its top items move there.
        for it in [12, 15] {
            m.observe(&Interaction {
                user: 40,
                item: it,
                rating: 4.0,
                timestamp: 0,
            })
            .unwrap();
        }
        let mut ex = vec![false; 20];
        ex[12] = true;
        ex[15] = true;
        let rec = m.recommend(40, 5, &ex, 0);
        assert!(rec.iter().filter(|&&i| i >= 10).count() >= 4, "{rec:?}");
        assert!(m
            .observe(&Interaction {
                user: 1,
                item: 20,
                rating: 4.0,
                timestamp: 0
            })
            .is_err());
        assert!(Bpr::train(&ds, &BprConfig { factors: 0, ..cfg }).is_err());
    }

    #[test]
    fn negatives_are_uniform_over_unseen_items_and_fold_in_freezes_items() {
        let ds = two_clusters(4, 8);
        let cfg = BprConfig {
            factors: 4,
            epochs: 2,
            online_steps: 20,
            ..Default::default()
        };
        let mut m = Bpr::train(&ds, &cfg).unwrap();
        // User 0 has seen items 1, 2, 3: negatives are exactly 0, 4..8, uniformly.
        assert_eq!(m.seen(0), [1, 2, 3]);
        let mut counts = [0usize; 8];
        for _ in 0..5000 {
            counts[m.sample_negative(0).unwrap() as usize] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            if [1, 2, 3].contains(&i) {
                assert_eq!(c, 0, "seen item {i} drawn as a negative");
            } else {
                assert!((c as f64 - 1000.0).abs() < 150.0, "item {i}: {c}");
            }
        }
        // Online fold-in moves only p_u: item factors and biases stay frozen.
        let (q, b) = (m.item_factors().to_vec(), m.item_bias().to_vec());
        let p0 = m.user_vector(0);
        m.observe(&Interaction {
            user: 0,
            item: 6,
            rating: 4.0,
            timestamp: 0,
        })
        .unwrap();
        assert_eq!(m.item_factors(), &q[..]);
        assert_eq!(m.item_bias(), &b[..]);
        assert_ne!(m.user_vector(0), p0);
        assert_eq!(m.seen(0), [1, 2, 3, 6]);
        // A user who has seen everything gets no negative.
        for it in [0, 4, 5, 7] {
            m.observe(&Interaction {
                user: 0,
                item: it,
                rating: 4.0,
                timestamp: 0,
            })
            .unwrap();
        }
        assert_eq!(m.sample_negative(0), None);
    }
}
