//! The metadata of a GGUF file (the llama.cpp model format), read with candle's
//! `quantized::gguf_file`.
//!
//! llama.cpp exposes scalar metadata, but not the tokenizer arrays we hash to fingerprint a
//! teacher's vocabulary, and it cannot tell a truncated download from a non-model file.
//! candle's reader parses the key/value section and the tensor table; it does not know every
//! ggml type (the IQ quantizations), so when the table is unreadable the metadata is read
//! alone (the header's tensor count masked to zero) and the tensor list is `None`.
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, Value};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Shape and type of one tensor, without its data.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMeta {
    /// ggml storage type.
    pub dtype: GgmlDType,
    /// Dimensions, outermost first (candle's order: [rows, columns] for a matrix).
    pub shape: Vec<usize>,
}

/// The key/value metadata of a GGUF file and, where candle can read it, its tensor table.
#[derive(Debug, Clone)]
pub struct GgufMeta {
    /// The file it was read from.
    pub path: PathBuf,
    /// Number of tensors the header declares.
    pub n_tensors: u64,
    /// All metadata, by key.
    pub kv: HashMap<String, Value>,
    /// Tensors by name; `None` when candle cannot parse the tensor table (a ggml type it
    /// does not know), `Some` otherwise.
    pub tensors: Option<HashMap<String, TensorMeta>>,
    /// Why the tensor table could not be read, when it could not.
    pub tensors_error: Option<String>,
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
        let mut head = [0u8; 24];
        r.read_exact(&mut head)
            .map_err(|_| bad("file is too short to be a GGUF model".into()))?;
        if &head[..4] != b"GGUF" {
            return Err(bad(format!(
                "not a GGUF file (starts with {:02x?}, expected 'GGUF'); pass a llama.cpp .gguf model",
                &head[..4]
            )));
        }
        let n_tensors = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
        let damaged = |e: candle_core::Error| bad(format!("damaged or truncated GGUF header: {e}"));
        let rewind = |r: &mut BufReader<File>| {
            r.seek(SeekFrom::Start(0))
                .map_err(|e| bad(format!("cannot read it: {e}")))
        };
        rewind(&mut r)?;
        let (content, tensors_error) = match Content::read(&mut r) {
            Ok(c) => (c, None),
            Err(full) => {
                rewind(&mut r)?;
                let c = Content::read(&mut NoTensors::new(&mut r)).map_err(damaged)?;
                (c, Some(full.to_string()))
            }
        };
        let tensors = tensors_error.is_none().then(|| tensor_table(&content));
        Ok(Self {
            path: path.to_path_buf(),
            n_tensors,
            kv: content.metadata,
            tensors,
            tensors_error,
        })
    }

    /// A string value, if present.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.kv.get(key)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value of any width that fits in u64, if present.
    pub fn u64(&self, key: &str) -> Option<u64> {
        int(self.kv.get(key)?)
    }

    /// A float (or integer) value, if present.
    pub fn f64(&self, key: &str) -> Option<f64> {
        match self.kv.get(key)? {
            Value::F32(x) => Some(f64::from(*x)),
            Value::F64(x) => Some(*x),
            v => int(v).map(|x| x as f64),
        }
    }

    /// A boolean value, if present.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.kv.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An array value, if present.
    pub fn array(&self, key: &str) -> Option<&[Value]> {
        match self.kv.get(key)? {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The model architecture (`general.architecture`), e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.str("general.architecture")
    }

    /// An architecture key (`{arch}.{key}`) as an integer; the first entry of a per-layer
    /// array (some architectures store head counts per layer).
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        let full = format!("{}.{key}", self.architecture()?);
        self.u64(&full)
            .or_else(|| self.array(&full).and_then(|a| a.first()).and_then(int))
    }

    /// An architecture key (`{arch}.{key}`) as a float.
    pub fn arch_f64(&self, key: &str) -> Option<f64> {
        self.f64(&format!("{}.{key}", self.architecture()?))
    }

    /// The vocabulary size: length of `tokenizer.ggml.tokens`.
    pub fn n_vocab(&self) -> Option<usize> {
        self.array("tokenizer.ggml.tokens").map(<[Value]>::len)
    }

    /// Whether the tensor table lists `name` (`false` when it could not be read).
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.as_ref().is_some_and(|t| t.contains_key(name))
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
            for item in self.array(key).unwrap_or_default() {
                if let Value::String(s) = item {
                    h.update(s.as_bytes());
                }
                h.update([0u8]);
            }
        }
        hex(&h.finalize())
    }
}

/// Names, types and shapes of the tensors candle read.
fn tensor_table(content: &Content) -> HashMap<String, TensorMeta> {
    content
        .tensor_infos
        .iter()
        .map(|(name, t)| {
            let meta = TensorMeta {
                dtype: t.ggml_dtype,
                shape: t.shape.dims().to_vec(),
            };
            (name.clone(), meta)
        })
        .collect()
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        v => v.to_u64().ok(),
    }
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that shows the header's tensor count (bytes 8..16 of a GGUF v2/v3 file) as 0,
/// so that candle parses the metadata and stops before the tensor table.
struct NoTensors<'a, R> {
    inner: &'a mut R,
    pos: u64,
}

