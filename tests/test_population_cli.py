"""End-to-end tests of the population search (`algorithm: {name: population}`) through the real
binary, on the offline circle packing example (mock models) and on small scripted tasks.

The database is read with Python's own sqlite3 module; the best packing is re-checked here with an
independent exact validity test (fractions), and the report is parsed with html.parser.

Environment: SHOAL_BIN (the shoal binary), SHOAL_TEST_TMP (scratch folder).
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "search" / "circle_packing"
PYTHON = "/usr/bin/python3"


def shoal_bin():
    return os.environ.get("SHOAL_BIN") or str(REPO / "build" / "shoal")


def scratch(name):
    root = os.environ.get("SHOAL_TEST_TMP") or os.path.join(tempfile.gettempdir(), "shoal-e2e")
    path = Path(root) / ("population_cli_" + name)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run(args, cwd, timeout=120):
    return subprocess.run([shoal_bin()] + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def copy_example(folder):
    for name in ("initial.py", "evaluate.py", "task_offline.yml"):
        shutil.copy(EXAMPLE / name, folder / name)
    # The tests use Debian's python3 for the evaluator.
    task = (folder / "task_offline.yml").read_text()
    (folder / "task_offline.yml").write_text(task.replace("command: python3", "command: " + PYTHON))


def packing_is_valid(circles):
    """Exact check, written independently of the example's evaluator."""
    if len(circles) != 26:
        return False
    c = [tuple(Fraction(v) for v in t) for t in circles]
    for x, y, r in c:
        if r <= 0 or x < r or y < r or x + r > 1 or y + r > 1:
            return False
    for i in range(26):
        for j in range(i):
            dx, dy, rr = c[i][0] - c[j][0], c[i][1] - c[j][1], c[i][2] + c[j][2]
            if dx * dx + dy * dy < rr * rr:
                return False
    return True


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.external = []
        self.headings = []
        self._h = False

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v and "://" in v:
                self.external.append(v)
        self._h = tag == "h3"

    def handle_data(self, data):
        if self._h:
            self.headings.append(data)
            self._h = False


