//! Minimal reader for the safetensors format: an 8-byte little-endian header length, a JSON
//! header mapping tensor names to `{dtype, shape, data_offsets}`, then the raw tensor bytes
//! (offsets are relative to the end of the header).

use std::collections::HashMap;

use serde::Deserialize;

use crate::EmbedError;

/// Upper bound on the JSON header size, to reject corrupt length fields early.
const MAX_HEADER_LEN: u64 = 100 * 1024 * 1024;

/// Location and type of one tensor inside the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Element type as written in the header (`F32`, `F16`, `I64`, ...).
    pub dtype: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Byte range inside the data section.
    pub start: usize,
    /// End (exclusive) of the byte range inside the data section.
    pub end: usize,
}

#[derive(Deserialize)]
struct RawInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// A parsed safetensors file borrowing its bytes.
#[derive(Debug)]
pub struct SafeTensors<'a> {
    tensors: HashMap<String, TensorInfo>,
    data: &'a [u8],
}

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

impl<'a> SafeTensors<'a> {
    /// Parses the header and checks every entry: known dtype, byte range inside the data
    /// section and consistent with the shape.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EmbedError> {
        let bad = |m: String| EmbedError::Safetensors(m);
        if bytes.len() < 8 {
            return Err(bad(format!(
                "file is {} bytes, shorter than the 8-byte header length",
                bytes.len()
            )));
        }
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&bytes[..8]);
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_LEN || header_len > (bytes.len() - 8) as u64 {
            return Err(bad(format!(
                "header length {header_len} exceeds the file ({} bytes)",
                bytes.len()
            )));
        }
        let header_end = 8 + header_len as usize;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..header_end])
                .map_err(|e| bad(format!("header is not a JSON object: {e}")))?;
        let data = &bytes[header_end..];
        let mut tensors = HashMap::with_capacity(header.len());
        for (name, value) in header {
            if name == "__metadata__" {
                continue;
            }
            let raw: RawInfo = serde_json::from_value(value)
                .map_err(|e| bad(format!("tensor {name:?}: bad header entry: {e}")))?;
            let [start, end] = raw.data_offsets;
            if start > end || end > data.len() {
                return Err(bad(format!(
                    "tensor {name:?}: byte range {start}..{end} outside data section of {} bytes",
                    data.len()
                )));
            }
            let size = dtype_size(&raw.dtype)
                .ok_or_else(|| bad(format!("tensor {name:?}: unknown dtype {}", raw.dtype)))?;
            let numel = raw
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .and_then(|n| n.checked_mul(size))
                .ok_or_else(|| bad(format!("tensor {name:?}: shape overflows")))?;
            if numel != end - start {
                return Err(bad(format!(
                    "tensor {name:?}: shape {:?} of {} needs {numel} bytes, range holds {}",
                    raw.shape,
                    raw.dtype,
                    end - start
                )));
            }
            tensors.insert(
                name,
                TensorInfo {
                    dtype: raw.dtype,
                    shape: raw.shape,
                    start,
                    end,
                },
            );
        }
        Ok(SafeTensors { tensors, data })
    }

    /// Header entry of a tensor.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Names of all tensors (unordered).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Reads an `F32` tensor of exactly `shape`, converting from little-endian bytes.
    pub fn f32_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, EmbedError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| EmbedError::MissingTensor(name.to_owned()))?;
        if info.dtype != "F32" {
            return Err(EmbedError::WrongDtype {
                name: name.to_owned(),
                dtype: info.dtype.clone(),
            });
        }
        if info.shape != shape {
            return Err(EmbedError::BadShape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        let values = self.data[info.start..info.end]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect::<Vec<f32>>();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(EmbedError::Safetensors(format!(
                "tensor {name:?} holds NaN or infinite values"
            )));
        }
        Ok(values)
    }
}

/// Serializes F32 tensors into safetensors bytes (used by tests and tools that need a small file).
pub fn write_f32(tensors: &[(&str, &[usize], &[f32])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        let len = values.len() * 4;
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap_or_default();
    // Pad the header with spaces to an 8-byte boundary, as the format recommends.
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, values) in tensors {
        for v in values.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a file by hand (independently of `write_f32`).
    fn handmade() -> Vec<u8> {
        let header = br#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"ids":{"dtype":"I64","shape":[2],"data_offsets":[24,40]}}"#;
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header);
        for v in [1.0f32, -2.5, 3.25, 0.0, 1e-3, 7.0] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&5i64.to_le_bytes());
        f.extend_from_slice(&9i64.to_le_bytes());
        f
    }

    #[test]
    fn parses_handmade_file() {
        let bytes = handmade();
        let st = SafeTensors::parse(&bytes).unwrap();
        let mut names: Vec<&str> = st.names().collect();
        names.sort();
        assert_eq!(names, vec!["ids", "w"]);
        assert_eq!(st.info("ids").unwrap().dtype, "I64");
        assert_eq!(
            st.f32_tensor("w", &[2, 3]).unwrap(),
            vec![1.0, -2.5, 3.25, 0.0, 1e-3, 7.0]
        );
    }

    #[test]
    fn rejects_wrong_dtype_shape_and_missing() {
        let bytes = handmade();
        let st = SafeTensors::parse(&bytes).unwrap();
        assert!(matches!(
            st.f32_tensor("ids", &[2]),
            Err(EmbedError::WrongDtype { .. })
        ));
        assert!(matches!(
            st.f32_tensor("w", &[3, 2]),
            Err(EmbedError::BadShape { .. })
        ));
        assert!(matches!(
            st.f32_tensor("nope", &[1]),
            Err(EmbedError::MissingTensor(_))
        ));
    }

    #[test]
    fn rejects_corrupt_files() {
        let good = handmade();
        // Too short.
        assert!(SafeTensors::parse(&good[..5]).is_err());
        // Header length larger than the file.
        let mut f = good.clone();
        f[..8].copy_from_slice(&(10_000u64).to_le_bytes());
        assert!(SafeTensors::parse(&f).is_err());
        // Truncated data section.
        assert!(SafeTensors::parse(&good[..good.len() - 4]).is_err());
        // Garbage header.
        let mut f = good.clone();
        f[8] = b'x';
        assert!(SafeTensors::parse(&f).is_err());
        // Shape inconsistent with the byte range.
        let header = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
        let mut f = (header.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(header);
        f.extend_from_slice(&[0u8; 12]);
        assert!(SafeTensors::parse(&f).is_err());
    }

    #[test]
    fn rejects_non_finite_values() {
        let bytes = write_f32(&[("w", &[2], &[1.0, f32::NAN])]);
        let st = SafeTensors::parse(&bytes).unwrap();
        assert!(st.f32_tensor("w", &[2]).is_err());
    }

    #[test]
    fn writer_round_trips() {
        let a = [0.5f32, -1.0, 2.0, 4.0];
        let b = [3.0f32];
        let bytes = write_f32(&[("a", &[2, 2], &a), ("b", &[1], &b)]);
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
        let st = SafeTensors::parse(&bytes).unwrap();
        assert_eq!(st.f32_tensor("a", &[2, 2]).unwrap(), a);
        assert_eq!(st.f32_tensor("b", &[1]).unwrap(), b);
    }
}
