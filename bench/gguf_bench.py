#!/usr/bin/python3
"""GGUF benchmark: shoal's engine against llama.cpp (node-llama-cpp's prebuilt CPU build) on the
same GGUF files of one generated Llama-shaped model (~148M parameters), F32 and Q8_0, same
thread count, in one run: prefill tokens/s (one 256-token prompt, up to the first generated
token) and batch-1 greedy decode tokens/s (64 tokens). See bench/README.md.
Needs Debian's /usr/bin/python3, node >= 20 and scripts/install-llamacpp-npm.sh.
"""

import argparse
import json
import os
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SHOAL_SHARED_DATA") or os.path.join(os.path.dirname(REPO), "shared", "data")
# 148M parameters: embedding and lm_head 2 x 24.6M, 12 layers of 8.3M.
SHAPE = ["--hidden", "768", "--layers", "12", "--intermediate", "2560", "--vocab", "32000",
         "--heads", "12", "--kv-heads", "12", "--experts", "0", "--dtype", "float32"]
PEER = os.path.join(REPO, "tests", "llamacpp_peer.mjs")


def make_gguf(build, work):
    """The HF folder (with Llama-2's tokenizer, which llama.cpp needs to load the file) and its
    F32 and Q8_0 GGUF conversions, cached in `work`."""
    folder = os.path.join(work, "hf")
    if not os.path.exists(os.path.join(folder, "base", "config.json")):
        subprocess.run([os.path.join(build, "shoal_make_models"), folder, *SHAPE], check=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(SHARED, "llama2-tokenizer", f), os.path.join(folder, "base"))
    files = {}
    for typ in ("f32", "q8_0"):
        files[typ] = os.path.join(work, f"model-{typ}.gguf")
        if not os.path.exists(files[typ]):
            subprocess.run([os.path.join(build, "shoal"), "convert", os.path.join(folder, "base"),
                            files[typ], "--type", typ, "--quiet"], check=True)
    return files


def run_shoal(build, path, a):
    cmd = [os.path.join(build, "bench", "shoal_gguf_bench"), path, "--threads", str(a.threads),
           "--prompt", str(a.prompt), "--decode", str(a.decode), "--reps", str(a.reps)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def run_llamacpp(path, a):
    request = {"op": "bench", "prompt_tokens": a.prompt, "gen_tokens": a.decode,
               "vocab": 32000, "reps": a.reps, "threads": a.threads}
    env = dict(os.environ, SHOAL_LLAMACPP_NPM=a.npm)
    out = subprocess.run(["node", PEER, path], input=json.dumps(request), check=True,
                         capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", default="/tmp/shoal-gguf-bench")
    p.add_argument("--build", default=os.path.join(REPO, "build-bench"))
    p.add_argument("--npm", default=os.environ.get("SHOAL_LLAMACPP_NPM") or os.path.expanduser(
        "~/.cache/shoal-npm/node-llama-cpp-3.22.1"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=256)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    files = make_gguf(a.build, a.work)
    print(f"load before: {os.getloadavg()[0]:.2f}; threads {a.threads}; best of {a.reps}; "
          f"prompt {a.prompt} tokens, decode {a.decode}", flush=True)
    rows = []
    for typ, path in files.items():
        # Alternated, so that a change in the machine's load hits both alike.
        res = {"shoal": run_shoal(a.build, path, a), "llama.cpp": run_llamacpp(path, a)}
        for name, r in res.items():
            pf = a.prompt / min(r["prefill_s"])
            dc = a.decode / min(r["decode_s"])
            same = sum(x == y for x, y in zip(r["generated"], res["llama.cpp"]["generated"]))
            rows.append((typ, name, pf, dc, same))
            print(f"  {typ} {name}: prefill runs {['%.3f' % s for s in r['prefill_s']]} s, "
                  f"decode runs {['%.3f' % s for s in r['decode_s']]} s", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    size = {t: os.path.getsize(f) / 1e6 for t, f in files.items()}
    print("\n| type | file MB | engine | prefill tok/s | decode tok/s | greedy ids = llama.cpp's |")
    print("|---|---|---|---|---|---|")
    for typ, name, pf, dc, same in rows:
        print(f"| {typ} | {size[typ]:.0f} | {name} | {pf:.1f} | {dc:.2f} | {same}/{a.decode} |")
    by = {(t, n): (pf, dc) for t, n, pf, dc, _ in rows}
    print("\n| type | prefill shoal/llama.cpp | decode shoal/llama.cpp |")
    print("|---|---|---|")
    for typ in files:
        (sp, sd), (lp, ld) = by[(typ, "shoal")], by[(typ, "llama.cpp")]
        print(f"| {typ} | {sp / lp:.2f} | {sd / ld:.2f} |")


if __name__ == "__main__":
    main()
