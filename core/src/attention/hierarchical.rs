//! Hierarchical (tree-structured) attention over a forest of keys.
//!
//! `extras.parents` arranges the keys in a tree (for example genre → sub-genre → show).
//! Attention descends it: the weight of a node is its parent's weight times the softmax of
//! `q·k/√d` among its siblings (roots share one softmax):
//! `w(node) = w(parent) · exp(s_node) / Σ_{siblings} exp(s)`. The output mixes the values of
//! the leaves, `out = Σ_leaf w(leaf) v_leaf`; inner nodes act as routers. Leaf weights sum to
//! one, and the mass of a subtree is decided at the level of its root only. Does not read
//! `extras.mask`.

use super::math::{axpy, dot};
use super::{Attention, AttnError, AttnInput, ROOT};

/// Tree-softmax attention.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hierarchical;

/// Children lists and a top-down order of a validated forest.
pub(crate) struct Forest {
    children_off: Vec<usize>,
    children: Vec<usize>,
    roots: Vec<usize>,
    /// Parents before children.
    order: Vec<usize>,
}

impl Forest {
    pub(crate) fn new(parents: &[u32]) -> Result<Forest, AttnError> {
        let n = parents.len();
        let mut count = vec![0usize; n + 1];
        for &p in parents {
            if p != ROOT {
                count[p as usize + 1] += 1;
            }
        }
        for i in 0..n {
            count[i + 1] += count[i];
        }
        let mut fill = count.clone();
        let mut children = vec![0usize; count[n]];
        for (c, &p) in parents.iter().enumerate() {
            if p != ROOT {
                children[fill[p as usize]] = c;
                fill[p as usize] += 1;
            }
        }
        let roots: Vec<usize> = (0..n).filter(|&i| parents[i] == ROOT).collect();
        let mut order = roots.clone();
        let mut h = 0;
        while h < order.len() {
            let u = order[h];
            order.extend_from_slice(&children[count[u]..count[u + 1]]);
            h += 1;
        }
        if order.len() != n {
            return Err(AttnError::Invalid {
                what: "parents",
                msg: format!(
                    "{} of {n} keys are on a cycle or unreachable from a root",
                    n - order.len()
                ),
            });
        }
        Ok(Forest {
            children_off: count,
            children,
            roots,
            order,
        })
    }

    fn children(&self, u: usize) -> &[usize] {
        &self.children[self.children_off[u]..self.children_off[u + 1]]
    }
}

/// Softmax of `s` over `ids`, scaled by `mass`, written into `w`.
fn spread(ids: &[usize], s: &[f32], mass: f32, w: &mut [f32]) {
    let m = ids.iter().map(|&c| s[c]).fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = ids.iter().map(|&c| (s[c] - m).exp()).sum();
    for &c in ids {
        w[c] = mass * (s[c] - m).exp() / z;
    }
}

impl Hierarchical {
    /// Node weights `[n_q × n_k]` (every node, inner ones included) and the leaf flags.
    pub fn node_weights(&self, inp: &AttnInput) -> Result<(Vec<f32>, Vec<bool>), AttnError> {
        inp.validate(inp.n_q * inp.d_v)?;
        let parents = inp.extras.parents.ok_or(AttnError::MissingExtra {
            mechanism: "hierarchical",
            extra: "parents",
        })?;
        let f = Forest::new(parents)?;
        let (n_k, d) = (inp.n_k, inp.d);
        let scale = 1.0 / (d as f32).sqrt();
        let mut w = vec![0.0; inp.n_q * n_k];
        let mut s = vec![0.0; n_k];
        for i in 0..inp.n_q {
            let qi = &inp.q[i * d..(i + 1) * d];
            for j in 0..n_k {
                s[j] = dot(qi, &inp.k[j * d..(j + 1) * d]) * scale;
            }
            let wi = &mut w[i * n_k..(i + 1) * n_k];
            spread(&f.roots, &s, 1.0, wi);
            for &u in &f.order {
                let ch = f.children(u);
                if !ch.is_empty() {
                    let mass = wi[u];
                    spread(ch, &s, mass, wi);
                }
            }
        }
        let leaf = (0..n_k).map(|u| f.children(u).is_empty()).collect();
        Ok((w, leaf))
    }
}

