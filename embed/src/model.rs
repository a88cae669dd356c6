//! BERT encoder forward pass (post-LayerNorm, absolute positions, exact-erf GELU) with mean
//! pooling and L2 normalization, in f32 on top of the `matrixmultiply` sgemm.
//!
//! Several sequences are processed together by packing their tokens into one row matrix: the
//! dense layers run once over all rows, attention runs per sequence over its own rows only, so
//! no padding and no attention mask are needed.

use serde::Deserialize;

use crate::safetensors::SafeTensors;
use crate::EmbedError;

/// The subset of a Hugging Face `config.json` a BERT encoder needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward inner layer.
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer; only `gelu` (exact erf form) is supported.
    pub hidden_act: String,
    /// Epsilon inside every LayerNorm.
    pub layer_norm_eps: f64,
    /// Number of learned absolute positions.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    pub type_vocab_size: usize,
    /// Number of word-piece embeddings.
    pub vocab_size: usize,
}

impl BertConfig {
    /// Checks the configuration is one this implementation computes exactly.
    pub fn validate(&self) -> Result<(), EmbedError> {
        let bad = |m: String| Err(EmbedError::Config(m));
        if self.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act {:?} is not supported (only the exact-erf \"gelu\")",
                self.hidden_act
            ));
        }
        if self.hidden_size == 0
            || self.num_attention_heads == 0
            || self.hidden_size % self.num_attention_heads != 0
        {
            return bad(format!(
                "hidden_size {} is not a positive multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_hidden_layers == 0
            || self.intermediate_size == 0
            || self.max_position_embeddings == 0
            || self.type_vocab_size == 0
            || self.vocab_size == 0
        {
            return bad("a layer count or size is zero".into());
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps {} must be positive",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

/// Error function in f32, Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7 in exact
/// arithmetic, below 5e-7 when evaluated in f32).
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152_1,
        1.061_405_4,
    ];
    let z = x.abs();
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let r = 1.0 - poly * (-z * z).exp();
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// GELU, exact form (`hidden_act = "gelu"`, not the tanh approximation):
/// `x * Φ(x) = 0.5 x (1 + erf(x / √2))`.
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// LayerNorm of every `gamma.len()`-wide row of `x`, in place: `(x - mean) / sqrt(var + eps)`
/// scaled by `gamma` and shifted by `beta` (biased variance, statistics in f64).
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f64) {
    let h = gamma.len();
    for row in x.chunks_exact_mut(h) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / h as f64;
        let var = row
            .iter()
            .map(|&v| {
                let d = f64::from(v) - mean;
                d * d
            })
            .sum::<f64>()
            / h as f64;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = ((f64::from(*v) - mean) * inv) as f32 * g + b;
        }
    }
}

/// Softmax of a row, in place (max-subtracted).
fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Strided view of a matrix inside a slice.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

/// Index one past the last element a `rows × cols` matrix with these strides touches.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `C[m×n] = alpha · A[m×k] · B[k×n] + beta · C`, bounds-checked around the unsafe sgemm.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    assert!(
        extent(m, k, a.rs, a.cs) <= a.data.len(),
        "gemm: A out of bounds"
    );
    assert!(
        extent(k, n, b.rs, b.cs) <= b.data.len(),
        "gemm: B out of bounds"
    );
    assert!(extent(m, n, rsc, 1) <= c.len(), "gemm: C out of bounds");
    assert!(rsc >= n || m <= 1, "gemm: C rows overlap");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every element sgemm reads or writes inside the slices,
    // and C's strides (rsc >= n, cs = 1) never alias two elements.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            1,
        );
    }
}

/// Dense layer with PyTorch layout: weight `[out, in]`, `y = x Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Linear {
    /// Wraps a weight `[out × inp]` (row-major) and bias `[out]`.
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        inp: usize,
        out: usize,
    ) -> Result<Self, EmbedError> {
        if weight.len() != inp * out || bias.len() != out {
            return Err(EmbedError::Config(format!(
                "linear layer {inp}->{out}: weight has {} values, bias {}",
                weight.len(),
                bias.len()
            )));
        }
        Ok(Linear {
            weight,
            bias,
            inp,
            out,
        })
    }

    fn load(
        st: &SafeTensors<'_>,
        prefix: &str,
        inp: usize,
        out: usize,
    ) -> Result<Self, EmbedError> {
        let w = st.f32_tensor(&format!("{prefix}.weight"), &[out, inp])?;
        let b = st.f32_tensor(&format!("{prefix}.bias"), &[out])?;
        Linear::new(w, b, inp, out)
    }

    /// `y[rows × out] = x[rows × inp] Wᵀ + b`.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        for row in y[..rows * self.out].chunks_exact_mut(self.out) {
            row.copy_from_slice(&self.bias);
        }
        gemm(
            rows,
            self.inp,
            self.out,
            1.0,
            Mat {
                data: x,
                rs: self.inp,
                cs: 1,
            },
            Mat {
                data: &self.weight,
                rs: 1,
                cs: self.inp,
            },
            1.0,
            y,
            self.out,
        );
    }
}

