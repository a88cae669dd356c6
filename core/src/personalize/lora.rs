//! LoRA algebra: `W' q = W q + (α/r)·B_g (A_g q) + (α/r)·B_u (A_u q)`.
//!
//! Layouts (row-major, flat `Vec<f32>`): `A` is r × d (row k = d values), the
//! base `W` is d × d. `B` (d × r) is held *transposed*, as `Bᵀ` (r × d, row k =
//! column k of B), so that `B u`, `Bᵀ δ` and the B gradient are all length-d
//! vector operations; public APIs and the federated update use B (d × r). No
//! d × d product is ever formed: every application goes through the
//! r-dimensional bottleneck (`4·r·d` multiply-adds for both tiers).
//!
//! The learning objective is weighted pairwise BPR over precomputed item
//! differences `Δe = e⁺ − e⁻`:
//! `L = Σ_p w_p · softplus(−x_p)`, `x_p = ⟨W' q_p, Δe_p⟩`, `Σ w_p = 1`.
//! With `c = α/r`, `u = A_u q` and `δ_q = Σ_{p∈q} (−w_p σ(−x_p)) Δe_p`:
//! `∂L/∂B_u = c Σ_q δ_q uᵀ` and `∂L/∂A_u = c Σ_q (B_uᵀ δ_q) qᵀ`.

use super::{check_finite, check_len, PersonalizeConfig, PersonalizeError};

/// ⟨a, b⟩ with eight independent accumulators (vectorizes without fast-math).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// y += s · x
#[inline]
pub(crate) fn axpy(s: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += s * xi;
    }
}

/// `u = A q` for A (r × d).
#[inline]
pub(crate) fn a_times(a: &[f32], d: usize, q: &[f32], u: &mut [f32]) {
    for (k, uk) in u.iter_mut().enumerate() {
        *uk = dot(&a[k * d..(k + 1) * d], q);
    }
}

/// `out += s · B u`, given `Bᵀ` (r × d).
#[inline]
pub(crate) fn add_b_times(bt: &[f32], d: usize, s: f32, u: &[f32], out: &mut [f32]) {
    for (k, &uk) in u.iter().enumerate() {
        axpy(s * uk, &bt[k * d..(k + 1) * d], out);
    }
}

/// `v = Bᵀ δ`, given `Bᵀ` (r × d).
#[inline]
pub(crate) fn bt_times(bt: &[f32], d: usize, delta: &[f32], v: &mut [f32]) {
    for (k, vk) in v.iter_mut().enumerate() {
        *vk = dot(&bt[k * d..(k + 1) * d], delta);
    }
}

/// Transpose a rows × cols row-major matrix.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

/// Numerically stable `ln(1 + e^z)`.
#[inline]
pub(crate) fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Logistic σ(z).
#[inline]
pub(crate) fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// A validated dense d × d matrix (row-major, finite); build it with
/// [`BaseProjection::dense`].
#[derive(Clone, Debug, PartialEq)]
pub struct DenseMatrix {
    d: usize,
    w: Vec<f32>,
}

impl DenseMatrix {
    pub fn d(&self) -> usize {
        self.d
    }
    /// Row-major values.
    pub fn values(&self) -> &[f32] {
        &self.w
    }
}

/// The frozen base projection W that maps a query/profile embedding into item space.
#[derive(Clone, Debug, PartialEq)]
pub enum BaseProjection {
    /// Queries and items share one space (e.g. MiniLM for both): `W = I`.
    Identity { d: usize },
    /// A learned dense d × d matrix.
    Dense(DenseMatrix),
}

impl BaseProjection {
    pub fn identity(d: usize) -> Self {
        BaseProjection::Identity { d }
    }

    /// A dense base; `w` is d × d row-major and must be finite.
    pub fn dense(d: usize, w: Vec<f32>) -> Result<Self, PersonalizeError> {
        check_len("base W", d * d, w.len())?;
        check_finite("base W", &w)?;
        Ok(BaseProjection::Dense(DenseMatrix { d, w }))
    }

    pub fn d(&self) -> usize {
        match self {
            BaseProjection::Identity { d } | BaseProjection::Dense(DenseMatrix { d, .. }) => *d,
        }
    }

    /// `out = W q` (dimensions checked by the caller).
    #[inline]
    pub(crate) fn apply(&self, q: &[f32], out: &mut [f32]) {
        match self {
            BaseProjection::Identity { .. } => out.copy_from_slice(q),
            BaseProjection::Dense(DenseMatrix { d, w }) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = dot(&w[i * d..(i + 1) * d], q);
                }
            }
        }
    }
}

