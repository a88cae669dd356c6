//! Binary formats, each a MessagePack payload (named fields) inside the
//! checksummed [`crate::codec`] envelope (magic, format version, length, CRC-32).
//!
//! Tensors are raw little-endian byte blobs (MessagePack `bin`), not arrays of
//! numbers, so a d = 384, r = 8 per-viewer adapter costs 24 KiB of factors in
//! f32 / 12 KiB in f16 plus well under 2 KiB of header, counters and
//! (separable, 8-bit) Fisher. The payload starts with `d`, `rank` and `dtype`.
//!
//! | artifact | magic | contents |
//! |---|---|---|
//! | per-viewer adapter | `SNAD` | counters, A_u, B_u, Fisher, pending interactions |
//! | global tier | `SNAG` | version, A_g, B_g (f32) |
//! | federated update | `SNAU` | [`AdapterUpdate`] |

use std::collections::VecDeque;
use std::sync::Arc;

use half::f16;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::adapter::{check_shared, initial_a, Adapter, Pending, UserState, MAX_CONTENT_ID};
use super::ewc::{from_marginals, marginals, EwcState, LogQuant};
use super::lora::{transpose, BaseProjection, GlobalAdapter};
use super::signals::InteractionKind;
use super::{
    check_finite, check_len, Dtype, EwcAnchor, FisherStorage, PersonalizeConfig, PersonalizeError,
};
use crate::codec::{open, seal};

pub const ADAPTER_MAGIC: [u8; 4] = *b"SNAD";
pub const ADAPTER_FORMAT_VERSION: u16 = 1;
pub const GLOBAL_MAGIC: [u8; 4] = *b"SNAG";
pub const GLOBAL_FORMAT_VERSION: u16 = 1;
pub const UPDATE_MAGIC: [u8; 4] = *b"SNAU";
pub const UPDATE_FORMAT_VERSION: u16 = 1;

/// Bytes serialized as MessagePack `bin` (not an array of integers).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;
    fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str("a byte blob")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
        Ok(Blob(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(Blob(v))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        d.deserialize_byte_buf(BlobVisitor)
    }
}

/// `#[serde(with = "f32_le")]`: a `Vec<f32>` as one little-endian byte blob.
pub mod f32_le {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        let mut b = Vec::with_capacity(v.len() * 4);
        for x in v {
            b.extend_from_slice(&x.to_le_bytes());
        }
        s.serialize_bytes(&b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let b = Blob::deserialize(d)?;
        if b.0.len() % 4 != 0 {
            return Err(de::Error::custom(format!(
                "f32 blob of {} bytes is not a multiple of 4",
                b.0.len()
            )));
        }
        Ok(b.0
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Largest finite f16.
const F16_MAX: f32 = 65504.0;

/// Encode in `dtype`. f16 saturates at ±65504 so that a finite tensor always
/// reloads as finite (round-to-nearest otherwise).
pub(crate) fn encode_tensor(v: &[f32], dtype: Dtype) -> Blob {
    let mut b = Vec::with_capacity(v.len() * dtype.size());
    match dtype {
        Dtype::F32 => v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes())),
        Dtype::F16 => v.iter().for_each(|x| {
            b.extend_from_slice(&f16::from_f32(x.clamp(-F16_MAX, F16_MAX)).to_le_bytes())
        }),
    }
    Blob(b)
}

/// f16 bits → f32, exact for every finite, infinite and NaN input, without
/// branches on the common path: shift exponent and mantissa into f32
/// position and rescale by 2^112 (which also renormalizes subnormals).
#[inline]
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let v = if em >= 0x7c00 {
        // Inf / NaN: all-ones exponent.
        f32::from_bits(0x7f80_0000 | ((em & 0x03ff) << 13))
    } else {
        f32::from_bits(em << 13) * f32::from_bits(0x7780_0000) // 2^112
    };
    f32::from_bits(v.to_bits() | sign)
}

