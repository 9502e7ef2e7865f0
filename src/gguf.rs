//! A reader for the metadata section of GGUF files (the llama.cpp model format).
//!
//! llama.cpp exposes scalar metadata, but not the tokenizer arrays we hash to fingerprint a
//! teacher's vocabulary, and it cannot tell a truncated download from a non-model file. This
//! module reads the header and the key/value section only; tensors are left on disk.
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
/// Arrays longer than this are refused: no tokenizer comes near it, a corrupt file might.
const MAX_ARRAY: u64 = 1 << 24;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string (invalid bytes replaced).
    Str(String),
    /// An array of values.
    Array(Vec<Value>),
}

/// The header and key/value metadata of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufMeta {
    /// Format version (2 or 3).
    pub version: u32,
    /// Number of tensors the file declares.
    pub n_tensors: u64,
    /// All metadata, by key.
    pub kv: BTreeMap<String, Value>,
}

impl GgufMeta {
    /// Read the metadata of the GGUF file at `path`.
    ///
    /// # Errors
    /// [`Error::Gguf`] when the file is missing, is not GGUF, or is truncated.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Gguf {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(|e| {
            bad(format!("cannot open it ({e}); run scripts/setup.sh to fetch the default teacher or pass --teacher PATH"))
        })?;
        let mut r = BufReader::with_capacity(1 << 16, file);
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic)
            .map_err(|_| bad("file is too short to be a GGUF model".into()))?;
        if &magic != MAGIC {
            return Err(bad(format!(
                "not a GGUF file (starts with {magic:02x?}, expected 'GGUF'); pass a llama.cpp .gguf model"
            )));
        }
        Self::read_body(&mut r).map_err(|e| bad(format!("damaged or truncated GGUF header: {e}")))
    }

    fn read_body(r: &mut impl Read) -> std::io::Result<Self> {
        let version = read_u32(r)?;
        if !(2..=3).contains(&version) {
            return Err(invalid(format!("unsupported GGUF version {version}")));
        }
        let n_tensors = read_u64(r)?;
        let n_kv = read_u64(r)?;
        let mut kv = BTreeMap::new();
        for _ in 0..n_kv {
            let key = read_string(r)?;
            let ty = read_u32(r)?;
            kv.insert(key, read_value(r, ty)?);
        }
        Ok(Self {
            version,
            n_tensors,
            kv,
        })
    }

    /// A string value, if present.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.kv.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An unsigned integer value, if present.
    pub fn u64(&self, key: &str) -> Option<u64> {
        match self.kv.get(key)? {
            Value::U64(v) => Some(*v),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The model architecture (`general.architecture`), e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.str("general.architecture")
    }

    /// The vocabulary size: length of `tokenizer.ggml.tokens`.
    pub fn n_vocab(&self) -> Option<usize> {
        match self.kv.get("tokenizer.ggml.tokens")? {
            Value::Array(a) => Some(a.len()),
            _ => None,
        }
    }

    /// sha256 over the tokenizer's model, pre-tokenizer, tokens and merges. Two GGUFs with the
    /// same fingerprint tokenize identically, whatever their weights.
    pub fn tokenizer_fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for key in ["tokenizer.ggml.model", "tokenizer.ggml.pre"] {
            h.update(self.str(key).unwrap_or("").as_bytes());
            h.update([0u8]);
        }
        for key in ["tokenizer.ggml.tokens", "tokenizer.ggml.merges"] {
            h.update(key.as_bytes());
            h.update([0u8]);
            if let Some(Value::Array(items)) = self.kv.get(key) {
                for item in items {
                    if let Value::Str(s) = item {
                        h.update(s.as_bytes());
                    }
                    h.update([0u8]);
                }
            }
        }
        hex(&h.finalize())
    }
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(r: &mut impl Read) -> std::io::Result<String> {
    let len = read_u64(r)?;
    if len > MAX_ARRAY {
        return Err(invalid(format!("string of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_value(r: &mut impl Read, ty: u32) -> std::io::Result<Value> {
    let mut b = [0u8; 8];
    Ok(match ty {
        0 | 1 | 7 => {
            r.read_exact(&mut b[..1])?;
            match ty {
                0 => Value::U64(u64::from(b[0])),
                1 => Value::I64(i64::from(b[0] as i8)),
                _ => Value::Bool(b[0] != 0),
            }
        }
        2 | 3 => {
            r.read_exact(&mut b[..2])?;
            let v = u16::from_le_bytes([b[0], b[1]]);
            if ty == 2 {
                Value::U64(u64::from(v))
            } else {
                Value::I64(i64::from(v as i16))
            }
        }
        4 => Value::U64(u64::from(read_u32(r)?)),
        5 => Value::I64(i64::from(read_u32(r)? as i32)),
        6 => Value::F64(f64::from(f32::from_bits(read_u32(r)?))),
        8 => Value::Str(read_string(r)?),
        9 => {
            let elem = read_u32(r)?;
            let n = read_u64(r)?;
            if n > MAX_ARRAY || elem == 9 {
                return Err(invalid(format!("array of {n} elements of type {elem}")));
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(r, elem)?);
            }
            Value::Array(items)
        }
        10 => Value::U64(read_u64(r)?),
        11 => Value::I64(read_u64(r)? as i64),
        12 => Value::F64(f64::from_bits(read_u64(r)?)),
        other => return Err(invalid(format!("unknown value type {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    fn header(kv: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend(3u32.to_le_bytes());
        v.extend(0u64.to_le_bytes());
        v.extend((kv.len() as u64).to_le_bytes());
        for (k, ty, val) in kv {
            v.extend(string(k));
            v.extend(ty.to_le_bytes());
            v.extend(val);
        }
        v
    }

    fn str_array(items: &[&str]) -> Vec<u8> {
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend((items.len() as u64).to_le_bytes());
        for s in items {
            v.extend(string(s));
        }
        v
    }

    fn write_tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("distill-gguf-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }

    #[test]
    fn reads_scalars_strings_and_arrays() {
        let bytes = header(&[
            ("general.architecture", 8, string("llama")),
            ("llama.block_count", 4, 30u32.to_le_bytes().to_vec()),
            ("tokenizer.ggml.tokens", 9, str_array(&["a", "b", "c"])),
        ]);
        let path = write_tmp("ok", &bytes);
        let meta = GgufMeta::read(&path).expect("valid header");
        assert_eq!(meta.architecture(), Some("llama"));
        assert_eq!(meta.u64("llama.block_count"), Some(30));
        assert_eq!(meta.n_vocab(), Some(3));
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn fingerprint_changes_with_the_vocabulary() {
        let a = header(&[("tokenizer.ggml.tokens", 9, str_array(&["a", "b"]))]);
        let b = header(&[("tokenizer.ggml.tokens", 9, str_array(&["a", "c"]))]);
        let (pa, pb) = (write_tmp("fa", &a), write_tmp("fb", &b));
        let fa = GgufMeta::read(&pa).expect("a").tokenizer_fingerprint();
        let fb = GgufMeta::read(&pb).expect("b").tokenizer_fingerprint();
        assert_ne!(fa, fb);
        assert_eq!(fa.len(), 64);
        std::fs::remove_file(pa).ok();
        std::fs::remove_file(pb).ok();
    }

    #[test]
    fn non_gguf_and_truncated_files_are_named() {
        let path = write_tmp("txt", b"hello world, not a model");
        let err = GgufMeta::read(&path).expect_err("not gguf").to_string();
        assert!(err.contains("not a GGUF file"), "{err}");
        let mut bytes = header(&[("general.architecture", 8, string("llama"))]);
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&path, &bytes).expect("write");
        let err = GgufMeta::read(&path).expect_err("truncated").to_string();
        assert!(err.contains("truncated"), "{err}");
        std::fs::remove_file(path).ok();
        let err = GgufMeta::read(Path::new("/nonexistent/x.gguf")).expect_err("missing");
        assert!(err.to_string().contains("scripts/setup.sh"));
    }
}
