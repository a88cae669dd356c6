//! The router model file: a [`crate::codec`] envelope (magic `SRTR`, version 1)
//! around a compact little-endian payload:
//!
//! ```text
//! u8 precision (0 = f32, 1 = int8)      u8 input kind (0 = text, 1 = features)
//! text:     u32 n_buckets, u8 min_n, u8 max_n, u16 max_words, u32 emb_dim
//! features: u32 steps, u32 step_dim, f32 input_scale
//! u32 hidden, u32 n_classes, u32 w_rank (0 = dense), u32 u_rank (0 = dense),
//! u8 pool (0 = last state, 1 = mean of states)
//! n_classes × (u8 len, UTF-8 label)
//! 13 tensors in TENSOR_NAMES order: u32 len, u8 dtype (0 = f32, 1 = i8),
//!     f32 values | (f32 scale, i8 values)
//! u32 len, UTF-8 metadata (free text, e.g. how the file was trained)
//! ```
//!
//! Every length is checked against the configuration, so a truncated, padded or
//! bit-flipped file is a clear error, never a panic.

use super::classifier::Classifier;
use super::error::RouterError;
use super::fastgrnn::{InputKind, ModelConfig, Params, Pool, SeqInput, N_TENSORS, TENSOR_NAMES};
use super::quant::{QTensor, QuantClassifier};
use super::tokenizer::{Tokenizer, TokenizerConfig};
use crate::codec;

/// Envelope magic of router model files.
pub const MAGIC: [u8; 4] = *b"SRTR";
/// Current format version.
pub const VERSION: u16 = 1;

/// A loaded model in either precision.
#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    F32(Classifier),
    Int8(QuantClassifier),
}

impl Model {
    pub fn config(&self) -> &ModelConfig {
        match self {
            Model::F32(c) => &c.cfg,
            Model::Int8(q) => &q.cfg,
        }
    }

    pub fn labels(&self) -> &[String] {
        match self {
            Model::F32(c) => &c.labels,
            Model::Int8(q) => &q.labels,
        }
    }

    pub fn tokenizer(&self) -> Option<Tokenizer> {
        match self {
            Model::F32(c) => c.tokenizer(),
            Model::Int8(q) => q.tokenizer(),
        }
    }

    pub fn predict(&self, input: SeqInput<'_>) -> Result<Vec<f32>, RouterError> {
        match self {
            Model::F32(c) => c.predict(input),
            Model::Int8(q) => q.predict(input),
        }
    }

    /// Serialize into a sealed model file, with free-text `meta`.
    pub fn to_bytes(&self, meta: &str) -> Vec<u8> {
        let mut w = Vec::new();
        let cfg = self.config();
        w.push(matches!(self, Model::Int8(_)) as u8);
        match cfg.input {
            InputKind::Text { tokenizer, emb_dim } => {
                w.push(0);
                w.extend_from_slice(&tokenizer.n_buckets.to_le_bytes());
                w.push(tokenizer.min_n);
                w.push(tokenizer.max_n);
                w.extend_from_slice(&tokenizer.max_words.to_le_bytes());
                w.extend_from_slice(&(emb_dim as u32).to_le_bytes());
            }
            InputKind::Features {
                steps,
                step_dim,
                input_scale,
            } => {
                w.push(1);
                w.extend_from_slice(&(steps as u32).to_le_bytes());
                w.extend_from_slice(&(step_dim as u32).to_le_bytes());
                w.extend_from_slice(&input_scale.to_le_bytes());
            }
        }
        for v in [
            cfg.hidden,
            cfg.n_classes,
            cfg.w_rank.unwrap_or(0),
            cfg.u_rank.unwrap_or(0),
        ] {
            w.extend_from_slice(&(v as u32).to_le_bytes());
        }
        w.push(match cfg.pool {
            Pool::Last => 0,
            Pool::Mean => 1,
        });
        for l in self.labels() {
            let b = &l.as_bytes()[..l.len().min(255)];
            w.push(b.len() as u8);
            w.extend_from_slice(b);
        }
        let put_f32 = |w: &mut Vec<u8>, v: &[f32]| {
            w.extend_from_slice(&(v.len() as u32).to_le_bytes());
            w.push(0);
            for x in v {
                w.extend_from_slice(&x.to_le_bytes());
            }
        };
        let put_q = |w: &mut Vec<u8>, q: &QTensor| {
            w.extend_from_slice(&(q.data.len() as u32).to_le_bytes());
            w.push(1);
            w.extend_from_slice(&q.scale.to_le_bytes());
            w.extend(q.data.iter().map(|&x| x as u8));
        };
        match self {
            Model::F32(c) => {
                for t in c.params.tensors() {
                    put_f32(&mut w, t);
                }
            }
            Model::Int8(q) => {
                for t in [&q.emb, &q.w, &q.w1, &q.w2, &q.u, &q.u1, &q.u2] {
                    put_q(&mut w, t);
                }
                put_f32(&mut w, &q.b_z);
                put_f32(&mut w, &q.b_h);
                put_f32(&mut w, &[q.zeta_hat]);
                put_f32(&mut w, &[q.nu_hat]);
                put_q(&mut w, &q.head_w);
                put_f32(&mut w, &q.head_b);
            }
        }
        w.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        w.extend_from_slice(meta.as_bytes());
        codec::seal(MAGIC, VERSION, &w)
    }

