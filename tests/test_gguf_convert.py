"""shoal convert and shoal merge --format gguf against references written from the published
formats (gguf_testlib: a GGUF reader, llama.cpp's Q8_0 reference quantizer and its converter's
Q/K permutation, in NumPy): HF -> GGUF -> HF round trips bit for bit (F32, F16, BF16) for Llama,
Mistral, Qwen2 and Qwen3; the GGUF's names, types, metadata and permuted rows; Q8_0 blocks byte
for byte; merges written as GGUF and merges of GGUF sources against NumPy merges; damaged GGUF
files ending in one error line; `shoal inspect` of GGUF files against the reader here (a
hand-made file with every value type, and stories260K.gguf). llama.cpp itself is the peer in
test_gguf_llamacpp.py."""
import json
import os
import unittest
from pathlib import Path

import numpy as np

import gguf_testlib as gg
import shoal_testlib as tl

RECIPE_DT = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
GGML_OF = {"F32": "F32", "F16": "F16", "BF16": "BF16"}


def hf_to_gguf_name(name):
    glob = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
            "output_norm.weight", "lm_head.weight": "output.weight"}
    if name in glob:
        return glob[name]
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
             "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    rest = name[len("model.layers."):]
    layer, _, tail = rest.partition(".")
    stem, _, suffix = tail.rpartition(".")
    return f"blk.{layer}.{parts[stem]}.{suffix}"


def gguf_layout(name, values, cfg):
    """The HF tensor as llama.cpp's converter stores it (Q/K rows permuted for llama)."""
    if cfg["model_type"] in ("llama", "mistral"):
        if ".q_proj." in name:
            return gg.permute_qk(values, cfg["num_attention_heads"])
        if ".k_proj." in name:
            return gg.permute_qk(values, cfg["num_key_value_heads"])
    return values


