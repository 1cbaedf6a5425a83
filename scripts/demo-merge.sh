#!/usr/bin/env bash
# The first quick start: install, build, then merge generated models with the embedded
# default recipe (TIES over a base and two experts, one of them sharded) and inspect the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=${1:-out/demo}
mkdir -p "$out"
build/shoal_make_models "$out/models" --hidden 256 --layers 6 --intermediate 688 --vocab 2048 \
  --experts 2 --last-expert-shard-size 4000000
cp examples/demo/ties.yml "$out/ties.yml"
build/shoal merge "$out/ties.yml" "$out/merged" --force
build/shoal inspect "$out/merged"
