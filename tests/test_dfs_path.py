"""Data-flow-space merging: a LayerPath run by shoal's engine against a PyTorch reference.

A path (include/shoal/model.h, docs/EVOLVE.md "Data-flow space") takes decoder layers from several
models in any order, a layer possibly more than once, and multiplies the residual stream by the
step's input scale before each layer: x <- s_k x, then x <- layer_k(x). The embeddings, the final
norm and the output projection come from the head model. The reference below runs that in
float64 on two generated tiny models, with the per-layer computation written from the published
Llama-family description (tests/test_forward.py's pieces: RMSNorm, rotate-half RoPE, grouped-query
causal attention, SiLU-gated MLP, biases, q/k norms), and shoal's logits and hidden states after
every step must lie within 1e-4 of it, relative to the largest reference value.

shoal's side comes from shoal_dump_logits --path (the path JSON that `shoal evolve` saves).
"""

import json
import math
import subprocess
import unittest

import numpy as np
import torch

import test_forward as tf

REL_TOL = tf.REL_TOL
CONSISTENCY_TOL = tf.CONSISTENCY_TOL


def reference_layer(cfg, W, l, x, cos, sin, visible):
    """One decoder layer on the residual stream x [T, hidden] (float64)."""
    T = x.shape[0]
    eps = cfg["rms_norm_eps"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], tf.head_dim(cfg)
    p = f"model.layers.{l}."
    h = tf.rms_norm(x, W[p + "input_layernorm.weight"], eps)
    q = tf.linear(W, h, p + "self_attn.q_proj").view(T, nh, hd)
    k = tf.linear(W, h, p + "self_attn.k_proj").view(T, nkv, hd)
    v = tf.linear(W, h, p + "self_attn.v_proj").view(T, nkv, hd)
    if cfg["model_type"] == "qwen3":
        q = tf.rms_norm(q, W[p + "self_attn.q_norm.weight"], eps)
        k = tf.rms_norm(k, W[p + "self_attn.k_norm.weight"], eps)
    q = q * cos[:, None, :] + tf.rotate_half(q) * sin[:, None, :]
    k = k * cos[:, None, :] + tf.rotate_half(k) * sin[:, None, :]
    k = k.repeat_interleave(nh // nkv, dim=1)
    v = v.repeat_interleave(nh // nkv, dim=1)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hd)
    scores = scores.masked_fill(~visible[None], float("-inf"))
    att = torch.einsum("hts,shd->thd", torch.softmax(scores, dim=-1), v).reshape(T, nh * hd)
    x = x + tf.linear(W, att, p + "self_attn.o_proj")
    h = tf.rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
    up = torch.nn.functional.silu(tf.linear(W, h, p + "mlp.gate_proj")) * tf.linear(
        W, h, p + "mlp.up_proj")
    return x + tf.linear(W, up, p + "mlp.down_proj")


def reference_path(models, head, steps, ids):
    """models: [(cfg, W)]; steps: [(model, layer, scale)]. Returns (logits, stage states)."""
    cfg, Wh = models[head]
    T = len(ids)
    x = Wh["model.embed_tokens.weight"][torch.tensor(ids)]
    stages = [x]
    cos, sin = tf.rope_cos_sin(cfg, T)
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    visible = j <= i
    window = cfg.get("sliding_window") if cfg["model_type"] == "mistral" else None
    if window:
        visible = visible & (i - j < window)
    for m, l, s in steps:
        x = float(np.float32(s)) * x  # shoal applies the scale in f32
        x = reference_layer(models[m][0], models[m][1], l, x, cos, sin, visible)
        stages.append(x)
    x = tf.rms_norm(x, Wh["model.norm.weight"], cfg["rms_norm_eps"])
    stages.append(x)
    out = Wh["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else Wh["lm_head.weight"]
    return x @ out.T, stages


def path_json(folders, head, steps):
    return {"format": "shoal-dfs-path", "version": 1, "models": [str(f) for f in folders],
            "head_model": head,
            "steps": [{"model": m, "layer": l, "scale": s} for m, l, s in steps]}


# A path that skips layers (b0, a2), repeats one (a1 twice in a row, a0 at the start and the
# end), starts with a scaled embedding and switches models back and forth.
STEPS = [(0, 0, 1.15), (1, 1, 1.0), (0, 1, 0.8), (0, 1, 1.25), (1, 2, 0.9), (0, 0, 1.1)]


class DfsPathTest(tf.ForwardTestBase):
    def models(self, name, dt, seeds=(11, 12), layers=(3, 3)):
        out = []
        for k, (seed, n) in enumerate(zip(seeds, layers)):
            cfg = dict(tf.CONFIGS[name], num_hidden_layers=n)
            folder, cfg, W = self.make(f"{name}_{'ab'[k]}{n}", dt, seed, cfg)
            out.append((folder, cfg, W))
        return out

    def dump(self, spec, seqs, *flags, check=True):
        pj = self.tmp / "path.json"
        pj.write_text(json.dumps(spec))
        out = self.tmp / "path_logits.npy"
        args = [tf.dump_tool(), "--path", str(pj), "--out", str(out)]
        for s in seqs:
            args += ["--ids", ",".join(str(t) for t in s)]
        args += [str(f) for f in flags]
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if not check:
            return r
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return np.load(out)

    def check_path(self, name, dt, head, steps=STEPS):
        ms = self.models(name, dt)
        folders = [m[0] for m in ms]
        ref_models = [(m[1], m[2]) for m in ms]
        seqs = tf.sequences(ms[0][1]["vocab_size"], (7, 1, 12), seed=3)
        layers = self.tmp / f"path_layers_{name}_{dt}_{head}"
        got = tf.split_rows(self.dump(path_json(folders, head, steps), seqs,
                                      "--dump-layers", layers), seqs)
        refs = [reference_path(ref_models, head, steps, s) for s in seqs]
        for si, (g, (ref_logits, _)) in enumerate(zip(got, refs)):
            err = tf.rel_err(g, ref_logits.numpy())
            self.assertLess(err, REL_TOL, f"{name} {dt} head {head} seq {si}: rel err {err:.2e}")
        for stage in range(len(steps) + 2):
            dumped = np.load(layers / f"stage_{stage}.npy")
            ref = np.concatenate([r[1][stage].numpy() for r in refs])
            self.assertEqual(dumped.shape, ref.shape)
            err = tf.rel_err(dumped, ref)
            self.assertLess(err, REL_TOL, f"{name} {dt} head {head} stage {stage}: {err:.2e}")
        return folders, seqs

    def test_reference_layer_is_test_forwards(self):
        """The per-layer reference here composes to test_forward's whole-model reference."""
        for name in ("llama_bias", "qwen3"):
            (folder, cfg, W), = self.models(name, "F32", seeds=(5,), layers=(2,))
            ids = [3, 1, 4, 1, 5, 9, 2, 6]
            want, _ = tf.reference_forward(cfg, W, ids)
            got, _ = reference_path([(cfg, W)], 0, [(0, 0, 1.0), (0, 1, 1.0)], ids)
            self.assertTrue(torch.equal(got, want), name)

    def test_path_matches_reference(self):
        # Biases in o_proj and the MLP, one KV head (llama_bias); q/k norms (qwen3); a sliding
        # window shorter than the sequence, per step (mistral); tied embeddings with the second
        # model as the head (qwen2); BF16 weights.
        for name, dt, head in (("llama", "F32", 0), ("llama_bias", "F32", 1), ("qwen3", "F32", 0),
                               ("mistral", "F32", 1), ("qwen2", "F32", 1), ("llama", "BF16", 1)):
            with self.subTest(model=name, dtype=dt, head=head):
                self.check_path(name, dt, head)

    def test_decode_modes_and_f32_copies_agree(self):
        """Each step has its own KV cache: decoding token by token gives the batched logits."""
        folders, seqs = self.check_path("llama", "BF16", 0)
        spec = path_json(folders, 0, STEPS)
        batch = self.dump(spec, seqs)
        for flags in (("--mode", "decode", "--prefill", "3"), ("--mode", "batch-decode"),
                      ("--f32-weights",), ("--threads", "1", "--max-batch-tokens", "5")):
            other = self.dump(spec, seqs, *flags)
            rows = ~np.isnan(other).any(axis=1)
            self.assertGreater(rows.sum(), 0)
            err = tf.rel_err(other[rows], batch[rows])
            self.assertLess(err, CONSISTENCY_TOL, f"{flags}: {err:.2e}")

    def test_empty_path_and_identity(self):
        ms = self.models("llama", "F32", seeds=(21, 22), layers=(2, 2))
        folders = [m[0] for m in ms]
        seqs = [[5, 6, 7, 8]]
        got = self.dump(path_json(folders, 1, []), seqs)
        ref, _ = reference_path([(m[1], m[2]) for m in ms], 1, [], seqs[0])
        self.assertLess(tf.rel_err(got, ref.numpy()), REL_TOL)
        # The head model's own layers at scale 1: the model itself, bit for bit.
        alone = self.logits(folders[1], seqs)
        same = self.dump(path_json(folders, 1, [(1, 0, 1.0), (1, 1, 1.0)]), seqs)
        self.assertTrue(np.array_equal(alone, same))

    def test_errors(self):
        ms = self.models("llama", "F32", seeds=(31, 32), layers=(2, 3))
        folders = [m[0] for m in ms]
        wide_cfg = dict(tf.CONFIGS["llama"], hidden_size=32)
        wide, _, _ = self.make("llama_wide", "F32", 33, wide_cfg)
        cases = [
            (path_json([folders[0], wide], 0, [(1, 0, 1.0)]), "hidden_size"),
            (path_json(folders, 0, [(0, 2, 1.0)]), "names layer 2"),
            (path_json(folders, 2, [(0, 0, 1.0)]), "head_model"),
            (dict(path_json(folders, 0, []), extra=1), "unknown key 'extra'"),
            (path_json(folders, 0, [(0, 0, 1e300)]), "not a finite f32"),
        ]
        for spec, needle in cases:
            with self.subTest(needle=needle):
                r = self.dump(spec, [[1, 2]], check=False)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn(needle, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
