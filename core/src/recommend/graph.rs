//! Graph recommender: GraphSAGE-style mean aggregation over the user–item–genre
//! graph, trained with the BPR loss.
//!
//! Layer for items (item ← its genres): `z_i = e_i + mean_{g ∈ genres(i)} γ_g`.
//! Layer for users (user ← their items): `h_u = W · mean_{n ∈ N(u)} z_n`.
//! Score: `s(u, j) = h_u · z_j + b_j`. Users have no free embedding, so the model
//! is inductive: a new user's representation comes from the items they consumed,
//! and online updates just add the new neighbour.
//!
//! Training samples triples (u, i observed, j unobserved) and, as GraphSAGE does,
//! aggregates a random sample of at most `sample` of the user's neighbours —
//! never including the positive `i` itself, so the target edge is not visible in
//! its own aggregation. Loss `softplus(−x) + λ/2 (‖e_i‖² + ‖e_j‖²) + λ_b/2 (b_i² + b_j²)`
//! with `x = s(u,i) − s(u,j)`, minimised by SGD on e, γ, W and b.

use std::collections::BTreeMap;

use super::{best_history_item, dot, top_k, History, OnlineRecommender, Reason, RecommendError};
use crate::data::{Dataset, Interaction};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraphConfig {
    pub dim: usize,
    pub epochs: usize,
    pub lr: f32,
    pub reg: f32,
    pub reg_bias: f32,
    /// Neighbours sampled per training step.
    pub sample: usize,
    pub seed: u64,
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            dim: 32,
            epochs: 20,
            lr: 0.05,
            reg: 0.002,
            reg_bias: 0.001,
            sample: 10,
            seed: 11,
        }
    }
}

