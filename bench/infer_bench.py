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
import shutil
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


def byte_tokenizer(folder):
    """A byte-level tokenizer.json whose token id is the byte value (ids 0-255 of the model's
    vocabulary): the torch side then tokenizes a text as list(text.encode())."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): b for b, c in zip(bs, cs)}
    tok = {"version": "1.0", "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": False},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                       "use_regex": False},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": False}, f)


def eval_task(work, n, context_chars):
    """A multiple-choice task of n records (4 choices each) of pseudo-random words."""
    rng = np.random.default_rng(7)
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=rng.integers(2, 8)))
             for _ in range(500)]

    def text(chars):
        out = []
        while sum(len(w) + 1 for w in out) < chars:
            out.append(words[rng.integers(len(words))])
        return " ".join(out)[:chars]

    records = [{"context": text(context_chars), "choices": [text(24) for _ in range(4)],
                "label": int(rng.integers(4))} for _ in range(n)]
    with open(os.path.join(work, "eval.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    task = os.path.join(work, "eval.yml")
    with open(task, "w") as f:
        f.write("name: bench_mc\nkind: multiple_choice\ndataset: eval.jsonl\nprompt: \"{context}\"\n"
                "choices: choices\ngold: label\nadd_bos: false\n")
    return task, records


def eval_shoal(shoal, folder, task, a, extra=()):
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        subprocess.run([shoal, "eval", folder, task, "--threads", str(a.threads), *extra],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def eval_torch(folder, records, a):
    """Log-likelihood of every choice, the 4 choices of a record batched into one forward pass."""
    torch.set_num_threads(a.threads)
    m = TorchLlama(folder)
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        for r in records:
            ctx = list(r["context"].encode())
            seqs = [ctx + list((" " + c).encode()) for c in r["choices"]]
            width = max(len(q) for q in seqs)
            ids = torch.tensor([q + [0] * (width - len(q)) for q in seqs])
            logp = torch.log_softmax(m.logits_all(ids), dim=-1)
            for b, q in enumerate(seqs):
                pos = torch.arange(len(ctx) - 1, len(q) - 1)
                float(logp[b, pos, torch.tensor(q[len(ctx):])].sum())
        times.append(time.perf_counter() - t0)
    return times


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
    p.add_argument("--f32-weights", action="store_true",
                   help="also run bf16 with ModelOptions::f32_weights (widened at load)")
    p.add_argument("--eval-samples", type=int, default=32,
                   help="records of the log-likelihood task (0: skip the evaluation part)")
    p.add_argument("--eval-context", type=int, default=400, help="context characters (= tokens)")
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
    rows, eval_rows = [], []
    for dtype in a.dtypes.split(","):
        folder = make_model(tool, a.work, dtype)
        total, per_tok = weight_bytes(folder)
        variants = [("shoal", ())]
        if dtype == "bfloat16":
            # PyTorch's (and llama.cpp's) arithmetic: activations rounded to bf16 in products.
            variants.append(("shoal --bf16-activations", ("--bf16-activations",)))
            if a.f32_weights:
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
        if a.eval_samples > 0:
            efolder = os.path.join(a.work, dtype, "eval-model")
            if not os.path.exists(efolder):
                shutil.copytree(folder, efolder)
                byte_tokenizer(efolder)
            task, records = eval_task(os.path.join(a.work, dtype), a.eval_samples, a.eval_context)
            shoal = os.path.join(a.build, "shoal")
            ev = {name: eval_shoal(shoal, efolder, task, a, extra) for name, extra in variants
                  if "--f32-weights" not in extra}
            if not a.skip_torch:
                ev["torch"] = eval_torch(efolder, records, a)
            for name, times in ev.items():
                sps = a.eval_samples / min(times)
                eval_rows.append((dtype, name, sps))
                print(f"  {dtype} {name} eval: runs {['%.3f' % t for t in times]} s, "
                      f"{sps:.2f} samples/s", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print("\n| dtype | engine | prefill tok/s | decode tok/s | % of decode bound | greedy ids = shoal's |")
    print("|---|---|---|---|---|---|")
    for dtype, name, pf, dc, pct, same in rows:
        print(f"| {dtype} | {name} | {pf:.0f} | {dc:.1f} | {pct:.0f}% | {same}/{a.decode} |")
    by = {(d, n): (pf, dc) for d, n, pf, dc, _, _ in rows}
    for dtype in a.dtypes.split(","):
        if (dtype, "torch") not in by:
            continue
        t = by[(dtype, "torch")]
        for (d, name), s in by.items():
            if d == dtype and name != "torch":
                print(f"{dtype}: {name}/torch prefill {s[0] / t[0]:.2f}x, decode {s[1] / t[1]:.2f}x")
    if eval_rows:
        print(f"\nEvaluation: multiple choice by log-likelihood, {a.eval_samples} records x 4 "
              f"choices, {a.eval_context}-token contexts (`shoal eval` wall time incl. start-up)")
        print("\n| dtype | engine | samples/s |\n|---|---|---|")
        for dtype, name, sps in eval_rows:
            print(f"| {dtype} | {name} | {sps:.2f} |")


if __name__ == "__main__":
    main()