impl Attention for Hierarchical {
    fn name(&self) -> &'static str {
        "hierarchical"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        let (w, leaf) = self.node_weights(inp)?;
        let (n_k, d_v) = (inp.n_k, inp.d_v);
        for i in 0..inp.n_q {
            let o = &mut out[i * d_v..(i + 1) * d_v];
            o.iter_mut().for_each(|x| *x = 0.0);
            for j in (0..n_k).filter(|&j| leaf[j]) {
                axpy(w[i * n_k + j], &inp.v[j * d_v..(j + 1) * d_v], o);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;
    use crate::attention::Extras;

    // Two genres (0, 1); sub-genres 2, 3 under 0 and 4 under 1; shows 5, 6 under 2, 7 under 3, 8, 9 under 4.
    const PARENTS: [u32; 10] = [ROOT, ROOT, 0, 0, 1, 2, 2, 3, 4, 4];

    fn run(q: &[f32], k: &[f32], v: &[f32], n_q: usize) -> Vec<f32> {
        let mut out = vec![0.0; n_q * 2];
        let ex = Extras {
            parents: Some(&PARENTS),
            ..Default::default()
        };
        Hierarchical
            .forward(
                &AttnInput::new(q, k, v, n_q, 10, 4, 2).with_extras(ex),
                &mut out,
            )
            .unwrap();
        out
    }

    #[test]
    fn leaf_weight_is_product_of_sibling_softmaxes_along_the_path() {
        let (q, k, v) = rand_qkv(1, 3, 10, 4, 2);
        let out = run(&q, &k, &v, 3);
        for i in 0..3 {
            let s = |j: usize| {
                (0..4)
                    .map(|t| q[i * 4 + t] as f64 * k[j * 4 + t] as f64)
                    .sum::<f64>()
                    / 2.0
            };
            let sm =
                |j: usize, sib: &[usize]| s(j).exp() / sib.iter().map(|&x| s(x).exp()).sum::<f64>();
            type Path<'a> = &'a [(usize, &'a [usize])];
            let paths: [(usize, Path); 5] = [
                (5, &[(0, &[0, 1]), (2, &[2, 3]), (5, &[5, 6])]),
                (6, &[(0, &[0, 1]), (2, &[2, 3]), (6, &[5, 6])]),
                (7, &[(0, &[0, 1]), (3, &[2, 3]), (7, &[7])]),
                (8, &[(1, &[0, 1]), (4, &[4]), (8, &[8, 9])]),
                (9, &[(1, &[0, 1]), (4, &[4]), (9, &[8, 9])]),
            ];
            let mut want = [0.0f64; 2];
            for (leaf, path) in paths {
                let w: f64 = path.iter().map(|(j, sib)| sm(*j, sib)).product();
                for c in 0..2 {
                    want[c] += w * v[leaf * 2 + c] as f64;
                }
            }
            assert_close(
                &out[i * 2..i * 2 + 2],
                &[want[0] as f32, want[1] as f32],
                1e-5,
            );
        }
    }

    #[test]
    fn subtree_mass_is_decided_at_its_root_level() {
        // Property: changing keys inside genre 0's subtree redistributes weight within it but
        // leaves the total mass of genre 0 (and everything under genre 1) unchanged.
        let (q, mut k, v) = rand_qkv(2, 2, 10, 4, 2);
        let ex = Extras {
            parents: Some(&PARENTS),
            ..Default::default()
        };
        let (w1, leaf) = Hierarchical
            .node_weights(&AttnInput::new(&q, &k, &v, 2, 10, 4, 2).with_extras(ex))
            .unwrap();
        for j in [2usize, 5, 7] {
            for t in 0..4 {
                k[j * 4 + t] += 3.0 * (t as f32 - 1.5);
            }
        }
        let (w2, _) = Hierarchical
            .node_weights(&AttnInput::new(&q, &k, &v, 2, 10, 4, 2).with_extras(ex))
            .unwrap();
        for i in 0..2 {
            let mass = |w: &[f32], ids: &[usize]| ids.iter().map(|&j| w[i * 10 + j]).sum::<f32>();
            assert!((mass(&w1, &[5, 6, 7]) - mass(&w2, &[5, 6, 7])).abs() < 1e-6);
            assert!((mass(&w1, &[5, 6, 7]) - w1[i * 10]).abs() < 1e-6);
            for j in [8, 9] {
                assert!((w1[i * 10 + j] - w2[i * 10 + j]).abs() < 1e-6);
            }
            assert!(max_abs_diff(&w1[i * 10 + 5..i * 10 + 8], &w2[i * 10 + 5..i * 10 + 8]) > 1e-3);
            let total: f32 = (0..10).filter(|&j| leaf[j]).map(|j| w1[i * 10 + j]).sum();
            assert!((total - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn cycles_and_missing_tree_are_errors() {
        let (q, k, v) = rand_qkv(3, 1, 3, 4, 2);
        let mut out = vec![0.0; 2];
        let cyc = [1u32, 2, 1];
        let ex = Extras {
            parents: Some(&cyc),
            ..Default::default()
        };
        let e = Hierarchical
            .forward(
                &AttnInput::new(&q, &k, &v, 1, 3, 4, 2).with_extras(ex),
                &mut out,
            )
            .unwrap_err();
        assert!(
            matches!(
                e,
                AttnError::Invalid {
                    what: "parents",
                    ..
                }
            ),
            "{e}"
        );
        let e = Hierarchical
            .forward(&AttnInput::new(&q, &k, &v, 1, 3, 4, 2), &mut out)
            .unwrap_err();
        assert!(matches!(e, AttnError::MissingExtra { .. }));
    }
}
