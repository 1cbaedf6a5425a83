"""Every merge method of `shoal merge` against a float64 NumPy reference written from
../shared/specs/merge-methods.md, in f32 / f16 / bf16 (source dtype, dtype and out_dtype
combinations), plus hand-computed cases. Tolerance: 1 ulp of the output dtype (see
shoal_testlib)."""

import json
import unittest

import numpy as np

import shoal_testlib as L

# (source dtype, recipe dtype keys, expected output dtype). Generated bf16 data is exactly
# representable in f16, so `dtype: float16` on bf16 sources changes no input value.
COMBOS = [
    ("F32", {}, "F32"),
    ("F16", {}, "F16"),
    ("BF16", {}, "BF16"),
    ("BF16", {"out_dtype": "float32"}, "F32"),
    ("F32", {"out_dtype": "bfloat16"}, "BF16"),
    ("BF16", {"dtype": "float16"}, "F16"),
    ("F16", {"dtype": "float32", "out_dtype": "bfloat16"}, "BF16"),
]

# name -> (merge_method, base model or None, [(model, params or None)], global params, seed).
# Models: "base", "e1", "e2", "e3"; params None means listed without parameters (the base).
VARIANTS = {
    "linear": ("linear", None, [("e1", {"weight": 0.5}), ("e2", {"weight": 0.3}),
                                ("e3", {"weight": 0.7})], {}, None),
    "linear_no_normalize": ("linear", None, [("e1", {"weight": 0.4}), ("e2", {"weight": 0.35}),
                                             ("e3", {"weight": 0.5})], {"normalize": False},
                            None),
    "slerp": ("slerp", "base", [("base", None), ("e1", None)], {"t": 0.35}, None),
    "nuslerp": ("nuslerp", None, [("e1", {"weight": 0.6}), ("e2", {"weight": 0.4})], {}, None),
    "nuslerp_base": ("nuslerp", "base", [("e1", {"weight": 0.3}), ("e2", {"weight": 0.5})], {},
                     None),
    "nuslerp_rows": ("nuslerp", None, [("e1", {"weight": 0.7}), ("e2", {"weight": 0.45})],
                     {"nuslerp_flatten": False}, None),
    "nuslerp_base_row_wise": ("nuslerp", "base", [("e2", {"weight": 0.55}),
                                                  ("e3", {"weight": 0.25})],
                              {"nuslerp_flatten": False, "nuslerp_row_wise": True}, None),
    "task_arithmetic": ("task_arithmetic", "base", [("e1", {"weight": 0.6}),
                                                    ("e2", {"weight": 0.4}),
                                                    ("e3", {"weight": 0.3})], {}, None),
    "task_arithmetic_lambda_normalize": ("task_arithmetic", "base",
                                         [("e1", {"weight": 0.6}), ("e2", {"weight": 0.45})],
                                         {"lambda": 0.85, "normalize": True}, None),
    # The base listed in `models` without parameters (common in real recipes) is not an input.
    "ties": ("ties", "base", [("base", None), ("e1", {"weight": 1.0, "density": 0.5}),
                              ("e2", {"weight": 0.6, "density": 0.7}),
                              ("e3", {"weight": 0.4, "density": 0.3})],
             {"int8_mask": True}, None),
    "ties_rescale_no_normalize": ("ties", "base", [("e1", {"weight": 0.7, "density": 0.45}),
                                                   ("e2", {"weight": 0.5, "density": 0.6})],
                                  {"normalize": False, "rescale": True}, None),
    "ties_defaults": ("ties", "base", [("e1", {"weight": 0.8}), ("e2", {"weight": 0.5}),
                                       ("e3", {"weight": 0.35})], {}, None),
    "dare_linear": ("dare_linear", "base", [("e1", {"weight": 0.6, "density": 0.6}),
                                            ("e2", {"weight": 0.5, "density": 0.4}),
                                            ("e3", {"weight": 0.3, "density": 0.5})], {}, 1234),
    "dare_linear_default_seed": ("dare_linear", "base",
                                 [("e1", {"weight": 0.5, "density": 0.55}),
                                  ("e2", {"weight": 0.5, "density": 0.35})],
                                 {"rescale": False}, None),
    "dare_ties": ("dare_ties", "base", [("e1", {"weight": 0.6, "density": 0.6}),
                                        ("e2", {"weight": 0.5, "density": 0.4}),
                                        ("e3", {"weight": 0.3, "density": 0.5})], {}, 99),
    "breadcrumbs": ("breadcrumbs", "base",
                    [("e1", {"weight": 0.6, "density": 0.8, "gamma": 0.05}),
                     ("e2", {"weight": 0.5, "density": 0.7, "gamma": 0.1}),
                     ("e3", {"weight": 0.3, "density": 0.9})], {}, None),
    "breadcrumbs_ties": ("breadcrumbs_ties", "base",
                         [("e1", {"weight": 0.6, "density": 0.8, "gamma": 0.05}),
                          ("e2", {"weight": 0.5, "density": 0.7, "gamma": 0.1}),
                          ("e3", {"weight": 0.3, "density": 0.9})], {}, None),
    "della": ("della", "base", [("e1", {"weight": 0.6, "density": 0.5, "epsilon": 0.15}),
                                ("e2", {"weight": 0.5, "density": 0.6, "epsilon": 0.2}),
                                ("e3", {"weight": 0.4, "density": 0.4})], {}, 7),
    "della_linear": ("della_linear", "base",
                     [("e1", {"weight": 0.6, "density": 0.5, "epsilon": 0.15}),
                      ("e2", {"weight": 0.5, "density": 0.6, "epsilon": 0.2}),
                      ("e3", {"weight": 0.4, "density": 0.4})], {"lambda": 1.1}, 7),
    "model_stock": ("model_stock", "base", [("e1", None), ("e2", None), ("e3", None)], {},
                    None),
    "model_stock_filter_wise": ("model_stock", "base", [("e1", None), ("e2", None),
                                                        ("e3", None)],
                                {"filter_wise": True}, None),
    "passthrough": ("passthrough", None, [("e2", {"scale": 0.75})], {}, None),
}


