#!/usr/bin/env bash
# Builds llama.cpp's tools once into LLAMA_CPP_DIR (default ~/.cache/llmbench/llama.cpp) from the
# PyPI source package llama-cpp-python==0.3.36, which vendors a full llama.cpp tree (the recipe
# of ../shared/LLAMA-CPP.md): Release, GGML_NATIVE, static. Sourced by the benches that measure
# against llama.cpp; each asks for its targets, and a target already built is not rebuilt.
#   source benches/llama_cpp.sh; build_llama_cpp llama-bench llama-server
# About ten minutes on 2 cores the first time.
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-$HOME/.cache/llmbench/llama.cpp}

build_llama_cpp() {
  local missing=()
  for t in "$@"; do [ -x "$LLAMA_CPP_DIR/build/bin/$t" ] || missing+=("$t"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "building ${missing[*]} into $LLAMA_CPP_DIR (once; about ten minutes on 2 cores)" >&2
  (
    set -e
    mkdir -p "$LLAMA_CPP_DIR" && cd "$LLAMA_CPP_DIR"
    [ -x v/bin/pip ] || python3 -m venv v
    v/bin/pip install -q scikit-build-core cmake
    [ -f llama_cpp_python-0.3.36.tar.gz ] || v/bin/pip download -q --no-deps --no-binary :all: --no-build-isolation llama-cpp-python==0.3.36 -d .
    [ -d src ] || { tar xzf llama_cpp_python-0.3.36.tar.gz && mv llama_cpp_python-0.3.36/vendor/llama.cpp src; }
    v/bin/cmake -S src -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
    v/bin/cmake --build build -j"$(nproc)" --target "${missing[@]}" >/dev/null 2>&1
  )
}
