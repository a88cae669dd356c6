//! GraphRoPE: rotary position encoding driven by graph positions.
//!
//! Every query and key carries a scalar graph position `p` (`extras.positions`, for example
//! the hop distance from an anchor node or a spectral coordinate). Each pair of feature
//! dimensions `(2t, 2t+1)` is rotated by the angle `p · θ_t`, `θ_t = base^(−2t/d)` (Su et
//! al., 2021, RoFormer). Since `R(a)ᵀ R(b) = R(b − a)`, the score `⟨R(p_i) q_i, R(p_j) k_j⟩`
//! depends on positions only through `p_j − p_i`. Scores then go through the flash kernel
//! (exact softmax, O(block) memory). Needs an even `d`; reads `extras.mask`.

use super::flash::flash_kernel;
use super::{Attention, AttnError, AttnInput};

/// Rotary attention over graph positions.
#[derive(Clone, Copy, Debug)]
pub struct GraphRope {
    /// Frequency base; small graph distances call for a small base.
    pub base: f32,
}

impl Default for GraphRope {
    fn default() -> Self {
        GraphRope { base: 100.0 }
    }
}

/// Rotates every row of `x` (`[n × d]`) by its position: pair `t` by `pos · base^(−2t/d)`.
pub(crate) fn rotate(x: &[f32], pos: &[f32], d: usize, base: f32, out: &mut [f32]) {
    for (r, (src, dst)) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)).enumerate() {
        for t in 0..d / 2 {
            let theta = (base as f64).powf(-2.0 * t as f64 / d as f64);
            let (s, c) = (pos[r] as f64 * theta).sin_cos();
            let (a, b) = (src[2 * t] as f64, src[2 * t + 1] as f64);
            dst[2 * t] = (a * c - b * s) as f32;
            dst[2 * t + 1] = (a * s + b * c) as f32;
        }
    }
}

impl Attention for GraphRope {
    fn name(&self) -> &'static str {
        "graph_rope"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        let pos = inp.extras.positions.ok_or(AttnError::MissingExtra {
            mechanism: "graph_rope",
            extra: "positions",
        })?;
        if inp.d % 2 != 0 {
            return Err(AttnError::Invalid {
                what: "d",
                msg: format!(
                    "graph_rope rotates feature pairs and needs an even d, got {}",
                    inp.d
                ),
            });
        }
        if !(self.base.is_finite() && self.base > 1.0) {
            return Err(AttnError::Invalid {
                what: "graph_rope base",
                msg: format!("base must be finite and > 1, got {}", self.base),
            });
        }
        let mut qr = vec![0.0f32; inp.q.len()];
        let mut kr = vec![0.0f32; inp.k.len()];
        rotate(inp.q, pos.q, inp.d, self.base, &mut qr);
        rotate(inp.k, pos.k, inp.d, self.base, &mut kr);
        let rotated = AttnInput {
            q: &qr,
            k: &kr,
            ..*inp
        };
        flash_kernel(&rotated, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;
    use crate::attention::{Extras, Positions};

    fn run(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        pq: &[f32],
        pk: &[f32],
        n_q: usize,
        n_k: usize,
        d: usize,
        d_v: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; n_q * d_v];
        let ex = Extras {
            positions: Some(Positions { q: pq, k: pk }),
            ..Default::default()
        };
        GraphRope::default()
            .forward(
                &AttnInput::new(q, k, v, n_q, n_k, d, d_v).with_extras(ex),
                &mut out,
            )
            .unwrap();
        out
    }

    #[test]
    fn matches_explicit_rotation_reference() {
        let (n_q, n_k, d, d_v) = (3, 5, 6, 2);
        let (q, k, v) = rand_qkv(1, n_q, n_k, d, d_v);
        let (pq, pk) = ([0.0, 1.0, 2.0], [0.0, 1.0, 1.0, 2.0, 3.0]);
        let out = run(&q, &k, &v, &pq, &pk, n_q, n_k, d, d_v);
        // Reference score: Σ_t (q_a k_a + q_b k_b) cos(Δθ) + (q_b k_a − q_a k_b) sin(Δθ), Δ = p_j − p_i.
        for i in 0..n_q {
            let scores: Vec<Option<f64>> = (0..n_k)
                .map(|j| {
                    let mut s = 0.0f64;
                    for t in 0..d / 2 {
                        let ang = (pk[j] - pq[i]) as f64 * 100f64.powf(-2.0 * t as f64 / d as f64);
                        let (qa, qb) = (q[i * d + 2 * t] as f64, q[i * d + 2 * t + 1] as f64);
                        let (ka, kb) = (k[j * d + 2 * t] as f64, k[j * d + 2 * t + 1] as f64);
                        s += (qa * ka + qb * kb) * ang.cos() + (qb * ka - qa * kb) * ang.sin();
                    }
                    Some(s / (d as f64).sqrt())
                })
                .collect();
            assert_close(
                &out[i * d_v..(i + 1) * d_v],
                &softmax_combine_f64(&scores, &v, d_v),
                1e-5,
            );
        }
    }

