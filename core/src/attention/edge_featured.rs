//! Edge-featured graph attention (GAT-style, Veličković et al., 2018, with edge features).
//!
//! `s_ij = LeakyReLU(a_q·q_i + a_k·k_j + w_e·e_ij)` over the visible pairs,
//! `out_i = Σ_j softmax_j(s_ij) v_j`. Visible pairs: the neighbours of query i's node in
//! `extras.adjacency` plus the node itself (self-loop), intersected with `extras.mask`;
//! with no adjacency every pair is visible. Needs `extras.edge_feats`. The vectors `a_q`,
//! `a_k` (`[d]`) and `w_e` (`[d_e]`) are learnable; [`EdgeFeatured::backward`] returns their
//! gradients (checked against finite differences).

use super::math::{axpy, dot, softmax_in_place};
use super::{check_finite, Attention, AttnError, AttnInput};
use crate::rng::Rng;

/// GAT-style attention with edge features.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeFeatured {
    pub d: usize,
    pub d_e: usize,
    pub a_q: Vec<f32>,
    pub a_k: Vec<f32>,
    pub w_e: Vec<f32>,
    /// LeakyReLU negative slope.
    pub slope: f32,
}

/// Gradients of a scalar loss.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeFeaturedGrads {
    pub a_q: Vec<f32>,
    pub a_k: Vec<f32>,
    pub w_e: Vec<f32>,
}

/// Visibility of key j for query i from adjacency (+ self-loop) and mask.
pub(crate) fn graph_visible(inp: &AttnInput, i: usize, row: &mut [bool]) {
    let n_k = inp.n_k;
    match inp.extras.adjacency {
        Some(g) => {
            row.iter_mut().for_each(|x| *x = false);
            let u = inp.query_node(i);
            row[u] = true;
            for &t in g.neighbours(u) {
                row[t as usize] = true;
            }
        }
        None => row.iter_mut().for_each(|x| *x = true),
    }
    if let Some(m) = inp.extras.mask {
        for (x, &ok) in row.iter_mut().zip(&m[i * n_k..(i + 1) * n_k]) {
            *x &= ok;
        }
    }
}

impl EdgeFeatured {
    /// Small random parameters.
    pub fn new(d: usize, d_e: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let s = (1.0 / d as f32).sqrt();
        EdgeFeatured {
            d,
            d_e,
            a_q: (0..d).map(|_| rng.normal() * s).collect(),
            a_k: (0..d).map(|_| rng.normal() * s).collect(),
            w_e: (0..d_e).map(|_| rng.normal()).collect(),
            slope: 0.2,
        }
    }

    fn check(&self, inp: &AttnInput, out_len: usize) -> Result<usize, AttnError> {
        inp.validate(out_len)?;
        let ef = inp.extras.edge_feats.ok_or(AttnError::MissingExtra {
            mechanism: "edge_featured",
            extra: "edge_feats",
        })?;
        if inp.extras.adjacency.is_some() {
            inp.require_query_nodes("edge_featured")?;
        }
        for (what, expected, got) in [("d", self.d, inp.d), ("d_e", self.d_e, ef.d_e)] {
            if expected != got {
                return Err(AttnError::ConfigMismatch {
                    mechanism: "edge_featured",
                    what,
                    expected,
                    got,
                });
            }
        }
        if self.a_q.len() != self.d || self.a_k.len() != self.d || self.w_e.len() != self.d_e {
            return Err(AttnError::Shape {
                what: "edge_featured parameters",
                expected: 2 * self.d + self.d_e,
                got: self.a_q.len() + self.a_k.len() + self.w_e.len(),
            });
        }
        check_finite("a_q", &self.a_q)?;
        check_finite("a_k", &self.a_k)?;
        check_finite("w_e", &self.w_e)?;
        Ok(ef.d_e)
    }

