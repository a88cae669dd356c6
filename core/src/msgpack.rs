//! A small hand-written MessagePack writer and reader for the sealed formats
//! (adapter, global tier, federated update, the wasm engine state).
//!
//! It replaces `rmp_serde` on those paths because serde's generic MessagePack
//! decoders cost ~130 KB of wasm code; what it writes is byte-for-byte what
//! `rmp_serde::to_vec_named` writes for the same struct (tests compare the two),
//! and it reads everything `rmp_serde` reads for these types:
//!
//! * integers in their smallest encoding (`write_uint` / `write_sint` rules);
//!   any integer marker is accepted on read when the value fits the field;
//! * `f32` as `0xca`; on read also `f64` and integers (serde's `as` casts);
//! * strings as fixstr / str8 / str16 / str32, bytes as bin8 / bin16 / bin32
//!   (on read also a UTF-8 `bin` for a string and an array of `u8` for bytes);
//! * `None` as nil, `Some(x)` as `x`;
//! * structs as maps keyed by field name (named), on read also keyed by field
//!   index, or as an array of fields in declaration order (compact); unknown
//!   keys are skipped, duplicate keys are errors, a missing `Option` is `None`;
//! * enums: a unit variant as its name, a struct variant as a one-entry map
//!   `{name: {fields}}`; on read the variant may also be its index.
//!
//! The reader never panics and never allocates more than the input could hold.

use thiserror::Error;

/// Why a MessagePack payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct MsgpackError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, MsgpackError> {
    Err(MsgpackError(msg.into()))
}

