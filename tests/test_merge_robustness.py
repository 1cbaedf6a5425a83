"""Robustness of `shoal merge`: statistics of the random masks (DARE, DELLA), determinism across
thread counts, error reporting for bad recipes and corrupted inputs (exit 1 with a one-line,
named message, nothing written), atomic output under SIGKILL, and untouched sources."""

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import unittest

import numpy as np

import shoal_testlib as L

SIGMAS = 5.0


def kept_mask(out, base, name):
    return out[name][1] != base.tensors[name]


class MaskStatistics(L.ShoalTestCase):
    """Kept fractions against binomial bounds, on ~300k elements (independent of the exact
    RNG formula, which test_merge_methods checks)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.base, (cls.e1,) = L.make_family(cls.class_tmp / "fam", "F32", seed=500,
                                            n_experts=1, n_layers=2, hidden=128, inter=256,
                                            vocab=64)

    def recipe(self, method, params, gparams="{rescale: false}"):
        return (f"merge_method: {method}\nbase_model: {L.yaml_path(self.base.path)}\n"
                f"models:\n  - model: {L.yaml_path(self.e1.path)}\n    parameters: {params}\n"
                f"parameters: {gparams}\n")

    def assert_binomial(self, kept, p_sum, var_sum, what):
        sigma = np.sqrt(var_sum)
        self.assertLessEqual(abs(kept - p_sum), SIGMAS * sigma + 1,
                             f"{what}: kept {kept}, expected {p_sum:.1f} +- {sigma:.1f}")

    def test_dare_kept_fraction(self):
        p = 0.3
        masks = {}
        for seed in (5, 6):
            _, out = self.merge(self.recipe("dare_linear", "{weight: 1.0, density: 0.3}"),
                                "--seed", seed)
            got = L.read_model_tensors(out)
            masks[seed] = {n: kept_mask(got, self.base, n) for n in got}
            total = 0
            for n, m in masks[seed].items():
                # A kept element is exactly the expert's value (weight 1, no rescale).
                np.testing.assert_array_equal(got[n][1][m], self.e1.tensors[n][m], err_msg=n)
                if m.size >= 4096:
                    self.assert_binomial(int(m.sum()), p * m.size, p * (1 - p) * m.size,
                                         f"seed {seed} {n}")
                total += m.size
            kept = sum(int(m.sum()) for m in masks[seed].values())
            self.assert_binomial(kept, p * total, p * (1 - p) * total, f"seed {seed} total")
        # Masks of two seeds are independent: both keep an element with probability p^2.
        both = sum(int((masks[5][n] & masks[6][n]).sum()) for n in masks[5])
        total = sum(m.size for m in masks[5].values())
        self.assert_binomial(both, p * p * total, p * p * (1 - p * p) * total, "seed overlap")

    def test_della_kept_by_rank(self):
        density, eps = 0.4, 0.2
        _, out = self.merge(self.recipe("della_linear",
                                        f"{{weight: 1.0, density: {density}, epsilon: {eps}}}"),
                            "--seed", 11)
        got = L.read_model_tensors(out)
        # Per row, rank r of |delta| (1 = smallest) gives p = d - e + 2e (r - 1) / (ncols - 1);
        # group the elements by rank quartile and compare kept counts with sum p.
        groups = [[0, 0.0, 0.0] for _ in range(4)]
        for n, b in self.base.tensors.items():
            m = kept_mask(got, self.base, n)
            d = np.abs(self.e1.tensors[n] - b).reshape(-1, b.shape[-1])
            ncols = d.shape[1]
            rank = np.argsort(np.argsort(d, axis=1), axis=1) + 1
            prob = density - eps + 2 * eps * (rank - 1) / (ncols - 1)
            quart = np.minimum((rank - 1) * 4 // ncols, 3)
            m = m.reshape(d.shape)
            for q in range(4):
                sel = quart == q
                groups[q][0] += int(m[sel].sum())
                groups[q][1] += float(prob[sel].sum())
                groups[q][2] += float((prob[sel] * (1 - prob[sel])).sum())
        for q, (kept, p_sum, var) in enumerate(groups):
            self.assert_binomial(kept, p_sum, var, f"rank quartile {q + 1}")
        # The quartiles differ: the largest deltas are kept markedly more often.
        self.assertGreater(groups[3][0], groups[0][0] * 1.5)


class Determinism(L.ShoalTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.base, cls.experts = L.make_family(cls.class_tmp / "fam", "BF16", seed=600,
                                              n_experts=2, n_layers=3, hidden=64, inter=128,
                                              vocab=64)

    def outputs(self, out):
        names = sorted(n for n in os.listdir(out)
                       if n.endswith(".safetensors") or n.endswith(".index.json"))
        self.assertTrue(names)
        return {n: (out / n).read_bytes() for n in names}

    def test_threads_and_seeds(self):
        for method in ("dare_ties", "della"):
            with self.subTest(method=method):
                recipe = (f"merge_method: {method}\nbase_model: {L.yaml_path(self.base.path)}\n"
                          f"models:\n"
                          f"  - model: {L.yaml_path(self.experts[0].path)}\n"
                          f"    parameters: {{weight: 0.6, density: 0.5}}\n"
                          f"  - model: {L.yaml_path(self.experts[1].path)}\n"
                          f"    parameters: {{weight: 0.4, density: 0.6}}\n")
                runs = {}
                for threads, seed in ((1, 7), (2, 7), (2, 8)):
                    _, out = self.merge(recipe, "--threads", threads, "--seed", seed,
                                        "--out-shard-size", 40000)
                    runs[threads, seed] = self.outputs(out)
                self.assertGreater(len(runs[1, 7]), 2)  # sharded
                self.assertEqual(runs[1, 7], runs[2, 7], "thread count changed the output")
                differ = [n for n in runs[2, 7] if runs[2, 7][n] != runs[2, 8].get(n)]
                self.assertTrue(differ, "a different seed gave identical output")


class Errors(L.ShoalTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.base, (cls.e1, cls.e2) = L.make_family(cls.class_tmp / "fam", "F32", seed=700,
                                                   n_experts=2, n_layers=2, hidden=16,
                                                   inter=32, vocab=48)
        cls.hashes = {m.path: L.file_hashes(m.path) for m in (cls.base, cls.e1, cls.e2)}

    @classmethod
    def tearDownClass(cls):
        # Sources are never modified, whatever the merges did.
        for path, h in cls.hashes.items():
            if L.file_hashes(path) != h:
                raise AssertionError(f"source folder {path} was modified")
        super().tearDownClass()

    def expect_failure(self, recipe, *needles, name="recipe.yml"):
        proc, out = self.merge(recipe, expect_ok=False, recipe_name=name)
        self.assert_error(proc, *needles)
        self.assertFalse(out.exists(), "OUT_DIR created by a failed merge")
        leftovers = [n for n in os.listdir(out.parent)]
        self.assertEqual(leftovers, [], f"files beside OUT_DIR: {leftovers}")
        return proc

    def ta(self, e1=None, extra=""):
        e1 = e1 or self.e1.path
        return (f"merge_method: task_arithmetic\nbase_model: {L.yaml_path(self.base.path)}\n"
                f"models:\n  - model: {L.yaml_path(e1)}\n    parameters: {{weight: 0.5}}\n"
                + extra)

    def test_unknown_key(self):
        recipe = (f"merge_method: ties\n"                                           # line 1
                  f"base_model: {L.yaml_path(self.base.path)}\n"                    # 2
                  f"models:\n"                                                      # 3
                  f"  - model: {L.yaml_path(self.e1.path)}\n"                       # 4
                  f"    parameters: {{weight: 0.5, density: 0.5}}\n"                # 5
                  f"    paramters: {{weight: 0.2}}\n")                              # 6
        proc = self.expect_failure(recipe, "paramters", "typo_recipe.yml",
                                   name="typo_recipe.yml")
        self.assertRegex(proc.stderr, r"typo_recipe\.yml:6\b")
        recipe = self.ta(extra="dtpye: bfloat16\n")  # line 6
        proc = self.expect_failure(recipe, "dtpye", "top_recipe.yml", name="top_recipe.yml")
        self.assertRegex(proc.stderr, r"top_recipe\.yml:6\b")

    def test_invalid_yaml(self):
        recipe = (f"merge_method: ties\nmodels: [\n  - model: {L.yaml_path(self.e1.path)}\n"
                  f"    parameters: {{weight: 0.5\n")
        self.expect_failure(recipe, "bad_yaml.yml", name="bad_yaml.yml")

    def test_missing_model_folder(self):
        missing = self.tmp / "no_such_model"
        self.expect_failure(self.ta(e1=missing), "no_such_model")

    def test_missing_tensor(self):
        vals = dict(self.e1.tensors)
        del vals["model.layers.1.mlp.up_proj.weight"]
        holed = L.write_model(self.tmp / "holed", vals, "F32", self.e1.config, "holed")
        self.expect_failure(self.ta(e1=holed.path), "model.layers.1.mlp.up_proj.weight")

    def test_bad_density(self):
        # DELLA: density +- epsilon must lie strictly inside (0, 1).
        recipe = (f"merge_method: della\nbase_model: {L.yaml_path(self.base.path)}\n"
                  f"models:\n  - model: {L.yaml_path(self.e1.path)}\n"
                  f"    parameters: {{weight: 0.5, density: 0.9, epsilon: 0.15}}\n")
        proc = self.expect_failure(recipe)
        self.assertRegex(proc.stderr, r"density|epsilon")
        # TIES: k = int(density * numel) == 0 is an error.
        recipe = (f"merge_method: ties\nbase_model: {L.yaml_path(self.base.path)}\n"
                  f"models:\n  - model: {L.yaml_path(self.e1.path)}\n"
                  f"    parameters: {{weight: 0.5, density: 0.0}}\n")
        self.expect_failure(recipe, "density")

    def assert_separate_lines(self, proc, patterns):
        lines = L.error_lines(proc.stderr)
        found = []
        for pat in patterns:
            hits = [ln for ln in lines if re.search(pat, ln)]
            self.assertTrue(hits, f"no line matches {pat!r}:\n{proc.stderr}")
            found.append(hits[0])
        self.assertEqual(len(set(found)), len(patterns),
                         f"problems not on separate lines:\n{proc.stderr}")

    def test_several_problems_reported_together(self):
        # Two missing folders.
        recipe = (f"merge_method: della\nbase_model: {L.yaml_path(self.base.path)}\n"
                  f"models:\n"
                  f"  - model: {L.yaml_path(self.tmp / 'missing_one')}\n"
                  f"    parameters: {{weight: 0.5, density: 0.5}}\n"
                  f"  - model: {L.yaml_path(self.tmp / 'missing_two')}\n"
                  f"    parameters: {{weight: 0.5, density: 0.5}}\n")
        proc = self.expect_failure(recipe, "missing_one", "missing_two")
        self.assert_separate_lines(proc, ["missing_one", "missing_two"])
        # Two bad parameter values, on two models.
        recipe = (f"merge_method: della\nbase_model: {L.yaml_path(self.base.path)}\n"
                  f"models:\n"
                  f"  - model: {L.yaml_path(self.e1.path)}\n"
                  f"    parameters: {{weight: 0.5, density: 0.95, epsilon: 0.1}}\n"
                  f"  - model: {L.yaml_path(self.e2.path)}\n"
                  f"    parameters: {{weight: 0.5, density: 0.5, epsilon: 0.6}}\n")
        proc = self.expect_failure(recipe, str(self.e1.path), str(self.e2.path))
        self.assert_separate_lines(proc, [r"0\.95", r"0\.6\b"])

    def test_problems_of_different_kinds_reported_together(self):
        # A missing folder does not hide a bad parameter value of another, present model.
        recipe = (f"merge_method: della\nbase_model: {L.yaml_path(self.base.path)}\n"
                  f"models:\n"
                  f"  - model: {L.yaml_path(self.tmp / 'missing_one')}\n"
                  f"    parameters: {{weight: 0.5, density: 0.5}}\n"
                  f"  - model: {L.yaml_path(self.e1.path)}\n"
                  f"    parameters: {{weight: 0.5, density: 0.95, epsilon: 0.1}}\n")
        proc = self.expect_failure(recipe, "missing_one")
        self.assert_separate_lines(proc, ["missing_one", r"density|epsilon"])

    # ---- corrupted sources -------------------------------------------------------------------

    def corrupt_copy(self, kind):
        """A copy of e1 with one defect; returns (folder, name of the bad file)."""
        folder = self.tmp / f"corrupt_{kind}"
        if kind == "missing_shard":
            L.write_model(folder, self.e1.tensors, "F32", self.e1.config, "c", n_shards=2)
            bad = "model-00002-of-00002.safetensors"
            (folder / bad).unlink()
            return folder, bad
        shutil.copytree(self.e1.path, folder)
        f = folder / "model.safetensors"
        data = f.read_bytes()
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        body = data[8 + n:]
        emb = "model.embed_tokens.weight"
        if kind == "truncated":
            f.write_bytes(data[:len(data) - 300])
        elif kind == "header_past_end":
            f.write_bytes(struct.pack("<Q", len(data) + 1000) + data[8:])
        elif kind == "bad_json":
            junk = b'{"model.embed_tokens.weight": {"dtype": "F32", [[['
            f.write_bytes(data[:8] + junk + b" " * (n - len(junk)) + body)
        elif kind == "unknown_dtype":
            header[emb]["dtype"] = "Q7"
            L.write_raw_safetensors(f, header, body)
        elif kind == "shape_mismatch":
            header[emb]["shape"] = [48, 17]
            L.write_raw_safetensors(f, header, body)
        else:
            raise ValueError(kind)
        return folder, "model.safetensors"

    def test_corrupted_sources(self):
        for kind in ("truncated", "header_past_end", "bad_json", "unknown_dtype",
                     "shape_mismatch", "missing_shard"):
            with self.subTest(kind=kind):
                folder, bad = self.corrupt_copy(kind)
                before = L.file_hashes(folder)
                proc = self.expect_failure(self.ta(e1=folder), bad)
                lines = L.error_lines(proc.stderr)
                self.assertEqual(len(lines), 1, f"expected one line:\n{proc.stderr}")
                self.assertIn(bad, lines[0])
                self.assertIn(folder.name, lines[0])
                self.assertEqual(L.file_hashes(folder), before)


class Interrupted(L.ShoalTestCase):
    """SIGKILL in the middle of writing leaves no complete-looking OUT_DIR."""

    def write_big_model(self, folder, seed, cfg):
        rng = np.random.default_rng(seed)
        tensors = {}
        for name, shape in L.llama_shapes(cfg):
            tensors[name] = ("F32", rng.standard_normal(shape, dtype=np.float32))
        folder.mkdir(parents=True)
        L.write_safetensors(folder / "model.safetensors", tensors)
        (folder / "config.json").write_text(json.dumps(dict(cfg, torch_dtype="float32")))

    def test_sigkill_mid_merge(self):
        # About 95 MB of f32 per model, two models: a merge that takes a noticeable time.
        cfg = L.llama_config(n_layers=2, hidden=1024, inter=2816, vocab=64, heads=4,
                             kv_heads=2)
        a, b = self.tmp / "big_a", self.tmp / "big_b"
        self.write_big_model(a, 1, cfg)
        self.write_big_model(b, 2, cfg)
        hashes = {p: L.file_hashes(p) for p in (a, b)}
        recipe = self.write_recipe(
            f"merge_method: linear\nmodels:\n"
            f"  - model: {L.yaml_path(a)}\n    parameters: {{weight: 0.3}}\n"
            f"  - model: {L.yaml_path(b)}\n    parameters: {{weight: 0.7}}\n")
        parent = self.tmp / "outputs"
        parent.mkdir()
        out = parent / "merged"
        proc = subprocess.Popen([L.shoal_bin(), "merge", str(recipe), str(out), "--quiet",
                                 "--threads", "1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        killed, t0 = False, time.time()
        while proc.poll() is None and time.time() - t0 < 120:
            written = sum(f.stat().st_size for f in parent.rglob("*") if f.is_file())
            if written > 4 << 20:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.001)
        proc.wait()
        proc.stderr.close()
        if not killed:
            self.skipTest("the merge finished before it could be interrupted")
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        entries = os.listdir(parent)
        visible = [e for e in entries if not e.startswith(".")]
        self.assertTrue(set(visible) <= {"merged"}, f"unexpected entries {entries}")
        if out.exists():
            names = set(os.listdir(out))
            looks_complete = "config.json" in names and any(
                n.endswith(".safetensors") for n in names)
            self.assertFalse(looks_complete, f"interrupted merge left {sorted(names)} in OUT_DIR")
        # A new merge to the same place works despite any leftover temporary sibling.
        _, out2 = self.merge(recipe.read_text(), "--force", out=out)
        got = L.read_model_tensors(out)
        self.assertEqual(len(got), len(L.llama_shapes(cfg)))
        name = "model.layers.1.mlp.down_proj.weight"
        _, ta = L.read_safetensors(a / "model.safetensors")
        _, tb = L.read_safetensors(b / "model.safetensors")
        L.check_tensor(self, name, got[name][1], 0.3 * ta[name][1] + 0.7 * tb[name][1], "F32")
        for p, h in hashes.items():
            self.assertEqual(L.file_hashes(p), h, f"{p} modified")


if __name__ == "__main__":
    unittest.main()
