//! EWC++ over the per-viewer adapter, in exactly its parameter layout:
//! a diagonal Fisher with one entry per entry of `A_u` (r × d) and `B_u` (d × r).
//!
//! - Online Fisher: after each adaptation `F ← γ F + (1 − γ) F_new`, where
//!   `F_new` is the Fisher of that adaptation's pairs
//!   (`lora::pair_fisher`). The penalty uses the bias-corrected
//!   `F̂ = F / (1 − γ^t)` (t = number of Fisher updates; F̂ = 0 before the
//!   first), so the first adaptation is not under-weighted by (1 − γ).
//! - Penalty `λ/2 · Σ F̃ᵢ (θᵢ − θ*ᵢ)²`, gradient `λ F̃ ⊙ (θ − θ*)`, added to the
//!   BPR gradient at every optimizer step, where F̃ is F̂ itself
//!   ([`FisherScale::Raw`]) or F̂ divided by its mean ([`FisherScale::MeanOne`],
//!   default; see there for why).
//! - Anchor θ*: see [`super::EwcAnchor`].

use super::lora::dot;
use super::FisherScale;

#[derive(Clone, Debug, PartialEq)]
/// `fisher_b` / `anchor_b` use the per-viewer Bᵀ layout (r × d), like the factor itself.
pub(crate) struct EwcState {
    pub fisher_a: Vec<f32>,
    pub fisher_b: Vec<f32>,
    /// Number of Fisher updates folded in (t).
    pub updates: u32,
    pub anchor_a: Vec<f32>,
    pub anchor_b: Vec<f32>,
}

impl EwcState {
    pub fn new(anchor_a: Vec<f32>, anchor_b: Vec<f32>) -> Self {
        EwcState {
            fisher_a: vec![0.0; anchor_a.len()],
            fisher_b: vec![0.0; anchor_b.len()],
            updates: 0,
            anchor_a,
            anchor_b,
        }
    }

    /// Bias correction 1 / (1 − γ^t); 0 before any update.
    pub fn correction(&self, gamma: f32) -> f32 {
        if self.updates == 0 {
            0.0
        } else {
            let g = (gamma as f64).powi(self.updates.min(i32::MAX as u32) as i32);
            (1.0 / (1.0 - g)) as f32
        }
    }

    /// The multiplier k of the raw Fisher in the penalty `k/2 · Σ F (θ − θ*)²`:
    /// `λ / (1 − γ^t)` for [`FisherScale::Raw`], and `λ / mean(F)` for
    /// [`FisherScale::MeanOne`] (bias correction cancels there). 0 before any
    /// Fisher update or when λ = 0.
    pub fn multiplier(&self, lambda: f32, gamma: f32, scale: FisherScale) -> f32 {
        let c = self.correction(gamma);
        if c == 0.0 || lambda == 0.0 {
            return 0.0;
        }
        match scale {
            FisherScale::Raw => lambda * c,
            FisherScale::MeanOne => {
                let n = self.fisher_a.len() + self.fisher_b.len();
                let sum: f64 = self
                    .fisher_a
                    .iter()
                    .chain(&self.fisher_b)
                    .map(|&x| x as f64)
                    .sum();
                if sum <= 0.0 {
                    0.0
                } else {
                    (lambda as f64 * n as f64 / sum) as f32
                }
            }
        }
    }

    /// `k/2 · Σ F (θ − θ*)²` (f64 accumulation); k from [`multiplier`](Self::multiplier).
    pub fn penalty(&self, k: f32, a: &[f32], b: &[f32]) -> f64 {
        if k == 0.0 {
            return 0.0;
        }
        let mut s = 0f64;
        for (f, (t, t0)) in self
            .fisher_a
            .iter()
            .zip(a.iter().zip(&self.anchor_a))
            .chain(self.fisher_b.iter().zip(b.iter().zip(&self.anchor_b)))
        {
            let dlt = (*t - *t0) as f64;
            s += *f as f64 * dlt * dlt;
        }
        0.5 * k as f64 * s
    }

    /// grad += k F ⊙ (θ − θ*)
    pub fn add_grad(&self, k: f32, a: &[f32], b: &[f32], ga: &mut [f32], gb: &mut [f32]) {
        if k == 0.0 {
            return;
        }
        for (g, (f, (t, t0))) in ga
            .iter_mut()
            .zip(self.fisher_a.iter().zip(a.iter().zip(&self.anchor_a)))
        {
            *g += k * f * (t - t0);
        }
        for (g, (f, (t, t0))) in gb
            .iter_mut()
            .zip(self.fisher_b.iter().zip(b.iter().zip(&self.anchor_b)))
        {
            *g += k * f * (t - t0);
        }
    }

