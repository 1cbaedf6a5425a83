#!/usr/bin/python3
"""Merge benchmark: `shoal merge` against a mergekit-style PyTorch pipeline and the copy floor.

Generates Llama-shaped bf16 models (a base and two experts, the second expert sharded) at two
sizes, then times, in one run with the page cache warm:
  - `shoal merge` with ties (weight 0.5, density 0.5) and with linear (3 models, equal weights);
  - the same merges by bench/torch_merge.py (load, stack, torch ops in bf16, write);
  - bench/copy_floor.cpp: read every input byte and write the output's bytes (the floor).
Prints a table with the ratios and shoal's peak RSS, and PASS/FAIL per target:
  torch/shoal >= 5; linear shoal/copy <= 2; peak RSS < 512 MB and independent of model size.
See bench/README.md. Never part of the test suite.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"  # Debian's, with python3-torch

# Llama-shaped. small and large have TinyLlama's widths and differ only in depth (0.53 GB and
# 0.97 GB per model); wide (not run by default) is one layer at Llama-2-7B's widths (0.93 GB per
# model): its 262 MB embedding checks that the largest tensor does not set the peak RSS.
SHAPE = dict(hidden=2048, intermediate=5632, vocab=32000, heads=32, kv_heads=4)
SIZES = {
    "small": dict(SHAPE, layers=3),
    "large": dict(SHAPE, layers=8),
    "wide": dict(SHAPE, layers=1, hidden=4096, intermediate=11008, kv_heads=32),
}
SHARD_BYTES = 400_000_000  # the last expert is written in shards of this size
RSS_LIMIT_MB = 512
TORCH_SPEEDUP_TARGET = 5.0
COPY_RATIO_TARGET = 2.0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def safetensors_files(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".safetensors"))


def folder_bytes(folder):
    return sum(os.path.getsize(f) for f in safetensors_files(folder))


TIME = "/usr/bin/time"  # GNU time (Debian package `time`)


def run(cmd, stdout_path=None, rss_path=None):
    """Runs cmd; returns (wall seconds, peak RSS in MB, stdout text). Raises on failure.

    Peak RSS: Linux carries the parent's resident-set high-water mark into a forked child, so a
    child of this (large) Python process reports at least our own peak. GNU time, a small
    process, forks the command afresh and reports its true ru_maxrss; without it we fall back to
    wait4 (an upper bound).
    """
    wrapped = ([TIME, "-f", "%M", "-o", rss_path] + cmd) if rss_path else cmd
    out = open(stdout_path or os.devnull, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen(wrapped, stdout=out, stderr=subprocess.PIPE)
    # stderr is small (--quiet), so reading it after the wait cannot block the child.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError("%s failed (exit %d): %s" % (" ".join(cmd), proc.returncode, err[-2000:]))
    text = open(stdout_path).read() if stdout_path else ""
    peak_kb = int(open(rss_path).read().split()[-1]) if rss_path else usage.ru_maxrss
    return wall, peak_kb / 1024.0, text


def fresh(path):
    """Removes an output and flushes dirty pages, so no run pays for the last one's writeback."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):
        os.remove(path)
    os.sync()


def make_models(args, size):
    folder = os.path.join(args.work, "models-" + size)
    spec = dict(SIZES[size], shard=SHARD_BYTES, dtype="bfloat16")
    stamp = os.path.join(folder, "spec.json")
    if os.path.exists(stamp) and json.load(open(stamp)) == spec:
        return folder
    log("generating %s models in %s" % (size, folder))
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [args.make_models, tmp, "--dtype", "bfloat16", "--experts", "2",
           "--last-expert-shard-size", str(SHARD_BYTES)]
    for key in ("hidden", "layers", "intermediate", "vocab", "heads", "kv_heads"):
        cmd += ["--" + key.replace("_", "-"), str(spec[key])]
    subprocess.run(cmd, check=True)
    json.dump(spec, open(os.path.join(tmp, "spec.json"), "w"))
    os.rename(tmp, folder)
    return folder


def write_recipes(args, size, models):
    m = {k: os.path.join(models, k) for k in ("base", "expert1", "expert2")}
    ties = ("merge_method: ties\nbase_model: {base}\nmodels:\n"
            "  - model: {expert1}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
            "  - model: {expert2}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
            "dtype: bfloat16\n").format(**m)
    linear = ("merge_method: linear\nmodels:\n"
              "  - model: {base}\n    parameters: {{weight: 1.0}}\n"
              "  - model: {expert1}\n    parameters: {{weight: 1.0}}\n"
              "  - model: {expert2}\n    parameters: {{weight: 1.0}}\n"
              "dtype: bfloat16\n").format(**m)
    paths = {}
    for method, text in (("ties", ties), ("linear", linear)):
        paths[method] = os.path.join(args.work, "%s-%s.yml" % (size, method))
        with open(paths[method], "w") as f:
            f.write(text)
    return paths


def warm_cache(models):
    """Reads every input byte once so all timed runs start with the page cache warm."""
    for sub in ("base", "expert1", "expert2"):
        for path in safetensors_files(os.path.join(models, sub)):
            with open(path, "rb", buffering=0) as f:
                while f.read(64 << 20):
                    pass


