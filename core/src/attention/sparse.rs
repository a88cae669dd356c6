//! Block-sparse attention with a local + strided block pattern (Child et al., 2019).
//!
//! Queries and keys are cut into blocks of `block` positions. Query block `I` sees key
//! block `J` when `|I − J| < local_blocks` (local band) or `J % stride == stride − 1`
//! (strided "summary" blocks; `stride = 0` disables them). Skipped blocks cost nothing:
//! their scores are never computed ([`SparseStats`] counts what was). Within the visible
//! blocks the softmax is exact (online rescaling across blocks). Reads `extras.mask`.

use super::flash::exp_neg;
use super::math::{axpy, dot};
use super::{Attention, AttnError, AttnInput};

/// Block-sparse attention pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSparse {
    pub block: usize,
    pub local_blocks: usize,
    pub stride: usize,
}

impl Default for BlockSparse {
    fn default() -> Self {
        BlockSparse {
            block: 32,
            local_blocks: 1,
            stride: 4,
        }
    }
}

/// Work done by one forward call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SparseStats {
    pub blocks_computed: usize,
    pub blocks_skipped: usize,
    pub scores_computed: usize,
}

impl BlockSparse {
    /// Whether query block `qb` sees key block `kb`.
    pub fn block_visible(&self, qb: usize, kb: usize) -> bool {
        qb.abs_diff(kb) < self.local_blocks
            || (self.stride > 0 && kb % self.stride == self.stride - 1)
    }

    /// Forward pass with work counts.
    pub fn forward_stats(
        &self,
        inp: &AttnInput,
        out: &mut [f32],
    ) -> Result<SparseStats, AttnError> {
        inp.validate(out.len())?;
        if self.block == 0 {
            return Err(AttnError::ZeroDim { what: "block" });
        }
        let (n_q, n_k, d, d_v, b) = (inp.n_q, inp.n_k, inp.d, inp.d_v, self.block);
        let scale = 1.0 / (d as f32).sqrt();
        let (nqb, nkb) = (n_q.div_ceil(b), n_k.div_ceil(b));
        let mut st = SparseStats::default();
        let mut s = vec![0.0f32; b];
        for qb in 0..nqb {
            for kb in 0..nkb {
                if self.block_visible(qb, kb) {
                    st.blocks_computed += 1;
                } else {
                    st.blocks_skipped += 1;
                }
            }
            for i in qb * b..((qb + 1) * b).min(n_q) {
                let qi = &inp.q[i * d..(i + 1) * d];
                let o = &mut out[i * d_v..(i + 1) * d_v];
                o.iter_mut().for_each(|x| *x = 0.0);
                let (mut m, mut l) = (f32::NEG_INFINITY, 0.0f32);
                for kb in (0..nkb).filter(|&kb| self.block_visible(qb, kb)) {
                    let (k0, k1) = (kb * b, ((kb + 1) * b).min(n_k));
                    let row = &mut s[..k1 - k0];
                    for (x, j) in row.iter_mut().zip(k0..k1) {
                        *x = if inp.extras.mask.is_some_and(|mk| !mk[i * n_k + j]) {
                            f32::NEG_INFINITY
                        } else {
                            dot(qi, &inp.k[j * d..(j + 1) * d]) * scale
                        };
                    }
                    st.scores_computed += k1 - k0;
                    let bmax = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    if bmax == f32::NEG_INFINITY {
                        continue;
                    }
                    let m_new = m.max(bmax);
                    if m != f32::NEG_INFINITY && m != m_new {
                        let a = exp_neg(m - m_new);
                        l *= a;
                        o.iter_mut().for_each(|x| *x *= a);
                    }
                    m = m_new;
                    for (x, j) in row.iter().zip(k0..k1) {
                        let p = exp_neg(x - m);
                        l += p;
                        if p != 0.0 {
                            axpy(p, &inp.v[j * d_v..(j + 1) * d_v], o);
                        }
                    }
                }
                if l > 0.0 {
                    let inv = 1.0 / l;
                    o.iter_mut().for_each(|x| *x *= inv);
                }
            }
        }
        Ok(st)
    }
}

