//! Truncated SVD of a dense d × d matrix by randomized subspace iteration
//! (Halko, Martinsson & Tropp 2011): Q = orth(M Ω), then `power_iters`
//! rounds of Q ← orth(M Mᵀ Q), then the exact SVD of the small k × d matrix
//! Qᵀ M through the eigen-decomposition of (Qᵀ M)(Qᵀ M)ᵀ (cyclic Jacobi).
//! Used to re-factorize the aggregated d × d update into LoRA factors.

use crate::rng::Rng;

/// `M ≈ U diag(s) Vᵀ`, top `r` singular triplets. `u`: d × r (column j = u_j,
/// stored row-major d × r), `vt`: r × d.
pub struct Svd {
    pub u: Vec<f32>,
    pub s: Vec<f32>,
    pub vt: Vec<f32>,
}

/// y (rows × k) = M (rows × cols) · X (cols × k), all row-major, f64 accumulation.
fn mul(m: &[f32], rows: usize, cols: usize, x: &[f64], k: usize) -> Vec<f64> {
    let mut y = vec![0f64; rows * k];
    for i in 0..rows {
        let mrow = &m[i * cols..(i + 1) * cols];
        let yrow = &mut y[i * k..(i + 1) * k];
        for (j, &mij) in mrow.iter().enumerate() {
            if mij == 0.0 {
                continue;
            }
            let mij = mij as f64;
            let xrow = &x[j * k..(j + 1) * k];
            for (yv, &xv) in yrow.iter_mut().zip(xrow) {
                *yv += mij * xv;
            }
        }
    }
    y
}

/// y (cols × k) = Mᵀ (cols × rows) · X (rows × k).
fn mul_t(m: &[f32], rows: usize, cols: usize, x: &[f64], k: usize) -> Vec<f64> {
    let mut y = vec![0f64; cols * k];
    for i in 0..rows {
        let mrow = &m[i * cols..(i + 1) * cols];
        let xrow = &x[i * k..(i + 1) * k];
        for (j, &mij) in mrow.iter().enumerate() {
            if mij == 0.0 {
                continue;
            }
            let mij = mij as f64;
            let yrow = &mut y[j * k..(j + 1) * k];
            for (yv, &xv) in yrow.iter_mut().zip(xrow) {
                *yv += mij * xv;
            }
        }
    }
    y
}

/// Orthonormalize the k columns of the n × k row-major `x` in place (modified
/// Gram–Schmidt, applied twice for stability). Columns that vanish become 0.
pub(crate) fn orthonormalize(x: &mut [f64], n: usize, k: usize) {
    for j in 0..k {
        for _pass in 0..2 {
            for p in 0..j {
                let dot: f64 = (0..n).map(|i| x[i * k + j] * x[i * k + p]).sum();
                for i in 0..n {
                    x[i * k + j] -= dot * x[i * k + p];
                }
            }
        }
        let norm = (0..n).map(|i| x[i * k + j].powi(2)).sum::<f64>().sqrt();
        let inv = if norm > 1e-300 { 1.0 / norm } else { 0.0 };
        for i in 0..n {
            x[i * k + j] *= inv;
        }
    }
}

/// Eigen-decomposition of the symmetric k × k `a` by cyclic Jacobi rotations.
/// Returns (eigenvalues, eigenvectors as columns of a row-major k × k matrix).
pub(crate) fn sym_eigen(a: &[f64], k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; k * k];
    for i in 0..k {
        v[i * k + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..k)
            .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * k + j].powi(2))
            .sum();
        let diag: f64 = (0..k).map(|i| a[i * k + i].powi(2)).sum();
        if off <= 1e-30 * diag.max(1e-300) {
            break;
        }
        for p in 0..k {
            for q in p + 1..k {
                let apq = a[p * k + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * k + q] - a[p * k + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A ← Jᵀ A J on rows/columns p, q.
                for i in 0..k {
                    let (aip, aiq) = (a[i * k + p], a[i * k + q]);
                    a[i * k + p] = c * aip - s * aiq;
                    a[i * k + q] = s * aip + c * aiq;
                }
                for i in 0..k {
                    let (api, aqi) = (a[p * k + i], a[q * k + i]);
                    a[p * k + i] = c * api - s * aqi;
                    a[q * k + i] = s * api + c * aqi;
                }
                for i in 0..k {
                    let (vip, viq) = (v[i * k + p], v[i * k + q]);
                    v[i * k + p] = c * vip - s * viq;
                    v[i * k + q] = s * vip + c * viq;
                }
            }
        }
    }
    ((0..k).map(|i| a[i * k + i]).collect(), v)
}