class GgufConvert(tl.ShoalTestCase):
    def convert(self, src, dst, *args, ok=True):
        proc = tl.run_shoal(["convert", src, dst, "--quiet", *args])
        if ok:
            self.assertEqual(proc.returncode, 0, proc.stderr)
        return proc

    def check_gguf(self, path, model, dt, tok_vocab=None):
        """Names, types, values, metadata of the GGUF written for `model` (no --type)."""
        f = gg.GgufFile(path)
        cfg = model.config
        arch = gg.GGUF_ARCH[cfg["model_type"]]
        self.assertEqual(f.version, 3)
        want = {hf_to_gguf_name(n) for n in model.tensors}
        self.assertEqual(set(f.tensors), want)
        for name, values in model.tensors.items():
            g = hf_to_gguf_name(name)
            kind, got = f.tensor(g)
            self.assertEqual(kind, "F32" if values.ndim == 1 else GGML_OF[dt], g)
            np.testing.assert_array_equal(got, gguf_layout(name, values, cfg), err_msg=g)
        self.assertEqual(f.get("general.architecture"), arch)
        self.assertEqual(f.metadata[f"{arch}.block_count"], (gg.U32, cfg["num_hidden_layers"]))
        self.assertEqual(f.get(f"{arch}.embedding_length"), cfg["hidden_size"])
        self.assertEqual(f.get(f"{arch}.feed_forward_length"), cfg["intermediate_size"])
        self.assertEqual(f.get(f"{arch}.context_length"), cfg["max_position_embeddings"])
        self.assertEqual(f.get(f"{arch}.attention.head_count"), cfg["num_attention_heads"])
        self.assertEqual(f.get(f"{arch}.attention.head_count_kv"), cfg["num_key_value_heads"])
        eps = f.metadata[f"{arch}.attention.layer_norm_rms_epsilon"]
        self.assertEqual(eps, (gg.F32, float(np.float32(cfg["rms_norm_eps"]))))
        self.assertEqual(f.metadata[f"{arch}.rope.freq_base"], (gg.F32, cfg["rope_theta"]))
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        self.assertEqual(f.get(f"{arch}.rope.dimension_count"), head_dim)
        if "head_dim" in cfg:
            self.assertEqual(f.get(f"{arch}.attention.key_length"), head_dim)
        self.assertEqual(f.get("general.file_type"), {"F32": 0, "F16": 1, "BF16": 32}[dt])
        if tok_vocab is not None:
            self.assertEqual(f.get("tokenizer.ggml.model"), "gpt2")
            self.assertEqual(f.get("tokenizer.ggml.pre"), "gpt-2")
            tokens = f.get("tokenizer.ggml.tokens")
            self.assertEqual(len(tokens), cfg["vocab_size"])
            for piece, i in tok_vocab.items():
                self.assertEqual(tokens[i], piece)
            self.assertEqual(f.get("tokenizer.ggml.merges")[:3], ["Ġ t", "h e", "Ġt he"])
            self.assertEqual(f.get("tokenizer.ggml.token_type")[-1], 3)  # control
            self.assertEqual(f.get("tokenizer.ggml.add_bos_token"), False)
        return f

    def test_round_trip_is_bit_exact(self):
        tok, vocab = gg.tiny_bpe_tokenizer()
        tok_vocab = json.loads(tok["tokenizer.json"])["model"]["vocab"]
        cases = [("llama", "F32", {}), ("llama", "F16", {}), ("llama", "BF16", {"tie": True}),
                 ("mistral", "F16", {}), ("qwen2", "BF16", {}),
                 ("qwen3", "F32", {"head_dim": 16, "tie": True})]
        for i, (arch, dt, kw) in enumerate(cases):
            with self.subTest(arch=arch, dt=dt):
                d = self.tmp / f"{arch}-{dt}"
                model = gg.write_family_model(tl, d / "hf", arch, dt, seed=10 + i, vocab=vocab,
                                              tokenizer=tok, **kw)
                self.convert(d / "hf", d / "m.gguf")
                self.check_gguf(d / "m.gguf", model, dt, tok_vocab)
                self.convert(d / "m.gguf", d / "back")
                back = tl.read_model_tensors(d / "back")
                self.assertEqual(sorted(back), sorted(model.tensors))
                for name, values in model.tensors.items():
                    got_dt, got = back[name]
                    self.assertEqual(got_dt, dt, name)
                    np.testing.assert_array_equal(got, values, err_msg=name)
                cfg = json.loads((d / "back" / "config.json").read_text())
                want_arch = "llama" if arch == "mistral" else arch
                self.assertEqual(cfg["model_type"], want_arch)
                self.assertEqual(cfg["architectures"], [gg.ARCH_CLASS[want_arch]])
                for key in ("hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
                            "rope_theta", "max_position_embeddings", "tie_word_embeddings",
                            "vocab_size"):
                    self.assertEqual(cfg[key], model.config[key], key)
                self.assertEqual(cfg["torch_dtype"], RECIPE_DT[dt])
                back_tok = json.loads((d / "back" / "tokenizer.json").read_text())
                self.assertEqual(back_tok["model"]["vocab"], tok_vocab)
                self.assertEqual(back_tok["model"]["merges"], [list(m) for m in gg.TINY_MERGES])
                # And the folder is a model shoal runs.
                res = tl.run_shoal(["generate", d / "back", "-p", "the", "-n", "2",
                                    "--no-chat-template"])
                self.assertEqual(res.returncode, 0, res.stderr)

    def test_q8_0_matches_the_reference_quantizer(self):
        for dt in ("F32", "BF16"):
            with self.subTest(dt=dt):
                d = self.tmp / dt
                # intermediate 48: ffn_down's rows are not a multiple of 32 -> F16, as llama.cpp.
                model = gg.write_family_model(tl, d / "hf", "llama", dt, seed=3, vocab=96,
                                              inter=48, hidden=64, heads=4, kv_heads=2)
                self.convert(d / "hf", d / "q8.gguf", "--type", "q8_0")
                f = gg.GgufFile(d / "q8.gguf")
                self.assertEqual(f.get("general.file_type"), 7)
                for name, values in model.tensors.items():
                    g = hf_to_gguf_name(name)
                    t, shape, raw = f.tensors[g]
                    stored = gguf_layout(name, values, model.config)
                    if values.ndim == 1:
                        self.assertEqual(t, gg.GGML_F32, g)
                    elif shape[-1] % 32:
                        self.assertEqual(t, gg.GGML_F16, g)
                        self.assertEqual(raw, stored.astype("<f2").tobytes(), g)
                    else:
                        self.assertEqual(t, gg.GGML_Q8_0, g)
                        self.assertEqual(raw, gg.quantize_q8_0(stored.reshape(-1)), g)
                # Back to HF: the dequantised values, in HF's row order, as F32.
                self.convert(d / "q8.gguf", d / "back")
                back = tl.read_model_tensors(d / "back")
                for name, values in model.tensors.items():
                    kind, deq = f.tensor(hf_to_gguf_name(name))
                    hf = deq
                    if kind == "Q8_0" and (".q_proj." in name or ".k_proj." in name):
                        heads = model.config["num_attention_heads" if ".q_proj." in name
                                             else "num_key_value_heads"]
                        hf = unpermute_qk(deq, heads)
                    self.assertEqual(back[name][0], "F32" if kind in ("Q8_0", "F32") else kind)
                    np.testing.assert_array_equal(back[name][1], hf, err_msg=name)
                # Re-quantising a Q8_0 file reproduces it byte for byte.
                self.convert(d / "q8.gguf", d / "again.gguf")
                again = gg.GgufFile(d / "again.gguf")
                for name, (t, shape, raw) in f.tensors.items():
                    self.assertEqual(again.tensors[name], (t, shape, raw), name)

    def test_type_conversion_rounds_to_nearest_even(self):
        model = gg.write_family_model(tl, self.tmp / "hf", "qwen2", "F32", seed=5, vocab=64)
        for typ, np_type in (("f16", "<f2"), ("bf16", None)):
            self.convert(self.tmp / "hf", self.tmp / f"{typ}.gguf", "--type", typ)
            f = gg.GgufFile(self.tmp / f"{typ}.gguf")
            for name, values in model.tensors.items():
                kind, got = f.tensor(hf_to_gguf_name(name))
                if values.ndim == 1:  # norms and biases stay F32
                    self.assertEqual(kind, "F32")
                    np.testing.assert_array_equal(got, values)
                    continue
                self.assertEqual(kind, typ.upper())
                want = (values.astype(np_type).astype(np.float64) if np_type
                        else tl.quantize(values, "BF16"))
                np.testing.assert_array_equal(got, want, err_msg=name)

    def test_merge_writes_gguf(self):
        tok, vocab = gg.tiny_bpe_tokenizer()
        a = gg.write_family_model(tl, self.tmp / "a", "llama", "BF16", seed=1, vocab=vocab,
                                  tokenizer=tok)
        b = gg.write_family_model(tl, self.tmp / "b", "llama", "BF16", seed=2, vocab=vocab,
                                  tokenizer=tok)
        recipe = (f"merge_method: linear\ndtype: bfloat16\nmodels:\n"
                  f"  - model: {tl.yaml_path(a.path)}\n    parameters: {{weight: 0.3}}\n"
                  f"  - model: {tl.yaml_path(b.path)}\n    parameters: {{weight: 0.7}}\n")
        out = self.tmp / "out" / "merged.gguf"
        out.parent.mkdir()
        proc, _ = self.merge(recipe, "--format", "gguf", out=out)
        self.assertEqual(sorted(p.name for p in out.parent.iterdir()), ["merged.gguf"])
        f = gg.GgufFile(out)
        self.assertEqual(f.get("general.architecture"), "llama")
        self.assertEqual(f.get("tokenizer.ggml.model"), "gpt2")
        for name in a.tensors:
            ref = tl.ref_linear(name, [a.tensors[name], b.tensors[name]], [0.3, 0.7], True)
            kind, got = f.tensor(hf_to_gguf_name(name))
            self.assertEqual(kind, "F32" if ref.ndim == 1 else "BF16", name)
            # 1-D tensors: the bf16 result widened to F32, exactly.
            tl.check_tensor(self, name, got, gguf_layout(name, ref, a.config), "BF16")
        # An existing file needs --force; a folder is refused.
        proc, _ = self.merge(recipe, "--format", "gguf", out=out, expect_ok=False)
        self.assert_error(proc, "exists (use --force")
        proc, _ = self.merge(recipe, "--format", "gguf", out=self.tmp, expect_ok=False)
        self.assert_error(proc, "is a folder")

    def test_merge_reads_gguf_sources(self):
        tok, vocab = gg.tiny_bpe_tokenizer()
        a = gg.write_family_model(tl, self.tmp / "a", "llama", "F32", seed=1, vocab=vocab,
                                  tokenizer=tok, hidden=64)
        b = gg.write_family_model(tl, self.tmp / "b", "llama", "F32", seed=2, vocab=vocab,
                                  hidden=64)
        self.convert(a.path, self.tmp / "a.gguf")
        self.convert(a.path, self.tmp / "a8.gguf", "--type", "q8_0")
        for src in ("a.gguf", "a8.gguf"):
            with self.subTest(src=src):
                f = gg.GgufFile(self.tmp / src)
                # A's values as the GGUF holds them, back in HF's row order.
                a_vals = {}
                for name in a.tensors:
                    kind, v = f.tensor(hf_to_gguf_name(name))
                    if ".q_proj." in name:
                        v = unpermute_qk(v, a.config["num_attention_heads"])
                    elif ".k_proj." in name:
                        v = unpermute_qk(v, a.config["num_key_value_heads"])
                    a_vals[name] = v
                recipe = (f"merge_method: linear\ndtype: float32\nmodels:\n"
                          f"  - model: {tl.yaml_path(self.tmp / src)}\n"
                          f"    parameters: {{weight: 0.5}}\n"
                          f"  - model: {tl.yaml_path(b.path)}\n    parameters: {{weight: 0.5}}\n")
                _, out = self.merge(recipe)
                got = tl.read_model_tensors(out)
                self.assertEqual(sorted(got), sorted(a.tensors))
                for name in a.tensors:
                    ref = tl.ref_linear(name, [a_vals[name], b.tensors[name]], [0.5, 0.5], True)
                    tl.check_tensor(self, name, got[name][1], ref, "F32")
                # The tokenizer comes from the GGUF's vocabulary.
                tj = json.loads((out / "tokenizer.json").read_text())
                self.assertEqual(tj["model"]["merges"], [list(m) for m in gg.TINY_MERGES])

    def test_damaged_gguf_files_fail_in_one_line(self):
        good = [("general.architecture", gg.STRING, "llama")]
        f32 = np.zeros(64, "<f4").tobytes()
        long_string = bytearray(gg.build([("k", gg.STRING, "x" * 8)], []))
        long_string[37:45] = (1 << 40).to_bytes(8, "little")  # the value's length field
        cases = {
            "magic": (b"GGUX" + gg.build(good, [])[4:], "magic 'GGUX'"),
            "version": (gg.build(good, [], version=4), "GGUF version 4 is not supported"),
            "kv_count": (gg.build(good, [])[:16] + (10 ** 12).to_bytes(8, "little")
                         + gg.build(good, [])[24:], "metadata count 1000000000000 exceeds"),
            "string_length": (bytes(long_string), "key 'k': string length of 1099511627776 bytes"),
            "offset": (gg.build(good, [("w", gg.GGML_F32, [4, 16], b"", 1 << 40)]),
                       "tensor 'w': data [1099511627776"),
            "type": (gg.build(good, [("w", 2, [2, 32], bytes(36))]),
                     "ggml type 2 (Q4_0) is not supported"),
            "misaligned": (gg.build(good, [("w", gg.GGML_F32, [16], f32[:64], 4)]),
                           "data offset 4 is not a multiple of the alignment 32"),
            "truncated": (gg.build(good, [("w", gg.GGML_F32, [4, 16], f32)])[:-10],
                          "runs past the end"),
        }
        for what, (data, needle) in cases.items():
            with self.subTest(what):
                path = self.tmp / f"{what}.gguf"
                path.write_bytes(data)
                proc = self.convert(path, self.tmp / f"{what}-out", ok=False)
                self.assert_error(proc, str(path) + ": ", needle)
                self.assertEqual(len(tl.error_lines(proc.stderr)), 1, proc.stderr)
                self.assertFalse((self.tmp / f"{what}-out").exists())
                # As a merge source too.
                recipe = f"merge_method: linear\nmodels:\n  - model: {tl.yaml_path(path)}\n"
                proc, _ = self.merge(recipe, expect_ok=False)
                self.assertEqual(proc.returncode, 1, proc.stderr)
                self.assertIn(needle, proc.stderr)

    def test_bad_arguments(self):
        model = gg.write_family_model(tl, self.tmp / "hf", "llama", "F32", seed=1, vocab=64)
        proc = self.convert(model.path, self.tmp / "x.gguf", "--type", "q4_0", ok=False)
        self.assert_error(proc, "--type: 'q4_0' is not one of f32, f16, bf16, q8_0")
        self.convert(model.path, self.tmp / "x.gguf")
        proc = self.convert(model.path, self.tmp / "x.gguf", ok=False)
        self.assert_error(proc, "exists (use --force to replace it)")
        self.convert(model.path, self.tmp / "x.gguf", "--force")
        proc = self.convert(self.tmp / "x.gguf", self.tmp / "hf2", "--type", "q8_0", ok=False)
        self.assert_error(proc, "safetensors holds no Q8_0")
        cfg = json.loads((model.path / "config.json").read_text())
        cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
        (model.path / "config.json").write_text(json.dumps(cfg))
        proc = self.convert(model.path, self.tmp / "y.gguf", ok=False)
        self.assert_error(proc, "config key 'rope_scaling' has rope_type 'yarn'")
        self.assertEqual(sorted(p.name for p in self.tmp.iterdir()), ["hf", "x.gguf"])


