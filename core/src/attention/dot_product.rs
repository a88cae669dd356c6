//! Scaled dot-product attention, the textbook way: `softmax(Q Kᵀ / √d) V`.
//!
//! This is the naive reference that materializes the full `[n_q × n_k]` score matrix
//! (extra memory `4 · n_q · n_k` bytes). [`super::flash`] computes the same result in
//! O(block) extra memory. Reads `extras.mask` when present (fully masked rows give zeros).

use super::math::{axpy, softmax_in_place};
use super::{Attention, AttnError, AttnInput};

/// Naive scaled dot-product attention.
#[derive(Clone, Copy, Debug, Default)]
pub struct DotProduct;

/// Extra bytes one [`DotProduct::forward`] call allocates: the score matrix.
pub fn naive_scratch_bytes(n_q: usize, n_k: usize) -> usize {
    n_q * n_k * std::mem::size_of::<f32>()
}

impl Attention for DotProduct {
    fn name(&self) -> &'static str {
        "dot_product"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        naive_sdpa(inp, out);
        Ok(())
    }
}

/// The same materialising algorithm with the unrolled (auto-vectorized) dot product used
/// by the learnable mechanisms: a stronger baseline for the flash benchmark.
pub fn materialized_vectorized(inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
    inp.validate(out.len())?;
    let mut p = vec![0.0f32; inp.n_q * inp.n_k];
    super::math::sdpa_with_probs(
        inp.q,
        inp.k,
        inp.v,
        inp.n_q,
        inp.n_k,
        inp.d,
        inp.d_v,
        inp.extras.mask,
        &mut p,
        out,
    );
    Ok(())
}

/// The naive kernel on a validated input.
pub(crate) fn naive_sdpa(inp: &AttnInput, out: &mut [f32]) {
    let (n_q, n_k, d, d_v) = (inp.n_q, inp.n_k, inp.d, inp.d_v);
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0.0f32; n_q * n_k];
    for i in 0..n_q {
        let qi = &inp.q[i * d..(i + 1) * d];
        for j in 0..n_k {
            let allowed = inp.extras.mask.is_none_or(|m| m[i * n_k + j]);
            scores[i * n_k + j] = if allowed {
                let kj = &inp.k[j * d..(j + 1) * d];
                qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
            } else {
                f32::NEG_INFINITY
            };
        }
    }
    for i in 0..n_q {
        softmax_in_place(&mut scores[i * n_k..(i + 1) * n_k]);
    }
    for i in 0..n_q {
        let o = &mut out[i * d_v..(i + 1) * d_v];
        o.iter_mut().for_each(|x| *x = 0.0);
        for j in 0..n_k {
            let p = scores[i * n_k + j];
            if p != 0.0 {
                axpy(p, &inp.v[j * d_v..(j + 1) * d_v], o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;

    #[test]
    fn matches_the_defining_formula_in_f64() {
        let (n_q, n_k, d, d_v) = (5, 7, 6, 3);
        let (q, k, v) = rand_qkv(1, n_q, n_k, d, d_v);
        let mut out = vec![0.0; n_q * d_v];
        DotProduct
            .forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v), &mut out)
            .unwrap();
        let want = reference_sdpa_f64(&q, &k, &v, n_q, n_k, d, d_v, None);
        assert_close(&out, &want, 1e-5);
    }

    #[test]
    fn vectorized_materialised_variant_agrees() {
        let (q, k, v) = rand_qkv(4, 9, 13, 16, 5);
        let inp = AttnInput::new(&q, &k, &v, 9, 13, 16, 5);
        let mut out = vec![0.0; 45];
        materialized_vectorized(&inp, &mut out).unwrap();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, 9, 13, 16, 5, None),
            1e-5,
        );
        assert!(materialized_vectorized(&inp, &mut out[..3]).is_err());
    }

    #[test]
    fn one_hot_query_picks_the_matching_value() {
        // Property: with a huge score for one key, the output is that key's value.
        let d = 4;
        let q = [50.0, 0.0, 0.0, 0.0];
        let k = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0];
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [0.0; 2];
        DotProduct
            .forward(&AttnInput::new(&q, &k, &v, 1, 3, d, 2), &mut out)
            .unwrap();
        assert_close(&out, &[1.0, 2.0], 1e-6);
    }

    #[test]
    fn mask_excludes_keys_and_full_mask_gives_zeros() {
        let (n_q, n_k, d, d_v) = (3, 4, 4, 2);
        let (q, k, v) = rand_qkv(2, n_q, n_k, d, d_v);
        let mut mask = vec![true; n_q * n_k];
        mask[1] = false; // query 0 cannot see key 1
        for j in 0..n_k {
            mask[2 * n_k + j] = false; // query 2 sees nothing
        }
        let mut out = vec![0.0; n_q * d_v];
        let inp =
            AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v).with_extras(crate::attention::Extras {
                mask: Some(&mask),
                ..Default::default()
            });
        DotProduct.forward(&inp, &mut out).unwrap();
        assert_close(
            &out,
            &reference_sdpa_f64(&q, &k, &v, n_q, n_k, d, d_v, Some(&mask)),
            1e-5,
        );
        assert_eq!(&out[4..6], &[0.0, 0.0]);
    }

    #[test]
    fn bad_shapes_and_nan_are_errors_and_leave_output_untouched() {
        let (q, k, v) = rand_qkv(3, 2, 3, 4, 2);
        let mut out = vec![7.0; 4];
        let e = DotProduct
            .forward(&AttnInput::new(&q[..7], &k, &v, 2, 3, 4, 2), &mut out)
            .unwrap_err();
        assert!(
            matches!(
                e,
                AttnError::Shape {
                    what: "queries",
                    ..
                }
            ),
            "{e}"
        );
        let mut bad = k.clone();
        bad[5] = f32::NAN;
        let e = DotProduct
            .forward(&AttnInput::new(&q, &bad, &v, 2, 3, 4, 2), &mut out)
            .unwrap_err();
        assert_eq!(
            e,
            AttnError::NonFinite {
                what: "keys",
                index: 5
            }
        );
        let e = DotProduct
            .forward(&AttnInput::new(&q, &k, &v, 2, 3, 4, 2), &mut out[..3])
            .unwrap_err();
        assert!(matches!(e, AttnError::Shape { what: "output", .. }));
        let e = DotProduct
            .forward(
                &AttnInput::new(&q, &k, &v, usize::MAX / 2, 3, 4, 2),
                &mut out,
            )
            .unwrap_err();
        assert!(matches!(e, AttnError::Invalid { what: "shape", .. }), "{e}");
        let e = DotProduct
            .forward(&AttnInput::new(&[], &[], &[], 0, 0, 4, 2), &mut [])
            .unwrap_err();
        assert!(matches!(e, AttnError::ZeroDim { .. }));
        assert!(out.iter().all(|&x| x == 7.0));
    }
}
