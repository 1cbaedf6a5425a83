#!/usr/bin/env bash
# Install, build and run every test: the Release build's full suite, then the whole suite again
# under AddressSanitizer + UndefinedBehaviorSanitizer (corrupt-file tests included; the llama.cpp
# peer tests, which run node, only in the first pass).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/install-llamacpp-npm.sh
jobs=$(nproc)
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$jobs"
SHOAL_BUILD_DIR=build-asan SHOAL_BUILD_TYPE=Debug scripts/build.sh -DSHOAL_SANITIZE=ON -DSHOAL_BUILD_BENCH=OFF
# The llama.cpp peer tests (label llamacpp) check file contents against llama.cpp, which the
# sanitizers add nothing to; the sanitizer pass runs everything else.
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE llamacpp
