#!/usr/bin/env bash
# Installs llama.cpp's prebuilt CPU build from npm (node-llama-cpp and its linux-x64 binary
# package; nothing is compiled, nothing is downloaded at run time) for the llama.cpp peer tests
# (tests/test_gguf_llamacpp.py) and the GGUF benchmark (bench/gguf_bench.py). Needs node >= 20.
# Folder: $1, else $SHOAL_LLAMACPP_NPM, else ~/.cache/shoal-npm/node-llama-cpp-<version>; the
# tests find it through SHOAL_LLAMACPP_NPM (set by CMake, same default). Does nothing when the
# version is already there.
set -euo pipefail
version=3.22.1
dir=${1:-${SHOAL_LLAMACPP_NPM:-$HOME/.cache/shoal-npm/node-llama-cpp-$version}}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-llamacpp-npm: node and npm are needed (node >= 20)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "install-llamacpp-npm: node $(node --version) is too old; node-llama-cpp needs >= 20" >&2
  exit 1
fi
installed() {
  node -e "const p = require(process.argv[1]); process.exit(p.version === process.argv[2] ? 0 : 1)" \
    "$dir/node_modules/$1/package.json" "$version" 2>/dev/null
}
if installed node-llama-cpp && installed @node-llama-cpp/linux-x64; then
  exit 0
fi
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || echo '{"private": true}' >package.json
echo "installing node-llama-cpp $version into $dir" >&2
# SKIP_DOWNLOAD: use the prebuilt binary package instead of fetching or building llama.cpp.
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund --loglevel=error \
  --omit=optional "node-llama-cpp@$version" "@node-llama-cpp/linux-x64@$version" >&2
installed node-llama-cpp && installed @node-llama-cpp/linux-x64
