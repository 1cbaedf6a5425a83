"""End-to-end tests of `shoal evolve` through the binary.

- The best model of a run is the merge its genome describes: for a linear genome over layer
  groups, every tensor of best/ equals the NumPy linear merge with the group's weights (within
  one ulp, shoal_testlib's reference), and `shoal merge best.yml` writes the same bytes.
- Ctrl-C (SIGINT) in the middle of a run exits with 130 and a checkpoint; `--resume` finishes it
  with outputs byte-identical to an uninterrupted run's.
- A fitness command that fails for some candidates: logged, the run goes on.
- Errors are one line: unknown config keys, a corrupt checkpoint, models of different depths.
- `shoal evolve export` writes an archive elite.
The fitness here is an external command (a small Python scorer reading the merged weights with
NumPy), so these tests do not depend on the evaluator.
"""

import json
import signal
import subprocess
import sys
import textwrap
import time
import unittest
from pathlib import Path

import numpy as np

import shoal_testlib as tl

# Scores a model folder: minus the mean squared distance of every layer tensor to the average of
# the two experts' (so the search has a signal), and per-task scores for the archive.
SCORER = textwrap.dedent("""
    import json, struct, sys
    import numpy as np

    def read(folder):  # model.safetensors (F32 / BF16) -> {{name: float64 array}}
        with open(folder + "/model.safetensors", "rb") as f:
            data = f.read()
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8:8 + n])
        out = {{}}
        for name, t in header.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            raw = data[8 + n + a:8 + n + b]
            if t["dtype"] == "BF16":
                v = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                v = np.frombuffer(raw, "<f4")
            out[name] = v.astype(np.float64)
        return out

    model, e1, e2 = read(sys.argv[1]), read({e1!r}), read({e2!r})
    d = [np.mean((model[n] - 0.3 * e1[n] - 0.7 * e2[n]) ** 2) for n in sorted(model)
         if ".layers." in n]
    s = -float(np.mean(d)) * 1e4
    print("loading done")
    print(json.dumps({{"score": s, "scores": {{"a": s, "b": float(np.mean(d[: len(d) // 2]))}}}}))
""")

