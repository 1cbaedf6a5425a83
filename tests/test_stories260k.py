"""A real trained model end to end: Karpathy's stories260K (Llama architecture, F32, with a
SentencePiece-style vocabulary) loaded straight from its GGUF file. Oracles (see
../shared/data/SOURCES.md): llama2.c's greedy output for 200 steps, and llama.cpp's greedy ids and
next-token probabilities (node-llama-cpp 3.22.1) for four prompts."""
import json
import math
import os
import unittest
from pathlib import Path

import shoal_testlib as tl

DATA = Path(os.environ.get("SHOAL_SHARED_DATA") or tl.REPO.parent / "shared" / "data") / "stories260k"
GGUF = DATA / "stories260K.gguf"


def oracle():
    lines = [json.loads(l) for l in (DATA / "llamacpp_oracle.jsonl").read_text().splitlines() if l]
    return list(zip(lines[0::2], lines[1::2]))


class Stories260k(unittest.TestCase):
    def setUp(self):
        self.assertTrue(GGUF.exists(), f"{GGUF} is missing: set SHOAL_SHARED_DATA to shared/data")

    def generate(self, *args):
        res = tl.run_shoal(["generate", GGUF, *args])
        self.assertEqual(res.returncode, 0, res.stderr)
        return res.stdout

    def test_greedy_200_steps_match_llama2c(self):
        out = self.generate("--prompt", "", "--max-tokens", "200")
        expected = (DATA / "expected_greedy_200steps.txt").read_text()
        self.assertEqual(out.rstrip("\n"), expected)

    def test_greedy_ids_and_probabilities_match_llamacpp(self):
        # The oracle's texts are the prompt's continuation; prompt "" is BOS alone.
        prompts = ["", "Once upon a time", "Lily and Tom went to the park", "The cat sat on the"]
        cases = oracle()
        self.assertEqual(len(cases), len(prompts))
        for prompt, (gen, probs) in zip(prompts, cases):
            lines = [json.loads(l) for l in
                     self.generate("--prompt", prompt, "--max-tokens", "32", "--json",
                                   "--top-logprobs", "10").splitlines()]
            ids = [l["id"] for l in lines]
            self.assertEqual(ids, gen["generated_ids"][:len(ids)], prompt)
            self.assertEqual(len(ids), len(gen["generated_ids"]), prompt)
            ours = {t["id"]: math.exp(t["logprob"]) for t in lines[0]["top_logprobs"]}
            for t in probs["top"]:
                if t["p"] < 1e-3:
                    continue  # may fall outside our top 10 on a near-tie; too small to matter
                self.assertIn(t["id"], ours, (prompt, t))
                self.assertAlmostEqual(ours[t["id"]], t["p"], delta=1e-3, msg=(prompt, t))

    def test_prompt_longer_than_the_context_is_refused(self):
        res = tl.run_shoal(["generate", GGUF, "--prompt", "the cat " * 3000])
        self.assertEqual(res.returncode, 1)
        self.assertIn("context", res.stderr)
        self.assertEqual(len(tl.error_lines(res.stderr)), 1, res.stderr)


if __name__ == "__main__":
    unittest.main()