    #[test]
    fn scores_depend_only_on_relative_position() {
        let (n_q, n_k, d, d_v) = (4, 6, 8, 3);
        let (q, k, v) = rand_qkv(2, n_q, n_k, d, d_v);
        let pq = [0.0, 1.0, 3.0, 2.0];
        let pk = [1.0, 2.0, 0.0, 4.0, 2.0, 5.0];
        let a = run(&q, &k, &v, &pq, &pk, n_q, n_k, d, d_v);
        let shift = |p: &[f32]| p.iter().map(|x| x + 7.0).collect::<Vec<f32>>();
        let b = run(&q, &k, &v, &shift(&pq), &shift(&pk), n_q, n_k, d, d_v);
        assert!(
            max_abs_diff(&a, &b) < 1e-5,
            "shifting every position changed the output"
        );
        // Changing one relative offset does change it.
        let mut pk2 = pk;
        pk2[3] += 1.0;
        let c = run(&q, &k, &v, &pq, &pk2, n_q, n_k, d, d_v);
        assert!(max_abs_diff(&a, &c) > 1e-4);
    }

    #[test]
    fn needs_positions_and_even_width() {
        let (q, k, v) = rand_qkv(3, 2, 2, 3, 2);
        let mut out = vec![0.0; 4];
        assert!(matches!(
            GraphRope::default().forward(&AttnInput::new(&q, &k, &v, 2, 2, 3, 2), &mut out),
            Err(AttnError::MissingExtra { .. })
        ));
        let ex = Extras {
            positions: Some(Positions {
                q: &[0.0, 1.0],
                k: &[0.0, 1.0],
            }),
            ..Default::default()
        };
        assert!(matches!(
            GraphRope::default().forward(
                &AttnInput::new(&q, &k, &v, 2, 2, 3, 2).with_extras(ex),
                &mut out
            ),
            Err(AttnError::Invalid { .. })
        ));
    }

    #[test]
    fn mask_applies_after_rotation() {
        let (n_q, n_k, d, d_v) = (3, 5, 4, 2);
        let (q, k, v) = rand_qkv(4, n_q, n_k, d, d_v);
        let (pq, pk) = ([0.0, 2.0, 1.0], [1.0, 0.0, 3.0, 2.0, 1.0]);
        let mask = [
            true, false, true, false, true, // query 0
            false, false, false, false, false, // query 1 sees nothing
            false, false, false, true, false, // query 2 sees only key 3
        ];
        let ex = Extras {
            positions: Some(Positions { q: &pq, k: &pk }),
            mask: Some(&mask),
            ..Default::default()
        };
        let mut out = vec![0.0; n_q * d_v];
        GraphRope::default()
            .forward(
                &AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(ex),
                &mut out,
            )
            .unwrap();
        // Query 0: explicit rotated scores over keys 0, 2, 4 only.
        let scores: Vec<Option<f64>> = (0..n_k)
            .map(|j| {
                mask[j].then(|| {
                    let mut s = 0.0f64;
                    for t in 0..d / 2 {
                        let ang = (pk[j] - pq[0]) as f64 * 100f64.powf(-2.0 * t as f64 / d as f64);
                        let (qa, qb) = (q[2 * t] as f64, q[2 * t + 1] as f64);
                        let (ka, kb) = (k[j * d + 2 * t] as f64, k[j * d + 2 * t + 1] as f64);
                        s += (qa * ka + qb * kb) * ang.cos() + (qb * ka - qa * kb) * ang.sin();
                    }
                    s / (d as f64).sqrt()
                })
            })
            .collect();
        assert_close(&out[..d_v], &softmax_combine_f64(&scores, &v, d_v), 1e-5);
        assert_eq!(&out[d_v..2 * d_v], &[0.0, 0.0]);
        assert_close(&out[2 * d_v..], &v[3 * d_v..4 * d_v], 1e-6);
    }
}