/// The global (population) tier, shared by every viewer and frozen on device.
/// The sync server publishes new versions; see [`super::Adapter::apply_global`].
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalAdapter {
    pub(crate) version: u64,
    pub(crate) d: usize,
    pub(crate) rank: usize,
    pub(crate) alpha: f32,
    pub(crate) a: Vec<f32>,
    /// Bᵀ, r × d.
    pub(crate) bt: Vec<f32>,
}

impl GlobalAdapter {
    /// Version 0: no population update yet (ΔW_g = 0).
    pub fn zero(cfg: &PersonalizeConfig) -> Self {
        GlobalAdapter {
            version: 0,
            d: cfg.d,
            rank: cfg.rank,
            alpha: cfg.alpha,
            a: vec![0.0; cfg.rank * cfg.d],
            bt: vec![0.0; cfg.rank * cfg.d],
        }
    }

    /// A global tier from factors (`a`: r × d, `b`: d × r) with the config's shape.
    pub fn from_factors(
        version: u64,
        cfg: &PersonalizeConfig,
        a: Vec<f32>,
        b: Vec<f32>,
    ) -> Result<Self, PersonalizeError> {
        cfg.validate()?;
        check_len("global A", cfg.rank * cfg.d, a.len())?;
        check_len("global B", cfg.d * cfg.rank, b.len())?;
        check_finite("global A", &a)?;
        check_finite("global B", &b)?;
        Ok(GlobalAdapter {
            version,
            d: cfg.d,
            rank: cfg.rank,
            alpha: cfg.alpha,
            a,
            bt: transpose(&b, cfg.d, cfg.rank),
        })
    }

    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn d(&self) -> usize {
        self.d
    }
    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn alpha(&self) -> f32 {
        self.alpha
    }
    pub fn a(&self) -> &[f32] {
        &self.a
    }
    /// B (d × r, row-major; a transposed copy of the internal Bᵀ).
    pub fn b(&self) -> Vec<f32> {
        transpose(&self.bt, self.rank, self.d)
    }

    /// `out += (α/r) B_g A_g q`.
    pub(crate) fn add_to(&self, q: &[f32], out: &mut [f32]) {
        let mut u = [0f32; 16];
        let u = &mut u[..self.rank];
        a_times(&self.a, self.d, q, u);
        add_b_times(&self.bt, self.d, self.alpha / self.rank as f32, u, out);
    }
}

/// The pairs of one adaptation, grouped by query, with everything that does
/// not depend on the per-viewer factors precomputed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrainSet {
    pub d: usize,
    /// nq × d query embeddings.
    pub queries: Vec<f32>,
    /// `groups[g] = (start, end)` pair range of query g.
    pub groups: Vec<(usize, usize)>,
    /// np × d item differences e⁺ − e⁻.
    pub diffs: Vec<f32>,
    /// ⟨W q + global(q), Δe⟩ per pair (frozen part of the score difference).
    pub base_x: Vec<f32>,
    /// Pair weights, summing to 1.
    pub weights: Vec<f32>,
}

impl TrainSet {
    pub fn n_pairs(&self) -> usize {
        self.weights.len()
    }
}

/// Scratch buffers for [`bpr_loss_grad`] (allocation-free steps).
#[derive(Clone, Debug, Default)]
pub(crate) struct Scratch {
    z: Vec<f32>,
    delta: Vec<f32>,
}

/// Weighted BPR loss of the per-viewer factors (`a`: A, `b`: Bᵀ) on `set`;
/// writes exact gradients into `ga` (∂L/∂A, r × d) and `gb` (∂L/∂Bᵀ, r × d).
/// Returns the loss (f64).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bpr_loss_grad(
    a: &[f32],
    b: &[f32],
    r: usize,
    scale: f32,
    set: &TrainSet,
    ga: &mut [f32],
    gb: &mut [f32],
    scratch: &mut Scratch,
) -> f64 {
    let d = set.d;
    ga.iter_mut().for_each(|x| *x = 0.0);
    gb.iter_mut().for_each(|x| *x = 0.0);
    scratch.z.resize(d, 0.0);
    scratch.delta.resize(d, 0.0);
    let mut u = [0f32; 16];
    let mut v = [0f32; 16];
    let (u, v) = (&mut u[..r], &mut v[..r]);
    let mut loss = 0f64;
    for (g, &(s, e)) in set.groups.iter().enumerate() {
        let q = &set.queries[g * d..(g + 1) * d];
        a_times(a, d, q, u);
        scratch.z.iter_mut().for_each(|x| *x = 0.0);
        add_b_times(b, d, scale, u, &mut scratch.z);
        scratch.delta.iter_mut().for_each(|x| *x = 0.0);
        for p in s..e {
            let diff = &set.diffs[p * d..(p + 1) * d];
            let x = set.base_x[p] + dot(&scratch.z, diff);
            let w = set.weights[p];
            loss += w as f64 * softplus(-(x as f64));
            let dldx = -w * sigmoid(-x);
            axpy(dldx, diff, &mut scratch.delta);
        }
        // ∂L/∂Bᵀ += c u δᵀ
        for (k, &uk) in u.iter().enumerate() {
            axpy(scale * uk, &scratch.delta, &mut gb[k * d..(k + 1) * d]);
        }
        // ∂L/∂A += c (Bᵀ δ) qᵀ
        bt_times(b, d, &scratch.delta, v);
        for (k, &vk) in v.iter().enumerate() {
            axpy(scale * vk, q, &mut ga[k * d..(k + 1) * d]);
        }
    }
    loss
}

