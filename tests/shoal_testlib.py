"""Shared helpers for shoal's end-to-end merge tests.

Everything here is independent of shoal's C++ code: a small safetensors writer/reader, tiny
Llama-shaped Hugging Face model folders generated from fixed NumPy seeds, the counter-based RNG
re-implemented from its published formula, and float64 reference implementations of the merge
methods written from ../shared/specs/merge-methods.md.

Tolerance: shoal computes in double and rounds once to the output dtype, so every output element
must lie within ONE ulp of the output dtype at the float64 reference value (plus a slack of 2^-40
times the magnitude of the inputs, far below any output ulp, for the last-bit differences two
double computations of the same formula may have).

Environment: SHOAL_BIN (the shoal binary), SHOAL_TEST_TMP (scratch folder), SHOAL_KEEP_TMP=1 to
keep the scratch folders of a run.
"""

import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# Environment and running shoal


def shoal_bin():
    return os.environ.get("SHOAL_BIN") or str(REPO / "build" / "shoal")


def tmp_root():
    root = os.environ.get("SHOAL_TEST_TMP") or os.path.join(tempfile.gettempdir(), "shoal-e2e")
    os.makedirs(root, exist_ok=True)
    return root


def run_shoal(args, cwd=None, timeout=180):
    return subprocess.run([shoal_bin()] + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def error_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.strip()]


def file_hashes(folder):
    """sha256 of every file under `folder` (relative path -> digest)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------------------------------------
# Dtypes: safetensors names, recipe names, conversions

ST_TO_RECIPE = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
RECIPE_TO_ST = {v: k for k, v in ST_TO_RECIPE.items()}
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U8": 1, "BOOL": 1}
INT_DTYPES = {"I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1"}
# Values this small are flushed to zero in generated data, so that every bf16 value is also an
# exact f16 value (f16 normals start at 2^-14; bf16 has 8 significant bits).
FLUSH_BELOW = 2.0 ** -13


def quantize(a, dt):
    """Nearest values representable in `dt`, returned as float64."""
    a = np.asarray(a, dtype=np.float64)
    if dt == "F64" or dt in INT_DTYPES:
        return a.copy()
    if dt == "F32":
        return a.astype(np.float32).astype(np.float64)
    if dt == "F16":
        return a.astype(np.float16).astype(np.float64)
    if dt == "BF16":
        t = torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
        return t.to(torch.float32).numpy().astype(np.float64)
    raise ValueError(dt)


def encode(a, dt):
    a = np.asarray(a, dtype=np.float64)
    if dt == "F64":
        return a.astype("<f8").tobytes()
    if dt == "F32":
        return a.astype("<f4").tobytes()
    if dt == "F16":
        return a.astype("<f2").tobytes()
    if dt == "BF16":
        t = torch.from_numpy(np.ascontiguousarray(a.astype(np.float32))).to(torch.bfloat16)
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if dt in INT_DTYPES:
        return a.astype(INT_DTYPES[dt]).tobytes()
    raise ValueError(dt)


def decode(buf, dt, shape):
    if dt == "F64":
        a = np.frombuffer(buf, dtype="<f8")
    elif dt == "F32":
        a = np.frombuffer(buf, dtype="<f4")
    elif dt == "F16":
        a = np.frombuffer(buf, dtype="<f2")
    elif dt == "BF16":
        a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif dt in INT_DTYPES:
        a = np.frombuffer(buf, dtype=INT_DTYPES[dt])
    else:
        raise ValueError("unexpected dtype " + dt)
    return a.astype(np.float64).reshape(shape)


def flush(a):
    a = np.array(a, dtype=np.float64)
    a[np.abs(a) < FLUSH_BELOW] = 0.0
    return a


# ---------------------------------------------------------------------------------------------
# safetensors


def write_raw_safetensors(path, header, data):
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((-len(hb)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        f.write(data)


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> (dtype, float64 array); data laid out in dict order."""
    header = {"__metadata__": metadata if metadata is not None else {"format": "pt"}}
    blobs, off = [], 0
    for name, (dt, arr) in tensors.items():
        raw = encode(arr, dt)
        header[name] = {"dtype": dt, "shape": list(np.shape(arr)),
                        "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    write_raw_safetensors(path, header, b"".join(blobs))


def read_safetensors(path):
    """Strictly parses a safetensors file. Returns (header, {name: (dtype, float64 array)})."""
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} past the end")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    body = data[8 + n:]
    tensors, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt, shape = info["dtype"], info["shape"]
        if e - b != ITEMSIZE[dt] * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: {name}: bytes do not match shape")
        if e > len(body):
            raise ValueError(f"{path}: {name}: data past the end")
        spans.append((b, e))
        tensors[name] = (dt, decode(body[b:e], dt, shape))
    spans.sort()
    pos = 0
    for b, e in spans:
        if b != pos:
            raise ValueError(f"{path}: gap or overlap in the data at {pos}")
        pos = e
    if pos != len(body):
        raise ValueError(f"{path}: {len(body) - pos} trailing bytes")
    return header, tensors