    /// Parse a sealed model file; returns the model and its metadata text.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Model, String), RouterError> {
        let payload = codec::open("router model", MAGIC, VERSION, bytes)?;
        let mut r = Reader { b: payload, pos: 0 };
        let precision = r.u8("precision")?;
        if precision > 1 {
            return Err(fmt(format!("unknown precision tag {precision}")));
        }
        let input = match r.u8("input kind")? {
            0 => {
                let tokenizer = TokenizerConfig {
                    n_buckets: r.u32("n_buckets")?,
                    min_n: r.u8("min_n")?,
                    max_n: r.u8("max_n")?,
                    max_words: r.u16("max_words")?,
                };
                InputKind::Text {
                    tokenizer,
                    emb_dim: r.u32("emb_dim")? as usize,
                }
            }
            1 => InputKind::Features {
                steps: r.u32("steps")? as usize,
                step_dim: r.u32("step_dim")? as usize,
                input_scale: r.f32("input_scale")?,
            },
            k => return Err(fmt(format!("unknown input kind {k}"))),
        };
        let hidden = r.u32("hidden")? as usize;
        let n_classes = r.u32("n_classes")? as usize;
        let rank = |v: u32| if v == 0 { None } else { Some(v as usize) };
        let w_rank = rank(r.u32("w_rank")?);
        let u_rank = rank(r.u32("u_rank")?);
        let pool = match r.u8("pool")? {
            0 => Pool::Last,
            1 => Pool::Mean,
            k => return Err(fmt(format!("unknown pool tag {k}"))),
        };
        let cfg = ModelConfig {
            pool,
            input,
            hidden,
            n_classes,
            w_rank,
            u_rank,
        };
        cfg.validate().map_err(fmt)?;
        let mut labels = Vec::with_capacity(n_classes);
        for _ in 0..n_classes {
            let n = r.u8("label length")? as usize;
            let b = r.take(n, "label")?;
            labels
                .push(String::from_utf8(b.to_vec()).map_err(|_| fmt("label is not UTF-8".into()))?);
        }
        let lens = cfg.tensor_lens();
        let model = if precision == 0 {
            let mut ts: [Vec<f32>; N_TENSORS] = Default::default();
            for k in 0..N_TENSORS {
                ts[k] = r.f32_tensor(TENSOR_NAMES[k], lens[k])?;
            }
            Model::F32(Classifier {
                cfg,
                params: Params::from_tensors(ts),
                labels,
            })
        } else {
            let emb = r.q_tensor("emb", lens[0])?;
            let w = r.q_tensor("w", lens[1])?;
            let w1 = r.q_tensor("w1", lens[2])?;
            let w2 = r.q_tensor("w2", lens[3])?;
            let u = r.q_tensor("u", lens[4])?;
            let u1 = r.q_tensor("u1", lens[5])?;
            let u2 = r.q_tensor("u2", lens[6])?;
            let b_z = r.f32_tensor("b_z", lens[7])?;
            let b_h = r.f32_tensor("b_h", lens[8])?;
            let zeta_hat = r.f32_tensor("zeta_hat", 1)?[0];
            let nu_hat = r.f32_tensor("nu_hat", 1)?[0];
            let head_w = r.q_tensor("head_w", lens[11])?;
            let head_b = r.f32_tensor("head_b", lens[12])?;
            for (name, rk) in [("w_rank", w_rank), ("u_rank", u_rank)] {
                if rk.is_some_and(|v| v > 256) {
                    return Err(fmt(format!("{name} > 256 unsupported for int8")));
                }
            }
            if cfg.hidden > super::quant::MAX_WIDTH {
                return Err(fmt("hidden size > 256 unsupported for int8".into()));
            }
            if cfg.input_dim() > 256 {
                return Err(fmt("input step width > 256 unsupported for int8".into()));
            }
            Model::Int8(QuantClassifier {
                cfg,
                labels,
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
            })
        };
        let mlen = r.u32("metadata length")? as usize;
        let meta = String::from_utf8(r.take(mlen, "metadata")?.to_vec())
            .map_err(|_| fmt("metadata is not UTF-8".into()))?;
        if r.pos != r.b.len() {
            return Err(fmt(format!(
                "{} unexpected trailing bytes",
                r.b.len() - r.pos
            )));
        }
        Ok((model, meta))
    }
}

