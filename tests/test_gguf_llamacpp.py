"""llama.cpp itself as the peer for shoal's GGUF files: node-llama-cpp 3.22.1's prebuilt CPU build
(see ../shared/data/SOURCES.md; installed by scripts/install-llamacpp-npm.sh, found through
$SHOAL_LLAMACPP_NPM) loads what `shoal convert` and `shoal merge --format gguf` write, and
- tokenizes the baseline inputs (../shared/data/tokenizer-baselines, made by Python transformers)
  to the same ids with the metadata written for the GPT-2, Llama-2 and Qwen3 tokenizers, also
  after a GGUF -> HF -> GGUF round trip of the vocabulary;
- generates the same greedy tokens as shoal's engine on the same file, with next-token
  probabilities within 1e-3 (F32 weights) — generated Llama, Qwen2 and Qwen3 models and
  stories260K converted GGUF -> HF -> GGUF (which must also reproduce the recorded llama.cpp
  oracle of the original file);
- for F16, BF16 and Q8_0 weights (stories260K), within a tolerance derived from llama.cpp alone
  (see test_stories260k_round_trip_and_types).
Greedy sequences may part only where llama.cpp's two best tokens are within the tolerance of
each other (a tie that rounding decides); the tokens after that are not compared.

This test fails, never skips, when node or the package is missing."""
import json
import math
import os
import shutil
import subprocess
import unittest
from pathlib import Path

import gguf_testlib as gg
import shoal_testlib as tl

DATA = Path(os.environ.get("SHOAL_SHARED_DATA") or tl.REPO.parent / "shared" / "data")
PEER = Path(__file__).resolve().parent / "llamacpp_peer.mjs"
NPM = Path(os.environ.get("SHOAL_LLAMACPP_NPM")
           or Path.home() / ".cache" / "shoal-npm" / "node-llama-cpp-3.22.1")
TOKENIZERS = [("gpt2-tokenizer", "gpt2_multilingual.json", "llama", 50257),
              ("llama2-tokenizer", "tinyllama_multilingual.json", "llama", 32000),
              ("qwen3-tokenizer", "qwen2_5_multilingual.json", "qwen3", 151669)]
PROMPTS = ["Once upon a time", "The quick brown fox jumps"]


