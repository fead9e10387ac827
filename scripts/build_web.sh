#!/usr/bin/env bash
# Compiles the page's PDQ (web/src/pdq_wasm.cpp + core/cpp/pdq/pdq.cpp, the same source as
# `hashmatch hash`) to web/static/pdq.wasm with Debian's emscripten. The .wasm is committed, so
# serving the page needs no emcc; tests/test_web_build.py rebuilds it where emcc exists and checks
# the committed file is what this script makes.
# Usage: scripts/build_web.sh [OUT.wasm]   (default web/static/pdq.wasm)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-web/static/pdq.wasm}
# Standalone module, no JS glue: the page instantiates it itself (web/static/pdq.js).
# -fno-exceptions is not used: pdq.cpp throws only for an empty image, which hm_pdq_rgba refuses
# first. SOURCE_DATE_EPOCH and no debug info keep the output reproducible.
export SOURCE_DATE_EPOCH=0
emcc -O3 -std=c++17 -Icore/cpp \
  web/src/pdq_wasm.cpp core/cpp/pdq/pdq.cpp \
  --no-entry -sSTANDALONE_WASM -sALLOW_MEMORY_GROWTH=1 -sINITIAL_MEMORY=16MB \
  -sEXPORTED_FUNCTIONS=_hm_pdq_rgba,_malloc,_free -sERROR_ON_UNDEFINED_SYMBOLS=1 \
  -o "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
