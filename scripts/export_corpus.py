#!/usr/bin/env python3
"""Write a distill corpus as a dataset for a PyTorch distillation trainer.

Usage: python3 scripts/export_corpus.py CORPUS_DIR axolotl|distillkit OUT_DIR
(`distill export-corpus` runs this same script; it needs numpy, safetensors and pyarrow.)

Every row is one recorded sequence. A corpus row p of `topk_*` is the teacher's top-k
distribution over token p+1 (stored where token p+1 is a response token), so:

axolotl (KD plugin, pre-tokenized dataset; OUT/axolotl.parquet, OUT/axolotl.yaml)
  input_ids [T], attention_mask [T], labels [T] (-100 where the token is not a target),
  target_token_ids / target_logprobs / target_mask [T][k]: row t is the teacher's
  distribution over input_ids[t+1], target_mask[t] = 1 exactly where labels[t+1] != -100
  (the last row and prompt rows are padding: ids 0..k-1, log-prob -1e9, mask 0). The
  log-probs are renormalised over the top k, as axolotl's own KD dataset strategy does
  before its trainer sees them.

distillkit (OUT/train.parquet, OUT/compression_config.yaml, OUT/distillkit.yaml)
  input_ids [T-1], labels [T-1], compressed_logprobs [T-1][4k], bytepacked_indices
  [T-1][ceil(k*b/8)], b = ceil(log2(vocab)): DistillKit's "distribution quantization"
  layout with exact_k = k float32 values, no polynomial terms, no residual bins, no delta
  encoding; indices bit-packed most significant bit first. As in DistillKit's own capture
  script, row t is the distribution over token t+1 and the last token has no row (its
  distribution is row T-2's). Rows DistillKit masks out (labels[t] == -100, the prompt)
  that have no teacher data hold a one-hot row on the true next token. Log-probs are the
  teacher's raw full-vocabulary values (temperature 1).

Prints one JSON object: rows, tokens, targets, files.
"""
import json
import math
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors.numpy import load_file

PAD_LOGPROB = -1e9  # axolotl's own padding value for target_logprobs
FAR_LOGPROB = -1e4  # DistillKit placeholder rows: finite, so 0 * log never makes NaN


def sequences(corpus, manifest):
    """Yield (tokens, mask, ids [m, k], logprobs [m, k] float32) per sequence."""
    for info in manifest["shards"]:
        t = load_file(os.path.join(corpus, info["file"]))
        tokens, offsets, mask = t["tokens"], t["offsets"].astype(np.int64), t["target_mask"]
        ids, lps = t["topk_ids"].astype(np.int64), t["topk_logprobs"].astype(np.float32)
        row = 0
        for s in range(len(offsets) - 1):
            a, b = offsets[s], offsets[s + 1]
            m = mask[a:b]
            n = int(m.sum())
            yield tokens[a:b].astype(np.int64), m, ids[row:row + n], lps[row:row + n]
            row += n


def labels_of(tokens, mask):
    """-100 except where the token is predicted by a target row (mask of the token before)."""
    labels = np.full(len(tokens), -100, dtype=np.int64)
    labels[1:] = np.where(mask[:-1] == 1, tokens[1:], -100)
    return labels


