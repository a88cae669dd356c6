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
        let (n, d, d_v) = (12, 4, 3);
        let (q, k, v) = rand_qkv(1, n, n, d, d_v);
        let lg = LocalGlobal {
            window: 2,
            global: vec![0, 7],
        };
        let mut out = vec![0.0; n * d_v];
        lg.forward(&AttnInput::new(&q, &k, &v, n, n, d, d_v), &mut out)
            .unwrap();
        // Written out by hand from the documented rule, not from `visible`: |i − j| ≤ 2,
        // plus keys 0 and 7 for everyone, plus every key for queries 0 and 7.
        const PATTERN: [&str; 12] = [
            "111111111111", // i = 0 (global)
            "111100010000", // i = 1
            "111110010000", // i = 2
            "111111010000", // i = 3
            "101111110000", // i = 4
            "100111110000", // i = 5
            "100011111000", // i = 6
            "111111111111", // i = 7 (global)
            "100000111110", // i = 8
            "100000011111", // i = 9
            "100000011111", // i = 10
            "100000010111", // i = 11
        ];
        let mask: Vec<bool> = (0..n * n)
            .map(|x| PATTERN[x / n].as_bytes()[x % n] == b'1')
            .collect();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n, n, d, d_v, Some(&mask)),
            1e-5,
        );
        let st = lg
            .forward_stats(&AttnInput::new(&q, &k, &v, n, n, d, d_v), &mut out)
            .unwrap();
        assert_eq!(st.scores_computed, mask.iter().filter(|&&x| x).count());
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

    #[test]
    fn mask_is_intersected_with_the_pattern() {
        let (n, d, d_v) = (16, 4, 2);
        let (q, k, v) = rand_qkv(4, n, n, d, d_v);
        let lg = LocalGlobal {
            window: 1,
            global: vec![3],
        };
        let mut rng = crate::rng::Rng::new(6);
        let mut mask: Vec<bool> = (0..n * n).map(|_| rng.chance(0.6)).collect();
        for j in 0..n {
            mask[5 * n + j] = false; // query 5 sees nothing
            mask[10 * n + j] = j == 3 || j == 14; // query 10: global key 3; key 14 is out of its window
            mask[3 * n + j] = j % 3 == 0; // the global query 3 only sees keys 0, 3, 6, 9, 12, 15
        }
        let inp = AttnInput::new(&q, &k, &v, n, n, d, d_v).with_extras(crate::attention::Extras {
            mask: Some(&mask),
            ..Default::default()
        });
        let mut out = vec![0.0; n * d_v];
        let st = lg.forward_stats(&inp, &mut out).unwrap();
        // Pattern from the module docs: |i − j| ≤ 1, or i or j is the global position 3.
        let both: Vec<bool> = (0..n * n)
            .map(|x| {
                let (i, j) = (x / n, x % n);
                mask[x] && (i.abs_diff(j) <= 1 || i == 3 || j == 3)
            })
            .collect();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n, n, d, d_v, Some(&both)),
            1e-5,
        );
        assert_eq!(st.scores_computed, both.iter().filter(|&&x| x).count());
        assert_eq!(&out[5 * d_v..6 * d_v], &[0.0, 0.0]);
        assert_close(&out[10 * d_v..11 * d_v], &v[3 * d_v..4 * d_v], 1e-6);
    }
}
