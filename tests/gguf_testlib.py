"""GGUF for the end-to-end tests, written from the published format (ggml docs/gguf.md), never
from shoal's code: a strict reader (metadata with each value's type, tensor infos, data), a writer
for hand-made (and deliberately broken) files, llama.cpp's Q8_0 reference quantizer in NumPy, and
the Q/K row permutation of llama.cpp's converter.

Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, metadata (string key, u32
type, value), tensor infos (string name, u32 n_dims, u64 dims innermost first, u32 ggml type,
u64 offset relative to the data section), padding to general.alignment (32 by default), data.
"""

import struct

import numpy as np

# Metadata value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
           BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
# ggml tensor types.
GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16 = 0, 1, 8, 30
GGML_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q8_0: "Q8_0", GGML_BF16: "BF16"}


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"read of {n} bytes at {self.pos} past the end ({len(self.data)})")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.scalar("<Q")
        return self.take(n).decode("utf-8")

    def value(self, t):
        if t in _SCALAR:
            return self.scalar(_SCALAR[t])
        if t == STRING:
            return self.string()
        if t == ARRAY:
            et = self.scalar("<I")
            n = self.scalar("<Q")
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError(f"unknown value type {t}")


class GgufFile:
    """metadata: {key: (type, value)} in file order (arrays: (ARRAY, (element type, [values])));
    tensors: {name: (ggml type, row-major shape, raw bytes)} in file order."""

    def __init__(self, path):
        with open(path, "rb") as fh:
            data = fh.read()
        r = Reader(data)
        if r.take(4) != b"GGUF":
            raise ValueError("bad magic")
        self.version = r.scalar("<I")
        n_tensors = r.scalar("<Q")
        n_kv = r.scalar("<Q")
        self.metadata = {}
        for _ in range(n_kv):
            key = r.string()
            t = r.scalar("<I")
            self.metadata[key] = (t, r.value(t))
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.scalar("<I")
            dims = [r.scalar("<Q") for _ in range(n_dims)]
            t = r.scalar("<I")
            off = r.scalar("<Q")
            infos.append((name, t, list(reversed(dims)), off))
        self.alignment = self.get("general.alignment", 32)
        start = (r.pos + self.alignment - 1) // self.alignment * self.alignment
        self.data_start = start
        self.tensors = {}
        for name, t, shape, off in infos:
            if off % self.alignment:
                raise ValueError(f"{name}: offset {off} not aligned")
            n = nbytes(t, shape)
            if start + off + n > len(data):
                raise ValueError(f"{name}: data past the end")
            self.tensors[name] = (t, shape, data[start + off:start + off + n])

    def get(self, key, default=None):
        if key not in self.metadata:
            return default
        t, v = self.metadata[key]
        return v[1] if t == ARRAY else v

    def array(self, key):
        t, v = self.metadata[key]
        assert t == ARRAY, key
        return v

    def tensor(self, name):
        """(ggml type name, float64 array) — Q8_0 dequantised."""
        t, shape, raw = self.tensors[name]
        if t == GGML_F32:
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif t == GGML_F16:
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif t == GGML_BF16:
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(
                np.float64)
        elif t == GGML_Q8_0:
            a = dequantize_q8_0(raw).astype(np.float64)
        else:
            raise ValueError(f"{name}: ggml type {t}")
        return GGML_NAMES[t], a.reshape(shape)


def nbytes(t, shape):
    n = int(np.prod(shape, dtype=np.int64))
    if t == GGML_F32:
        return 4 * n
    if t in (GGML_F16, GGML_BF16):
        return 2 * n
    if t == GGML_Q8_0:
        return n // 32 * 34
    raise ValueError(f"ggml type {t}")


# ---------------------------------------------------------------------------------------------
# Q8_0 (llama.cpp ggml-quants.c quantize_row_q8_0_ref, gguf-py quants.py): blocks of 32 values;
# d = max|x| / 127 in f32, stored as f16; q = round(x * (1/d)), halves away from zero, in f32.


def _round_half_away(x):
    a = np.abs(x)
    f = np.floor(a)
    return np.sign(x) * (f + (a - f >= np.float32(0.5)))


