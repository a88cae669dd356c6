//! Linear attention (Katharopoulos et al., 2020) with the feature map `φ(x) = elu(x) + 1`.
//!
//! `out_i = φ(q_i)ᵀ S / (φ(q_i) · z)` with the key summary `S = Σ_j φ(k_j) v_jᵀ` (`d × d_v`)
//! and `z = Σ_j φ(k_j)` (`d`). Keys enter only through this fixed-size [`LinearState`], so the
//! cost is `O((n_q + n_k) · d · d_v)` — linear in sequence length — and the state of two key
//! sets is the sum of their states. Non-causal; `extras` are not read.

use super::math::axpy;
use super::{check_finite, Attention, AttnError, AttnInput};

/// Linear (kernelized) attention.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearAttention;

/// `elu(x) + 1`: positive, so normalisers never vanish.
#[inline]
pub fn phi(x: f32) -> f32 {
    if x > 0.0 {
        x + 1.0
    } else {
        x.exp()
    }
}

/// The fixed-size summary of a key/value set.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearState {
    pub d: usize,
    pub d_v: usize,
    /// `Σ_j φ(k_j) v_jᵀ`, `[d × d_v]`.
    pub s: Vec<f32>,
    /// `Σ_j φ(k_j)`, `[d]`.
    pub z: Vec<f32>,
}

impl LinearState {
    /// Empty state.
    pub fn new(d: usize, d_v: usize) -> Self {
        LinearState {
            d,
            d_v,
            s: vec![0.0; d * d_v],
            z: vec![0.0; d],
        }
    }

    /// Adds `n` keys (`[n × d]`) and values (`[n × d_v]`); rejects bad shapes and NaN/inf
    /// without changing the state.
    pub fn absorb(&mut self, k: &[f32], v: &[f32]) -> Result<(), AttnError> {
        self.check_dims()?;
        if k.len() % self.d != 0 || k.len() / self.d * self.d_v != v.len() {
            return Err(AttnError::Shape {
                what: "values",
                expected: k.len() / self.d * self.d_v,
                got: v.len(),
            });
        }
        check_finite("keys", k)?;
        check_finite("values", v)?;
        self.absorb_raw(k, v);
        Ok(())
    }

    fn check_dims(&self) -> Result<(), AttnError> {
        if self.d == 0 || self.d_v == 0 {
            return Err(AttnError::ZeroDim { what: "d/d_v" });
        }
        if self.s.len() != self.d * self.d_v || self.z.len() != self.d {
            return Err(AttnError::Shape {
                what: "linear state",
                expected: self.d * self.d_v + self.d,
                got: self.s.len() + self.z.len(),
            });
        }
        Ok(())
    }

    fn absorb_raw(&mut self, k: &[f32], v: &[f32]) {
        let mut fk = vec![0.0f32; self.d];
        for (kj, vj) in k.chunks_exact(self.d).zip(v.chunks_exact(self.d_v)) {
            for (f, &x) in fk.iter_mut().zip(kj) {
                *f = phi(x);
            }
            for (t, &f) in fk.iter().enumerate() {
                self.z[t] += f;
                axpy(f, vj, &mut self.s[t * self.d_v..(t + 1) * self.d_v]);
            }
        }
    }