impl<'a, R: Read + Seek> NoTensors<'a, R> {
    fn new(inner: &'a mut R) -> Self {
        Self { inner, pos: 0 }
    }
}

impl<R: Read> Read for NoTensors<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            if (8..16).contains(&(self.pos + i as u64)) {
                *b = 0;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for NoTensors<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.inner.seek(to)?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file;

    /// A GGUF with `kv` and one F32 tensor, written by candle into a temp file.
    pub(crate) fn write_tmp(name: &str, kv: &[(&str, Value)]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("distill-gguf-{}-{name}", std::process::id()));
        let t = candle_core::Tensor::zeros(4, candle_core::DType::F32, &candle_core::Device::Cpu)
            .expect("zeros");
        let q = candle_core::quantized::QTensor::quantize(&t, GgmlDType::F32).expect("q");
        let kv: Vec<(&str, &Value)> = kv.iter().map(|(k, v)| (*k, v)).collect();
        let mut f = File::create(&path).expect("create");
        gguf_file::write(&mut f, &kv, &[("x.weight", &q)]).expect("write gguf");
        path
    }

    fn strs(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::String((*s).into())).collect())
    }

    #[test]
    fn reads_scalars_strings_arrays_and_tensors() {
        let path = write_tmp(
            "ok",
            &[
                ("general.architecture", Value::String("llama".into())),
                ("llama.block_count", Value::U32(30)),
                (
                    "llama.attention.head_count_kv",
                    Value::Array(vec![Value::I32(3)]),
                ),
                ("llama.rope.freq_base", Value::F32(10000.0)),
                ("tokenizer.ggml.tokens", strs(&["a", "b", "c"])),
            ],
        );
        let meta = GgufMeta::read(&path).expect("valid header");
        assert_eq!(meta.architecture(), Some("llama"));
        assert_eq!(meta.arch_u64("block_count"), Some(30));
        assert_eq!(meta.arch_u64("attention.head_count_kv"), Some(3));
        assert_eq!(meta.arch_f64("rope.freq_base"), Some(10000.0));
        assert_eq!(meta.n_vocab(), Some(3));
        assert!(meta.has_tensor("x.weight") && meta.n_tensors == 1);
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn an_unknown_tensor_type_keeps_the_metadata_and_drops_the_table() {
        let path = write_tmp(
            "iq",
            &[("general.architecture", Value::String("llama".into()))],
        );
        let mut bytes = std::fs::read(&path).expect("read");
        // The one tensor's type field: after its name, n_dims and one dimension.
        let name = bytes
            .windows(8)
            .position(|w| w == b"x.weight")
            .expect("name");
        let ty = name + 8 + 4 + 8;
        bytes[ty..ty + 4].copy_from_slice(&23u32.to_le_bytes()); // IQ4_XS: unknown to candle
        std::fs::write(&path, &bytes).expect("write");
        let meta = GgufMeta::read(&path).expect("metadata still readable");
        assert_eq!(meta.architecture(), Some("llama"));
        assert!(meta.tensors.is_none() && meta.tensors_error.is_some());
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn fingerprint_changes_with_the_vocabulary() {
        let pa = write_tmp("fa", &[("tokenizer.ggml.tokens", strs(&["a", "b"]))]);
        let pb = write_tmp("fb", &[("tokenizer.ggml.tokens", strs(&["a", "c"]))]);
        let fa = GgufMeta::read(&pa).expect("a").tokenizer_fingerprint();
        let fb = GgufMeta::read(&pb).expect("b").tokenizer_fingerprint();
        assert_ne!(fa, fb);
        assert_eq!(fa.len(), 64);
        std::fs::remove_file(pa).ok();
        std::fs::remove_file(pb).ok();
    }

    #[test]
    fn non_gguf_and_truncated_files_are_named() {
        let path = std::env::temp_dir().join(format!("distill-gguf-{}-txt", std::process::id()));
        std::fs::write(&path, b"hello world, not a model at all").expect("write");
        let err = GgufMeta::read(&path).expect_err("not gguf").to_string();
        assert!(err.contains("not a GGUF file"), "{err}");
        let good = write_tmp(
            "trunc",
            &[("general.architecture", Value::String("llama".into()))],
        );
        let mut bytes = std::fs::read(&good).expect("read");
        bytes.truncate(40);
        std::fs::write(&path, &bytes).expect("write");
        let err = GgufMeta::read(&path).expect_err("truncated").to_string();
        assert!(err.contains("truncated"), "{err}");
        std::fs::remove_file(path).ok();
        std::fs::remove_file(good).ok();
        let err = GgufMeta::read(Path::new("/nonexistent/x.gguf")).expect_err("missing");
        assert!(err.to_string().contains("scripts/setup.sh"));
    }
}
