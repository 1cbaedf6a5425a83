#!/usr/bin/python3
"""The PyTorch baseline of merge_bench.py: a merge written the way mergekit does it.

For every tensor: load it from every model, torch.stack, compute in the loaded dtype (bf16) with
torch ops, and write it to the output. The math follows ../shared/specs/merge-methods.md (the
same facts shoal implements); this file is our own code, not mergekit's.

    /usr/bin/python3 bench/torch_merge.py {linear,ties} OUT_DIR BASE MODEL... \
        [--weight W] [--density D] [--threads N]

linear merges BASE and the MODELs with weight W each (normalized); ties merges the MODELs onto
BASE with weight W and density D each. Prints one JSON line: {"seconds": ...} measured from
after `import torch` to the output file closed.

Debian has no `safetensors` Python package, so the small reader and writer below parse the
format directly: 8-byte little-endian header length, JSON header, raw tensor bytes.
"""
import argparse
import json
import mmap
import os
import shutil
import struct
import sys
import time
import warnings

import torch

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class SafetensorsModel:
    """The tensors of a model folder (one file or shards), as tensors over read-only mmaps."""

    def __init__(self, folder):
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.entries = {}  # name -> (mmap, dtype, shape, byte offset of the data)
        self.maps = []
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.maps.append(mm)
            (n,) = struct.unpack("<Q", mm[:8])
            header = json.loads(mm[8 : 8 + n])
            for tname, info in header.items():
                if tname == "__metadata__":
                    continue
                begin, _ = info["data_offsets"]
                self.entries[tname] = (mm, DTYPES[info["dtype"]], info["shape"], 8 + n + begin)

    def names(self):
        return list(self.entries)

    def shape(self, name):
        return self.entries[name][2]

    def tensor(self, name):
        mm, dtype, shape, offset = self.entries[name]
        numel = 1
        for d in shape:
            numel *= d
        # A read-only buffer: torch warns that writing would be undefined; we never write to it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = torch.frombuffer(mm, dtype=dtype, count=numel, offset=offset)
        return t.reshape(shape)


class SafetensorsWriter:
    """Writes one model.safetensors whose header is known up front; tensors arrive in order."""

    def __init__(self, path, specs):
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, dtype, shape in specs:
            n = torch.empty((), dtype=dtype).element_size()
            for d in shape:
                n *= d
            header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": shape,
                            "data_offsets": [offset, offset + n]}
            offset += n
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self.f = open(path, "wb")
        self.f.write(struct.pack("<Q", len(text)) + text)

    def write(self, t):
        t = t.contiguous()
        # numpy has no bf16: write the raw 16-bit words.
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.view(torch.int16)
        self.f.write(memoryview(t.numpy()).cast("B"))

    def close(self):
        self.f.close()


def weights_like(values, stacked):
    """Per-model weights as a tensor in the compute dtype, broadcastable against `stacked`."""
    w = torch.tensor(values, dtype=stacked.dtype)
    return w.view(-1, *([1] * (stacked.dim() - 1)))


def merge_linear(tensors, weights):
    stacked = torch.stack(tensors, dim=0)
    w = weights_like(weights, stacked)
    return (stacked * w).sum(dim=0) / w.sum(dim=0)


def magnitude_sparsify(delta, density):
    """Keeps the k = int(density * numel) entries of largest |delta| (over the whole tensor)."""
    if density >= 1:
        return delta
    k = int(density * delta.numel())
    if k <= 0:
        raise ValueError("density too small for a tensor of %d elements" % delta.numel())
    order = torch.argsort(delta.abs().view(-1).float(), descending=True)
    mask = torch.zeros_like(delta)
    mask.view(-1)[order[:k]] = 1
    return delta * mask


def merge_ties(base, tensors, weights, densities):
    deltas = [magnitude_sparsify(x - base, d) for x, d in zip(tensors, densities)]
    stacked = torch.stack(deltas, dim=0)
    w = weights_like(weights, stacked)
    weighted = stacked * w
    # Sign consensus "sum": the majority sign is that of the summed weighted deltas (>= 0 is +).
    majority = torch.where(weighted.sum(dim=0) >= 0, 1.0, -1.0).to(stacked.dtype)
    keep = weighted.sign() == majority
    mixed = (weighted * keep).sum(dim=0)
    divisor = (w * keep).sum(dim=0)
    divisor[divisor == 0] = 1
    return base + mixed / divisor  # normalize: true (the ties default), lambda 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("method", choices=["linear", "ties"])
    ap.add_argument("out_dir")
    ap.add_argument("base")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--weight", type=float, default=None)
    ap.add_argument("--density", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    base = SafetensorsModel(args.base)
    others = [SafetensorsModel(m) for m in args.models]
    names = base.names()
    os.makedirs(args.out_dir, exist_ok=True)
    out_dtype = torch.bfloat16
    writer = SafetensorsWriter(os.path.join(args.out_dir, "model.safetensors"),
                               [(n, out_dtype, base.shape(n)) for n in names])
    for name in names:
        b = base.tensor(name)
        xs = [m.tensor(name) for m in others]
        if args.method == "linear":
            w = args.weight if args.weight is not None else 1.0
            out = merge_linear([b] + xs, [w] * (len(xs) + 1))
        else:
            w = args.weight if args.weight is not None else 0.5
            out = merge_ties(b, xs, [w] * len(xs), [args.density] * len(xs))
        writer.write(out.to(out_dtype))
    writer.close()
    shutil.copy(os.path.join(args.base, "config.json"), args.out_dir)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": round(seconds, 4), "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
