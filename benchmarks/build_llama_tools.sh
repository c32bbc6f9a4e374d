#!/usr/bin/env bash
# Build llama.cpp's own llama-server, llama-bench and llama-batched-bench from the llama.cpp
# that the pinned llama-cpp-python vendors, with the flags jisu's wheel is built with: the
# references the benchmarks put beside jisu run exactly jisu's kernels. Cached like the wheel
# (one build, ~10 minutes on 2 cores); prints the folder holding the three programs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/llama_flags.sh
cache="${JISU_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/jisu}"
out="$cache/llama-tools/$llama_flags_key"
programs="llama-server llama-bench llama-batched-bench"

if ! [ -x "$out/llama-server" ]; then
    echo "Building llama-server, llama-bench and llama-batched-bench from $LLAMA_CPP_PYTHON" \
         "(one time, about 10 minutes on 2 cores) ..." >&2
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    python="${PYTHON:-.venv/bin/python}"
    "$python" -m pip download --quiet --no-deps --no-binary :all: --dest "$work" "$LLAMA_CPP_PYTHON"
    tar xzf "$work"/llama_cpp_python-*.tar.gz -C "$work"
    src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
    # Static libraries and no web UI, curl or TLS: one self-contained program each, nothing
    # fetched from the network at build time.
    eval cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        "$llama_cmake_args" >"$work/cmake.log" 2>&1 || { tail -30 "$work/cmake.log" >&2; exit 1; }
    cmake --build "$work/build" --target $programs -j "$(nproc)" >"$work/build.log" 2>&1 \
        || { tail -30 "$work/build.log" >&2; exit 1; }
    mkdir -p "$out.tmp"
    for program in $programs; do cp "$work/build/bin/$program" "$out.tmp/"; done
    rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
