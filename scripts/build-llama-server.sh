#!/usr/bin/env bash
# Build llama.cpp's llama-server (b11312) for the remote-teacher tests; skipped when present.
#
# Usage: scripts/build-llama-server.sh        prints the binary's path on stdout
# Environment:
#   DISTILL_CACHE  where llama.cpp is unpacked and built (default ~/.cache/distill)
#   BUILD_JOBS     parallel compile jobs (default 2)
#
# The sources are the same hash-pinned llama-cpp-python sdist as scripts/bench-teacher.sh
# (scripts/lib/llama-src.sh), so the server runs the ggml version the benchmark measures.
# The build directory is separate from the benchmark's (build-native), which configures the
# server off; the web UI and everything that could reach the network are off.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/llama-src.sh
source "$repo_root/scripts/lib/llama-src.sh"

log() { echo "build-llama-server: $*" >&2; }
die() { log "error: $*"; exit 1; }

cache=${DISTILL_CACHE:-$HOME/.cache/distill}
src=$(llama_src_unpack "$cache") || die "could not fetch the llama.cpp sources"
build=$src/build-server
bin=$build/bin/llama-server
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "building llama-server in $build (long: a few hundred objects)"
start=$SECONDS
cmake -S "$src" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_LLGUIDANCE=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_NUMBER="$LLAMA_BUILD_NUMBER" \
    -DLLAMA_BUILD_COMMIT="$LLAMA_BUILD_COMMIT" \
    >"$work/cmake.log" 2>&1 || { tail -n 40 "$work/cmake.log" >&2; die "cmake configure failed"; }
cmake --build "$build" --config Release -j "${BUILD_JOBS:-2}" --target llama-server \
    >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; die "llama-server build failed"; }
[[ -x "$bin" ]] || die "the build finished but $bin is missing"
log "llama-server built in $((SECONDS - start)) s"
echo "$bin"
