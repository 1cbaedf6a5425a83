#!/usr/bin/python3
"""Inference benchmark: shoal's engine against PyTorch eager on the same weights and threads.

Per dtype (bf16, f32) of one generated Llama-shaped model (~134M parameters):
- prefill tokens/s: B prompts x T tokens, logits at every position (log-likelihood evaluation);
- decode tokens/s: batch 1, greedy, after a short prompt;
- the decode bound: weight bytes read per token / read bandwidth measured in this run.
See bench/README.md. Needs Debian's /usr/bin/python3 (numpy, torch).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import TorchLlama  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = ["--hidden", "768", "--layers", "12", "--intermediate", "2048", "--vocab", "32000",
         "--heads", "12", "--kv-heads", "12", "--experts", "0"]


def prompt_ids(n, offset, vocab):
    # Same stream as infer_driver.cpp.
    return [((offset + i) * 2654435761 + 12345) % vocab for i in range(n)]


def make_model(tool, work, dtype):
    out = os.path.join(work, dtype)
    cfg = os.path.join(out, "base", "config.json")
    if not os.path.exists(cfg):
        subprocess.run([tool, out, *SHAPE, "--dtype", dtype], check=True)
    return os.path.join(out, "base")


def weight_bytes(folder):
    """(all tensor bytes, bytes one decoded token reads: all but the embedding, plus one row)."""
    total, embed, row = 0, 0, 0
    for f in os.listdir(folder):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, f), "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b = info["data_offsets"][1] - info["data_offsets"][0]
            total += b
            if name == "model.embed_tokens.weight":
                embed, row = b, b // info["shape"][0]
    return total, total - embed + row


def read_bandwidth(threads, reps):
    """Best GB/s of summing a 1 GiB f32 array: numpy (1 thread) and torch (`threads` threads)."""
    a = np.ones(1 << 28, dtype=np.float32)  # 1 GiB, pages touched
    best_np = min(_timed(lambda: a.sum()) for _ in range(reps))
    t = torch.from_numpy(a)
    torch.set_num_threads(threads)
    best_t = min(_timed(lambda: t.sum()) for _ in range(reps))
    return a.nbytes / best_np / 1e9, a.nbytes / best_t / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_shoal(driver, folder, a, extra=()):
    cmd = [driver, folder, "--threads", str(a.threads), "--batch", str(a.batch), "--tokens",
           str(a.tokens), "--decode", str(a.decode), "--prompt", str(a.prompt), "--reps",
           str(a.reps), *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_torch(folder, a):
    torch.set_num_threads(a.threads)
    m = TorchLlama(folder)
    vocab = m.embed.shape[0]
    ids = torch.tensor([prompt_ids(a.tokens, b * a.tokens, vocab) for b in range(a.batch)])
    prefill = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        m.logits_all(ids)
        prefill.append(time.perf_counter() - t0)
    decode = []
    for _ in range(a.reps):
        gen, s = m.greedy(prompt_ids(a.prompt, 0, vocab), a.decode)
        decode.append(s)
    return {"prefill_s": prefill, "decode_s": decode, "generated": gen}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="/tmp/shoal-ibench")
    p.add_argument("--build", default=os.path.join(REPO, "build-ibench"))
    p.add_argument("--dtypes", default="bfloat16,float32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--skip-torch", action="store_true")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    driver = os.path.join(a.build, "bench", "shoal_infer_bench")
    tool = os.path.join(a.build, "shoal_make_models")
    print(f"load before: {os.getloadavg()[0]:.2f}; threads {a.threads}; best of {a.reps}; "
          f"prefill {a.batch}x{a.tokens} (logits at every position); decode {a.decode} after "
          f"a {a.prompt}-token prompt", flush=True)
    bw_np, bw_t = read_bandwidth(a.threads, 5)
    bw = max(bw_np, bw_t)
    print(f"read bandwidth: numpy sum 1 thread {bw_np:.2f} GB/s, torch sum {a.threads} threads "
          f"{bw_t:.2f} GB/s; bound uses {bw:.2f}", flush=True)
    rows = []
    for dtype in a.dtypes.split(","):
        folder = make_model(tool, a.work, dtype)
        total, per_tok = weight_bytes(folder)
        variants = [("shoal", ())]
        if dtype == "bfloat16":
            variants.append(("shoal --f32-weights", ("--f32-weights",)))
        res = {name: run_shoal(driver, folder, a, extra) for name, extra in variants}
        if not a.skip_torch:
            res["torch"] = run_torch(folder, a)
        bound = bw * 1e9 / per_tok
        for name, r in res.items():
            pf = a.batch * a.tokens / min(r["prefill_s"])
            dc = a.decode / min(r["decode_s"])
            same = sum(x == y for x, y in zip(r["generated"], res["shoal"]["generated"]))
            rows.append((dtype, name, pf, dc, 100 * dc / bound, same))
            print(f"  {dtype} {name}: prefill runs {['%.3f' % s for s in r['prefill_s']]} s, "
                  f"decode runs {['%.3f' % s for s in r['decode_s']]} s", flush=True)
        print(f"  {dtype}: weights {total / 1e6:.1f} MB, read per decoded token "
              f"{per_tok / 1e6:.1f} MB, bound {bound:.1f} tok/s", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("\n| dtype | engine | prefill tok/s | decode tok/s | % of decode bound | greedy ids = shoal's |")
    print("|---|---|---|---|---|---|")
    for dtype, name, pf, dc, pct, same in rows:
        print(f"| {dtype} | {name} | {pf:.0f} | {dc:.1f} | {pct:.0f}% | {same}/{a.decode} |")
    by = {(d, n): (pf, dc) for d, n, pf, dc, _, _ in rows}
    for dtype in a.dtypes.split(","):
        if (dtype, "torch") in by:
            s, t = by[(dtype, "shoal")], by[(dtype, "torch")]
            print(f"{dtype}: shoal/torch prefill {s[0] / t[0]:.2f}x, decode {s[1] / t[1]:.2f}x")


if __name__ == "__main__":
    main()
