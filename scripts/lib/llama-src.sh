# Sourced helper: the pinned llama.cpp sources that the benchmark and the test server build from.
#
# llama-cpp-sys-2's vendored tree lacks tools/ (llama-bench, llama-server), so the full sources
# come from the llama-cpp-python sdist, pinned by version and sha256.
# After sourcing: LCP_VERSION, LCP_SHA256, LLAMA_BUILD_NUMBER, LLAMA_BUILD_COMMIT, and
# llama_src_unpack CACHE_DIR, which prints the unpacked tree's path (downloading it if absent).
#   llama-cpp-python 0.3.36 : ggml 0.25.3, llama.cpp b11312 = 0c1e57098bba
# The sdist's git metadata is a depth-1 clone (it would report build number 1), so the real
# build number and commit are handed to cmake explicitly by the callers.
LCP_VERSION=0.3.36
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
LLAMA_BUILD_NUMBER=11312
LLAMA_BUILD_COMMIT=0c1e570

llama_src_unpack() { # llama_src_unpack CACHE_DIR -> prints the source tree's path
    local cache=$1 src tmp
    src=$cache/llama.cpp-b$LLAMA_BUILD_NUMBER
    if [[ ! -f "$src/CMakeLists.txt" ]]; then
        echo "llama-src: downloading llama-cpp-python $LCP_VERSION sdist (llama.cpp b$LLAMA_BUILD_NUMBER)" >&2
        tmp=$(mktemp -d)
        # A hash-pinned requirement keeps the sources reproducible even if PyPI changes.
        echo "llama-cpp-python==$LCP_VERSION --hash=sha256:$LCP_SHA256" >"$tmp/req.txt"
        python3 -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
            -r "$tmp/req.txt" -d "$tmp/dl" || { rm -rf "$tmp"; return 1; }
        # Unpack beside the target and rename, so an interrupted run never leaves a
        # half-extracted tree that the existence check above would accept.
        mkdir -p "$cache"
        rm -rf "$src.partial" && mkdir "$src.partial"
        tar -xzf "$tmp/dl/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$src.partial" \
            --strip-components=3 --exclude='.git' \
            "llama_cpp_python-$LCP_VERSION/vendor/llama.cpp" || { rm -rf "$tmp"; return 1; }
        rm -rf "$src" && mv "$src.partial" "$src"
        rm -rf "$tmp"
    fi
    echo "$src"
}
