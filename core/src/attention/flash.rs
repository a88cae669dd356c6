//! Flash attention: exact scaled dot-product attention with a tiled, online softmax.
//!
//! Keys and values are visited in blocks of [`BLOCK_K`] rows and queries in blocks of
//! [`BLOCK_Q`] rows. For every query the kernel keeps a running maximum `m`, a running
//! normaliser `l` and an unnormalised output accumulator (held in the caller's output
//! row); a new key block rescales them by `exp(m_old − m_new)` (Milakov & Gimelshein's
//! online softmax, as used by FlashAttention). The `[n_q × n_k]` score matrix is never
//! built: the extra memory is one transposed key block, one score tile and two
//! per-query statistics: `4 · (d · BLOCK_K + BLOCK_Q · BLOCK_K)` heap bytes
//! ([`flash_scratch_bytes`]; 24 576 for d = 64) plus `8 · BLOCK_Q` bytes of stack,
//! independent of `n_q` and `n_k`.
//!
//! Inner loops are written over fixed-width register tiles so they auto-vectorize:
//! scores in 4 × 8 (query × key) tiles over a transposed key block, the block max and
//! sum in 8 independent lanes, `exp` as a branch-free polynomial ([`exp_neg`], relative
//! error < 3e-7, no float→int conversion), and `P·V` two query rows per pass over the
//! value rows in 16-wide register accumulators. On x86-64 the same source is also compiled with AVX2 enabled and
//! picked at run time when the CPU has it (no FMA contraction, so both paths round
//! alike). Reads `extras.mask` when present.

use super::{Attention, AttnError, AttnInput};

/// Queries per block.
pub const BLOCK_Q: usize = 32;
/// Keys per block.
pub const BLOCK_K: usize = 64;
/// Register tile: queries × keys computed together in the score micro-kernel.
const TQ: usize = 4;
const TK: usize = 8;

/// Tiled online-softmax attention.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flash;

/// Heap bytes one [`Flash::forward`] call allocates for head dimension `d`
/// (the running max and normaliser, `2 · BLOCK_Q` floats, live on the stack).
pub fn flash_scratch_bytes(d: usize) -> usize {
    (d * BLOCK_K + BLOCK_Q * BLOCK_K) * std::mem::size_of::<f32>()
}

/// `exp(x)` for `x ≤ 0` (inputs below −87.3 return 0), branch-free so loops over it vectorize.
#[inline(always)]
pub fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting rounds to nearest
    let xc = if x > -87.3 { x } else { -87.3 };
    // t's low mantissa bits hold round(xc·log2 e) as an integer: no float→int conversion.
    let t = xc * LOG2E + MAGIC;
    let n_int = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let n = t - MAGIC;
    let r = xc - n * LN2_HI - n * LN2_LO;
    // e^r on |r| ≤ ln2/2, Taylor to degree 6 (truncation error < 1.2e-7 relative).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n_int + 127) << 23) as u32);
    let y = p * scale;
    if x < -87.3 {
        0.0
    } else {
        y
    }
}

impl Attention for Flash {
    fn name(&self) -> &'static str {
        "flash"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        flash_kernel(inp, out);
        Ok(())
    }
}

