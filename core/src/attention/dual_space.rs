//! Dual-space attention: Euclidean and hyperbolic similarity combined in one score.
//!
//! `s_ij = w_e · q_i·k_j/√d − w_h · β · d_c(exp_0 q_i, exp_0 k_j)`, `out_i = Σ_j softmax_j(s_ij) v_j`.
//! The Euclidean term captures feature overlap, the hyperbolic term hierarchy-aware
//! proximity (distances near the boundary grow fast). Values are aggregated in Euclidean
//! space. `w_e = 1, w_h = 0` is dot-product attention; `w_e = 0, w_h = 1` uses exactly the
//! hyperbolic attention weights. Reads `extras.mask`.

use super::hyperbolic::exp0_raw;
use super::hyperbolic_attn::neg_distances;
use super::math::{axpy, dot, softmax_in_place};
use super::{Attention, AttnError, AttnInput};

/// Dual-space (Euclidean + Poincaré) attention.
#[derive(Clone, Copy, Debug)]
pub struct DualSpace {
    pub w_euclid: f32,
    pub w_hyper: f32,
    pub c: f32,
    pub beta: f32,
}

impl Default for DualSpace {
    fn default() -> Self {
        DualSpace {
            w_euclid: 0.5,
            w_hyper: 0.5,
            c: 1.0,
            beta: 1.0,
        }
    }
}

