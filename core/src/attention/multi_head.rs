//! Multi-head attention with learned Q/K/V/O projections (Vaswani et al., 2017).
//!
//! `Q' = Q W_q`, `K' = K W_k`, `V' = V W_v` (each `[· × h·d_h]`), head `h` attends with its
//! `d_h`-wide slice, heads are concatenated and mapped back with `W_o` (`[h·d_h × d_v]`).
//! [`MultiHead::forward_train`] keeps what [`MultiHead::backward`] needs; gradients are
//! checked against finite differences. Reads `extras.mask` (shared by all heads).

use super::math::{matmul, matmul_at_b_acc, sdpa_backward, sdpa_with_probs};
use super::{check_finite, Attention, AttnError, AttnInput};
use crate::rng::Rng;

/// Multi-head attention parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHead {
    pub d: usize,
    pub d_v: usize,
    pub heads: usize,
    pub d_head: usize,
    /// `[d × heads·d_head]`
    pub w_q: Vec<f32>,
    /// `[d × heads·d_head]`
    pub w_k: Vec<f32>,
    /// `[d_v × heads·d_head]`
    pub w_v: Vec<f32>,
    /// `[heads·d_head × d_v]`
    pub w_o: Vec<f32>,
}

/// Gradients of a scalar loss with respect to every projection.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiHeadGrads {
    pub w_q: Vec<f32>,
    pub w_k: Vec<f32>,
    pub w_v: Vec<f32>,
    pub w_o: Vec<f32>,
}

/// Activations saved by [`MultiHead::forward_train`].
#[derive(Clone, Debug)]
pub struct MultiHeadCache {
    qp: Vec<f32>,
    kp: Vec<f32>,
    vp: Vec<f32>,
    /// Per-head probabilities `[heads × n_q × n_k]`.
    probs: Vec<f32>,
    concat: Vec<f32>,
}

/// Copies head `h`'s `d_h`-wide column slice of `x` (`[n × width]`) into a contiguous buffer.
fn head_slice(x: &[f32], n: usize, width: usize, h: usize, dh: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n * dh);
    for r in 0..n {
        out.extend_from_slice(&x[r * width + h * dh..r * width + (h + 1) * dh]);
    }
    out
}

fn add_head_slice(dst: &mut [f32], src: &[f32], n: usize, width: usize, h: usize, dh: usize) {
    for r in 0..n {
        for t in 0..dh {
            dst[r * width + h * dh + t] += src[r * dh + t];
        }
    }
}

impl MultiHead {
    /// Xavier-style random projections.
    pub fn new(d: usize, d_v: usize, heads: usize, d_head: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let hd = heads * d_head;
        let mut init = |fan_in: usize, n: usize| -> Vec<f32> {
            let s = (1.0 / fan_in as f32).sqrt();
            (0..n).map(|_| rng.normal() * s).collect()
        };
        MultiHead {
            d,
            d_v,
            heads,
            d_head,
            w_q: init(d, d * hd),
            w_k: init(d, d * hd),
            w_v: init(d_v, d_v * hd),
            w_o: init(hd, hd * d_v),
        }
    }

    fn check(&self, inp: &AttnInput, out_len: usize) -> Result<(), AttnError> {
        inp.validate(out_len)?;
        for (what, expected, got) in [("d", self.d, inp.d), ("d_v", self.d_v, inp.d_v)] {
            if expected != got {
                return Err(AttnError::ConfigMismatch {
                    mechanism: "multi_head",
                    what,
                    expected,
                    got,
                });
            }
        }
        if self.heads == 0 || self.d_head == 0 {
            return Err(AttnError::ZeroDim {
                what: "heads/d_head",
            });
        }
        let hd = self.heads * self.d_head;
        for (what, w, n) in [
            ("w_q", &self.w_q, self.d * hd),
            ("w_k", &self.w_k, self.d * hd),
            ("w_v", &self.w_v, self.d_v * hd),
            ("w_o", &self.w_o, hd * self.d_v),
        ] {
            if w.len() != n {
                return Err(AttnError::Shape {
                    what,
                    expected: n,
                    got: w.len(),
                });
            }
            check_finite(what, w)?;
        }
        Ok(())
    }