    /// Pre-activations `u_ij` and probabilities for query i (masked entries: u = 0, p = 0).
    fn row(
        &self,
        inp: &AttnInput,
        i: usize,
        sk: &[f32],
        vis: &mut [bool],
        u: &mut [f32],
        p: &mut [f32],
    ) {
        let (d, n_k) = (self.d, inp.n_k);
        let ef = inp.extras.edge_feats.expect("checked");
        graph_visible(inp, i, vis);
        let sq = dot(&self.a_q, &inp.q[i * d..(i + 1) * d]);
        for j in 0..n_k {
            if vis[j] {
                let e = &ef.data[(i * n_k + j) * self.d_e..(i * n_k + j + 1) * self.d_e];
                u[j] = sq + sk[j] + dot(&self.w_e, e);
                p[j] = if u[j] > 0.0 { u[j] } else { self.slope * u[j] };
            } else {
                u[j] = 0.0;
                p[j] = f32::NEG_INFINITY;
            }
        }
        softmax_in_place(p);
    }

    /// Attention weights `[n_q × n_k]`.
    pub fn weights(&self, inp: &AttnInput) -> Result<Vec<f32>, AttnError> {
        self.check(inp, inp.n_q * inp.d_v)?;
        let sk: Vec<f32> = inp
            .k
            .chunks_exact(self.d)
            .map(|kj| dot(&self.a_k, kj))
            .collect();
        let mut w = vec![0.0; inp.n_q * inp.n_k];
        let (mut vis, mut u) = (vec![false; inp.n_k], vec![0.0; inp.n_k]);
        for i in 0..inp.n_q {
            self.row(
                inp,
                i,
                &sk,
                &mut vis,
                &mut u,
                &mut w[i * inp.n_k..(i + 1) * inp.n_k],
            );
        }
        Ok(w)
    }

    /// Gradients given `d_out = ∂L/∂out`.
    pub fn backward(&self, inp: &AttnInput, d_out: &[f32]) -> Result<EdgeFeaturedGrads, AttnError> {
        self.check(inp, d_out.len())?;
        check_finite("d_out", d_out)?;
        let (d, n_k, d_v, d_e) = (self.d, inp.n_k, inp.d_v, self.d_e);
        let ef = inp.extras.edge_feats.expect("checked");
        let sk: Vec<f32> = inp.k.chunks_exact(d).map(|kj| dot(&self.a_k, kj)).collect();
        let mut g = EdgeFeaturedGrads {
            a_q: vec![0.0; d],
            a_k: vec![0.0; d],
            w_e: vec![0.0; d_e],
        };
        let (mut vis, mut u, mut p) = (vec![false; n_k], vec![0.0; n_k], vec![0.0; n_k]);
        for i in 0..inp.n_q {
            self.row(inp, i, &sk, &mut vis, &mut u, &mut p);
            let go = &d_out[i * d_v..(i + 1) * d_v];
            let dp: Vec<f32> = (0..n_k)
                .map(|j| dot(go, &inp.v[j * d_v..(j + 1) * d_v]))
                .collect();
            let mean: f32 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            let mut dsq = 0.0f32;
            for j in 0..n_k {
                if !vis[j] {
                    continue;
                }
                let ds = p[j] * (dp[j] - mean);
                let du = ds * if u[j] > 0.0 { 1.0 } else { self.slope };
                dsq += du;
                axpy(du, &inp.k[j * d..(j + 1) * d], &mut g.a_k);
                axpy(
                    du,
                    &ef.data[(i * n_k + j) * d_e..(i * n_k + j + 1) * d_e],
                    &mut g.w_e,
                );
            }
            axpy(dsq, &inp.q[i * d..(i + 1) * d], &mut g.a_q);
        }
        Ok(g)
    }
}

