"""A PyTorch eager Llama forward, written for speed, as the baseline of infer_bench.py.

Batched (one [B, T] forward), under torch.no_grad, weights kept in the model's stored dtype
(bf16 or f32; the matmuls run in that dtype, as `model.to(dtype)` in transformers would), RMSNorm
in f32 as transformers does it, logits cast to f32 at the end (LlamaForCausalLM does
`logits.float()`). Decode keeps a preallocated KV cache and feeds one token at a time.
Reads the safetensors folder with bench/torch_merge.py's reader (Debian has no safetensors).
"""

import json
import os

import torch

from torch_merge import SafetensorsModel


class TorchLlama:
    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            c = json.load(f)
        self.h = c["hidden_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads", self.n_heads)
        self.hd = c.get("head_dim", self.h // self.n_heads)
        self.eps = c["rms_norm_eps"]
        self.theta = c.get("rope_theta", 10000.0)
        st = SafetensorsModel(folder)
        # clone(): own the memory, so the mmap's pages are not what the matmuls read.
        w = {n: st.tensor(n).clone() for n in st.names()}
        self.dtype = w["model.embed_tokens.weight"].dtype
        self.embed = w["model.embed_tokens.weight"]
        self.norm = w["model.norm.weight"]
        self.lm_head_t = w["lm_head.weight"].t()
        self.layers = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            g = lambda n: w[p + n]
            # Pre-transposed views so x @ W.t() is a plain matmul; q,k,v and gate,up fused.
            qkv = torch.cat([g("self_attn.q_proj.weight"), g("self_attn.k_proj.weight"),
                             g("self_attn.v_proj.weight")]).t().contiguous()
            gu = torch.cat([g("mlp.gate_proj.weight"), g("mlp.up_proj.weight")]).t().contiguous()
            self.layers.append(dict(
                ln1=g("input_layernorm.weight"), ln2=g("post_attention_layernorm.weight"),
                qkv=qkv, o=g("self_attn.o_proj.weight").t().contiguous(), gu=gu,
                down=g("mlp.down_proj.weight").t().contiguous()))
        self.lm_head_t = self.lm_head_t.contiguous()
        self.ff = self.layers[0]["gu"].shape[1] // 2

    def rms(self, x, w):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * xf.to(self.dtype)

    def rope(self, positions):
        inv = 1.0 / (self.theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd))
        f = positions.float()[:, None] * inv[None, :]
        emb = torch.cat([f, f], dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    @staticmethod
    def rotate(x, cos, sin):
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def layer_qkv(self, L, x, cos, sin):
        B, T, _ = x.shape
        qkv = self.rms(x, L["ln1"]) @ L["qkv"]
        qd, kd = self.n_heads * self.hd, self.n_kv * self.hd
        q = qkv[..., :qd].view(B, T, self.n_heads, self.hd).transpose(1, 2)
        k = qkv[..., qd:qd + kd].view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = qkv[..., qd + kd:].view(B, T, self.n_kv, self.hd).transpose(1, 2)
        return self.rotate(q, cos, sin), self.rotate(k, cos, sin), v

    def attend(self, L, x, q, k, v, mask):
        B, T, _ = x.shape
        rep = self.n_heads // self.n_kv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) * (self.hd ** -0.5)
        if mask is not None:
            s = s + mask
        p = torch.softmax(s.float(), dim=-1).to(self.dtype)
        a = (p @ v).transpose(1, 2).reshape(B, T, self.n_heads * self.hd)
        x = x + a @ L["o"]
        gu = self.rms(x, L["ln2"]) @ L["gu"]
        g, u = gu[..., :self.ff], gu[..., self.ff:]
        return x + (torch.nn.functional.silu(g) * u) @ L["down"]

    @torch.no_grad()
    def logits_all(self, ids):
        """ids [B, T] -> f32 logits [B, T, vocab] at every position."""
        B, T = ids.shape
        x = self.embed[ids]
        cos, sin = self.rope(torch.arange(T))
        mask = torch.full((T, T), float("-inf"), dtype=self.dtype).triu(1)
        for L in self.layers:
            q, k, v = self.layer_qkv(L, x, cos, sin)
            x = self.attend(L, x, q, k, v, mask)
        return (self.rms(x, self.norm) @ self.lm_head_t).float()

    @torch.no_grad()
    def greedy(self, prompt, n_new):
        """Batch-1 greedy decode with a KV cache; returns (generated ids, seconds for n_new)."""
        import time
        total = len(prompt) + n_new
        kc = torch.zeros(self.n_layers, 1, self.n_kv, total, self.hd, dtype=self.dtype)
        vc = torch.zeros_like(kc)

        def step(ids, start):
            T = ids.shape[1]
            x = self.embed[ids]
            cos, sin = self.rope(torch.arange(start, start + T))
            mask = None
            if T > 1:
                mask = torch.full((T, start + T), float("-inf"), dtype=self.dtype).triu(start + 1)
            for li, L in enumerate(self.layers):
                q, k, v = self.layer_qkv(L, x, cos, sin)
                kc[li, :, :, start:start + T] = k
                vc[li, :, :, start:start + T] = v
                x = self.attend(L, x, q, kc[li, :, :, :start + T], vc[li, :, :, :start + T], mask)
            return (self.rms(x[:, -1], self.norm) @ self.lm_head_t).float()

        logits = step(torch.tensor([prompt]), 0)
        nxt = int(logits.argmax())
        out = []
        t0 = time.perf_counter()
        for i in range(n_new):
            out.append(nxt)
            logits = step(torch.tensor([[nxt]]), len(prompt) + i)
            nxt = int(logits.argmax())
        return out, time.perf_counter() - t0
