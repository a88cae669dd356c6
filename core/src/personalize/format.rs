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
use crate::msgpack::{MsgpackError, Reader, Writer};

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

/// A payload type with a hand-written MessagePack form ([`crate::msgpack`]):
/// byte-identical to `rmp_serde::to_vec_named` of its serde derive, and read
/// from anything `rmp_serde::from_slice` reads into it (tests check both), but
/// without serde's generic decoders in the wasm binary.
trait Payload: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError>;
}

fn decode_payload<T: Payload>(what: &'static str, payload: &[u8]) -> Result<T, PersonalizeError> {
    T::read(&mut Reader::new(payload))
        .map_err(|e| corrupt(what, format!("undecodable payload: {e}")))
}

fn encode_payload<T: Payload>(value: &T) -> Vec<u8> {
    let mut w = Writer::new();
    value.write(&mut w);
    w.buf
}

fn write_f32_le(w: &mut Writer, v: &[f32]) {
    let mut b = Vec::with_capacity(v.len() * 4);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    w.bin(&b);
}

fn read_f32_le(r: &mut Reader<'_>) -> Result<Vec<f32>, MsgpackError> {
    let b = r.bin()?;
    if b.len() % 4 != 0 {
        return Err(MsgpackError(format!(
            "f32 blob of {} bytes is not a multiple of 4",
            b.len()
        )));
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn write_opt_i64(w: &mut Writer, v: Option<i64>) {
    match v {
        Some(v) => w.sint(v),
        None => w.nil(),
    }
}

impl Payload for LogQuant {
    fn write(&self, w: &mut Writer) {
        w.map(3);
        w.str("lo");
        w.f32(self.lo);
        w.str("hi");
        w.f32(self.hi);
        w.str("codes");
        w.bin(&self.codes.0);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError> {
        let mut f = r.fields("LogQuant", &["lo", "hi", "codes"])?;
        let (mut lo, mut hi, mut codes) = (None, None, None);
        while let Some(i) = f.next(r)? {
            match i {
                0 => lo = Some(r.f32()?),
                1 => hi = Some(r.f32()?),
                _ => codes = Some(Blob(r.bin()?)),
            }
        }
        Ok(LogQuant {
            lo: f.need(lo, 0)?,
            hi: f.need(hi, 1)?,
            codes: f.need(codes, 2)?,
        })
    }
}

impl Payload for StoredFisher {
    fn write(&self, w: &mut Writer) {
        w.map(1);
        match self {
            StoredFisher::Separable {
                a_rows,
                a_cols,
                b_rows,
                b_cols,
            } => {
                w.str("Separable");
                w.map(4);
                for (k, q) in [
                    ("a_rows", a_rows),
                    ("a_cols", a_cols),
                    ("b_rows", b_rows),
                    ("b_cols", b_cols),
                ] {
                    w.str(k);
                    q.write(w);
                }
            }
            StoredFisher::Full { a, b } => {
                w.str("Full");
                w.map(2);
                w.str("a");
                w.bin(&a.0);
                w.str("b");
                w.bin(&b.0);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError> {
        const SEP: &[&str] = &["a_rows", "a_cols", "b_rows", "b_cols"];
        match r.variant("StoredFisher", &["Separable", "Full"])? {
            (0, true) => {
                let mut f = r.fields("StoredFisher::Separable", SEP)?;
                let mut q: [Option<LogQuant>; 4] = Default::default();
                while let Some(i) = f.next(r)? {
                    q[i] = Some(LogQuant::read(r)?);
                }
                let [a_rows, a_cols, b_rows, b_cols] = q;
                Ok(StoredFisher::Separable {
                    a_rows: f.need(a_rows, 0)?,
                    a_cols: f.need(a_cols, 1)?,
                    b_rows: f.need(b_rows, 2)?,
                    b_cols: f.need(b_cols, 3)?,
                })
            }
            (1, true) => {
                let mut f = r.fields("StoredFisher::Full", &["a", "b"])?;
                let (mut a, mut b) = (None, None);
                while let Some(i) = f.next(r)? {
                    let v = Some(Blob(r.bin()?));
                    if i == 0 {
                        a = v;
                    } else {
                        b = v;
                    }
                }
                Ok(StoredFisher::Full {
                    a: f.need(a, 0)?,
                    b: f.need(b, 1)?,
                })
            }
            _ => Err(MsgpackError(
                "StoredFisher: a struct variant needs its fields".into(),
            )),
        }
    }
}

impl Payload for InteractionKind {
    fn write(&self, w: &mut Writer) {
        match self {
            InteractionKind::SearchClick => w.str("search_click"),
            InteractionKind::WatchStart => w.str("watch_start"),
            InteractionKind::WatchComplete => w.str("watch_complete"),
            InteractionKind::Rating { stars } => {
                w.map(1);
                w.str("rating");
                w.map(1);
                w.str("stars");
                w.f32(*stars);
            }
            InteractionKind::Skip => w.str("skip"),
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError> {
        const VARIANTS: &[&str] = &[
            "search_click",
            "watch_start",
            "watch_complete",
            "rating",
            "skip",
        ];
        let (i, content) = r.variant("InteractionKind", VARIANTS)?;
        if i == 3 {
            if !content {
                return Err(MsgpackError("InteractionKind: rating needs stars".into()));
            }
            let mut f = r.fields("InteractionKind::Rating", &["stars"])?;
            let mut stars = None;
            while f.next(r)?.is_some() {
                stars = Some(r.f32()?);
            }
            return Ok(InteractionKind::Rating {
                stars: f.need(stars, 0)?,
            });
        }
        if content {
            // `{variant: nil}`: a unit variant in map form.
            r.nil()?;
        }
        Ok(match i {
            0 => InteractionKind::SearchClick,
            1 => InteractionKind::WatchStart,
            2 => InteractionKind::WatchComplete,
            _ => InteractionKind::Skip,
        })
    }
}

impl Payload for StoredPending {
    fn write(&self, w: &mut Writer) {
        w.map(5);
        w.str("kind");
        self.kind.write(w);
        w.str("id");
        w.str(&self.id);
        w.str("s");
        w.f32(self.s);
        w.str("q");
        w.bin(&self.q.0);
        w.str("e");
        w.bin(&self.e.0);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError> {
        let mut f = r.fields("StoredPending", &["kind", "id", "s", "q", "e"])?;
        let (mut kind, mut id, mut s, mut q, mut e) = (None, None, None, None, None);
        while let Some(i) = f.next(r)? {
            match i {
                0 => kind = Some(InteractionKind::read(r)?),
                1 => id = Some(r.str()?.to_string()),
                2 => s = Some(r.f32()?),
                3 => q = Some(Blob(r.bin()?)),
                _ => e = Some(Blob(r.bin()?)),
            }
        }
        Ok(StoredPending {
            kind: f.need(kind, 0)?,
            id: f.need(id, 1)?,
            s: f.need(s, 2)?,
            q: f.need(q, 3)?,
            e: f.need(e, 4)?,
        })
    }
}

const ADAPTER_FIELDS: &[&str] = &[
    "d", "rank", "dtype", "alpha", "user", "gver", "seed", "n", "trained", "adapts", "upd",
    "adapt_t", "loss", "pend_n", "pend_s", "a", "b", "f_t", "fisher", "pending",
];

impl Payload for StoredAdapter {
    fn write(&self, w: &mut Writer) {
        let k = |w: &mut Writer, i: usize| w.str(ADAPTER_FIELDS[i]);
        w.map(ADAPTER_FIELDS.len());
        k(w, 0);
        w.uint(self.d as u64);
        k(w, 1);
        w.uint(self.rank as u64);
        k(w, 2);
        w.uint(self.dtype as u64);
        k(w, 3);
        w.f32(self.alpha);
        k(w, 4);
        w.str(&self.user);
        for (i, v) in [(5, self.gver), (6, self.seed), (7, self.n)] {
            k(w, i);
            w.uint(v);
        }
        k(w, 8);
        w.uint(self.trained);
        k(w, 9);
        w.uint(self.adapts);
        k(w, 10);
        write_opt_i64(w, self.upd);
        k(w, 11);
        write_opt_i64(w, self.adapt_t);
        k(w, 12);
        match self.loss {
            Some(l) => w.f32(l),
            None => w.nil(),
        }
        k(w, 13);
        w.uint(self.pend_n);
        k(w, 14);
        w.f32(self.pend_s);
        k(w, 15);
        w.bin(&self.a.0);
        k(w, 16);
        w.bin(&self.b.0);
        k(w, 17);
        w.uint(self.f_t as u64);
        k(w, 18);
        self.fisher.write(w);
        k(w, 19);
        w.array(self.pending.len());
        for p in &self.pending {
            p.write(w);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError> {
        let mut f = r.fields("StoredAdapter", ADAPTER_FIELDS)?;
        let (mut d, mut rank, mut dtype, mut alpha, mut user) = (None, None, None, None, None);
        let mut u = [None; 6]; // gver, seed, n, trained, adapts, pend_n
        let (mut upd, mut adapt_t, mut loss) = (None, None, None);
        let (mut pend_s, mut a, mut b, mut f_t, mut fisher, mut pending) =
            (None, None, None, None, None, None);
        while let Some(i) = f.next(r)? {
            match i {
                0 => d = Some(r.u32()?),
                1 => rank = Some(r.u32()?),
                2 => dtype = Some(r.u8()?),
                3 => alpha = Some(r.f32()?),
                4 => user = Some(r.str()?.to_string()),
                5..=9 => u[i - 5] = Some(r.u64()?),
                10 => upd = r.option(|r| r.i64())?,
                11 => adapt_t = r.option(|r| r.i64())?,
                12 => loss = r.option(|r| r.f32())?,
                13 => u[5] = Some(r.u64()?),
                14 => pend_s = Some(r.f32()?),
                15 => a = Some(Blob(r.bin()?)),
                16 => b = Some(Blob(r.bin()?)),
                17 => f_t = Some(r.u32()?),
                18 => fisher = Some(StoredFisher::read(r)?),
                _ => {
                    let n = r.array()?;
                    let mut v = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        v.push(StoredPending::read(r)?);
                    }
                    pending = Some(v);
                }
            }
        }
        Ok(StoredAdapter {
            d: f.need(d, 0)?,
            rank: f.need(rank, 1)?,
            dtype: f.need(dtype, 2)?,
            alpha: f.need(alpha, 3)?,
            user: f.need(user, 4)?,
            gver: f.need(u[0], 5)?,
            seed: f.need(u[1], 6)?,
            n: f.need(u[2], 7)?,
            trained: f.need(u[3], 8)?,
            adapts: f.need(u[4], 9)?,
            upd,
            adapt_t,
            loss,
            pend_n: f.need(u[5], 13)?,
            pend_s: f.need(pend_s, 14)?,
            a: f.need(a, 15)?,
            b: f.need(b, 16)?,
            f_t: f.need(f_t, 17)?,
            fisher: f.need(fisher, 18)?,
            pending: f.need(pending, 19)?,
        })
    }
}

impl Payload for StoredGlobal {
    fn write(&self, w: &mut Writer) {
        w.map(6);
        w.str("version");
        w.uint(self.version);
        w.str("d");
        w.uint(self.d as u64);
        w.str("rank");
        w.uint(self.rank as u64);
        w.str("alpha");
        w.f32(self.alpha);
        w.str("a");
        write_f32_le(w, &self.a);
        w.str("b");
        write_f32_le(w, &self.b);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError> {
        let mut f = r.fields("StoredGlobal", &["version", "d", "rank", "alpha", "a", "b"])?;
        let (mut version, mut d, mut rank, mut alpha, mut a, mut b) =
            (None, None, None, None, None, None);
        while let Some(i) = f.next(r)? {
            match i {
                0 => version = Some(r.u64()?),
                1 => d = Some(r.u32()?),
                2 => rank = Some(r.u32()?),
                3 => alpha = Some(r.f32()?),
                4 => a = Some(read_f32_le(r)?),
                _ => b = Some(read_f32_le(r)?),
            }
        }
        Ok(StoredGlobal {
            version: f.need(version, 0)?,
            d: f.need(d, 1)?,
            rank: f.need(rank, 2)?,
            alpha: f.need(alpha, 3)?,
            a: f.need(a, 4)?,
            b: f.need(b, 5)?,
        })
    }
}

const UPDATE_FIELDS: &[&str] = &[
    "user_id",
    "global_version",
    "d",
    "rank",
    "alpha",
    "scale",
    "a",
    "b",
    "fisher_a",
    "fisher_b",
    "sample_count",
];

impl Payload for AdapterUpdate {
    fn write(&self, w: &mut Writer) {
        w.map(UPDATE_FIELDS.len());
        w.str("user_id");
        w.str(&self.user_id);
        w.str("global_version");
        w.uint(self.global_version);
        w.str("d");
        w.uint(self.d as u64);
        w.str("rank");
        w.uint(self.rank as u64);
        w.str("alpha");
        w.f32(self.alpha);
        w.str("scale");
        w.f32(self.scale);
        for (k, v) in [
            ("a", &self.a),
            ("b", &self.b),
            ("fisher_a", &self.fisher_a),
            ("fisher_b", &self.fisher_b),
        ] {
            w.str(k);
            write_f32_le(w, v);
        }
        w.str("sample_count");
        w.uint(self.sample_count);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, MsgpackError> {
        let mut f = r.fields("AdapterUpdate", UPDATE_FIELDS)?;
        let (mut user_id, mut global_version, mut d, mut rank) = (None, None, None, None);
        let (mut alpha, mut scale, mut sample_count) = (None, None, None);
        let mut t: [Option<Vec<f32>>; 4] = Default::default(); // a, b, fisher_a, fisher_b
        while let Some(i) = f.next(r)? {
            match i {
                0 => user_id = Some(r.str()?.to_string()),
                1 => global_version = Some(r.u64()?),
                2 => d = Some(r.u32()?),
                3 => rank = Some(r.u32()?),
                4 => alpha = Some(r.f32()?),
                5 => scale = Some(r.f32()?),
                6..=9 => t[i - 6] = Some(read_f32_le(r)?),
                _ => sample_count = Some(r.u64()?),
            }
        }
        let [a, b, fisher_a, fisher_b] = t;
        Ok(AdapterUpdate {
            user_id: f.need(user_id, 0)?,
            global_version: f.need(global_version, 1)?,
            d: f.need(d, 2)?,
            rank: f.need(rank, 3)?,
            alpha: f.need(alpha, 4)?,
            scale: f.need(scale, 5)?,
            a: f.need(a, 6)?,
            b: f.need(b, 7)?,
            fisher_a: f.need(fisher_a, 8)?,
            fisher_b: f.need(fisher_b, 9)?,
            sample_count: f.need(sample_count, 10)?,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
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
#[cfg_attr(test, derive(Debug, PartialEq))]
struct StoredPending {
    kind: InteractionKind,
    id: String,
    s: f32,
    q: Blob,
    e: Blob,
}

#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
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
        seal(
            ADAPTER_MAGIC,
            ADAPTER_FORMAT_VERSION,
            &encode_payload(&self.stored()),
        )
    }

    /// The payload [`Adapter::to_bytes`] writes.
    fn stored(&self) -> StoredAdapter {
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
        StoredAdapter {
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
        }
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
#[cfg_attr(test, derive(Debug, PartialEq))]
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
        // Written so that a NaN or infinite scale fails it (a NaN comparison is false).
        let scale_ok = self.scale.is_finite()
            && (self.scale - self.alpha / r as f32).abs() <= 1e-6 * self.scale.abs().max(1.0);
        if !(self.alpha.is_finite() && self.alpha > 0.0 && scale_ok) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn blob(rng: &mut Rng, n: usize) -> Blob {
        Blob((0..n).map(|_| rng.uniform(0.0, 256.0) as u8).collect())
    }

    fn floats(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.normal()).collect()
    }

    fn quant(rng: &mut Rng, n: usize) -> LogQuant {
        LogQuant {
            lo: rng.uniform(-10.0, 0.0),
            hi: rng.uniform(0.0, 1.0),
            codes: blob(rng, n),
        }
    }

    /// Stored adapters covering every field shape: both Fisher forms, every
    /// interaction kind, `None` / negative / extreme optionals, empty and long
    /// strings, and blobs of bin8 and bin16 size.
    fn adapters() -> Vec<StoredAdapter> {
        let mut rng = Rng::new(11);
        let kinds = [
            InteractionKind::SearchClick,
            InteractionKind::WatchStart,
            InteractionKind::WatchComplete,
            InteractionKind::Rating { stars: 3.5 },
            InteractionKind::Skip,
        ];
        let mut out = Vec::new();
        for (k, d) in [4usize, 16, 384, 40].into_iter().enumerate() {
            let r = 2 + k;
            let fisher = if k % 2 == 0 {
                StoredFisher::Separable {
                    a_rows: quant(&mut rng, r),
                    a_cols: quant(&mut rng, d),
                    b_rows: quant(&mut rng, r),
                    b_cols: quant(&mut rng, d),
                }
            } else {
                StoredFisher::Full {
                    a: blob(&mut rng, 4 * r * d),
                    b: blob(&mut rng, 4 * r * d),
                }
            };
            out.push(StoredAdapter {
                d: d as u32,
                rank: r as u32,
                dtype: (k % 2) as u8,
                alpha: 8.0 + k as f32,
                user: ["", "viewer", &"ü".repeat(150), &"x".repeat(40)][k].to_string(),
                gver: [0, 200, u64::MAX, 1 << 40][k],
                seed: [7, u64::MAX, 65536, 128][k],
                n: 12 * k as u64,
                trained: 5,
                adapts: k as u64,
                upd: [None, Some(-5), Some(i64::MAX), Some(i64::MIN)][k],
                adapt_t: [Some(1_700_000_000), None, Some(-40_000), Some(0)][k],
                loss: [None, Some(0.25), Some(-1e-30), None][k],
                pend_n: 3,
                pend_s: 1.75,
                a: blob(&mut rng, 4 * r * d),
                b: blob(&mut rng, 4 * r * d),
                f_t: [0, 1, u32::MAX, 300][k],
                fisher,
                pending: (0..k * 2)
                    .map(|i| StoredPending {
                        kind: kinds[i % kinds.len()],
                        id: format!("title-{i}"),
                        s: -0.5 * i as f32,
                        q: blob(&mut rng, 4 * d),
                        e: blob(&mut rng, 2 * d),
                    })
                    .collect(),
            });
        }
        out
    }

    /// Our bytes equal rmp_serde's named encoding; we read its named and compact
    /// encodings; rmp_serde (the sync server's bare-update decoder) reads ours.
    fn check<T>(v: &T)
    where
        T: Payload + Serialize + for<'a> Deserialize<'a> + PartialEq + core::fmt::Debug,
    {
        let ours = encode_payload(v);
        assert_eq!(ours, rmp_serde::to_vec_named(v).unwrap());
        assert_eq!(&decode_payload::<T>("t", &ours).unwrap(), v);
        let compact = rmp_serde::to_vec(v).unwrap();
        assert_eq!(&decode_payload::<T>("t", &compact).unwrap(), v);
        assert_eq!(&rmp_serde::from_slice::<T>(&ours).unwrap(), v);
    }

    #[test]
    fn payloads_match_rmp_serde_both_ways() {
        for a in adapters() {
            check(&a);
        }
        let mut rng = Rng::new(5);
        for (d, r) in [(3usize, 1usize), (16, 8), (384, 8)] {
            check(&StoredGlobal {
                version: (d * r) as u64,
                d: d as u32,
                rank: r as u32,
                alpha: 16.0,
                a: floats(&mut rng, r * d),
                b: floats(&mut rng, r * d),
            });
            check(&AdapterUpdate {
                user_id: "viewer-ß".repeat(d / 3),
                global_version: d as u64 * 1000,
                d: d as u32,
                rank: r as u32,
                alpha: 8.0,
                scale: 8.0 / r as f32,
                a: floats(&mut rng, r * d),
                b: floats(&mut rng, r * d),
                fisher_a: floats(&mut rng, r * d),
                fisher_b: floats(&mut rng, r * d),
                sample_count: u64::MAX - d as u64,
            });
        }
    }

    #[test]
    fn payload_errors_name_the_field() {
        let a = &adapters()[1];
        let mut w = Writer::new();
        a.write(&mut w);
        // Rename the "user" key to an unknown one: skipped, then missing.
        let at = w.buf.windows(5).position(|x| x == b"\xa4user").unwrap();
        w.buf[at + 1] = b'v';
        let e = decode_payload::<StoredAdapter>("stored adapter", &w.buf).unwrap_err();
        assert!(e.to_string().contains("missing field `user`"), "{e}");
        // An f32 blob whose length is not a multiple of 4.
        let mut w = Writer::new();
        w.map(1);
        w.str("a");
        w.bin(&[0; 6]);
        let e = decode_payload::<StoredGlobal>("global adapter", &w.buf).unwrap_err();
        assert!(e.to_string().contains("not a multiple of 4"), "{e}");
        // Interaction kinds: unknown name, a rating without stars, map-form unit variant.
        for (b, want) in [
            (&b"\xa4nope"[..], Err("unknown variant")),
            (&b"\xa6rating"[..], Err("rating needs stars")),
            (&b"\x81\xa4skip\xc0"[..], Ok(InteractionKind::Skip)),
            (&b"\x04"[..], Ok(InteractionKind::Skip)),
        ] {
            match (InteractionKind::read(&mut Reader::new(b)), want) {
                (Ok(k), Ok(w)) => assert_eq!(k, w),
                (Err(e), Err(w)) => assert!(e.0.contains(w), "{e}"),
                (got, _) => panic!("{got:?} for {b:?}"),
            }
        }
    }
}
