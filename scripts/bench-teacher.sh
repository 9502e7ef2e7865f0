#!/usr/bin/env bash
# Teacher throughput: upstream llama.cpp's own benchmarks vs `distill bench teacher`.
#
# Usage: scripts/bench-teacher.sh [--markdown] [--llama-only] [--no-cargo-build]
#   --markdown        print the report as Markdown (for docs/BENCHMARKS.md)
#   --llama-only      run only the llama.cpp side (no cargo, no distill)
#   --no-cargo-build  use the distill binary already built
# Environment:
#   TEACHER_GGUF   teacher model  (default models/SmolLM2-135M-Instruct.Q4_1.gguf)
#   THREADS        CPU threads for every benchmark (default 2)
#   REPS           llama-bench repetitions (default 5)
#   DISTILL_CACHE  where llama.cpp is unpacked and built (default ~/.cache/distill)
#   BUILD_JOBS     parallel compile jobs for llama.cpp (default 2)
#   CARGO_TARGET_DIR  honoured when locating the distill binary
#
# The reference point is llama.cpp built from source rather than a distro package,
# so that both sides run the same ggml CPU kernels with the same native flags.
set -euo pipefail

# --- Pinned baseline -------------------------------------------------------------
# llama-cpp-sys-2 0.1.161 (which distill links through llama-cpp-2 0.1.160) vendors a
# llama.cpp tree without tools/llama-bench and tools/batched-bench, so we take full
# sources from the llama-cpp-python sdist, which vendors the whole repository.
#   llama-cpp-sys-2 0.1.161 : ggml 0.26.0, llama.cpp commit after b11312 (the crate
#                             records no commit; its tree is newer than 0c1e57098:
#                             LLAMA_SESSION_VERSION 11, new clef model, ...)
#   llama-cpp-python 0.3.36 : ggml 0.25.3, llama.cpp b11312 = 0c1e57098bba (newest on
#                             PyPI; its ggml-cpu differs from the crate's in 11 files,
#                             ggml-cpu.c, ops.cpp, repack.cpp, sgemm.cpp among them)
#   llama-cpp-python 0.3.35 : ggml 0.20.0, llama.cpp 4df29be4f (much further away)
# The sdist's git metadata is a depth-1 clone (it would report build number 1), so the
# real build number and commit are handed to cmake explicitly.
# shellcheck source=lib/llama-src.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/llama-src.sh"  # LCP_VERSION, LLAMA_BUILD_*, llama_src_unpack

markdown=0 llama_only=0 cargo_build=1
for arg in "$@"; do
    case "$arg" in
        --markdown) markdown=1 ;;
        --llama-only) llama_only=1 ;;
        --no-cargo-build) cargo_build=0 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-teacher.sh: unknown argument: $arg (see --help)" >&2; exit 2 ;;
    esac
done

