//! Hyperbolic attention in the Poincaré ball.
//!
//! Queries, keys and values are points of the ball of curvature `−c`. In
//! [`BallInput::Tangent`] mode (the default) input rows are Euclidean vectors read as
//! tangent vectors at the origin and mapped into the ball with `exp_0`; in
//! [`BallInput::Ball`] mode they must already lie in the ball.
//!
//! Weights: `α_ij = softmax_j(−β · d_c(q_i, k_j))` — nearer keys weigh more.
//! Aggregation: the weighted Möbius gyromidpoint of the value points
//! `m_i = ½ ⊗_c (Σ_j α_ij λ_j v_j / Σ_j α_ij (λ_j − 1))`, `λ_j = 2/(1 − c‖v_j‖²)`
//! (Ungar; used by Bachmann et al., 2020, κ-GCN). It stays in the ball, returns `v` for a
//! single point, and commutes with hyperbolic isometries (Möbius translations): that
//! equivariance is what the tests check. The output row is a point in the ball.

use super::hyperbolic::{dist_from_parts, exp0_raw, mobius_scale_raw, norm2};
use super::math::softmax_in_place;
use super::{Attention, AttnError, AttnInput};

/// How input rows are placed in the ball.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BallInput {
    /// Rows are tangent vectors at the origin; mapped with `exp_0`.
    Tangent,
    /// Rows are already points in the ball (checked).
    Ball,
}

/// Poincaré-ball attention.
#[derive(Clone, Copy, Debug)]
pub struct HyperbolicAttention {
    /// Curvature magnitude (`c > 0`).
    pub c: f32,
    /// Inverse temperature on distances.
    pub beta: f32,
    pub input: BallInput,
}

impl Default for HyperbolicAttention {
    fn default() -> Self {
        HyperbolicAttention {
            c: 1.0,
            beta: 1.0,
            input: BallInput::Tangent,
        }
    }
}

/// Rows of `x` (`n × d`) as ball points: mapped with `exp_0`, or checked to be inside.
pub(crate) fn to_ball(
    x: &[f32],
    d: usize,
    c: f64,
    mode: BallInput,
    what: &'static str,
) -> Result<Vec<f32>, AttnError> {
    match mode {
        BallInput::Tangent => {
            let mut out = vec![0.0f32; x.len()];
            for (src, dst) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
                exp0_raw(src, c, dst);
            }
            Ok(out)
        }
        BallInput::Ball => {
            for (r, row) in x.chunks_exact(d).enumerate() {
                if c * norm2(row) >= 1.0 {
                    return Err(AttnError::Invalid {
                        what,
                        msg: format!("row {r} lies outside the Poincaré ball"),
                    });
                }
            }
            Ok(x.to_vec())
        }
    }
}

/// `−d_c(q_i, k_j)` for all pairs, row-major `[n_q × n_k]`, on ball points.
pub(crate) fn neg_distances(
    qb: &[f32],
    kb: &[f32],
    n_q: usize,
    n_k: usize,
    d: usize,
    c: f64,
    out: &mut [f32],
) {
    let k2: Vec<f64> = kb.chunks_exact(d).map(norm2).collect();
    for i in 0..n_q {
        let qi = &qb[i * d..(i + 1) * d];
        let q2 = norm2(qi);
        for j in 0..n_k {
            let kj = &kb[j * d..(j + 1) * d];
            let diff2: f64 = qi
                .iter()
                .zip(kj)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            out[i * n_k + j] = -dist_from_parts(q2, k2[j], diff2, c) as f32;
        }
    }
}

/// Weighted gyromidpoint of ball points `vb` (`n × d_v`) with weights `w` into `out`.
pub(crate) fn gyromidpoint(w: &[f32], vb: &[f32], d_v: usize, c: f64, out: &mut [f32]) {
    let mut num = vec![0.0f64; d_v];
    let mut den = 0.0f64;
    for (j, &a) in w.iter().enumerate() {
        if a == 0.0 {
            continue;
        }
        let vj = &vb[j * d_v..(j + 1) * d_v];
        let lam = 2.0 / (1.0 - c * norm2(vj));
        for t in 0..d_v {
            num[t] += a as f64 * lam * vj[t] as f64;
        }
        den += a as f64 * (lam - 1.0);
    }
    let inner: Vec<f32> = num.iter().map(|x| (x / den.max(1e-300)) as f32).collect();
    mobius_scale_raw(0.5, &inner, c, out);
}