    /// Forward pass that also returns the activations needed by [`MultiHead::backward`].
    pub fn forward_train(
        &self,
        inp: &AttnInput,
        out: &mut [f32],
    ) -> Result<MultiHeadCache, AttnError> {
        self.check(inp, out.len())?;
        let (n_q, n_k, hd, dh) = (inp.n_q, inp.n_k, self.heads * self.d_head, self.d_head);
        let mut qp = vec![0.0; n_q * hd];
        let mut kp = vec![0.0; n_k * hd];
        let mut vp = vec![0.0; n_k * hd];
        matmul(inp.q, &self.w_q, n_q, self.d, hd, &mut qp);
        matmul(inp.k, &self.w_k, n_k, self.d, hd, &mut kp);
        matmul(inp.v, &self.w_v, n_k, self.d_v, hd, &mut vp);
        let mut probs = vec![0.0; self.heads * n_q * n_k];
        let mut concat = vec![0.0; n_q * hd];
        let mut oh = vec![0.0; n_q * dh];
        for h in 0..self.heads {
            let (qh, kh, vh) = (
                head_slice(&qp, n_q, hd, h, dh),
                head_slice(&kp, n_k, hd, h, dh),
                head_slice(&vp, n_k, hd, h, dh),
            );
            let p = &mut probs[h * n_q * n_k..(h + 1) * n_q * n_k];
            sdpa_with_probs(&qh, &kh, &vh, n_q, n_k, dh, dh, inp.extras.mask, p, &mut oh);
            add_head_slice(&mut concat, &oh, n_q, hd, h, dh);
        }
        matmul(&concat, &self.w_o, n_q, hd, self.d_v, out);
        Ok(MultiHeadCache {
            qp,
            kp,
            vp,
            probs,
            concat,
        })
    }

    /// Gradients of `L` given `d_out = ∂L/∂out` for the input and cache of a forward pass.
    pub fn backward(
        &self,
        inp: &AttnInput,
        cache: &MultiHeadCache,
        d_out: &[f32],
    ) -> Result<MultiHeadGrads, AttnError> {
        self.check(inp, d_out.len())?;
        check_finite("d_out", d_out)?;
        let (n_q, n_k, hd, dh) = (inp.n_q, inp.n_k, self.heads * self.d_head, self.d_head);
        for (what, got, expected) in [
            ("cache queries", cache.qp.len(), n_q * hd),
            ("cache keys", cache.kp.len(), n_k * hd),
            ("cache values", cache.vp.len(), n_k * hd),
            (
                "cache probabilities",
                cache.probs.len(),
                self.heads * n_q * n_k,
            ),
            ("cache heads", cache.concat.len(), n_q * hd),
        ] {
            if got != expected {
                return Err(AttnError::Shape {
                    what,
                    expected,
                    got,
                });
            }
        }
        let mut g = MultiHeadGrads {
            w_q: vec![0.0; self.w_q.len()],
            w_k: vec![0.0; self.w_k.len()],
            w_v: vec![0.0; self.w_v.len()],
            w_o: vec![0.0; self.w_o.len()],
        };
        matmul_at_b_acc(&cache.concat, d_out, n_q, hd, self.d_v, &mut g.w_o);
        // d_concat = d_out · W_oᵀ
        let mut d_concat = vec![0.0; n_q * hd];
        for i in 0..n_q {
            for c in 0..hd {
                d_concat[i * hd + c] = super::math::dot(
                    &d_out[i * self.d_v..(i + 1) * self.d_v],
                    &self.w_o[c * self.d_v..(c + 1) * self.d_v],
                );
            }
        }
        let (mut dqp, mut dkp, mut dvp) = (
            vec![0.0; n_q * hd],
            vec![0.0; n_k * hd],
            vec![0.0; n_k * hd],
        );
        let mut scratch = vec![0.0; n_k];
        for h in 0..self.heads {
            let (qh, kh, vh) = (
                head_slice(&cache.qp, n_q, hd, h, dh),
                head_slice(&cache.kp, n_k, hd, h, dh),
                head_slice(&cache.vp, n_k, hd, h, dh),
            );
            let doh = head_slice(&d_concat, n_q, hd, h, dh);
            let (mut dq, mut dk, mut dv) = (
                vec![0.0; n_q * dh],
                vec![0.0; n_k * dh],
                vec![0.0; n_k * dh],
            );
            let p = &cache.probs[h * n_q * n_k..(h + 1) * n_q * n_k];
            sdpa_backward(
                &qh,
                &kh,
                &vh,
                p,
                &doh,
                n_q,
                n_k,
                dh,
                dh,
                &mut dq,
                &mut dk,
                &mut dv,
                &mut scratch,
            );
            add_head_slice(&mut dqp, &dq, n_q, hd, h, dh);
            add_head_slice(&mut dkp, &dk, n_k, hd, h, dh);
            add_head_slice(&mut dvp, &dv, n_k, hd, h, dh);
        }
        matmul_at_b_acc(inp.q, &dqp, n_q, self.d, hd, &mut g.w_q);
        matmul_at_b_acc(inp.k, &dkp, n_k, self.d, hd, &mut g.w_k);
        matmul_at_b_acc(inp.v, &dvp, n_k, self.d_v, hd, &mut g.w_v);
        Ok(g)
    }
}

