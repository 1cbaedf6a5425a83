#!/usr/bin/env bash
# Install, build and run every test: the Release build's full suite, then the whole suite again
# under AddressSanitizer + UndefinedBehaviorSanitizer (corrupt-file tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$jobs"
SHOAL_BUILD_DIR=build-asan SHOAL_BUILD_TYPE=Debug scripts/build.sh -DSHOAL_SANITIZE=ON -DSHOAL_BUILD_BENCH=OFF
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j "$jobs"