impl Attention for BlockSparse {
    fn name(&self) -> &'static str {
        "sparse"
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
    fn equals_dense_attention_under_the_block_mask() {
        let (n, d, d_v) = (70, 8, 3); // ragged last block
        let (q, k, v) = rand_qkv(1, n, n, d, d_v);
        let sp = BlockSparse {
            block: 8,
            local_blocks: 2,
            stride: 3,
        };
        let mut out = vec![0.0; n * d_v];
        sp.forward(&AttnInput::new(&q, &k, &v, n, n, d, d_v), &mut out)
            .unwrap();
        // Written out by hand from the documented rule, not from `block_visible`:
        // key block J is visible to query block I iff |I − J| < 2 or J % 3 == 2 (J ∈ {2, 5, 8}).
        // 70 positions in blocks of 8 give 9 blocks; block 8 holds positions 64..70.
        const PATTERN: [&str; 9] = [
            "111001001", // I = 0
            "111001001", // I = 1
            "011101001", // I = 2
            "001111001", // I = 3
            "001111001", // I = 4
            "001011101", // I = 5
            "001001111", // I = 6
            "001001111", // I = 7
            "001001011", // I = 8
        ];
        let mask: Vec<bool> = (0..n * n)
            .map(|x| PATTERN[x / n / 8].as_bytes()[(x % n) / 8] == b'1')
            .collect();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n, n, d, d_v, Some(&mask)),
            1e-5,
        );
    }

    #[test]
    fn skipped_blocks_cost_nothing_and_do_not_matter() {
        let (n, d, d_v) = (256, 4, 2);
        let (q, mut k, v) = rand_qkv(2, n, n, d, d_v);
        let sp = BlockSparse {
            block: 16,
            local_blocks: 1,
            stride: 4,
        };
        let mut a = vec![0.0; n * d_v];
        let st = sp
            .forward_stats(&AttnInput::new(&q, &k, &v, n, n, d, d_v), &mut a)
            .unwrap();
        let nb = n / 16;
        // 16 blocks; summary blocks are 3, 7, 11, 15. The 12 other query blocks see themselves
        // plus the 4 summaries (5 each), a summary query block sees just the 4 summaries.
        let visible = 12 * 5 + 4 * 4;
        assert_eq!(st.blocks_computed, visible);
        assert_eq!(st.blocks_computed + st.blocks_skipped, nb * nb);
        assert_eq!(st.scores_computed, visible * 16 * 16);
        assert!(
            st.scores_computed * 3 < n * n,
            "pattern should skip most of the matrix"
        );
        // Key 40 is in block 2, which query block 0 does not see (not local, 2 % 4 != 3).
        assert!(!sp.block_visible(0, 2));
        k[40 * d] += 10.0;
        let mut b = vec![0.0; n * d_v];
        sp.forward(&AttnInput::new(&q, &k, &v, n, n, d, d_v), &mut b)
            .unwrap();
        assert_eq!(&a[..16 * d_v], &b[..16 * d_v]);
        assert_ne!(&a[32 * d_v..48 * d_v], &b[32 * d_v..48 * d_v]);
    }

    #[test]
    fn mask_is_intersected_with_the_block_pattern() {
        let (n, d, d_v) = (40, 4, 3);
        let (q, k, v) = rand_qkv(5, n, n, d, d_v);
        let sp = BlockSparse {
            block: 8,
            local_blocks: 1,
            stride: 2,
        };
        // By hand: J visible to I iff J == I or J % 2 == 1 (summary blocks 1 and 3).
        const PATTERN: [&str; 5] = ["11010", "01010", "01110", "01010", "01011"];
        let mut rng = crate::rng::Rng::new(8);
        let mut mask: Vec<bool> = (0..n * n).map(|_| rng.chance(0.6)).collect();
        for j in 0..n {
            // Query 3 sees nothing.
            mask[3 * n + j] = false;
            // Query 9 (block 1) only allows keys in block 0, which it cannot see.
            mask[9 * n + j] = j < 8;
            // Query 20 (block 2) allows keys 27 (summary block 3) and 33 (block 4, not visible).
            mask[20 * n + j] = j == 27 || j == 33;
        }
        let mut out = vec![0.0; n * d_v];
        let inp = AttnInput::new(&q, &k, &v, n, n, d, d_v).with_extras(crate::attention::Extras {
            mask: Some(&mask),
            ..Default::default()
        });
        sp.forward(&inp, &mut out).unwrap();
        let both: Vec<bool> = (0..n * n)
            .map(|x| mask[x] && PATTERN[x / n / 8].as_bytes()[(x % n) / 8] == b'1')
            .collect();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n, n, d, d_v, Some(&both)),
            1e-5,
        );
        assert!(out[3 * d_v..4 * d_v].iter().all(|&x| x == 0.0));
        assert!(out[9 * d_v..10 * d_v].iter().all(|&x| x == 0.0));
        assert_close(&out[20 * d_v..21 * d_v], &v[27 * d_v..28 * d_v], 1e-6);
    }
}