pub(crate) fn decode_tensor(
    blob: &Blob,
    dtype: Dtype,
    n: usize,
    what: &'static str,
) -> Result<Vec<f32>, PersonalizeError> {
    check_len(what, n * dtype.size(), blob.0.len())?;
    let v: Vec<f32> = match dtype {
        Dtype::F32 => blob
            .0
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => blob
            .0
            .chunks_exact(2)
            .map(|c| f16_bits_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
    };
    check_finite(what, &v)?;
    Ok(v)
}

fn corrupt(what: &'static str, msg: impl Into<String>) -> PersonalizeError {
    PersonalizeError::Corrupt {
        what,
        msg: msg.into(),
    }
}

fn decode_payload<'a, T: Deserialize<'a>>(
    what: &'static str,
    payload: &'a [u8],
) -> Result<T, PersonalizeError> {
    rmp_serde::from_slice(payload).map_err(|e| corrupt(what, format!("undecodable payload: {e}")))
}

fn encode_payload<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("MessagePack encoding of an in-memory value cannot fail")
}

#[derive(Serialize, Deserialize)]
enum StoredFisher {
    /// Row / column sums of F_A (r × d) and F_Bᵀ (r × d), 8-bit log-quantized.
    Separable {
        a_rows: LogQuant,
        a_cols: LogQuant,
        b_rows: LogQuant,
        b_cols: LogQuant,
    },
    Full {
        a: Blob,
        b: Blob,
    },
}

#[derive(Serialize, Deserialize)]
struct StoredPending {
    kind: InteractionKind,
    id: String,
    s: f32,
    q: Blob,
    e: Blob,
}

#[derive(Serialize, Deserialize)]
struct StoredAdapter {
    d: u32,
    rank: u32,
    dtype: u8,
    alpha: f32,
    user: String,
    gver: u64,
    seed: u64,
    n: u64,
    trained: u64,
    adapts: u64,
    upd: Option<i64>,
    adapt_t: Option<i64>,
    loss: Option<f32>,
    pend_n: u64,
    pend_s: f32,
    a: Blob,
    b: Blob,
    f_t: u32,
    fisher: StoredFisher,
    pending: Vec<StoredPending>,
}