def yaml_value(v):
    return json.dumps(v)  # JSON scalars, lists and maps are valid YAML flow values


def make_recipe(variant, paths, dtype_keys):
    method, base, models, gparams, _ = VARIANTS[variant]
    lines = [f"merge_method: {method}"]
    if base:
        lines.append(f"base_model: {L.yaml_path(paths[base])}")
    lines.append("models:")
    for m, p in models:
        lines.append(f"  - model: {L.yaml_path(paths[m])}")
        if p:
            lines.append("    parameters:")
            for k, v in p.items():
                lines.append(f"      {k}: {yaml_value(v)}")
    if gparams:
        lines.append("parameters:")
        for k, v in gparams.items():
            lines.append(f"  {k}: {yaml_value(v)}")
    for k, v in dtype_keys.items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines) + "\n"


def expected_model(variant, models, seed):
    """{name: (reference, fragile, scale)} for a variant over generated models (dict)."""
    method, base_name, entries, gparams, _ = VARIANTS[variant]
    base = models[base_name] if base_name else None
    inputs = [(models[m], p or {}) for m, p in entries if m != base_name]
    first = base if base is not None else inputs[0][0]
    gp = {k: (float(v) if not isinstance(v, bool) else v) for k, v in gparams.items()}
    out = {}
    for name in first.tensors:
        b = base.tensors[name] if base is not None else None
        ins = [(m.tensors[name], p) for m, p in inputs]
        ref, fragile = L.ref_tensor(method, name, b, ins, gp, seed)
        weights = [p.get("weight", 1.0) * p.get("scale", 1.0) for _, p in ins]
        scale = L.input_scale(ref, b, *[x for x, _ in ins], weights=weights)
        out[name] = (ref, fragile, scale)
    return out