#[derive(Default)]
struct Scratch {
    m: Vec<f32>,
    h: Vec<f32>,
    zi: Vec<f32>,
    zj: Vec<f32>,
    dh: Vec<f32>,
    dm: Vec<f32>,
    dzi: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct GraphSage {
    cfg: GraphConfig,
    n_items: usize,
    e: Vec<f32>,
    gamma: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    item_genres: Vec<Vec<u32>>,
    /// Cached `z` for all items (refreshed after training).
    z: Vec<f32>,
    hist: History,
}

/// Sparse gradient of one triple.
#[derive(Clone, Debug, Default)]
pub struct GraphGrad {
    pub de: BTreeMap<u32, Vec<f32>>,
    pub dgamma: BTreeMap<u32, Vec<f32>>,
    pub dw: Vec<f32>,
    pub db: Vec<(u32, f32)>,
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

impl GraphSage {
    pub fn train(ds: &Dataset, cfg: &GraphConfig) -> Result<Self, RecommendError> {
        let ok = [cfg.lr, cfg.reg, cfg.reg_bias]
            .iter()
            .all(|x| x.is_finite() && *x >= 0.0);
        if cfg.dim == 0 || cfg.sample == 0 || !ok || cfg.lr == 0.0 {
            return Err(RecommendError::InvalidConfig(format!("graph: {cfg:?}")));
        }
        if ds.interactions.is_empty() {
            return Err(RecommendError::NoInteractions);
        }
        let hist = History::from_dataset(ds)?;
        let vocab = ds.genre_vocabulary();
        let item_genres: Vec<Vec<u32>> = ds
            .items
            .iter()
            .map(|it| {
                let mut g: Vec<u32> = it
                    .genres
                    .iter()
                    .filter_map(|g| vocab.binary_search(g).ok().map(|x| x as u32))
                    .collect();
                g.sort_unstable();
                g.dedup();
                g
            })
            .collect();
        let (n, d) = (ds.n_items(), cfg.dim);
        let mut rng = Rng::new(cfg.seed);
        let e: Vec<f32> = (0..n * d).map(|_| rng.normal() * 0.1).collect();
        let gamma: Vec<f32> = (0..vocab.len() * d).map(|_| rng.normal() * 0.1).collect();
        let mut w = vec![0.0f32; d * d];
        for r in 0..d {
            w[r * d + r] = 1.0;
        }
        let mut m = GraphSage {
            cfg: *cfg,
            n_items: n,
            e,
            gamma,
            w,
            b: vec![0.0; n],
            item_genres,
            z: Vec::new(),
            hist,
        };
        let seen: Vec<Vec<u32>> = m
            .hist
            .by_user
            .iter()
            .map(|v| {
                let mut s: Vec<u32> = v.iter().map(|x| x.0).collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        let pairs: Vec<(u32, u32)> = ds.interactions.iter().map(|x| (x.user, x.item)).collect();
        let mut nbrs: Vec<u32> = Vec::new();
        let mut scratch = Scratch::default();
        for _ in 0..cfg.epochs {
            for _ in 0..pairs.len() {
                let (u, i) = pairs[rng.below(pairs.len())];
                let s = &seen[u as usize];
                if s.len() < 2 || s.len() >= n {
                    continue;
                }
                let j = loop {
                    let j = rng.below(n) as u32;
                    if s.binary_search(&j).is_err() {
                        break j;
                    }
                };
                nbrs.clear();
                for _ in 0..cfg.sample.min(s.len() - 1) {
                    let c = loop {
                        let c = *rng.pick(s);
                        if c != i {
                            break c;
                        }
                    };
                    nbrs.push(c);
                }
                m.sgd_step(&nbrs, i, j, cfg.lr, &mut scratch);
            }
        }
        m.refresh();
        Ok(m)
    }

    fn z_of(&self, x: u32) -> Vec<f32> {
        let d = self.cfg.dim;
        let mut z = self.e[x as usize * d..(x as usize + 1) * d].to_vec();
        let gs = &self.item_genres[x as usize];
        if !gs.is_empty() {
            let inv = 1.0 / gs.len() as f32;
            for &g in gs {
                for (a, &v) in z
                    .iter_mut()
                    .zip(&self.gamma[g as usize * d..(g as usize + 1) * d])
                {
                    *a += inv * v;
                }
            }
        }
        z
    }

    fn w_times(&self, m: &[f32]) -> Vec<f32> {
        let d = self.cfg.dim;
        (0..d)
            .map(|r| {
                self.w[r * d..(r + 1) * d]
                    .iter()
                    .zip(m)
                    .map(|(a, b)| a * b)
                    .sum()
            })
            .collect()
    }

    /// Score difference `x` of a triple given the aggregated neighbours.
    fn triple_x(
        &self,
        nbrs: &[u32],
        i: u32,
        j: u32,
    ) -> (f32, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let d = self.cfg.dim;
        let mut m = vec![0.0f32; d];
        for &n in nbrs {
            for (a, v) in m.iter_mut().zip(self.z_of(n)) {
                *a += v / nbrs.len() as f32;
            }
        }
        let h = self.w_times(&m);
        let (zi, zj) = (self.z_of(i), self.z_of(j));
        let x = h
            .iter()
            .zip(zi.iter().zip(&zj))
            .map(|(a, (p, q))| a * (p - q))
            .sum::<f32>()
            + self.b[i as usize]
            - self.b[j as usize];
        (x, m, h, zi, zj)
    }

    /// Loss of one triple (f64, for gradient checks).
    pub fn triple_loss(&self, nbrs: &[u32], i: u32, j: u32) -> f64 {
        let d = self.cfg.dim;
        let (x, ..) = self.triple_x(nbrs, i, j);
        let sq = |x: u32| {
            self.e[x as usize * d..(x as usize + 1) * d]
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum::<f64>()
        };
        let (bi, bj) = (self.b[i as usize] as f64, self.b[j as usize] as f64);
        softplus(-(x as f64))
            + 0.5 * self.cfg.reg as f64 * (sq(i) + sq(j))
            + 0.5 * self.cfg.reg_bias as f64 * (bi * bi + bj * bj)
    }

    /// Gradient of [`GraphSage::triple_loss`].
    pub fn triple_grad(&self, nbrs: &[u32], i: u32, j: u32) -> GraphGrad {
        let d = self.cfg.dim;
        let (x, m, h, zi, zj) = self.triple_x(nbrs, i, j);
        let g = -sigmoid(-x);
        let dh: Vec<f32> = zi.iter().zip(&zj).map(|(p, q)| g * (p - q)).collect();
        let mut dw = vec![0.0f32; d * d];
        let mut dm = vec![0.0f32; d];
        for r in 0..d {
            for c in 0..d {
                dw[r * d + c] = dh[r] * m[c];
                dm[c] += self.w[r * d + c] * dh[r];
            }
        }
        let mut dz: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut add = |x: u32, v: &[f32], s: f32| {
            let t = dz.entry(x).or_insert_with(|| vec![0.0; d]);
            t.iter_mut().zip(v).for_each(|(a, b)| *a += s * b);
        };
        add(i, &h, g);
        add(j, &h, -g);
        for &n in nbrs {
            add(n, &dm, 1.0 / nbrs.len() as f32);
        }
        let mut out = GraphGrad {
            dw,
            ..Default::default()
        };
        for (&x, v) in &dz {
            let gs = &self.item_genres[x as usize];
            for &gg in gs {
                let t = out.dgamma.entry(gg).or_insert_with(|| vec![0.0; d]);
                t.iter_mut()
                    .zip(v)
                    .for_each(|(a, b)| *a += b / gs.len() as f32);
            }
            let mut de = v.clone();
            if x == i || x == j {
                let ex = &self.e[x as usize * d..(x as usize + 1) * d];
                de.iter_mut()
                    .zip(ex)
                    .for_each(|(a, b)| *a += self.cfg.reg * b);
            }
            out.de.insert(x, de);
        }
        out.db = vec![
            (i, g + self.cfg.reg_bias * self.b[i as usize]),
            (j, -g + self.cfg.reg_bias * self.b[j as usize]),
        ];
        out
    }

    /// One SGD step, allocation-free: the same update as applying
    /// [`GraphSage::triple_grad`] with learning rate `lr` (checked by a test).
    fn sgd_step(&mut self, nbrs: &[u32], i: u32, j: u32, lr: f32, s: &mut Scratch) {
        let d = self.cfg.dim;
        s.m.clear();
        s.m.resize(d, 0.0);
        s.zi.resize(d, 0.0);
        s.zj.resize(d, 0.0);
        let inv_n = 1.0 / nbrs.len() as f32;
        for &n in nbrs {
            self.z_into(n, &mut s.zi);
            s.m.iter_mut().zip(&s.zi).for_each(|(a, b)| *a += b * inv_n);
        }
        self.z_into(i, &mut s.zi);
        self.z_into(j, &mut s.zj);
        s.h.clear();
        for r in 0..d {
            s.h.push(
                self.w[r * d..(r + 1) * d]
                    .iter()
                    .zip(&s.m)
                    .map(|(a, b)| a * b)
                    .sum(),
            );
        }
        let (bi, bj) = (self.b[i as usize], self.b[j as usize]);
        let x =
            s.h.iter()
                .zip(s.zi.iter().zip(&s.zj))
                .map(|(a, (p, q))| a * (p - q))
                .sum::<f32>()
                + bi
                - bj;
        let g = -sigmoid(-x);
        s.dh.clear();
        s.dh.extend(s.zi.iter().zip(&s.zj).map(|(p, q)| g * (p - q)));
        s.dm.clear();
        s.dm.resize(d, 0.0);
        for r in 0..d {
            let row = &mut self.w[r * d..(r + 1) * d];
            let dhr = s.dh[r];
            for ((w, dm), m) in row.iter_mut().zip(s.dm.iter_mut()).zip(&s.m) {
                *dm += *w * dhr;
                *w -= lr * dhr * m;
            }
        }
        // dz_i = g·h, dz_j = −g·h (plus L2 on e_i, e_j), dz_n = dm / |S|.
        s.dzi.clear();
        s.dzi.extend(s.h.iter().map(|v| g * v));
        for (x, sign) in [(i, 1.0f32), (j, -1.0f32)] {
            let row = &mut self.e[x as usize * d..(x as usize + 1) * d];
            for (a, v) in row.iter_mut().zip(&s.dzi) {
                *a -= lr * (sign * v + self.cfg.reg * *a);
            }
            self.genre_step(x, &s.dzi, sign * lr);
        }
        for &n in nbrs {
            let row = &mut self.e[n as usize * d..(n as usize + 1) * d];
            row.iter_mut()
                .zip(&s.dm)
                .for_each(|(a, v)| *a -= lr * inv_n * v);
            self.genre_step(n, &s.dm, lr * inv_n);
        }
        self.b[i as usize] -= lr * (g + self.cfg.reg_bias * bi);
        self.b[j as usize] -= lr * (-g + self.cfg.reg_bias * bj);
    }

    /// `γ_g -= scale · v / |genres(x)|` for every genre g of item x.
    fn genre_step(&mut self, x: u32, v: &[f32], scale: f32) {
        let d = self.cfg.dim;
        let gs = &self.item_genres[x as usize];
        if gs.is_empty() {
            return;
        }
        let f = scale / gs.len() as f32;
        for &g in gs {
            let row = &mut self.gamma[g as usize * d..(g as usize + 1) * d];
            row.iter_mut().zip(v).for_each(|(a, b)| *a -= f * b);
        }
    }

    fn z_into(&self, x: u32, out: &mut [f32]) {
        let d = self.cfg.dim;
        out.copy_from_slice(&self.e[x as usize * d..(x as usize + 1) * d]);
        let gs = &self.item_genres[x as usize];
        if !gs.is_empty() {
            let inv = 1.0 / gs.len() as f32;
            for &g in gs {
                for (a, &v) in out
                    .iter_mut()
                    .zip(&self.gamma[g as usize * d..(g as usize + 1) * d])
                {
                    *a += inv * v;
                }
            }
        }
    }

    #[cfg(test)]
    fn apply(&mut self, g: &GraphGrad, lr: f32) {
        let d = self.cfg.dim;
        // Deterministic order: sort keys.
        let mut keys: Vec<&u32> = g.de.keys().collect();
        keys.sort_unstable();
        for x in keys {
            let row = &mut self.e[*x as usize * d..(*x as usize + 1) * d];
            row.iter_mut().zip(&g.de[x]).for_each(|(a, b)| *a -= lr * b);
        }
        let mut keys: Vec<&u32> = g.dgamma.keys().collect();
        keys.sort_unstable();
        for x in keys {
            let row = &mut self.gamma[*x as usize * d..(*x as usize + 1) * d];
            row.iter_mut()
                .zip(&g.dgamma[x])
                .for_each(|(a, b)| *a -= lr * b);
        }
        self.w.iter_mut().zip(&g.dw).for_each(|(a, b)| *a -= lr * b);
        for &(x, v) in &g.db {
            self.b[x as usize] -= lr * v;
        }
    }

    fn refresh(&mut self) {
        self.z = (0..self.n_items as u32)
            .flat_map(|x| self.z_of(x))
            .collect();
    }

    /// `h_u` from the user's full neighbourhood (zero for users without history).
    fn user_vec(&self, user: u32) -> Vec<f32> {
        let d = self.cfg.dim;
        let mut m = vec![0.0f32; d];
        let n = self.hist.len(user);
        for x in self.hist.items(user) {
            for (a, v) in m
                .iter_mut()
                .zip(&self.z[x as usize * d..(x as usize + 1) * d])
            {
                *a += v / n as f32;
            }
        }
        self.w_times(&m)
    }

    pub fn scores(&self, user: u32) -> Vec<f32> {
        let h = self.user_vec(user);
        self.z
            .chunks_exact(self.cfg.dim)
            .zip(&self.b)
            .map(|(zj, b)| dot(&h, zj) + b)
            .collect()
    }
}

impl OnlineRecommender for GraphSage {
    fn name(&self) -> &str {
        "graph"
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
        if item as usize >= self.n_items {
            return None;
        }
        let d = self.cfg.dim;
        let zj = &self.z[item as usize * d..(item as usize + 1) * d];
        best_history_item(&self.hist, user, |n| {
            let wz = self.w_times(&self.z[n as usize * d..(n as usize + 1) * d]);
            wz.iter().zip(zj).map(|(a, b)| a * b).sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::testutil::{item, two_clusters};

    fn genre_clusters() -> Dataset {
        let mut ds = two_clusters(30, 12);
        for it in &mut ds.items {
            *it = if it.id < 6 {
                item(it.id, &["Horror"])
            } else {
                item(it.id, &["Comedy", "Romance"])
            };
        }
        ds
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let ds = genre_clusters();
        let cfg = GraphConfig {
            dim: 4,
            epochs: 1,
            reg: 0.05,
            reg_bias: 0.03,
            ..Default::default()
        };
        let mut m = GraphSage::train(&ds, &cfg).unwrap();
        let mut r = Rng::new(3);
        m.w.iter_mut().for_each(|x| *x += r.normal() * 0.3);
        m.b.iter_mut().for_each(|x| *x = r.normal() * 0.3);
        let (nbrs, i, j) = (vec![1u32, 2, 4, 2], 3u32, 8u32);
        let g = m.triple_grad(&nbrs, i, j);
        let h = 1e-3f32;
        let fd = |m: &mut GraphSage, get: &dyn Fn(&mut GraphSage) -> &mut f32| {
            *get(m) += h;
            let lp = m.triple_loss(&nbrs, i, j);
            *get(m) -= 2.0 * h;
            let lm = m.triple_loss(&nbrs, i, j);
            *get(m) += h;
            (lp - lm) / (2.0 * h as f64)
        };
        let close = |num: f64, ana: f32| assert!((num - ana as f64).abs() < 2e-3, "{num} vs {ana}");
        // Every parameter, not only those the analytic gradient names: one it leaves
        // out must have a zero numeric derivative.
        for x in 0..m.b.len() as u32 {
            for c in 0..4 {
                let num = fd(&mut m, &|m| &mut m.e[x as usize * 4 + c]);
                close(num, g.de.get(&x).map_or(0.0, |v| v[c]));
            }
            let num = fd(&mut m, &|m| &mut m.b[x as usize]);
            let ana: f32 = g.db.iter().filter(|e| e.0 == x).map(|e| e.1).sum();
            close(num, ana);
        }
        assert_eq!(m.gamma.len(), 3 * 4);
        for gg in 0..3u32 {
            for c in 0..4 {
                let num = fd(&mut m, &|m| &mut m.gamma[gg as usize * 4 + c]);
                close(num, g.dgamma.get(&gg).map_or(0.0, |v| v[c]));
            }
        }
        assert_eq!(m.w.len(), 16);
        for k in 0..16 {
            let num = fd(&mut m, &|m| &mut m.w[k]);
            close(num, g.dw[k]);
        }
        // The bias terms are in the loss: this check is not vacuous.
        assert!(g.db.iter().all(|e| e.1.abs() > 1e-3), "{:?}", g.db);
    }

    #[test]
    fn fast_sgd_step_equals_applying_the_checked_gradient() {
        let ds = genre_clusters();
        let cfg = GraphConfig {
            dim: 5,
            epochs: 2,
            reg: 0.05,
            reg_bias: 0.03,
            ..Default::default()
        };
        let m = GraphSage::train(&ds, &cfg).unwrap();
        let (nbrs, i, j) = (vec![1u32, 2, 4, 2], 3u32, 8u32);
        let mut a = m.clone();
        a.apply(&m.triple_grad(&nbrs, i, j), 0.1);
        let mut b = m.clone();
        b.sgd_step(&nbrs, i, j, 0.1, &mut Scratch::default());
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
        assert!(
            close(&a.e, &b.e)
                && close(&a.gamma, &b.gamma)
                && close(&a.w, &b.w)
                && close(&a.b, &b.b)
        );
        assert!(!close(&a.e, &m.e));
    }

    #[test]
    fn learns_clusters_and_new_users_inherit_from_neighbours() {
        let ds = genre_clusters();
        let cfg = GraphConfig {
            dim: 8,
            epochs: 40,
            ..Default::default()
        };
        let mut m = GraphSage::train(&ds, &cfg).unwrap();
        let h = History::from_dataset(&ds).unwrap();
        let mut hits = 0;
        for u in 0..30u32 {
            let mut ex = vec![false; 12];
            h.items(u).for_each(|i| ex[i as usize] = true);
            let rec = m.recommend(u, 1, &ex, 0);
            let cluster_lo = if u < 15 { 0 } else { 6 };
            if (cluster_lo..cluster_lo + 6).contains(&rec[0]) {
                hits += 1;
            }
        }
        assert!(hits >= 28, "in-cluster top-1 for {hits}/30 users");
        m.observe(&Interaction {
            user: 30,
            item: 7,
            rating: 4.0,
            timestamp: 0,
        })
        .unwrap();
        let mut ex = vec![false; 12];
        ex[7] = true;
        let rec = m.recommend(30, 3, &ex, 0);
        assert!(rec.iter().all(|&i| i >= 6), "{rec:?}");
        assert_eq!(m.explain(30, rec[0], 0), Some(Reason::BecauseYouWatched(7)));
        let again = GraphSage::train(&ds, &cfg).unwrap();
        assert_eq!(
            again.scores(2),
            GraphSage::train(&ds, &cfg).unwrap().scores(2)
        );
        assert!(GraphSage::train(&ds, &GraphConfig { dim: 0, ..cfg }).is_err());
    }
}
