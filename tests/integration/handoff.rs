//! `distill export-corpus` on a corpus recorded by the real teacher: the parquet files read
//! back with pyarrow (and, for DistillKit, a decoder of its documented byte layout) must hold
//! the corpus's ids and log-probs at the positions each trainer expects.

use std::path::Path;
use std::process::Command;

use distill::record::Manifest;
use serde_json::Value;

use crate::common::*;

/// Reads an export back and prints it as JSON: pyarrow for the table; for DistillKit the
/// rows decoded as its `decompress_to_sparse` does for exact_k = k without delta encoding
/// (k little-endian float32 values; indices of ceil(log2 d) bits, most significant first).
const READ_BACK: &str = r#"
import json, math, sys
import numpy as np
import pyarrow.parquet as pq
fmt, out = sys.argv[1], sys.argv[2]
if fmt == "axolotl":
    rows = pq.read_table(out + "/axolotl.parquet").to_pylist()
    print(json.dumps({"rows": rows}))
else:
    cfg = {}
    for line in open(out + "/compression_config.yaml"):
        key, _, value = line.partition(":")
        cfg[key.strip()] = value.strip()
    d, k, exact_k = int(cfg["d"]), int(cfg["k"]), int(cfg["exact_k"])
    assert exact_k == k and cfg["delta_encoding"] == "false" and cfg["exact_dtype"] == "float32", cfg
    assert cfg["polynomial_terms"] == "null" and cfg["residual_bins"] == "[]", cfg
    bits = math.ceil(math.log2(d))
    rows = []
    for r in pq.read_table(out + "/train.parquet").to_pylist():
        lp = np.array(r["compressed_logprobs"], dtype=np.uint8)
        assert lp.shape[1] == 4 * k
        logprobs = lp.reshape(-1).view("<f4").reshape(len(lp), k)
        packed = np.array(r["bytepacked_indices"], dtype=np.uint8)
        stream = np.unpackbits(packed, axis=1, bitorder="big")[:, : k * bits]
        weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
        ids = (stream.reshape(len(packed), k, bits).astype(np.int64) * weights).sum(axis=2)
        rows.append({"input_ids": r["input_ids"], "labels": r["labels"],
                     "ids": ids.tolist(), "logprobs": logprobs.astype(float).tolist()})
    print(json.dumps({"rows": rows}))
"#;

fn read_back(format: &str, out: &Path) -> Vec<Value> {
    let py = Command::new("python3")
        .args(["-c", READ_BACK, format])
        .arg(out)
        .output()
        .expect("python3 with numpy and pyarrow (scripts/setup.sh installs them)");
    assert!(
        py.status.success(),
        "read-back failed:\n{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let v: Value = serde_json::from_slice(&py.stdout).expect("json");
    v["rows"].as_array().expect("rows").clone()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("int"))
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("float"))
        .collect()
}

/// HF labels: -100 unless the token is a response token (a target row predicts it).
fn expected_labels(s: &Seq) -> Vec<i64> {
    (0..s.tokens.len())
        .map(|p| {
            if p > 0 && s.mask[p - 1] == 1 {
                i64::from(s.tokens[p])
            } else {
                -100
            }
        })
        .collect()
}

fn export(corpus: &Path, format: &str, out: &Path) -> String {
    distill_ok(&[
        "export-corpus",
        &corpus.display().to_string(),
        "--format",
        format,
        "--out",
        &out.display().to_string(),
    ])
}

