#!/usr/bin/env python3
"""Read a distill corpus (format v1 or v2) with nothing but json and safetensors.numpy.

Usage: python3 scripts/read_corpus.py CORPUS_DIR
Prints one JSON object of totals recomputed from the shards, and fails loudly if a shard
disagrees with the manifest or breaks the format's invariants.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file


def main(corpus):
    with open(os.path.join(corpus, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    # v2 adds the optional teacher hidden states; everything else is as in v1.
    assert manifest["schema_version"] in (1, 2), manifest["schema_version"]
    k = manifest["record"]["k"]
    n_vocab = manifest["teacher"]["n_vocab"]
    totals = {"sequences": 0, "tokens": 0, "targets": 0, "max_mass": 0.0}
    for info in manifest["shards"]:
        t = load_file(os.path.join(corpus, info["file"]))
        tokens, offsets, mask = t["tokens"], t["offsets"], t["target_mask"]
        ids, logprobs = t["topk_ids"], t["topk_logprobs"]
        assert tokens.dtype == np.uint32 and offsets.dtype == np.uint64 and mask.dtype == np.uint8
        assert logprobs.dtype == np.float16 and ids.dtype == (np.uint16 if n_vocab <= 65536 else np.uint32)
        assert offsets[0] == 0 and offsets[-1] == len(tokens) == len(mask)
        assert ids.shape == logprobs.shape == (int(mask.sum()), min(k, n_vocab))
        if "hidden" in t:
            hidden = t["hidden"]
            assert hidden.dtype == np.float16 and hidden.shape[0] == int(mask.sum()), hidden.shape
            assert manifest["record"].get("hidden"), "hidden states in a corpus recorded without --hidden"
            width = totals.setdefault("hidden_width", hidden.shape[1])
            assert hidden.shape[1] == width, (hidden.shape, width)
            assert np.all(np.isfinite(hidden.astype(np.float32)))
        assert int(ids.max(initial=0)) < n_vocab and int(tokens.max(initial=0)) < n_vocab
        lp = logprobs.astype(np.float32)
        assert np.all(np.diff(lp, axis=1) <= 0), "top-k rows must be sorted by descending probability"
        mass = np.exp(lp).sum(axis=1)
        assert np.all(mass <= 1.0 + 1e-2), mass.max()
        # The last position of every sequence has no next token, so it is never a target.
        assert np.all(mask[offsets[1:].astype(np.int64) - 1] == 0)
        assert len(offsets) - 1 == info["sequences"] and len(tokens) == info["tokens"]
        totals["sequences"] += len(offsets) - 1
        totals["tokens"] += len(tokens)
        totals["targets"] += int(mask.sum())
        totals["max_mass"] = max(totals["max_mass"], float(mass.max(initial=0.0)))
    for key in ("sequences", "tokens", "targets"):
        assert totals[key] == manifest["totals"][key], (key, totals[key], manifest["totals"][key])
    print(json.dumps(totals))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
