//! Small dense kernels shared by the mechanisms (row-major, no allocation).
//! Crate-private: callers validate shapes first.

/// Dot product with four independent accumulators so the loop vectorizes
/// without reassociation by the compiler.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let chunks = n / 8;
    for c in 0..chunks {
        let (x, y) = (&a[c * 8..c * 8 + 8], &b[c * 8..c * 8 + 8]);
        for t in 0..8 {
            acc[t] += x[t] * y[t];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for t in chunks * 8..n {
        s += a[t] * b[t];
    }
    s
}

/// `y += a * x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// In-place numerically stable softmax over `xs`; entries equal to `-inf` get weight 0.
/// Returns `false` (and writes zeros) when every entry is `-inf`.
pub fn softmax_in_place(xs: &mut [f32]) -> bool {
    let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        xs.iter_mut().for_each(|x| *x = 0.0);
        return false;
    }
    let mut s = 0.0f32;
    for x in xs.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    let inv = 1.0 / s;
    xs.iter_mut().for_each(|x| *x *= inv);
    true
}

/// `out[m × n] = a[m × k] · b[k × n]`.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    out[..m * n].iter_mut().for_each(|x| *x = 0.0);
    for i in 0..m {
        let row = &mut out[i * n..(i + 1) * n];
        for t in 0..k {
            axpy(a[i * k + t], &b[t * n..(t + 1) * n], row);
        }
    }
}

/// `out[k × n] += aᵀ · b` for `a[m × k]`, `b[m × n]`.
pub fn matmul_at_b_acc(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    for i in 0..m {
        let brow = &b[i * n..(i + 1) * n];
        for t in 0..k {
            axpy(a[i * k + t], brow, &mut out[t * n..(t + 1) * n]);
        }
    }
}

/// Scaled dot-product attention that keeps the probabilities `p[n_q × n_k]`
/// (used by the learnable mechanisms, whose backward pass needs them).
/// `mask` (`[n_q × n_k]`, true = allowed) is optional; fully masked rows output zeros.
#[allow(clippy::too_many_arguments)]
pub fn sdpa_with_probs(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_q: usize,
    n_k: usize,
    d: usize,
    d_v: usize,
    mask: Option<&[bool]>,
    p: &mut [f32],
    out: &mut [f32],
) {
    let scale = 1.0 / (d as f32).sqrt();
    for i in 0..n_q {
        let row = &mut p[i * n_k..(i + 1) * n_k];
        let qi = &q[i * d..(i + 1) * d];
        for j in 0..n_k {
            row[j] = match mask {
                Some(m) if !m[i * n_k + j] => f32::NEG_INFINITY,
                _ => dot(qi, &k[j * d..(j + 1) * d]) * scale,
            };
        }
        softmax_in_place(row);
        let o = &mut out[i * d_v..(i + 1) * d_v];
        o.iter_mut().for_each(|x| *x = 0.0);
        for j in 0..n_k {
            if row[j] != 0.0 {
                axpy(row[j], &v[j * d_v..(j + 1) * d_v], o);
            }
        }
    }
}

/// Backward of [`sdpa_with_probs`]: given `d_out[n_q × d_v]` and the saved probabilities,
/// accumulates `dq[n_q × d]`, `dk[n_k × d]`, `dv[n_k × d_v]`. `scratch` needs `n_k` floats.
#[allow(clippy::too_many_arguments)]
pub fn sdpa_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &[f32],
    d_out: &[f32],
    n_q: usize,
    n_k: usize,
    d: usize,
    d_v: usize,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    scratch: &mut [f32],
) {
    let scale = 1.0 / (d as f32).sqrt();
    for i in 0..n_q {
        let pi = &p[i * n_k..(i + 1) * n_k];
        let go = &d_out[i * d_v..(i + 1) * d_v];
        // dV += pᵀ dO ; dP = dO Vᵀ
        let dp = &mut scratch[..n_k];
        for j in 0..n_k {
            axpy(pi[j], go, &mut dv[j * d_v..(j + 1) * d_v]);
            dp[j] = dot(go, &v[j * d_v..(j + 1) * d_v]);
        }
        let s: f32 = pi.iter().zip(dp.iter()).map(|(a, b)| a * b).sum();
        let qi = &q[i * d..(i + 1) * d];
        for j in 0..n_k {
            let ds = pi[j] * (dp[j] - s) * scale;
            if ds != 0.0 {
                axpy(ds, &k[j * d..(j + 1) * d], &mut dq[i * d..(i + 1) * d]);
                axpy(ds, qi, &mut dk[j * d..(j + 1) * d]);
            }
        }
    }
}