def quantize_q8_0(values):
    x = np.asarray(values, dtype=np.float32).reshape(-1, 32)
    d = (np.max(np.abs(x), axis=1, keepdims=True) / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = _round_half_away((x * inv).astype(np.float32)).astype(np.int8)
    out = np.zeros((x.shape[0], 34), dtype=np.uint8)
    out[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    return out.tobytes()


def dequantize_q8_0(raw):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = b[:, 0:2].copy().view("<f2").astype(np.float32)
    q = b[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


# ---------------------------------------------------------------------------------------------
# llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute): per head, HF's rotate-half
# rows (first half, second half) become interleaved pairs.


def permute_qk(w, n_head):
    w = np.asarray(w)
    rows = w.shape[0]
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2)
            .reshape(w.shape))


# ---------------------------------------------------------------------------------------------
# Writing (for hand-made and broken files)


def _encode_value(t, v):
    if t in _SCALAR:
        return struct.pack(_SCALAR[t], v)
    if t == STRING:
        b = v.encode("utf-8")
        return struct.pack("<Q", len(b)) + b
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(_encode_value(et, x) for x in items)
    raise ValueError(t)


def build(metadata, tensors, version=3, alignment=32):
    """metadata: [(key, type, value)]; tensors: [(name, ggml type, shape, raw bytes)] (optional
    5th item: an explicit offset; empty bytes: no data written, e.g. for an offset far past the
    end). Returns the file's bytes."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, t, v in metadata:
        out += _encode_value(STRING, key) + struct.pack("<I", t) + _encode_value(t, v)
    off, offsets = 0, []
    for item in tensors:
        name, t, shape, raw = item[:4]
        o = item[4] if len(item) > 4 else (off + alignment - 1) // alignment * alignment
        offsets.append(o)
        off = o + len(raw)
        out += _encode_value(STRING, name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        out += struct.pack("<IQ", t, o)
    out += b"\0" * ((-len(out)) % alignment)
    data = bytearray()
    for item, o in zip(tensors, offsets):
        raw = item[3]
        if not raw:
            continue
        if len(data) < o + len(raw):
            data += b"\0" * (o + len(raw) - len(data))
        data[o:o + len(raw)] = raw
    return out + bytes(data)


# ---------------------------------------------------------------------------------------------
# Generated models of the llama family (HF folders) and small tokenizers for them

ARCH_CLASS = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
              "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}


def family_config(arch, vocab, hidden=32, heads=4, kv_heads=2, inter=64, layers=2, head_dim=None,
                  tie=False, eps=1e-5, theta=10000.0, max_pos=256):
    cfg = {"architectures": [ARCH_CLASS[arch]], "model_type": arch, "hidden_size": hidden,
           "intermediate_size": inter, "num_hidden_layers": layers,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads, "vocab_size": vocab,
           "max_position_embeddings": max_pos, "rms_norm_eps": eps, "rope_theta": theta,
           "hidden_act": "silu", "tie_word_embeddings": tie}
    if head_dim is not None:
        cfg["head_dim"] = head_dim
    if arch == "mistral":
        cfg["sliding_window"] = None
    return cfg


def family_shapes(cfg):
    arch = cfg["model_type"]
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    shapes = [("model.embed_tokens.weight", (v, h))]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes += [(p + "input_layernorm.weight", (h,)),
                   (p + "self_attn.q_proj.weight", (q, h)),
                   (p + "self_attn.k_proj.weight", (kv, h)),
                   (p + "self_attn.v_proj.weight", (kv, h)),
                   (p + "self_attn.o_proj.weight", (h, q))]
        if arch == "qwen2":
            shapes += [(p + "self_attn.q_proj.bias", (q,)), (p + "self_attn.k_proj.bias", (kv,)),
                       (p + "self_attn.v_proj.bias", (kv,))]
        if arch == "qwen3":
            shapes += [(p + "self_attn.q_norm.weight", (hd,)),
                       (p + "self_attn.k_norm.weight", (hd,))]
        shapes += [(p + "post_attention_layernorm.weight", (h,)),
                   (p + "mlp.gate_proj.weight", (i, h)), (p + "mlp.up_proj.weight", (i, h)),
                   (p + "mlp.down_proj.weight", (h, i))]
    shapes.append(("model.norm.weight", (h,)))
    if not cfg["tie_word_embeddings"]:
        shapes.append(("lm_head.weight", (v, h)))
    return shapes


def family_weights(cfg, seed, scale=0.1, out_scale=0.35):
    """Norms 1 + N(0, 0.01), matrices N(0, scale^2); the output projection N(0, out_scale^2), so
    that next-token distributions are peaked enough for greedy decoding to be meaningful."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in family_shapes(cfg):
        x = rng.standard_normal(shape)
        if name.endswith("norm.weight"):
            out[name] = 1.0 + 0.1 * x
        elif name == "lm_head.weight" or (name == "model.embed_tokens.weight"
                                          and cfg["tie_word_embeddings"]):
            out[name] = out_scale * x
        else:
            out[name] = scale * x
    return out


def write_family_model(tl, path, arch, dt, seed, vocab, tokenizer=None, **cfg_kw):
    """An HF folder (via shoal_testlib `tl`); tokenizer: a folder to copy tokenizer files from, or
    a dict of file name -> text."""
    import shutil
    from pathlib import Path
    cfg = family_config(arch, vocab, **cfg_kw)
    model = tl.write_model(path, family_weights(cfg, seed), dt, cfg)
    if isinstance(tokenizer, dict):
        for name, text in tokenizer.items():
            (Path(path) / name).write_text(text)
    elif tokenizer is not None:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            src = Path(tokenizer) / name
            if src.exists():
                shutil.copy(src, Path(path) / name)
    return model


def _byte_level_chars():
    """GPT-2's byte -> printable character map (bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


TINY_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
               ("o", "n"), ("Ġ", "s"), ("a", "t"), ("Ġ", "w"), ("o", "r"), ("e", "n")]


def tiny_bpe_tokenizer():
    """A byte-level BPE tokenizer.json (GPT-2 style: 256 byte pieces, a dozen merges, one special
    token). Returns ({file name: text}, vocabulary size)."""
    chars = _byte_level_chars()
    vocab = {chars[b]: b for b in range(256)}
    for left, right in TINY_MERGES:
        vocab[left + right] = len(vocab)
    eot = len(vocab)
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False,
                             "lstrip": False, "rstrip": False, "normalized": False,
                             "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                              "trim_offsets": False, "use_regex": True},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": "", "end_of_word_suffix": "",
                     "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": [f"{a} {b}" for a, b in TINY_MERGES]}}
    cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
           "unk_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"}
    import json
    return ({"tokenizer.json": json.dumps(tok), "tokenizer_config.json": json.dumps(cfg)},
            eot + 1)
