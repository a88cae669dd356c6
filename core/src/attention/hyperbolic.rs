//! Poincaré-ball operations with curvature `−c` (`c > 0`): the ball has radius `1/√c`.
//!
//! Formulas (Ganea, Bécigneul & Hofmann, 2018, "Hyperbolic Neural Networks"):
//! - Möbius addition `x ⊕ y = ((1 + 2c⟨x,y⟩ + c‖y‖²) x + (1 − c‖x‖²) y) / (1 + 2c⟨x,y⟩ + c²‖x‖²‖y‖²)`
//! - conformal factor `λ_x = 2 / (1 − c‖x‖²)`
//! - `exp_x(v) = x ⊕ tanh(√c λ_x ‖v‖ / 2) v / (√c ‖v‖)`
//! - `log_x(y) = 2/(√c λ_x) · artanh(√c ‖−x ⊕ y‖) · (−x ⊕ y)/‖−x ⊕ y‖`
//! - `d(x, y) = 2/√c · artanh(√c ‖−x ⊕ y‖)`
//!
//! Everything is computed in `f64` internally and results are projected back inside the
//! ball (at most `(1 − BOUNDARY_EPS)/√c` from the origin), which keeps points near the
//! boundary finite. The public functions validate lengths, finiteness, `c > 0` and ball
//! membership, and return [`AttnError`] instead of panicking.

use super::{check_finite, AttnError};

/// Relative margin kept from the boundary by [`project_to_ball`].
pub const BOUNDARY_EPS: f64 = 1e-5;

fn check_c(c: f32) -> Result<f64, AttnError> {
    if !(c.is_finite() && c > 0.0) {
        return Err(AttnError::Invalid {
            what: "curvature",
            msg: format!("c must be finite and > 0, got {c}"),
        });
    }
    Ok(c as f64)
}

fn check_same(what: &'static str, a: usize, b: usize) -> Result<(), AttnError> {
    if a != b {
        return Err(AttnError::Shape {
            what,
            expected: a,
            got: b,
        });
    }
    Ok(())
}

fn check_in_ball(what: &'static str, x: &[f32], c: f64) -> Result<(), AttnError> {
    check_finite(what, x)?;
    let n2 = norm2(x);
    if c * n2 >= 1.0 {
        return Err(AttnError::Invalid {
            what,
            msg: format!(
                "point has c·‖x‖² = {} ≥ 1, outside the Poincaré ball",
                c * n2
            ),
        });
    }
    Ok(())
}

pub(crate) fn norm2(x: &[f32]) -> f64 {
    x.iter().map(|&a| a as f64 * a as f64).sum()
}

fn dot64(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Largest allowed norm in a ball of curvature `c`.
pub(crate) fn max_norm(c: f64) -> f64 {
    (1.0 - BOUNDARY_EPS) / c.sqrt()
}

fn artanh(x: f64) -> f64 {
    let x = x.clamp(-1.0 + 1e-15, 1.0 - 1e-15);
    0.5 * ((1.0 + x) / (1.0 - x)).ln()
}

/// Rescales `out` in place so that it lies inside the ball.
pub(crate) fn project_in_place(out: &mut [f32], c: f64) {
    let n = norm2(out).sqrt();
    let mx = max_norm(c);
    if n > mx {
        let s = (mx / n) as f32;
        out.iter_mut().for_each(|x| *x *= s);
        // Rounding to f32 may leave the norm a hair above the bound; shrink once more.
        let n2 = norm2(out).sqrt();
        if n2 > mx {
            let s = (mx / n2 * (1.0 - 1e-7)) as f32;
            out.iter_mut().for_each(|x| *x *= s);
        }
    }
}

/// `x ⊕ y` into `out` (unchecked; f64 inside).
pub(crate) fn mobius_add_raw(x: &[f32], y: &[f32], c: f64, out: &mut [f32]) {
    let (xy, x2, y2) = (dot64(x, y), norm2(x), norm2(y));
    let a = 1.0 + 2.0 * c * xy + c * y2;
    let b = 1.0 - c * x2;
    let den = (1.0 + 2.0 * c * xy + c * c * x2 * y2).max(1e-15);
    for i in 0..out.len() {
        out[i] = ((a * x[i] as f64 + b * y[i] as f64) / den) as f32;
    }
    project_in_place(out, c);
}

/// `exp_0(v)` into `out` (unchecked).
pub(crate) fn exp0_raw(v: &[f32], c: f64, out: &mut [f32]) {
    let n = norm2(v).sqrt();
    let sc = c.sqrt();
    let s = if n < 1e-15 {
        1.0
    } else {
        (sc * n).tanh() / (sc * n)
    };
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (s * x as f64) as f32;
    }
    project_in_place(out, c);
}