fn fmt(m: String) -> RouterError {
    RouterError::Format(m)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], RouterError> {
        if self.b.len() - self.pos < n {
            return Err(fmt(format!(
                "ends inside {what} (needs {n} bytes at offset {}, {} left)",
                self.pos,
                self.b.len() - self.pos
            )));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8, RouterError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, RouterError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32, RouterError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn f32(&mut self, what: &str) -> Result<f32, RouterError> {
        Ok(f32::from_bits(self.u32(what)?))
    }
    fn header(&mut self, name: &str, expect: usize, dtype: u8) -> Result<(), RouterError> {
        let len = self.u32(name)? as usize;
        if len != expect {
            return Err(fmt(format!(
                "tensor {name} has {len} values, configuration needs {expect}"
            )));
        }
        let dt = self.u8(name)?;
        if dt != dtype {
            return Err(fmt(format!(
                "tensor {name} has dtype {dt}, expected {dtype}"
            )));
        }
        Ok(())
    }
    fn f32_tensor(&mut self, name: &str, n: usize) -> Result<Vec<f32>, RouterError> {
        self.header(name, n, 0)?;
        let s = self.take(n.saturating_mul(4), name)?;
        let v: Vec<f32> = s
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(fmt(format!("tensor {name} holds a non-finite value")));
        }
        Ok(v)
    }
    fn q_tensor(&mut self, name: &str, n: usize) -> Result<QTensor, RouterError> {
        self.header(name, n, 1)?;
        let scale = self.f32(name)?;
        if !scale.is_finite() || scale <= 0.0 {
            return Err(fmt(format!("tensor {name} has invalid scale {scale}")));
        }
        let data = self.take(n, name)?.iter().map(|&b| b as i8).collect();
        Ok(QTensor { data, scale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(int8: bool) -> Model {
        let cfg = ModelConfig {
            input: InputKind::Text {
                tokenizer: TokenizerConfig {
                    n_buckets: 64,
                    ..Default::default()
                },
                emb_dim: 4,
            },
            hidden: 6,
            n_classes: 3,
            w_rank: Some(2),
            u_rank: None,
            pool: Pool::Mean,
        };
        let c = Classifier::init(cfg, vec!["a".into(), "bb".into(), "ccc".into()], 3).unwrap();
        if int8 {
            Model::Int8(QuantClassifier::from_classifier(&c).unwrap())
        } else {
            Model::F32(c)
        }
    }

    #[test]
    fn round_trips_both_precisions() {
        for int8 in [false, true] {
            let m = model(int8);
            let b = m.to_bytes("seed 1");
            let (m2, meta) = Model::from_bytes(&b).unwrap();
            assert_eq!(m, m2);
            assert_eq!(meta, "seed 1");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = model(true).to_bytes("x");
        for n in 0..b.len() {
            assert!(Model::from_bytes(&b[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn resealed_garbage_payloads_are_format_errors_not_panics() {
        // Valid envelope, corrupted payload: the payload parser must reject it.
        let b = model(true).to_bytes("x");
        let payload = &b[codec::HEADER_LEN..];
        for i in 0..payload.len().min(80) {
            let mut p = payload.to_vec();
            p[i] ^= 0xff;
            let _ = Model::from_bytes(&codec::seal(MAGIC, VERSION, &p));
        }
        let mut p = payload.to_vec();
        p.push(0);
        assert!(matches!(
            Model::from_bytes(&codec::seal(MAGIC, VERSION, &p)),
            Err(RouterError::Format(_))
        ));
        // A flipped bit in the sealed file is caught by the checksum.
        let mut c = b.clone();
        c[40] ^= 1;
        assert!(matches!(Model::from_bytes(&c), Err(RouterError::Codec(_))));
    }
}