log() { echo "bench-teacher: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Resolve the model against the caller's directory, then work from the repo root so
# that target/ and models/ mean the project's.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gguf=${TEACHER_GGUF:-$repo_root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[[ -f "$gguf" ]] || die "teacher GGUF not found: $gguf (set TEACHER_GGUF)"
gguf=$(cd "$(dirname "$gguf")" && pwd)/$(basename "$gguf")
cd "$repo_root"

threads=${THREADS:-2}
reps=${REPS:-5}
cache=${DISTILL_CACHE:-$HOME/.cache/distill}
src=$cache/llama.cpp-b$LLAMA_BUILD_NUMBER  # what llama_src_unpack fills
build=$src/build-native
bench_bin=$build/bin/llama-bench
batched_bin=$build/bin/llama-batched-bench

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- 1. Sources (the pinned sdist, shared with scripts/build-llama-server.sh) ---------
src=$(llama_src_unpack "$cache") || die "could not fetch the llama.cpp sources"

# --- 2. Build (only the two benchmark tools) ---------------------------------------
if [[ ! -x "$bench_bin" || ! -x "$batched_bin" ]]; then
    log "building llama-bench and llama-batched-bench in $build"
    start=$SECONDS
    # GGML_NATIVE matches distill's `-C target-cpu=native` (which makes llama-cpp-sys-2
    # turn GGML_NATIVE on); OpenMP stays on, as with llama-cpp-2's default features.
    # Everything that could reach the network or pull optional deps is off.
    cmake -S "$src" -B "$build" \
        -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON \
        -DBUILD_SHARED_LIBS=OFF \
        -DLLAMA_CURL=OFF \
        -DLLAMA_OPENSSL=OFF \
        -DLLAMA_LLGUIDANCE=OFF \
        -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_APP=OFF \
        -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_NUMBER="$LLAMA_BUILD_NUMBER" \
        -DLLAMA_BUILD_COMMIT="$LLAMA_BUILD_COMMIT" \
        >"$work/cmake.log" 2>&1 || { tail -n 40 "$work/cmake.log" >&2; die "cmake configure failed"; }
    # The CPU variant line shows whether -march=native made it in; a slow baseline
    # usually means it did not.
    grep -m1 'Adding CPU backend variant' "$work/cmake.log" >&2 || true
    cmake --build "$build" --config Release -j "${BUILD_JOBS:-2}" \
        --target llama-bench llama-batched-bench >"$work/build.log" 2>&1 \
        || { tail -n 40 "$work/build.log" >&2; die "llama.cpp build failed"; }
    log "llama.cpp built in $((SECONDS - start)) s"
fi

# --- 3. Our binary ------------------------------------------------------------------
# Built before any measurement so that the benchmarks run back to back on an idle CPU.
distill_bin=${CARGO_TARGET_DIR:-target}/release/distill
distill_note=""
if ((llama_only)); then
    distill_note="not run (--llama-only)"
elif ((cargo_build)); then
    log "cargo build --release"
    # A failed build must not let a stale binary stand in for the current code.
    cargo build --release >&2 || distill_note="missing: \`cargo build --release\` failed"
fi

# --- 4. Measurements ----------------------------------------------------------------
bench_cmd=("$bench_bin" -m "$gguf" -t "$threads" -p 512 -n 128 -r "$reps" -o json)
batched_cmd=("$batched_bin" -m "$gguf" -t "$threads" -c 4096 -b 2048 -ub 512
    -npp 128 -ntg 128 -npl 1,8 --output-format jsonl)
distill_cmd=("$distill_bin" bench teacher --teacher "$gguf" --threads "$threads" --json)

# Two cores leave no headroom: a compile in the background halves the figures (and
# OpenMP's spinning threads can collapse under it), so every run also records how
# much of the machine something else took meanwhile, steal time included.
stat_busy() { # busy CPU-seconds of the whole machine, and its CPU count
    awk -v hz="$(getconf CLK_TCK)" '/^cpu /{b=($2+$3+$4+$7+$8+$9)/hz} /^cpu[0-9]/{n++}
        END{print b, n}' /proc/stat
}
cpu_secs() { # sum the m/s times that bash's `times` wrote to file $1
    awk '{for (i=1;i<=NF;i++) {split($i,a,"m"); t+=a[1]*60+a[2]}} END{print t}' "$1"
}
run() { # run NAME CMD...: stdout to $work/NAME.out, stderr to $work/NAME.err
    local name=$1; shift
    log "running: $*"
    local before t0 rc=0
    # `times` must run in this shell (a redirect, never $(...)): in a subshell it
    # reports zeros. Its second line is what our children used.
    before=$(stat_busy); t0=$(date +%s.%N); times >"$work/times0"
    "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    times >"$work/times1"
    awk -v b0="${before% *}" -v n="${before#* }" -v t0="$t0" \
        -v o0="$(cpu_secs "$work/times0")" -v o1="$(cpu_secs "$work/times1")" \
        -v b1="$(stat_busy | cut -d' ' -f1)" -v t1="$(date +%s.%N)" \
        'BEGIN{x=(b1-b0-(o1-o0))/((t1-t0)*n)*100; printf "%.0f\n", x<0?0:(x>100?100:x)}' >"$work/$name.load"
    return "$rc"
}

run llama-bench "${bench_cmd[@]}" \
    || { tail -n 20 "$work/llama-bench.err" >&2; die "llama-bench failed"; }
run batched-bench "${batched_cmd[@]}" \
    || { tail -n 20 "$work/batched-bench.err" >&2; die "llama-batched-bench failed"; }

if [[ -z "$distill_note" ]]; then
    if [[ ! -x "$distill_bin" ]]; then
        distill_note="missing: $distill_bin not built"
    elif ! run distill "${distill_cmd[@]}"; then
        tail -n 20 "$work/distill.err" >&2
        distill_note="missing: \`distill bench teacher\` failed"
    fi
fi

# --- 5. Report ----------------------------------------------------------------------
cpu=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cmd_str() { # shell-quoted only where needed, repo paths made relative
    local a out=()
    for a in "$@"; do
        a=${a#"$repo_root"/}
        [[ $a =~ ^[A-Za-z0-9_./,:=+-]+$ ]] || a=$(printf '%q' "$a")
        out+=("$a")
    done
    echo "${out[*]}"
}

WORK=$work MARKDOWN=$markdown DISTILL_NOTE=$distill_note \
CPU=${cpu:-unknown} NPROC=$(nproc) DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
THREADS_USED=$threads GGUF=$gguf LCP_VERSION=$LCP_VERSION \
BENCH_CMD=$(cmd_str "${bench_cmd[@]}") BATCHED_CMD=$(cmd_str "${batched_cmd[@]}") \
DISTILL_CMD=$(cmd_str "${distill_cmd[@]}") \
python3 - <<'PY'
import json, os, sys

env = os.environ
work = env["WORK"]

def read(name):
    path = os.path.join(work, name)
    return open(path).read() if os.path.exists(path) else ""

def json_lines(text):
    # The tools interleave logs with results; only whole-line JSON objects count.
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out

# llama-bench: one record per test, avg_ts is already the mean over the repetitions.
runs = json.loads(read("llama-bench.out"))
def bench(n_prompt, n_gen):
    for r in runs:
        if r["n_prompt"] == n_prompt and r["n_gen"] == n_gen:
            return r["avg_ts"], r["stddev_ts"]
    sys.exit(f"bench-teacher: llama-bench has no pp{n_prompt}/tg{n_gen} result")
pp, pp_sd = bench(512, 0)
tg, tg_sd = bench(0, 128)
info = runs[0]

batched = {r["pl"]: r["speed_tg"] for r in json_lines(read("batched-bench.out") + read("batched-bench.err"))}
for pl in (1, 8):
    if pl not in batched:
        sys.exit(f"bench-teacher: llama-batched-bench printed no result for npl={pl}")

ours = {}
note = env["DISTILL_NOTE"]
if not note:
    text = read("distill.out").strip()
    try:
        ours = json.loads(text)
    except ValueError:
        objs = json_lines(text)
        ours = objs[-1] if objs else {}
    if not ours:
        note = "missing: `distill bench teacher --json` printed no JSON"

k = ours.get("k")
rows = [
    (f"score (teacher-forced, top-{k if k is not None else 'k'}) vs pp512", pp, pp_sd, ours.get("score_tok_s")),
    ("generate x1 vs tg128", tg, tg_sd, ours.get("generate1_tok_s")),
    ("generate x8 vs batched-bench S_TG npl=8", batched[8], None, ours.get("generate8_tok_s")),
    ("generate x1 vs batched-bench S_TG npl=1", batched[1], None, ours.get("generate1_tok_s")),
]

def fmt(v, sd=None):
    if v is None:
        return "—"
    return f"{v:.1f} ± {sd:.1f}" if sd is not None else f"{v:.1f}"

table = [("metric (tok/s)", "llama.cpp", "distill", "ratio")]
for metric, v, sd, d in rows:
    ratio = f"{d / v:.2f}" if d is not None and v else "—"
    table.append((metric, fmt(v, sd), fmt(d), ratio))

build = f"llama.cpp b{info.get('build_number')} ({info.get('build_commit')}), from llama-cpp-python {env['LCP_VERSION']} sources"
facts = [
    ("machine", ", ".join(dict.fromkeys([env["CPU"], info.get("cpu_info") or env["CPU"]])) + f", nproc {env['NPROC']}"),
    ("date", env["DATE"]),
    ("threads", env["THREADS_USED"] + (f" (distill reports {ours['threads']})" if "threads" in ours else "")),
    ("model", f"{os.path.basename(env['GGUF'])} ({info.get('model_type', '')}, {info.get('model_size', 0) / 2**20:.1f} MiB)"),
    ("baseline", f"{build}, backends {info.get('backends')}"),
]
if note:
    facts.append(("distill", note))
cmds = [env["BENCH_CMD"], env["BATCHED_CMD"], env["DISTILL_CMD"]]
load = {n: int(read(n + ".load")) for n in ("llama-bench", "batched-bench", "distill") if read(n + ".load")}
facts.append(("bg load", ", ".join(f"{n} {p}%" for n, p in load.items())
              + " of the CPUs used by other processes while it ran"))
if max(load.values()) > 5:
    warning = "the machine was busy during the runs: these figures are not representative"
    print("bench-teacher: warning: " + warning, file=sys.stderr)  # seen even if stdout is a file
    facts.append(("warning", warning))

if env["MARKDOWN"] == "1":
    print("| " + " | ".join(table[0]) + " |")
    print("|---|--:|--:|--:|")
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")
    print()
    for key, val in facts:
        print(f"- {key}: {val}")
    print("- commands:")
    print()
    print("```sh")
    for c in cmds:
        print(c)
    print("```")
else:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for key, val in facts:
        print(f"{key + ':':10}{val}")
    print("commands:")
    for c in cmds:
        print("  " + c)
PY
