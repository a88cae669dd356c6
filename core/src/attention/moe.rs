//! Mixture-of-experts attention with a learned top-k gate.
//!
//! Each of `E` experts is a dot-product attention with its own learned query projection
//! `A_e` (`[d × d]`): `o_e(q) = softmax(q A_e Kᵀ/√d) V`. A gate `g = softmax(q W_g)`
//! (`W_g`: `[d × E]`) picks the `k` largest experts per query and renormalises their
//! weights; `out = Σ_{e ∈ top-k} g̃_e o_e(q)`. Only the selected experts run — the counts
//! in [`MoeStats`] prove it. Backward gives gradients for `W_g` and every `A_e`.
//! Reads `extras.mask`.

use super::math::{axpy, dot, softmax_in_place};
use super::{check_finite, Attention, AttnError, AttnInput};
use crate::rng::Rng;

/// Gated mixture of attention experts.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeAttention {
    pub d: usize,
    pub n_experts: usize,
    pub top_k: usize,
    /// `[d × n_experts]`
    pub w_gate: Vec<f32>,
    /// `[n_experts × d × d]`
    pub experts: Vec<f32>,
}

/// Work done by one forward call.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MoeStats {
    /// Expert evaluations (query, expert) performed: `n_q · top_k`.
    pub expert_calls: usize,
    /// How many queries routed to each expert.
    pub per_expert: Vec<usize>,
}

/// Gradients for the gate and the expert projections.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeGrads {
    pub w_gate: Vec<f32>,
    pub experts: Vec<f32>,
}

impl MoeAttention {
    /// Random gate, experts initialised near the identity.
    pub fn new(d: usize, n_experts: usize, top_k: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let s = (1.0 / d as f32).sqrt();
        let w_gate = (0..d * n_experts).map(|_| rng.normal() * s).collect();
        let mut experts = vec![0.0; n_experts * d * d];
        for e in 0..n_experts {
            for t in 0..d * d {
                experts[e * d * d + t] =
                    rng.normal() * s * 0.5 + if t % (d + 1) == 0 { 1.0 } else { 0.0 };
            }
        }
        MoeAttention {
            d,
            n_experts,
            top_k,
            w_gate,
            experts,
        }
    }

    fn check(&self, inp: &AttnInput, out_len: usize) -> Result<(), AttnError> {
        inp.validate(out_len)?;
        if inp.d != self.d {
            return Err(AttnError::ConfigMismatch {
                mechanism: "moe",
                what: "d",
                expected: self.d,
                got: inp.d,
            });
        }
        if self.top_k == 0 || self.top_k > self.n_experts {
            return Err(AttnError::Invalid {
                what: "moe top_k",
                msg: format!(
                    "top_k must be in 1..={}, got {}",
                    self.n_experts, self.top_k
                ),
            });
        }
        if self.w_gate.len() != self.d * self.n_experts
            || self.experts.len() != self.n_experts * self.d * self.d
        {
            return Err(AttnError::Shape {
                what: "moe parameters",
                expected: self.d * self.n_experts + self.n_experts * self.d * self.d,
                got: self.w_gate.len() + self.experts.len(),
            });
        }
        check_finite("w_gate", &self.w_gate)?;
        check_finite("experts", &self.experts)
    }

    /// Gate for one query (`[d]`): selected expert ids and renormalised weights, descending.
    pub fn gate(&self, qi: &[f32]) -> Result<Vec<(usize, f32)>, AttnError> {
        if qi.len() != self.d {
            return Err(AttnError::Shape {
                what: "query",
                expected: self.d,
                got: qi.len(),
            });
        }
        if self.w_gate.len() != self.d * self.n_experts
            || self.top_k == 0
            || self.top_k > self.n_experts
        {
            return Err(AttnError::Invalid {
                what: "moe gate",
                msg: "w_gate must be [d × n_experts] and top_k in 1..=n_experts".into(),
            });
        }
        check_finite("query", qi)?;
        check_finite("w_gate", &self.w_gate)?;
        Ok(self.gate_raw(qi))
    }

