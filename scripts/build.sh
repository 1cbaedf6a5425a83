#!/usr/bin/env bash
# Configures and builds shoal into build/ (or $SHOAL_BUILD_DIR). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SHOAL_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=${SHOAL_BUILD_TYPE:-Release} "$@" >/dev/null
ninja -C "$build_dir"