impl HyperbolicAttention {
    fn check(&self) -> Result<f64, AttnError> {
        if !(self.c.is_finite() && self.c > 0.0 && self.beta.is_finite() && self.beta > 0.0) {
            return Err(AttnError::Invalid {
                what: "hyperbolic attention config",
                msg: format!(
                    "c and beta must be finite and > 0 (c={}, beta={})",
                    self.c, self.beta
                ),
            });
        }
        Ok(self.c as f64)
    }

    /// Attention weights `[n_q × n_k]` (exposed for the dual-space mechanism and tests).
    pub fn weights(&self, inp: &AttnInput) -> Result<Vec<f32>, AttnError> {
        inp.validate(inp.n_q * inp.d_v)?;
        let c = self.check()?;
        let qb = to_ball(inp.q, inp.d, c, self.input, "queries")?;
        let kb = to_ball(inp.k, inp.d, c, self.input, "keys")?;
        let mut w = vec![0.0f32; inp.n_q * inp.n_k];
        neg_distances(&qb, &kb, inp.n_q, inp.n_k, inp.d, c, &mut w);
        for (i, row) in w.chunks_exact_mut(inp.n_k).enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = if inp.extras.mask.is_some_and(|m| !m[i * inp.n_k + j]) {
                    f32::NEG_INFINITY
                } else {
                    *x * self.beta
                };
            }
            softmax_in_place(row);
        }
        Ok(w)
    }
}