def read_model_tensors(folder):
    """All tensors of a model folder (single file or index + shards): {name: (dtype, array)}.
    Checks the index against the shards: every tensor once, in the shard the index names,
    total_size equal to the bytes of tensor data."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        _, tensors = read_safetensors(folder / "model.safetensors")
        return tensors
    idx = json.loads(index.read_text())
    weight_map = idx["weight_map"]
    tensors, total = {}, 0
    for shard in sorted(set(weight_map.values())):
        _, ts = read_safetensors(folder / shard)
        for name, (dt, arr) in ts.items():
            if name in tensors:
                raise ValueError(f"{name} appears in two shards")
            if weight_map.get(name) != shard:
                raise ValueError(f"{name} is in {shard} but the index says {weight_map.get(name)}")
            tensors[name] = (dt, arr)
            total += ITEMSIZE[dt] * arr.size
    if set(tensors) != set(weight_map):
        raise ValueError("index and shards disagree on the tensor set")
    if idx["metadata"]["total_size"] != total:
        raise ValueError(f"total_size {idx['metadata']['total_size']} != {total}")
    return tensors


# ---------------------------------------------------------------------------------------------
# Tiny Llama-shaped model folders


def llama_config(n_layers=2, hidden=16, inter=32, vocab=48, heads=4, kv_heads=2, tie=False,
                 dtype="bfloat16"):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": n_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": tie,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": dtype,
    }


def llama_shapes(cfg, with_lm_head=True):
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    shapes = [("model.embed_tokens.weight", (v, h))]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes += [
            (p + "self_attn.q_proj.weight", (h, h)),
            (p + "self_attn.k_proj.weight", (kv, h)),
            (p + "self_attn.v_proj.weight", (kv, h)),
            (p + "self_attn.o_proj.weight", (h, h)),
            (p + "mlp.gate_proj.weight", (i, h)),
            (p + "mlp.up_proj.weight", (i, h)),
            (p + "mlp.down_proj.weight", (h, i)),
            (p + "input_layernorm.weight", (h,)),
            (p + "post_attention_layernorm.weight", (h,)),
        ]
    shapes.append(("model.norm.weight", (h,)))
    if with_lm_head:
        shapes.append(("lm_head.weight", (v, h)))
    return shapes


def random_weights(shapes, seed, scale=0.1):
    """Base-model values: norms around 1, everything else N(0, scale^2)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in shapes:
        x = rng.standard_normal(shape)
        out[name] = 1.0 + 0.1 * x if name.endswith("norm.weight") else scale * x
    return out


def shared_noise(base, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(b.shape) for name, b in base.items()}


