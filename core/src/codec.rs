//! The envelope every persisted artifact uses: models, adapters, pattern banks.
//!
//! Layout (little-endian): magic `[u8; 4]` · format version `u16` · reserved `u16` ·
//! payload length `u32` · CRC-32 of the payload `u32` · payload. A reader checks
//! each field in that order, so a wrong file, a newer format, a truncated file and
//! flipped bits each get their own clear error.

use thiserror::Error;

/// Header size in bytes.
pub const HEADER_LEN: usize = 16;

/// Why an envelope could not be opened.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CodecError {
    #[error("{what}: too short to be a SONA file ({len} bytes, header needs {HEADER_LEN})")]
    TooShort { what: &'static str, len: usize },
    #[error("{what}: wrong magic bytes {found:?} (expected {expected:?}); not this kind of file")]
    BadMagic {
        what: &'static str,
        found: [u8; 4],
        expected: [u8; 4],
    },
    #[error(
        "{what}: format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        what: &'static str,
        found: u16,
        supported: u16,
    },
    #[error("{what}: truncated (header says {expected} payload bytes, found {found})")]
    Truncated {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{what}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); the file is corrupt")]
    Checksum {
        what: &'static str,
        stored: u32,
        computed: u32,
    },
    #[error("{what}: payload could not be decoded: {msg}")]
    Payload { what: &'static str, msg: String },
}

/// CRC-32 (IEEE 802.3, the zlib / PNG checksum) of `bytes`.
///
/// Native builds use `crc32fast` (PCLMULQDQ or slice-by-16: a 25 KB adapter in ~1.5 µs). The
/// wasm build uses [`crc32_compact`] instead: crc32fast's 16 KB of slice-by-16 tables are
/// incompressible and would cost 16 KB of the gzipped engine; one 1 KB table is enough there.
#[cfg(not(target_arch = "wasm32"))]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// CRC-32 (IEEE 802.3) of `bytes`; see the native variant.
#[cfg(target_arch = "wasm32")]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_compact(bytes)
}

/// The reflected CRC-32 polynomial's byte table, built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE 802.3) with one 256-entry table, a byte at a time: the same value as
/// `crc32fast::hash`, from 1 KB of table instead of 16 KB.
pub fn crc32_compact(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Wrap `payload` in a checksummed envelope.
pub fn seal(magic: [u8; 4], version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Check an envelope and return its payload. `what` names the artifact in errors.
pub fn open<'a>(
    what: &'static str,
    magic: [u8; 4],
    version: u16,
    bytes: &'a [u8],
) -> Result<&'a [u8], CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::TooShort {
            what,
            len: bytes.len(),
        });
    }
    let found: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
    if found != magic {
        return Err(CodecError::BadMagic {
            what,
            found,
            expected: magic,
        });
    }
    let v = u16::from_le_bytes([bytes[4], bytes[5]]);
    if v != version {
        return Err(CodecError::UnsupportedVersion {
            what,
            found: v,
            supported: version,
        });
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let stored = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != len {
        return Err(CodecError::Truncated {
            what,
            expected: len,
            found: payload.len(),
        });
    }
    let computed = crc32(payload);
    if computed != stored {
        return Err(CodecError::Checksum {
            what,
            stored,
            computed,
        });
    }
    Ok(payload)
}

/// Seal a serde value as MessagePack (named fields, so formats can grow).
pub fn seal_msgpack<T: serde::Serialize>(magic: [u8; 4], version: u16, value: &T) -> Vec<u8> {
    let payload = rmp_serde::to_vec_named(value)
        .expect("MessagePack encoding of an in-memory value cannot fail");
    seal(magic, version, &payload)
}

/// Open an envelope and decode its MessagePack payload.
pub fn open_msgpack<T: serde::de::DeserializeOwned>(
    what: &'static str,
    magic: [u8; 4],
    version: u16,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let payload = open(what, magic, version, bytes)?;
    rmp_serde::from_slice(payload).map_err(|e| CodecError::Payload {
        what,
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 4] = *b"TEST";

    #[test]
    fn compact_crc_matches_crc32fast_and_the_check_value() {
        // The standard CRC-32 check value.
        assert_eq!(crc32_compact(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32_compact(b""), 0);
        let mut rng = crate::rng::Rng::new(9);
        for n in [1usize, 3, 15, 16, 17, 255, 1024, 25_000] {
            let b: Vec<u8> = (0..n).map(|_| rng.uniform(0.0, 256.0) as u8).collect();
            assert_eq!(crc32_compact(&b), crc32fast::hash(&b), "n = {n}");
        }
    }

    #[test]
    fn round_trip() {
        let b = seal(M, 3, b"hello");
        assert_eq!(open("t", M, 3, &b).unwrap(), b"hello");
    }

    #[test]
    fn every_failure_has_its_own_error() {
        let b = seal(M, 3, b"hello world");
        assert!(matches!(
            open("t", M, 3, &b[..5]),
            Err(CodecError::TooShort { .. })
        ));
        assert!(matches!(
            open("t", *b"NOPE", 3, &b),
            Err(CodecError::BadMagic { .. })
        ));
        assert!(matches!(
            open("t", M, 4, &b),
            Err(CodecError::UnsupportedVersion { found: 3, .. })
        ));
        assert!(matches!(
            open("t", M, 3, &b[..b.len() - 1]),
            Err(CodecError::Truncated { .. })
        ));
        let mut c = b.clone();
        *c.last_mut().unwrap() ^= 0x40;
        assert!(matches!(
            open("t", M, 3, &c),
            Err(CodecError::Checksum { .. })
        ));
    }

    #[test]
    fn every_single_bit_flip_in_the_payload_is_caught() {
        let b = seal(M, 1, &[7u8; 64]);
        for byte in HEADER_LEN..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[byte] ^= 1 << bit;
                assert!(open("t", M, 1, &c).is_err());
            }
        }
    }
}
