//! Local-global attention (Longformer-style, Beltagy et al., 2020).
//!
//! Query `i` sees keys `j` with `|i − j| ≤ window` (sequence positions) plus every
//! *global* key; a *global* query sees every key. Only visible scores are computed,
//! so the work is `≈ n · (2·window + 1 + |global|) + |global| · n_k` instead of `n_q · n_k`
//! ([`LocalGlobalStats`]). Reads `extras.mask` (intersected with the pattern).

use super::math::{axpy, dot, softmax_in_place};
use super::{Attention, AttnError, AttnInput};

/// Windowed attention plus global tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LocalGlobal {
    pub window: usize,
    /// Global token positions (as both query and key indices).
    pub global: Vec<u32>,
}

/// Work done by one forward call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalGlobalStats {
    pub scores_computed: usize,
}

impl LocalGlobal {
    /// Whether query `i` may see key `j` under the pattern (ignoring `extras.mask`).
    pub fn visible(&self, i: usize, j: usize) -> bool {
        i.abs_diff(j) <= self.window
            || self.global.contains(&(i as u32))
            || self.global.contains(&(j as u32))
    }

    /// Forward pass with work counts.
    pub fn forward_stats(
        &self,
        inp: &AttnInput,
        out: &mut [f32],
    ) -> Result<LocalGlobalStats, AttnError> {
        inp.validate(out.len())?;
        let (n_q, n_k, d, d_v) = (inp.n_q, inp.n_k, inp.d, inp.d_v);
        let mut is_global = vec![false; n_q.max(n_k)];
        for &g in &self.global {
            if let Some(x) = is_global.get_mut(g as usize) {
                *x = true;
            }
        }
        let global_keys: Vec<usize> = (0..n_k).filter(|&j| is_global[j]).collect();
        let scale = 1.0 / (d as f32).sqrt();
        let mut stats = LocalGlobalStats::default();
        let mut keys: Vec<usize> = Vec::new();
        let mut s: Vec<f32> = Vec::new();
        for i in 0..n_q {
            keys.clear();
            if is_global[i] {
                keys.extend(0..n_k);
            } else {
                let lo = i.saturating_sub(self.window);
                let hi = (i + self.window + 1).min(n_k);
                keys.extend(lo..hi.max(lo));
                keys.extend(global_keys.iter().copied().filter(|&j| j < lo || j >= hi));
            }
            if let Some(m) = inp.extras.mask {
                keys.retain(|&j| m[i * n_k + j]);
            }
            let qi = &inp.q[i * d..(i + 1) * d];
            s.clear();
            s.extend(
                keys.iter()
                    .map(|&j| dot(qi, &inp.k[j * d..(j + 1) * d]) * scale),
            );
            stats.scores_computed += keys.len();
            softmax_in_place(&mut s);
            let o = &mut out[i * d_v..(i + 1) * d_v];
            o.iter_mut().for_each(|x| *x = 0.0);
            for (&j, &p) in keys.iter().zip(&s) {
                axpy(p, &inp.v[j * d_v..(j + 1) * d_v], o);
            }
        }
        Ok(stats)
    }
}

impl Attention for LocalGlobal {
    fn name(&self) -> &'static str {
        "local_global"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        self.forward_stats(inp, out).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;

    #[test]
    fn equals_dense_attention_under_the_pattern_mask() {
        let (n, d, d_v) = (30, 4, 3);
        let (q, k, v) = rand_qkv(1, n, n, d, d_v);
        let lg = LocalGlobal {
            window: 2,
            global: vec![0, 17],
        };
        let mut out = vec![0.0; n * d_v];
        lg.forward(&AttnInput::new(&q, &k, &v, n, n, d, d_v), &mut out)
            .unwrap();
        let mask: Vec<bool> = (0..n * n).map(|x| lg.visible(x / n, x % n)).collect();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n, n, d, d_v, Some(&mask)),
            1e-5,
        );
    }

    #[test]
    fn work_is_linear_in_length_and_far_keys_are_ignored() {
        let lg = LocalGlobal {
            window: 3,
            global: vec![0],
        };
        let mut prev = 0;
        for n in [64usize, 128, 256] {
            let (q, k, v) = rand_qkv(2, n, n, 4, 2);
            let mut out = vec![0.0; n * 2];
            let st = lg
                .forward_stats(&AttnInput::new(&q, &k, &v, n, n, 4, 2), &mut out)
                .unwrap();
            assert!(
                st.scores_computed <= n * (2 * 3 + 2) + n,
                "n={n}: {}",
                st.scores_computed
            );
            if prev > 0 {
                assert!(st.scores_computed < 2 * prev + 2 * n, "not linear");
            }
            prev = st.scores_computed;
        }
        // Changing a key outside query 20's window (and not global) leaves query 20 unchanged.
        let (q, mut k, v) = rand_qkv(3, 40, 40, 4, 2);
        let mut a = vec![0.0; 80];
        lg.forward(&AttnInput::new(&q, &k, &v, 40, 40, 4, 2), &mut a)
            .unwrap();
        k[30 * 4] += 5.0;
        let mut b = vec![0.0; 80];
        lg.forward(&AttnInput::new(&q, &k, &v, 40, 40, 4, 2), &mut b)
            .unwrap();
        assert_eq!(&a[40..42], &b[40..42]);
        assert_ne!(&a[0..2], &b[0..2], "the global query 0 must see key 30");
    }
}