    /// F ← γ F + (1 − γ) F_new; t += 1.
    pub fn fold(&mut self, gamma: f32, new_a: &[f32], new_b: &[f32]) {
        for (f, n) in self.fisher_a.iter_mut().zip(new_a) {
            *f = gamma * *f + (1.0 - gamma) * n;
        }
        for (f, n) in self.fisher_b.iter_mut().zip(new_b) {
            *f = gamma * *f + (1.0 - gamma) * n;
        }
        self.updates = self.updates.saturating_add(1);
    }

    /// Σ F̂ over all entries.
    pub fn mass(&self, gamma: f32) -> f32 {
        let s: f64 = self
            .fisher_a
            .iter()
            .chain(&self.fisher_b)
            .map(|&x| x as f64)
            .sum();
        (s * self.correction(gamma) as f64) as f32
    }

    /// Bias-corrected diagonal (A part, B part).
    pub fn corrected(&self, gamma: f32) -> (Vec<f32>, Vec<f32>) {
        let c = self.correction(gamma);
        (
            self.fisher_a.iter().map(|x| x * c).collect(),
            self.fisher_b.iter().map(|x| x * c).collect(),
        )
    }
}

/// Row and column sums of a non-negative rows × cols matrix.
pub(crate) fn marginals(m: &[f32], rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rs = vec![0f32; rows];
    let mut cs = vec![0f32; cols];
    for i in 0..rows {
        let row = &m[i * cols..(i + 1) * cols];
        rs[i] = row.iter().map(|&x| x as f64).sum::<f64>() as f32;
        for (c, &x) in cs.iter_mut().zip(row) {
            *c += x;
        }
    }
    (rs, cs)
}

/// The separable (rank-one, marginal-preserving) reconstruction `row_i · col_j / total`.
pub(crate) fn from_marginals(rs: &[f32], cs: &[f32]) -> Vec<f32> {
    let total: f64 = rs.iter().map(|&x| x as f64).sum();
    let mut m = vec![0f32; rs.len() * cs.len()];
    if total <= 0.0 {
        return m;
    }
    for (i, &r) in rs.iter().enumerate() {
        let s = (r as f64 / total) as f32;
        for (o, &c) in m[i * cs.len()..(i + 1) * cs.len()].iter_mut().zip(cs) {
            *o = s * c;
        }
    }
    m
}

/// 8-bit logarithmic quantization of non-negative values: code 0 is exactly
/// zero; codes 1..=255 span [min positive, max] geometrically (relative error
/// ≤ half a step, e.g. ±3.6 % for a 10⁶ dynamic range).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LogQuant {
    pub lo: f32,
    pub hi: f32,
    pub codes: super::format::Blob,
}

impl LogQuant {
    pub fn encode(v: &[f32]) -> LogQuant {
        let pos = v.iter().copied().filter(|&x| x > 0.0);
        let (mut lo, mut hi) = (f32::INFINITY, 0f32);
        for x in pos {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        if hi <= 0.0 {
            return LogQuant {
                lo: 0.0,
                hi: 0.0,
                codes: super::format::Blob(vec![0; v.len()]),
            };
        }
        let (l, h) = (lo.ln(), hi.ln());
        let span = h - l;
        let codes = v
            .iter()
            .map(|&x| {
                if x <= 0.0 {
                    0
                } else if span <= 0.0 {
                    1
                } else {
                    1 + ((x.ln() - l) / span * 254.0).round().clamp(0.0, 254.0) as u8
                }
            })
            .collect();
        LogQuant {
            lo: l,
            hi: h,
            codes: super::format::Blob(codes),
        }
    }

    pub fn decode(&self) -> Vec<f32> {
        // Code → value table: one exp for the step, then products (no exp per value).
        let step = ((self.hi - self.lo) as f64 / 254.0).exp();
        let mut table = [0f32; 256];
        let mut v = (self.lo as f64).exp();
        for t in table.iter_mut().skip(1) {
            *t = v as f32;
            v *= step;
        }
        self.codes.0.iter().map(|&c| table[c as usize]).collect()
    }
}

/// Cosine similarity of two non-negative vectors (test/diagnostic helper).
#[allow(dead_code)]
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let n = (dot(a, a) * dot(b, b)).sqrt();
    if n == 0.0 {
        0.0
    } else {
        dot(a, b) / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn penalty_gradient_matches_finite_differences() {
        let mut rng = Rng::new(21);
        let (na, nb) = (24, 24);
        let anchor_a: Vec<f32> = (0..na).map(|_| rng.normal()).collect();
        let anchor_b: Vec<f32> = (0..nb).map(|_| rng.normal()).collect();
        let mut e = EwcState::new(anchor_a, anchor_b);
        let fa: Vec<f32> = (0..na).map(|_| rng.uniform(0.0, 2.0)).collect();
        let fb: Vec<f32> = (0..nb).map(|_| rng.uniform(0.0, 2.0)).collect();
        e.fold(0.9, &fa, &fb);
        e.fold(0.9, &fb, &fa);
        let a: Vec<f32> = (0..na).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..nb).map(|_| rng.normal()).collect();
        let (lambda, gamma) = (0.7, 0.9);
        for scale in [FisherScale::Raw, FisherScale::MeanOne] {
            let k = e.multiplier(lambda, gamma, scale);
            assert!(k > 0.0);
            let (mut ga, mut gb) = (vec![0.0; na], vec![0.0; nb]);
            e.add_grad(k, &a, &b, &mut ga, &mut gb);
            // Central differences of the f64 penalty (exact for a quadratic up to rounding).
            let h = 1e-2f32;
            for i in 0..na {
                let (mut p, mut m) = (a.clone(), a.clone());
                p[i] += h;
                m[i] -= h;
                let fd = (e.penalty(k, &p, &b) - e.penalty(k, &m, &b)) / (2.0 * h as f64);
                assert!(
                    (fd - ga[i] as f64).abs() <= 1e-4 * (1.0 + fd.abs()),
                    "A[{i}]: fd {fd} vs {}",
                    ga[i]
                );
            }
            for i in 0..nb {
                let (mut p, mut m) = (b.clone(), b.clone());
                p[i] += h;
                m[i] -= h;
                let fd = (e.penalty(k, &a, &p) - e.penalty(k, &a, &m)) / (2.0 * h as f64);
                assert!(
                    (fd - gb[i] as f64).abs() <= 1e-4 * (1.0 + fd.abs()),
                    "B[{i}]: fd {fd} vs {}",
                    gb[i]
                );
            }
            // Zero at the anchor, positive away from it.
            assert_eq!(e.penalty(k, &e.anchor_a.clone(), &e.anchor_b.clone()), 0.0);
            assert!(e.penalty(k, &a, &b) > 0.0);
        }
        // Raw multiplier = λ/(1−γ²) after two folds; MeanOne makes the mean weight λ.
        assert!((e.multiplier(lambda, gamma, FisherScale::Raw) - lambda / 0.19).abs() < 1e-4);
        let km = e.multiplier(lambda, gamma, FisherScale::MeanOne);
        let mean: f32 = e.fisher_a.iter().chain(&e.fisher_b).sum::<f32>() / (na + nb) as f32;
        assert!((km * mean - lambda).abs() < 1e-4);
        assert_eq!(
            EwcState::new(vec![0.0; 2], vec![]).multiplier(1.0, 0.9, FisherScale::Raw),
            0.0
        );
    }