    fn gate_raw(&self, qi: &[f32]) -> Vec<(usize, f32)> {
        let e = self.n_experts;
        let mut logits = vec![0.0f32; e];
        for (t, &x) in qi.iter().enumerate() {
            axpy(x, &self.w_gate[t * e..(t + 1) * e], &mut logits);
        }
        let mut idx: Vec<usize> = (0..e).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        idx.truncate(self.top_k);
        // Softmax restricted to the selected logits = renormalised full softmax.
        let mut w: Vec<f32> = idx.iter().map(|&i| logits[i]).collect();
        softmax_in_place(&mut w);
        idx.into_iter().zip(w).collect()
    }

    /// Expert `e`'s query `q A_e` and attention probabilities over keys.
    fn expert_probs(
        &self,
        e: usize,
        qi: &[f32],
        inp: &AttnInput,
        i: usize,
        qe: &mut [f32],
        p: &mut [f32],
    ) {
        let d = self.d;
        let a = &self.experts[e * d * d..(e + 1) * d * d];
        qe.iter_mut().for_each(|x| *x = 0.0);
        for (t, &x) in qi.iter().enumerate() {
            axpy(x, &a[t * d..(t + 1) * d], qe);
        }
        let scale = 1.0 / (d as f32).sqrt();
        for j in 0..inp.n_k {
            p[j] = if inp.extras.mask.is_some_and(|m| !m[i * inp.n_k + j]) {
                f32::NEG_INFINITY
            } else {
                dot(qe, &inp.k[j * d..(j + 1) * d]) * scale
            };
        }
        softmax_in_place(p);
    }

    /// Forward pass with work counts.
    pub fn forward_stats(&self, inp: &AttnInput, out: &mut [f32]) -> Result<MoeStats, AttnError> {
        self.check(inp, out.len())?;
        let (d, d_v, n_k) = (self.d, inp.d_v, inp.n_k);
        let mut stats = MoeStats {
            expert_calls: 0,
            per_expert: vec![0; self.n_experts],
        };
        let (mut qe, mut p) = (vec![0.0; d], vec![0.0; n_k]);
        for i in 0..inp.n_q {
            let qi = &inp.q[i * d..(i + 1) * d];
            let o = &mut out[i * d_v..(i + 1) * d_v];
            o.iter_mut().for_each(|x| *x = 0.0);
            for (e, w) in self.gate_raw(qi) {
                stats.expert_calls += 1;
                stats.per_expert[e] += 1;
                self.expert_probs(e, qi, inp, i, &mut qe, &mut p);
                for j in 0..n_k {
                    if p[j] != 0.0 {
                        axpy(w * p[j], &inp.v[j * d_v..(j + 1) * d_v], o);
                    }
                }
            }
        }
        Ok(stats)
    }

    /// Gradients of `L` for the gate and experts, given `d_out = ∂L/∂out`.
    pub fn backward(&self, inp: &AttnInput, d_out: &[f32]) -> Result<MoeGrads, AttnError> {
        self.check(inp, d_out.len())?;
        check_finite("d_out", d_out)?;
        let (d, d_v, n_k, ne) = (self.d, inp.d_v, inp.n_k, self.n_experts);
        let mut g = MoeGrads {
            w_gate: vec![0.0; self.w_gate.len()],
            experts: vec![0.0; self.experts.len()],
        };
        let scale = 1.0 / (d as f32).sqrt();
        let (mut qe, mut p, mut dq) = (vec![0.0; d], vec![0.0; n_k], vec![0.0; d]);
        for i in 0..inp.n_q {
            let qi = &inp.q[i * d..(i + 1) * d];
            let go = &d_out[i * d_v..(i + 1) * d_v];
            let sel = self.gate_raw(qi);
            let mut dw = vec![0.0f32; sel.len()];
            for (s, &(e, w)) in sel.iter().enumerate() {
                self.expert_probs(e, qi, inp, i, &mut qe, &mut p);
                // ∂L/∂p_j = w · go·v_j ; ∂L/∂w = Σ_j p_j go·v_j
                let dp: Vec<f32> = (0..n_k)
                    .map(|j| dot(go, &inp.v[j * d_v..(j + 1) * d_v]))
                    .collect();
                dw[s] = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                let mean = dw[s];
                dq.iter_mut().for_each(|x| *x = 0.0);
                for j in 0..n_k {
                    let ds = w * p[j] * (dp[j] - mean) * scale;
                    if ds != 0.0 {
                        axpy(ds, &inp.k[j * d..(j + 1) * d], &mut dq);
                    }
                }
                let ga = &mut g.experts[e * d * d..(e + 1) * d * d];
                for (t, &x) in qi.iter().enumerate() {
                    axpy(x, &dq, &mut ga[t * d..(t + 1) * d]);
                }
            }
            // Renormalised top-k softmax: ∂L/∂logit_e = w_e (dw_e − Σ w dw); zero off the top-k.
            let avg: f32 = sel.iter().zip(&dw).map(|((_, w), dwv)| w * dwv).sum();
            for (s, &(e, w)) in sel.iter().enumerate() {
                let dl = w * (dw[s] - avg);
                for (t, &x) in qi.iter().enumerate() {
                    g.w_gate[t * ne + e] += x * dl;
                }
            }
        }
        Ok(g)
    }
}