def _row_duplicates(d):
    """Mask of entries of the 2-D array d that equal an earlier-sorted entry of their row."""
    order = np.argsort(d, axis=1, kind="stable")
    s = np.take_along_axis(d, order, axis=1)
    dup_sorted = np.zeros(d.shape, dtype=bool)
    dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
    dup = np.zeros(d.shape, dtype=bool)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def make_expert(base, seed, dt, scale=0.02, shared=None, shared_frac=0.6):
    """An expert = base + a small random delta, quantized to `dt`. `base` holds values already
    representable in dt. Within each row (last axis) the |delta| values are made distinct and
    non-zero, so that rankings (DELLA, top-k) never depend on how ties are broken."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, b in base.items():
        s = scale * (4.0 if name.endswith("norm.weight") else 1.0)
        noise = rng.standard_normal(b.shape)
        if shared is not None:
            noise = shared_frac * shared[name] + math.sqrt(1 - shared_frac ** 2) * noise
        e = quantize(flush(b + s * noise), dt)
        b2 = b.reshape(-1, b.shape[-1])
        e2 = e.reshape(-1, b.shape[-1])
        for attempt in range(200):
            d = np.abs(e2 - b2)
            bad = _row_duplicates(d) | (d == 0)
            if not bad.any():
                break
            grow = s * 1.25 ** min(attempt, 12)
            e2[bad] = quantize(flush(b2[bad] + grow * rng.standard_normal(int(bad.sum()))), dt)
        else:
            raise RuntimeError(f"could not make distinct deltas for {name}")
        out[name] = e2.reshape(b.shape)
    return out


def tokenizer_files(tag, vocab=48):
    """A small WordLevel tokenizer whose content carries `tag`, to tell copies apart."""
    words = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, vocab):
        words[f"{tag}_w{i}"] = i
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "<unk>"},
    }
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
           "model_max_length": 128, "tokenizer_class": "PreTrainedTokenizerFast",
           "shoal_test_tag": tag}
    return {"tokenizer.json": json.dumps(tok, indent=1),
            "tokenizer_config.json": json.dumps(cfg, indent=1),
            "special_tokens_map.json": json.dumps({"bos_token": "<s>", "eos_token": "</s>"})}


class Model:
    """A generated model folder and the exact values stored in it (float64)."""

    def __init__(self, path, tensors, dt, config):
        self.path = Path(path)
        self.tensors = tensors
        self.dt = dt
        self.config = config

    def __repr__(self):
        return f"Model({self.path})"


def write_model(path, values, dt, config, tok_tag=None, n_shards=1, tensor_dtypes=None):
    """Writes an HF folder. values: {name: float64 array} (quantized to dt here, after flushing
    tiny values). tensor_dtypes may override the dtype of single tensors."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    stored = {}
    entries = {}
    for name, v in values.items():
        tdt = (tensor_dtypes or {}).get(name, dt)
        q = quantize(flush(v), tdt)
        stored[name] = q
        entries[name] = (tdt, q)
    names = list(entries)
    if n_shards == 1:
        write_safetensors(path / "model.safetensors", entries)
    else:
        per = math.ceil(len(names) / n_shards)
        weight_map, total = {}, 0
        for s in range(n_shards):
            part = names[s * per:(s + 1) * per]
            fname = f"model-{s + 1:05d}-of-{n_shards:05d}.safetensors"
            write_safetensors(path / fname, {n: entries[n] for n in part})
            for n in part:
                weight_map[n] = fname
                total += ITEMSIZE[entries[n][0]] * entries[n][1].size
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    cfg = dict(config)
    cfg["torch_dtype"] = ST_TO_RECIPE.get(dt, "float32")
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    if tok_tag is not None:
        for fname, text in tokenizer_files(tok_tag, cfg.get("vocab_size", 48)).items():
            (path / fname).write_text(text)
    return Model(path, stored, dt, cfg)


def make_family(root, dt, seed, n_experts=3, tag_prefix="", **cfg_kw):
    """Base + experts in `root`: experts share part of their delta (so task vectors agree in
    part, as fine-tunes of one base do) and have their own part."""
    cfg = llama_config(**cfg_kw)
    base_vals = {n: quantize(flush(v), dt)
                 for n, v in random_weights(llama_shapes(cfg), seed).items()}
    base = write_model(Path(root) / "base", base_vals, dt, cfg, tok_tag=tag_prefix + "base")
    shared = shared_noise(base.tensors, seed + 1000)
    experts = []
    for k in range(n_experts):
        vals = make_expert(base.tensors, seed + 1 + k, dt, shared=shared)
        experts.append(write_model(Path(root) / f"e{k + 1}", vals, dt, cfg,
                                   tok_tag=f"{tag_prefix}e{k + 1}"))
    return base, experts


