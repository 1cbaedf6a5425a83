#!/usr/bin/python3
"""Measures the results table of examples/tiny/README.md with shoal alone: merges the experts with
the three simple recipes (`shoal merge`), then scores every model on the dev and test task files
(`shoal eval`) and prints a Markdown table (exact match, %).

  /usr/bin/python3 tools/train_tiny/eval_table.py --shoal build/shoal [--tiny examples/tiny]
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

TASKS = ["arith", "zel", "composite", "facts"]
RECIPES = [("linear 0.5/0.5", "merge_linear.yml"),
           ("task arithmetic 1/1", "merge_task_arithmetic.yml"),
           ("TIES (defaults)", "merge_ties.yml")]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", default="build/shoal")
    ap.add_argument("--tiny", default="examples/tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra", nargs="*", default=[], help="more LABEL=RECIPE.yml merges")
    args = ap.parse_args()

    models = [("base", os.path.join(args.tiny, "base")),
              ("arith expert", os.path.join(args.tiny, "arith")),
              ("zel expert", os.path.join(args.tiny, "zel"))]
    recipes = RECIPES + [tuple(e.split("=", 1)) for e in args.extra]
    with tempfile.TemporaryDirectory(prefix="tiny_merges_") as tmp:
        for label, recipe in recipes:
            out = os.path.join(tmp, os.path.basename(recipe)[:-4])
            run([args.shoal, "merge", os.path.join(args.tiny, recipe) if not
                 os.path.exists(recipe) else recipe, out])
            models.append((label, out))
        rows = []
        for label, path in models:
            scores = {}
            for split in ("dev", "test"):
                t0 = time.time()
                res = json.loads(run([args.shoal, "eval", path,
                                      os.path.join(args.tiny, "tasks", f"{split}.yml"),
                                      "--threads", str(args.threads)]))
                scores[split] = {t: res["results"][t]["score"] for t in TASKS}
                scores[split + "_s"] = time.time() - t0
            rows.append((label, scores))
    head = "| model | " + " | ".join(f"{t} dev | {t} test" for t in TASKS) + " |"
    print(head)
    print("|" + "---|" * (1 + 2 * len(TASKS)))
    for label, s in rows:
        cells = []
        for t in TASKS:
            cells += [f"{100 * s['dev'][t]:.0f}", f"{100 * s['test'][t]:.0f}"]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nseconds per `shoal eval` of dev.yml: " +
          ", ".join(f"{label} {s['dev_s']:.2f}" for label, s in rows))


if __name__ == "__main__":
    main()