impl Attention for MoeAttention {
    fn name(&self) -> &'static str {
        "moe"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        self.forward_stats(inp, out).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;

    /// One query's output from the defining formula, in f64: gate logits `q·W_gate`,
    /// the `top_k` largest, softmax over them, and the selected experts' attention
    /// outputs (query `q·A_e`) mixed by those weights; `mask` is the query's key row.
    fn reference_row(
        moe: &MoeAttention,
        qi: &[f32],
        k: &[f32],
        v: &[f32],
        n_k: usize,
        d_v: usize,
        mask: Option<&[bool]>,
    ) -> Vec<f32> {
        let (d, ne) = (moe.d, moe.n_experts);
        let logits: Vec<f64> = (0..ne)
            .map(|e| {
                (0..d)
                    .map(|t| qi[t] as f64 * moe.w_gate[t * ne + e] as f64)
                    .sum()
            })
            .collect();
        let mut order: Vec<usize> = (0..ne).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let top = &order[..moe.top_k];
        let z: f64 = top.iter().map(|&e| logits[e].exp()).sum();
        let mut want = vec![0.0f64; d_v];
        for &e in top {
            let a = &moe.experts[e * d * d..(e + 1) * d * d];
            let qe: Vec<f32> = (0..d)
                .map(|c| (0..d).map(|t| qi[t] * a[t * d + c]).sum())
                .collect();
            let oe = reference_sdpa_f64(&qe, k, v, 1, n_k, d, d_v, mask);
            for c in 0..d_v {
                want[c] += logits[e].exp() / z * oe[c] as f64;
            }
        }
        want.into_iter().map(|x| x as f32).collect()
    }

