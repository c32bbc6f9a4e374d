# Sourced by scripts/setup.sh and benchmarks/build_llama_tools.sh: the compiler flags jisu's
# llama.cpp is built with, so the llama-server we compare against runs the same kernels.
# Sets LLAMA_CPP_PYTHON, llama_cmake_args, llama_flags_key.
LLAMA_CPP_PYTHON="llama-cpp-python==0.3.36"   # keep in step with pyproject.toml

llama_cmake_args="${CMAKE_ARGS:-}"
if [ "$(uname -m)" = x86_64 ] && echo | gcc -mno-amx-int8 -E - >/dev/null 2>&1; then
    # llama.cpp's AMX kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) on the Xeons we
    # run on; AVX-512/AVX2 with weight repacking is what we measured and ship.
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    llama_cmake_args="$llama_cmake_args -DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'"
fi
llama_flags_key=$(printf '%s|%s|%s' "$LLAMA_CPP_PYTHON" "$(uname -m)" "$llama_cmake_args" | sha256sum | cut -c1-16)
