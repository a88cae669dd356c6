//! FastGRNN (Kusupati et al., NeurIPS 2018) sequence classifier with a softmax head.
//!
//! Per step, with ONE shared pre-activation `a_t = W x_t + U h_{t-1}`:
//!
//! ```text
//! z_t  = σ(a_t + b_z)
//! h̃_t  = tanh(a_t + b_h)
//! h_t  = z_t ⊙ h_{t-1} + (ζ (1 − z_t) + ν) ⊙ h̃_t,   ζ = σ(ζ̂), ν = σ(ν̂)
//! ```
//!
//! `W` and `U` may be low-rank (`W = W₁W₂ᵀ`, `U = U₁U₂ᵀ`). The class scores are
//! `softmax(V h_T + c)`. Inputs are a sequence of feature vectors: either word
//! vectors (mean of hashed-bucket embedding rows, see [`super::tokenizer`]) or
//! fixed chunks of an external embedding (`T` steps of `d/T` features).
//!
//! The math is generic over [`Real`] so the gradient check can run in `f64`
//! while training and inference run in `f32`.

use core::fmt::Debug;
use core::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

use serde::{Deserialize, Serialize};

use super::tokenizer::{TokenizerConfig, Tokens};

/// Floating-point scalar used by the model math.
pub trait Real:
    Copy
    + Debug
    + Default
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
{
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn ln(self) -> Self;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
}

impl Real for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn exp(self) -> Self {
        f32::exp(self)
    }
    fn tanh(self) -> Self {
        f32::tanh(self)
    }
    fn ln(self) -> Self {
        f32::ln(self)
    }
}

impl Real for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn exp(self) -> Self {
        f64::exp(self)
    }
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    fn ln(self) -> Self {
        f64::ln(self)
    }
}

/// Logistic sigmoid, numerically safe for large |x|.
pub fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// What the model reads.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum InputKind {
    /// Text → hashed buckets → learned `n_buckets × emb_dim` table → one step per word.
    Text {
        tokenizer: TokenizerConfig,
        emb_dim: usize,
    },
    /// A dense vector of `steps · step_dim` floats, fed as `steps` chunks,
    /// each multiplied by `input_scale`.
    Features {
        steps: usize,
        step_dim: usize,
        input_scale: f32,
    },
}

/// Architecture of a FastGRNN classifier.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub input: InputKind,
    pub hidden: usize,
    pub n_classes: usize,
    /// `Some(r)`: `W = W₁W₂ᵀ` with rank `r`; `None`: dense `W`.
    pub w_rank: Option<usize>,
    /// `Some(r)`: `U = U₁U₂ᵀ` with rank `r`; `None`: dense `U`.
    pub u_rank: Option<usize>,
    /// Which hidden state(s) the softmax head reads.
    pub pool: Pool,
}

/// The head's input: the final state `h_T` (the paper's classifier) or the mean
/// of `h_1..h_T` (more robust to trailing filler words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pool {
    #[default]
    Last,
    Mean,
}

impl ModelConfig {
    /// Width of one input step.
    pub fn input_dim(&self) -> usize {
        match self.input {
            InputKind::Text { emb_dim, .. } => emb_dim,
            InputKind::Features { step_dim, .. } => step_dim,
        }
    }

    /// Check sizes; `Err` explains the problem.
    pub fn validate(&self) -> Result<(), String> {
        match self.input {
            InputKind::Text { tokenizer, emb_dim } => {
                tokenizer.validate()?;
                if emb_dim == 0 {
                    return Err("emb_dim must be > 0".into());
                }
            }
            InputKind::Features {
                steps,
                step_dim,
                input_scale,
            } => {
                if steps == 0 || step_dim == 0 {
                    return Err("steps and step_dim must be > 0".into());
                }
                if !input_scale.is_finite() || input_scale <= 0.0 {
                    return Err("input_scale must be finite and > 0".into());
                }
            }
        }
        // Size limits keep every tensor length far from usize overflow (wasm32).
        match self.input {
            InputKind::Text { tokenizer, emb_dim } => {
                if tokenizer.n_buckets > 1 << 22 || emb_dim > 1024 {
                    return Err("n_buckets <= 2^22 and emb_dim <= 1024 required".into());
                }
                // Each bound alone allows 2^32 embedding values, which wraps to 0 in a
                // 32-bit usize: bound the product too (2^28 values, 1 GiB of f32).
                let table = u64::from(tokenizer.n_buckets) * emb_dim as u64;
                if table > 1 << 28 {
                    return Err(format!(
                        "embedding table n_buckets {} × emb_dim {emb_dim} = {table} values > 2^28",
                        tokenizer.n_buckets
                    ));
                }
            }
            InputKind::Features {
                steps, step_dim, ..
            } => {
                if steps > 1 << 12 || step_dim > 1 << 12 {
                    return Err("steps and step_dim must be <= 4096".into());
                }
            }
        }
        if self.n_classes > 1024 {
            return Err(format!("n_classes {} > 1024", self.n_classes));
        }
        if self.w_rank.is_some_and(|r| r > 4096) || self.u_rank.is_some_and(|r| r > 4096) {
            return Err("ranks must be <= 4096".into());
        }
        if self.hidden == 0 || self.hidden > 4096 {
            return Err(format!("hidden {} out of range 1..=4096", self.hidden));
        }
        if self.n_classes < 2 {
            return Err("n_classes must be >= 2".into());
        }
        for (name, r) in [("w_rank", self.w_rank), ("u_rank", self.u_rank)] {
            if r == Some(0) {
                return Err(format!("{name} must be > 0 when given"));
            }
        }
        Ok(())
    }

