//! Neighbourhood attention: each query attends only to keys within `hops` graph hops.
//!
//! The graph is `extras.adjacency` over the key nodes; query `i` sits on node
//! `extras.query_nodes[i]` (or node `i` when `n_q == n_k`). A breadth-first search bounded
//! at `hops` gives the visible set (the node itself included); only those scores are
//! computed. Reads `extras.mask` (intersected).

use super::math::{axpy, dot, softmax_in_place};
use super::{Attention, AttnError, AttnInput};

/// k-hop masked attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighborhood {
    pub hops: usize,
}

impl Default for Neighborhood {
    fn default() -> Self {
        Neighborhood { hops: 2 }
    }
}

/// Nodes within `hops` of `start` (BFS), written to `out` in visit order.
/// `seen` (len n) must be all false on entry and is left all false.
pub(crate) fn k_hop(
    adj: super::Csr,
    start: usize,
    hops: usize,
    seen: &mut [bool],
    out: &mut Vec<usize>,
) {
    out.clear();
    out.push(start);
    seen[start] = true;
    let mut frontier = (0, 1);
    for _ in 0..hops {
        for idx in frontier.0..frontier.1 {
            for &t in adj.neighbours(out[idx]) {
                let t = t as usize;
                if !seen[t] {
                    seen[t] = true;
                    out.push(t);
                }
            }
        }
        frontier = (frontier.1, out.len());
        if frontier.0 == frontier.1 {
            break;
        }
    }
    for &u in out.iter() {
        seen[u] = false;
    }
}