TYPE_NAMES = {gg.U8: "u8", gg.I8: "i8", gg.U16: "u16", gg.I16: "i16", gg.U32: "u32",
              gg.I32: "i32", gg.F32: "f32", gg.BOOL: "bool", gg.STRING: "string", gg.U64: "u64",
              gg.I64: "i64", gg.F64: "f64"}
STORIES = (Path(os.environ.get("SHOAL_SHARED_DATA") or tl.REPO.parent / "shared" / "data")
           / "stories260k" / "stories260K.gguf")


class GgufInspect(tl.ShoalTestCase):
    def inspect_json(self, path):
        proc = tl.run_shoal(["inspect", path, "--json"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return json.loads(proc.stdout)

    def check_against_reader(self, path, got):
        f = gg.GgufFile(path)
        self.assertEqual(got["format"], "gguf")
        self.assertEqual(got["version"], f.version)
        self.assertEqual(list(got["metadata"]), list(f.metadata))
        for key, (t, v) in f.metadata.items():
            entry = got["metadata"][key]
            if t != gg.ARRAY:
                self.assertEqual(entry["type"], TYPE_NAMES[t], key)
                if t in (gg.F32, gg.F64):
                    self.assertEqual(entry["value"], float(v), key)
                else:
                    self.assertEqual(entry["value"], v, key)
                continue
            et, items = v
            self.assertEqual((entry["type"], entry["element_type"]), ("array", TYPE_NAMES[et]))
            self.assertEqual(entry["length"], len(items), key)
            shown = items if len(items) <= 64 else items[:16]
            self.assertEqual(entry["truncated"], len(items) > 64, key)
            self.assertEqual(entry["values"], [float(x) if et == gg.F32 else x for x in shown])
        self.assertEqual([t["name"] for t in got["tensors"]], list(f.tensors))
        params = 0
        for t in got["tensors"]:
            ggml_type, shape, raw = f.tensors[t["name"]]
            self.assertEqual((t["type"], t["shape"], t["bytes"]),
                             (gg.GGML_NAMES[ggml_type], shape, len(raw)), t["name"])
            params += int(np.prod(shape))
        self.assertEqual(got["parameters"], params)

    def test_every_value_type_and_tensor_type(self):
        meta = [("general.architecture", gg.STRING, "llama"), ("u8", gg.U8, 200),
                ("i8", gg.I8, -100), ("u16", gg.U16, 60000), ("i16", gg.I16, -30000),
                ("u32", gg.U32, 4000000000), ("i32", gg.I32, -2000000000),
                ("f32", gg.F32, 0.1), ("bool", gg.BOOL, True), ("u64", gg.U64, 2 ** 63 + 5),
                ("i64", gg.I64, -(2 ** 62)), ("f64", gg.F64, -2.5e300),
                ("text", gg.STRING, "tab\there, é, \u0001"),
                ("short", gg.ARRAY, (gg.I32, [1, -2, 3])),
                ("long", gg.ARRAY, (gg.STRING, [f"tok{i}" for i in range(100)])),
                ("floats", gg.ARRAY, (gg.F32, [0.5 * i for i in range(64)]))]
        q8 = gg.quantize_q8_0(np.linspace(-1, 1, 64))
        tensors = [("a", gg.GGML_F32, [2, 32], np.arange(64, dtype="<f4").tobytes()),
                   ("b", gg.GGML_F16, [32], np.ones(32, "<f2").tobytes()),
                   ("c", gg.GGML_BF16, [3, 32], np.zeros(96, "<u2").tobytes()),
                   ("d", gg.GGML_Q8_0, [2, 32], q8)]
        path = self.tmp / "all.gguf"
        path.write_bytes(gg.build(meta, tensors))
        self.check_against_reader(path, self.inspect_json(path))
        # The text form: one line per key and per tensor, control characters escaped.
        proc = tl.run_shoal(["inspect", path])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertIn("format:        GGUF v3", lines)
        self.assertIn("parameters:    256 (256)", lines)
        row = {ln.split()[0]: ln.split(None, 2)[1:] for ln in lines if ln.startswith("  ")}
        self.assertEqual(row["u64"], ["u64", str(2 ** 63 + 5)])
        self.assertEqual(row["long"][0], "string[100]")
        self.assertTrue(row["long"][1].startswith('["tok0", "tok1", '), row["long"])
        self.assertEqual(row["text"], ["string", '"tab\\x09here, é, \\x01"'])
        # Offsets as gg.build lays the data out: 256, 64 and 192 bytes, aligned to 32.
        self.assertEqual([t["offset"] for t in self.inspect_json(path)["tensors"]],
                         [0, 256, 320, 512])
        self.assertEqual((row["d"][0], row["d"][1].split()), ("Q8_0", ["[2,", "32]", "512"]))

    def test_stories260k(self):
        self.assertTrue(STORIES.exists(), f"{STORIES} missing: set SHOAL_SHARED_DATA")
        got = self.inspect_json(STORIES)
        self.check_against_reader(STORIES, got)
        self.assertEqual(got["architecture"], "llama")
        self.assertEqual(got["metadata"]["tokenizer.ggml.tokens"]["length"], 512)

    def test_damaged_file_is_one_line(self):
        path = self.tmp / "cut.gguf"
        good = gg.build([("general.architecture", gg.STRING, "llama")],
                        [("w", gg.GGML_F32, [4, 16], np.zeros(64, "<f4").tobytes())])
        path.write_bytes(good[:-10])
        proc = tl.run_shoal(["inspect", path])
        self.assert_error(proc, str(path) + ": ", "runs past the end")
        # A GGUF file under another name is still read as GGUF (by its magic).
        other = self.tmp / "model.bin"
        other.write_bytes(good)
        self.assertEqual(self.inspect_json(other)["tensors"][0]["name"], "w")


def unpermute_qk(w, n_head):
    """The inverse of gg.permute_qk."""
    rows = w.shape[0]
    return (w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2)
            .reshape(w.shape))


if __name__ == "__main__":
    unittest.main()