    #[test]
    fn online_fisher_is_a_bias_corrected_moving_average() {
        let mut e = EwcState::new(vec![0.0; 2], vec![0.0; 1]);
        assert_eq!(e.mass(0.9), 0.0);
        e.fold(0.9, &[1.0, 2.0], &[3.0]);
        // raw F = 0.1·g²; corrected = g².
        assert!((e.fisher_a[0] - 0.1).abs() < 1e-7);
        assert!((e.mass(0.9) - 6.0).abs() < 1e-5);
        e.fold(0.9, &[0.0, 0.0], &[0.0]);
        // raw 0.09·g², correction 1/0.19.
        assert!((e.fisher_a[1] - 0.18).abs() < 1e-6);
        assert!((e.mass(0.9) - 6.0 * 0.09 / 0.19).abs() < 1e-4);
    }

    #[test]
    fn separable_storage_is_exact_for_rank_one_and_keeps_marginals() {
        let rs0 = [0.5f32, 2.0, 0.0, 1.5];
        let cs0 = [1.0f32, 0.25, 3.0];
        let m: Vec<f32> = rs0
            .iter()
            .flat_map(|r| cs0.iter().map(move |c| r * c))
            .collect();
        let (rs, cs) = marginals(&m, 4, 3);
        let back = from_marginals(&rs, &cs);
        for (x, y) in m.iter().zip(&back) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        // Not rank one: marginals and total still preserved.
        let m2 = [1.0f32, 0.0, 0.0, 1.0];
        let (rs, cs) = marginals(&m2, 2, 2);
        let back = from_marginals(&rs, &cs);
        let (rs2, cs2) = marginals(&back, 2, 2);
        assert_eq!(rs, rs2);
        assert_eq!(cs, cs2);
    }

    #[test]
    fn log_quantization_error_is_bounded() {
        let v: Vec<f32> = (0..300)
            .map(|i| {
                if i % 7 == 0 {
                    0.0
                } else {
                    1e-6 * 1.05f32.powi(i)
                }
            })
            .collect();
        let q = LogQuant::encode(&v);
        let back = q.decode();
        let step = ((q.hi - q.lo) / 254.0).exp();
        for (x, y) in v.iter().zip(&back) {
            if *x == 0.0 {
                assert_eq!(*y, 0.0);
            } else {
                let ratio = (y / x).max(x / y);
                assert!(ratio <= step.sqrt() * 1.0001, "{x} -> {y}");
            }
        }
        assert_eq!(LogQuant::encode(&[0.0, 0.0]).decode(), vec![0.0, 0.0]);
        assert_eq!(LogQuant::encode(&[2.0, 2.0]).decode(), vec![2.0, 2.0]);
    }
}
