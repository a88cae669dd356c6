//! Cross attention: queries from one source, keys and values from another.
//!
//! Each source has its own learned projection into a shared `d_a`-wide space:
//! `s_ij = (q_i W_q)·(k_j W_k)/√d_a`, `out_i = Σ_j softmax_j(s_ij) v_j`. For example, queries
//! are a viewer's platform embeddings and keys/values are catalog items: each query row is
//! answered from the catalog only, never from the other query rows. With `W_q = W_k = I`
//! it reduces to dot-product attention. Backward gives `W_q`, `W_k` gradients. Reads `extras.mask`.

use super::math::{matmul, matmul_at_b_acc, sdpa_backward, sdpa_with_probs};
use super::{check_finite, Attention, AttnError, AttnInput};

/// Cross attention between two sources.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossAttention {
    pub d: usize,
    pub d_a: usize,
    /// `[d × d_a]`, applied to the query source.
    pub w_q: Vec<f32>,
    /// `[d × d_a]`, applied to the key/value source.
    pub w_k: Vec<f32>,
}

/// Gradients for both projections.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossGrads {
    pub w_q: Vec<f32>,
    pub w_k: Vec<f32>,
}

impl CrossAttention {
    /// Identity projections (`d_a = d`).
    pub fn identity(d: usize) -> Self {
        let mut eye = vec![0.0; d * d];
        for i in 0..d {
            eye[i * d + i] = 1.0;
        }
        CrossAttention {
            d,
            d_a: d,
            w_q: eye.clone(),
            w_k: eye,
        }
    }

    fn check(&self, inp: &AttnInput, out_len: usize) -> Result<(), AttnError> {
        inp.validate(out_len)?;
        if inp.d != self.d {
            return Err(AttnError::ConfigMismatch {
                mechanism: "cross",
                what: "d",
                expected: self.d,
                got: inp.d,
            });
        }
        if self.d_a == 0 {
            return Err(AttnError::ZeroDim { what: "d_a" });
        }
        for (what, w) in [("w_q", &self.w_q), ("w_k", &self.w_k)] {
            if w.len() != self.d * self.d_a {
                return Err(AttnError::Shape {
                    what,
                    expected: self.d * self.d_a,
                    got: w.len(),
                });
            }
            check_finite(what, w)?;
        }
        Ok(())
    }

    fn project(&self, inp: &AttnInput) -> (Vec<f32>, Vec<f32>) {
        let mut qp = vec![0.0; inp.n_q * self.d_a];
        let mut kp = vec![0.0; inp.n_k * self.d_a];
        matmul(inp.q, &self.w_q, inp.n_q, self.d, self.d_a, &mut qp);
        matmul(inp.k, &self.w_k, inp.n_k, self.d, self.d_a, &mut kp);
        (qp, kp)
    }

    /// Gradients given `d_out = ∂L/∂out`.
    pub fn backward(&self, inp: &AttnInput, d_out: &[f32]) -> Result<CrossGrads, AttnError> {
        self.check(inp, d_out.len())?;
        check_finite("d_out", d_out)?;
        let (n_q, n_k, da, d_v) = (inp.n_q, inp.n_k, self.d_a, inp.d_v);
        let (qp, kp) = self.project(inp);
        let mut p = vec![0.0; n_q * n_k];
        let mut tmp = vec![0.0; n_q * d_v];
        sdpa_with_probs(
            &qp,
            &kp,
            inp.v,
            n_q,
            n_k,
            da,
            d_v,
            inp.extras.mask,
            &mut p,
            &mut tmp,
        );
        let (mut dq, mut dk, mut dv) = (
            vec![0.0; n_q * da],
            vec![0.0; n_k * da],
            vec![0.0; n_k * d_v],
        );
        let mut scratch = vec![0.0; n_k];
        sdpa_backward(
            &qp,
            &kp,
            inp.v,
            &p,
            d_out,
            n_q,
            n_k,
            da,
            d_v,
            &mut dq,
            &mut dk,
            &mut dv,
            &mut scratch,
        );
        let mut g = CrossGrads {
            w_q: vec![0.0; self.w_q.len()],
            w_k: vec![0.0; self.w_k.len()],
        };
        matmul_at_b_acc(inp.q, &dq, n_q, self.d, da, &mut g.w_q);
        matmul_at_b_acc(inp.k, &dk, n_k, self.d, da, &mut g.w_k);
        Ok(g)
    }
}

