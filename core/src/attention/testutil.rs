//! Test helpers: random inputs, f64 references, comparisons.

use crate::rng::Rng;

pub fn rand_vec(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.normal() * scale).collect()
}

pub fn rand_qkv(
    seed: u64,
    n_q: usize,
    n_k: usize,
    d: usize,
    d_v: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    (
        rand_vec(&mut rng, n_q * d, 1.0),
        rand_vec(&mut rng, n_k * d, 1.0),
        rand_vec(&mut rng, n_k * d_v, 1.0),
    )
}

/// Weighted sum of values with weights computed in f64 from arbitrary scores (`None` = masked).
pub fn softmax_combine_f64(scores: &[Option<f64>], v: &[f32], d_v: usize) -> Vec<f32> {
    let m = scores
        .iter()
        .flatten()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let mut out = vec![0.0f64; d_v];
    if m == f64::NEG_INFINITY {
        return vec![0.0; d_v];
    }
    let z: f64 = scores.iter().flatten().map(|s| (s - m).exp()).sum();
    for (j, s) in scores.iter().enumerate() {
        if let Some(s) = s {
            let w = (s - m).exp() / z;
            for t in 0..d_v {
                out[t] += w * v[j * d_v + t] as f64;
            }
        }
    }
    out.into_iter().map(|x| x as f32).collect()
}

/// `softmax(QKᵀ/√d) V` in f64, straight from the definition.
#[allow(clippy::too_many_arguments)]
pub fn reference_sdpa_f64(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_q: usize,
    n_k: usize,
    d: usize,
    d_v: usize,
    mask: Option<&[bool]>,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(n_q * d_v);
    for i in 0..n_q {
        let scores: Vec<Option<f64>> = (0..n_k)
            .map(|j| {
                if mask.is_some_and(|m| !m[i * n_k + j]) {
                    return None;
                }
                let s: f64 = (0..d)
                    .map(|t| q[i * d + t] as f64 * k[j * d + t] as f64)
                    .sum();
                Some(s / (d as f64).sqrt())
            })
            .collect();
        out.extend(softmax_combine_f64(&scores, v, d_v));
    }
    out
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "index {i}: got {a}, want {b} (tol {tol})"
        );
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Central finite-difference check of `grad` against `loss(params)`.
#[allow(dead_code)]
pub fn check_grad(
    params: &mut [f32],
    grad: &[f32],
    loss: &mut dyn FnMut(&[f32]) -> f64,
    what: &str,
) {
    let eps = 1e-3f32;
    let mut worst = 0.0f64;
    for i in 0..params.len() {
        let orig = params[i];
        params[i] = orig + eps;
        let lp = loss(params);
        params[i] = orig - eps;
        let lm = loss(params);
        params[i] = orig;
        let num = (lp - lm) / (2.0 * eps as f64);
        let err = (num - grad[i] as f64).abs() / (1e-2 + num.abs().max((grad[i] as f64).abs()));
        worst = worst.max(err);
        assert!(
            err < 2e-2,
            "{what}[{i}]: analytic {} vs numeric {num}",
            grad[i]
        );
    }
    let _ = worst;
}