def time_rounds(args, jobs):
    """jobs: {name: (cmd, output path, measure RSS?)}. Runs each once untimed, then --reps rounds
    of all of them back to back, so a change in the machine's load hits every job alike.
    Returns {name: (all times, peak RSS in MB)}."""
    rss_path = os.path.join(args.work, "rss.txt") if os.access(TIME, os.X_OK) else None
    for cmd, out, _ in jobs.values():
        fresh(out)
        run(cmd)  # untimed warm-up
    result = {name: ([], 0.0) for name in jobs}
    for _ in range(args.reps):
        for name, (cmd, out, measure_rss) in jobs.items():
            fresh(out)
            wall, peak, _ = run(cmd, rss_path=rss_path if measure_rss else None)
            times, rss = result[name]
            times.append(wall)
            result[name] = (times, max(rss, peak))
    for _, out, _ in jobs.values():
        fresh(out)
    return result


def shoal_cmd(args, recipe, out):
    return [args.shoal, "merge", recipe, out, "--force", "--quiet", "--threads", str(args.threads)]


def copy_floor_cmd(args, models, out, mode):
    """Reads every byte of the three models, writes as many bytes as the base (the output)."""
    files = []
    for sub in ("base", "expert1", "expert2"):
        files += safetensors_files(os.path.join(models, sub)) + [","]
    return ([args.copy_floor, out, "--write-bytes", str(folder_bytes(os.path.join(models, "base"))),
             "--threads", str(args.threads)] + (["--mmap"] if mode == "mmap" else []) +
            ["--"] + files[:-1])


def time_torch(args, method, models, out, reps):
    cmd = [PYTHON, os.path.join(REPO, "bench", "torch_merge.py"), method, out,
           os.path.join(models, "base"), os.path.join(models, "expert1"),
           os.path.join(models, "expert2"), "--threads", str(args.threads)]
    if method == "ties":
        cmd += ["--weight", "0.5", "--density", "0.5"]
    stdout = os.path.join(args.work, "torch.json")
    times = []
    for _ in range(reps):
        fresh(out)
        wall, _, text = run(cmd, stdout)
        # The pipeline's own time (load + merge + write), without Python start-up and
        # `import torch`: the comparison favours PyTorch, not shoal.
        times.append(json.loads(text.strip().splitlines()[-1])["seconds"])
    return min(times)