impl Attention for CrossAttention {
    fn name(&self) -> &'static str {
        "cross"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        self.check(inp, out.len())?;
        let (qp, kp) = self.project(inp);
        let mut p = vec![0.0; inp.n_q * inp.n_k];
        sdpa_with_probs(
            &qp,
            &kp,
            inp.v,
            inp.n_q,
            inp.n_k,
            self.d_a,
            inp.d_v,
            inp.extras.mask,
            &mut p,
            out,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;
    use crate::rng::Rng;

    fn random(d: usize, da: usize, seed: u64) -> CrossAttention {
        let mut rng = Rng::new(seed);
        CrossAttention {
            d,
            d_a: da,
            w_q: rand_vec(&mut rng, d * da, 0.6),
            w_k: rand_vec(&mut rng, d * da, 0.6),
        }
    }

    /// Dense attention over the projected queries `q·W_q` and keys `k·W_k` (f64
    /// products), under `inp`'s mask if it has one.
    fn projected_reference(c: &CrossAttention, inp: &AttnInput) -> Vec<f32> {
        let (d, da) = (c.d, c.d_a);
        let proj = |x: &[f32], w: &[f32], n: usize| -> Vec<f32> {
            (0..n * da)
                .map(|i| {
                    (0..d)
                        .map(|t| x[(i / da) * d + t] as f64 * w[t * da + i % da] as f64)
                        .sum::<f64>() as f32
                })
                .collect()
        };
        reference_sdpa_f64(
            &proj(inp.q, &c.w_q, inp.n_q),
            &proj(inp.k, &c.w_k, inp.n_k),
            inp.v,
            inp.n_q,
            inp.n_k,
            da,
            inp.d_v,
            inp.extras.mask,
        )
    }

    #[test]
    fn matches_projected_reference_and_identity_is_dot_product() {
        let (n_q, n_k, d, d_v) = (3, 7, 4, 2);
        let (q, k, v) = rand_qkv(1, n_q, n_k, d, d_v);
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        let mut out = vec![0.0; n_q * d_v];
        CrossAttention::identity(d).forward(&inp, &mut out).unwrap();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n_q, n_k, d, d_v, None),
            1e-5,
        );
        let c = random(d, 3, 2);
        c.forward(&inp, &mut out).unwrap();
        assert_close(&out, &projected_reference(&c, &inp), 1e-4);
    }

    #[test]
    fn viewer_platforms_retrieve_items_on_those_platforms() {
        // Queries: one-hot platforms (4 platforms). Keys: catalog items tagged with the platforms
        // they stream on. Values: one-hot item ids. Each query row draws only from the catalog and
        // puts almost all weight on items available on its platform.
        let d = 4;
        let q = [12.0, 0.0, 0.0, 0.0, 0.0, 0.0, 12.0, 0.0];
        let item_platforms = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [1.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let k: Vec<f32> = item_platforms.iter().flatten().copied().collect();
        let mut v = vec![0.0; 16];
        for i in 0..4 {
            v[i * 4 + i] = 1.0;
        }
        let mut out = vec![0.0; 8];
        CrossAttention::identity(d)
            .forward(&AttnInput::new(&q, &k, &v, 2, 4, d, 4), &mut out)
            .unwrap();
        assert!(
            out[0] + out[2] > 0.95,
            "platform 0 → items 0 and 2: {out:?}"
        );
        assert!(out[4 + 2] > 0.95, "platform 2 → item 2: {out:?}");
    }

    #[test]
    fn query_rows_do_not_interact() {
        let (n_q, n_k, d, d_v) = (4, 5, 3, 2);
        let (mut q, k, v) = rand_qkv(3, n_q, n_k, d, d_v);
        let c = random(d, 3, 4);
        let mut a = vec![0.0; n_q * d_v];
        c.forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v), &mut a)
            .unwrap();
        q[3 * d] += 4.0;
        let mut b = vec![0.0; n_q * d_v];
        c.forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v), &mut b)
            .unwrap();
        assert_eq!(&a[..3 * d_v], &b[..3 * d_v]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n_q, n_k, d, d_v) = (3, 4, 3, 2);
        let (q, k, v) = rand_qkv(5, n_q, n_k, d, d_v);
        let mut rng = Rng::new(6);
        let r = rand_vec(&mut rng, n_q * d_v, 1.0);
        let c = random(d, 2, 7);
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        check_projection_grads(&c, &inp, &r);
    }

    /// A random mask with one fully masked row (1) and one row that sees only key 2 (row 2).
    fn test_mask(n_q: usize, n_k: usize, seed: u64) -> Vec<bool> {
        let mut rng = Rng::new(seed);
        let mut mask: Vec<bool> = (0..n_q * n_k).map(|_| rng.chance(0.6)).collect();
        for j in 0..n_k {
            mask[n_k + j] = false;
            mask[2 * n_k + j] = j == 2;
        }
        mask
    }

    #[test]
    fn mask_matches_projected_reference() {
        let (n_q, n_k, d, da, d_v) = (4, 7, 4, 3, 2);
        let (q, k, v) = rand_qkv(8, n_q, n_k, d, d_v);
        let mask = test_mask(n_q, n_k, 9);
        let c = random(d, da, 10);
        let inp =
            AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(crate::attention::Extras {
                mask: Some(&mask),
                ..Default::default()
            });
        let mut out = vec![0.0; n_q * d_v];
        c.forward(&inp, &mut out).unwrap();
        assert_close(&out, &projected_reference(&c, &inp), 1e-5);
        assert_eq!(&out[d_v..2 * d_v], &[0.0, 0.0]);
        assert_close(&out[2 * d_v..3 * d_v], &v[2 * d_v..3 * d_v], 1e-6);
    }

    #[test]
    fn masked_gradients_match_finite_differences() {
        // Backward must use the same mask as forward: masked keys carry no gradient.
        let (n_q, n_k, d, d_v) = (4, 5, 3, 2);
        let (q, k, v) = rand_qkv(11, n_q, n_k, d, d_v);
        let mask = test_mask(n_q, n_k, 12);
        let mut rng = Rng::new(13);
        let r = rand_vec(&mut rng, n_q * d_v, 1.0);
        let c = random(d, 2, 14);
        let inp =
            AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(crate::attention::Extras {
                mask: Some(&mask),
                ..Default::default()
            });
        check_projection_grads(&c, &inp, &r);
    }

    /// Finite-difference check of ∂⟨forward(inp), r⟩ / ∂(W_q, W_k) against `backward`.
    fn check_projection_grads(c: &CrossAttention, inp: &AttnInput, r: &[f32]) {
        let g = c.backward(inp, r).unwrap();
        let loss = |m: &CrossAttention| -> f64 {
            let mut o = vec![0.0; inp.n_q * inp.d_v];
            m.forward(inp, &mut o).unwrap();
            o.iter()
                .zip(r)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let mut p = c.w_q.clone();
        check_grad(
            &mut p,
            &g.w_q,
            &mut |x| {
                loss(&CrossAttention {
                    w_q: x.to_vec(),
                    ..c.clone()
                })
            },
            "w_q",
        );
        let mut p = c.w_k.clone();
        check_grad(
            &mut p,
            &g.w_k,
            &mut |x| {
                loss(&CrossAttention {
                    w_k: x.to_vec(),
                    ..c.clone()
                })
            },
            "w_k",
        );
    }
}