class EvolveCli(tl.ShoalTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = cls.class_tmp / "models"
        cls.base, (cls.e1, cls.e2) = tl.make_family(root, "BF16", 5, n_experts=2, n_layers=4)
        cls.scorer = cls.class_tmp / "scorer.py"
        cls.scorer.write_text(SCORER.format(e1=str(cls.e1.path), e2=str(cls.e2.path)))

    def config(self, method="linear", extra="", generations=3, command=None, name="evolve.yml"):
        models = (f"  experts: [{tl.yaml_path(self.e1.path)}, {tl.yaml_path(self.e2.path)}]\n")
        if method != "linear":
            models = f"  base: {tl.yaml_path(self.base.path)}\n" + models
        command = command or f"{sys.executable} {self.scorer} {{model}}"
        text = (f"models:\n{models}genome:\n  merge_method: {method}\n  layer_granularity: 2\n"
                f"optimizer:\n  population: 4\n  sigma0: 0.3\nseed: 4\n"
                f"fitness:\n  command: {json.dumps(command)}\n  timeout: 60\n"
                f"budget:\n  generations: {generations}\n" + extra)
        p = self.tmp / name
        p.write_text(text)
        return p

    def evolve(self, config, out, *args, expect=0):
        proc = tl.run_shoal(["evolve", config, "--out", out, "--threads", "2"] + list(args),
                            timeout=300)
        self.assertEqual(proc.returncode, expect, proc.stderr)
        return proc

    def log_without_seconds(self, path):
        lines = []
        for line in Path(path).read_text().splitlines():
            j = json.loads(line)
            j.pop("seconds")
            lines.append(j)
        return lines

    def assert_same_outputs(self, a, b):
        for f in ("best.yml", "scores.json", "summary.json", "report.html",
                  "best/model.safetensors", "best/config.json"):
            self.assertEqual((a / f).read_bytes(), (b / f).read_bytes(), f)
        self.assertEqual(self.log_without_seconds(a / "log.jsonl"),
                         self.log_without_seconds(b / "log.jsonl"))

    def test_best_model_is_the_linear_merge_of_its_genome(self):
        out = self.tmp / "run"
        proc = self.evolve(self.config(), out)
        summary = json.loads(proc.stdout)
        self.assertEqual(summary["stop_reason"], "generations")
        self.assertEqual(summary["evaluations"], 12)
        best = json.loads((out / "summary.json").read_text())["best"]
        g = np.array(best["genome"]).reshape(2, 2)  # [layer group][expert] weights
        got = tl.read_model_tensors(out / "best")
        expected = {}
        for name in got:
            _, layer = tl.layer_index(name)
            # Layers take their group's weights; the embeddings the first slice's, the final
            # norm and lm_head the last slice's (mergekit's rule).
            group = layer // 2 if layer is not None else (0 if "embed" in name else 1)
            xs = [self.e1.tensors[name], self.e2.tensors[name]]
            ref = tl.ref_linear(name, xs, list(g[group]))
            expected[name] = (ref, None, tl.input_scale(*xs, weights=g[group]))
        tl.check_model(self, got, expected, "BF16", "best")
        # `shoal merge best.yml` reproduces best/ bit for bit.
        _, remerged = self.merge((out / "best.yml").read_text(), out=self.tmp / "remerged")
        self.assertEqual((remerged / "model.safetensors").read_bytes(),
                         (out / "best" / "model.safetensors").read_bytes())
        # The logged score is what the scorer says about best/.
        again = subprocess.run([sys.executable, str(self.scorer), str(out / "best")],
                               capture_output=True, text=True, check=True)
        self.assertEqual(json.loads(again.stdout.splitlines()[-1])["score"], best["score"])
        report = (out / "report.html").read_text()
        self.assertGreaterEqual(report.count("<svg"), 3)

    def test_sigint_checkpoints_and_resume_gives_the_same_outputs(self):
        config = self.config(method="task_arithmetic", generations=5)
        whole, split = self.tmp / "whole", self.tmp / "split"
        self.evolve(config, whole)
        argv = [tl.shoal_bin(), "evolve", str(config), "--out", str(split), "--threads", "2"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        log = split / "log.jsonl"
        while time.time() < deadline:
            if log.exists() and len(log.read_text().splitlines()) >= 8:  # two generations
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn("--resume continues it", err)
        self.assertTrue(json.loads(out)["stop_reason"] == "interrupted")
        self.assertFalse((split / "best.yml").exists())
        checkpoint = json.loads((split / "checkpoint.json").read_text())
        self.assertLess(len(checkpoint["generation_ends"]), 5)
        self.evolve(config, split, "--resume")
        self.assert_same_outputs(whole, split)

    def test_failing_command_candidates_are_logged(self):
        counter = self.tmp / "count"
        command = (f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
                   f"if [ $((n % 4)) -eq 2 ]; then sleep 30; elif [ $((n % 4)) -eq 3 ]; "
                   f"then exit 2; else {sys.executable} {self.scorer} {{model}}; fi")
        config = self.config(command=command, generations=2)
        text = config.read_text().replace("timeout: 60", "timeout: 4")
        config.write_text(text)
        out = self.tmp / "run"
        self.evolve(config, out)
        lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        errors = [x["error"] for x in lines if not x["ok"]]
        self.assertEqual(len(lines), 8)
        self.assertEqual(len(errors), 4)
        self.assertTrue(any("timed out" in e for e in errors), errors)
        self.assertTrue(any("exit status 2" in e for e in errors), errors)
        self.assertTrue((out / "best" / "model.safetensors").exists())

    def test_errors_are_one_line(self):
        config = self.config(extra="mutation: 0.1\n")
        line = config.read_text().splitlines().index("mutation: 0.1") + 1
        proc = tl.run_shoal(["evolve", config, "--out", self.tmp / "x"])
        self.assert_error(proc, f"{config}:{line}: unknown key 'mutation' in the config")
        self.assertEqual(len(tl.error_lines(proc.stderr)), 1, proc.stderr)

        out = self.tmp / "run"
        self.evolve(self.config(generations=1), out)
        (out / "checkpoint.json").write_text('{"format": "shoal-evolve-run", "vers')
        proc = tl.run_shoal(["evolve", self.config(generations=2), "--out", out, "--resume"])
        self.assert_error(proc, "checkpoint.json: not valid JSON")
        self.assertEqual(len(tl.error_lines(proc.stderr)), 1, proc.stderr)

        deep, _ = tl.make_family(self.tmp / "deep", "BF16", 9, n_experts=1, n_layers=6)
        text = self.config().read_text().replace(str(self.e2.path), str(deep.path))
        bad = self.tmp / "deep.yml"
        bad.write_text(text)
        proc = tl.run_shoal(["evolve", bad, "--out", self.tmp / "y"])
        self.assert_error(proc, "has 6 layers")
        self.assertEqual(len(tl.error_lines(proc.stderr)), 1, proc.stderr)

    def test_export_an_archive_elite(self):
        config = self.config(extra="quality_diversity:\n  axes: [{task: b, bins: 4, lower: 0, "
                                   "upper: 0.0002}]\n", generations=2)
        out = self.tmp / "run"
        self.evolve(config, out)
        archive = json.loads((out / "archive.json").read_text())
        self.assertGreaterEqual(len(archive["elites"]), 1)
        proc = tl.run_shoal(["evolve", "export", out, self.tmp / "elite", "--rank", "0"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        result = json.loads(proc.stdout)
        best = min(archive["elites"], key=lambda e: e["fitness"])
        self.assertEqual(result["cell"], best["cell"])
        self.assertTrue((self.tmp / "elite" / "model.safetensors").exists())
        self.assertTrue((self.tmp / "elite.yml").exists())
        proc = tl.run_shoal(["evolve", "export", out, self.tmp / "e2", "--cell", "9"])
        self.assert_error(proc, "--cell: bin 9 of axis b is outside [0, 4)")


if __name__ == "__main__":
    unittest.main()
