"""The committed tiny models of examples/tiny (trained by tools/train_tiny) as shoal runs them.

- Every model folder loads in shoal and answers through `shoal eval` and `shoal generate`.
- The tokenizer: tokenizer.json maps every byte to one token (byte-level BPE, no merges); shoal's
  encoding of texts (ASCII and multi-byte UTF-8) is exactly one token per byte after <s>, seen
  through a perplexity task whose token count, byte count and total log-likelihood must equal a
  PyTorch reference run on those ids; shoal's decoding of a greedy continuation equals the bytes
  the reference predicts.
- The effect they exist for: `shoal merge` (task arithmetic) + `shoal eval` do the composite task
  that neither expert does.
- Logits: shoal_dump_logits on the committed weights against the float64 PyTorch forward pass
  of tests/test_forward.py (written from the Llama math), within the same 1e-4 relative
  tolerance.

Env: SHOAL_BIN (the shoal binary; shoal_dump_logits is looked up beside it), SHOAL_TEST_TMP.
"""

import json
import math
import shutil
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from shoal_testlib import read_model_tensors, run_shoal, tmp_root
from test_forward import REL_TOL, dump_tool, reference_forward, rel_err, run_dump

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"
MODELS = ["base", "arith", "zel"]
BOS = 256
TEXTS = ["tom is 37 years old.\n482 + 37 = 519",
         "FGP + TV = SKN, zel KVZF is 1704.",
         "caf\u00e9 \u00fcber na\u00efve \u20ac5 \u2014 \U0001F600 \u4e2d\u6587 \t tabs  and  spaces"]


def load(name):
    folder = TINY / name
    cfg = json.loads((folder / "config.json").read_text())
    W = {k: torch.from_numpy(v) for k, (_, v) in read_model_tensors(folder).items()}
    return folder, cfg, W


def byte_ids(text):
    return [BOS] + list(text.encode("utf-8"))


class TinyModelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not Path(dump_tool()).exists():
            raise AssertionError(f"{dump_tool()} not found: build the shoal_dump_logits target")
        cls.tmp = Path(tempfile.mkdtemp(prefix="tiny_", dir=tmp_root()))
        cls.models = {name: load(name) for name in MODELS}

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_tokenizer_json_is_one_token_per_byte(self):
        tok = json.loads((TINY / "base" / "tokenizer.json").read_text(encoding="utf-8"))
        self.assertEqual(tok["model"]["type"], "BPE")
        self.assertEqual(tok["model"]["merges"], [])
        vocab = tok["model"]["vocab"]
        byte_pieces = {v: k for k, v in vocab.items() if v < 256}
        self.assertEqual(sorted(byte_pieces), list(range(256)))
        self.assertEqual({v for k, v in vocab.items() if v >= 256}, {256, 257})
        # GPT-2's ByteLevel alphabet: printable ASCII stands for itself.
        for b in range(ord("!"), ord("~") + 1):
            self.assertEqual(byte_pieces[b], chr(b))
        for name in MODELS[1:]:
            for f in ("tokenizer.json", "tokenizer_config.json"):
                self.assertEqual((TINY / name / f).read_bytes(), (TINY / "base" / f).read_bytes())

    def test_logits_match_reference(self):
        seqs = [byte_ids("where does tom live? tom lives in"), byte_ids("KFF + VKN = GXT")]
        for name, (folder, cfg, W) in self.models.items():
            out = self.tmp / f"logits_{name}.npy"
            run_dump(folder, seqs, out)
            got = np.load(out)
            pos = 0
            for ids in seqs:
                ref, _ = reference_forward(cfg, W, ids)
                err = rel_err(got[pos:pos + len(ids)], ref.numpy())
                self.assertLess(err, REL_TOL, f"{name}: {ids[:8]}...")
                pos += len(ids)

    def test_encoding_through_perplexity(self):
        data = self.tmp / "texts.jsonl"
        data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
        task = self.tmp / "ppl.yml"
        task.write_text(f"name: ppl\nkind: perplexity\ndataset: {data}\ntext: \"{{text}}\"\n")
        folder, cfg, W = self.models["base"]
        r = run_shoal(["eval", folder, task])
        self.assertEqual(r.returncode, 0, r.stderr)
        res = json.loads(r.stdout)["results"]["ppl"]
        n_bytes = sum(len(t.encode("utf-8")) for t in TEXTS)
        self.assertEqual(res["byte_count"], n_bytes)
        self.assertEqual(res["token_count"], n_bytes)  # every byte one token, predicted after <s>
        nll = 0.0
        for t in TEXTS:
            ids = byte_ids(t)
            logits, _ = reference_forward(cfg, W, ids)
            logp = torch.log_softmax(logits, dim=-1)
            nll -= sum(float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1))
        self.assertLess(abs(res["total_nll"] - nll), 1e-4 * nll + 1e-3, (res["total_nll"], nll))

    def test_decoding_of_greedy_generation(self):
        folder, cfg, W = self.models["zel"]
        prompt = "zel KVZF is"
        ids = byte_ids(prompt)
        n = 6
        for _ in range(n):
            logits, _ = reference_forward(cfg, W, ids)
            top = torch.topk(logits[-1], 2).values
            self.assertGreater(float(top[0] - top[1]), 1e-3, "a near tie: pick another prompt")
            ids.append(int(logits[-1].argmax()))
        expected = bytes(i for i in ids[len(byte_ids(prompt)):] if i < 256).decode("utf-8")
        r = run_shoal(["generate", folder, "-p", prompt, "-n", n])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.rstrip("\n"), expected)

    def test_models_answer_their_skill(self):
        # Loose floors under the numbers of examples/tiny/README.md (dev split, a few samples):
        # each model loads, the task files parse, and each expert does its own skill.
        floors = {"base": {"facts": 0.5}, "arith": {"arith": 0.6, "facts": 0.5},
                  "zel": {"zel": 0.6, "facts": 0.5}}
        for name, (folder, _, _) in self.models.items():
            r = run_shoal(["eval", folder, TINY / "tasks" / "dev.yml", "--limit", 30])
            self.assertEqual(r.returncode, 0, r.stderr)
            res = json.loads(r.stdout)["results"]
            self.assertEqual(set(res), {"arith", "zel", "composite", "facts"})
            for task, floor in floors[name].items():
                self.assertGreaterEqual(res[task]["score"], floor, f"{name} on {task}")
            self.assertTrue(all(math.isfinite(v["score"]) for v in res.values()))

    def test_only_the_merge_does_the_composite_task(self):
        # The effect examples/tiny/README.md reports, with shoal's own merge and evaluator: both
        # experts fail the composite task (Zel addition) and task arithmetic of the two does it.
        merged = self.tmp / "task_arithmetic"
        r = run_shoal(["merge", TINY / "merge_task_arithmetic.yml", merged, "--force"])
        self.assertEqual(r.returncode, 0, r.stderr)
        task = TINY / "tasks" / "composite_dev.yml"
        scores = {}
        for name, folder in [("arith", TINY / "arith"), ("zel", TINY / "zel"),
                             ("merge", merged)]:
            r = run_shoal(["eval", folder, task])
            self.assertEqual(r.returncode, 0, r.stderr)
            scores[name] = json.loads(r.stdout)["results"]["composite"]["score"]
        self.assertLessEqual(scores["arith"], 0.1, scores)
        self.assertLessEqual(scores["zel"], 0.1, scores)
        self.assertGreaterEqual(scores["merge"], 0.3, scores)


if __name__ == "__main__":
    unittest.main()