    /// Expected length of every tensor, in [`TENSOR_NAMES`] order.
    pub fn tensor_lens(&self) -> [usize; N_TENSORS] {
        let d = self.input_dim();
        let h = self.hidden;
        let emb = match self.input {
            InputKind::Text { tokenizer, emb_dim } => tokenizer.n_buckets as usize * emb_dim,
            InputKind::Features { .. } => 0,
        };
        let (w, w1, w2) = match self.w_rank {
            None => (h * d, 0, 0),
            Some(r) => (0, h * r, d * r),
        };
        let (u, u1, u2) = match self.u_rank {
            None => (h * h, 0, 0),
            Some(r) => (0, h * r, h * r),
        };
        [
            emb,
            w,
            w1,
            w2,
            u,
            u1,
            u2,
            h,
            h,
            1,
            1,
            self.n_classes * h,
            self.n_classes,
        ]
    }
}

/// Number of parameter tensors (some may be empty for a given configuration).
pub const N_TENSORS: usize = 13;

/// Tensor names, in storage order.
pub const TENSOR_NAMES: [&str; N_TENSORS] = [
    "emb", "w", "w1", "w2", "u", "u1", "u2", "b_z", "b_h", "zeta_hat", "nu_hat", "head_w", "head_b",
];

/// All parameters (or gradients) of a FastGRNN classifier, flat and row-major.
/// `w` is `hidden × d`; `w1` `hidden × r`, `w2` `d × r`; `u`/`u1`/`u2` likewise;
/// `head_w` is `n_classes × hidden`; `emb` is `n_buckets × emb_dim`.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<T> {
    pub emb: Vec<T>,
    pub w: Vec<T>,
    pub w1: Vec<T>,
    pub w2: Vec<T>,
    pub u: Vec<T>,
    pub u1: Vec<T>,
    pub u2: Vec<T>,
    pub b_z: Vec<T>,
    pub b_h: Vec<T>,
    pub zeta_hat: Vec<T>,
    pub nu_hat: Vec<T>,
    pub head_w: Vec<T>,
    pub head_b: Vec<T>,
}

impl<T: Real> Params<T> {
    /// All-zero tensors of the sizes `cfg` needs (used for gradients).
    pub fn zeros(cfg: &ModelConfig) -> Self {
        let l = cfg.tensor_lens();
        let z = |n: usize| vec![T::zero(); n];
        Params {
            emb: z(l[0]),
            w: z(l[1]),
            w1: z(l[2]),
            w2: z(l[3]),
            u: z(l[4]),
            u1: z(l[5]),
            u2: z(l[6]),
            b_z: z(l[7]),
            b_h: z(l[8]),
            zeta_hat: z(l[9]),
            nu_hat: z(l[10]),
            head_w: z(l[11]),
            head_b: z(l[12]),
        }
    }

    /// Tensors in [`TENSOR_NAMES`] order.
    pub fn tensors(&self) -> [&Vec<T>; N_TENSORS] {
        [
            &self.emb,
            &self.w,
            &self.w1,
            &self.w2,
            &self.u,
            &self.u1,
            &self.u2,
            &self.b_z,
            &self.b_h,
            &self.zeta_hat,
            &self.nu_hat,
            &self.head_w,
            &self.head_b,
        ]
    }