# ---------------------------------------------------------------------------------------------
# The counter-based RNG (from the formula documented in include/shoal/rng.h)

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z):
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def mix64_np(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash_name(s):
    h = 0xCBF29CE484222325
    for c in s.encode("utf-8"):
        h ^= c
        h = (h * 0x100000001B3) & MASK64
    return h


class CounterRng:
    def __init__(self, seed=0, key=None):
        self.key = key if key is not None else mix64(seed + GOLDEN)

    def stream(self, sid):
        return CounterRng(key=self.key ^ mix64(sid))

    def uniform(self, n):
        i = np.arange(n, dtype=np.uint64)
        with np.errstate(over="ignore"):
            z = np.uint64(self.key) + (i + np.uint64(1)) * np.uint64(GOLDEN)
        bits = mix64_np(z)
        return (bits >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def tensor_rng(seed, name):
    return CounterRng(seed).stream(hash_name(name))


# ---------------------------------------------------------------------------------------------
# Recipe parameter values (gradients and filters), from the spec


def interp_gradient(points, t):
    n = len(points)
    if n == 1:
        return float(points[0])
    s = t * (n - 1)
    i0 = min(int(math.floor(s)), n - 2)
    frac = s - i0
    return points[i0] * (1 - frac) + points[i0 + 1] * frac


def resolve_param(value, name, t):
    """A YAML parameter value for tensor `name` at gradient position t; None when no filter
    entry matches."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for ent in value:
            f = ent.get("filter")
            if f is None or f == "*" or f in name:
                return resolve_param(ent["value"], name, t)
        return None
    if isinstance(value, list):
        return interp_gradient([float(v) for v in value], t)
    raise ValueError(value)


def layer_t(i, n):
    """Gradient position of the i-th of n layers of a slice (one-layer slice: t = 1)."""
    return 1.0 if n == 1 else i / (n - 1)


def layer_index(name):
    parts = name.split(".")
    for k, p in enumerate(parts):
        if p.isdigit():
            return k, int(p)
    return None, None


def rename_layer(name, new_index):
    parts = name.split(".")
    k, _ = layer_index(name)
    parts[k] = str(new_index)
    return ".".join(parts)


# ---------------------------------------------------------------------------------------------
# Reference merge methods, float64, from the spec

EMBED_KEYS = ("embed_tokens", "lm_head", "wte", "word_embeddings", "embed_in", "embed_out",
              "tok_embeddings")


def is_embedding(name):
    return any(k in name for k in EMBED_KEYS)


def rectify_common(name, arrs):
    """Embedding rectification for linear/slerp/nuslerp/model_stock: common top-left block."""
    if is_embedding(name) and all(a.ndim == 2 for a in arrs):
        r = min(a.shape[0] for a in arrs)
        c = min(a.shape[1] for a in arrs)
        return [a[:r, :c] for a in arrs]
    return arrs


def ref_linear(name, xs, weights, normalize=True):
    xs = rectify_common(name, xs)
    out = sum(w * x for w, x in zip(weights, xs))
    if normalize:
        out = out / sum(weights)
    return out


class BoundaryError(AssertionError):
    """Test data sits on a decision boundary; the data must be changed, not the tolerance."""


def ref_slerp(name, base, other, t):
    base, other = rectify_common(name, [base, other])
    v0, v1 = base.reshape(-1), other.reshape(-1)
    n0, n1 = np.linalg.norm(v0), np.linalg.norm(v1)
    u0 = v0 / n0 if n0 > 1e-8 else v0
    u1 = v1 / n1 if n1 > 1e-8 else v1
    dot = float(np.sum(u0 * u1))
    if abs(abs(dot) - 0.9995) < 1e-9:
        raise BoundaryError(f"{name}: slerp dot {dot} on the lerp threshold")
    if abs(dot) > 0.9995:
        res = (1 - t) * v0 + t * v1
    else:
        theta = math.acos(dot)
        st = math.sin(theta)
        res = math.sin((1 - t) * theta) / st * v0 + math.sin(t * theta) / st * v1
    return res.reshape(base.shape)


def _nuslerp_vectors(t, v0, v1):
    """Rows of v0, v1 are the vectors."""
    n0 = np.maximum(np.linalg.norm(v0, axis=-1, keepdims=True), 1e-7)
    n1 = np.maximum(np.linalg.norm(v1, axis=-1, keepdims=True), 1e-7)
    cos = np.sum((v0 / n0) * (v1 / n1), axis=-1, keepdims=True)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    st = np.sin(theta)
    colinear = np.abs(st) < 1e-8
    safe = np.where(colinear, 1.0, st)
    res = (np.sin((1 - t) * theta) * v0 + np.sin(t * theta) * v1) / safe
    lerp = (1 - t) * v0 + t * v1
    return np.where(colinear, lerp, res)


def ref_nuslerp(name, x1, x2, w1, w2, base=None, flatten=True, row_wise=False):
    arrs = rectify_common(name, [x1, x2] + ([base] if base is not None else []))
    x1, x2 = arrs[0], arrs[1]
    if base is not None:
        base = arrs[2]
        v0, v1 = x1 - base, x2 - base
    else:
        v0, v1 = x1, x2
    s = w1 + w2
    t = 0.5 if abs(s) < 1e-6 else w2 / s
    shape = v0.shape
    if flatten:
        res = _nuslerp_vectors(t, v0.reshape(1, -1), v1.reshape(1, -1)).reshape(shape)
    elif row_wise:
        # Vectors along axis 0.
        a0, a1 = np.moveaxis(v0, 0, -1), np.moveaxis(v1, 0, -1)
        res = np.moveaxis(_nuslerp_vectors(t, a0, a1), -1, 0)
    else:
        res = _nuslerp_vectors(t, v0, v1)
    return res + base if base is not None else res


def ref_model_stock(name, base, xs, filter_wise=False):
    arrs = rectify_common(name, [base] + list(xs))
    base, xs = arrs[0], arrs[1:]
    shape = base.shape
    if filter_wise:
        cols = shape[-1] if base.ndim >= 1 else 1
        b = base.reshape(-1, cols)
        X = [x.reshape(-1, cols) for x in xs]
    else:
        b = base.reshape(1, -1)
        X = [x.reshape(1, -1) for x in xs]
    offs = [x - b for x in X]
    cos = []
    for i in range(len(offs)):
        for j in range(i + 1, len(offs)):
            prod = np.linalg.norm(offs[i], axis=-1) * np.linalg.norm(offs[j], axis=-1)
            c = np.sum(offs[i] * offs[j], axis=-1) / np.maximum(prod, 1e-6)
            cos.append(np.clip(c, -1.0, 1.0))
    c = np.mean(np.stack(cos), axis=0)[:, None]
    n = len(X)
    t = n * c / (1 + (n - 1) * c)
    avg = sum(X) / n
    return (t * avg + (1 - t) * b).reshape(shape)


# method -> (sparsification, sign consensus, default normalize, default rescale)
TASK_METHODS = {
    "task_arithmetic": ("none", False, False, False),
    "ties": ("magnitude", True, True, False),
    "dare_ties": ("random", True, False, True),
    "dare_linear": ("random", False, False, True),
    "breadcrumbs": ("magnitude_outliers", False, False, False),
    "breadcrumbs_ties": ("magnitude_outliers", True, False, False),
    "della": ("della", True, True, True),
    "della_linear": ("della", False, False, True),
}


def sparsify(kind, delta, mp, rng, rescale):
    density = mp.get("density", 1.0)
    if kind == "none" or density >= 1:
        return delta
    flat = delta.reshape(-1)
    n = flat.size
    keep = np.zeros(n, dtype=bool)
    if kind == "magnitude":
        k = int(density * n)
        assert k > 0
        # Stable descending order: equal magnitudes keep the lower flat index first.
        order = np.argsort(-np.abs(flat), kind="stable")
        keep[order[:k]] = True
    elif kind == "magnitude_outliers":
        gamma = mp.get("gamma", 0.01)
        n_top = int(gamma * n)
        n_bot = n - int(density * n) - n_top
        if n_bot < 0:
            n_top += n_bot
            n_bot = 0
        order = np.argsort(np.abs(flat), kind="stable")
        if n_top > 0:  # mergekit's idx[n_bot:-n_top] is empty when n_top == 0
            keep[order[n_bot:n - n_top]] = True
    elif kind == "random":
        keep = rng.uniform(n) < density
    elif kind == "della":
        if density <= 0:
            return np.zeros_like(delta)
        eps = mp.get("epsilon", 0.15)
        rows = flat.reshape(-1, delta.shape[-1]) if delta.ndim >= 2 else flat.reshape(1, -1)
        ncols = rows.shape[1]
        order = np.argsort(np.abs(rows), axis=1, kind="stable")
        rank = np.zeros(rows.shape)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(1, ncols + 1), rows.shape),
                          axis=1)
        p = density - eps + 2 * eps * (rank - 1) / (ncols - 1)
        keep = (rng.uniform(n).reshape(rows.shape) < p).reshape(-1)
    else:
        raise ValueError(kind)
    masked = np.where(keep, flat, 0.0)
    if rescale:
        s1, s2 = np.sum(np.abs(flat)), np.sum(np.abs(masked))
        if s1 >= 1e-7 and s2 >= 1e-7:
            masked = masked * (s1 / s2)
    return masked.reshape(delta.shape)


def ref_task(method, name, base, inputs, gp, seed=0):
    """Task-vector family. inputs: [(array, model params)] for the non-base models in recipe
    order. Returns (reference, fragile mask or None): fragile elements are those whose sign
    election sums to (almost) zero over several non-zero terms, where the order of summation
    decides."""
    kind, consensus, norm_default, rescale_default = TASK_METHODS[method]
    normalize = bool(gp.get("normalize", norm_default))
    rescale = bool(gp.get("rescale", rescale_default))
    lam = gp.get("lambda", 1.0)
    trng = tensor_rng(seed, name)
    wds, ws = [], []
    for j, (x, mp) in enumerate(inputs):
        if x.shape != base.shape:
            if (is_embedding(name) and x.ndim == 2 and x.shape[0] >= base.shape[0]
                    and x.shape[1] >= base.shape[1]):
                x = x[:base.shape[0], :base.shape[1]]
            else:
                continue
        d = sparsify(kind, x - base, mp, trng.stream(j), rescale)
        wds.append(mp["weight"] * d)
        ws.append(mp["weight"])
    if not wds:
        return base.copy(), None
    W = np.stack(wds)
    fragile = None
    if consensus:
        S = W.sum(axis=0)
        majority = np.where(S >= 0, 1.0, -1.0)
        keep = np.sign(W) == majority
        mixed = np.sum(W * keep, axis=0)
        div = sum(w * k for w, k in zip(ws, keep))
        div = np.where(div == 0, 1.0, div)
        total = np.sum(np.abs(W), axis=0)
        fragile = (total > 0) & (np.abs(S) <= 1e-12 * total) & (np.sum(W != 0, axis=0) >= 2)
    else:
        mixed = W.sum(axis=0)
        div = sum(ws)
        if abs(div) < 1e-8:
            div = 1.0
    if normalize:
        mixed = mixed / div
    mixed = mixed * lam
    return base + mixed, fragile


def ref_tensor(method, name, base, inputs, gp, seed=0):
    """One output tensor. base: array or None; inputs: [(array, model params)] (non-base models
    in recipe order). Returns (reference, fragile mask or None)."""
    if method in TASK_METHODS:
        return ref_task(method, name, base, inputs, gp, seed)
    xs = [x for x, _ in inputs]
    mps = [mp for _, mp in inputs]
    if method == "linear":
        return ref_linear(name, xs, [mp["weight"] for mp in mps],
                          bool(gp.get("normalize", True))), None
    if method == "slerp":
        return ref_slerp(name, base, xs[0], gp["t"]), None
    if method == "nuslerp":
        return ref_nuslerp(name, xs[0], xs[1], mps[0]["weight"], mps[1]["weight"], base,
                           bool(gp.get("nuslerp_flatten", True)),
                           bool(gp.get("nuslerp_row_wise", False))), None
    if method == "model_stock":
        return ref_model_stock(name, base, xs, bool(gp.get("filter_wise", False))), None
    if method == "passthrough":
        return xs[0] * mps[0].get("scale", 1.0), None
    raise ValueError(method)


# ---------------------------------------------------------------------------------------------
# Comparison


def ulp(ref, dt):
    """One ulp of dtype dt at |ref| (2^(e-p) with e = floor(log2|ref|)); 0 where ref == 0."""
    a = np.abs(np.asarray(ref, dtype=np.float64))
    _, ex = np.frexp(np.where(a > 0, a, 1.0))
    e = ex.astype(np.float64) - 1
    if dt == "BF16":
        u = np.maximum(2.0 ** (e - 7), 2.0 ** -133)
    elif dt == "F16":
        u = np.maximum(2.0 ** (e - 10), 2.0 ** -24)
    elif dt == "F32":
        u = np.maximum(2.0 ** (e - 23), 2.0 ** -149)
    else:
        raise ValueError(dt)
    return np.where(a > 0, u, 0.0)


def check_tensor(tc, name, got, ref, dt, fragile=None, scale=None, max_fragile=0.02):
    """Asserts |got - ref| <= 1 ulp(dt, ref) + 2^-40 * scale elementwise, skipping `fragile`."""
    ref = np.asarray(ref, dtype=np.float64)
    tc.assertEqual(tuple(got.shape), tuple(ref.shape), f"{name}: shape")
    tc.assertTrue(np.all(np.isfinite(ref)), f"{name}: reference not finite (bad test data)")
    if scale is None:
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    tol = ulp(ref, dt) + 2.0 ** -40 * scale
    diff = np.abs(got - ref)
    bad = ~(diff <= tol)
    if fragile is not None:
        tc.assertLessEqual(int(fragile.sum()), max(1, int(max_fragile * ref.size)),
                           f"{name}: too many elements on a decision boundary (test data)")
        bad &= ~fragile
    if bad.any():
        idx = np.argwhere(bad)[:4]
        lines = []
        for ix in idx:
            ix = tuple(ix)
            u = ulp(ref[ix], dt)
            lines.append(f"  at {list(ix)}: got {got[ix]!r} expected {ref[ix]!r} "
                         f"({(got[ix] - ref[ix]) / u if u else float('inf'):.3g} ulp)")
        tc.fail(f"{name}: {int(bad.sum())}/{ref.size} elements off by more than 1 ulp of {dt}\n"
                + "\n".join(lines))


def check_model(tc, out_tensors, expected, dt, label=""):
    """expected: {name: (ref, fragile, scale)}; every output tensor in dtype dt."""
    tc.assertEqual(sorted(out_tensors), sorted(expected), f"{label} tensor names")
    for name, (ref, fragile, scale) in expected.items():
        got_dt, got = out_tensors[name]
        tc.assertEqual(got_dt, dt, f"{label} {name}: dtype")
        check_tensor(tc, f"{label} {name}", got, ref, dt, fragile, scale)


def input_scale(*arrays, weights=()):
    """Magnitude bound used for the double-rounding slack."""
    m = max(float(np.max(np.abs(a))) for a in arrays if a is not None)
    return m * (1.0 + sum(abs(w) for w in weights))


# ---------------------------------------------------------------------------------------------
# Test base class


class ShoalTestCase(unittest.TestCase):
    """Gives each test class a scratch folder and each test its own sub-folder."""

    @classmethod
    def setUpClass(cls):
        if not os.access(shoal_bin(), os.X_OK):
            raise RuntimeError(f"shoal binary not found at {shoal_bin()} (set SHOAL_BIN)")
        cls.class_tmp = Path(tempfile.mkdtemp(prefix=cls.__name__ + "-", dir=tmp_root()))

    @classmethod
    def tearDownClass(cls):
        if not os.environ.get("SHOAL_KEEP_TMP"):
            shutil.rmtree(cls.class_tmp, ignore_errors=True)

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix=self._testMethodName + "-", dir=self.class_tmp))

    def write_recipe(self, text, name="recipe.yml", folder=None):
        p = Path(folder or self.tmp) / name
        p.write_text(text)
        return p

    def merge(self, recipe_text, *args, out=None, cwd=None, expect_ok=True, recipe_name=None,
              recipe_folder=None, quiet=True):
        """Writes the recipe and runs `shoal merge`. Returns (CompletedProcess, out_dir)."""
        recipe = self.write_recipe(recipe_text, recipe_name or "recipe.yml", recipe_folder)
        out = Path(out) if out is not None else Path(
            tempfile.mkdtemp(prefix="out-", dir=self.tmp)) / "merged"
        argv = ["merge", recipe, out] + (["--quiet"] if quiet else []) + list(args)
        proc = run_shoal(argv, cwd=cwd)
        if expect_ok:
            self.assertEqual(proc.returncode, 0,
                             f"shoal merge failed (rc {proc.returncode}):\n{proc.stderr}\n"
                             f"recipe:\n{recipe_text}")
        return proc, out

    def assert_error(self, proc, *needles):
        """Exit 1 (not a signal), stderr starting with 'shoal: error:' and holding every needle."""
        self.assertEqual(proc.returncode, 1,
                         f"expected exit 1, got {proc.returncode}; stderr:\n{proc.stderr}")
        self.assertIn("shoal: error:", proc.stderr)
        for n in needles:
            self.assertIn(str(n), proc.stderr, f"stderr lacks {n!r}:\n{proc.stderr}")


def yaml_path(p):
    """A model path quoted for a YAML recipe."""
    return json.dumps(str(p))
