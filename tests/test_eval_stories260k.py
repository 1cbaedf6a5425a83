"""`shoal eval` end to end on the real stories260K model (GGUF). The numbers are checked against
`shoal generate --json`, a different path through the engine (KV-cache decoding, one token at a
time, instead of batched scoring), whose tokens and probabilities test_stories260k checks
against llama.cpp and llama2.c: a perplexity over the model's own greedy text must equal the sum
of the generated tokens' log-probabilities, a generation task must reproduce the greedy text,
and a multiple-choice task must prefer the continuation llama.cpp ranks first."""
import json
import math
import os
import unittest
from pathlib import Path

import shoal_testlib as tl

DATA = Path(os.environ.get("SHOAL_SHARED_DATA") or tl.REPO.parent / "shared" / "data") / "stories260k"
GGUF = DATA / "stories260K.gguf"


class EvalStories260k(unittest.TestCase):
    def setUp(self):
        self.assertTrue(GGUF.exists(), f"{GGUF} is missing: set SHOAL_SHARED_DATA to shared/data")
        self.dir = Path(tl.tmp_root()) / f"eval-{self.id().split('.')[-1]}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def greedy(self, prompt, n):
        res = tl.run_shoal(["generate", GGUF, "--prompt", prompt, "-n", n, "--json"])
        self.assertEqual(res.returncode, 0, res.stderr)
        return [json.loads(l) for l in res.stdout.splitlines()]

    def run_eval(self, task_yaml, records, *extra):
        (self.dir / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (self.dir / "task.yml").write_text(task_yaml)
        res = tl.run_shoal(["eval", GGUF, self.dir / "task.yml", *extra])
        self.assertEqual(res.returncode, 0, res.stderr)
        return json.loads(res.stdout)

    def test_perplexity_equals_sum_of_greedy_logprobs(self):
        steps = self.greedy("", 40)
        text = "".join(s["text"] for s in steps).lstrip(" ")
        want_nll = -sum(s["logprob"] for s in steps)
        out = self.run_eval('kind: perplexity\ndataset: data.jsonl\ntext: "{t}"\n', [{"t": text}])
        got = out["results"]["task"]
        self.assertEqual(got["token_count"], len(steps))
        self.assertAlmostEqual(got["total_nll"], want_nll, delta=1e-3 * len(steps))
        self.assertAlmostEqual(got["perplexity"], math.exp(want_nll / len(steps)), delta=1e-3)

    def test_generation_reproduces_greedy_text(self):
        prompt = "Once upon a time"
        steps = self.greedy(prompt, 12)
        answer = "".join(s["text"] for s in steps)
        out = self.run_eval(
            'kind: generation\ndataset: data.jsonl\nprompt: "{p}"\ntarget: "{a}"\n'
            'target_delimiter: ""\nmax_tokens: 12\nstop: []\n',
            [{"p": prompt, "a": answer}, {"p": prompt, "a": answer + " not this"}],
            "--samples", self.dir / "samples.jsonl")
        self.assertAlmostEqual(out["results"]["task"]["exact_match"], 0.5)
        samples = [json.loads(l) for l in (self.dir / "samples.jsonl").read_text().splitlines()]
        self.assertEqual(len(samples), 2)

    def test_multiple_choice_prefers_llamacpp_top_token(self):
        # llama.cpp's most likely token after "Once upon a time" is "," (p ~ 0.97).
        out = self.run_eval(
            'kind: multiple_choice\ndataset: data.jsonl\nprompt: "{p}"\nchoices: c\ngold: g\n'
            'target_delimiter: ""\n',
            [{"p": "Once upon a time", "c": [" dog", ",", " tree"], "g": 1},
             {"p": "Once upon a time", "c": [",", " dog"], "g": 1}])
        self.assertAlmostEqual(out["results"]["task"]["acc"], 0.5)

    def test_bad_task_file_fails_before_loading_the_model(self):
        (self.dir / "data.jsonl").write_text('{"t": "x"}\n{broken\n')
        (self.dir / "task.yml").write_text('kind: perplexity\ndataset: data.jsonl\ntext: "{t}"\n')
        res = tl.run_shoal(["eval", GGUF, self.dir / "task.yml"])
        self.assertEqual(res.returncode, 1)
        self.assertIn("data.jsonl:2", res.stderr)


if __name__ == "__main__":
    unittest.main()