class CirclePackingOffline(unittest.TestCase):
    def test_offline_example_end_to_end(self):
        d = scratch("offline")
        copy_example(d)
        r = run(["search", "task_offline.yml", "--out", "out", "--quiet"], d)
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout)
        self.assertEqual(summary["stop_reason"], "calls budget")
        self.assertEqual(summary["calls"], 30)
        db = sqlite3.connect(d / "out" / "population.db")
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        n_calls = db.execute("SELECT COUNT(*) FROM calls WHERE status != 'aborted'").fetchone()[0]
        self.assertEqual(n_calls, 30)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM programs").fetchone()[0],
                         summary["generations"])
        # Every evaluated proposal points at its program; the hang and the crash scored 0.
        for pid, outcome, prog in db.execute("SELECT id, outcome, program FROM proposals"):
            if outcome == "evaluated":
                self.assertIsNotNone(prog, pid)
        for code, score, correct, ok, feedback in db.execute(
                "SELECT code, score, correct, eval_ok, feedback FROM programs"):
            if "while True" in code:
                self.assertEqual((score, correct, ok), (0, 0, 0))
                self.assertIn("timed out", feedback)
            if "RuntimeError" in code:
                self.assertEqual((score, correct), (0, 0))
                self.assertIn("RuntimeError", feedback)
        # The best program: valid by our own check, with the stored score.
        best = json.loads((d / "out" / "best" / "best.json").read_text())[0]
        self.assertEqual(best["score"], summary["best_score"])
        ns = {}
        exec(compile((d / "out" / "best" / best["file"]).read_text(), "best", "exec"), ns)
        circles = ns["construct"]()
        self.assertTrue(packing_is_valid(circles))
        self.assertAlmostEqual(sum(t[2] for t in circles), best["score"], places=12)
        # Patch failures and novelty rejections are logged with their reason.
        lines = [json.loads(l) for l in (d / "out" / "calls.jsonl").read_text().splitlines()]
        calls = [l for l in lines if l["event"] == "call"]
        self.assertEqual(len(calls), 30)
        failed = [l["error"] for l in calls if l["result"] == "patch_failed"]
        self.assertTrue(any("SEARCH block 1 does not match" in e for e in failed), failed)
        for e in failed:  # a diff asked for and a program given, or the reverse
            self.assertTrue(e.startswith(("SEARCH block", "the answer holds no")), e)
        # The report: self-contained, with the lineage of the best program.
        html = (d / "out" / "report.html").read_text()
        p = Links()
        p.feed(html)
        self.assertEqual(p.external, [])
        self.assertIn("Lineage of the best program", html)
        self.assertTrue(any(h.startswith("#%d:" % best["program"]) for h in p.headings),
                        p.headings)

    def test_evaluator_checks_exactly(self):
        """The example's evaluator: touching circles pass, an overlap of one ulp fails."""
        d = scratch("evaluator")
        shutil.copy(EXAMPLE / "evaluate.py", d / "evaluate.py")

        def evaluate(circles):
            prog = d / "program.py"
            prog.write_text("def construct():\n    return %r\n" % (circles,))
            out = subprocess.run([PYTHON, "evaluate.py"], cwd=d, capture_output=True, text=True,
                                 env=dict(os.environ, SHOAL_PROGRAM=str(prog)), timeout=60)
            return json.loads(out.stdout)

        # 26 circles of radius 1/16 on a grid with spacing 1/8 touch exactly (all dyadic).
        grid = [((i % 8) / 8 + 1 / 16, (i // 8) / 8 + 1 / 16, 1 / 16) for i in range(26)]
        e = evaluate(grid)
        self.assertTrue(e["correct"], e)
        self.assertEqual(e["score"], 26 / 16)
        bad = list(grid)
        x, y, r = bad[1]
        bad[1] = (x - 2 ** -52, y, r)  # one ulp closer to circle 0
        e = evaluate(bad)
        self.assertFalse(e["correct"])
        self.assertIn("overlap", e["feedback"])
        bad = list(grid)
        bad[0] = (1 / 16 - 2 ** -57, 1 / 16, 1 / 16)  # one ulp out of the square
        self.assertFalse(evaluate(bad)["correct"])
        self.assertFalse(evaluate(grid[:25])["correct"])


SCORE_SH = r"""n=$(sed -n 's/^value = \([0-9]*\)$/\1/p' "$SHOAL_PROGRAM")
printf '{"score": %s, "metrics": {"v": %s}}\n' "$n" "$n"
"""


def scripted_task(folder, calls, latency):
    (folder / "initial.py").write_text("# EVOLVE-BLOCK-START\nvalue = 1\n# EVOLVE-BLOCK-END\n")
    (folder / "score.sh").write_text(SCORE_SH)
    (folder / "task.yml").write_text(f"""problem: maximise value
models:
  - name: a
    backend: mock
    latency_s: {latency}
    answers: ["```python\\n# EVOLVE-BLOCK-START\\nvalue = {{n}}\\n# EVOLVE-BLOCK-END\\n```"]
scorer: {{command: sh "$SHOAL_TASK_DIR/score.sh", timeout_s: 10}}
budget: {{calls: {calls}}}
concurrency: 3
seed: 9
algorithm:
  name: population
  initial: initial.py
  islands: 3
  migration_interval: 5
  grid: [{{metric: v, min: 0, max: 1000, bins: 20}}]
""")


class Interrupt(unittest.TestCase):
    def test_ctrl_c_then_resume(self):
        d = scratch("interrupt")
        scripted_task(d, 60, 0.1)
        proc = subprocess.Popen([shoal_bin(), "search", "task.yml", "--out", "out", "--quiet"],
                                cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        db_path = d / "out" / "population.db"
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.1)
            if db_path.exists():
                try:
                    with sqlite3.connect(db_path, timeout=5) as db:
                        if db.execute("SELECT COUNT(*) FROM programs").fetchone()[0] >= 8:
                            break
                except sqlite3.OperationalError:
                    pass
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 130, err)
        first = json.loads(out)
        self.assertLess(first["calls"], 60)
        db = sqlite3.connect(db_path)
        self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        calls = db.execute("SELECT COUNT(*) FROM calls WHERE status != 'aborted'").fetchone()[0]
        self.assertEqual(calls, first["calls"])
        status = db.execute("SELECT status FROM runs").fetchall()
        self.assertEqual(status, [("interrupted",)])
        db.close()
        r = run(["search", "task.yml", "--out", "out", "--resume", "--quiet"], d)
        self.assertEqual(r.returncode, 0, r.stderr)
        second = json.loads(r.stdout)
        self.assertEqual(second["calls"], 60)
        db = sqlite3.connect(db_path)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM calls WHERE status != 'aborted'")
                         .fetchone()[0], 60)
        ids = [i for (i,) in db.execute("SELECT id FROM programs ORDER BY id")]
        self.assertEqual(ids, list(range(1, len(ids) + 1)))
        self.assertEqual(len(ids), second["generations"])
        # Each proposal is recorded once; each evaluated one owns exactly one program.
        props = db.execute("SELECT id, outcome, program FROM proposals").fetchall()
        self.assertEqual(len({p[0] for p in props}), len(props))
        owned = db.execute("SELECT COUNT(*) FROM programs WHERE op NOT IN "
                           "('initial', 'migration')").fetchone()[0]
        self.assertEqual(owned, sum(1 for p in props if p[1] == "evaluated"))


if __name__ == "__main__":
    unittest.main()