#[test]
fn axolotl_and_distillkit_exports_hold_the_corpus_aligned() {
    let dir = temp_dir("handoff");
    let prompts = write(&dir, "p.jsonl", PROMPTS_EVERY_FORM);
    let corpus = dir.join("corpus");
    distill_ok(&record_args(
        &prompts,
        &corpus,
        &["--max-new-tokens", "8", "--top-k", "4", "--threads", "2"],
    ));
    let seqs = corpus_sequences(&corpus);
    assert_eq!(seqs.len(), 6);
    let k = 4;

    // axolotl: row t of target_* is the distribution over token t + 1.
    let out = dir.join("axolotl");
    let said = export(&corpus, "axolotl", &out);
    assert!(said.contains("exported   6 rows"), "{said}");
    let rows = read_back("axolotl", &out);
    assert_eq!(rows.len(), seqs.len());
    let mut checked = 0;
    for (row, s) in rows.iter().zip(&seqs) {
        let n = s.tokens.len();
        let tokens: Vec<i64> = s.tokens.iter().map(|&t| i64::from(t)).collect();
        assert_eq!(ints(&row["input_ids"]), tokens);
        assert_eq!(ints(&row["attention_mask"]), vec![1; n]);
        let labels = ints(&row["labels"]);
        assert_eq!(labels, expected_labels(s));
        let first_response = s.mask.iter().position(|&b| b == 1).expect("targets") + 1;
        assert!(labels[..first_response].iter().all(|&l| l == -100));
        assert!(labels[first_response..].iter().all(|&l| l >= 0));
        let (t_ids, t_lps, t_mask) = (
            row["target_token_ids"].as_array().expect("rows"),
            row["target_logprobs"].as_array().expect("rows"),
            row["target_mask"].as_array().expect("rows"),
        );
        assert_eq!((t_ids.len(), t_lps.len(), t_mask.len()), (n, n, n));
        let mut r = 0;
        for t in 0..n {
            let m = ints(&t_mask[t]);
            let on = t + 1 < n && labels[t + 1] != -100;
            assert_eq!(m, vec![i64::from(on); k], "mask row {t}");
            assert_eq!(on, s.mask[t] == 1);
            if !on {
                continue;
            }
            let ids: Vec<i64> = s.ids[r].iter().map(|&x| i64::from(x)).collect();
            assert_eq!(ints(&t_ids[t]), ids, "row {t}");
            let ours = &s.logprobs[r];
            let lse = ours.iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln();
            for (a, &b) in floats(&t_lps[t]).iter().zip(ours) {
                assert!(
                    (a - (f64::from(b) - lse)).abs() < 1e-5,
                    "{a} vs {b} - {lse}"
                );
            }
            r += 1;
            checked += 1;
        }
        assert_eq!(r, s.ids.len());
    }
    assert!(checked > 0);
    let yaml = std::fs::read_to_string(out.join("axolotl.yaml")).expect("yaml");
    for needle in [
        "axolotl.integrations.kd.KDPlugin",
        "kd_trainer: true",
        "kd_alpha:",
        "kd_ce_alpha:",
        "kd_temperature: 1.0",
        "axolotl.parquet",
    ] {
        assert!(yaml.contains(needle), "{needle} in\n{yaml}");
    }

    // DistillKit: rows 0..T-2, row t the distribution over token t + 1, raw log-probs.
    let out = dir.join("distillkit");
    export(&corpus, "distillkit", &out);
    let rows = read_back("distillkit", &out);
    assert_eq!(rows.len(), seqs.len());
    for (row, s) in rows.iter().zip(&seqs) {
        let n = s.tokens.len() - 1;
        let tokens: Vec<i64> = s.tokens[..n].iter().map(|&t| i64::from(t)).collect();
        assert_eq!(ints(&row["input_ids"]), tokens);
        assert_eq!(ints(&row["labels"]), expected_labels(s)[..n].to_vec());
        let (ids, lps) = (
            row["ids"].as_array().expect("rows"),
            row["logprobs"].as_array().expect("rows"),
        );
        assert_eq!((ids.len(), lps.len()), (n, n));
        let mut r = 0;
        for t in 0..n {
            if s.mask[t] == 1 {
                let want: Vec<i64> = s.ids[r].iter().map(|&x| i64::from(x)).collect();
                assert_eq!(ints(&ids[t]), want, "row {t}");
                let want: Vec<f64> = s.logprobs[r].iter().map(|&x| f64::from(x)).collect();
                assert_eq!(floats(&lps[t]), want, "row {t}: f16 values exactly");
                r += 1;
            } else {
                // Masked prompt rows: one-hot on the true next token.
                assert_eq!(ints(&ids[t])[0], i64::from(s.tokens[t + 1]));
                assert_eq!(floats(&lps[t])[0], 0.0);
            }
        }
        // The last token's distribution (row T-2) is kept: the student learns to stop.
        assert_eq!(r, s.ids.len());
    }
    let n_vocab = Manifest::read(&corpus)
        .expect("read")
        .expect("manifest")
        .teacher
        .n_vocab;
    let cfg = std::fs::read_to_string(out.join("compression_config.yaml")).expect("yaml");
    assert!(
        cfg.contains(&format!("d: {n_vocab}\n")) && cfg.contains("exact_k: 4\n"),
        "{cfg}"
    );
    let run = std::fs::read_to_string(out.join("distillkit.yaml")).expect("yaml");
    assert!(
        run.contains("kind: dataset") && run.contains("logprob_compressor:"),
        "{run}"
    );

    // A slice is refused until merged.
    let slice = dir.join("slice");
    distill_ok(&record_args(
        &prompts,
        &slice,
        &[
            "--max-new-tokens",
            "8",
            "--top-k",
            "4",
            "--shard",
            "0/2",
            "--shard-size",
            "3",
        ],
    ));
    let err = distill_err(&[
        "export-corpus",
        &slice.display().to_string(),
        "--format",
        "axolotl",
        "--out",
        &dir.join("x").display().to_string(),
    ]);
    assert!(err.contains("distill merge"), "{err}");
}