def bf16_words(path):
    """A safetensors file's tensors as float32 arrays, by name (bf16 words widened)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    n = int(raw[:8].view("<u8")[0])
    header = json.loads(bytes(raw[8:8 + n]))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16", name
        b, e = info["data_offsets"]
        out[name] = raw[8 + n + b:8 + n + e].view("<u2")
    return out


def agreement(shoal_out, torch_out):
    """Fraction of elements where shoal and the PyTorch pipeline agree within one bf16 ulp."""
    shoal_t, torch_t = {}, bf16_words(os.path.join(torch_out, "model.safetensors"))
    for f in safetensors_files(shoal_out):
        shoal_t.update(bf16_words(f))
    close = total = 0
    for name, words in torch_t.items():
        a = (shoal_t[name].astype(np.uint32) << 16).view(np.float32)
        b = (words.astype(np.uint32) << 16).view(np.float32)
        tol = np.maximum(np.abs(a), np.abs(b)) * 2.0**-7
        close += int(np.count_nonzero(np.abs(a - b) <= tol))
        total += a.size
    return close / total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="/tmp/shoal-bench", help="models and outputs go here")
    ap.add_argument("--sizes", default="small,large",
                    help="comma list of: " + ", ".join(SIZES) + " (default small,large)")
    ap.add_argument("--threads", type=int, default=2, help="threads for all three (default 2)")
    ap.add_argument("--reps", type=int, default=3, help="timed runs of shoal and the copy floor")
    ap.add_argument("--torch-reps", type=int, default=1,
                    help="timed runs of the PyTorch ties merge (linear, quick, uses --reps)")
    ap.add_argument("--skip-torch", action="store_true", help="skip the PyTorch pipeline")
    ap.add_argument("--build", default=os.path.join(REPO, "build-bench"),
                    help="CMake build folder configured with -DSHOAL_BUILD_BENCH=ON")
    ap.add_argument("--shoal", help="shoal binary (default BUILD/shoal)")
    ap.add_argument("--make-models", help="model generator (default BUILD/shoal_make_models)")
    args = ap.parse_args()
    args.shoal = args.shoal or os.path.join(args.build, "shoal")
    args.copy_floor = os.path.join(args.build, "bench", "shoal_copy_floor")
    args.make_models = args.make_models or os.path.join(args.build, "shoal_make_models")
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        if s not in SIZES:
            ap.error("unknown size %r" % s)
    for exe in (args.shoal, args.copy_floor, args.make_models):
        if not os.access(exe, os.X_OK):
            ap.error("missing %s: build it (see bench/README.md)" % exe)
    os.makedirs(args.work, exist_ok=True)

    load_before = load_average()
    rows = []
    for size in sizes:
        models = make_models(args, size)
        recipes = write_recipes(args, size, models)
        model_gb = folder_bytes(os.path.join(models, "base")) / 1e9
        log("%s: warming the page cache" % size)
        warm_cache(models)
        shoal_out = os.path.join(args.work, "out-shoal")
        torch_out = os.path.join(args.work, "out-torch")
        copy_out = os.path.join(args.work, "copy-floor.out")
        jobs = {mode: (copy_floor_cmd(args, models, copy_out, mode), copy_out, False)
                for mode in ("pread", "mmap")}
        for method in ("ties", "linear"):
            jobs[method] = (shoal_cmd(args, recipes[method], shoal_out), shoal_out, True)
        log("%s: %d rounds of the copy floor and shoal" % (size, args.reps))
        timed = time_rounds(args, jobs)
        copy_mode = min(("pread", "mmap"), key=lambda m: min(timed[m][0]))
        copy_s = min(timed[copy_mode][0])
        for method in ("ties", "linear"):
            shoal_all, rss = timed[method]
            torch_s = match = None
            if not args.skip_torch:
                log("%s: torch %s" % (size, method))
                # ties takes minutes in PyTorch: --torch-reps runs; linear is cheap: --reps.
                reps = args.torch_reps if method == "ties" else args.reps
                torch_s = time_torch(args, method, models, torch_out, reps)
                fresh(shoal_out)
                run(jobs[method][0])  # an output to compare with
                match = agreement(shoal_out, torch_out)
            fresh(shoal_out)
            fresh(torch_out)
            rows.append(dict(size=size, gb=model_gb, method=method, shoal=min(shoal_all),
                             shoal_all=shoal_all, torch=torch_s, copy=copy_s,
                             copy_all=timed[copy_mode][0], copy_mode=copy_mode, rss=rss,
                             match=match))
    load_after = load_average()

    print_report(args, rows, load_before, load_after)
    return 0


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def print_report(args, rows, load_before, load_after):
    print("threads %d; shoal and copy floor (best of pread, mmap) best of %d interleaved rounds;"
          " torch best of %d (ties), %d (linear); load average %.2f before, %.2f after"
          % (args.threads, args.reps, args.torch_reps, args.reps, load_before, load_after))
    head = ("size", "GB/model", "method", "shoal s", "torch s", "copy s", "torch/shoal",
            "shoal/copy", "RSS MB", "agree")
    lines = [head]
    for r in rows:
        lines.append((r["size"], "%.2f" % r["gb"], r["method"], "%.2f" % r["shoal"],
                      fmt(r["torch"], ".2f"), "%.2f" % r["copy"],
                      fmt(r["torch"] and r["torch"] / r["shoal"], ".1f"),
                      "%.2f" % (r["shoal"] / r["copy"]), "%.0f" % r["rss"],
                      fmt(r["match"] and 100 * r["match"], ".2f")))
    widths = [max(len(str(l[i])) for l in lines) for i in range(len(head))]
    for i, l in enumerate(lines):
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(l, widths)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("agree: % of elements within one bf16 ulp of the PyTorch pipeline's output")
    print("shoal runs (s): " + "; ".join(
        "%s %s %s" % (r["size"], r["method"], ",".join("%.2f" % t for t in r["shoal_all"]))
        for r in rows))
    print("copy floor runs (s): " + "; ".join(
        "%s %s %s" % (r["size"], r["copy_mode"], ",".join("%.2f" % t for t in r["copy_all"]))
        for r in rows if r["method"] == "ties"))

    verdicts = []
    for r in rows:
        if r["torch"] is not None:
            ratio = r["torch"] / r["shoal"]
            verdicts.append((ratio >= TORCH_SPEEDUP_TARGET, "%s %s: %.1fx faster than PyTorch"
                             " (target >= %gx)" % (r["size"], r["method"], ratio,
                                                   TORCH_SPEEDUP_TARGET)))
        if r["method"] == "linear":
            ratio = r["shoal"] / r["copy"]
            verdicts.append((ratio <= COPY_RATIO_TARGET, "%s linear: %.2fx the copy floor"
                             " (target <= %gx)" % (r["size"], ratio, COPY_RATIO_TARGET)))
        verdicts.append((r["rss"] < RSS_LIMIT_MB, "%s %s: peak RSS %.0f MB (target < %d MB)"
                         % (r["size"], r["method"], r["rss"], RSS_LIMIT_MB)))
    by = {(r["size"], r["method"]): r for r in rows}
    for method in ("ties", "linear"):
        if ("small", method) in by and ("large", method) in by:
            small, large = by[("small", method)], by[("large", method)]
            # Independent of size: the 1.8x larger model may not cost more than 25% (+16 MB).
            ok = large["rss"] <= 1.25 * small["rss"] + 16
            verdicts.append((ok, "%s: peak RSS %.0f MB at %.2f GB vs %.0f MB at %.2f GB"
                             " (target: independent of size)" % (method, large["rss"], large["gb"],
                                                                small["rss"], small["gb"])))
    for ok, text in verdicts:
        print("%s  %s" % ("PASS" if ok else "FAIL", text))


if __name__ == "__main__":
    sys.exit(main())