impl Attention for Neighborhood {
    fn name(&self) -> &'static str {
        "neighborhood"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        let adj = inp.extras.adjacency.ok_or(AttnError::MissingExtra {
            mechanism: "neighborhood",
            extra: "adjacency",
        })?;
        inp.require_query_nodes("neighborhood")?;
        let (n_k, d, d_v) = (inp.n_k, inp.d, inp.d_v);
        let scale = 1.0 / (d as f32).sqrt();
        let mut seen = vec![false; n_k];
        let mut keys = Vec::new();
        let mut s = Vec::new();
        for i in 0..inp.n_q {
            k_hop(adj, inp.query_node(i), self.hops, &mut seen, &mut keys);
            if let Some(m) = inp.extras.mask {
                keys.retain(|&j| m[i * n_k + j]);
            }
            let qi = &inp.q[i * d..(i + 1) * d];
            s.clear();
            s.extend(
                keys.iter()
                    .map(|&j| dot(qi, &inp.k[j * d..(j + 1) * d]) * scale),
            );
            softmax_in_place(&mut s);
            let o = &mut out[i * d_v..(i + 1) * d_v];
            o.iter_mut().for_each(|x| *x = 0.0);
            for (&j, &p) in keys.iter().zip(&s) {
                axpy(p, &inp.v[j * d_v..(j + 1) * d_v], o);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;
    use crate::attention::{Csr, Extras};
    use crate::rng::Rng;

    /// Random undirected graph in CSR form.
    fn random_graph(n: usize, p: f64, seed: u64) -> (Vec<u32>, Vec<u32>, Vec<bool>) {
        let mut rng = Rng::new(seed);
        let mut a = vec![false; n * n];
        for i in 0..n {
            for j in i + 1..n {
                if rng.chance(p) {
                    a[i * n + j] = true;
                    a[j * n + i] = true;
                }
            }
        }
        let mut off = vec![0u32];
        let mut tgt = Vec::new();
        for i in 0..n {
            tgt.extend((0..n).filter(|&j| a[i * n + j]).map(|j| j as u32));
            off.push(tgt.len() as u32);
        }
        (off, tgt, a)
    }

    #[test]
    fn equals_dense_attention_under_the_matrix_power_mask() {
        // Reference mask: reach = (A + I)^hops computed by repeated boolean matrix products.
        let n = 25;
        let (off, tgt, a) = random_graph(n, 0.08, 1);
        let (q, k, v) = rand_qkv(2, n, n, 4, 3);
        for hops in 0..4 {
            let mut reach: Vec<bool> = (0..n * n).map(|x| x / n == x % n).collect();
            for _ in 0..hops {
                let prev = reach.clone();
                for i in 0..n {
                    for j in 0..n {
                        reach[i * n + j] =
                            prev[i * n + j] || (0..n).any(|m| prev[i * n + m] && a[m * n + j]);
                    }
                }
            }
            let ex = Extras {
                adjacency: Some(Csr {
                    offsets: &off,
                    targets: &tgt,
                }),
                ..Default::default()
            };
            let mut out = vec![0.0; n * 3];
            Neighborhood { hops }
                .forward(
                    &AttnInput::new(&q, &k, &v, n, n, 4, 3).with_extras(ex),
                    &mut out,
                )
                .unwrap();
            assert_close(
                &out,
                &reference_sdpa_f64(&q, &k, &v, n, n, 4, 3, Some(&reach)),
                1e-5,
            );
        }
    }

    #[test]
    fn keys_beyond_k_hops_are_invisible() {
        // Path 0-1-2-3-4-5: with 2 hops, node 0 cannot see node 3.
        let off = [0u32, 1, 3, 5, 7, 9, 10];
        let tgt = [1u32, 0, 2, 1, 3, 2, 4, 3, 5, 4];
        let (q, mut k, v) = rand_qkv(3, 6, 6, 4, 2);
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &off,
                targets: &tgt,
            }),
            ..Default::default()
        };
        let mut a = vec![0.0; 12];
        Neighborhood { hops: 2 }
            .forward(
                &AttnInput::new(&q, &k, &v, 6, 6, 4, 2).with_extras(ex),
                &mut a,
            )
            .unwrap();
        k[3 * 4] += 9.0;
        let mut b = vec![0.0; 12];
        Neighborhood { hops: 2 }
            .forward(
                &AttnInput::new(&q, &k, &v, 6, 6, 4, 2).with_extras(ex),
                &mut b,
            )
            .unwrap();
        assert_eq!(&a[0..2], &b[0..2]);
        assert_ne!(&a[2..4], &b[2..4], "node 1 is two hops from node 3");
    }

    #[test]
    fn missing_graph_or_query_nodes_are_errors() {
        let (q, k, v) = rand_qkv(4, 2, 3, 4, 2);
        let mut out = vec![0.0; 4];
        let e = Neighborhood::default()
            .forward(&AttnInput::new(&q, &k, &v, 2, 3, 4, 2), &mut out)
            .unwrap_err();
        assert!(matches!(
            e,
            AttnError::MissingExtra {
                extra: "adjacency",
                ..
            }
        ));
        let off = [0u32, 0, 0, 0];
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &off,
                targets: &[],
            }),
            ..Default::default()
        };
        let e = Neighborhood::default()
            .forward(
                &AttnInput::new(&q, &k, &v, 2, 3, 4, 2).with_extras(ex),
                &mut out,
            )
            .unwrap_err();
        assert!(matches!(e, AttnError::MissingExtra { .. }));
        let bad = [0u32, 1, 1, 1];
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &bad,
                targets: &[7],
            }),
            query_nodes: Some(&[0, 1]),
            ..Default::default()
        };
        let e = Neighborhood::default()
            .forward(
                &AttnInput::new(&q, &k, &v, 2, 3, 4, 2).with_extras(ex),
                &mut out,
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                AttnError::Invalid {
                    what: "adjacency",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn mask_is_intersected_with_the_k_hop_set() {
        // Queries sit on explicit graph nodes (n_q != n_k); the mask is indexed by query row.
        let (n, n_q, hops) = (20, 6, 2);
        let (off, tgt, a) = random_graph(n, 0.15, 7);
        let (q, k, v) = rand_qkv(8, n_q, n, 4, 3);
        let nodes = [4u32, 0, 13, 4, 19, 7];
        let mut reach: Vec<bool> = (0..n * n).map(|x| x / n == x % n).collect();
        for _ in 0..hops {
            let prev = reach.clone();
            for i in 0..n {
                for j in 0..n {
                    reach[i * n + j] =
                        prev[i * n + j] || (0..n).any(|m| prev[i * n + m] && a[m * n + j]);
                }
            }
        }
        let mut rng = Rng::new(9);
        let mut mask: Vec<bool> = (0..n_q * n).map(|_| rng.chance(0.6)).collect();
        for j in 0..n {
            mask[n + j] = false; // query 1 sees nothing
            mask[3 * n + j] = j == 4; // query 3 (node 4) sees only its own node
        }
        let ex = Extras {
            adjacency: Some(Csr {
                offsets: &off,
                targets: &tgt,
            }),
            query_nodes: Some(&nodes),
            mask: Some(&mask),
            ..Default::default()
        };
        let mut out = vec![0.0; n_q * 3];
        Neighborhood { hops }
            .forward(
                &AttnInput::new(&q, &k, &v, n_q, n, 4, 3).with_extras(ex),
                &mut out,
            )
            .unwrap();
        let both: Vec<bool> = (0..n_q * n)
            .map(|x| mask[x] && reach[nodes[x / n] as usize * n + x % n])
            .collect();
        assert!(
            (0..n_q * n).any(|x| reach[nodes[x / n] as usize * n + x % n] && !mask[x]),
            "the mask must hide some reachable key"
        );
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n_q, n, 4, 3, Some(&both)),
            1e-5,
        );
        assert_eq!(&out[3..6], &[0.0; 3]);
        assert_close(&out[9..12], &v[12..15], 1e-6);
    }
}
