#!/usr/bin/python3
"""shoal evolve: candidates evaluated per minute in memory against a merge-to-disk-then-load
loop, on the same genomes, recipe and tasks, in one run (bench/README.md, "evolve_bench").

  /usr/bin/python3 bench/evolve_bench.py                 # default sizes, 2 threads

It generates (and caches in --work) a base and two experts with shoal_make_models, gives them a
byte-level tokenizer.json (as infer_bench.py does), writes a small multiple-choice task with a
dev split, and an evolve config (dare_ties over layer groups). Then shoal_evolve_bench
(evolve_driver.cpp) times both loops in one process for two genome sequences: `all` (every gene
drawn anew, as CMA-ES does: every tensor is merged again) and `one` (one gene changed per
candidate, a GA mutation: only its tensors are merged again). The disk loop's fsync of each
candidate folder is timed on its own (the "disk + fsync" column: the steady state of a loop that
writes a model per candidate, once writeback can no longer hide the writes). A last row times the
pipeline as separate programs, `shoal merge` then `shoal eval`, on recipes of the same shape
(process start-up, model load and tokenizer load included).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from infer_bench import byte_tokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_models(args):
    shape = dict(hidden=args.hidden, layers=args.layers, intermediate=args.intermediate,
                 vocab=args.vocab, heads=args.heads, kv_heads=args.heads)
    stamp = os.path.join(args.work, "shape.json")
    if os.path.exists(stamp) and json.load(open(stamp)) == shape:
        return
    shutil.rmtree(os.path.join(args.work, "models"), ignore_errors=True)
    cmd = [os.path.join(args.build, "shoal_make_models"), os.path.join(args.work, "models"),
           "--experts", "2", "--dtype", "bfloat16", "--delta", "0.5", "--threads",
           str(args.threads)]
    for k, v in shape.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    for m in ("base", "expert1", "expert2"):
        byte_tokenizer(os.path.join(args.work, "models", m))
    json.dump(shape, open(stamp, "w"))


def write_task(args):
    """A multiple-choice task of pseudo-random words, dev split only."""
    rng = np.random.default_rng(7)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 8)))
             for _ in range(300)]

    def text(chars):
        out = []
        while sum(len(w) + 1 for w in out) < chars:
            out.append(words[rng.integers(len(words))])
        return " ".join(out)[:chars]

    with open(os.path.join(args.work, "dev.jsonl"), "w") as f:
        for _ in range(args.samples):
            f.write(json.dumps({"context": text(args.context), "choices": [text(16) for _ in range(4)],
                                "label": int(rng.integers(4))}) + "\n")
    with open(os.path.join(args.work, "task.yml"), "w") as f:
        f.write('name: words\nkind: multiple_choice\ndataset: {dev: dev.jsonl}\nsplit: dev\n'
                'prompt: "{context}"\nchoices: choices\ngold: label\n')
    with open(os.path.join(args.work, "evolve.yml"), "w") as f:
        f.write("models:\n  base: models/base\n  experts: [models/expert1, models/expert2]\n"
                f"genome:\n  merge_method: dare_ties\n  layer_granularity: {args.granularity}\n"
                "merge_seed: 1\nfitness:\n  tasks: [task.yml]\n  test_split: null\n"
                "budget:\n  generations: 1\n")


def cli_pipeline(args, n):
    """`shoal merge` + `shoal eval` as separate programs for the first n genomes of `all`."""
    shoal = os.path.join(args.build, "shoal")
    out = os.path.join(args.work, "cli")
    # Recipes of the genome's shape (dare_ties, one slice per layer group) with uniform genes.
    rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for i in range(n):
        recipe = os.path.join(args.work, "cli.yml")
        w = rng.uniform(0, 1, size=(args.layers // args.granularity, 2, 2))
        with open(recipe, "w") as f:
            f.write("merge_method: dare_ties\nbase_model: models/base\nslices:\n")
            for g in range(w.shape[0]):
                lr = f"[{g * args.granularity}, {(g + 1) * args.granularity}]"
                f.write(f"  - sources:\n      - model: models/base\n        layer_range: {lr}\n")
                for k, m in enumerate(("models/expert1", "models/expert2")):
                    f.write(f"      - model: {m}\n        layer_range: {lr}\n"
                            f"        parameters: {{weight: {w[g, k, 0]}, "
                            f"density: {0.1 + 0.9 * w[g, k, 1]}}}\n")
        subprocess.run([shoal, "merge", recipe, out, "--force", "--quiet", "--seed", "1",
                        "--threads", str(args.threads)], check=True, cwd=args.work)
        subprocess.run([shoal, "eval", out, "task.yml", "--threads", str(args.threads)],
                       check=True, cwd=args.work, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return 60 * n / dt


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/shoal-evolve-bench")
    p.add_argument("--build", default=os.path.join(REPO, "build-bench"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=2048)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--granularity", type=int, default=2)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--context", type=int, default=48)
    p.add_argument("--candidates", type=int, default=12)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--cli-candidates", type=int, default=4)
    args = p.parse_args()
    args.build = os.path.abspath(args.build)
    os.makedirs(args.work, exist_ok=True)
    make_models(args)
    write_task(args)
    size = sum(os.path.getsize(os.path.join(args.work, "models", "base", f))
               for f in os.listdir(os.path.join(args.work, "models", "base")))
    print(f"# models: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, "
          f"{size / 1e6:.0f} MB each (bf16); task: {args.samples} x 4 choices; "
          f"{args.threads} threads; load {os.getloadavg()[0]:.2f}")
    rows = []
    for mode in ("all", "one"):
        r = subprocess.run([os.path.join(args.build, "bench", "shoal_evolve_bench"),
                            os.path.join(args.work, "evolve.yml"), "--mode", mode,
                            "--candidates", str(args.candidates), "--threads", str(args.threads),
                            "--reps", str(args.reps), "--work", os.path.join(args.work, "scratch")],
                           check=True, capture_output=True, text=True)
        rows.append(json.loads(r.stdout))
        print("#", r.stdout.strip(), flush=True)
    print("| genomes | in memory /min | disk loop /min | ratio | disk + fsync /min | ratio "
          "| memory: merge+load, eval (s) | disk: merge, fsync, load, eval (s) | same scores |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['memory_per_min']:.1f} | {r['disk_per_min']:.1f} | "
              f"{r['ratio']:.2f}x | {r['disk_sync_per_min']:.1f} | "
              f"{r['memory_per_min'] / r['disk_sync_per_min']:.2f}x | "
              f"{r['memory_build_s']:.3f}, {r['memory_eval_s']:.3f} | "
              f"{r['disk_merge_s']:.3f}, {r['disk_sync_s']:.3f}, {r['disk_load_s']:.3f}, "
              f"{r['disk_eval_s']:.3f} | {r['same_scores']} |")
    if args.cli_candidates > 0:
        per_min = cli_pipeline(args, args.cli_candidates)
        print(f"| all, `shoal merge` + `shoal eval` programs | | {per_min:.1f} | "
              f"{rows[0]['memory_per_min'] / per_min:.2f}x | | | | | |")
    for r in rows:
        verdict = "PASS" if r["ratio"] >= 5 else "FAIL"
        print(f"{verdict}: {r['mode']}: in memory {r['ratio']:.2f}x the disk loop (target >= 5x)")
    print(f"# load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