impl Attention for MultiHead {
    fn name(&self) -> &'static str {
        "multi_head"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        self.forward_train(inp, out).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;

    #[test]
    fn one_head_with_identity_projections_is_dot_product() {
        let (n_q, n_k, d) = (4, 6, 5);
        let (q, k, v) = rand_qkv(1, n_q, n_k, d, d);
        let mut eye = vec![0.0; d * d];
        for i in 0..d {
            eye[i * d + i] = 1.0;
        }
        let mh = MultiHead {
            d,
            d_v: d,
            heads: 1,
            d_head: d,
            w_q: eye.clone(),
            w_k: eye.clone(),
            w_v: eye.clone(),
            w_o: eye,
        };
        let mut out = vec![0.0; n_q * d];
        mh.forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d), &mut out)
            .unwrap();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n_q, n_k, d, d, None),
            1e-5,
        );
    }

    /// Per-head softmax over projected slices (mask shared by all heads), concatenation,
    /// output projection; projections in f64.
    fn reference(
        mh: &MultiHead,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        n_q: usize,
        n_k: usize,
        mask: Option<&[bool]>,
    ) -> Vec<f32> {
        let (h, dh, d, d_v) = (mh.heads, mh.d_head, mh.d, mh.d_v);
        let proj = |x: &[f32], w: &[f32], n: usize, din: usize| -> Vec<f32> {
            let mut o = vec![0.0; n * h * dh];
            for r in 0..n {
                for c in 0..h * dh {
                    o[r * h * dh + c] = (0..din)
                        .map(|t| x[r * din + t] as f64 * w[t * h * dh + c] as f64)
                        .sum::<f64>() as f32;
                }
            }
            o
        };
        let (qp, kp, vp) = (
            proj(q, &mh.w_q, n_q, d),
            proj(k, &mh.w_k, n_k, d),
            proj(v, &mh.w_v, n_k, d_v),
        );
        let mut concat = vec![0.0f32; n_q * h * dh];
        for hh in 0..h {
            let (qh, kh, vh) = (
                head_slice(&qp, n_q, h * dh, hh, dh),
                head_slice(&kp, n_k, h * dh, hh, dh),
                head_slice(&vp, n_k, h * dh, hh, dh),
            );
            let oh = reference_sdpa_f64(&qh, &kh, &vh, n_q, n_k, dh, dh, mask);
            add_head_slice(&mut concat, &oh, n_q, h * dh, hh, dh);
        }
        proj_out(&concat, &mh.w_o, n_q, h * dh, d_v)
    }

    #[test]
    fn heads_attend_independently_and_concatenate() {
        let (n_q, n_k, d, d_v, h, dh) = (3, 5, 4, 3, 2, 3);
        let (q, k, v) = rand_qkv(2, n_q, n_k, d, d_v);
        let mh = MultiHead::new(d, d_v, h, dh, 7);
        let mut out = vec![0.0; n_q * d_v];
        mh.forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v), &mut out)
            .unwrap();
        assert_close(&out, &reference(&mh, &q, &k, &v, n_q, n_k, None), 1e-4);
    }

    #[test]
    fn mask_is_shared_by_every_head() {
        let (n_q, n_k, d, d_v, h, dh) = (5, 6, 4, 3, 3, 2);
        let (q, k, v) = rand_qkv(8, n_q, n_k, d, d_v);
        let mh = MultiHead::new(d, d_v, h, dh, 9);
        let mut rng = Rng::new(10);
        let mut mask: Vec<bool> = (0..n_q * n_k).map(|_| rng.chance(0.5)).collect();
        for j in 0..n_k {
            mask[2 * n_k + j] = false; // query 2 sees nothing: every head outputs 0
            mask[4 * n_k + j] = j == 1; // query 4 sees only key 1 in every head
        }
        let inp =
            AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(crate::attention::Extras {
                mask: Some(&mask),
                ..Default::default()
            });
        let mut out = vec![0.0; n_q * d_v];
        mh.forward(&inp, &mut out).unwrap();
        assert_close(
            &out,
            &reference(&mh, &q, &k, &v, n_q, n_k, Some(&mask)),
            1e-5,
        );
        assert!(out[2 * d_v..3 * d_v].iter().all(|&x| x == 0.0));
        // Query 4's output is key 1's value pushed through W_v then W_o.
        let hd = h * dh;
        let want: Vec<f32> = (0..d_v)
            .map(|c| {
                (0..hd)
                    .map(|t| {
                        let vp: f64 = (0..d_v)
                            .map(|s| v[d_v + s] as f64 * mh.w_v[s * hd + t] as f64)
                            .sum();
                        vp * mh.w_o[t * d_v + c] as f64
                    })
                    .sum::<f64>() as f32
            })
            .collect();
        assert_close(&out[4 * d_v..5 * d_v], &want, 1e-5);
    }

    fn proj_out(x: &[f32], w: &[f32], n: usize, din: usize, dout: usize) -> Vec<f32> {
        (0..n * dout)
            .map(|i| {
                (0..din)
                    .map(|t| x[(i / dout) * din + t] as f64 * w[t * dout + i % dout] as f64)
                    .sum::<f64>() as f32
            })
            .collect()
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n_q, n_k, d, d_v, h, dh) = (3, 4, 4, 3, 2, 2);
        let (q, k, v) = rand_qkv(3, n_q, n_k, d, d_v);
        let mut rng = Rng::new(11);
        let r = rand_vec(&mut rng, n_q * d_v, 1.0); // L = Σ r ⊙ out
        let mh = MultiHead::new(d, d_v, h, dh, 5);
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        let mut out = vec![0.0; n_q * d_v];
        let cache = mh.forward_train(&inp, &mut out).unwrap();
        let g = mh.backward(&inp, &cache, &r).unwrap();
        let loss = |m: &MultiHead| -> f64 {
            let mut o = vec![0.0; n_q * d_v];
            m.forward(&inp, &mut o).unwrap();
            o.iter()
                .zip(&r)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        for which in 0..4 {
            let mut params = match which {
                0 => mh.w_q.clone(),
                1 => mh.w_k.clone(),
                2 => mh.w_v.clone(),
                _ => mh.w_o.clone(),
            };
            let grad = [&g.w_q, &g.w_k, &g.w_v, &g.w_o][which].clone();
            let mut f = |p: &[f32]| {
                let mut m = mh.clone();
                match which {
                    0 => m.w_q = p.to_vec(),
                    1 => m.w_k = p.to_vec(),
                    2 => m.w_v = p.to_vec(),
                    _ => m.w_o = p.to_vec(),
                }
                loss(&m)
            };
            check_grad(
                &mut params,
                &grad,
                &mut f,
                ["w_q", "w_k", "w_v", "w_o"][which],
            );
        }
    }

    #[test]
    fn wrong_model_width_is_a_config_error() {
        let (q, k, v) = rand_qkv(4, 2, 2, 3, 3);
        let mh = MultiHead::new(4, 3, 2, 2, 1);
        let mut out = vec![0.0; 6];
        let e = mh
            .forward(&AttnInput::new(&q, &k, &v, 2, 2, 3, 3), &mut out)
            .unwrap_err();
        assert!(
            matches!(e, AttnError::ConfigMismatch { what: "d", .. }),
            "{e}"
        );
    }
}