/// Fisher diagonal of the pairwise Bernoulli model `P(e⁺ ≻ e⁻) = σ(x_p)` at
/// (a, b), over the entries of A and B:
/// `F = Σ_p w_p σ(x_p) σ(−x_p) (∂x_p/∂θ)²` — the expectation of the squared
/// per-pair log-likelihood gradient `g²` under the model (the "true" Fisher;
/// unlike the squared mean gradient it does not vanish at the optimum, and it
/// saturates more slowly than the empirical `σ(−x)²` form). Uses the
/// outer-product form of each per-pair derivative:
/// `(∂x/∂B)²[i,k] = c² Δe_i² u_k²`, `(∂x/∂A)²[k,j] = c² (BᵀΔe)_k² q_j²`.
pub(crate) fn pair_fisher(
    a: &[f32],
    b: &[f32],
    r: usize,
    scale: f32,
    set: &TrainSet,
    fa: &mut [f32],
    fb: &mut [f32],
) {
    let d = set.d;
    fa.iter_mut().for_each(|x| *x = 0.0);
    fb.iter_mut().for_each(|x| *x = 0.0);
    let mut z = vec![0f32; d];
    let mut acc_b = vec![0f32; d];
    let mut u = [0f32; 16];
    let mut v = [0f32; 16];
    let mut acc_a = [0f32; 16];
    let (u, v, acc_a) = (&mut u[..r], &mut v[..r], &mut acc_a[..r]);
    let c2 = scale * scale;
    for (g, &(s, e)) in set.groups.iter().enumerate() {
        let q = &set.queries[g * d..(g + 1) * d];
        a_times(a, d, q, u);
        z.iter_mut().for_each(|x| *x = 0.0);
        add_b_times(b, d, scale, u, &mut z);
        acc_b.iter_mut().for_each(|x| *x = 0.0);
        acc_a.iter_mut().for_each(|x| *x = 0.0);
        for p in s..e {
            let diff = &set.diffs[p * d..(p + 1) * d];
            let x = set.base_x[p] + dot(&z, diff);
            let w = set.weights[p] * sigmoid(x) * sigmoid(-x);
            for (acc, &di) in acc_b.iter_mut().zip(diff) {
                *acc += w * di * di;
            }
            bt_times(b, d, diff, v);
            for (acc, &vk) in acc_a.iter_mut().zip(v.iter()) {
                *acc += w * vk * vk;
            }
        }
        for (k, &uk) in u.iter().enumerate() {
            axpy(c2 * uk * uk, &acc_b, &mut fb[k * d..(k + 1) * d]);
        }
        for (k, &ak) in acc_a.iter().enumerate() {
            for (j, &qj) in q.iter().enumerate() {
                fa[k * d + j] += c2 * ak * qj * qj;
            }
        }
    }
}