/// Appends MessagePack values to a byte buffer (`rmp` encodings, smallest form).
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer::default()
    }

    fn len_header(&mut self, n: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
        if n < fix_max {
            self.buf.push(fix | n as u8);
        } else if n < 65536 {
            self.buf.push(m16);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(m32);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    /// Map header for `n` key/value pairs (a struct with `n` fields).
    pub fn map(&mut self, n: usize) {
        self.len_header(n, 0x80, 16, 0xde, 0xdf);
    }

    /// Array header for `n` elements.
    pub fn array(&mut self, n: usize) {
        self.len_header(n, 0x90, 16, 0xdc, 0xdd);
    }

    pub fn str(&mut self, s: &str) {
        let n = s.len();
        if n < 32 {
            self.buf.push(0xa0 | n as u8);
        } else if n < 256 {
            self.buf.extend_from_slice(&[0xd9, n as u8]);
        } else {
            self.len_header(n, 0, 0, 0xda, 0xdb);
        }
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn bin(&mut self, b: &[u8]) {
        let n = b.len();
        if n < 256 {
            self.buf.extend_from_slice(&[0xc4, n as u8]);
        } else {
            self.len_header(n, 0, 0, 0xc5, 0xc6);
        }
        self.buf.extend_from_slice(b);
    }

    pub fn uint(&mut self, v: u64) {
        if v < 128 {
            self.buf.push(v as u8);
        } else if v < 256 {
            self.buf.extend_from_slice(&[0xcc, v as u8]);
        } else if v < 65536 {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v < 1 << 32 {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub fn sint(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.buf.push(v as i8 as u8);
        } else if v >= -128 {
            self.buf.extend_from_slice(&[0xd0, v as i8 as u8]);
        } else if v >= -32768 {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= -(1 << 31) {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    pub fn f32(&mut self, v: f32) {
        self.buf.push(0xca);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn nil(&mut self) {
        self.buf.push(0xc0);
    }
}

/// Reads MessagePack values from a byte slice; every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

/// One MessagePack value's type, as far as this reader cares.
enum Kind {
    Int,
    Float,
    Nil,
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
    /// bool, ext: readable only by [`Reader::skip`].
    Other,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, pos: 0 }
    }

    /// True when every byte has been read.
    pub fn at_end(&self) -> bool {
        self.pos == self.b.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        if self.b.len() - self.pos < n {
            return fail(format!(
                "truncated: {n} bytes needed at byte {} of {}",
                self.pos,
                self.b.len()
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, MsgpackError> {
        Ok(self.take(n)?.iter().fold(0u64, |a, &x| a << 8 | x as u64))
    }

    fn peek(&self) -> Result<u8, MsgpackError> {
        match self.b.get(self.pos) {
            Some(&m) => Ok(m),
            None => fail(format!("truncated: value expected at byte {}", self.pos)),
        }
    }

    /// A length that must fit in what is left (each element takes at least a byte).
    fn len(&mut self, n: usize, per_item: usize) -> Result<usize, MsgpackError> {
        let n = self.be(n)? as usize;
        if n.saturating_mul(per_item) > self.b.len() - self.pos {
            return fail(format!(
                "truncated: length {n} at byte {} exceeds the payload",
                self.pos
            ));
        }
        Ok(n)
    }

    /// Classify the next value without consuming anything but its header
    /// (for ints and floats nothing is consumed).
    fn kind(&mut self) -> Result<Kind, MsgpackError> {
        let m = self.peek()?;
        let k = match m {
            0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => return Ok(Kind::Int),
            0xca | 0xcb => return Ok(Kind::Float),
            0xc0 => return Ok(Kind::Nil),
            0x80..=0x8f => Kind::Map((m & 0x0f) as usize),
            0x90..=0x9f => Kind::Array((m & 0x0f) as usize),
            0xa0..=0xbf => Kind::Str((m & 0x1f) as usize),
            _ => {
                self.pos += 1;
                let k = match m {
                    0xd9 => Kind::Str(self.len(1, 1)?),
                    0xda => Kind::Str(self.len(2, 1)?),
                    0xdb => Kind::Str(self.len(4, 1)?),
                    0xc4 => Kind::Bin(self.len(1, 1)?),
                    0xc5 => Kind::Bin(self.len(2, 1)?),
                    0xc6 => Kind::Bin(self.len(4, 1)?),
                    0xdc => Kind::Array(self.len(2, 1)?),
                    0xdd => Kind::Array(self.len(4, 1)?),
                    0xde => Kind::Map(self.len(2, 2)?),
                    0xdf => Kind::Map(self.len(4, 2)?),
                    _ => {
                        self.pos -= 1;
                        Kind::Other
                    }
                };
                return Ok(k);
            }
        };
        self.pos += 1;
        Ok(k)
    }

    fn unexpected<T>(&self, expected: &str) -> Result<T, MsgpackError> {
        let found = match self.b.get(self.pos) {
            Some(m) => format!("marker {m:#04x}"),
            None => "the end".into(),
        };
        fail(format!(
            "expected {expected}, found {found} at byte {}",
            self.pos
        ))
    }

    /// Any integer marker, as i128 (covers u64 and i64).
    fn int(&mut self) -> Result<i128, MsgpackError> {
        let m = self.peek()?;
        let v = match m {
            0x00..=0x7f => {
                self.pos += 1;
                m as i128
            }
            0xe0..=0xff => {
                self.pos += 1;
                m as i8 as i128
            }
            0xcc..=0xcf => {
                self.pos += 1;
                self.be(1 << (m - 0xcc))? as i128
            }
            0xd0..=0xd3 => {
                self.pos += 1;
                let n = 1usize << (m - 0xd0);
                let raw = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                ((raw << shift) as i64 >> shift) as i128
            }
            _ => return self.unexpected("an integer"),
        };
        Ok(v)
    }

    fn int_in(&mut self, lo: i128, hi: i128, ty: &str) -> Result<i128, MsgpackError> {
        let at = self.pos;
        let v = self.int()?;
        if v < lo || v > hi {
            return fail(format!("integer {v} at byte {at} is out of range for {ty}"));
        }
        Ok(v)
    }

    pub fn u64(&mut self) -> Result<u64, MsgpackError> {
        Ok(self.int_in(0, u64::MAX as i128, "u64")? as u64)
    }

    pub fn u32(&mut self) -> Result<u32, MsgpackError> {
        Ok(self.int_in(0, u32::MAX as i128, "u32")? as u32)
    }

    pub fn u8(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.int_in(0, 255, "u8")? as u8)
    }

    pub fn i64(&mut self) -> Result<i64, MsgpackError> {
        Ok(self.int_in(i64::MIN as i128, i64::MAX as i128, "i64")? as i64)
    }

    /// An `f32`: `0xca`, or (as serde casts them) an `f64` or an integer.
    pub fn f32(&mut self) -> Result<f32, MsgpackError> {
        match self.peek()? {
            0xca => {
                self.pos += 1;
                Ok(f32::from_bits(self.be(4)? as u32))
            }
            0xcb => {
                self.pos += 1;
                Ok(f64::from_bits(self.be(8)?) as f32)
            }
            _ => match self.kind()? {
                Kind::Int => Ok(self.int()? as f32),
                _ => self.unexpected("a float"),
            },
        }
    }

    /// `None` for nil, else `f` reads the value.
    pub fn option<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, MsgpackError>,
    ) -> Result<Option<T>, MsgpackError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            Ok(None)
        } else {
            f(self).map(Some)
        }
    }

    /// A nil (a unit variant's content in map form).
    pub fn nil(&mut self) -> Result<(), MsgpackError> {
        if self.peek()? != 0xc0 {
            return self.unexpected("nil");
        }
        self.pos += 1;
        Ok(())
    }

    /// A string (also a `bin` holding UTF-8).
    pub fn str(&mut self) -> Result<&'a str, MsgpackError> {
        let at = self.pos;
        match self.kind()? {
            Kind::Str(n) | Kind::Bin(n) => {
                let b = self.take(n)?;
                core::str::from_utf8(b)
                    .map_err(|_| MsgpackError(format!("string at byte {at} is not UTF-8")))
            }
            _ => {
                self.pos = at;
                self.unexpected("a string")
            }
        }
    }

    /// A byte blob: `bin`, or an array of integers 0..=255.
    pub fn bin(&mut self) -> Result<Vec<u8>, MsgpackError> {
        let at = self.pos;
        match self.kind()? {
            Kind::Bin(n) => Ok(self.take(n)?.to_vec()),
            Kind::Array(n) => (0..n).map(|_| self.u8()).collect(),
            _ => {
                self.pos = at;
                self.unexpected("a byte blob")
            }
        }
    }

    /// Array header: the element count.
    pub fn array(&mut self) -> Result<usize, MsgpackError> {
        let at = self.pos;
        match self.kind()? {
            Kind::Array(n) => Ok(n),
            _ => {
                self.pos = at;
                self.unexpected("an array")
            }
        }
    }

    /// Skip one value of any type, without recursion.
    pub fn skip(&mut self) -> Result<(), MsgpackError> {
        let mut left: usize = 1;
        while left > 0 {
            left -= 1;
            let m = self.peek()?;
            match self.kind()? {
                Kind::Int => {
                    self.int()?;
                }
                Kind::Float => {
                    self.take(if m == 0xca { 5 } else { 9 })?;
                }
                Kind::Nil => self.pos += 1,
                Kind::Str(n) | Kind::Bin(n) => {
                    self.take(n)?;
                }
                Kind::Array(n) => left += n,
                Kind::Map(n) => left += 2 * n,
                Kind::Other => {
                    let n = match m {
                        0xc2 | 0xc3 => 1,
                        0xd4 => 3,
                        0xd5 => 4,
                        0xd6 => 6,
                        0xd7 => 10,
                        0xd8 => 18,
                        0xc7..=0xc9 => {
                            self.pos += 1;
                            self.len(1 << (m - 0xc7), 1)? + 1
                        }
                        _ => return self.unexpected("a MessagePack value"),
                    };
                    self.take(n)?;
                }
            }
            // Each pending value takes at least one byte.
            if left > self.b.len() - self.pos {
                return fail(format!(
                    "truncated: {left} values pending at byte {}",
                    self.pos
                ));
            }
        }
        Ok(())
    }

    /// Start reading a struct named `what` with `names` (declaration order):
    /// a map keyed by name or index, or an array in field order.
    pub fn fields(
        &mut self,
        what: &'static str,
        names: &'static [&'static str],
    ) -> Result<Fields, MsgpackError> {
        debug_assert!(names.len() <= 64);
        let at = self.pos;
        let (map, left) = match self.kind()? {
            Kind::Map(n) => (true, n),
            Kind::Array(n) => (false, n),
            _ => {
                self.pos = at;
                return self.unexpected(&format!("{what} (a map or an array)"));
            }
        };
        if !map && left > names.len() {
            return fail(format!(
                "{what}: array of {left} fields, expected at most {}",
                names.len()
            ));
        }
        Ok(Fields {
            what,
            names,
            map,
            left,
            next: 0,
            seen: 0,
        })
    }

    /// Start reading an enum: `(variant index, has content)`. A bare name (or
    /// index) is a unit variant; a one-entry map `{variant: content}` (or a
    /// one-element array) carries content, which the caller reads next.
    pub fn variant(
        &mut self,
        what: &'static str,
        names: &'static [&'static str],
    ) -> Result<(usize, bool), MsgpackError> {
        let at = self.pos;
        let content = match self.kind()? {
            Kind::Map(1) | Kind::Array(1) => true,
            Kind::Map(n) | Kind::Array(n) => {
                return fail(format!(
                    "{what}: enum with {n} entries at byte {at}, expected 1"
                ))
            }
            _ => {
                self.pos = at;
                false
            }
        };
        let i = self.ident(what, names)?;
        match i {
            Some(i) => Ok((i, content)),
            None => fail(format!("{what}: unknown variant at byte {at}")),
        }
    }

    /// A field or variant identifier: its name or its index.
    fn ident(
        &mut self,
        what: &'static str,
        names: &'static [&'static str],
    ) -> Result<Option<usize>, MsgpackError> {
        let at = self.pos;
        match self.kind()? {
            Kind::Int => {
                let i = self.u64()?;
                Ok((i < names.len() as u64).then_some(i as usize))
            }
            Kind::Str(_) | Kind::Bin(_) => {
                self.pos = at;
                let s = self.str()?;
                Ok(names.iter().position(|n| *n == s))
            }
            _ => {
                self.pos = at;
                self.unexpected(&format!("a {what} name"))
            }
        }
    }
}

/// The fields of a struct being read; see [`Reader::fields`].
#[derive(Debug)]
pub struct Fields {
    what: &'static str,
    names: &'static [&'static str],
    map: bool,
    left: usize,
    next: usize,
    seen: u64,
}

impl Fields {
    /// The index (into `names`) of the next field, whose value the caller must
    /// read now; `None` at the end. Unknown map keys are skipped.
    pub fn next(&mut self, r: &mut Reader<'_>) -> Result<Option<usize>, MsgpackError> {
        loop {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            let i = if self.map {
                match r.ident(self.what, self.names)? {
                    Some(i) => i,
                    None => {
                        r.skip()?;
                        continue;
                    }
                }
            } else {
                self.next += 1;
                self.next - 1
            };
            if self.seen & 1 << i != 0 {
                return fail(format!(
                    "{}: duplicate field `{}`",
                    self.what, self.names[i]
                ));
            }
            self.seen |= 1 << i;
            return Ok(Some(i));
        }
    }

    /// A required field's value, or a "missing field" error.
    pub fn need<T>(&self, v: Option<T>, i: usize) -> Result<T, MsgpackError> {
        match v {
            Some(v) => Ok(v),
            None => fail(format!("{}: missing field `{}`", self.what, self.names[i])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct T {
        a: u64,
        b: i64,
        c: f32,
        s: String,
        o: Option<i64>,
        #[serde(with = "serde_bytes_vec")]
        bin: Vec<u8>,
    }

    mod serde_bytes_vec {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            crate::personalize::format::Blob::deserialize(d).map(|b| b.0)
        }
        use serde::Deserialize;
    }

    const NAMES: &[&str] = &["a", "b", "c", "s", "o", "bin"];

    fn write(t: &T) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(6);
        w.str("a");
        w.uint(t.a);
        w.str("b");
        w.sint(t.b);
        w.str("c");
        w.f32(t.c);
        w.str("s");
        w.str(&t.s);
        w.str("o");
        match t.o {
            Some(v) => w.sint(v),
            None => w.nil(),
        }
        w.str("bin");
        w.bin(&t.bin);
        w.buf
    }

    fn read(b: &[u8]) -> Result<T, MsgpackError> {
        let mut r = Reader::new(b);
        let mut f = r.fields("T", NAMES)?;
        let (mut a, mut bb, mut c, mut s, mut o, mut bin) = (None, None, None, None, None, None);
        while let Some(i) = f.next(&mut r)? {
            match i {
                0 => a = Some(r.u64()?),
                1 => bb = Some(r.i64()?),
                2 => c = Some(r.f32()?),
                3 => s = Some(r.str()?.to_string()),
                4 => o = r.option(|r| r.i64())?,
                _ => bin = Some(r.bin()?),
            }
        }
        Ok(T {
            a: f.need(a, 0)?,
            b: f.need(bb, 1)?,
            c: f.need(c, 2)?,
            s: f.need(s, 3)?,
            o,
            bin: f.need(bin, 5)?,
        })
    }

    fn cases() -> Vec<T> {
        let mut out = Vec::new();
        let ints: [u64; 12] = [
            0,
            1,
            127,
            128,
            255,
            256,
            65535,
            65536,
            u32::MAX as u64,
            1 << 32,
            i64::MAX as u64,
            u64::MAX,
        ];
        let sints: [i64; 14] = [
            0,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32768,
            -32769,
            i32::MIN as i64,
            i32::MIN as i64 - 1,
            i64::MIN,
            127,
            70000,
            i64::MAX,
        ];
        for (k, &a) in ints.iter().enumerate() {
            let b = sints[k % sints.len()];
            let n = [0usize, 5, 31, 32, 255, 256, 65535, 65536][k % 8];
            out.push(T {
                a,
                b,
                c: [0.0, -1.5, f32::MAX, f32::MIN_POSITIVE, 1e-40][k % 5],
                s: "é".repeat(n / 2) + &"x".repeat(n % 2),
                o: if k % 3 == 0 {
                    None
                } else {
                    Some(sints[(k + 3) % 14])
                },
                bin: (0..n).map(|i| (i * 7) as u8).collect(),
            });
        }
        out
    }

    #[test]
    fn writer_is_byte_identical_to_rmp_serde_named() {
        for t in cases() {
            assert_eq!(write(&t), rmp_serde::to_vec_named(&t).unwrap(), "{t:?}");
        }
        // Array and map headers of every size class.
        for n in [0usize, 15, 16, 65535, 65536] {
            let v = vec![0u8; n];
            let mut w = Writer::new();
            w.array(n);
            w.buf.extend(std::iter::repeat_n(0u8, n));
            assert_eq!(w.buf, rmp_serde::to_vec(&v).unwrap());
            let m: std::collections::BTreeMap<u32, u8> = (0..n as u32).map(|i| (i, 0)).collect();
            let mut w = Writer::new();
            w.map(n);
            for i in 0..n {
                w.uint(i as u64);
                w.uint(0);
            }
            assert_eq!(w.buf, rmp_serde::to_vec(&m).unwrap());
        }
    }

    #[test]
    fn reader_reads_rmp_serde_named_compact_and_reordered() {
        for t in cases() {
            assert_eq!(read(&rmp_serde::to_vec_named(&t).unwrap()).unwrap(), t);
            assert_eq!(read(&rmp_serde::to_vec(&t).unwrap()).unwrap(), t);
        }
        // Keys in another order, an unknown key of every kind, a key by index,
        // a missing Option, f64 and integer floats, a bin string, an array blob.
        let mut w = Writer::new();
        w.map(9);
        w.str("zz");
        w.array(3);
        w.map(1);
        w.str("k");
        w.buf.extend_from_slice(&[0xc3, 0xd6, 1, 0, 0, 0, 0]);
        w.uint(0);
        w.str("bin");
        w.array(2);
        w.uint(1);
        w.uint(200);
        w.str("s");
        w.bin("héllo".as_bytes());
        w.str("c");
        w.buf.push(0xcb);
        w.buf.extend_from_slice(&2.5f64.to_be_bytes());
        w.str("b");
        w.uint(7);
        w.str("q");
        w.buf.extend_from_slice(&[0xc7, 2, 9, 1, 2]);
        w.str("a");
        w.uint(300);
        w.str("r");
        w.buf.extend_from_slice(&[0xcb, 0, 0, 0, 0, 0, 0, 0, 0]);
        w.str("z");
        w.nil();
        let t = read(&w.buf).unwrap();
        assert_eq!(
            t,
            T {
                a: 300,
                b: 7,
                c: 2.5,
                s: "héllo".into(),
                o: None,
                bin: vec![1, 200]
            }
        );
        let mut w = Writer::new();
        w.map(1);
        w.str("c");
        w.sint(-3);
        let mut r = Reader::new(&w.buf);
        let mut f = r.fields("T", NAMES).unwrap();
        assert_eq!(f.next(&mut r).unwrap(), Some(2));
        assert_eq!(r.f32().unwrap(), -3.0);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let good = write(&cases()[3]);
        let err = |b: &[u8]| read(b).unwrap_err().0;
        assert!(err(&good[..good.len() - 1]).contains("truncated"));
        assert!(err(&[]).contains("truncated"));
        assert!(err(&[0xc3]).contains("expected T"));
        // Missing and duplicate fields.
        let mut w = Writer::new();
        w.map(1);
        w.str("a");
        w.uint(1);
        assert!(err(&w.buf).contains("missing field `b`"));
        let mut w = Writer::new();
        w.map(2);
        w.str("a");
        w.uint(1);
        w.str("a");
        w.uint(1);
        assert!(err(&w.buf).contains("duplicate field `a`"));
        // Out of range, wrong type, bad UTF-8, too many array fields.
        let mut r = Reader::new(&[0xcd, 1, 0]);
        assert!(r.u8().unwrap_err().0.contains("out of range for u8"));
        let mut r = Reader::new(&[0xff]);
        assert!(r.u64().unwrap_err().0.contains("out of range"));
        let mut r = Reader::new(&[0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0]);
        assert!(r.i64().is_err());
        let mut r = Reader::new(&[0xa1, b'x']);
        assert!(r.u32().unwrap_err().0.contains("expected an integer"));
        let mut r = Reader::new(&[0xa2, 0xff, 0xfe]);
        assert!(r.str().unwrap_err().0.contains("not UTF-8"));
        let mut r = Reader::new(&[0x97, 0, 0, 0, 0, 0, 0, 0]);
        assert!(r.fields("T", NAMES).unwrap_err().0.contains("at most 6"));
        // A length larger than the payload is rejected before any allocation.
        let mut r = Reader::new(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0]);
        assert!(r.bin().unwrap_err().0.contains("exceeds the payload"));
        let mut r = Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(r.skip().is_err());
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_error_or_a_value_never_a_panic() {
        let good = write(&cases()[5]);
        for n in 0..good.len() {
            assert!(read(&good[..n]).is_err());
        }
        for i in 0..good.len() {
            for v in [
                0x00, 0x7f, 0x80, 0x90, 0xc0, 0xc4, 0xca, 0xcf, 0xd3, 0xdc, 0xdf, 0xff,
            ] {
                let mut b = good.clone();
                b[i] = v;
                let _ = read(&b);
            }
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum E {
        Unit,
        Other,
        Data { x: u32 },
    }

    #[test]
    fn enums_read_by_name_or_index_with_content() {
        const VARIANTS: &[&str] = &["unit", "other", "data"];
        let read_e = |b: &[u8]| -> Result<E, MsgpackError> {
            let mut r = Reader::new(b);
            match r.variant("E", VARIANTS)? {
                (0, false) => Ok(E::Unit),
                (1, false) => Ok(E::Other),
                (2, true) => {
                    let mut f = r.fields("E::Data", &["x"])?;
                    let mut x = None;
                    while f.next(&mut r)?.is_some() {
                        x = Some(r.u32()?);
                    }
                    Ok(E::Data { x: f.need(x, 0)? })
                }
                _ => Err(MsgpackError("bad".into())),
            }
        };
        for e in [E::Unit, E::Other, E::Data { x: 9 }] {
            let b = rmp_serde::to_vec_named(&e).unwrap();
            assert_eq!(read_e(&b).unwrap(), e);
            assert_eq!(read_e(&rmp_serde::to_vec(&e).unwrap()).unwrap(), e);
        }
        assert_eq!(read_e(&[1]).unwrap(), E::Other);
        assert!(read_e(&[0xa1, b'q'])
            .unwrap_err()
            .0
            .contains("unknown variant"));
        assert!(read_e(&[0x82, 1, 2, 3, 4])
            .unwrap_err()
            .0
            .contains("2 entries"));
    }
}