/// Distance from precomputed squared norms and squared Euclidean distance:
/// `d = 1/√c · arcosh(1 + 2c‖x−y‖² / ((1 − c‖x‖²)(1 − c‖y‖²)))`.
#[inline]
pub(crate) fn dist_from_parts(x2: f64, y2: f64, diff2: f64, c: f64) -> f64 {
    let den = ((1.0 - c * x2) * (1.0 - c * y2)).max(1e-300);
    let z = 1.0 + 2.0 * c * diff2 / den;
    // arcosh(z) = ln(z + sqrt(z² − 1)), written to stay accurate for z close to 1.
    let t = z - 1.0;
    (t + (t * (t + 2.0)).sqrt()).ln_1p() / c.sqrt()
}

/// `r ⊗ x` (Möbius scalar multiplication) into `out` (unchecked).
pub(crate) fn mobius_scale_raw(r: f64, x: &[f32], c: f64, out: &mut [f32]) {
    let n = norm2(x).sqrt();
    let sc = c.sqrt();
    if n < 1e-15 {
        out.iter_mut().for_each(|o| *o = 0.0);
        return;
    }
    let s = (r * artanh(sc * n)).tanh() / (sc * n);
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (s * v as f64) as f32;
    }
    project_in_place(out, c);
}

/// Möbius addition `x ⊕ y`. Both points must lie inside the ball.
pub fn mobius_add(x: &[f32], y: &[f32], c: f32, out: &mut [f32]) -> Result<(), AttnError> {
    let c = check_c(c)?;
    check_same("y", x.len(), y.len())?;
    check_same("out", x.len(), out.len())?;
    check_in_ball("x", x, c)?;
    check_in_ball("y", y, c)?;
    mobius_add_raw(x, y, c, out);
    Ok(())
}

/// Exponential map at `x` of the tangent vector `v`.
pub fn exp_map(x: &[f32], v: &[f32], c: f32, out: &mut [f32]) -> Result<(), AttnError> {
    let c = check_c(c)?;
    check_same("v", x.len(), v.len())?;
    check_same("out", x.len(), out.len())?;
    check_in_ball("x", x, c)?;
    check_finite("v", v)?;
    let lam = 2.0 / (1.0 - c * norm2(x));
    let n = norm2(v).sqrt();
    let sc = c.sqrt();
    let s = if n < 1e-15 {
        0.0
    } else {
        (sc * lam * n / 2.0).tanh() / (sc * n)
    };
    let w: Vec<f32> = v.iter().map(|&a| (s * a as f64) as f32).collect();
    let mut w = w;
    project_in_place(&mut w, c);
    mobius_add_raw(x, &w, c, out);
    Ok(())
}

/// Logarithmic map at `x` of the point `y`: the tangent vector at `x` pointing to `y`.
pub fn log_map(x: &[f32], y: &[f32], c: f32, out: &mut [f32]) -> Result<(), AttnError> {
    let c = check_c(c)?;
    check_same("y", x.len(), y.len())?;
    check_same("out", x.len(), out.len())?;
    check_in_ball("x", x, c)?;
    check_in_ball("y", y, c)?;
    let neg_x: Vec<f32> = x.iter().map(|a| -a).collect();
    let mut u = vec![0.0f32; x.len()];
    mobius_add_raw(&neg_x, y, c, &mut u);
    let n = norm2(&u).sqrt();
    let lam = 2.0 / (1.0 - c * norm2(x));
    let sc = c.sqrt();
    let s = if n < 1e-15 {
        0.0
    } else {
        2.0 / (sc * lam) * artanh(sc * n) / n
    };
    for (o, &a) in out.iter_mut().zip(&u) {
        *o = (s * a as f64) as f32;
    }
    Ok(())
}