/// ‖c · B A‖_F without forming B A: ‖BA‖² = tr((BᵀB)(AAᵀ)), both r × r (`bt` = Bᵀ).
pub(crate) fn delta_frobenius(a: &[f32], bt: &[f32], d: usize, r: usize, scale: f32) -> f32 {
    let mut btb = [0f64; 256];
    let mut aat = [0f64; 256];
    for k in 0..r {
        for l in 0..r {
            btb[k * r + l] = dot(&bt[k * d..(k + 1) * d], &bt[l * d..(l + 1) * d]) as f64;
            aat[k * r + l] = dot(&a[k * d..(k + 1) * d], &a[l * d..(l + 1) * d]) as f64;
        }
    }
    let mut tr = 0f64;
    for k in 0..r {
        for l in 0..r {
            tr += btb[k * r + l] * aat[l * r + k];
        }
    }
    (scale as f64 * tr.max(0.0).sqrt()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn rand_vec(rng: &mut Rng, n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|_| rng.normal() * s).collect()
    }

    /// f64 reference: materialize ΔW = c·B·A and score pairs directly.
    fn reference_loss(a: &[f64], b: &[f64], r: usize, scale: f64, set: &TrainSet) -> f64 {
        let d = set.d;
        let mut dw = vec![0f64; d * d];
        for i in 0..d {
            for j in 0..d {
                let mut s = 0.0;
                for k in 0..r {
                    s += b[k * d + i] * a[k * d + j];
                }
                dw[i * d + j] = scale * s;
            }
        }
        let mut loss = 0.0;
        for (g, &(s, e)) in set.groups.iter().enumerate() {
            let q = &set.queries[g * d..(g + 1) * d];
            let y: Vec<f64> = (0..d)
                .map(|i| (0..d).map(|j| dw[i * d + j] * q[j] as f64).sum())
                .collect();
            for p in s..e {
                let diff = &set.diffs[p * d..(p + 1) * d];
                let x = set.base_x[p] as f64
                    + y.iter().zip(diff).map(|(a, b)| a * *b as f64).sum::<f64>();
                loss += set.weights[p] as f64 * softplus(-x);
            }
        }
        loss
    }

    pub(crate) fn random_set(rng: &mut Rng, d: usize, nq: usize, per: usize) -> TrainSet {
        let mut set = TrainSet {
            d,
            ..Default::default()
        };
        for g in 0..nq {
            set.queries.extend(rand_vec(rng, d, 0.4));
            set.groups.push((g * per, (g + 1) * per));
            for _ in 0..per {
                set.diffs.extend(rand_vec(rng, d, 0.5));
                set.base_x.push(rng.normal());
                set.weights.push(rng.uniform(0.2, 1.0));
            }
        }
        let t: f32 = set.weights.iter().sum();
        set.weights.iter_mut().for_each(|w| *w /= t);
        set
    }

    fn rel_err(a: f64, b: f64) -> f64 {
        (a - b).abs() / (a.abs() + b.abs()).max(1e-6)
    }

    #[test]
    fn gradients_of_a_and_b_match_finite_differences() {
        let mut rng = Rng::new(11);
        let (d, r, scale) = (12, 4, 1.5f32);
        let set = random_set(&mut rng, d, 3, 4);
        let a = rand_vec(&mut rng, r * d, 0.3);
        let b = rand_vec(&mut rng, d * r, 0.3);
        let (mut ga, mut gb) = (vec![0.0; r * d], vec![0.0; d * r]);
        let loss = bpr_loss_grad(
            &a,
            &b,
            r,
            scale,
            &set,
            &mut ga,
            &mut gb,
            &mut Scratch::default(),
        );
        let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        let b64: Vec<f64> = b.iter().map(|&x| x as f64).collect();
        let ref_loss = reference_loss(&a64, &b64, r, scale as f64, &set);
        assert!(rel_err(loss, ref_loss) < 1e-5, "{loss} vs {ref_loss}");
        let h = 1e-6;
        let mut worst = 0f64;
        for idx in 0..a.len() {
            let (mut p, mut m) = (a64.clone(), a64.clone());
            p[idx] += h;
            m[idx] -= h;
            let fd = (reference_loss(&p, &b64, r, scale as f64, &set)
                - reference_loss(&m, &b64, r, scale as f64, &set))
                / (2.0 * h);
            let e = rel_err(ga[idx] as f64, fd);
            if fd.abs() > 1e-5 {
                worst = worst.max(e);
            } else {
                assert!((ga[idx] as f64 - fd).abs() < 1e-5);
            }
        }
        for idx in 0..b.len() {
            let (mut p, mut m) = (b64.clone(), b64.clone());
            p[idx] += h;
            m[idx] -= h;
            let fd = (reference_loss(&a64, &p, r, scale as f64, &set)
                - reference_loss(&a64, &m, r, scale as f64, &set))
                / (2.0 * h);
            let e = rel_err(gb[idx] as f64, fd);
            if fd.abs() > 1e-5 {
                worst = worst.max(e);
            } else {
                assert!((gb[idx] as f64 - fd).abs() < 1e-5);
            }
        }
        assert!(worst < 1e-3, "worst relative gradient error {worst}");
    }

    #[test]
    fn at_lora_init_a_gradient_is_zero_and_b_gradient_is_not() {
        let mut rng = Rng::new(5);
        let (d, r) = (10, 4);
        let set = random_set(&mut rng, d, 2, 3);
        let a = rand_vec(&mut rng, r * d, 0.3);
        let b = vec![0.0; d * r];
        let (mut ga, mut gb) = (vec![0.0; r * d], vec![0.0; d * r]);
        bpr_loss_grad(
            &a,
            &b,
            r,
            2.0,
            &set,
            &mut ga,
            &mut gb,
            &mut Scratch::default(),
        );
        assert!(ga.iter().all(|&g| g == 0.0));
        assert!(gb.iter().any(|&g| g.abs() > 1e-4));
    }

    #[test]
    fn fisher_equals_expected_squared_per_pair_gradients() {
        let mut rng = Rng::new(8);
        let (d, r, scale) = (9, 4, 0.7f32);
        let set = random_set(&mut rng, d, 3, 3);
        let a = rand_vec(&mut rng, r * d, 0.3);
        let b = rand_vec(&mut rng, d * r, 0.3);
        let (mut fa, mut fb) = (vec![0.0; r * d], vec![0.0; d * r]);
        pair_fisher(&a, &b, r, scale, &set, &mut fa, &mut fb);
        // Brute force: one single-pair set per pair, weight 1, gradient
        // g = −σ(−x) ∂x/∂θ; the expected squared gradient under the model is
        // σ(x)σ(−x) (∂x/∂θ)² = g² · e^x.
        let (mut ea, mut eb) = (vec![0f64; r * d], vec![0f64; d * r]);
        for (g, &(s, e)) in set.groups.iter().enumerate() {
            for p in s..e {
                let one = TrainSet {
                    d,
                    queries: set.queries[g * d..(g + 1) * d].to_vec(),
                    groups: vec![(0, 1)],
                    diffs: set.diffs[p * d..(p + 1) * d].to_vec(),
                    base_x: vec![set.base_x[p]],
                    weights: vec![1.0],
                };
                let (mut ga, mut gb) = (vec![0.0; r * d], vec![0.0; d * r]);
                let loss = bpr_loss_grad(
                    &a,
                    &b,
                    r,
                    scale,
                    &one,
                    &mut ga,
                    &mut gb,
                    &mut Scratch::default(),
                );
                // loss = softplus(−x) ⇒ e^x = 1 / (e^loss − 1).
                let ex = 1.0 / loss.exp_m1();
                for (x, g) in ea.iter_mut().zip(&ga) {
                    *x += set.weights[p] as f64 * (*g as f64).powi(2) * ex;
                }
                for (x, g) in eb.iter_mut().zip(&gb) {
                    *x += set.weights[p] as f64 * (*g as f64).powi(2) * ex;
                }
            }
        }
        for (x, y) in fa.iter().zip(&ea).chain(fb.iter().zip(&eb)) {
            assert!(
                rel_err(*x as f64, *y) < 1e-4 || (*x as f64 - y).abs() < 1e-9,
                "{x} vs {y}"
            );
        }
        assert!(fa.iter().any(|&x| x > 0.0) && fb.iter().any(|&x| x > 0.0));
    }

    #[test]
    fn delta_norm_matches_materialized_product() {
        let mut rng = Rng::new(2);
        let (d, r) = (13, 5);
        let a = rand_vec(&mut rng, r * d, 1.0);
        let b = rand_vec(&mut rng, d * r, 1.0);
        let mut s = 0f64;
        for i in 0..d {
            for j in 0..d {
                let v: f64 = (0..r)
                    .map(|k| b[k * d + i] as f64 * a[k * d + j] as f64)
                    .sum();
                s += (0.5 * v).powi(2);
            }
        }
        let got = delta_frobenius(&a, &b, d, r, 0.5);
        assert!(
            rel_err(got as f64, s.sqrt()) < 1e-5,
            "{got} vs {}",
            s.sqrt()
        );
    }

    #[test]
    fn dense_base_is_a_matrix_vector_product() {
        let d = 11;
        let mut rng = Rng::new(4);
        let w = rand_vec(&mut rng, d * d, 1.0);
        let q = rand_vec(&mut rng, d, 1.0);
        let base = BaseProjection::dense(d, w.clone()).unwrap();
        let mut out = vec![0.0; d];
        base.apply(&q, &mut out);
        for i in 0..d {
            let e: f32 = (0..d).map(|j| w[i * d + j] * q[j]).sum();
            assert!((out[i] - e).abs() < 1e-4);
        }
        assert!(BaseProjection::dense(d, vec![0.0; d * d - 1]).is_err());
        let mut bad = w;
        bad[3] = f32::NAN;
        assert!(BaseProjection::dense(d, bad).is_err());
    }
}