impl Attention for DualSpace {
    fn name(&self) -> &'static str {
        "dual_space"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        let ok = [self.w_euclid, self.w_hyper, self.c, self.beta]
            .iter()
            .all(|x| x.is_finite())
            && self.c > 0.0
            && self.w_euclid >= 0.0
            && self.w_hyper >= 0.0;
        if !ok {
            return Err(AttnError::Invalid {
                what: "dual-space config",
                msg: "weights must be finite and ≥ 0, c finite and > 0".into(),
            });
        }
        let (n_q, n_k, d, d_v) = (inp.n_q, inp.n_k, inp.d, inp.d_v);
        let c = self.c as f64;
        let mut qb = vec![0.0f32; n_q * d];
        let mut kb = vec![0.0f32; n_k * d];
        for (s, t) in inp.q.chunks_exact(d).zip(qb.chunks_exact_mut(d)) {
            exp0_raw(s, c, t);
        }
        for (s, t) in inp.k.chunks_exact(d).zip(kb.chunks_exact_mut(d)) {
            exp0_raw(s, c, t);
        }
        let mut sc = vec![0.0f32; n_q * n_k];
        neg_distances(&qb, &kb, n_q, n_k, d, c, &mut sc);
        let inv = 1.0 / (d as f32).sqrt();
        for i in 0..n_q {
            let row = &mut sc[i * n_k..(i + 1) * n_k];
            for (j, s) in row.iter_mut().enumerate() {
                *s = if inp.extras.mask.is_some_and(|m| !m[i * n_k + j]) {
                    f32::NEG_INFINITY
                } else {
                    self.w_euclid
                        * dot(&inp.q[i * d..(i + 1) * d], &inp.k[j * d..(j + 1) * d])
                        * inv
                        + self.w_hyper * self.beta * *s
                };
            }
            softmax_in_place(row);
            let o = &mut out[i * d_v..(i + 1) * d_v];
            o.iter_mut().for_each(|x| *x = 0.0);
            for (j, &p) in row.iter().enumerate() {
                if p != 0.0 {
                    axpy(p, &inp.v[j * d_v..(j + 1) * d_v], o);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::hyperbolic::poincare_distance;
    use crate::attention::hyperbolic_attn::HyperbolicAttention;
    use crate::attention::testutil::*;

    #[test]
    fn score_is_the_weighted_sum_of_both_spaces() {
        let (n_q, n_k, d, d_v) = (3, 6, 4, 2);
        let (q, k, v) = rand_qkv(1, n_q, n_k, d, d_v);
        let m = DualSpace {
            w_euclid: 0.7,
            w_hyper: 1.3,
            c: 0.8,
            beta: 1.5,
        };
        let mut out = vec![0.0; n_q * d_v];
        m.forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v), &mut out)
            .unwrap();
        let exp0 = |x: &[f32]| {
            let mut o = vec![0.0; x.len()];
            exp0_raw(x, 0.8, &mut o);
            o
        };
        for i in 0..n_q {
            let qi = &q[i * d..(i + 1) * d];
            let scores: Vec<Option<f64>> = (0..n_k)
                .map(|j| {
                    let kj = &k[j * d..(j + 1) * d];
                    let e: f64 = qi.iter().zip(kj).map(|(a, b)| (a * b) as f64).sum::<f64>() / 2.0;
                    let h = poincare_distance(&exp0(qi), &exp0(kj), 0.8).unwrap() as f64;
                    Some(0.7 * e - 1.3 * 1.5 * h)
                })
                .collect();
            assert_close(
                &out[i * d_v..(i + 1) * d_v],
                &softmax_combine_f64(&scores, &v, d_v),
                1e-4,
            );
        }
    }

    #[test]
    fn extremes_reduce_to_each_space() {
        let (n_q, n_k, d, d_v) = (4, 5, 3, 3);
        let (q, k, v) = rand_qkv(2, n_q, n_k, d, d_v);
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        let mut out = vec![0.0; n_q * d_v];
        DualSpace {
            w_euclid: 1.0,
            w_hyper: 0.0,
            ..Default::default()
        }
        .forward(&inp, &mut out)
        .unwrap();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n_q, n_k, d, d_v, None),
            1e-5,
        );
        DualSpace {
            w_euclid: 0.0,
            w_hyper: 1.0,
            ..Default::default()
        }
        .forward(&inp, &mut out)
        .unwrap();
        let w = HyperbolicAttention::default().weights(&inp).unwrap();
        for i in 0..n_q {
            for c in 0..d_v {
                let want: f32 = (0..n_k).map(|j| w[i * n_k + j] * v[j * d_v + c]).sum();
                assert!((out[i * d_v + c] - want).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn mask_removes_keys_from_both_spaces() {
        let (n_q, n_k, d, d_v) = (4, 7, 4, 3);
        let (q, k, v) = rand_qkv(3, n_q, n_k, d, d_v);
        let m = DualSpace {
            w_euclid: 0.6,
            w_hyper: 1.1,
            c: 1.2,
            beta: 0.9,
        };
        let mut rng = crate::rng::Rng::new(4);
        let mut mask: Vec<bool> = (0..n_q * n_k).map(|_| rng.chance(0.5)).collect();
        for j in 0..n_k {
            mask[n_k + j] = false; // query 1 sees nothing
            mask[2 * n_k + j] = j == 5; // query 2 sees only key 5
            mask[3 * n_k + j] = j != 2 && j != 4;
        }
        let inp =
            AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(crate::attention::Extras {
                mask: Some(&mask),
                ..Default::default()
            });
        let mut out = vec![0.0; n_q * d_v];
        m.forward(&inp, &mut out).unwrap();
        let exp0 = |x: &[f32]| {
            let mut o = vec![0.0; x.len()];
            exp0_raw(x, 1.2, &mut o);
            o
        };
        for i in 0..n_q {
            let qi = &q[i * d..(i + 1) * d];
            let scores: Vec<Option<f64>> = (0..n_k)
                .map(|j| {
                    mask[i * n_k + j].then(|| {
                        let kj = &k[j * d..(j + 1) * d];
                        let e: f64 =
                            qi.iter().zip(kj).map(|(a, b)| (a * b) as f64).sum::<f64>() / 2.0;
                        let h = poincare_distance(&exp0(qi), &exp0(kj), 1.2).unwrap() as f64;
                        0.6 * e - 1.1 * 0.9 * h
                    })
                })
                .collect();
            assert_close(
                &out[i * d_v..(i + 1) * d_v],
                &softmax_combine_f64(&scores, &v, d_v),
                1e-4,
            );
        }
        assert!(out[d_v..2 * d_v].iter().all(|&x| x == 0.0));
        assert_close(&out[2 * d_v..3 * d_v], &v[5 * d_v..6 * d_v], 1e-6);
    }
}