    /// The state of the union of two key sets (both must have the same shape).
    pub fn merge(&mut self, other: &LinearState) -> Result<(), AttnError> {
        self.check_dims()?;
        other.check_dims()?;
        if (self.d, self.d_v) != (other.d, other.d_v) {
            return Err(AttnError::ConfigMismatch {
                mechanism: "linear",
                what: "state width",
                expected: self.d * self.d_v,
                got: other.d * other.d_v,
            });
        }
        self.s.iter_mut().zip(&other.s).for_each(|(a, b)| *a += b);
        self.z.iter_mut().zip(&other.z).for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// Output rows for `n` queries (`[n × d]`) into `out` (`[n × d_v]`).
    pub fn query(&self, q: &[f32], out: &mut [f32]) -> Result<(), AttnError> {
        self.check_dims()?;
        if q.len() % self.d != 0 || q.len() / self.d * self.d_v != out.len() {
            return Err(AttnError::Shape {
                what: "output",
                expected: q.len() / self.d * self.d_v,
                got: out.len(),
            });
        }
        check_finite("queries", q)?;
        self.query_raw(q, out);
        Ok(())
    }

    fn query_raw(&self, q: &[f32], out: &mut [f32]) {
        let mut fq = vec![0.0f32; self.d];
        for (qi, o) in q.chunks_exact(self.d).zip(out.chunks_exact_mut(self.d_v)) {
            for (f, &x) in fq.iter_mut().zip(qi) {
                *f = phi(x);
            }
            let den: f32 = fq.iter().zip(&self.z).map(|(a, b)| a * b).sum();
            o.iter_mut().for_each(|x| *x = 0.0);
            for (t, &f) in fq.iter().enumerate() {
                axpy(f, &self.s[t * self.d_v..(t + 1) * self.d_v], o);
            }
            let inv = 1.0 / den;
            o.iter_mut().for_each(|x| *x *= inv);
        }
    }
}

impl Attention for LinearAttention {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn forward(&self, inp: &AttnInput, out: &mut [f32]) -> Result<(), AttnError> {
        inp.validate(out.len())?;
        let mut st = LinearState::new(inp.d, inp.d_v);
        st.absorb_raw(inp.k, inp.v);
        st.query_raw(inp.q, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::testutil::*;

    #[test]
    fn matches_explicit_quadratic_form() {
        // Reference: w_ij = φ(q_i)·φ(k_j) / Σ_j' φ(q_i)·φ(k_j'), computed pairwise in f64.
        let (n_q, n_k, d, d_v) = (6, 9, 5, 3);
        let (q, k, v) = rand_qkv(1, n_q, n_k, d, d_v);
        let mut out = vec![0.0; n_q * d_v];
        LinearAttention
            .forward(&AttnInput::new(&q, &k, &v, n_q, n_k, d, d_v), &mut out)
            .unwrap();
        let f = |x: f32| {
            if x > 0.0 {
                x as f64 + 1.0
            } else {
                (x as f64).exp()
            }
        };
        for i in 0..n_q {
            let w: Vec<f64> = (0..n_k)
                .map(|j| (0..d).map(|t| f(q[i * d + t]) * f(k[j * d + t])).sum())
                .collect();
            let z: f64 = w.iter().sum();
            for c in 0..d_v {
                let want: f64 = (0..n_k).map(|j| w[j] / z * v[j * d_v + c] as f64).sum();
                assert!((out[i * d_v + c] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn keys_enter_only_through_an_additive_fixed_size_state() {
        // Property behind the linear cost: the summary of all keys is the sum of the
        // summaries of any split, and its size does not depend on n_k.
        let (n_q, n_k, d, d_v) = (4, 50, 6, 2);
        let (q, k, v) = rand_qkv(2, n_q, n_k, d, d_v);
        let mut whole = LinearState::new(d, d_v);
        whole.absorb(&k, &v).unwrap();
        let mut a = LinearState::new(d, d_v);
        a.absorb(&k[..20 * d], &v[..20 * d_v]).unwrap();
        let mut b = LinearState::new(d, d_v);
        b.absorb(&k[20 * d..], &v[20 * d_v..]).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.s.len(), d * d_v);
        let (mut o1, mut o2) = (vec![0.0; n_q * d_v], vec![0.0; n_q * d_v]);
        whole.query(&q, &mut o1).unwrap();
        a.query(&q, &mut o2).unwrap();
        assert_close(&o1, &o2, 1e-5);
        // Bad shapes are errors and leave the state unchanged.
        let before = a.clone();
        assert!(a.absorb(&k[..d], &v[..d_v + 1]).is_err());
        assert!(a.merge(&LinearState::new(d + 1, d_v)).is_err());
        assert!(LinearState::new(0, 1).query(&[], &mut []).is_err());
        assert_eq!(a, before);
    }
}
