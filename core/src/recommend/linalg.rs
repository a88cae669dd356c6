//! Dense symmetric positive-definite inverse via Cholesky, in `f64`.
//!
//! `A = L·Lᵀ` (row-major lower triangle), `M = L⁻¹` by forward substitution row by
//! row, then `A⁻¹ = Mᵀ·M` accumulated as rank-one updates of M's rows. About n³/2
//! multiply-adds, all on contiguous rows.

use super::RecommendError;

/// Inverse of the symmetric positive-definite `n×n` row-major matrix `a` (only the
/// lower triangle is read). Fails on a size mismatch, non-finite entries, or a
/// non-positive pivot.
pub fn spd_inverse(a: &[f64], n: usize) -> Result<Vec<f64>, RecommendError> {
    if a.len() != n * n {
        return Err(RecommendError::InvalidConfig(format!(
            "matrix has {} entries, expected {n}×{n}",
            a.len()
        )));
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err(RecommendError::NonFinite);
    }
    // Cholesky: l[i][j] for j <= i.
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let dot: f64 = ri.iter().zip(rj).map(|(x, y)| x * y).sum();
            let v = a[i * n + j] - dot;
            if i == j {
                if v <= 0.0 || !v.is_finite() {
                    return Err(RecommendError::NotPositiveDefinite { pivot: i, value: v });
                }
                l[i * n + i] = v.sqrt();
            } else {
                l[i * n + j] = v / l[j * n + j];
            }
        }
    }
    // M = L⁻¹, lower triangular: row i = (e_i − Σ_{k<i} L[i][k]·M[k]) / L[i][i].
    let mut m = vec![0.0f64; n * n];
    let mut acc = vec![0.0f64; n];
    for i in 0..n {
        acc[..=i].iter_mut().for_each(|x| *x = 0.0);
        acc[i] = 1.0;
        for k in 0..i {
            let c = l[i * n + k];
            if c == 0.0 {
                continue;
            }
            let mk = &m[k * n..k * n + k + 1];
            for (x, &y) in acc[..=k].iter_mut().zip(mk) {
                *x -= c * y;
            }
        }
        let d = l[i * n + i];
        for j in 0..=i {
            m[i * n + j] = acc[j] / d;
        }
    }
    // A⁻¹ = Mᵀ M = Σ_k outer(M[k], M[k]) over the lower parts.
    let mut inv = vec![0.0f64; n * n];
    for k in 0..n {
        let mk = &m[k * n..k * n + k + 1];
        for i in 0..=k {
            let c = mk[i];
            if c == 0.0 {
                continue;
            }
            let row = &mut inv[i * n..i * n + i + 1];
            for (x, &y) in row.iter_mut().zip(&mk[..=i]) {
                *x += c * y;
            }
        }
    }
    for i in 0..n {
        for j in 0..i {
            inv[j * n + i] = inv[i * n + j];
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn inverse_of_2x2_matches_hand_value() {
        // [[4,2],[2,3]]⁻¹ = 1/8 · [[3,-2],[-2,4]]
        let inv = spd_inverse(&[4.0, 2.0, 2.0, 3.0], 2).unwrap();
        let want = [0.375, -0.25, -0.25, 0.5];
        for (a, b) in inv.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{inv:?}");
        }
    }

    #[test]
    fn random_spd_times_inverse_is_identity() {
        let n = 37;
        let mut r = Rng::new(11);
        let x: Vec<f64> = (0..n * n).map(|_| r.normal() as f64).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| x[k * n + i] * x[k * n + j]).sum::<f64>();
            }
            a[i * n + i] += 0.5;
        }
        let inv = spd_inverse(&a, n).unwrap();
        for i in 0..n {
            for j in 0..n {
                let v: f64 = (0..n).map(|k| a[i * n + k] * inv[k * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-8, "({i},{j}) = {v}");
            }
        }
    }

    #[test]
    fn rejects_indefinite_bad_size_and_nan() {
        assert!(matches!(
            spd_inverse(&[1.0, 2.0, 2.0, 1.0], 2),
            Err(RecommendError::NotPositiveDefinite { pivot: 1, .. })
        ));
        assert!(spd_inverse(&[1.0, 2.0, 3.0], 2).is_err());
        assert!(spd_inverse(&[1.0, f64::NAN, f64::NAN, 1.0], 2).is_err());
    }
}