/// Runs the kernel, compiled for AVX2 when the CPU has it (runtime check), else for the
/// baseline target. Both are the same source; only the vector width differs.
pub(crate) fn flash_kernel(inp: &AttnInput, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { flash_avx2(inp, out) };
            return;
        }
    }
    flash_body(inp, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn flash_avx2(inp: &AttnInput, out: &mut [f32]) {
    flash_body(inp, out)
}

#[inline(always)]
fn flash_body(inp: &AttnInput, out: &mut [f32]) {
    let (n_q, n_k, d, d_v) = (inp.n_q, inp.n_k, inp.d, inp.d_v);
    let scale = 1.0 / (d as f32).sqrt();
    let mask = inp.extras.mask;
    // Scratch: transposed key block [d × BLOCK_K], score tile [BLOCK_Q × BLOCK_K], m and l.
    let mut kt = vec![0.0f32; d * BLOCK_K];
    let mut s = vec![0.0f32; BLOCK_Q * BLOCK_K];
    let mut m = [f32::NEG_INFINITY; BLOCK_Q];
    let mut l = [0.0f32; BLOCK_Q];
    // Scaled query block copy is avoided: the scale is folded into the scores.
    for q0 in (0..n_q).step_by(BLOCK_Q) {
        let bq = BLOCK_Q.min(n_q - q0);
        m[..bq].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        l[..bq].iter_mut().for_each(|x| *x = 0.0);
        out[q0 * d_v..(q0 + bq) * d_v]
            .iter_mut()
            .for_each(|x| *x = 0.0);
        for k0 in (0..n_k).step_by(BLOCK_K) {
            let bk = BLOCK_K.min(n_k - k0);
            // Transpose the key block so the score loop runs along keys (contiguous).
            for j in 0..bk {
                let kj = &inp.k[(k0 + j) * d..(k0 + j + 1) * d];
                for (t, &x) in kj.iter().enumerate() {
                    kt[t * BLOCK_K + j] = x;
                }
            }
            for j in bk..BLOCK_K {
                for t in 0..d {
                    kt[t * BLOCK_K + j] = 0.0;
                }
            }
            scores_tile(&inp.q[q0 * d..], d, bq, &kt, &mut s, scale);
            for r in 0..bq {
                let i = q0 + r;
                let row = &mut s[r * BLOCK_K..r * BLOCK_K + bk];
                if let Some(mk) = mask {
                    let mrow = &mk[i * n_k + k0..i * n_k + k0 + bk];
                    for (x, &ok) in row.iter_mut().zip(mrow) {
                        if !ok {
                            *x = f32::NEG_INFINITY;
                        }
                    }
                }
                let bmax = max_lanes(row);
                if bmax == f32::NEG_INFINITY {
                    row.iter_mut().for_each(|x| *x = 0.0); // nothing visible: adds nothing below
                    continue;
                }
                let m_new = m[r].max(bmax);
                // Two passes so each loop vectorizes: exp has no loop-carried dependency,
                // the sum runs in 8 independent lanes.
                for x in row.iter_mut() {
                    *x = exp_neg(*x - m_new);
                }
                let psum = sum_lanes(row);
                let o = &mut out[i * d_v..(i + 1) * d_v];
                if m[r] != f32::NEG_INFINITY && m[r] != m_new {
                    let alpha = exp_neg(m[r] - m_new);
                    l[r] *= alpha;
                    o.iter_mut().for_each(|x| *x *= alpha);
                }
                m[r] = m_new;
                l[r] += psum;
            }
            // o_r += Σ_j p_rj v_j, two query rows per pass so each loaded value row serves both.
            let vb = &inp.v[k0 * d_v..(k0 + bk) * d_v];
            let mut r = 0;
            while r + 1 < bq {
                let (i0, i1) = (q0 + r, q0 + r + 1);
                let (lo, hi) = out.split_at_mut(i1 * d_v);
                accumulate_pv2(
                    &s[r * BLOCK_K..r * BLOCK_K + bk],
                    &s[(r + 1) * BLOCK_K..(r + 1) * BLOCK_K + bk],
                    vb,
                    d_v,
                    &mut lo[i0 * d_v..],
                    &mut hi[..d_v],
                );
                r += 2;
            }
            if r < bq {
                let i = q0 + r;
                accumulate_pv(
                    &s[r * BLOCK_K..r * BLOCK_K + bk],
                    vb,
                    d_v,
                    &mut out[i * d_v..(i + 1) * d_v],
                );
            }
        }
        for r in 0..bq {
            let i = q0 + r;
            let o = &mut out[i * d_v..(i + 1) * d_v];
            if l[r] > 0.0 {
                let inv = 1.0 / l[r];
                o.iter_mut().for_each(|x| *x *= inv);
            }
        }
    }
}

/// Maximum of `xs` (−inf for an empty or all −inf slice), reduced in 8 lanes.
#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in acc.iter().chain(tail) {
        m = if x > m { x } else { m };
    }
    m
}

