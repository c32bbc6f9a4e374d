#!/usr/bin/env bash
# Create .venv and install jisu into it; `scripts/setup.sh test` adds the test tools,
# Debian's chromium for the browser tests, and the stand-in model. JISU_VENV=DIR puts the
# environment elsewhere (CI proves the plain install in a second, clean one).
#
# llama-cpp-python compiles llama.cpp for this CPU (about 10 minutes on 2 cores). We build
# its wheel once into a cache of our own, keyed by the compiler flags, because pip's wheel
# cache ignores flags and would happily hand back a wheel built with different ones.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
venv="${JISU_VENV:-.venv}"
cache="${JISU_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/jisu}"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip

source scripts/llama_flags.sh
wheel_dir="$cache/wheels/$llama_flags_key"

if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "Building llama.cpp for this CPU (one time, about 10 minutes on 2 cores) ..." >&2
    rm -rf "$wheel_dir.tmp"
    CMAKE_ARGS="$llama_cmake_args" "$venv/bin/python" -m pip wheel --quiet --no-deps --no-cache-dir \
        --wheel-dir "$wheel_dir.tmp" "$LLAMA_CPP_PYTHON"
    mv "$wheel_dir.tmp" "$wheel_dir"
fi
# Reinstall when the venv holds a llama-cpp-python built some other way.
if [ "$(cat "$venv/.llama-build" 2>/dev/null)" != "$llama_flags_key" ]; then
    "$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl
    echo "$llama_flags_key" > "$venv/.llama-build"
fi

scripts/fetch_wllama.sh  # browser mode's WebAssembly; without npm jisu runs without browser mode

if [ "$extras" = test ]; then
    "$venv/bin/python" -m pip install --quiet --find-links "$wheel_dir" -e ".[test]"
    if ! dpkg -s chromium fonts-wqy-microhei >/dev/null 2>&1; then
        echo "Installing Debian's chromium for the browser tests ..." >&2
        sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
    fi
    "$venv/bin/jisu" pull qwen2.5-coder-0.5b-instruct >/dev/null
else
    "$venv/bin/python" -m pip install --quiet --find-links "$wheel_dir" -e .
fi