impl Attention for EdgeFeatured {
    fn name(&self) -> &'static str {
        "edge_featured"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        let w = self.weights(inp)?;
        inp.validate(out.len())?;
        let d_v = inp.d_v;
        for i in 0..inp.n_q {
            let o = &mut out[i * d_v..(i + 1) * d_v];
            o.iter_mut().for_each(|x| *x = 0.0);
            for j in 0..inp.n_k {
                let p = w[i * inp.n_k + j];
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
    use crate::attention::testutil::*;
    use crate::attention::{Csr, EdgeFeats, Extras};

    // A 5-node path graph 0-1-2-3-4.
    const OFF: [u32; 6] = [0, 1, 3, 5, 7, 8];
    const TGT: [u32; 8] = [1, 0, 2, 1, 3, 2, 4, 3];

    fn setup(seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let (q, k, v) = rand_qkv(seed, 5, 5, 4, 3);
        let mut rng = Rng::new(seed + 100);
        let e = rand_vec(&mut rng, 5 * 5 * 2, 1.0);
        (q, k, v, e)
    }

    #[test]
    fn matches_gat_formula_on_neighbours_only() {
        let (q, k, v, e) = setup(1);
        let m = EdgeFeatured::new(4, 2, 3);
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &OFF,
                targets: &TGT,
            }),
            edge_feats: Some(EdgeFeats { data: &e, d_e: 2 }),
            ..Default::default()
        };
        let inp = AttnInput::new(&q, &k, &v, 5, 5, 4, 3).with_extras(ex);
        let mut out = vec![0.0; 15];
        m.forward(&inp, &mut out).unwrap();
        for i in 0..5 {
            let scores: Vec<Option<f64>> = (0..5)
                .map(|j| {
                    let nb = i == j || (i as i64 - j as i64).abs() == 1;
                    nb.then(|| {
                        let u: f64 = (0..4)
                            .map(|t| (m.a_q[t] * q[i * 4 + t] + m.a_k[t] * k[j * 4 + t]) as f64)
                            .sum::<f64>()
                            + (0..2)
                                .map(|t| (m.w_e[t] * e[(i * 5 + j) * 2 + t]) as f64)
                                .sum::<f64>();
                        if u > 0.0 {
                            u
                        } else {
                            0.2 * u
                        }
                    })
                })
                .collect();
            assert_close(
                &out[i * 3..(i + 1) * 3],
                &softmax_combine_f64(&scores, &v, 3),
                1e-5,
            );
        }
    }

    #[test]
    fn edge_features_steer_attention_and_non_edges_get_nothing() {
        // Property: raising w_e·e_ij for one edge raises that edge's weight; non-neighbours stay at 0
        // whatever their features.
        let (q, k, v, mut e) = setup(2);
        let m = EdgeFeatured {
            w_e: vec![1.0, 0.0],
            ..EdgeFeatured::new(4, 2, 4)
        };
        let w_before = {
            let ex = Extras {
                adjacency: Some(Csr {
                    offsets: &OFF,
                    targets: &TGT,
                }),
                edge_feats: Some(EdgeFeats { data: &e, d_e: 2 }),
                ..Default::default()
            };
            m.weights(&AttnInput::new(&q, &k, &v, 5, 5, 4, 3).with_extras(ex))
                .unwrap()
        };
        e[(2 * 5 + 3) * 2] += 3.0; // edge 2→3
        e[2 * 5 * 2] += 50.0; // non-edge 2→0
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &OFF,
                targets: &TGT,
            }),
            edge_feats: Some(EdgeFeats { data: &e, d_e: 2 }),
            ..Default::default()
        };
        let w_after = m
            .weights(&AttnInput::new(&q, &k, &v, 5, 5, 4, 3).with_extras(ex))
            .unwrap();
        assert!(w_after[2 * 5 + 3] > w_before[2 * 5 + 3]);
        assert_eq!(w_after[2 * 5], 0.0);
        assert!(w_after[2 * 5 + 4] == 0.0 && w_before[2 * 5 + 4] == 0.0);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (q, k, v, e) = setup(3);
        let mut rng = Rng::new(5);
        let r = rand_vec(&mut rng, 15, 1.0);
        let m = EdgeFeatured::new(4, 2, 6);
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &OFF,
                targets: &TGT,
            }),
            edge_feats: Some(EdgeFeats { data: &e, d_e: 2 }),
            ..Default::default()
        };
        let inp = AttnInput::new(&q, &k, &v, 5, 5, 4, 3).with_extras(ex);
        let g = m.backward(&inp, &r).unwrap();
        let loss = |mm: &EdgeFeatured| -> f64 {
            let mut o = vec![0.0; 15];
            mm.forward(&inp, &mut o).unwrap();
            o.iter()
                .zip(&r)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum()
        };
        let mut p = m.a_q.clone();
        check_grad(
            &mut p,
            &g.a_q,
            &mut |x| {
                loss(&EdgeFeatured {
                    a_q: x.to_vec(),
                    ..m.clone()
                })
            },
            "a_q",
        );
        let mut p = m.a_k.clone();
        check_grad(
            &mut p,
            &g.a_k,
            &mut |x| {
                loss(&EdgeFeatured {
                    a_k: x.to_vec(),
                    ..m.clone()
                })
            },
            "a_k",
        );
        let mut p = m.w_e.clone();
        check_grad(
            &mut p,
            &g.w_e,
            &mut |x| {
                loss(&EdgeFeatured {
                    w_e: x.to_vec(),
                    ..m.clone()
                })
            },
            "w_e",
        );
    }

    #[test]
    fn missing_edge_features_is_an_error() {
        let (q, k, v, _) = setup(4);
        let mut out = vec![0.0; 15];
        let e = EdgeFeatured::new(4, 2, 1)
            .forward(&AttnInput::new(&q, &k, &v, 5, 5, 4, 3), &mut out)
            .unwrap_err();
        assert_eq!(
            e,
            AttnError::MissingExtra {
                mechanism: "edge_featured",
                extra: "edge_feats"
            }
        );
    }

    /// GAT scores of `m` for query i over `visible` keys (f64, from the formula).
    fn gat_scores(
        m: &EdgeFeatured,
        q: &[f32],
        k: &[f32],
        e: &[f32],
        i: usize,
        visible: impl Fn(usize) -> bool,
    ) -> Vec<Option<f64>> {
        (0..5)
            .map(|j| {
                visible(j).then(|| {
                    let u: f64 = (0..4)
                        .map(|t| m.a_q[t] as f64 * q[i * 4 + t] as f64)
                        .sum::<f64>()
                        + (0..4)
                            .map(|t| m.a_k[t] as f64 * k[j * 4 + t] as f64)
                            .sum::<f64>()
                        + (0..2)
                            .map(|t| m.w_e[t] as f64 * e[(i * 5 + j) * 2 + t] as f64)
                            .sum::<f64>();
                    if u > 0.0 {
                        u
                    } else {
                        m.slope as f64 * u
                    }
                })
            })
            .collect()
    }

    #[test]
    fn mask_is_intersected_with_the_graph_and_applies_without_one() {
        let (q, k, v, e) = setup(7);
        let m = EdgeFeatured::new(4, 2, 8);
        let mut rng = Rng::new(9);
        let mut mask: Vec<bool> = (0..25).map(|_| rng.chance(0.6)).collect();
        for j in 0..5 {
            mask[5 + j] = false; // query 1 sees nothing
            mask[3 * 5 + j] = j == 4; // query 3: only its neighbour 4 (and, without a graph, key 4)
        }
        mask[2 * 5 + 2] = false; // query 2 loses its self-loop
        mask[2 * 5 + 1] = true;
        for with_graph in [true, false] {
            let ex = Extras {
                adjacency: with_graph.then_some(Csr {
                    offsets: &OFF,
                    targets: &TGT,
                }),
                edge_feats: Some(EdgeFeats { data: &e, d_e: 2 }),
                mask: Some(&mask),
                ..Default::default()
            };
            let inp = AttnInput::new(&q, &k, &v, 5, 5, 4, 3).with_extras(ex);
            let mut out = vec![0.0; 15];
            m.forward(&inp, &mut out).unwrap();
            for i in 0..5 {
                let nb = |j: usize| !with_graph || i == j || i.abs_diff(j) == 1;
                let scores = gat_scores(&m, &q, &k, &e, i, |j| nb(j) && mask[i * 5 + j]);
                assert_close(
                    &out[i * 3..(i + 1) * 3],
                    &softmax_combine_f64(&scores, &v, 3),
                    1e-5,
                );
            }
            assert_eq!(&out[3..6], &[0.0; 3]);
            assert_close(&out[9..12], &v[12..15], 1e-6);
            let w = m.weights(&inp).unwrap();
            assert_eq!(w[2 * 5 + 2], 0.0, "masked self-loop");
            assert!(w[2 * 5 + 1] > 0.0);
        }
    }
}