class MethodMatrix(L.ShoalTestCase):
    """Each method on generated families (base + 3 experts) in each source dtype."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.families = {}
        for k, dt in enumerate(("F32", "F16", "BF16")):
            base, experts = L.make_family(cls.class_tmp / dt, dt, seed=100 + k, n_layers=2,
                                          hidden=16, inter=32, vocab=48)
            cls.families[dt] = {"base": base, "e1": experts[0], "e2": experts[1],
                                "e3": experts[2]}

    def run_variant(self, variant, combos=COMBOS):
        seed = VARIANTS[variant][4]
        for src, dtype_keys, out_dt in combos:
            with self.subTest(variant=variant, src=src, **dtype_keys):
                fam = self.families[src]
                paths = {k: m.path for k, m in fam.items()}
                recipe = make_recipe(variant, paths, dtype_keys)
                args = ["--seed", seed] if seed is not None else []
                _, out = self.merge(recipe, *args)
                got = L.read_model_tensors(out)
                expected = expected_model(variant, fam, seed or 0)
                L.check_model(self, got, expected, out_dt, label=f"[{variant} {src}]")
                cfg = json.loads((out / "config.json").read_text())
                self.assertEqual(cfg["torch_dtype"], L.ST_TO_RECIPE[out_dt])

    def test_linear(self):
        self.run_variant("linear")

    def test_linear_no_normalize(self):
        self.run_variant("linear_no_normalize")

    def test_slerp(self):
        self.run_variant("slerp")

    def test_nuslerp(self):
        self.run_variant("nuslerp")

    def test_nuslerp_with_base(self):
        self.run_variant("nuslerp_base")

    def test_nuslerp_not_flattened(self):
        self.run_variant("nuslerp_rows")
        self.run_variant("nuslerp_base_row_wise")

    def test_task_arithmetic(self):
        self.run_variant("task_arithmetic")
        self.run_variant("task_arithmetic_lambda_normalize")

    def test_ties(self):
        self.run_variant("ties")
        self.run_variant("ties_rescale_no_normalize")

    def test_ties_defaults(self):
        # No density (1: no pruning), normalize true by default.
        self.run_variant("ties_defaults")

    def test_dare_linear(self):
        self.run_variant("dare_linear")
        self.run_variant("dare_linear_default_seed")

    def test_dare_ties(self):
        self.run_variant("dare_ties")

    def test_breadcrumbs(self):
        self.run_variant("breadcrumbs")

    def test_breadcrumbs_ties(self):
        self.run_variant("breadcrumbs_ties")

    def test_della(self):
        self.run_variant("della")

    def test_della_linear(self):
        self.run_variant("della_linear")

    def test_model_stock(self):
        self.run_variant("model_stock")

    def test_model_stock_filter_wise(self):
        self.run_variant("model_stock_filter_wise")

    def test_passthrough_scale(self):
        self.run_variant("passthrough")


class HandComputed(L.ShoalTestCase):
    """Small cases whose expected values are worked out by hand, not by the reference code."""

    def tiny_family(self, seed, hidden=4, vocab=8, n_layers=1, dt="F32"):
        cfg = L.llama_config(n_layers=n_layers, hidden=hidden, inter=8, vocab=vocab, heads=2,
                             kv_heads=1)
        base = L.random_weights(L.llama_shapes(cfg), seed)
        base = {n: L.quantize(L.flush(v), dt) for n, v in base.items()}
        return cfg, base

    def test_ties_sign_election(self):
        # model.norm.weight, 4 elements, base = [1, 1, 1, 1]:
        #   delta A = [ .5, -.25, -.125,  0  ]  weight 1,  density .5 -> top-2 |.| kept:
        #           = [ .5, -.25,  0,     0  ]  (k = int(.5 * 4) = 2)
        #   delta B = [ .25, .5,  -.5,  -.25 ]  weight 1,  density 1
        #   delta C = [-1,   .25, -.125, .5  ]  weight .5, density 1
        #        wd C = [-.5,  .125, -.0625, .25]
        # sum of wd = [.25, .375, -.5625, 0] -> majority sign [+, +, -, +] (0 counts as +)
        #   elem 0: keep A .5, B .25           -> .75 / (1 + 1)      = .375   -> 1.375
        #   elem 1: keep B .5, C .125          -> .625 / (1 + .5)    = 5/12   -> 17/12
        #   elem 2: keep B -.5, C -.0625       -> -.5625 / (1 + .5)  = -.375  -> .625
        #   elem 3: A is 0 (no sign), keep C   -> .25 / .5           = .5     -> 1.5
        cfg, base = self.tiny_family(1)
        name = "model.norm.weight"
        base[name] = np.ones(4)
        deltas = {"a": [0.5, -0.25, -0.125, 0.0], "b": [0.25, 0.5, -0.5, -0.25],
                  "c": [-1.0, 0.25, -0.125, 0.5]}
        models = {"base": L.write_model(self.tmp / "base", base, "F32", cfg, "base")}
        for k, (tag, d) in enumerate(deltas.items()):
            vals = L.make_expert(base, 10 + k, "F32")
            vals[name] = base[name] + np.array(d)
            models[tag] = L.write_model(self.tmp / tag, vals, "F32", cfg, tag)
        recipe = (f"merge_method: ties\nbase_model: {L.yaml_path(models['base'].path)}\n"
                  f"models:\n"
                  f"  - model: {L.yaml_path(models['a'].path)}\n"
                  f"    parameters: {{weight: 1.0, density: 0.5}}\n"
                  f"  - model: {L.yaml_path(models['b'].path)}\n"
                  f"    parameters: {{weight: 1.0}}\n"
                  f"  - model: {L.yaml_path(models['c'].path)}\n"
                  f"    parameters: {{weight: 0.5}}\n")
        _, out = self.merge(recipe)
        got = L.read_model_tensors(out)
        L.check_tensor(self, name, got[name][1], np.array([1.375, 17 / 12, 0.625, 1.5]), "F32")
        # The other tensors against the reference (density .5 on A prunes them too).
        params = [{"weight": 1.0, "density": 0.5}, {"weight": 1.0}, {"weight": 0.5}]
        for n in base:
            ins = [(models[t].tensors[n], p) for t, p in zip("abc", params)]
            ref, fragile = L.ref_tensor("ties", n, models["base"].tensors[n], ins, {})
            L.check_tensor(self, n, got[n][1], ref, "F32", fragile)

    def test_slerp_colinear_takes_lerp_branch(self):
        # other = 2 * base exactly: dot = 1 > 0.9995, so out = (1 - t) base + t (2 base)
        # = (1 + t) base for every tensor; the slerp formula would divide by sin(0) = 0.
        cfg, base = self.tiny_family(2, hidden=16)
        b = L.write_model(self.tmp / "base", base, "F32", cfg, "base")
        o = L.write_model(self.tmp / "double", {n: 2 * v for n, v in base.items()}, "F32", cfg,
                          "double")
        # Near-colinear but not exactly: other = base * (1 + 1e-3 noise) keeps dot > 0.9995.
        rng = np.random.default_rng(5)
        near = {n: v * (1 + 1e-3 * rng.standard_normal(v.shape)) for n, v in base.items()}
        nm = L.write_model(self.tmp / "near", near, "F32", cfg, "near")
        for other, t in ((o, 0.3), (nm, 0.6)):
            recipe = (f"merge_method: slerp\nbase_model: {L.yaml_path(b.path)}\n"
                      f"models:\n  - model: {L.yaml_path(b.path)}\n"
                      f"  - model: {L.yaml_path(other.path)}\nparameters: {{t: {t}}}\n")
            _, out = self.merge(recipe)
            got = L.read_model_tensors(out)
            for n, v in b.tensors.items():
                x = other.tensors[n]
                cos = np.dot(v.ravel(), x.ravel()) / np.linalg.norm(v) / np.linalg.norm(x)
                self.assertGreater(cos, 0.9995 + 1e-6, f"{n}: test data not near-colinear")
                L.check_tensor(self, f"{other.path.name} {n}", got[n][1], (1 - t) * v + t * x,
                               "F32")

    def test_breadcrumbs_gamma_zero_drops_delta(self):
        # mergekit keeps idx[n_bot:-n_top]; with n_top = int(gamma * n) = 0 that slice is
        # empty, so every delta is dropped and (normalize false) the output is the base.
        # With the default gamma 0.01 a tensor under 100 elements (the 16-element norms)
        # also loses its delta, while the 768-element embedding keeps part of it.
        cfg, base = self.tiny_family(3, hidden=16, vocab=48)
        b = L.write_model(self.tmp / "base", base, "F32", cfg, "base")
        e = L.write_model(self.tmp / "e", L.make_expert(b.tensors, 4, "F32"), "F32", cfg, "e")
        recipe = (f"merge_method: breadcrumbs\nbase_model: {L.yaml_path(b.path)}\n"
                  f"models:\n  - model: {L.yaml_path(e.path)}\n"
                  f"    parameters: {{weight: 1.0, density: 0.5, gamma: GAMMA}}\n")
        _, out = self.merge(recipe.replace("GAMMA", "0.0"))
        got = L.read_model_tensors(out)
        for n, v in b.tensors.items():
            np.testing.assert_array_equal(got[n][1], v, err_msg=n)
        _, out = self.merge(recipe.replace("GAMMA", "0.01"))
        got = L.read_model_tensors(out)
        np.testing.assert_array_equal(got["model.norm.weight"][1], b.tensors["model.norm.weight"])
        emb = "model.embed_tokens.weight"
        changed = int(np.sum(got[emb][1] != b.tensors[emb]))
        # n = 768: n_top = 7, n_bot = 768 - 384 - 7 = 377: positions [377, 761) kept = 384.
        self.assertEqual(changed, 384)

    def test_model_stock_hand_vectors(self):
        # model.norm.weight: base [1, 1, 1, 1], d1 = [.75, 1, 0, 0], d2 = [1, .75, 0, 0]:
        # |d1| = |d2| = 1.25, d1.d2 = 1.5 -> cos = .96; N = 2: t = 2(.96)/(1 + .96) = 48/49;
        # out = base + t * mean(d) = [1 + 48/49 * .875, same, 1, 1] = [13/7, 13/7, 1, 1].
        # filter_wise on q_proj (4 x 4), one t per row:
        #   row 0: the same d1, d2 -> t = 48/49 -> base + 48/49 * [.875, .875, 0, 0]
        #   row 1: d1 = [1, 0, 0, 0], d2 = [0, 1, 0, 0] -> cos 0 -> t = 0 -> base row
        #   rows 2, 3: d1 = d2 = [.5, 0, 0, 0] -> cos 1 -> t = 1 -> mean = base + [.5, 0, 0, 0]
        cfg, base = self.tiny_family(6)
        norm, q = "model.norm.weight", "model.layers.0.self_attn.q_proj.weight"
        base[norm] = np.ones(4)
        base[q] = np.round(base[q] * 256) / 256  # so that base + the deltas below is exact
        rows1 = np.array([[0.75, 1, 0, 0], [1, 0, 0, 0], [0.5, 0, 0, 0], [0.5, 0, 0, 0]])
        rows2 = np.array([[1, 0.75, 0, 0], [0, 1, 0, 0], [0.5, 0, 0, 0], [0.5, 0, 0, 0]])
        b = L.write_model(self.tmp / "base", base, "F32", cfg, "base")
        experts = []
        for k, rows in enumerate((rows1, rows2)):
            vals = L.make_expert(b.tensors, 20 + k, "F32", shared=L.shared_noise(base, 9))
            vals[norm] = base[norm] + rows[0]
            vals[q] = base[q] + rows
            experts.append(L.write_model(self.tmp / f"e{k}", vals, "F32", cfg, f"e{k}"))
        for filter_wise in (False, True):
            recipe = (f"merge_method: model_stock\nbase_model: {L.yaml_path(b.path)}\n"
                      f"models:\n  - model: {L.yaml_path(experts[0].path)}\n"
                      f"  - model: {L.yaml_path(experts[1].path)}\n"
                      f"parameters: {{filter_wise: {str(filter_wise).lower()}}}\n")
            _, out = self.merge(recipe)
            got = L.read_model_tensors(out)
            L.check_tensor(self, norm, got[norm][1], np.array([13 / 7, 13 / 7, 1, 1]), "F32")
            if filter_wise:
                want = base[q] + np.array([[6 / 7, 6 / 7, 0, 0], [0, 0, 0, 0],
                                           [0.5, 0, 0, 0], [0.5, 0, 0, 0]])
                L.check_tensor(self, q, got[q][1], want, "F32", scale=2.0)
            for n in base:
                ref = L.ref_model_stock(n, b.tensors[n], [e.tensors[n] for e in experts],
                                        filter_wise)
                L.check_tensor(self, n, got[n][1], ref, "F32")

    def test_dare_mask_matches_counter_rng(self):
        # One expert, weight 1, rescale off: out = base + delta exactly where the stream of
        # (seed, tensor name, input 0) draws below the density, and base elsewhere.
        cfg, base = self.tiny_family(8, hidden=16, vocab=48)
        b = L.write_model(self.tmp / "base", base, "F32", cfg, "base")
        e = L.write_model(self.tmp / "e", L.make_expert(b.tensors, 9, "F32"), "F32", cfg, "e")
        recipe = (f"merge_method: dare_linear\nbase_model: {L.yaml_path(b.path)}\n"
                  f"models:\n  - model: {L.yaml_path(e.path)}\n"
                  f"    parameters: {{weight: 1.0, density: 0.3}}\n"
                  f"parameters: {{rescale: false}}\n")
        _, out = self.merge(recipe, "--seed", "42")
        got = L.read_model_tensors(out)
        for n, v in b.tensors.items():
            keep = L.tensor_rng(42, n).stream(0).uniform(v.size).reshape(v.shape) < 0.3
            want = np.where(keep, e.tensors[n], v)
            L.check_tensor(self, n, got[n][1], want, "F32")


if __name__ == "__main__":
    unittest.main()