class LlamaCppPeer(tl.ShoalTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.node = shutil.which("node")
        if cls.node is None:
            raise RuntimeError("node is not installed (Debian: apt-get install nodejs)")
        if not (NPM / "node_modules" / "node-llama-cpp" / "package.json").exists():
            raise RuntimeError(f"node-llama-cpp is not installed in {NPM}: run "
                               "scripts/install-llamacpp-npm.sh (or set SHOAL_LLAMACPP_NPM)")

    def peer(self, model, request):
        # One thread: llama.cpp's workers spin while they wait, which on a busy 2-core CI
        # machine costs more than a second thread gains on these small models.
        request = dict(request, threads=1)
        env = dict(os.environ, SHOAL_LLAMACPP_NPM=str(NPM))
        proc = subprocess.run([self.node, str(PEER), str(model)], input=json.dumps(request),
                              capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(proc.returncode, 0, f"llama.cpp on {model}:\n{proc.stderr}")
        return json.loads(proc.stdout)

    def convert(self, src, dst, *args):
        proc = tl.run_shoal(["convert", src, dst, "--quiet", *args])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return dst

    def shoal_generate(self, model, prompt, n):
        proc = tl.run_shoal(["generate", model, "--prompt", prompt, "--max-tokens", n, "--json",
                             "--top-logprobs", 20, "--no-chat-template", "--threads", 2])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return [json.loads(line) for line in proc.stdout.splitlines()]

    def compare_with_shoal(self, model, prompts, n, tol, label):
        """llama.cpp's greedy ids and first-step top probabilities against shoal's engine."""
        results = self.peer(model, {"op": "generate", "prompts": prompts, "n": n, "top": 10})
        whole = 0  # prompts whose greedy sequences agree to the end
        for prompt, r in zip(prompts, results["results"]):
            lines = self.shoal_generate(model, prompt, n)
            ours = [line["id"] for line in lines]
            theirs = r["generated_ids"]
            k = 0
            while k < min(len(ours), len(theirs)) and ours[k] == theirs[k]:
                k += 1
            if k < min(len(ours), len(theirs)):
                p1, p2 = r["margins"][k]
                self.assertLess(p1 - p2, tol, f"{label} {prompt!r}: greedy ids part at step {k} "
                                f"where llama.cpp's best tokens are {p1:.4f} vs {p2:.4f}:\n"
                                f"shoal {ours}\nllama.cpp {theirs}")
            else:
                self.assertEqual(ours, theirs, f"{label} {prompt!r}")
                whole += 1
            probs = {t["id"]: math.exp(t["logprob"]) for t in lines[0]["top_logprobs"]}
            for t in r["top"]:
                if t["p"] < tol:
                    continue
                self.assertIn(t["id"], probs, f"{label} {prompt!r}: {t}")
                self.assertAlmostEqual(probs[t["id"]], t["p"], delta=tol,
                                       msg=f"{label} {prompt!r}: token {t['id']}")
        self.assertGreater(whole, 0, f"{label}: every sequence parted on a near-tie")
        return results

    def tiny_model(self, folder, tokenizer_dir, arch, vocab, dt="F16"):
        return gg.write_family_model(tl, folder, arch, dt, seed=7, vocab=vocab,
                                     tokenizer=tokenizer_dir, hidden=32, layers=1,
                                     head_dim=16 if arch == "qwen3" else None, tie=True)

    def test_tokenizer_metadata_reproduces_the_baselines(self):
        inputs = json.loads((DATA / "tokenizer-baselines" / "inputs.json").read_text())
        texts = [e["text"] for e in inputs]
        for tok_dir, baseline, arch, vocab in TOKENIZERS:
            with self.subTest(tok_dir):
                want = {e["id"]: e["input_ids"] for e in json.loads(
                    (DATA / "tokenizer-baselines" / baseline).read_text())["entries"]}
                d = self.tmp / tok_dir
                self.tiny_model(d / "hf", DATA / tok_dir, arch, vocab)
                first = self.convert(d / "hf", d / "m.gguf")
                # The vocabulary back to tokenizer.json and into GGUF again.
                self.convert(first, d / "back")
                again = self.convert(d / "back", d / "again.gguf")
                for model in (first, again):
                    got = self.peer(model, {"op": "tokenize", "texts": texts})["ids"]
                    bad = [(e["id"], ids, want[e["id"]]) for e, ids in zip(inputs, got)
                           if ids != want[e["id"]]]
                    self.assertEqual(bad, [], f"{model}: {len(bad)}/{len(texts)} differ")

    def test_generated_models_match_shoal(self):
        """F32 weights: within 1e-3. Llama (Q/K rows permuted, GQA) converted; Qwen2 (q/k/v
        biases) converted; Qwen3 (q/k norms, head_dim > hidden / heads, tied embeddings) written
        straight to GGUF by a merge."""
        model = gg.write_family_model(tl, self.tmp / "llama", "llama", "F32", seed=11,
                                      vocab=32000, tokenizer=DATA / "llama2-tokenizer",
                                      hidden=64, layers=2, heads=4, kv_heads=2, inter=128)
        self.compare_with_shoal(self.convert(model.path, self.tmp / "llama.gguf"), PROMPTS, 16,
                                1e-3, "llama F32")
        tok, vocab = gg.tiny_bpe_tokenizer()
        qwen2 = gg.write_family_model(tl, self.tmp / "qwen2", "qwen2", "F32", seed=12,
                                      vocab=vocab, tokenizer=tok, hidden=64, heads=4, kv_heads=2,
                                      inter=96)
        self.compare_with_shoal(self.convert(qwen2.path, self.tmp / "qwen2.gguf"), PROMPTS, 16,
                                1e-3, "qwen2 F32")
        parts = [gg.write_family_model(tl, self.tmp / f"qwen3-{i}", "qwen3", "F32", seed=20 + i,
                                       vocab=vocab, tokenizer=tok, hidden=64, heads=4,
                                       kv_heads=2, head_dim=32, tie=True)
                 for i in range(2)]
        recipe = ("merge_method: linear\ndtype: float32\nmodels:\n" + "".join(
            f"  - model: {tl.yaml_path(p.path)}\n    parameters: {{weight: {w}}}\n"
            for p, w in zip(parts, (0.6, 0.4))))
        out = self.tmp / "qwen3-merged.gguf"
        self.merge(recipe, "--format", "gguf", out=out)
        self.compare_with_shoal(out, PROMPTS, 16, 1e-3, "qwen3 F32 merge")

    def test_stories260k_round_trip_and_types(self):
        """stories260K (a trained model, so greedy decoding has clear winners) converted GGUF ->
        HF -> GGUF: llama.cpp reproduces its recorded oracle for the original file and agrees
        with shoal within 1e-3. Then the HF folder converted to F16, BF16 and Q8_0.

        Tolerance for those types: both engines read the same weights, but llama.cpp's CPU
        matmul also rounds the activations to the weights' type (ggml's vec_dot type: F16 for
        F16, BF16 for BF16, Q8_0 blocks for Q8_0), which shoal does not (it computes in f32).
        That rounding has the relative error of the weights' own rounding to the type and enters
        each dot product symmetrically (sum (w + dw)(x + dx) - wx = sum dw x + w dx, to first
        order). So shoal's deviation from llama.cpp on a file of that type (activation rounding
        alone) is of the size of llama.cpp's own deviation between the F32 file and that file
        (weight and activation rounding, about sqrt(2) times larger): the tolerance is twice the
        largest difference llama.cpp shows between the two files on these prompts, and never
        below the 1e-3 of F32."""
        src = DATA / "stories260k" / "stories260K.gguf"
        self.convert(src, self.tmp / "hf")
        f32 = self.convert(self.tmp / "hf", self.tmp / "stories.gguf")
        prompts = ["", "Once upon a time", "Lily and Tom went to the park", "The cat sat on the"]
        results = self.compare_with_shoal(f32, prompts, 32, 1e-3, "stories260K")
        oracle = [json.loads(line) for line in
                  (DATA / "stories260k" / "llamacpp_oracle.jsonl").read_text().splitlines()]
        for r, gen, probs in zip(results["results"], oracle[0::2], oracle[1::2]):
            self.assertEqual(r["prompt_ids"], gen["prompt_ids"])
            self.assertEqual(r["generated_ids"], gen["generated_ids"])
            for got, want in zip(r["top"], probs["top"]):
                self.assertEqual(got["id"], want["id"])
                self.assertAlmostEqual(got["p"], want["p"], delta=1e-6)

        for typ in ("f16", "bf16", "q8_0"):
            with self.subTest(typ):
                path = self.convert(self.tmp / "hf", self.tmp / f"{typ}.gguf", "--type", typ)
                request = {"op": "generate", "prompts": prompts, "n": 1, "top": 10}
                worst = 0.0
                for ra, rb in zip(results["results"], self.peer(path, request)["results"]):
                    pa = {t["id"]: t["p"] for t in ra["top"]}
                    worst = max([worst] + [abs(t["p"] - pa[t["id"]]) for t in rb["top"]
                                           if t["id"] in pa])
                self.assertGreater(worst, 0.0, f"{typ} changed nothing: the test proves nothing")
                tol = max(1e-3, 2 * worst)
                self.compare_with_shoal(path, prompts, 16, tol, f"stories260K {typ} "
                                        f"(tolerance {tol:.2e})")


if __name__ == "__main__":
    unittest.main()