/// Sum of `xs`, reduced in 8 lanes.
#[inline(always)]
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    let s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    s + tail.iter().sum::<f32>()
}

/// `s[r][j] = scale · q_r · k_j` for a query block against a transposed key block,
/// computed in `TQ × TK` register tiles.
#[inline(always)]
fn scores_tile(q: &[f32], d: usize, bq: usize, kt: &[f32], s: &mut [f32], scale: f32) {
    let mut r0 = 0;
    while r0 < bq {
        let tq = TQ.min(bq - r0);
        for j0 in (0..BLOCK_K).step_by(TK) {
            let mut acc = [[0.0f32; TK]; TQ];
            if tq == TQ {
                for t in 0..d {
                    let kr: &[f32; TK] = kt[t * BLOCK_K + j0..t * BLOCK_K + j0 + TK]
                        .try_into()
                        .unwrap();
                    for (a, accr) in acc.iter_mut().enumerate() {
                        let qv = q[(r0 + a) * d + t];
                        for c in 0..TK {
                            accr[c] += qv * kr[c];
                        }
                    }
                }
            } else {
                for t in 0..d {
                    let kr = &kt[t * BLOCK_K + j0..t * BLOCK_K + j0 + TK];
                    for (a, accr) in acc.iter_mut().enumerate().take(tq) {
                        let qv = q[(r0 + a) * d + t];
                        for c in 0..TK {
                            accr[c] += qv * kr[c];
                        }
                    }
                }
            }
            for (a, accr) in acc.iter().enumerate().take(tq) {
                let dst = &mut s[(r0 + a) * BLOCK_K + j0..(r0 + a) * BLOCK_K + j0 + TK];
                for c in 0..TK {
                    dst[c] = accr[c] * scale;
                }
            }
        }
        r0 += tq;
    }
}

/// `o0 += Σ_j p0_j v_j` and `o1 += Σ_j p1_j v_j` in one walk over the value rows.
#[inline(always)]
fn accumulate_pv2(p0: &[f32], p1: &[f32], v: &[f32], d_v: usize, o0: &mut [f32], o1: &mut [f32]) {
    const W: usize = 16;
    let full = d_v / W * W;
    for c0 in (0..full).step_by(W) {
        let mut a0: [f32; W] = o0[c0..c0 + W].try_into().unwrap();
        let mut a1: [f32; W] = o1[c0..c0 + W].try_into().unwrap();
        for (j, (&x0, &x1)) in p0.iter().zip(p1).enumerate() {
            let vr: &[f32; W] = v[j * d_v + c0..j * d_v + c0 + W].try_into().unwrap();
            for c in 0..W {
                a0[c] += x0 * vr[c];
                a1[c] += x1 * vr[c];
            }
        }
        o0[c0..c0 + W].copy_from_slice(&a0);
        o1[c0..c0 + W].copy_from_slice(&a1);
    }
    for c in full..d_v {
        let (mut a0, mut a1) = (o0[c], o1[c]);
        for (j, (&x0, &x1)) in p0.iter().zip(p1).enumerate() {
            a0 += x0 * v[j * d_v + c];
            a1 += x1 * v[j * d_v + c];
        }
        o0[c] = a0;
        o1[c] = a1;
    }
}

