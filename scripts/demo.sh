#!/usr/bin/env bash
# The quick start's main job: install, build, then evolve a merge of the embedded tiny experts
# (examples/tiny: an "arith" and a "zel" expert of one base) that solves their composite task,
# which neither expert can do, with fitness measured in memory (a few minutes on 2 cores).
# The best model's test-split scores are printed at the end and kept in OUT/scores.json; the
# experts' and the simple merges' scores are in examples/tiny/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
out=${1:-out/tiny-evolve}
# A fresh run each time: shoal evolve refuses to overwrite a run (--resume continues one).
if [ -f "$out/checkpoint.json" ]; then rm -rf "$out"; fi
mkdir -p "$(dirname "$out")"
build/shoal evolve examples/tiny/evolve.yml --out "$out"
cat "$out/scores.json"
