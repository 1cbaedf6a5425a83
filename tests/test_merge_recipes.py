"""Recipe semantics and the output folder of `shoal merge`: gradients, filters, parameter
precedence, slices and layer stacking, dtypes, tokenizer_source, tied and differently sized
embeddings, sharding, config.json / README.md / mergekit_config.yml, --force, relative paths.
Expected tensors come from a small reference planner written from
../shared/specs/merge-methods.md on top of shoal_testlib's float64 kernels."""

import json
import os
import re
import shutil
import unittest

import numpy as np
import yaml

import shoal_testlib as L

MODEL_KEYS = ("weight", "density", "gamma", "epsilon", "scale")
GLOBAL_KEYS = ("normalize", "rescale", "lambda", "t", "filter_wise", "nuslerp_flatten",
               "nuslerp_row_wise")
BASE_METHODS = set(L.TASK_METHODS) | {"slerp", "model_stock"}


def resolve_all(levels, name, t, keys):
    """Each key from the first level (highest precedence first) that gives a value."""
    out = {}
    for k in keys:
        for lvl in levels:
            if lvl and k in lvl:
                v = L.resolve_param(lvl[k], name, t)
                if v is not None:
                    out[k] = v
                    break
    return out


def get_tensor(model, name):
    """A tied model has no lm_head: its input embedding stands in."""
    if name not in model.tensors and name == "lm_head.weight":
        return model.tensors["model.embed_tokens.weight"]
    return model.tensors[name]


def ref_for(method, out_name, src_name, srcs, slice_params, top, t, models, base_key, seed):
    """srcs: [(model key, (a, b), params)]; src_name(src) is the tensor's name in that source."""
    base = None
    if method in BASE_METHODS or (method == "nuslerp" and base_key):
        bs = [s for s in srcs if s[0] == base_key]
        base = get_tensor(models[bs[0][0]], src_name(bs[0]))
    inputs = [(get_tensor(models[s[0]], src_name(s)),
               resolve_all([s[2], slice_params, top], out_name, t, MODEL_KEYS))
              for s in srcs if s[0] != base_key]
    gp = resolve_all([slice_params, top], out_name, t, GLOBAL_KEYS)
    ref, fragile = L.ref_tensor(method, out_name, base, inputs, gp, seed)
    scale = L.input_scale(ref, base, *[x for x, _ in inputs],
                          weights=[p.get("weight", 1.0) * p.get("scale", 1.0)
                                   for _, p in inputs])
    return ref, fragile, scale


def expected_merge(method, slices, models, base_key=None, top=None, seed=0):
    """Reference planner. slices: [{"sources": [(key, (a, b), params)], "params": {...}}].
    Output layers are the slices' layers renumbered in order; embeddings come from the first
    slice, everything else outside the layers from the last; layer tensors are at
    t = i / (n - 1) (t = 1 for a one-layer slice), the others at t = 0.
    Returns ({name: (ref, fragile, scale)}, number of output layers)."""
    top = top or {}
    out, offset = {}, 0
    for sl in slices:
        srcs, sp = sl["sources"], sl.get("params", {})
        a0, b0 = srcs[0][1]
        n = b0 - a0
        lead = next((s for s in srcs if s[0] == base_key), srcs[0])
        lead_model = models[lead[0]]
        for name in lead_model.tensors:
            _, li = L.layer_index(name)
            if li is None or not lead[1][0] <= li < lead[1][1]:
                continue
            i = li - lead[1][0]
            out_name = L.rename_layer(name, offset + i)
            out[out_name] = ref_for(method, out_name,
                                    lambda s, name=name, i=i: L.rename_layer(name, s[1][0] + i),
                                    srcs, sp, top, L.layer_t(i, n), models, base_key, seed)
        offset += n
    for first, sl in ((True, slices[0]), (False, slices[-1])):
        srcs, sp = sl["sources"], sl.get("params", {})
        lead = next((s for s in srcs if s[0] == base_key), srcs[0])
        for name in models[lead[0]].tensors:
            if L.layer_index(name)[1] is not None or ("embed_tokens" in name) != first:
                continue
            out[name] = ref_for(method, name, lambda s, name=name: name, srcs, sp, top, 0.0,
                                models, base_key, seed)
    return out, offset