/// `o += Σ_j p_j v_j`, walking `d_v` in 16-wide chunks held in registers across keys.
#[inline(always)]
fn accumulate_pv(p: &[f32], v: &[f32], d_v: usize, o: &mut [f32]) {
    const W: usize = 16;
    let full = d_v / W * W;
    for c0 in (0..full).step_by(W) {
        let mut acc: [f32; W] = o[c0..c0 + W].try_into().unwrap();
        for (j, &pj) in p.iter().enumerate() {
            let vr: &[f32; W] = v[j * d_v + c0..j * d_v + c0 + W].try_into().unwrap();
            for c in 0..W {
                acc[c] += pj * vr[c];
            }
        }
        o[c0..c0 + W].copy_from_slice(&acc);
    }
    for c in full..d_v {
        let mut a = o[c];
        for (j, &pj) in p.iter().enumerate() {
            a += pj * v[j * d_v + c];
        }
        o[c] = a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::dot_product::DotProduct;
    use crate::attention::testutil::*;
    use crate::attention::Extras;

    #[test]
    fn exp_neg_is_accurate() {
        let mut x = 0.0f32;
        while x > -87.0 {
            let (a, b) = (exp_neg(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b + 1e-38, "x={x}: {a} vs {b}");
            x -= 0.0137;
        }
        assert_eq!(exp_neg(-100.0), 0.0);
        assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn equals_naive_dot_product_within_1e5_on_ragged_sizes() {
        // Sizes that are not multiples of the block or tile sizes exercise every edge path.
        for (seed, n_q, n_k, d, d_v) in [
            (1, 70, 130, 64, 64),
            (2, 3, 5, 7, 3),
            (3, 33, 65, 16, 17),
            (4, 1, 200, 8, 40),
        ] {
            let (q, k, v) = rand_qkv(seed, n_q, n_k, d, d_v);
            let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
            let (mut a, mut b) = (vec![0.0; n_q * d_v], vec![0.0; n_q * d_v]);
            Flash.forward(&inp, &mut a).unwrap();
            DotProduct.forward(&inp, &mut b).unwrap();
            let diff = max_abs_diff(&a, &b);
            assert!(diff < 1e-5, "n_q={n_q} n_k={n_k} d={d}: max diff {diff}");
            // The baseline (non-AVX2) build of the kernel agrees too.
            let mut c = vec![0.0; n_q * d_v];
            flash_body(&inp, &mut c);
            assert!(max_abs_diff(&c, &b) < 1e-5);
        }
    }

    #[test]
    fn large_scores_do_not_overflow_thanks_to_online_rescaling() {
        // Scores up to ~±400 would overflow a plain exp; the running maximum keeps it exact.
        let (n_q, n_k, d, d_v) = (9, 150, 4, 2);
        let (mut q, k, v) = rand_qkv(5, n_q, n_k, d, d_v);
        q.iter_mut().for_each(|x| *x *= 100.0);
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v);
        let mut a = vec![0.0; n_q * d_v];
        Flash.forward(&inp, &mut a).unwrap();
        assert_close(
            &a,
            &reference_sdpa_f64(&q, &k, &v, n_q, n_k, d, d_v, None),
            1e-5,
        );
    }

    #[test]
    fn masked_blocks_including_fully_masked_rows_match_reference() {
        let (n_q, n_k, d, d_v) = (40, 150, 8, 4);
        let (q, k, v) = rand_qkv(6, n_q, n_k, d, d_v);
        let mut rng = crate::rng::Rng::new(9);
        let mut mask: Vec<bool> = (0..n_q * n_k).map(|_| rng.chance(0.3)).collect();
        for j in 0..n_k {
            mask[5 * n_k + j] = false; // row 5: nothing visible
            mask[6 * n_k + j] = j >= 140; // row 6: only the last (partial) block
        }
        let inp = AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(Extras {
            mask: Some(&mask),
            ..Default::default()
        });
        let mut a = vec![0.0; n_q * d_v];
        Flash.forward(&inp, &mut a).unwrap();
        assert_close(
            &a,
            &reference_sdpa_f64(&q, &k, &v, n_q, n_k, d, d_v, Some(&mask)),
            1e-5,
        );
        assert!(a[5 * d_v..6 * d_v].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn scratch_is_independent_of_sequence_length() {
        // Property: flash's extra memory is O(block); the naive kernel's grows with n_q·n_k.
        let small = flash_scratch_bytes(64);
        assert!(small < 32 * 1024, "{small}");
        assert_eq!(
            crate::attention::dot_product::naive_scratch_bytes(4096, 4096),
            64 << 20
        );
    }
}