/// Geodesic distance `2/√c · artanh(√c ‖−x ⊕ y‖)`.
pub fn poincare_distance(x: &[f32], y: &[f32], c: f32) -> Result<f32, AttnError> {
    let c = check_c(c)?;
    check_same("y", x.len(), y.len())?;
    check_in_ball("x", x, c)?;
    check_in_ball("y", y, c)?;
    // −x ⊕ y without the final projection (the projection would clip large distances).
    let (xy, x2, y2) = (-dot64(x, y), norm2(x), norm2(y));
    let a = 1.0 + 2.0 * c * xy + c * y2;
    let b = 1.0 - c * x2;
    let den = 1.0 + 2.0 * c * xy + c * c * x2 * y2;
    let mut n2 = 0.0f64;
    for i in 0..x.len() {
        let u = (a * -(x[i] as f64) + b * y[i] as f64) / den;
        n2 += u * u;
    }
    Ok((2.0 / c.sqrt() * artanh(c.sqrt() * n2.sqrt())) as f32)
}

/// Pulls `x` inside the ball (norm at most `(1 − BOUNDARY_EPS)/√c`); points already inside are unchanged.
pub fn project_to_ball(x: &[f32], c: f32, out: &mut [f32]) -> Result<(), AttnError> {
    let c = check_c(c)?;
    check_same("out", x.len(), out.len())?;
    check_finite("x", x)?;
    out.copy_from_slice(x);
    project_in_place(out, c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A random point inside the ball, sometimes very close to the boundary.
    fn rand_point(rng: &mut Rng, d: usize, c: f32) -> Vec<f32> {
        let dir: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
        let n = norm2(&dir).sqrt() as f32;
        let r = if rng.chance(0.2) {
            1.0 - 10f32.powf(rng.uniform(-4.0, -2.0))
        } else {
            rng.uniform(0.0, 0.95)
        };
        dir.iter().map(|x| x / n * r / c.sqrt()).collect()
    }

    fn curvatures() -> [f32; 3] {
        [0.5, 1.0, 2.0]
    }

    #[test]
    fn log_of_exp_is_identity() {
        let mut rng = Rng::new(1);
        for _ in 0..200 {
            let c = *rng.pick(&curvatures());
            let d = 1 + rng.below(8);
            let x: Vec<f32> = rand_point(&mut rng, d, c).iter().map(|a| a * 0.7).collect();
            // Tangent vectors up to √c·λ_x·‖v‖/2 = 3 (tanh(3) = 0.995): beyond that the image
            // sits within f32 rounding of the boundary and cannot be inverted exactly.
            let lam = 2.0 / (1.0 - c * norm2(&x) as f32);
            let dir: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
            let dn = norm2(&dir).sqrt() as f32;
            let len = rng.uniform(0.0, 3.0) * 2.0 / (c.sqrt() * lam);
            let v: Vec<f32> = dir.iter().map(|a| a / dn * len).collect();
            let mut y = vec![0.0; d];
            exp_map(&x, &v, c, &mut y).unwrap();
            let mut back = vec![0.0; d];
            log_map(&x, &y, c, &mut back).unwrap();
            for (a, b) in back.iter().zip(&v) {
                assert!(
                    (a - b).abs() < 2e-3 * (1.0 + b.abs()),
                    "c={c} x={x:?} v={v:?} back={back:?}"
                );
            }
        }
    }

    #[test]
    fn distance_is_a_metric() {
        let mut rng = Rng::new(2);
        for _ in 0..300 {
            let c = *rng.pick(&curvatures());
            let d = 1 + rng.below(6);
            let (x, y, z) = (
                rand_point(&mut rng, d, c),
                rand_point(&mut rng, d, c),
                rand_point(&mut rng, d, c),
            );
            let dxy = poincare_distance(&x, &y, c).unwrap();
            let dyx = poincare_distance(&y, &x, c).unwrap();
            let dxz = poincare_distance(&x, &z, c).unwrap();
            let dzy = poincare_distance(&z, &y, c).unwrap();
            assert!(dxy.is_finite() && dxy >= 0.0);
            assert!(
                (dxy - dyx).abs() <= 1e-4 * (1.0 + dxy),
                "symmetry {dxy} {dyx}"
            );
            assert!(
                dxy <= dxz + dzy + 1e-3 * (1.0 + dxy),
                "triangle {dxy} > {dxz} + {dzy}"
            );
            assert!(poincare_distance(&x, &x, c).unwrap() < 1e-3);
        }
    }

    #[test]
    fn closed_form_distance_agrees_with_mobius_form() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let c = *rng.pick(&curvatures());
            let d = 1 + rng.below(6);
            let (x, y) = (
                rand_point(&mut rng, d, 1.2 * c),
                rand_point(&mut rng, d, 1.2 * c),
            );
            let diff2: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            let a = dist_from_parts(norm2(&x), norm2(&y), diff2, c as f64) as f32;
            let b = poincare_distance(&x, &y, c).unwrap();
            assert!((a - b).abs() < 1e-3 * (1.0 + b), "{a} vs {b}");
        }
    }

    #[test]
    fn distance_from_origin_matches_formula() {
        // d(0, x) = 2/√c · artanh(√c ‖x‖)
        let c = 1.0;
        let x = [0.6f32, 0.0];
        let want = 2.0 * 0.6f64.atanh();
        assert!((poincare_distance(&[0.0, 0.0], &x, c).unwrap() as f64 - want).abs() < 1e-5);
    }

    #[test]
    fn results_stay_inside_the_ball_even_near_the_boundary() {
        let mut rng = Rng::new(4);
        for _ in 0..300 {
            let c = *rng.pick(&curvatures());
            let d = 1 + rng.below(6);
            let (x, y) = (rand_point(&mut rng, d, c), rand_point(&mut rng, d, c));
            let v: Vec<f32> = (0..d).map(|_| rng.normal() * 50.0).collect();
            let mut out = vec![0.0; d];
            for op in 0..3 {
                match op {
                    0 => mobius_add(&x, &y, c, &mut out).unwrap(),
                    1 => exp_map(&x, &v, c, &mut out).unwrap(),
                    _ => project_to_ball(&v, c, &mut out).unwrap(),
                }
                assert!(out.iter().all(|a| a.is_finite()));
                assert!((c as f64) * norm2(&out) < 1.0, "op {op} left the ball");
                assert!(poincare_distance(&x, &out, c).unwrap().is_finite());
            }
        }
    }

    #[test]
    fn mobius_add_has_zero_identity_and_left_inverse() {
        let mut rng = Rng::new(5);
        for _ in 0..100 {
            let c = *rng.pick(&curvatures());
            let x = rand_point(&mut rng, 4, c * 1.1);
            let mut out = vec![0.0; 4];
            mobius_add(&x, &[0.0; 4], c, &mut out).unwrap();
            assert!(out.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5));
            let neg: Vec<f32> = x.iter().map(|a| -a).collect();
            mobius_add(&neg, &x, c, &mut out).unwrap();
            assert!(out.iter().all(|a| a.abs() < 1e-4), "{out:?}");
        }
    }

    #[test]
    fn project_leaves_inside_points_alone() {
        let x = [0.1f32, -0.2];
        let mut out = [0.0; 2];
        project_to_ball(&x, 1.0, &mut out).unwrap();
        assert_eq!(out, x);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let mut out = [0.0f32; 2];
        assert!(mobius_add(&[0.1, 0.1], &[2.0, 0.0], 1.0, &mut out).is_err());
        assert!(exp_map(&[0.1, 0.1], &[f32::NAN, 0.0], 1.0, &mut out).is_err());
        assert!(log_map(&[0.1], &[0.1, 0.1], 1.0, &mut out).is_err());
        assert!(poincare_distance(&[0.1, 0.1], &[0.1, 0.1], -1.0).is_err());
        assert!(project_to_ball(&[f32::INFINITY, 0.0], 1.0, &mut out).is_err());
    }
}