#[derive(Debug, Clone)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(st: &SafeTensors<'_>, prefix: &str, h: usize) -> Result<Self, EmbedError> {
        Ok(Norm {
            gamma: st.f32_tensor(&format!("{prefix}.weight"), &[h])?,
            beta: st.f32_tensor(&format!("{prefix}.bias"), &[h])?,
        })
    }
}

#[derive(Debug, Clone)]
struct Layer {
    /// Query, key and value projections stacked into one `[3H, H]` layer.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

/// BERT encoder weights plus the pooling/normalization head of a sentence-transformers model.
#[derive(Debug, Clone)]
pub struct Bert {
    cfg: BertConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

/// Working buffers for one packed batch.
struct Scratch {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    scores: Vec<f32>,
}

impl Bert {
    /// Loads weights named as in a Hugging Face `BertModel` checkpoint (with or without a
    /// `bert.` prefix), checking dtype and shape of each against `cfg`.
    pub fn load(cfg: BertConfig, st: &SafeTensors<'_>) -> Result<Self, EmbedError> {
        cfg.validate()?;
        let prefix = if st.info("embeddings.word_embeddings.weight").is_none()
            && st.info("bert.embeddings.word_embeddings.weight").is_some()
        {
            "bert."
        } else {
            ""
        };
        let h = cfg.hidden_size;
        let word = st.f32_tensor(
            &format!("{prefix}embeddings.word_embeddings.weight"),
            &[cfg.vocab_size, h],
        )?;
        let position = st.f32_tensor(
            &format!("{prefix}embeddings.position_embeddings.weight"),
            &[cfg.max_position_embeddings, h],
        )?;
        let token_type = st.f32_tensor(
            &format!("{prefix}embeddings.token_type_embeddings.weight"),
            &[cfg.type_vocab_size, h],
        )?;
        let emb_norm = Norm::load(st, &format!("{prefix}embeddings.LayerNorm"), h)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{i}");
            let q = Linear::load(st, &format!("{p}.attention.self.query"), h, h)?;
            let k = Linear::load(st, &format!("{p}.attention.self.key"), h, h)?;
            let v = Linear::load(st, &format!("{p}.attention.self.value"), h, h)?;
            let mut w = Vec::with_capacity(3 * h * h);
            let mut b = Vec::with_capacity(3 * h);
            for part in [&q, &k, &v] {
                w.extend_from_slice(&part.weight);
                b.extend_from_slice(&part.bias);
            }
            layers.push(Layer {
                qkv: Linear::new(w, b, h, 3 * h)?,
                attn_out: Linear::load(st, &format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: Norm::load(st, &format!("{p}.attention.output.LayerNorm"), h)?,
                inter: Linear::load(
                    st,
                    &format!("{p}.intermediate.dense"),
                    h,
                    cfg.intermediate_size,
                )?,
                out: Linear::load(st, &format!("{p}.output.dense"), cfg.intermediate_size, h)?,
                out_norm: Norm::load(st, &format!("{p}.output.LayerNorm"), h)?,
            });
        }
        Ok(Bert {
            cfg,
            word,
            position,
            token_type,
            emb_norm,
            layers,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// Checks a token sequence can be fed to the model.
    pub fn check_ids(&self, ids: &[u32]) -> Result<(), EmbedError> {
        if ids.is_empty() {
            return Err(EmbedError::Input("empty token sequence".into()));
        }
        if ids.len() > self.cfg.max_position_embeddings {
            return Err(EmbedError::Input(format!(
                "{} tokens exceed the {} positions of the model",
                ids.len(),
                self.cfg.max_position_embeddings
            )));
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.cfg.vocab_size) {
            return Err(EmbedError::Input(format!(
                "token id {bad} outside the vocabulary of {}",
                self.cfg.vocab_size
            )));
        }
        Ok(())
    }

    /// Final hidden states `[Σ len × hidden]` of several sequences packed row after row.
    pub fn hidden_states(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, EmbedError> {
        for s in seqs {
            self.check_ids(s)?;
        }
        let mut sc = self.run(seqs);
        let n: usize = seqs.iter().map(|s| s.len()).sum();
        sc.x.truncate(n * self.cfg.hidden_size);
        Ok(sc.x)
    }

    /// Sentence embeddings: mean of the final hidden states over each sequence's tokens,
    /// L2-normalized (norm clamped below at 1e-12).
    pub fn embed_ids(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        for s in seqs {
            self.check_ids(s)?;
        }
        let sc = self.run(seqs);
        let h = self.cfg.hidden_size;
        let mut out = Vec::with_capacity(seqs.len());
        let mut off = 0;
        for s in seqs {
            let mut acc = vec![0f64; h];
            for row in sc.x[off * h..(off + s.len()) * h].chunks_exact(h) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += f64::from(v);
                }
            }
            off += s.len();
            let inv_len = 1.0 / s.len() as f64;
            let norm = acc
                .iter()
                .map(|a| (a * inv_len).powi(2))
                .sum::<f64>()
                .sqrt();
            let scale = inv_len / norm.max(1e-12);
            out.push(acc.iter().map(|a| (a * scale) as f32).collect());
        }
        Ok(out)
    }

    /// Runs the encoder over validated sequences.
    fn run(&self, seqs: &[&[u32]]) -> Scratch {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let n: usize = seqs.iter().map(|s| s.len()).sum();
        let max_len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut sc = Scratch {
            x: vec![0.0; n * h],
            qkv: vec![0.0; n * 3 * h],
            ctx: vec![0.0; n * h],
            tmp: vec![0.0; n * h],
            inter: vec![0.0; n * cfg.intermediate_size],
            scores: vec![0.0; max_len * max_len],
        };
        // Embeddings: word + position + token type 0, then LayerNorm.
        let mut row = 0;
        for s in seqs {
            for (pos, &id) in s.iter().enumerate() {
                let dst = &mut sc.x[row * h..(row + 1) * h];
                let w = &self.word[id as usize * h..(id as usize + 1) * h];
                let p = &self.position[pos * h..(pos + 1) * h];
                let t = &self.token_type[..h];
                for i in 0..h {
                    dst[i] = w[i] + p[i] + t[i];
                }
                row += 1;
            }
        }
        let eps = cfg.layer_norm_eps;
        layer_norm(&mut sc.x, &self.emb_norm.gamma, &self.emb_norm.beta, eps);
        for layer in &self.layers {
            layer.qkv.forward(&sc.x, n, &mut sc.qkv);
            self.attention(seqs, &mut sc);
            layer.attn_out.forward(&sc.ctx, n, &mut sc.tmp);
            for (x, t) in sc.x.iter_mut().zip(&sc.tmp) {
                *x += t;
            }
            layer_norm(
                &mut sc.x,
                &layer.attn_norm.gamma,
                &layer.attn_norm.beta,
                eps,
            );
            layer.inter.forward(&sc.x, n, &mut sc.inter);
            for v in sc.inter.iter_mut() {
                *v = gelu(*v);
            }
            layer.out.forward(&sc.inter, n, &mut sc.tmp);
            for (x, t) in sc.x.iter_mut().zip(&sc.tmp) {
                *x += t;
            }
            layer_norm(&mut sc.x, &layer.out_norm.gamma, &layer.out_norm.beta, eps);
        }
        sc
    }

    /// Multi-head self-attention of each sequence over its own tokens: reads `sc.qkv`,
    /// writes `sc.ctx`.
    fn attention(&self, seqs: &[&[u32]], sc: &mut Scratch) {
        let h = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let dh = h / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let stride = 3 * h;
        let mut off = 0;
        for s in seqs {
            let len = s.len();
            let block = &sc.qkv[off * stride..(off + len) * stride];
            for head in 0..heads {
                let scores = &mut sc.scores[..len * len];
                // scores = scale · Q_h K_hᵀ
                gemm(
                    len,
                    dh,
                    len,
                    scale,
                    Mat {
                        data: &block[head * dh..],
                        rs: stride,
                        cs: 1,
                    },
                    Mat {
                        data: &block[h + head * dh..],
                        rs: 1,
                        cs: stride,
                    },
                    0.0,
                    scores,
                    len,
                );
                for r in scores.chunks_exact_mut(len) {
                    softmax(r);
                }
                // ctx_h = P V_h
                gemm(
                    len,
                    len,
                    dh,
                    1.0,
                    Mat {
                        data: scores,
                        rs: len,
                        cs: 1,
                    },
                    Mat {
                        data: &block[2 * h + head * dh..],
                        rs: stride,
                        cs: 1,
                    },
                    0.0,
                    &mut sc.ctx[off * h + head * dh..],
                    h,
                );
            }
            off += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series, summed in f64 until terms vanish (fine for |x| <= 3).
    fn erf_series(x: f64) -> f64 {
        let mut term = x; // x^(2n+1) (-1)^n / n!
        let mut sum = x;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x * x / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_matches_series_and_known_values() {
        let close = |x: f32, want: f64| (f64::from(erf(x)) - want).abs() < 5e-7;
        assert!(close(0.5, 0.520_499_877_813_046_5));
        assert!(close(1.0, 0.842_700_792_949_714_9));
        assert!(close(2.0, 0.995_322_265_018_952_7));
        assert!(erf(0.0).abs() < 1e-6);
        for i in -300..=300 {
            let x = i as f32 / 100.0;
            let want = erf_series(f64::from(x));
            assert!(close(x, want), "erf({x}): {} vs {want}", erf(x));
            if i != 0 {
                assert_eq!(erf(-x), -erf(x), "erf must be odd");
            }
        }
        assert_eq!(erf(8.0), 1.0);
    }

    #[test]
    fn gelu_matches_exact_formula_not_tanh() {
        for i in -60..=60 {
            let xf = i as f32 / 10.0;
            let x = f64::from(xf);
            let exact = 0.5 * x * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
            let got = f64::from(gelu(xf));
            assert!(
                (got - exact).abs() < 1e-6,
                "gelu({x}) = {got}, expected {exact}"
            );
        }
        // The tanh approximation differs from the exact GELU by ~1e-4 near x = ±2; ours must not.
        let x = 2.0f64;
        let tanh_approx = 0.5
            * x
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh());
        let exact = 0.5 * x * (1.0 + erf_series(x / std::f64::consts::SQRT_2));
        assert!((tanh_approx - exact).abs() > 5e-5);
        assert!((f64::from(gelu(2.0)) - exact).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_matches_formula() {
        let x0 = [1.0f32, 2.0, 4.0, -3.0, 7.0, 7.0, 7.0, 7.0];
        let gamma = [0.5f32, 2.0, -1.0, 1.0];
        let beta = [0.1f32, 0.0, 0.2, -0.3];
        let mut x = x0;
        layer_norm(&mut x, &gamma, &beta, 1e-5);
        for r in 0..2 {
            let row = &x0[r * 4..r * 4 + 4];
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 4.0;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 4.0;
            for i in 0..4 {
                let want =
                    (row[i] as f64 - mean) / (var + 1e-5).sqrt() * gamma[i] as f64 + beta[i] as f64;
                assert!((x[r * 4 + i] as f64 - want).abs() < 1e-5);
            }
        }
        // A constant row normalizes to beta exactly (no division blow-up thanks to eps).
        assert_eq!(&x[4..], &beta);
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let mut r = [1000.0f32, 1001.0, 999.0];
        softmax(&mut r);
        let s: f32 = r.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        let e = [(-1.0f64).exp(), 1.0, (-2.0f64).exp()];
        let z: f64 = e.iter().sum();
        for i in 0..3 {
            assert!((r[i] as f64 - e[i] / z).abs() < 1e-6);
        }
    }

    #[test]
    fn linear_matches_naive_loops() {
        let (inp, out, rows) = (5, 3, 4);
        let w: Vec<f32> = (0..inp * out).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..out).map(|i| i as f32 - 1.0).collect();
        let x: Vec<f32> = (0..rows * inp).map(|i| (i as f32 * 0.11).cos()).collect();
        let lin = Linear::new(w.clone(), b.clone(), inp, out).unwrap();
        let mut y = vec![f32::NAN; rows * out];
        lin.forward(&x, rows, &mut y);
        for r in 0..rows {
            for o in 0..out {
                let want: f32 = b[o]
                    + (0..inp)
                        .map(|i| x[r * inp + i] * w[o * inp + i])
                        .sum::<f32>();
                assert!((y[r * out + o] - want).abs() < 1e-5);
            }
        }
        assert!(Linear::new(w, b, inp + 1, out).is_err());
    }
}