    /// Mutable tensors in [`TENSOR_NAMES`] order.
    pub fn tensors_mut(&mut self) -> [&mut Vec<T>; N_TENSORS] {
        [
            &mut self.emb,
            &mut self.w,
            &mut self.w1,
            &mut self.w2,
            &mut self.u,
            &mut self.u1,
            &mut self.u2,
            &mut self.b_z,
            &mut self.b_h,
            &mut self.zeta_hat,
            &mut self.nu_hat,
            &mut self.head_w,
            &mut self.head_b,
        ]
    }

    /// Build from tensors in [`TENSOR_NAMES`] order.
    pub fn from_tensors(t: [Vec<T>; N_TENSORS]) -> Self {
        let [emb, w, w1, w2, u, u1, u2, b_z, b_h, zeta_hat, nu_hat, head_w, head_b] = t;
        Params {
            emb,
            w,
            w1,
            w2,
            u,
            u1,
            u2,
            b_z,
            b_h,
            zeta_hat,
            nu_hat,
            head_w,
            head_b,
        }
    }

    /// Set every entry to zero.
    pub fn fill_zero(&mut self) {
        for t in self.tensors_mut() {
            t.iter_mut().for_each(|x| *x = T::zero());
        }
    }

    /// Convert the scalar type (e.g. f32 → f64 for the gradient check).
    pub fn cast<S: Real>(&self) -> Params<S> {
        let c = |v: &Vec<T>| {
            v.iter()
                .map(|x| S::from_f64(x.to_f64()))
                .collect::<Vec<S>>()
        };
        Params {
            emb: c(&self.emb),
            w: c(&self.w),
            w1: c(&self.w1),
            w2: c(&self.w2),
            u: c(&self.u),
            u1: c(&self.u1),
            u2: c(&self.u2),
            b_z: c(&self.b_z),
            b_h: c(&self.b_h),
            zeta_hat: c(&self.zeta_hat),
            nu_hat: c(&self.nu_hat),
            head_w: c(&self.head_w),
            head_b: c(&self.head_b),
        }
    }

    /// True when every tensor has the length `cfg` requires.
    pub fn matches(&self, cfg: &ModelConfig) -> bool {
        self.tensors()
            .iter()
            .zip(cfg.tensor_lens())
            .all(|(t, l)| t.len() == l)
    }
}

