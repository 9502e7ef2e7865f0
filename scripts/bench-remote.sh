#!/usr/bin/env bash
# What the chat's way of asking a server teacher costs: llama-server's own greedy decode
# (one /completion of N tokens) against one request per token with the prompt cache kept
# (what `distill chat --teacher URL` sends), on the default teacher served on 127.0.0.1.
#   scripts/bench-remote.sh [N_TOKENS] [REPEATS]      # default 128 tokens, 3 repeats
# Needs scripts/setup.sh (the teacher and llama-server). Prints one line per repeat.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-128}"
REPS="${2:-3}"
[[ "$N" =~ ^[1-9][0-9]*$ && "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "bench-remote: N_TOKENS and REPEATS must be positive integers" >&2; exit 2; }
SERVER="$(bash scripts/build-llama-server.sh)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$SERVER" -m models/SmolLM2-135M-Instruct.Q4_1.gguf --host 127.0.0.1 --port "$PORT" \
    -c 2048 -np 1 -t "${THREADS:-2}" --no-warmup --log-disable >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
python3 - "$PORT" "$N" "$REPS" <<'PY'
import json, sys, time, urllib.request

port, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
url = f"http://127.0.0.1:{port}"


def post(path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=600).read())


for _ in range(600):
    try:
        urllib.request.urlopen(url + "/health", timeout=5)
        break
    except OSError:
        time.sleep(0.2)
text = ("<|im_start|>user\nWrite a short story about a lighthouse keeper.<|im_end|>\n"
        "<|im_start|>assistant\n")
prompt = post("/tokenize", {"content": text, "add_special": False, "parse_special": True})["tokens"]
step = {"n_predict": 1, "n_probs": 20, "post_sampling_probs": False, "temperature": 0,
        "cache_prompt": True, "return_tokens": True}
for _ in range(reps):
    v = post("/completion", {**step, "prompt": prompt, "n_predict": n, "cache_prompt": False,
                             "ignore_eos": True})
    own = v["timings"]["predicted_per_second"]
    tokens = list(prompt)
    post("/completion", {**step, "prompt": tokens})  # the prefill, as the chat's first step
    t0 = time.perf_counter()
    for _ in range(n):
        tokens.append(post("/completion", {**step, "prompt": tokens})["tokens"][0])
    per = n / (time.perf_counter() - t0)
    print(f"bench-remote: {n} tokens: server's own decode {own:.1f} tok/s, "
          f"one request per token {per:.1f} tok/s ({per / own:.2f}x)", flush=True)
PY