/// Top-`r` singular triplets of the d × d matrix `m` (row-major).
/// `oversample` extra probe columns and `power_iters` subspace iterations
/// trade time for accuracy; the probe is drawn from `rng`.
pub fn truncated_svd(
    m: &[f32],
    d: usize,
    r: usize,
    oversample: usize,
    power_iters: usize,
    rng: &mut Rng,
) -> Svd {
    let k = (r + oversample).min(d).max(r.min(d));
    let mut q: Vec<f64> = (0..d * k).map(|_| rng.normal() as f64).collect();
    q = mul(m, d, d, &q, k);
    orthonormalize(&mut q, d, k);
    for _ in 0..power_iters {
        let mut z = mul_t(m, d, d, &q, k);
        orthonormalize(&mut z, d, k);
        q = mul(m, d, d, &z, k);
        orthonormalize(&mut q, d, k);
    }
    // Small = Qᵀ M (k × d): row c = (Mᵀ q_c)ᵀ.
    let mtq = mul_t(m, d, d, &q, k); // d × k
    let mut small = vec![0f64; k * d];
    for j in 0..d {
        for c in 0..k {
            small[c * d + j] = mtq[j * k + c];
        }
    }
    // Gram = Small Smallᵀ (k × k) = W Λ Wᵀ; σ = √λ; U = Q W; Vᵀ = Σ⁻¹ Wᵀ Small.
    let mut gram = vec![0f64; k * k];
    for a in 0..k {
        for b in a..k {
            let dot: f64 = (0..d).map(|j| small[a * d + j] * small[b * d + j]).sum();
            gram[a * k + b] = dot;
            gram[b * k + a] = dot;
        }
    }
    let (vals, w) = sym_eigen(&gram, k);
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&x, &y| vals[y].total_cmp(&vals[x]));
    let r_eff = r.min(k);
    let mut u = vec![0f32; d * r];
    let mut s = vec![0f32; r];
    let mut vt = vec![0f32; r * d];
    let top = vals[order[0]].max(0.0).sqrt();
    for (t, &c) in order.iter().take(r_eff).enumerate() {
        let sigma = vals[c].max(0.0).sqrt();
        if sigma <= 1e-12 * top.max(1e-300) {
            continue;
        }
        s[t] = sigma as f32;
        for i in 0..d {
            let x: f64 = (0..k).map(|a| q[i * k + a] * w[a * k + c]).sum();
            u[i * r + t] = x as f32;
        }
        for j in 0..d {
            let x: f64 = (0..k).map(|a| w[a * k + c] * small[a * d + j]).sum();
            vt[t * d + j] = (x / sigma) as f32;
        }
    }
    Svd { u, s, vt }
}

/// LoRA factors (A: r × d, B: d × r) with `scale · B A = U diag(s) Vᵀ`,
/// balanced so that both factors carry √σ.
pub fn to_factors(svd: &Svd, d: usize, r: usize, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let mut a = vec![0f32; r * d];
    let mut b = vec![0f32; d * r];
    let inv = 1.0 / scale.sqrt();
    for t in 0..r {
        let root = svd.s[t].sqrt() * inv;
        for j in 0..d {
            a[t * d + j] = svd.vt[t * d + j] * root;
        }
        for i in 0..d {
            b[i * r + t] = svd.u[i * r + t] * root;
        }
    }
    (a, b)
}

/// Dense `scale · B A` (d × d, row-major) from LoRA factors.
pub fn dense_product(a: &[f32], b: &[f32], d: usize, r: usize, scale: f32) -> Vec<f32> {
    let mut m = vec![0f32; d * d];
    for i in 0..d {
        let brow = &b[i * r..(i + 1) * r];
        let mrow = &mut m[i * d..(i + 1) * d];
        for (t, &bit) in brow.iter().enumerate() {
            if bit == 0.0 {
                continue;
            }
            let coef = scale * bit;
            for (mv, &av) in mrow.iter_mut().zip(&a[t * d..(t + 1) * d]) {
                *mv += coef * av;
            }
        }
    }
    m
}

/// Frobenius norm (f64 accumulation).
pub fn frobenius(m: &[f32]) -> f64 {
    m.iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        .sqrt()
}