impl Adapter {
    /// Serialize in `cfg.dtype` with `cfg.fisher_storage`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (d, r, dt) = (self.cfg.d, self.cfg.rank, self.cfg.dtype);
        let st = &self.st;
        let fisher = match self.cfg.fisher_storage {
            FisherStorage::Separable => {
                let (ar, ac) = marginals(&st.ewc.fisher_a, r, d);
                let (br, bc) = marginals(&st.ewc.fisher_b, r, d);
                StoredFisher::Separable {
                    a_rows: LogQuant::encode(&ar),
                    a_cols: LogQuant::encode(&ac),
                    b_rows: LogQuant::encode(&br),
                    b_cols: LogQuant::encode(&bc),
                }
            }
            FisherStorage::Full => StoredFisher::Full {
                a: encode_tensor(&st.ewc.fisher_a, dt),
                b: encode_tensor(&st.ewc.fisher_b, dt),
            },
        };
        let stored = StoredAdapter {
            d: d as u32,
            rank: r as u32,
            dtype: dt.code(),
            alpha: self.cfg.alpha,
            user: st.user_id.clone(),
            gver: st.global_version,
            seed: st.init_seed,
            n: st.interaction_count,
            trained: st.trained_samples,
            adapts: st.adaptations,
            upd: st.last_updated,
            adapt_t: st.last_adaptation,
            loss: st.last_loss,
            pend_n: st.pending_count,
            pend_s: st.pending_signal,
            a: encode_tensor(&st.a, dt),
            b: encode_tensor(&st.b, dt),
            f_t: st.ewc.updates,
            fisher,
            pending: st
                .pending
                .iter()
                .map(|p| StoredPending {
                    kind: p.kind,
                    id: p.content_id.clone(),
                    s: p.strength,
                    q: encode_tensor(&p.query, dt),
                    e: encode_tensor(&p.item, dt),
                })
                .collect(),
        };
        seal(
            ADAPTER_MAGIC,
            ADAPTER_FORMAT_VERSION,
            &encode_payload(&stored),
        )
    }

    /// Load bytes from [`Adapter::to_bytes`] (any dtype). Rejects corrupt,
    /// truncated, wrong-version, wrong-shape, other-user and non-finite data.
    pub fn from_bytes(
        bytes: &[u8],
        user_id: &str,
        cfg: &PersonalizeConfig,
        base: Arc<BaseProjection>,
        global: Arc<GlobalAdapter>,
    ) -> Result<Adapter, PersonalizeError> {
        const W: &str = "stored adapter";
        check_shared(cfg, &base, &global)?;
        let payload = open(W, ADAPTER_MAGIC, ADAPTER_FORMAT_VERSION, bytes)?;
        let s: StoredAdapter = decode_payload(W, payload)?;
        let (d, r) = (cfg.d, cfg.rank);
        let mismatch = |what, stored: String, expected: String| PersonalizeError::Mismatch {
            what,
            stored,
            expected,
        };
        if s.d as usize != d {
            return Err(mismatch("stored adapter d", s.d.to_string(), d.to_string()));
        }
        if s.rank as usize != r {
            return Err(mismatch(
                "stored adapter rank",
                s.rank.to_string(),
                r.to_string(),
            ));
        }
        if s.alpha != cfg.alpha {
            return Err(mismatch(
                "stored adapter alpha",
                s.alpha.to_string(),
                cfg.alpha.to_string(),
            ));
        }
        if s.user != user_id {
            return Err(mismatch(
                "stored adapter user id",
                s.user,
                user_id.to_string(),
            ));
        }
        let dt = Dtype::from_code(s.dtype)
            .ok_or_else(|| corrupt(W, format!("unknown dtype code {}", s.dtype)))?;
        let a = decode_tensor(&s.a, dt, r * d, "stored adapter A")?;
        let b = decode_tensor(&s.b, dt, r * d, "stored adapter Bᵀ")?;
        // Learning moves each entry by at most lr per step; anything beyond the
        // f16 range is corruption, not a trained adapter.
        if a.iter().chain(&b).any(|x| x.abs() > F16_MAX) {
            return Err(corrupt(W, "factor entry beyond ±65504"));
        }
        let (fisher_a, fisher_b) = match &s.fisher {
            StoredFisher::Full { a, b } => (
                decode_tensor(a, dt, r * d, "stored Fisher A")?,
                decode_tensor(b, dt, r * d, "stored Fisher Bᵀ")?,
            ),
            StoredFisher::Separable {
                a_rows,
                a_cols,
                b_rows,
                b_cols,
            } => {
                let dq = |q: &LogQuant, n: usize, what: &'static str| {
                    check_len(what, n, q.codes.0.len())?;
                    if !(q.lo.is_finite()
                        && q.hi.is_finite()
                        && q.hi >= q.lo
                        && q.hi < 80.0
                        && q.lo > -120.0)
                    {
                        return Err(corrupt(what, format!("bad range [{}, {}]", q.lo, q.hi)));
                    }
                    Ok(q.decode())
                };
                (
                    from_marginals(
                        &dq(a_rows, r, "stored Fisher A rows")?,
                        &dq(a_cols, d, "stored Fisher A cols")?,
                    ),
                    from_marginals(
                        &dq(b_rows, r, "stored Fisher Bᵀ rows")?,
                        &dq(b_cols, d, "stored Fisher Bᵀ cols")?,
                    ),
                )
            }
        };
        check_finite("stored Fisher A", &fisher_a)?;
        check_finite("stored Fisher B", &fisher_b)?;
        if fisher_a.iter().chain(&fisher_b).any(|&x| x < 0.0) {
            return Err(corrupt(W, "negative Fisher entry"));
        }
        if !s.pend_s.is_finite() || s.pend_s < 0.0 {
            return Err(corrupt(W, format!("bad pending signal {}", s.pend_s)));
        }
        if let Some(l) = s.loss {
            if !l.is_finite() {
                return Err(corrupt(W, "non-finite last loss"));
            }
        }
        if s.pending.len() > cfg.max_pending {
            return Err(corrupt(
                W,
                format!(
                    "{} pending interactions, config allows {}",
                    s.pending.len(),
                    cfg.max_pending
                ),
            ));
        }
        let mut pending = VecDeque::with_capacity(s.pending.len());
        for p in s.pending {
            p.kind.validate()?;
            if !p.s.is_finite() || p.s == 0.0 {
                return Err(corrupt(W, format!("bad pending strength {}", p.s)));
            }
            if p.id.len() > MAX_CONTENT_ID {
                return Err(corrupt(W, "pending content id too long"));
            }
            let (q, e) = (
                decode_tensor(&p.q, dt, d, "stored pending query")?,
                decode_tensor(&p.e, dt, d, "stored pending item")?,
            );
            super::check_embedding_values("stored pending query", &q)?;
            super::check_embedding_values("stored pending item", &e)?;
            pending.push_back(Pending {
                kind: p.kind,
                content_id: p.id,
                strength: p.s,
                query: q,
                item: e,
            });
        }
        // Anchor: between adaptations a consolidated anchor equals θ; the
        // initial anchor is regenerated from the stored seed.
        let (anchor_a, anchor_b) = match cfg.ewc_anchor {
            EwcAnchor::Consolidated => (a.clone(), b.clone()),
            EwcAnchor::Initial => (initial_a(cfg, s.seed), vec![0.0; d * r]),
        };
        let ewc = EwcState {
            fisher_a,
            fisher_b,
            updates: s.f_t,
            anchor_a,
            anchor_b,
        };
        Ok(Adapter {
            cfg: cfg.clone(),
            base,
            global,
            st: UserState {
                user_id: s.user,
                global_version: s.gver,
                init_seed: s.seed,
                a,
                b,
                ewc,
                interaction_count: s.n,
                trained_samples: s.trained,
                adaptations: s.adapts,
                last_updated: s.upd,
                last_adaptation: s.adapt_t,
                last_loss: s.loss,
                pending,
                pending_count: s.pend_n,
                pending_signal: s.pend_s,
            },
        })
    }

    /// The federated update for the sync server (see [`AdapterUpdate`]).
    pub fn export_update(&self) -> AdapterUpdate {
        let (fa, fb) = self.st.ewc.corrected(self.cfg.fisher_decay);
        AdapterUpdate {
            user_id: self.st.user_id.clone(),
            global_version: self.st.global_version,
            d: self.cfg.d as u32,
            rank: self.cfg.rank as u32,
            alpha: self.cfg.alpha,
            scale: self.cfg.scale(),
            a: self.st.a.clone(),
            b: transpose(&self.st.b, self.cfg.rank, self.cfg.d),
            fisher_a: fa,
            fisher_b: transpose(&fb, self.cfg.rank, self.cfg.d),
            sample_count: self.st.trained_samples,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredGlobal {
    version: u64,
    d: u32,
    rank: u32,
    alpha: f32,
    #[serde(with = "f32_le")]
    a: Vec<f32>,
    #[serde(with = "f32_le")]
    b: Vec<f32>,
}

impl GlobalAdapter {
    /// `SNAG` envelope, f32 factors.
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = StoredGlobal {
            version: self.version,
            d: self.d as u32,
            rank: self.rank as u32,
            alpha: self.alpha,
            a: self.a.clone(),
            b: self.b(),
        };
        seal(GLOBAL_MAGIC, GLOBAL_FORMAT_VERSION, &encode_payload(&s))
    }

    /// Decode and check against `cfg` (d, rank, α, finiteness).
    pub fn from_bytes(bytes: &[u8], cfg: &PersonalizeConfig) -> Result<Self, PersonalizeError> {
        const W: &str = "global adapter";
        let payload = open(W, GLOBAL_MAGIC, GLOBAL_FORMAT_VERSION, bytes)?;
        let s: StoredGlobal = decode_payload(W, payload)?;
        if s.d as usize != cfg.d || s.rank as usize != cfg.rank || s.alpha != cfg.alpha {
            return Err(PersonalizeError::Mismatch {
                what: "global adapter shape (d, rank, alpha)",
                stored: format!("({}, {}, {})", s.d, s.rank, s.alpha),
                expected: format!("({}, {}, {})", cfg.d, cfg.rank, cfg.alpha),
            });
        }
        GlobalAdapter::from_factors(s.version, cfg, s.a, s.b)
    }
}

/// What a device sends to the sync server: its per-viewer factors, the
/// global version they were trained on top of, the bias-corrected Fisher
/// diagonal (for Fisher-weighted aggregation) and how many interactions they
/// summarize. The viewer's weight update is `ΔW_u = scale · B · A`
/// (`scale = α / r`, A: r × d, B: d × r, row-major); the factors, not the
/// d × d product, are sent. Note factors are only defined up to an invertible
/// r × r mixing (B M, M⁻¹ A): an aggregator must combine products (or
/// re-factorize), not average A and B separately.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterUpdate {
    pub user_id: String,
    pub global_version: u64,
    pub d: u32,
    pub rank: u32,
    pub alpha: f32,
    pub scale: f32,
    #[serde(with = "f32_le")]
    pub a: Vec<f32>,
    #[serde(with = "f32_le")]
    pub b: Vec<f32>,
    #[serde(with = "f32_le")]
    pub fisher_a: Vec<f32>,
    #[serde(with = "f32_le")]
    pub fisher_b: Vec<f32>,
    pub sample_count: u64,
}