def models_slices(entries, models, base_key=None):
    """`models:` form -> one slice over all layers; the base is added when not listed."""
    n = models[entries[0][0]].config["num_hidden_layers"]
    srcs = [(k, (0, n), p or {}) for k, p in entries]
    if base_key and base_key not in [k for k, _ in entries]:
        srcs.append((base_key, (0, n), {}))
    return [{"sources": srcs}]


def y(v):
    return json.dumps(v)


class RecipeTests(L.ShoalTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        base, (e1, e2) = L.make_family(cls.class_tmp / "fam", "BF16", seed=300, n_experts=2,
                                       n_layers=4, hidden=16, inter=32, vocab=48)
        cls.m = {"base": base, "e1": e1, "e2": e2}

    def p(self, key):
        return L.yaml_path(self.m[key].path)

    def check(self, out, expected, dt="BF16"):
        got = L.read_model_tensors(out)
        L.check_model(self, got, expected, dt)
        return got

    # ---- gradients -----------------------------------------------------------------------

    def test_gradient_over_layers(self):
        # weight [0, .8, 1] over 4 layers: t = 0, 1/3, 2/3, 1 -> s = 2t ->
        # w = 0, .8 * 2/3, .8 * 2/3 + 1/3, 1. Non-layer tensors at t = 0: w = 0, the base.
        recipe = (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\nmodels:\n"
                  f"  - model: {self.p('e1')}\n    parameters:\n      weight: [0.0, 0.8, 1.0]\n")
        _, out = self.merge(recipe)
        got = L.read_model_tensors(out)
        b, e = self.m["base"].tensors, self.m["e1"].tensors
        weights = [0.0, 0.8 * 2 / 3, 0.8 * 2 / 3 + 1 / 3, 1.0]
        for name, (dt, arr) in got.items():
            _, li = L.layer_index(name)
            w = 0.0 if li is None else weights[li]
            L.check_tensor(self, name, arr, b[name] + w * (e[name] - b[name]), "BF16")
            if li is None:
                np.testing.assert_array_equal(arr, b[name], err_msg=name)

    def test_gradient_with_filters_and_one_layer_slice(self):
        # The classic slerp recipe: t gradients per filter, a scalar fallback; the first
        # slice has one layer (t = 1: the last gradient value), the second three.
        top = {"t": [{"filter": "self_attn", "value": [0.0, 0.5, 0.3, 0.7, 1.0]},
                     {"filter": "mlp", "value": [1.0, 0.5, 0.7, 0.3, 0.0]},
                     {"value": 0.45}]}
        recipe = (f"slices:\n"
                  f"  - sources:\n"
                  f"      - {{model: {self.p('base')}, layer_range: [0, 1]}}\n"
                  f"      - {{model: {self.p('e1')}, layer_range: [0, 1]}}\n"
                  f"  - sources:\n"
                  f"      - {{model: {self.p('base')}, layer_range: [1, 4]}}\n"
                  f"      - {{model: {self.p('e1')}, layer_range: [1, 4]}}\n"
                  f"merge_method: slerp\nbase_model: {self.p('base')}\n"
                  f"parameters:\n  t:\n"
                  f"    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n"
                  f"    - filter: mlp\n      value: [1, 0.5, 0.7, 0.3, 0]\n"
                  f"    - value: 0.45 # fallback for the other tensors\n"
                  f"dtype: bfloat16\n")
        _, out = self.merge(recipe)
        slices = [{"sources": [("base", (0, 1), {}), ("e1", (0, 1), {})]},
                  {"sources": [("base", (1, 4), {}), ("e1", (1, 4), {})]}]
        expected, n = expected_merge("slerp", slices, self.m, "base", top)
        self.assertEqual(n, 4)
        self.check(out, expected)
        # Spot check of the resolution itself: layer 0 (one-layer slice) self_attn at t = 1.
        self.assertEqual(L.resolve_param(top["t"], "model.layers.0.self_attn.q_proj.weight",
                                         L.layer_t(0, 1)), 1.0)
        self.assertAlmostEqual(L.resolve_param(top["t"], "model.layers.2.mlp.up_proj.weight",
                                               L.layer_t(1, 3)), 0.7)

    def test_spec_example_ties(self):
        # The first example of the spec, verbatim, with its relative model paths resolved
        # against the recipe's folder. density [1, .7, .3] over 4 layers: 1, .8, .5667, .3
        # (no density * numel lands near an integer).
        rdir = self.tmp / "spec"
        rdir.mkdir()
        for src, dst in (("base", "base"), ("e1", "math-expert"), ("e2", "lang-expert")):
            shutil.copytree(self.m[src].path, rdir / dst)
        recipe = ("merge_method: ties\nbase_model: ./base\nmodels:\n"
                  "  - model: ./math-expert\n"
                  "    parameters: {weight: 0.6, density: [1.0, 0.7, 0.3]}\n"
                  "  - model: ./lang-expert\n"
                  "    parameters:\n"
                  "      density: 0.5\n"
                  "      weight: [{filter: mlp, value: 0.6}, {value: 0.3}]\n"
                  "parameters: {normalize: true}\ndtype: bfloat16\n")
        _, out = self.merge(recipe, cwd=self.tmp, recipe_folder=rdir)
        entries = [("e1", {"weight": 0.6, "density": [1.0, 0.7, 0.3]}),
                   ("e2", {"density": 0.5,
                           "weight": [{"filter": "mlp", "value": 0.6}, {"value": 0.3}]})]
        expected, _ = expected_merge("ties", models_slices(entries, self.m, "base"), self.m,
                                     "base", {"normalize": True})
        self.check(out, expected)

    def test_output_dtype_follows_base(self):
        # No dtype keys: the output takes the base's dtype (f16 here; the bf16 experts' values
        # are exact in f16).
        b16 = L.write_model(self.tmp / "base16", self.m["base"].tensors, "F16",
                            self.m["base"].config, "b16")
        models = dict(self.m, base16=b16)
        recipe = (f"merge_method: task_arithmetic\nbase_model: {L.yaml_path(b16.path)}\n"
                  f"models:\n  - model: {self.p('e1')}\n    parameters: {{weight: 0.5}}\n"
                  f"  - model: {self.p('e2')}\n    parameters: {{weight: 0.3}}\n")
        _, out = self.merge(recipe)
        entries = [("e1", {"weight": 0.5}), ("e2", {"weight": 0.3})]
        expected, _ = expected_merge("task_arithmetic",
                                     models_slices(entries, models, "base16"), models, "base16")
        self.check(out, expected, "F16")
        self.assertEqual(json.loads((out / "config.json").read_text())["torch_dtype"], "float16")

    def test_slice_sources_with_different_ranges(self):
        # Output layer i of the slice = merge(e1 layer i, e2 layer 2 + i); weight gradient over
        # the two layers of each slice; the second slice swaps the roles.
        recipe = (f"merge_method: linear\nslices:\n"
                  f"  - sources:\n"
                  f"      - {{model: {self.p('e1')}, layer_range: [0, 2], "
                  f"parameters: {{weight: [0.2, 0.9]}}}}\n"
                  f"      - {{model: {self.p('e2')}, layer_range: [2, 4], "
                  f"parameters: {{weight: 0.5}}}}\n"
                  f"  - sources:\n"
                  f"      - {{model: {self.p('e1')}, layer_range: [2, 4], "
                  f"parameters: {{weight: 0.5}}}}\n"
                  f"      - {{model: {self.p('e2')}, layer_range: [0, 2], "
                  f"parameters: {{weight: [0.7, 0.1]}}}}\n"
                  f"parameters: {{normalize: false}}\n")
        _, out = self.merge(recipe)
        slices = [{"sources": [("e1", (0, 2), {"weight": [0.2, 0.9]}),
                               ("e2", (2, 4), {"weight": 0.5})]},
                  {"sources": [("e1", (2, 4), {"weight": 0.5}),
                               ("e2", (0, 2), {"weight": [0.7, 0.1]})]}]
        expected, n = expected_merge("linear", slices, self.m, top={"normalize": False})
        self.assertEqual(n, 4)
        got = self.check(out, expected)
        e1, e2 = self.m["e1"].tensors, self.m["e2"].tensors
        name = "model.layers.3.self_attn.o_proj.weight"  # slice 2, i = 1: t = 1
        want = 0.5 * e1[name] + 0.1 * e2["model.layers.1.self_attn.o_proj.weight"]
        L.check_tensor(self, name, got[name][1], want, "BF16")

    def test_bad_slices(self):
        for sources, needle in (
                ([("e1", "[0, 2]"), ("e2", "[0, 3]")], "layer"),  # different layer counts
                ([("e1", "[0, 9]"), ("e2", "[0, 9]")], "layer"),  # past the last layer
                ([("e1", "[3, 1]"), ("e2", "[3, 1]")], "layer")):  # empty / reversed
            with self.subTest(sources=sources):
                src = "".join(f"      - {{model: {self.p(k)}, layer_range: {r}}}\n"
                              for k, r in sources)
                recipe = (f"merge_method: linear\nslices:\n  - sources:\n{src}"
                          f"parameters: {{weight: 0.5}}\n")
                proc, out = self.merge(recipe, expect_ok=False)
                self.assert_error(proc, needle)
                self.assertFalse(out.exists())

    # ---- filters and precedence ----------------------------------------------------------

    def test_filters(self):
        e1w = [{"filter": "mlp", "value": 0.8}, {"filter": "*", "value": 0.3}]
        e2w = [{"filter": "self_attn", "value": [0.1, 0.9]}, {"value": 0.25}]
        recipe = (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\nmodels:\n"
                  f"  - model: {self.p('e1')}\n    parameters:\n      weight:\n"
                  f"        - filter: mlp\n          value: 0.8\n"
                  f"        - filter: '*'\n          value: 0.3\n"
                  f"  - model: {self.p('e2')}\n    parameters:\n      weight:\n"
                  f"        - {{filter: self_attn, value: [0.1, 0.9]}}\n"
                  f"        - {{value: 0.25}}\n")
        _, out = self.merge(recipe)
        entries = [("e1", {"weight": e1w}), ("e2", {"weight": e2w})]
        expected, _ = expected_merge("task_arithmetic", models_slices(entries, self.m, "base"),
                                     self.m, "base")
        self.check(out, expected)

    def test_precedence_source_slice_top_default(self):
        # Layers 0-1: e1 weight .7 (source), e2 .4 (slice). Layers 2-3: e1 .2 (top level),
        # e2 .9 (source). lambda: slice 2 sets 1.5 over the top-level 1.25; normalize: method
        # default (false) in both.
        recipe = (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\n"
                  f"slices:\n"
                  f"  - sources:\n"
                  f"      - model: {self.p('base')}\n        layer_range: [0, 2]\n"
                  f"      - model: {self.p('e1')}\n        layer_range: [0, 2]\n"
                  f"        parameters: {{weight: 0.7}}\n"
                  f"      - model: {self.p('e2')}\n        layer_range: [0, 2]\n"
                  f"    parameters: {{weight: 0.4}}\n"
                  f"  - sources:\n"
                  f"      - model: {self.p('base')}\n        layer_range: [2, 4]\n"
                  f"      - model: {self.p('e1')}\n        layer_range: [2, 4]\n"
                  f"      - model: {self.p('e2')}\n        layer_range: [2, 4]\n"
                  f"        parameters: {{weight: 0.9}}\n"
                  f"    parameters: {{lambda: 1.5}}\n"
                  f"parameters: {{weight: 0.2, lambda: 1.25}}\n")
        _, out = self.merge(recipe)
        slices = [{"sources": [("base", (0, 2), {}), ("e1", (0, 2), {"weight": 0.7}),
                               ("e2", (0, 2), {})], "params": {"weight": 0.4}},
                  {"sources": [("base", (2, 4), {}), ("e1", (2, 4), {}),
                               ("e2", (2, 4), {"weight": 0.9})], "params": {"lambda": 1.5}}]
        top = {"weight": 0.2, "lambda": 1.25}
        expected, n = expected_merge("task_arithmetic", slices, self.m, "base", top)
        self.assertEqual(n, 4)
        got = self.check(out, expected)
        # Independent spot check of one element per slice.
        b, e1, e2 = (self.m[k].tensors for k in ("base", "e1", "e2"))
        for name, w1, w2, lam in (("model.layers.1.mlp.up_proj.weight", 0.7, 0.4, 1.25),
                                  ("model.layers.3.mlp.up_proj.weight", 0.2, 0.9, 1.5)):
            want = b[name] + lam * (w1 * (e1[name] - b[name]) + w2 * (e2[name] - b[name]))
            L.check_tensor(self, name, got[name][1], want, "BF16")

    def test_unmatched_filter_falls_through(self):
        # A source-level value whose filters match nothing gives no value for that tensor, so
        # the top-level value applies there.
        recipe = (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\nmodels:\n"
                  f"  - model: {self.p('e1')}\n    parameters:\n"
                  f"      weight: [{{filter: mlp, value: 0.8}}]\n"
                  f"parameters: {{weight: 0.35}}\n")
        _, out = self.merge(recipe)
        expected, _ = expected_merge(
            "task_arithmetic",
            models_slices([("e1", {"weight": [{"filter": "mlp", "value": 0.8}]})], self.m,
                          "base"), self.m, "base", {"weight": 0.35})
        self.check(out, expected)

    # ---- slices and layer stacking ---------------------------------------------------------

    def test_passthrough_layer_stacking(self):
        scale = [{"filter": "o_proj", "value": 0.5}, {"value": 1.0}]
        recipe = (f"merge_method: passthrough\nslices:\n"
                  f"  - sources: [{{model: {self.p('e1')}, layer_range: [0, 2]}}]\n"
                  f"  - sources: [{{model: {self.p('e2')}, layer_range: [1, 4], parameters: "
                  f"{{scale: [{{filter: o_proj, value: 0.5}}, {{value: 1.0}}]}}}}]\n"
                  f"dtype: bfloat16\n")
        _, out = self.merge(recipe)
        got = L.read_model_tensors(out)
        e1, e2 = self.m["e1"].tensors, self.m["e2"].tensors
        # Independent expectation, by name: 0, 1 <- e1 layers 0, 1; 2, 3, 4 <- e2 layers 1-3.
        want = {"model.embed_tokens.weight": e1["model.embed_tokens.weight"],
                "model.norm.weight": e2["model.norm.weight"],
                "lm_head.weight": e2["lm_head.weight"]}
        for out_layer, (src, li) in enumerate([(e1, 0), (e1, 1), (e2, 1), (e2, 2), (e2, 3)]):
            for name in e1:
                if L.layer_index(name)[1] == 0:
                    rest = name.replace("model.layers.0.", "")
                    v = src[f"model.layers.{li}.{rest}"]
                    if src is e2 and "o_proj" in rest:
                        v = v * 0.5
                    want[f"model.layers.{out_layer}.{rest}"] = v
        self.assertEqual(sorted(got), sorted(want))
        for name, v in want.items():
            np.testing.assert_array_equal(got[name][1], v, err_msg=name)
            self.assertEqual(got[name][0], "BF16")
        # And the generic planner agrees.
        slices = [{"sources": [("e1", (0, 2), {})]},
                  {"sources": [("e2", (1, 4), {"scale": scale})]}]
        expected, n = expected_merge("passthrough", slices, self.m)
        L.check_model(self, got, expected, "BF16")
        cfg = json.loads((out / "config.json").read_text())
        self.assertEqual(cfg["num_hidden_layers"], 5)
        src_cfg = self.m["e1"].config
        for k, v in src_cfg.items():
            if k not in ("num_hidden_layers", "torch_dtype"):
                self.assertEqual(cfg.get(k), v, f"config.json key {k}")
        # shoal inspect sees the same layout.
        proc = L.run_shoal(["inspect", out, "--json"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        info = json.loads(proc.stdout)
        self.assertEqual(info["layers"]["count"], 5)
        self.assertEqual(info["layers"]["prefix"], "model.layers")
        self.assertEqual(sorted(t["name"] for t in info["tensors"]), sorted(want))
        for t in info["tensors"]:
            self.assertEqual(t["dtype"], "BF16")
            self.assertEqual(list(t["shape"]), list(want[t["name"]].shape))
        self.assertEqual(info["parameters"], sum(v.size for v in want.values()))

    # ---- dtypes ----------------------------------------------------------------------------

    def test_dtype_and_out_dtype(self):
        body = (f"merge_method: linear\nmodels:\n"
                f"  - model: {self.p('e1')}\n    parameters: {{weight: 0.6}}\n"
                f"  - model: {self.p('e2')}\n    parameters: {{weight: 0.4}}\n")
        entries = [("e1", {"weight": 0.6}), ("e2", {"weight": 0.4})]
        expected, _ = expected_merge("linear", models_slices(entries, self.m), self.m)
        for keys, dt in (("", "BF16"), ("dtype: float32\n", "F32"),
                         ("dtype: float32\nout_dtype: float16\n", "F16"),
                         ("out_dtype: bfloat16\ndtype: float16\n", "BF16")):
            with self.subTest(keys=keys):
                _, out = self.merge(body + keys)
                self.check(out, expected, dt)
                cfg = json.loads((out / "config.json").read_text())
                self.assertEqual(cfg["torch_dtype"], L.ST_TO_RECIPE[dt])

    # ---- tokenizer ---------------------------------------------------------------------------

    def test_tokenizer_source(self):
        body = (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\nmodels:\n"
                f"  - model: {self.p('e1')}\n    parameters: {{weight: 0.5}}\n")
        for line, src in (("", "base"), ("tokenizer_source: base\n", "base"),
                          (f"tokenizer_source: {self.p('e1')}\n", "e1")):
            with self.subTest(tokenizer_source=src):
                _, out = self.merge(body + line)
                for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                    self.assertEqual((out / f).read_bytes(),
                                     (self.m[src].path / f).read_bytes(), f)
        proc, out = self.merge(body + "tokenizer_source: union\n", expect_ok=False)
        self.assert_error(proc, "union")
        self.assertFalse(out.exists())

    # ---- tied and differently sized embeddings --------------------------------------------------

    def test_tied_embeddings(self):
        cfg = L.llama_config(n_layers=2, hidden=16, inter=32, vocab=48, tie=True)
        vals = L.random_weights(L.llama_shapes(cfg, with_lm_head=False), 310)
        tb = L.write_model(self.tmp / "tied_base", vals, "BF16", cfg, "tb")
        te = L.write_model(self.tmp / "tied_e", L.make_expert(tb.tensors, 311, "BF16"), "BF16",
                           cfg, "te")
        models = {"tb": tb, "te": te}
        recipe = (f"merge_method: task_arithmetic\nbase_model: {L.yaml_path(tb.path)}\n"
                  f"models:\n  - model: {L.yaml_path(te.path)}\n"
                  f"    parameters: {{weight: 0.7}}\n")
        _, out = self.merge(recipe)
        expected, _ = expected_merge("task_arithmetic",
                                     models_slices([("te", {"weight": 0.7})], models, "tb"),
                                     models, "tb")
        self.assertNotIn("lm_head.weight", expected)
        self.check(out, expected)
        self.assertTrue(json.loads((out / "config.json").read_text())["tie_word_embeddings"])

        # An untied base with a tied expert: the expert's lm_head is its input embedding.
        cfg2 = L.llama_config(n_layers=4, hidden=16, inter=32, vocab=48, tie=True)
        tied = L.write_model(self.tmp / "tied4",
                             {n: v for n, v in L.make_expert(self.m["base"].tensors, 312,
                                                             "BF16").items()
                              if n != "lm_head.weight"}, "BF16", cfg2, "t4")
        models = dict(self.m, tied4=tied)
        recipe = (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\n"
                  f"models:\n  - model: {L.yaml_path(tied.path)}\n"
                  f"    parameters: {{weight: 0.6}}\n")
        _, out = self.merge(recipe)
        expected, _ = expected_merge("task_arithmetic",
                                     models_slices([("tied4", {"weight": 0.6})], models,
                                                   "base"), models, "base")
        self.assertIn("lm_head.weight", expected)
        self.check(out, expected)

    def test_embedding_rectification(self):
        # "big" has 8 more vocabulary rows than the others (its first 48 rows are an expert).
        cfg = dict(self.m["base"].config, vocab_size=56)
        vals = L.make_expert(self.m["base"].tensors, 320, "BF16")
        rng = np.random.default_rng(321)
        for n in ("model.embed_tokens.weight", "lm_head.weight"):
            vals[n] = np.concatenate([vals[n], 0.1 * rng.standard_normal((8, 16))])
        big = L.write_model(self.tmp / "big", vals, "BF16", cfg, "big")
        models = dict(self.m, big=big)
        # Task arithmetic: the larger embedding is cut to the base's rows.
        recipe = (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\nmodels:\n"
                  f"  - model: {L.yaml_path(big.path)}\n    parameters: {{weight: 0.5}}\n"
                  f"  - model: {self.p('e1')}\n    parameters: {{weight: 0.25}}\n")
        _, out = self.merge(recipe)
        expected, _ = expected_merge(
            "task_arithmetic",
            models_slices([("big", {"weight": 0.5}), ("e1", {"weight": 0.25})], models, "base"),
            models, "base")
        self.assertEqual(expected["lm_head.weight"][0].shape, (48, 16))
        self.check(out, expected)
        # Linear, either order: all cut to the common [48, 16].
        for order in (("e1", "big"), ("big", "e1")):
            with self.subTest(order=order):
                recipe = (f"merge_method: linear\nmodels:\n"
                          f"  - model: {L.yaml_path(models[order[0]].path)}\n"
                          f"    parameters: {{weight: 0.3}}\n"
                          f"  - model: {L.yaml_path(models[order[1]].path)}\n"
                          f"    parameters: {{weight: 0.7}}\n")
                _, out = self.merge(recipe)
                entries = [(order[0], {"weight": 0.3}), (order[1], {"weight": 0.7})]
                expected, _ = expected_merge("linear", models_slices(entries, models), models)
                self.assertEqual(expected["model.embed_tokens.weight"][0].shape, (48, 16))
                self.check(out, expected)

    # ---- output folder -----------------------------------------------------------------------

    def ta_recipe(self):
        return (f"merge_method: task_arithmetic\nbase_model: {self.p('base')}\n"
                f"models:\n  - model: {self.p('e1')}\n    parameters: {{weight: 0.5}}\n"
                f"  - model: {self.p('e2')}\n    parameters: {{weight: 0.25}}\n"
                f"dtype: bfloat16\n")

    def ta_expected(self):
        entries = [("e1", {"weight": 0.5}), ("e2", {"weight": 0.25})]
        return expected_merge("task_arithmetic", models_slices(entries, self.m, "base"),
                              self.m, "base")[0]

    def test_sharded_output(self):
        limit = 3000  # bytes of tensor data per shard; the largest tensor is 48*16*2 = 1536
        _, out = self.merge(self.ta_recipe(), "--out-shard-size", limit)
        names = sorted(os.listdir(out))
        shards = [n for n in names if n.endswith(".safetensors")]
        self.assertNotIn("model.safetensors", shards)
        count = len(shards)
        self.assertGreater(count, 2)
        self.assertEqual(shards, [f"model-{i:05d}-of-{count:05d}.safetensors"
                                  for i in range(1, count + 1)])
        idx = json.loads((out / "model.safetensors.index.json").read_text())
        self.assertEqual(set(idx), {"metadata", "weight_map"})
        self.assertEqual(set(idx["weight_map"].values()), set(shards))
        total = 0
        for shard in shards:
            header, tensors = L.read_safetensors(out / shard)
            self.assertEqual(header.get("__metadata__", {}).get("format"), "pt")
            size = sum(L.ITEMSIZE[dt] * a.size for dt, a in tensors.values())
            total += size
            self.assertTrue(size <= limit or len(tensors) == 1, f"{shard}: {size} bytes")
        self.assertEqual(idx["metadata"]["total_size"], total)
        got = self.check(out, self.ta_expected())  # also checks each tensor is present once
        self.assertEqual(total, sum(2 * a.size for _, a in got.values()))

    def test_single_file_output_and_folder_contents(self):
        recipe = self.ta_recipe()
        _, out = self.merge(recipe)
        names = set(os.listdir(out))
        self.assertIn("model.safetensors", names)
        self.assertNotIn("model.safetensors.index.json", names)
        self.assertFalse([n for n in names if re.match(r"model-\d+-of-\d+", n)])
        for n in ("config.json", "README.md", "mergekit_config.yml", "tokenizer.json",
                  "tokenizer_config.json"):
            self.assertIn(n, names)
        header, _ = L.read_safetensors(out / "model.safetensors")
        self.assertEqual(header["__metadata__"], {"format": "pt"})
        self.check(out, self.ta_expected())
        # config.json: the base's, with torch_dtype and num_hidden_layers set.
        cfg = json.loads((out / "config.json").read_text())
        want = dict(self.m["base"].config, torch_dtype="bfloat16", num_hidden_layers=4)
        self.assertEqual(cfg, want)
        # The recipe verbatim.
        self.assertEqual((out / "mergekit_config.yml").read_text(), recipe)
        # README.md: YAML front matter with base_model and a `merge` tag, then the recipe.
        readme = (out / "README.md").read_text()
        m = re.match(r"---\n(.*?)\n---\n", readme, re.S)
        self.assertIsNotNone(m, "README.md has no front matter")
        front = yaml.safe_load(m.group(1))
        self.assertIn("merge", front["tags"])
        bm = front["base_model"]
        bm = bm if isinstance(bm, list) else [bm]
        self.assertTrue(any(str(self.m["base"].path) in str(b) or str(b) == "base"
                            for b in bm), f"base_model {bm}")
        self.assertIn(recipe.strip(), readme)

    def test_sharded_sources(self):
        # Inputs stored as index + shards merge exactly like single files.
        models = dict(self.m)
        for k, shards in (("base", 3), ("e1", 2)):
            models[k] = L.write_model(self.tmp / f"{k}_sharded", self.m[k].tensors, "BF16",
                                      self.m[k].config, k, n_shards=shards)
        recipe = (f"merge_method: task_arithmetic\nbase_model: {L.yaml_path(models['base'].path)}"
                  f"\nmodels:\n  - model: {L.yaml_path(models['e1'].path)}\n"
                  f"    parameters: {{weight: 0.5}}\n"
                  f"  - model: {self.p('e2')}\n    parameters: {{weight: 0.25}}\n")
        _, out = self.merge(recipe)
        self.check(out, self.ta_expected())

    def test_integer_tensor_copied(self):
        # A non-float tensor (an I64 buffer, identical in every model) is copied byte for byte.
        buf = np.arange(20, dtype=np.int64) * 3 - 7
        models = {}
        for k in ("base", "e1"):
            vals = dict(self.m[k].tensors, **{"model.position_buffer": buf})
            models[k] = L.write_model(self.tmp / k, vals, "BF16", self.m[k].config, k,
                                      tensor_dtypes={"model.position_buffer": "I64"})
        recipe = (f"merge_method: task_arithmetic\nbase_model: {L.yaml_path(models['base'].path)}"
                  f"\nmodels:\n  - model: {L.yaml_path(models['e1'].path)}\n"
                  f"    parameters: {{weight: 0.5}}\n")
        _, out = self.merge(recipe)
        got = L.read_model_tensors(out)
        self.assertEqual(got["model.position_buffer"][0], "I64")
        np.testing.assert_array_equal(got["model.position_buffer"][1], buf)
        m2 = {k: L.Model(v.path, {n: t for n, t in v.tensors.items()
                                  if n != "model.position_buffer"}, v.dt, v.config)
              for k, v in models.items()}
        expected, _ = expected_merge("task_arithmetic",
                                     models_slices([("e1", {"weight": 0.5})], m2, "base"), m2,
                                     "base")
        del got["model.position_buffer"]
        L.check_model(self, got, expected, "BF16")

    def test_log_json(self):
        out = self.tmp / "logged"
        recipe = self.write_recipe(self.ta_recipe())
        proc = L.run_shoal(["merge", recipe, out, "--log-json"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        self.assertTrue(lines, "--log-json printed nothing")
        for ln in lines:
            self.assertIsInstance(json.loads(ln), dict, ln)
        self.check(out, self.ta_expected())

    def test_existing_out_dir(self):
        out = self.tmp / "existing"
        out.mkdir()
        (out / "keep.txt").write_text("precious")
        proc, _ = self.merge(self.ta_recipe(), out=out, expect_ok=False)
        self.assert_error(proc)
        self.assertEqual(os.listdir(out), ["keep.txt"])
        self.assertEqual((out / "keep.txt").read_text(), "precious")
        # --force replaces it.
        self.merge(self.ta_recipe(), "--force", out=out)
        self.assertFalse((out / "keep.txt").exists())
        self.check(out, self.ta_expected())
        # An empty folder is fine without --force.
        empty = self.tmp / "empty"
        empty.mkdir()
        self.merge(self.ta_recipe(), out=empty)
        self.check(empty, self.ta_expected())
        # No temporary folder left beside the outputs.
        self.assertEqual(sorted(n for n in os.listdir(self.tmp) if n.startswith(".")), [])

    def test_relative_model_paths(self):
        # Current directory first, then the recipe's folder.
        rdir = self.tmp / "recipes"
        cwd = self.tmp / "cwd"
        rdir.mkdir()
        cwd.mkdir()
        for k in ("base", "e1"):
            shutil.copytree(self.m[k].path, rdir / k)
        recipe = ("merge_method: task_arithmetic\nbase_model: ./base\nmodels:\n"
                  "  - model: e1\n    parameters: {weight: 0.5}\n")
        entries = [("e1", {"weight": 0.5})]
        _, out = self.merge(recipe, cwd=cwd, recipe_folder=rdir)
        expected, _ = expected_merge("task_arithmetic", models_slices(entries, self.m, "base"),
                                     self.m, "base")
        self.check(out, expected)
        # A model of the same relative name in the current directory wins.
        shutil.copytree(self.m["e2"].path, cwd / "e1")
        _, out = self.merge(recipe, cwd=cwd, recipe_folder=rdir)
        models = {"base": self.m["base"], "e1": self.m["e2"]}
        expected, _ = expected_merge("task_arithmetic", models_slices(entries, models, "base"),
                                     models, "base")
        self.check(out, expected)


if __name__ == "__main__":
    unittest.main()