/// One input sequence.
#[derive(Clone, Copy, Debug)]
pub enum SeqInput<'a> {
    /// Tokenized text (for [`InputKind::Text`]).
    Tokens(&'a Tokens),
    /// `steps · step_dim` raw features (for [`InputKind::Features`]).
    Features(&'a [f32]),
}

/// `out = M x` for row-major `M` (`rows × cols`).
#[inline]
pub(crate) fn matvec<T: Real>(m: &[T], x: &[T], rows: usize, cols: usize, out: &mut [T]) {
    for (r, o) in out.iter_mut().enumerate().take(rows) {
        let row = &m[r * cols..(r + 1) * cols];
        let mut s = T::zero();
        for (a, b) in row.iter().zip(x) {
            s += *a * *b;
        }
        *o = s;
    }
}

/// `out += Mᵀ y` for row-major `M` (`rows × cols`).
#[inline]
fn matvec_t_acc<T: Real>(m: &[T], y: &[T], rows: usize, cols: usize, out: &mut [T]) {
    for r in 0..rows {
        let yr = y[r];
        let row = &m[r * cols..(r + 1) * cols];
        for (o, a) in out.iter_mut().zip(row) {
            *o += *a * yr;
        }
    }
}

/// `G += a bᵀ` (`G` is `a.len() × b.len()`).
#[inline]
fn outer_acc<T: Real>(g: &mut [T], a: &[T], b: &[T]) {
    let cols = b.len();
    for (r, &ar) in a.iter().enumerate() {
        let row = &mut g[r * cols..(r + 1) * cols];
        for (o, &bc) in row.iter_mut().zip(b) {
            *o += ar * bc;
        }
    }
}

/// Activations kept by the forward pass for backpropagation through time.
#[derive(Clone, Debug, Default)]
pub struct Cache<T> {
    pub steps: usize,
    /// `steps × d` inputs actually fed (after noise, if any).
    pub xs: Vec<T>,
    /// `(steps + 1) × h`; row 0 is the zero initial state.
    pub hs: Vec<T>,
    pub zs: Vec<T>,
    pub hts: Vec<T>,
    /// `steps × r_w` (`W₂ᵀ x`) when `W` is low-rank.
    pub qw: Vec<T>,
    /// `steps × r_u` (`U₂ᵀ h_{t-1}`) when `U` is low-rank.
    pub qu: Vec<T>,
    /// The head's input (`h_T` or the mean of `h_1..h_T`).
    pub pooled: Vec<T>,
    pub probs: Vec<T>,
}

/// Build the step inputs (`steps × d`) for one sequence. Returns the number of steps.
pub fn embed_input<T: Real>(
    cfg: &ModelConfig,
    p: &Params<T>,
    input: SeqInput<'_>,
    xs: &mut Vec<T>,
) -> Result<usize, String> {
    xs.clear();
    match (cfg.input, input) {
        (InputKind::Text { emb_dim, tokenizer }, SeqInput::Tokens(tok)) => {
            if tok.is_empty() {
                return Err("query has no words".into());
            }
            for t in 0..tok.len() {
                let ids = tok.word(t);
                let base = xs.len();
                xs.resize(base + emb_dim, T::zero());
                for &id in ids {
                    if id >= tokenizer.n_buckets {
                        return Err(format!("bucket {id} out of range"));
                    }
                    let row = &p.emb[id as usize * emb_dim..(id as usize + 1) * emb_dim];
                    for (o, &e) in xs[base..].iter_mut().zip(row) {
                        *o += e;
                    }
                }
                let inv = T::one() / T::from_f64(ids.len().max(1) as f64);
                xs[base..].iter_mut().for_each(|v| *v = *v * inv);
            }
            Ok(tok.len())
        }
        (
            InputKind::Features {
                steps,
                step_dim,
                input_scale,
            },
            SeqInput::Features(f),
        ) => {
            if f.len() != steps * step_dim {
                return Err(format!(
                    "expected {} features ({} steps × {}), got {}",
                    steps * step_dim,
                    steps,
                    step_dim,
                    f.len()
                ));
            }
            if let Some(i) = f.iter().position(|v| !v.is_finite()) {
                return Err(format!("feature {i} is not finite"));
            }
            let s = input_scale as f64;
            xs.extend(f.iter().map(|&v| T::from_f64(v as f64 * s)));
            Ok(steps)
        }
        _ => Err("input kind does not match the model".into()),
    }
}

/// Run the recurrence and the head over `cache.xs` (`steps × d`), filling the cache.
pub fn forward<T: Real>(cfg: &ModelConfig, p: &Params<T>, cache: &mut Cache<T>) {
    let d = cfg.input_dim();
    let h = cfg.hidden;
    let steps = cache.xs.len() / d;
    cache.steps = steps;
    cache.hs.clear();
    cache.hs.resize((steps + 1) * h, T::zero());
    cache.zs.clear();
    cache.zs.resize(steps * h, T::zero());
    cache.hts.clear();
    cache.hts.resize(steps * h, T::zero());
    let rw = cfg.w_rank.unwrap_or(0);
    let ru = cfg.u_rank.unwrap_or(0);
    cache.qw.clear();
    cache.qw.resize(steps * rw, T::zero());
    cache.qu.clear();
    cache.qu.resize(steps * ru, T::zero());
    let zeta = sigmoid(p.zeta_hat[0]);
    let nu = sigmoid(p.nu_hat[0]);
    let mut a = vec![T::zero(); h];
    let mut tmp = vec![T::zero(); h];
    for t in 0..steps {
        let x = &cache.xs[t * d..(t + 1) * d];
        // a = W x
        match cfg.w_rank {
            None => matvec(&p.w, x, h, d, &mut a),
            Some(r) => {
                let q = &mut cache.qw[t * r..(t + 1) * r];
                q.iter_mut().for_each(|v| *v = T::zero());
                matvec_t_acc(&p.w2, x, d, r, q);
                matvec(&p.w1, q, h, r, &mut a);
            }
        }
        // a += U h_{t-1}
        let (prev_part, next_part) = cache.hs.split_at_mut((t + 1) * h);
        let hp = &prev_part[t * h..];
        match cfg.u_rank {
            None => matvec(&p.u, hp, h, h, &mut tmp),
            Some(r) => {
                let q = &mut cache.qu[t * r..(t + 1) * r];
                q.iter_mut().for_each(|v| *v = T::zero());
                matvec_t_acc(&p.u2, hp, h, r, q);
                matvec(&p.u1, q, h, r, &mut tmp);
            }
        }
        let hn = &mut next_part[..h];
        let zs = &mut cache.zs[t * h..(t + 1) * h];
        let hts = &mut cache.hts[t * h..(t + 1) * h];
        for j in 0..h {
            let pre = a[j] + tmp[j];
            let z = sigmoid(pre + p.b_z[j]);
            let ht = (pre + p.b_h[j]).tanh();
            zs[j] = z;
            hts[j] = ht;
            hn[j] = z * hp[j] + (zeta * (T::one() - z) + nu) * ht;
        }
    }
    let c = cfg.n_classes;
    cache.pooled.clear();
    match cfg.pool {
        Pool::Last => cache.pooled.extend_from_slice(&cache.hs[steps * h..]),
        Pool::Mean => {
            cache.pooled.resize(h, T::zero());
            for t in 1..=steps {
                for (o, &v) in cache.pooled.iter_mut().zip(&cache.hs[t * h..(t + 1) * h]) {
                    *o += v;
                }
            }
            let inv = T::one() / T::from_f64(steps.max(1) as f64);
            cache.pooled.iter_mut().for_each(|v| *v = *v * inv);
        }
    }
    cache.probs.clear();
    cache.probs.resize(c, T::zero());
    matvec(&p.head_w, &cache.pooled, c, h, &mut cache.probs);
    for (o, b) in cache.probs.iter_mut().zip(&p.head_b) {
        *o += *b;
    }
    softmax_in_place(&mut cache.probs);
}

/// Numerically stable softmax.
pub fn softmax_in_place<T: Real>(v: &mut [T]) {
    let mut m = v[0];
    for &x in v.iter() {
        if x > m {
            m = x;
        }
    }
    let mut s = T::zero();
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    for x in v.iter_mut() {
        *x = *x / s;
    }
}

/// Cross-entropy loss of a forward pass for `target`.
pub fn loss<T: Real>(cache: &Cache<T>, target: usize) -> T {
    let p = cache.probs[target];
    let floor = T::from_f64(1e-30);
    -(if p > floor { p } else { floor }).ln()
}

/// Backpropagate the cross-entropy loss of `cache` (times `scale`) into `g`.
/// Returns `d loss / d xs` (`steps × d`) in `dxs`.
pub fn backward<T: Real>(
    cfg: &ModelConfig,
    p: &Params<T>,
    cache: &Cache<T>,
    target: usize,
    scale: T,
    g: &mut Params<T>,
    dxs: &mut Vec<T>,
) {
    backward_smoothed(cfg, p, cache, target, T::zero(), scale, g, dxs)
}

/// Cross-entropy loss against a label-smoothed target: the target distribution puts
/// `1 − smoothing + smoothing / C` on `target` and `smoothing / C` on every other class
/// (Szegedy et al. 2016). Equals [`backward`] for `smoothing = 0`.
pub fn smoothed_loss<T: Real>(cache: &Cache<T>, target: usize, smoothing: T) -> T {
    let c = T::from_f64(cache.probs.len() as f64);
    let floor = T::from_f64(1e-30);
    let mut l = T::zero();
    for (k, &p) in cache.probs.iter().enumerate() {
        let y = smoothing / c
            + if k == target {
                T::one() - smoothing
            } else {
                T::zero()
            };
        l += -(y * (if p > floor { p } else { floor }).ln());
    }
    l
}

/// [`backward`] for the label-smoothed loss [`smoothed_loss`].
#[allow(clippy::too_many_arguments)]
pub fn backward_smoothed<T: Real>(
    cfg: &ModelConfig,
    p: &Params<T>,
    cache: &Cache<T>,
    target: usize,
    smoothing: T,
    scale: T,
    g: &mut Params<T>,
    dxs: &mut Vec<T>,
) {
    let d = cfg.input_dim();
    let h = cfg.hidden;
    let c = cfg.n_classes;
    let steps = cache.steps;
    dxs.clear();
    dxs.resize(steps * d, T::zero());
    // Head.
    let dlogit: Vec<T> = (0..c)
        .map(|k| {
            let off = smoothing / T::from_f64(c as f64);
            let y = if k == target {
                T::one() - smoothing + off
            } else {
                off
            };
            (cache.probs[k] - y) * scale
        })
        .collect();
    outer_acc(&mut g.head_w, &dlogit, &cache.pooled);
    for (gb, &dl) in g.head_b.iter_mut().zip(&dlogit) {
        *gb += dl;
    }
    let mut dpool = vec![T::zero(); h];
    matvec_t_acc(&p.head_w, &dlogit, c, h, &mut dpool);
    // Mean pooling feeds every h_t with dpool / T; last-state pooling only h_T.
    if cfg.pool == Pool::Mean {
        let inv = T::one() / T::from_f64(steps.max(1) as f64);
        dpool.iter_mut().for_each(|v| *v = *v * inv);
    }
    let mut dh = dpool.clone();

    let zeta = sigmoid(p.zeta_hat[0]);
    let nu = sigmoid(p.nu_hat[0]);
    let mut dzeta = T::zero();
    let mut dnu = T::zero();
    let mut da = vec![T::zero(); h];
    let mut dh_prev = vec![T::zero(); h];
    let rw = cfg.w_rank.unwrap_or(0);
    let ru = cfg.u_rank.unwrap_or(0);
    let mut dq = vec![T::zero(); rw.max(ru)];
    for t in (0..steps).rev() {
        let hp = &cache.hs[t * h..(t + 1) * h];
        let zs = &cache.zs[t * h..(t + 1) * h];
        let hts = &cache.hts[t * h..(t + 1) * h];
        for j in 0..h {
            let z = zs[j];
            let ht = hts[j];
            let dz = dh[j] * (hp[j] - zeta * ht);
            let dht = dh[j] * (zeta * (T::one() - z) + nu);
            dzeta += dh[j] * (T::one() - z) * ht;
            dnu += dh[j] * ht;
            let daz = dz * z * (T::one() - z);
            let dah = dht * (T::one() - ht * ht);
            g.b_z[j] += daz;
            g.b_h[j] += dah;
            da[j] = daz + dah;
            dh_prev[j] = dh[j] * z;
        }
        let x = &cache.xs[t * d..(t + 1) * d];
        let dx = &mut dxs[t * d..(t + 1) * d];
        match cfg.w_rank {
            None => {
                outer_acc(&mut g.w, &da, x);
                matvec_t_acc(&p.w, &da, h, d, dx);
            }
            Some(r) => {
                let q = &cache.qw[t * r..(t + 1) * r];
                outer_acc(&mut g.w1, &da, q);
                let dqr = &mut dq[..r];
                dqr.iter_mut().for_each(|v| *v = T::zero());
                matvec_t_acc(&p.w1, &da, h, r, dqr);
                outer_acc(&mut g.w2, x, dqr);
                // dx = W₂ dq
                for (i, o) in dx.iter_mut().enumerate() {
                    let row = &p.w2[i * r..(i + 1) * r];
                    let mut s = T::zero();
                    for (a, b) in row.iter().zip(dqr.iter()) {
                        s += *a * *b;
                    }
                    *o += s;
                }
            }
        }
        match cfg.u_rank {
            None => {
                outer_acc(&mut g.u, &da, hp);
                matvec_t_acc(&p.u, &da, h, h, &mut dh_prev);
            }
            Some(r) => {
                let q = &cache.qu[t * r..(t + 1) * r];
                outer_acc(&mut g.u1, &da, q);
                let dqr = &mut dq[..r];
                dqr.iter_mut().for_each(|v| *v = T::zero());
                matvec_t_acc(&p.u1, &da, h, r, dqr);
                outer_acc(&mut g.u2, hp, dqr);
                for (i, o) in dh_prev.iter_mut().enumerate() {
                    let row = &p.u2[i * r..(i + 1) * r];
                    let mut s = T::zero();
                    for (a, b) in row.iter().zip(dqr.iter()) {
                        s += *a * *b;
                    }
                    *o += s;
                }
            }
        }
        if cfg.pool == Pool::Mean && t > 0 {
            for (o, &v) in dh_prev.iter_mut().zip(&dpool) {
                *o += v;
            }
        }
        core::mem::swap(&mut dh, &mut dh_prev);
    }
    g.zeta_hat[0] += dzeta * zeta * (T::one() - zeta);
    g.nu_hat[0] += dnu * nu * (T::one() - nu);
}

/// Backpropagate `dxs` into the embedding table (text models only).
pub fn backward_embed<T: Real>(
    cfg: &ModelConfig,
    input: SeqInput<'_>,
    dxs: &[T],
    g: &mut Params<T>,
) {
    if let (InputKind::Text { emb_dim, .. }, SeqInput::Tokens(tok)) = (cfg.input, input) {
        for t in 0..tok.len() {
            let ids = tok.word(t);
            let inv = T::one() / T::from_f64(ids.len().max(1) as f64);
            let dx = &dxs[t * emb_dim..(t + 1) * emb_dim];
            for &id in ids {
                let row = &mut g.emb[id as usize * emb_dim..(id as usize + 1) * emb_dim];
                for (o, &v) in row.iter_mut().zip(dx) {
                    *o += v * inv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer::Tokenizer;
    use super::*;
    use crate::rng::Rng;

    fn random_params(cfg: &ModelConfig, seed: u64) -> Params<f64> {
        let mut rng = Rng::new(seed);
        let mut p = Params::<f64>::zeros(cfg);
        for t in p.tensors_mut() {
            for v in t.iter_mut() {
                *v = rng.normal() as f64 * 0.5;
            }
        }
        p
    }

    fn loss_of(cfg: &ModelConfig, p: &Params<f64>, input: SeqInput<'_>, y: usize, sm: f64) -> f64 {
        let mut c = Cache::default();
        embed_input(cfg, p, input, &mut c.xs).unwrap();
        forward(cfg, p, &mut c);
        if sm == 0.0 {
            loss(&c, y)
        } else {
            smoothed_loss(&c, y, sm)
        }
    }

    /// Central finite differences vs. analytic gradients on every entry of every
    /// non-empty tensor, in f64.
    fn grad_check(cfg: &ModelConfig, input: SeqInput<'_>, y: usize, seed: u64) {
        grad_check_smoothed(cfg, input, y, seed, 0.0)
    }

    /// [`grad_check`] for the label-smoothed loss (`sm = 0`: plain cross-entropy
    /// through [`backward`]).
    fn grad_check_smoothed(cfg: &ModelConfig, input: SeqInput<'_>, y: usize, seed: u64, sm: f64) {
        let p = random_params(cfg, seed);
        let mut g = Params::<f64>::zeros(cfg);
        let mut c = Cache::default();
        embed_input(cfg, &p, input, &mut c.xs).unwrap();
        forward(cfg, &p, &mut c);
        let mut dxs = Vec::new();
        if sm == 0.0 {
            backward(cfg, &p, &c, y, 1.0, &mut g, &mut dxs);
        } else {
            backward_smoothed(cfg, &p, &c, y, sm, 1.0, &mut g, &mut dxs);
        }
        backward_embed(cfg, input, &dxs, &mut g);
        let eps = 1e-6;
        let mut checked = [0usize; N_TENSORS];
        for k in 0..N_TENSORS {
            let n = p.tensors()[k].len();
            for i in 0..n {
                let mut pp = p.clone();
                pp.tensors_mut()[k][i] += eps;
                let lp = loss_of(cfg, &pp, input, y, sm);
                pp.tensors_mut()[k][i] -= 2.0 * eps;
                let lm = loss_of(cfg, &pp, input, y, sm);
                let num = (lp - lm) / (2.0 * eps);
                let ana = g.tensors()[k][i];
                let err = (num - ana).abs() / (num.abs() + ana.abs()).max(1e-7);
                assert!(
                    err < 1e-5 || (num - ana).abs() < 1e-9,
                    "{}[{i}]: numeric {num} analytic {ana} rel err {err}",
                    TENSOR_NAMES[k]
                );
                checked[k] += 1;
            }
        }
        // Every tensor the configuration uses was checked.
        for (k, l) in cfg.tensor_lens().iter().enumerate() {
            assert_eq!(checked[k], *l, "{}", TENSOR_NAMES[k]);
        }
    }

    fn text_cfg(w_rank: Option<usize>, u_rank: Option<usize>) -> ModelConfig {
        ModelConfig {
            input: InputKind::Text {
                tokenizer: TokenizerConfig {
                    n_buckets: 40,
                    min_n: 3,
                    max_n: 4,
                    max_words: 8,
                },
                emb_dim: 4,
            },
            hidden: 5,
            n_classes: 3,
            w_rank,
            u_rank,
            pool: Pool::Last,
        }
    }

    #[test]
    fn validate_bounds_the_embedding_table_product() {
        let with = |n_buckets: u32, emb_dim: usize| {
            let mut cfg = text_cfg(None, None);
            if let InputKind::Text {
                tokenizer,
                emb_dim: e,
            } = &mut cfg.input
            {
                tokenizer.n_buckets = n_buckets;
                *e = emb_dim;
            }
            cfg.validate()
        };
        // Each factor is within its own bound, but 2^22 × 1024 = 2^32 values would
        // wrap to an empty table in a 32-bit build.
        let err = with(1 << 22, 1024).unwrap_err();
        assert!(err.contains("> 2^28"), "{err}");
        assert!(with(1 << 22, 65).is_err());
        assert!(with(1 << 22, 64).is_ok());
        assert!(with(1 << 18, 1024).is_ok());
    }

    #[test]
    fn gradient_check_dense_text_model_every_tensor() {
        let cfg = text_cfg(None, None);
        let InputKind::Text { tokenizer, .. } = cfg.input else {
            unreachable!()
        };
        let tok = Tokenizer::new(tokenizer).tokenize("films like heat now");
        for y in 0..3 {
            grad_check(&cfg, SeqInput::Tokens(&tok), y, 11 + y as u64);
        }
    }

    #[test]
    fn gradient_check_label_smoothed_loss_every_tensor() {
        let cfg = text_cfg(None, None);
        let InputKind::Text { tokenizer, .. } = cfg.input else {
            unreachable!()
        };
        let tok = Tokenizer::new(tokenizer).tokenize("something cozy for tonight");
        for y in 0..3 {
            grad_check_smoothed(&cfg, SeqInput::Tokens(&tok), y, 21 + y as u64, 0.1);
        }
        let mean = ModelConfig {
            pool: Pool::Mean,
            ..text_cfg(Some(2), None)
        };
        grad_check_smoothed(&mean, SeqInput::Tokens(&tok), 1, 24, 0.2);
    }

    #[test]
    fn smoothed_loss_is_cross_entropy_at_zero_and_penalises_confidence() {
        let c = Cache::<f64> {
            probs: vec![0.7, 0.2, 0.1],
            ..Default::default()
        };
        assert!((smoothed_loss(&c, 0, 0.0) - loss(&c, 0)).abs() < 1e-12);
        // Uniform mass on the wrong classes raises the loss of a confident prediction
        // and lowers it for a spread-out one.
        let confident = Cache::<f64> {
            probs: vec![0.999, 0.0005, 0.0005],
            ..Default::default()
        };
        assert!(smoothed_loss(&confident, 0, 0.1) > loss(&confident, 0) + 0.1);
        let expected = -(0.9 + 0.1 / 3.0) * 0.7f64.ln() - (0.1 / 3.0) * (0.2f64.ln() + 0.1f64.ln());
        assert!((smoothed_loss(&c, 0, 0.1) - expected).abs() < 1e-12);
    }

    #[test]
    fn gradient_check_low_rank_text_model_every_tensor() {
        let cfg = text_cfg(Some(2), Some(3));
        let InputKind::Text { tokenizer, .. } = cfg.input else {
            unreachable!()
        };
        let tok = Tokenizer::new(tokenizer).tokenize("where can i watch it");
        grad_check(&cfg, SeqInput::Tokens(&tok), 1, 5);
        let mean = ModelConfig {
            pool: Pool::Mean,
            ..text_cfg(None, Some(2))
        };
        grad_check(&mean, SeqInput::Tokens(&tok), 2, 6);
    }

    #[test]
    fn gradient_check_feature_model() {
        let cfg = ModelConfig {
            input: InputKind::Features {
                steps: 3,
                step_dim: 4,
                input_scale: 1.5,
            },
            hidden: 4,
            n_classes: 4,
            w_rank: None,
            u_rank: Some(2),
            pool: Pool::Mean,
        };
        let mut rng = Rng::new(3);
        let f: Vec<f32> = (0..12).map(|_| rng.normal()).collect();
        grad_check(&cfg, SeqInput::Features(&f), 2, 9);
    }

    #[test]
    fn one_step_matches_hand_computation() {
        // hidden 1, input 1, dense: h1 = z*0 + (ζ(1−z)+ν)·tanh(w x + b_h).
        let cfg = ModelConfig {
            input: InputKind::Features {
                steps: 1,
                step_dim: 1,
                input_scale: 1.0,
            },
            hidden: 1,
            n_classes: 2,
            w_rank: None,
            u_rank: None,
            pool: Pool::Last,
        };
        let p = Params::<f64>::from_tensors([
            vec![],
            vec![0.7],
            vec![],
            vec![],
            vec![0.3],
            vec![],
            vec![],
            vec![0.2],
            vec![-0.1],
            vec![0.5],
            vec![-1.0],
            vec![1.0, -1.0],
            vec![0.0, 0.0],
        ]);
        let mut c = Cache::default();
        embed_input(&cfg, &p, SeqInput::Features(&[2.0]), &mut c.xs).unwrap();
        forward(&cfg, &p, &mut c);
        let s = |x: f64| 1.0 / (1.0 + (-x).exp());
        let a = 0.7 * 2.0;
        let z = s(a + 0.2);
        let ht = (a - 0.1f64).tanh();
        let h1 = (s(0.5) * (1.0 - z) + s(-1.0)) * ht;
        assert!((c.hs[1] - h1).abs() < 1e-12);
        let p0 = s(2.0 * h1);
        assert!((c.probs[0] - p0).abs() < 1e-12);
    }

    #[test]
    fn wrong_input_is_rejected() {
        let cfg = text_cfg(None, None);
        let p = random_params(&cfg, 1);
        let mut xs = Vec::new();
        assert!(embed_input(&cfg, &p, SeqInput::Features(&[1.0]), &mut xs).is_err());
        let empty = Tokens {
            ids: vec![],
            offsets: vec![0],
        };
        assert!(embed_input(&cfg, &p, SeqInput::Tokens(&empty), &mut xs).is_err());
    }
}
