"""A small Llama-architecture model in PyTorch, and its export as a Hugging Face folder.

The forward pass follows transformers' LlamaForCausalLM (RMSNorm, rotate-half RoPE, causal
multi-head attention, SiLU-gated MLP, untied lm_head), so a folder written by `save_folder`
is read by shoal (and by transformers) as the same function.
"""

import json
import math
import os
import struct

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# Tokenizer: one token per UTF-8 byte, plus <s> and </s>

BOS_ID = 256
EOS_ID = 257
VOCAB_SIZE = 258


def _byte_to_unicode():
    """GPT-2's printable stand-in character for every byte (the ByteLevel alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def encode(text):
    return list(text.encode("utf-8"))


def decode(ids):
    return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def tokenizer_files():
    """tokenizer.json (byte-level BPE with no merges: one token per byte) and its config."""
    b2u = _byte_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    special = [{"id": BOS_ID, "content": "<s>"}, {"id": EOS_ID, "content": "</s>"}]
    added = [dict(t, single_word=False, lstrip=False, rstrip=False, normalized=False,
                  special=True) for t in special]
    for t in special:
        vocab[t["content"]] = t["id"]
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS_ID], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>",
           "eos_token": "</s>", "clean_up_tokenization_spaces": False,
           "model_max_length": 256, "tokenizer_class": "PreTrainedTokenizerFast"}
    return {"tokenizer.json": json.dumps(tok, ensure_ascii=False, indent=1) + "\n",
            "tokenizer_config.json": json.dumps(cfg, indent=1) + "\n",
            "special_tokens_map.json":
                json.dumps({"bos_token": "<s>", "eos_token": "</s>"}, indent=1) + "\n"}


# ---------------------------------------------------------------------------------------------
# Model


def hf_config(hidden, layers, heads, intermediate, max_pos):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": heads, "head_dim": hidden // heads,
            "vocab_size": VOCAB_SIZE, "max_position_embeddings": max_pos,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
            "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
            "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "torch_dtype": "bfloat16"}


class Llama(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.params = torch.nn.ParameterDict()
        names = self.shapes()
        for name, shape in names.items():
            key = name.replace(".", "__")
            if name.endswith("norm.weight"):
                init = torch.ones(shape)
            else:
                std = 0.02
                if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                    std = 0.02 / math.sqrt(2 * cfg["num_hidden_layers"])
                init = torch.randn(shape) * std
            self.params[key] = torch.nn.Parameter(init)
        hd = d // cfg["num_attention_heads"]
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.arange(cfg["max_position_embeddings"]).float()[:, None] * inv[None, :]
        emb = torch.cat([ang, ang], dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        del f

    def shapes(self):
        c = self.cfg
        d, f, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
        out = {"model.embed_tokens.weight": (v, d)}
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            out.update({p + "input_layernorm.weight": (d,),
                        p + "self_attn.q_proj.weight": (d, d),
                        p + "self_attn.k_proj.weight": (d, d),
                        p + "self_attn.v_proj.weight": (d, d),
                        p + "self_attn.o_proj.weight": (d, d),
                        p + "post_attention_layernorm.weight": (d,),
                        p + "mlp.gate_proj.weight": (f, d),
                        p + "mlp.up_proj.weight": (f, d),
                        p + "mlp.down_proj.weight": (d, f)})
        out["model.norm.weight"] = (d,)
        out["lm_head.weight"] = (v, d)
        return out

    def w(self, name):
        return self.params[name.replace(".", "__")]

    def state(self):
        return {n: self.w(n).detach() for n in self.shapes()}

    def load_state(self, tensors):
        with torch.no_grad():
            for n in self.shapes():
                self.w(n).copy_(tensors[n])

    @staticmethod
    def _rms(x, w, eps):
        return w * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps))

    def forward(self, ids):
        c = self.cfg
        B, T = ids.shape
        nh = c["num_attention_heads"]
        hd = c["hidden_size"] // nh
        eps = c["rms_norm_eps"]
        cos, sin = self.cos[:T][None, None], self.sin[:T][None, None]

        def rope(x):
            half = x.shape[-1] // 2
            rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
            return x * cos + rot * sin

        x = F.embedding(ids, self.w("model.embed_tokens.weight"))
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self._rms(x, self.w(p + "input_layernorm.weight"), eps)
            q = (h @ self.w(p + "self_attn.q_proj.weight").T).view(B, T, nh, hd).transpose(1, 2)
            k = (h @ self.w(p + "self_attn.k_proj.weight").T).view(B, T, nh, hd).transpose(1, 2)
            v = (h @ self.w(p + "self_attn.v_proj.weight").T).view(B, T, nh, hd).transpose(1, 2)
            q, k = rope(q), rope(k)
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True) \
                if hasattr(F, "scaled_dot_product_attention") else self._attention(q, k, v)
            att = att.transpose(1, 2).reshape(B, T, nh * hd)
            x = x + att @ self.w(p + "self_attn.o_proj.weight").T
            h = self._rms(x, self.w(p + "post_attention_layernorm.weight"), eps)
            g = F.silu(h @ self.w(p + "mlp.gate_proj.weight").T)
            u = h @ self.w(p + "mlp.up_proj.weight").T
            x = x + (g * u) @ self.w(p + "mlp.down_proj.weight").T
        x = self._rms(x, self.w("model.norm.weight"), eps)
        return x @ self.w("lm_head.weight").T

    @staticmethod
    def _attention(q, k, v):
        T = q.shape[-2]
        s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~mask, float("-inf"))
        return torch.softmax(s, dim=-1) @ v


# ---------------------------------------------------------------------------------------------
# safetensors and HF folders


def write_safetensors(path, tensors, dtype):
    """tensors: {name: float tensor}; stored as `dtype` ("BF16" or "F32"), names sorted."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        if dtype == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((-len(hb)) % 8)
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """{name: float32 tensor} from a BF16 / F32 safetensors file."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = bytearray(body[b:e])
        if info["dtype"] == "BF16":
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16).float()
        elif info["dtype"] == "F32":
            t = torch.frombuffer(raw, dtype=torch.float32).clone()
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        out[name] = t.reshape(info["shape"])
    return out


def save_folder(folder, cfg, tensors, dtype="BF16"):
    os.makedirs(folder, exist_ok=True)
    cfg = dict(cfg, torch_dtype="bfloat16" if dtype == "BF16" else "float32")
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=1) + "\n")
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        f.write(json.dumps({"bos_token_id": BOS_ID, "eos_token_id": EOS_ID}, indent=1) + "\n")
    for name, text in tokenizer_files().items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(text)
    write_safetensors(os.path.join(folder, "model.safetensors"), tensors, dtype)