    #[test]
    fn output_is_gate_weighted_sum_of_selected_experts() {
        let (n_q, n_k, d, d_v) = (5, 7, 4, 3);
        let (q, k, v) = rand_qkv(1, n_q, n_k, d, d_v);
        let moe = MoeAttention::new(d, 4, 2, 3);
        let mut out = vec![0.0; n_q * d_v];
        moe.forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v), &mut out)
            .unwrap();
        for i in 0..n_q {
            let want = reference_row(&moe, &q[i * d..(i + 1) * d], &k, &v, n_k, d_v, None);
            assert_close(&out[i * d_v..(i + 1) * d_v], &want, 1e-4);
        }
    }

    #[test]
    fn only_top_k_experts_run_and_unselected_experts_do_not_matter() {
        // Identity gate (logit_e = q[e]) and queries whose last coordinate is strictly the
        // smallest: expert 3 can never be in the top 2, by construction rather than by luck.
        let (n_q, n_k, d, d_v, ne) = (20, 6, 4, 2, 4);
        let (mut q, k, v) = rand_qkv(2, n_q, n_k, d, d_v);
        for qi in q.chunks_exact_mut(d) {
            qi[3] = qi[..3].iter().copied().fold(f32::INFINITY, f32::min) - 0.5;
        }
        let mut w_gate = vec![0.0; d * ne];
        for t in 0..d {
            w_gate[t * ne + t] = 1.0;
        }
        let moe = MoeAttention {
            w_gate,
            ..MoeAttention::new(d, ne, 2, 9)
        };
        let unused = 3;
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        let mut out = vec![0.0; n_q * d_v];
        let st = moe.forward_stats(&inp, &mut out).unwrap();
        assert_eq!(st.expert_calls, n_q * 2);
        assert_eq!(st.per_expert.iter().sum::<usize>(), n_q * 2);
        assert_eq!(st.per_expert[unused], 0, "{:?}", st.per_expert);
        assert!(
            st.per_expert[..3].iter().all(|&c| c > 0),
            "{:?}",
            st.per_expert
        );
        let mut m2 = moe.clone();
        m2.experts[unused * d * d..(unused + 1) * d * d]
            .iter_mut()
            .for_each(|x| *x = 99.0);
        let mut out2 = vec![0.0; n_q * d_v];
        m2.forward(&inp, &mut out2).unwrap();
        assert_eq!(out, out2, "an expert no query selected changed the output");
        // Changing a selected expert does change the output.
        let mut m3 = moe.clone();
        m3.experts[0] += 1.0;
        let mut out3 = vec![0.0; n_q * d_v];
        m3.forward(&inp, &mut out3).unwrap();
        assert_ne!(out, out3);
    }

    #[test]
    fn mask_applies_inside_every_selected_expert() {
        let (n_q, n_k, d, d_v, ne) = (5, 7, 4, 3, 4);
        let (q, k, v) = rand_qkv(6, n_q, n_k, d, d_v);
        let moe = MoeAttention::new(d, ne, 2, 5);
        let mut rng = Rng::new(7);
        let mut mask: Vec<bool> = (0..n_q * n_k).map(|_| rng.chance(0.5)).collect();
        for j in 0..n_k {
            mask[n_k + j] = false; // query 1 sees nothing
            mask[3 * n_k + j] = j == 4; // query 3 sees only key 4
        }
        let inp =
            AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(crate::attention::Extras {
                mask: Some(&mask),
                ..Default::default()
            });
        let mut out = vec![0.0; n_q * d_v];
        moe.forward(&inp, &mut out).unwrap();
        for i in 0..n_q {
            let row_mask = &mask[i * n_k..(i + 1) * n_k];
            let qi = &q[i * d..(i + 1) * d];
            let want = reference_row(&moe, qi, &k, &v, n_k, d_v, Some(row_mask));
            assert_close(&out[i * d_v..(i + 1) * d_v], &want, 1e-5);
        }
        assert!(out[d_v..2 * d_v].iter().all(|&x| x == 0.0));
        // Every selected expert puts all its weight on key 4, and the gate weights sum to 1.
        assert_close(&out[3 * d_v..4 * d_v], &v[4 * d_v..5 * d_v], 1e-5);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (n_q, n_k, d, d_v) = (4, 5, 3, 2);
        let (q, k, v) = rand_qkv(3, n_q, n_k, d, d_v);
        let mut rng = Rng::new(4);
        let r = rand_vec(&mut rng, n_q * d_v, 1.0);
        let moe = MoeAttention::new(d, 4, 2, 21);
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        let g = moe.backward(&inp, &r).unwrap();
        let loss = |m: &MoeAttention| -> f64 {
            let mut o = vec![0.0; n_q * d_v];
            m.forward(&inp, &mut o).unwrap();
            o.iter()
                .zip(&r)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let mut wg = moe.w_gate.clone();
        check_grad(
            &mut wg,
            &g.w_gate,
            &mut |p| {
                loss(&MoeAttention {
                    w_gate: p.to_vec(),
                    ..moe.clone()
                })
            },
            "w_gate",
        );
        let mut ex = moe.experts.clone();
        check_grad(
            &mut ex,
            &g.experts,
            &mut |p| {
                loss(&MoeAttention {
                    experts: p.to_vec(),
                    ..moe.clone()
                })
            },
            "experts",
        );
    }

    #[test]
    fn bad_top_k_is_an_error() {
        let (q, k, v) = rand_qkv(5, 1, 2, 3, 2);
        let moe = MoeAttention {
            top_k: 5,
            ..MoeAttention::new(3, 4, 2, 1)
        };
        let mut out = vec![0.0; 2];
        assert!(matches!(
            moe.forward(&AttnInput::new(&q, &k, &v, 1, 2, 3, 2), &mut out),
            Err(AttnError::Invalid { .. })
        ));
    }
}
