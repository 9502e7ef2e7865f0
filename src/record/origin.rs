//! A shard's origin stamp: which teacher, settings and prompt slice produced it, and a
//! sha256 of its tensor data. It sits in the safetensors header (`__metadata__.origin`,
//! a JSON string), so a corpus whose `manifest.json` was lost can be checked and rebuilt
//! from its shards alone. Shards written before the stamp existed still read; they only
//! cannot prove their origin.
//!
//! safetensors keeps metadata in a `HashMap`, whose order changes from run to run; the
//! stamp is therefore added by re-serialising the header through `serde_json` (sorted keys),
//! which keeps a shard's bytes identical between runs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::RecordSettings;
use crate::gguf::hex;

/// Metadata key of the stamp.
pub const KEY: &str = "origin";

/// Where a shard came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// sha256 of the teacher GGUF.
    pub teacher_sha256: String,
    /// The corpus settings (`threads`, which does not change results, is stored as 0).
    pub settings: RecordSettings,
    /// sha256 of each prompt file, in order.
    pub sources: Vec<String>,
    /// Index of the shard's first record over all sources.
    pub first_record: usize,
    /// Index of its last record.
    pub last_record: usize,
    /// sha256 of the file's tensor data (everything after the header); filled in by
    /// [`stamp`].
    #[serde(default)]
    pub data_sha256: String,
}

impl Origin {
    /// The stamp of records `first..=last` recorded by teacher `teacher_sha256`.
    pub fn new(
        teacher_sha256: &str,
        settings: &RecordSettings,
        sources: Vec<String>,
        (first, last): (usize, usize),
    ) -> Self {
        Self {
            teacher_sha256: teacher_sha256.to_string(),
            settings: RecordSettings {
                threads: 0,
                ..settings.clone()
            },
            sources,
            first_record: first,
            last_record: last,
            data_sha256: String::new(),
        }
    }
}

/// The header length, header and tensor data of safetensors bytes.
fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let n: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("file is shorter than a safetensors header")?;
    let n = usize::try_from(u64::from_le_bytes(n)).map_err(|_| "header length overflows")?;
    let end = n.checked_add(8).filter(|&e| e <= bytes.len());
    let end = end.ok_or("header runs past the end of the file")?;
    Ok((&bytes[8..end], &bytes[end..]))
}

/// Add `origin` (with the data's sha256 filled in) to the header of the safetensors
/// `bytes`.
///
/// # Errors
/// A reason when `bytes` are not safetensors.
pub fn stamp(bytes: &[u8], origin: &Origin) -> Result<Vec<u8>, String> {
    let (header, data) = split(bytes)?;
    let mut value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not JSON: {e}"))?;
    let origin = Origin {
        data_sha256: hex(&Sha256::digest(data)),
        ..origin.clone()
    };
    let text = serde_json::to_string(&origin).map_err(|e| e.to_string())?;
    let meta = value
        .as_object_mut()
        .ok_or("header is not a JSON object")?
        .entry("__metadata__")
        .or_insert_with(|| serde_json::json!({}));
    meta.as_object_mut()
        .ok_or("__metadata__ is not a JSON object")?
        .insert(KEY.to_string(), serde_json::Value::String(text));
    let mut header = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    // safetensors pads the header with spaces to a multiple of 8 bytes.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    Ok(out)
}

/// The stamp of safetensors `bytes`: `Ok(None)` when they carry none (an older shard).
///
/// # Errors
/// A reason when the stamp is unreadable or the data does not match its sha256 (damage).
pub fn read(bytes: &[u8]) -> Result<Option<Origin>, String> {
    let (header, data) = split(bytes)?;
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not JSON: {e}"))?;
    let Some(text) = value
        .get("__metadata__")
        .and_then(|m| m.get(KEY))
        .and_then(serde_json::Value::as_str)
    else {
        return Ok(None);
    };
    let origin: Origin =
        serde_json::from_str(text).map_err(|e| format!("origin stamp is unreadable: {e}"))?;
    let sha = hex(&Sha256::digest(data));
    if sha != origin.data_sha256 {
        return Err(format!(
            "tensor data has sha256 {sha}, its stamp says {}: the file is damaged",
            origin.data_sha256
        ));
    }
    Ok(Some(origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Mode, Shard};

    fn origin() -> Origin {
        let settings = RecordSettings {
            mode: Mode::Generate,
            k: 2,
            temperature: 0.7,
            top_p: 0.9,
            seed: 1,
            max_new_tokens: 8,
            system: Some("be brief".into()),
            ctx: 64,
            parallel: 2,
            shard_size: 2,
            skip_bad: false,
            threads: 4,
            hidden: false,
        };
        Origin::new("abc", &settings, vec!["f00d".into()], (2, 3))
    }

    fn shard_bytes() -> Vec<u8> {
        let mut shard = Shard::new(2);
        shard.tokens = vec![1, 2, 3];
        shard.offsets = vec![0, 3];
        shard.target_mask = vec![0, 1, 0];
        shard.topk_ids = vec![4, 5];
        shard.topk_logprobs = vec![half::f16::from_f32(-0.5); 2];
        shard.to_bytes(100).expect("serialize")
    }

    #[test]
    fn a_stamp_reads_back_and_keeps_the_shard_readable_and_deterministic() {
        let plain = shard_bytes();
        assert_eq!(read(&plain), Ok(None), "an unstamped shard has no origin");
        let stamped = stamp(&plain, &origin()).expect("stamp");
        assert_eq!(stamped, stamp(&plain, &origin()).expect("again"));
        let back = read(&stamped).expect("read").expect("stamped");
        assert_eq!(
            back.settings.threads, 0,
            "threads are not part of the identity"
        );
        assert_eq!((back.first_record, back.last_record), (2, 3));
        assert_eq!(back.data_sha256.len(), 64);
        assert_eq!(
            Shard::from_bytes(&stamped).expect("parse"),
            Shard::from_bytes(&plain).expect("parse"),
        );
        assert_eq!(stamped.len() % 8, plain.len() % 8, "header stays 8-aligned");
    }

    #[test]
    fn damaged_data_fails_the_stamp() {
        let mut stamped = stamp(&shard_bytes(), &origin()).expect("stamp");
        let last = stamped.len() - 1;
        stamped[last] ^= 1;
        let err = read(&stamped).expect_err("damaged");
        assert!(err.contains("damaged"), "{err}");
        assert!(read(&stamped[..4]).is_err());
    }
}