impl AdapterUpdate {
    /// `SNAU` envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        seal(UPDATE_MAGIC, UPDATE_FORMAT_VERSION, &encode_payload(self))
    }

    /// Decode and check internal consistency (lengths, finiteness, scale = α/r).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PersonalizeError> {
        const W: &str = "adapter update";
        let payload = open(W, UPDATE_MAGIC, UPDATE_FORMAT_VERSION, bytes)?;
        let u: AdapterUpdate = decode_payload(W, payload)?;
        u.validate()?;
        Ok(u)
    }

    pub fn validate(&self) -> Result<(), PersonalizeError> {
        let (d, r) = (self.d as usize, self.rank as usize);
        if d == 0 || d > super::config::MAX_DIM || r == 0 || r > super::config::MAX_RANK {
            return Err(corrupt(
                "adapter update",
                format!("bad shape d={d} rank={r}"),
            ));
        }
        check_len("update A", r * d, self.a.len())?;
        check_len("update B", d * r, self.b.len())?;
        check_len("update Fisher A", r * d, self.fisher_a.len())?;
        check_len("update Fisher B", d * r, self.fisher_b.len())?;
        for (w, v) in [
            ("update A", &self.a),
            ("update B", &self.b),
            ("update Fisher A", &self.fisher_a),
            ("update Fisher B", &self.fisher_b),
        ] {
            check_finite(w, v)?;
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0)
            || (self.scale - self.alpha / r as f32).abs() > 1e-6 * self.scale.abs().max(1.0)
        {
            return Err(corrupt(
                "adapter update",
                format!("scale {} ≠ alpha {} / rank {r}", self.scale, self.alpha),
            ));
        }
        if self.fisher_a.iter().chain(&self.fisher_b).any(|&x| x < 0.0) {
            return Err(corrupt("adapter update", "negative Fisher entry"));
        }
        Ok(())
    }
}