impl Attention for HyperbolicAttention {
    fn name(&self) -> &'static str {
        "hyperbolic"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        let c = self.check()?;
        let vb = to_ball(inp.v, inp.d_v, c, self.input, "values")?;
        let w = self.weights(inp)?;
        for i in 0..inp.n_q {
            let row = &w[i * inp.n_k..(i + 1) * inp.n_k];
            let o = &mut out[i * inp.d_v..(i + 1) * inp.d_v];
            if row.iter().all(|&a| a == 0.0) {
                o.iter_mut().for_each(|x| *x = 0.0);
            } else {
                gyromidpoint(row, &vb, inp.d_v, c, o);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::hyperbolic::{mobius_add, poincare_distance};
    use crate::attention::testutil::*;
    use crate::rng::Rng;

    fn ball_points(rng: &mut Rng, n: usize, d: usize) -> Vec<f32> {
        let mut out = vec![0.0; n * d];
        for row in out.chunks_exact_mut(d) {
            let v: Vec<f32> = (0..d).map(|_| rng.normal() * 0.6).collect();
            exp0_raw(&v, 1.0, row);
        }
        out
    }

    #[test]
    fn weights_follow_negative_distance_and_output_matches_formula() {
        let mut rng = Rng::new(1);
        let (n_q, n_k, d, d_v) = (3, 5, 4, 3);
        let (q, k, v) = (
            ball_points(&mut rng, n_q, d),
            ball_points(&mut rng, n_k, d),
            ball_points(&mut rng, n_k, d_v),
        );
        let att = HyperbolicAttention {
            c: 1.0,
            beta: 2.0,
            input: BallInput::Ball,
        };
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        let mut out = vec![0.0; n_q * d_v];
        att.forward(&inp, &mut out).unwrap();
        for i in 0..n_q {
            // Reference in f64 from the public distance and the gyromidpoint formula.
            let s: Vec<f64> = (0..n_k)
                .map(|j| {
                    -2.0 * poincare_distance(&q[i * d..(i + 1) * d], &k[j * d..(j + 1) * d], 1.0)
                        .unwrap() as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            let a: Vec<f64> = s.iter().map(|x| (x - m).exp() / z).collect();
            let mut num = vec![0.0f64; d_v];
            let mut den = 0.0;
            for j in 0..n_k {
                let vj = &v[j * d_v..(j + 1) * d_v];
                let lam = 2.0 / (1.0 - vj.iter().map(|x| (*x as f64).powi(2)).sum::<f64>());
                for t in 0..d_v {
                    num[t] += a[j] * lam * vj[t] as f64;
                }
                den += a[j] * (lam - 1.0);
            }
            let u: Vec<f64> = num.iter().map(|x| x / den).collect();
            let un = u.iter().map(|x| x * x).sum::<f64>().sqrt();
            let want: Vec<f32> = u
                .iter()
                .map(|x| ((0.5 * un.atanh()).tanh() / un * x) as f32)
                .collect();
            assert_close(&out[i * d_v..(i + 1) * d_v], &want, 1e-4);
        }
    }

    #[test]
    fn single_visible_key_returns_its_value_point() {
        let mut rng = Rng::new(2);
        let (q, k, v) = (
            ball_points(&mut rng, 1, 3),
            ball_points(&mut rng, 4, 3),
            ball_points(&mut rng, 4, 2),
        );
        let mask = [false, false, true, false];
        let att = HyperbolicAttention {
            input: BallInput::Ball,
            ..Default::default()
        };
        let inp = AttnInput::new(&q, &k, &v, 1, 4, 3, 2).with_extras(crate::attention::Extras {
            mask: Some(&mask),
            ..Default::default()
        });
        let mut out = [0.0; 2];
        att.forward(&inp, &mut out).unwrap();
        assert_close(&out, &v[4..6], 1e-5);
    }

    #[test]
    fn commutes_with_mobius_translation() {
        // Property: translating every point by a (an isometry of the ball) leaves the weights
        // unchanged and translates the aggregated output: out(a ⊕ ·) = a ⊕ out(·).
        let mut rng = Rng::new(3);
        let (n_q, n_k, d) = (4, 6, 3);
        let (q, k, v) = (
            ball_points(&mut rng, n_q, d),
            ball_points(&mut rng, n_k, d),
            ball_points(&mut rng, n_k, d),
        );
        let a = [0.3f32, -0.2, 0.1];
        let shift = |x: &[f32]| -> Vec<f32> {
            let mut o = vec![0.0; x.len()];
            for (src, dst) in x.chunks_exact(d).zip(o.chunks_exact_mut(d)) {
                mobius_add(&a, src, 1.0, dst).unwrap();
            }
            o
        };
        let att = HyperbolicAttention {
            input: BallInput::Ball,
            ..Default::default()
        };
        let mut out = vec![0.0; n_q * d];
        att.forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d), &mut out)
            .unwrap();
        let (qs, ks, vs) = (shift(&q), shift(&k), shift(&v));
        let mut out_s = vec![0.0; n_q * d];
        att.forward(&AttnInput::new(&qs, &ks, &vs, n_q, n_k, d, d), &mut out_s)
            .unwrap();
        let want = shift(&out);
        assert_close(&out_s, &want, 2e-4);
    }

    #[test]
    fn outputs_stay_in_ball_and_points_outside_are_rejected() {
        let (q, k, mut v) = rand_qkv(4, 3, 5, 4, 4);
        v.iter_mut().for_each(|x| *x *= 30.0); // huge tangent vectors land next to the boundary
        let mut out = vec![0.0; 12];
        HyperbolicAttention::default()
            .forward(&AttnInput::new(&q, &k, &v, 3, 5, 4, 4), &mut out)
            .unwrap();
        for row in out.chunks_exact(4) {
            assert!(norm2(row) < 1.0 && row.iter().all(|x| x.is_finite()));
        }
        let att = HyperbolicAttention {
            input: BallInput::Ball,
            ..Default::default()
        };
        assert!(matches!(
            att.forward(&AttnInput::new(&q, &k, &v, 3, 5, 4, 4), &mut out),
            Err(AttnError::Invalid { .. })
        ));
    }
}
