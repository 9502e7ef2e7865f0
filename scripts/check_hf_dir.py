#!/usr/bin/env python3
"""Load a distill student directory with transformers, as a user would, and compare it with
what distill and llama.cpp computed for the same inputs.

    python3 scripts/check_hf_dir.py STUDENT_DIR CASES.json

CASES.json (written by the integration test tests/integration/hf.rs):
  texts:    [{"text", "ids"}]        llama.cpp's tokens (add_special, parse_special)
  chats:    [{"messages", "prompt"}] the prompt distill renders (llama.cpp's template)
  logits:   {"ids", "file"}          candle's logits for ids, f32 little-endian [t][vocab]
  generate: {"messages", "ids", "n"} a chat to answer greedily for n tokens (optional);
                                     ids: llama.cpp's tokens of distill's prompt for it

Prints one JSON object: the mismatches found and the logit agreement. Needs torch and
transformers (scripts/setup.sh installs CPU-capable wheels from PyPI).
"""
import json
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    student, cases_path = sys.argv[1], sys.argv[2]
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(student)
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32)
    model.eval()
    gen = GenerationConfig.from_pretrained(student)

    out = {"tokenizer_class": type(tok).__name__, "model_class": type(model).__name__}
    out["eos_token_id"] = gen.eos_token_id
    out["chat_template"] = tok.chat_template is not None

    bad_tokens = []
    for case in cases.get("texts", []):
        ids = tok(case["text"])["input_ids"]
        if ids != case["ids"]:
            bad_tokens.append({"text": case["text"], "hf": ids, "llama": case["ids"]})
    out["texts"] = len(cases.get("texts", []))
    out["token_mismatches"] = bad_tokens[:5]
    out["n_token_mismatches"] = len(bad_tokens)

    bad_chats = []
    for case in cases.get("chats", []):
        prompt = tok.apply_chat_template(
            case["messages"], tokenize=False, add_generation_prompt=True
        )
        if prompt != case["prompt"]:
            bad_chats.append({"hf": prompt, "distill": case["prompt"]})
    out["chats"] = len(cases.get("chats", []))
    out["chat_mismatches"] = bad_chats

    lg = cases.get("logits")
    if lg:
        ids = lg["ids"]
        ours = np.fromfile(lg["file"], dtype="<f4").reshape(len(ids), -1)
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits[0].float().numpy()
        diff = np.abs(theirs - ours)
        out["logits"] = {
            "positions": len(ids),
            "vocab": int(theirs.shape[-1]),
            "max_abs": float(diff.max()),
            "rel_max": float(diff.max() / np.abs(ours).max()),
            "mean_abs": float(diff.mean()),
            "top1": float((theirs.argmax(-1) == ours.argmax(-1)).mean()),
        }

    g = cases.get("generate")
    if g:
        # As the README shows it: the chat template, then generate with the directory's
        # generation_config.json.
        inputs = tok.apply_chat_template(
            g["messages"], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out["generate_prompt_matches"] = inputs["input_ids"][0].tolist() == g["ids"]
        with torch.no_grad():
            seq = model.generate(**inputs, max_new_tokens=g["n"])
        new = seq[0, inputs["input_ids"].shape[1] :].tolist()
        out["generated_ids"] = new
        out["generated"] = tok.decode(new, skip_special_tokens=True)

    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