def axolotl(corpus, manifest, out):
    k = min(manifest["record"]["k"], manifest["teacher"]["n_vocab"])
    cols = {name: [] for name in ("input_ids", "attention_mask", "labels", "target_token_ids", "target_logprobs", "target_mask")}
    stats = {"rows": 0, "tokens": 0, "targets": 0}
    for tokens, mask, ids, lps in sequences(corpus, manifest):
        if len(ids) == 0:
            continue
        n = len(tokens)
        full_ids = np.tile(np.arange(k, dtype=np.int64), (n, 1))
        full_lps = np.full((n, k), PAD_LOGPROB, dtype=np.float32)
        where = np.flatnonzero(mask)
        full_ids[where] = ids
        lse = np.logaddexp.reduce(lps.astype(np.float64), axis=1, keepdims=True)
        full_lps[where] = (lps - lse).astype(np.float32)
        cols["input_ids"].append(tokens)
        cols["attention_mask"].append(np.ones(n, dtype=np.int64))
        cols["labels"].append(labels_of(tokens, mask))
        cols["target_token_ids"].append(full_ids)
        cols["target_logprobs"].append(full_lps)
        cols["target_mask"].append(np.repeat(mask.astype(np.int64)[:, None], k, axis=1))
        stats["rows"] += 1
        stats["tokens"] += n
        stats["targets"] += len(where)
    int_list = pa.list_(pa.int64())
    schema = pa.schema([
        ("input_ids", int_list),
        ("attention_mask", int_list),
        ("labels", int_list),
        ("target_token_ids", pa.list_(int_list)),
        ("target_logprobs", pa.list_(pa.list_(pa.float32()))),
        ("target_mask", pa.list_(int_list)),
    ])
    table = pa.table({name: [to_list(x) for x in cols[name]] for name in schema.names}, schema=schema)
    data = os.path.join(out, "axolotl.parquet")
    pq.write_table(table, data)
    config = os.path.join(out, "axolotl.yaml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(AXOLOTL_YAML.format(data=os.path.abspath(data), teacher=manifest["teacher"]["file"], k=k))
    stats["files"] = [data, config]
    return stats


AXOLOTL_YAML = """\
# Sample axolotl config for a corpus exported by `distill export-corpus --format axolotl`.
# Teacher: {teacher}, top-{k} log-probs per target. The student must share the teacher's
# vocabulary (token ids are used as they are).
base_model: PATH/TO/STUDENT  # a Hugging Face model with the teacher's vocabulary

plugins:
  - axolotl.integrations.kd.KDPlugin
kd_trainer: true
kd_ce_alpha: 0.1       # weight of cross-entropy on the labels
kd_alpha: 0.9          # weight of the KD loss on the teacher's top-k
kd_temperature: 1.0    # the log-probs are stored at temperature 1 and renormalised over top-k

datasets:
  - path: {data}
    ds_type: parquet
    type:                # pre-tokenized: input_ids, attention_mask, labels and target_* as stored
sequence_len: 2048
sample_packing: false
pad_to_sequence_len: false

micro_batch_size: 4
gradient_accumulation_steps: 1
num_epochs: 1
learning_rate: 0.0001
optimizer: adamw_torch
lr_scheduler: cosine
output_dir: ./outputs/kd-student
"""


def pack_bits(values, bits):
    """Pack non-negative integers [rows, n] into bytes, most significant bit first."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    stream = ((values[..., None] >> shifts) & 1).astype(np.uint8).reshape(values.shape[0], -1)
    return np.packbits(stream, axis=1, bitorder="big")


def distillkit(corpus, manifest, out):
    k = min(manifest["record"]["k"], manifest["teacher"]["n_vocab"])
    d = manifest["teacher"]["n_vocab"]
    bits = max(1, math.ceil(math.log2(d)))
    cols = {name: [] for name in ("input_ids", "labels", "compressed_logprobs", "bytepacked_indices")}
    stats = {"rows": 0, "tokens": 0, "targets": 0}
    for tokens, mask, ids, lps in sequences(corpus, manifest):
        if len(ids) == 0 or len(tokens) < 2:
            continue
        n = len(tokens) - 1  # rows 0..T-2: the distribution over tokens 1..T-1
        row_ids = np.zeros((n, k), dtype=np.int64)
        row_lps = np.full((n, k), FAR_LOGPROB, dtype=np.float32)
        # One-hot rows on the true next token where there is no teacher row.
        nxt = tokens[1:]
        filler = np.arange(1, k, dtype=np.int64)
        row_ids[:, 0] = nxt
        row_ids[:, 1:] = (nxt[:, None] + filler[None, :]) % d
        row_lps[:, 0] = 0.0
        where = np.flatnonzero(mask[:n])
        row_ids[where] = ids
        row_lps[where] = lps
        cols["input_ids"].append(tokens[:n])
        cols["labels"].append(labels_of(tokens, mask)[:n])
        cols["compressed_logprobs"].append(row_lps.astype("<f4").view(np.uint8).reshape(n, 4 * k))
        cols["bytepacked_indices"].append(pack_bits(row_ids, bits))
        stats["rows"] += 1
        stats["tokens"] += n
        stats["targets"] += len(where)
    byte_rows = pa.list_(pa.list_(pa.uint8()))
    schema = pa.schema([
        ("input_ids", pa.list_(pa.uint64())),
        ("labels", pa.list_(pa.int64())),
        ("compressed_logprobs", byte_rows),
        ("bytepacked_indices", byte_rows),
    ])
    table = pa.table({name: [to_list(x) for x in cols[name]] for name in schema.names}, schema=schema)
    data = os.path.join(out, "train.parquet")
    pq.write_table(table, data)
    compression = os.path.join(out, "compression_config.yaml")
    with open(compression, "w", encoding="utf-8") as f:
        f.write(COMPRESSION_YAML.format(d=d, k=k, indent=""))
    config = os.path.join(out, "distillkit.yaml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(DISTILLKIT_YAML.format(
            data=os.path.abspath(out),
            teacher=manifest["teacher"]["file"],
            compressor=COMPRESSION_YAML.format(d=d, k=k, indent="    "),
        ))
    stats["files"] = [data, compression, config]
    return stats


COMPRESSION_YAML = """\
{indent}d: {d}
{indent}k: {k}
{indent}exact_k: {k}
{indent}exact_dtype: float32
{indent}polynomial_terms: null
{indent}term_dtype: float32
{indent}residual_bins: []
{indent}delta_encoding: false
{indent}error_diffusion: false
{indent}normalize_t: false
"""

DISTILLKIT_YAML = """\
# Sample DistillKit config for a corpus exported by `distill export-corpus --format distillkit`.
# Teacher: {teacher}. The student must share the teacher's vocabulary.
project_name: distill-handoff
model: PATH/TO/STUDENT  # a Hugging Face model with the teacher's vocabulary
output_path: ./outputs/distillkit-student
sequence_length: 2048

dataset:
  train_dataset:
    repo_id: {data}  # a folder of parquet files loads with datasets.load_dataset
    split: train

teacher:
  kind: dataset
  logprob_compressor:
{compressor}
loss_functions:
  - function: cross_entropy
    weight: 0.5
  - function: kl
    weight: 0.5
    temperature: 1.0
    missing_probability_handling: zero
"""


def to_list(x):
    return x.tolist()


def main(corpus, fmt, out):
    with open(os.path.join(corpus, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    os.makedirs(out, exist_ok=True)
    writers = {"axolotl": axolotl, "distillkit": distillkit}
    if fmt not in writers:
        sys.exit(f"unknown format '{fmt}': give axolotl or distillkit")
    print(json.dumps(writers[fmt](corpus, manifest, out)))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
