"""End-to-end tests of `shoal search TASK.yml` through the real binary.

The backends are shoal's mock backend (scripted answers) and a mock OpenAI-compatible server
written here with Python's http.server (independent of shoal's C++ test server). Scorers are
small Python programs; expected scores come from their formulas. The HTML view is checked by
running its own script under node with a minimal DOM.

Environment: SHOAL_BIN (the shoal binary), SHOAL_TEST_TMP (scratch folder).
"""

import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"


def shoal_bin():
    return os.environ.get("SHOAL_BIN") or str(REPO / "build" / "shoal")


def scratch(name):
    root = os.environ.get("SHOAL_TEST_TMP") or os.path.join(tempfile.gettempdir(), "shoal-e2e")
    path = Path(root) / ("search_cli_" + name)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run(args, cwd, timeout=120, env=None):
    return subprocess.run([shoal_bin()] + [str(a) for a in args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


# Scores an integer answer n as n / 1000, with feedback naming it.
SCORER = """import json, sys
n = int(sys.stdin.read().split()[0])
print(json.dumps({"score": n / 1000, "feedback": "got %d" % n}))
"""


def write_task(folder, calls, concurrency=1, extra_models="", algorithm="", latency=0.0,
               seed=3):
    (folder / "score.py").write_text(SCORER)
    text = f"""problem: Pick a number.
models:
  - {{name: even, backend: mock, answers: ["{{n}}"], latency_s: {latency}, price_output: 1000}}
  - {{name: odd, backend: mock, answers: ["{{n}} <b>&amp;</script>"], latency_s: {latency}}}
{extra_models}scorer:
  command: {PYTHON} score.py
  timeout_s: 20
budget: {{calls: {calls}}}
concurrency: {concurrency}
seed: {seed}
{algorithm}"""
    (folder / "task.yml").write_text(text)
    return folder / "task.yml"


# A minimal DOM: enough for tree.html's script to build its tree and show a node on click.
DOM_CHECK = r"""
const fs = require("fs");
const html = fs.readFileSync(process.argv[2], "utf8");
const data = html.match(/<script type="application\/json" id="data">([\s\S]*?)<\/script>/)[1];
const code = html.match(/<script>([\s\S]*?)<\/script>/)[1];
class El {
  constructor(tag) { this.tag = tag; this.children = []; this.textContent = ""; this.className = "";
    this.style = {}; this.hidden = false; this.listeners = {};
    this.classList = { add: () => {}, remove: () => {} }; }
  appendChild(c) { this.children.push(c); return c; }
  replaceChildren(...c) { this.children = c; }
  addEventListener(type, f) { this.listeners[type] = f; }
}
const ids = { tree: new El("div"), detail: new El("div"), title: new El("h1"),
              facts: new El("div"), models: new El("table") };
ids.data = new El("script"); ids.data.textContent = data;
global.document = { getElementById: (id) => ids[id], createElement: (t) => new El(t) };
new Function(code)();
const rows = [];
(function walk(e) { if (e.className === "node") rows.push(e); e.children.forEach(walk); })(ids.tree);
const texts = (e) => [e.textContent].concat(...e.children.map(texts));
rows[0].listeners.click({ target: rows[0] });
console.log(JSON.stringify({ rows: rows.map((r) => texts(r).join("|")),
                             detail: texts(ids.detail), title: ids.title.textContent }));
"""


class Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


class SearchCliTest(unittest.TestCase):
    def test_outputs_are_complete_and_valid(self):
        d = scratch("outputs")
        task = write_task(d, calls=16, concurrency=3)
        r = run(["search", task, "--out", d / "out"], cwd=d)
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout)
        self.assertEqual(summary["calls"], 16)
        self.assertEqual(summary["generations"], 16)
        self.assertEqual(summary["stop_reason"], "calls budget")

        tree = json.loads((d / "out" / "tree.json").read_text())
        self.assertEqual(tree["status"], "finished: calls budget")
        nodes = tree["search"]["nodes"]
        self.assertEqual(len(nodes), 16)
        cost = 0.0
        for n in nodes:
            k = int(n["state"].split()[0])
            self.assertEqual(n["score"], k / 1000)
            self.assertEqual(n["meta"]["feedback"], "got %d" % k)
            self.assertEqual(n["meta"]["model"], ["even", "odd"][n["action"]])
            cost += n["meta"]["cost_usd"]
        self.assertAlmostEqual(tree["totals"]["cost_usd"], cost, places=12)
        self.assertAlmostEqual(summary["cost_usd"], cost, places=12)

        lines = [json.loads(x) for x in (d / "out" / "calls.jsonl").read_text().splitlines()]
        self.assertEqual(len(lines), 16)
        self.assertEqual(sorted(x["node"] for x in lines), list(range(1, 17)))
        for x in lines:
            for key in ("model", "input_tokens", "output_tokens", "cost_usd", "latency_s",
                        "score", "error", "trial", "parent"):
                self.assertIn(key, x)

        best = sorted(nodes, key=lambda n: (-n["score"], n["id"]))
        listed = json.loads((d / "out" / "best" / "best.json").read_text())
        self.assertEqual([b["node"] for b in listed], [n["id"] for n in best[:5]])
        self.assertEqual((d / "out" / "best" / "1.txt").read_text(), best[0]["state"])
        self.assertEqual(summary["best_node"], best[0]["id"])

        html = (d / "out" / "tree.html").read_text()
        parser = Html()
        parser.feed(html)
        self.assertEqual(parser.tags.count("script"), 2)
        self.assertNotIn("src=", html)
        check = d / "dom_check.js"
        check.write_text(DOM_CHECK)
        page = subprocess.run(["node", check, d / "out" / "tree.html"], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(page.returncode, 0, page.stderr)
        shown = json.loads(page.stdout)
        self.assertEqual(len(shown["rows"]), 16)
        first = next(n for n in nodes if n["parent"] == 0)  # the first row: root's first child
        self.assertIn("#%d" % first["id"], shown["rows"][0])
        self.assertIn(first["state"], shown["detail"])  # the answer, "</script>" and all
        self.assertIn(first["meta"]["feedback"], shown["detail"])

    def test_resume_continues_with_the_same_counts(self):
        d = scratch("resume")
        write_task(d, calls=7)
        r = run(["search", "task.yml", "--out", "out"], cwd=d)
        self.assertEqual(r.returncode, 0, r.stderr)
        first = json.loads((d / "out" / "tree.json").read_text())

        again = run(["search", "task.yml", "--out", "out"], cwd=d)
        self.assertEqual(again.returncode, 1)
        self.assertIn("pass --resume", again.stderr)

        write_task(d, calls=15)
        r = run(["search", "task.yml", "--out", "out", "--resume"], cwd=d)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["calls"], 15)
        after = json.loads((d / "out" / "tree.json").read_text())
        self.assertEqual(after["totals"]["calls"], 15)
        self.assertEqual(after["totals"]["runs"], 2)
        self.assertEqual(after["search"]["nodes"][:7], first["search"]["nodes"])
        lines = [json.loads(x) for x in (d / "out" / "calls.jsonl").read_text().splitlines()]
        self.assertEqual([x["run"] for x in lines], [1] * 7 + [2] * 8)

        # The same 15 calls in one run give the same tree (concurrency 1: a fixed tell order).
        write_task(d, calls=15)
        r = run(["search", "task.yml", "--out", "straight"], cwd=d)
        straight = json.loads((d / "straight" / "tree.json").read_text())
        strip = lambda t: [{k: v for k, v in n.items() if k != "meta"}
                           for n in t["search"]["nodes"]]
        self.assertEqual(strip(straight), strip(after))

    def test_ctrl_c_saves_and_resume_finishes(self):
        d = scratch("interrupt")
        write_task(d, calls=8, concurrency=2, latency=0.5)
        proc = subprocess.Popen([shoal_bin(), "search", "task.yml", "--out", "out"], cwd=d,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn("--resume continues it", err)
        tree = json.loads((d / "out" / "tree.json").read_text())
        self.assertEqual(tree["status"], "interrupted")
        told = tree["search"]["nodes"]
        self.assertLess(len(told), 8)
        r = run(["search", "task.yml", "--out", "out", "--resume"], cwd=d)
        self.assertEqual(r.returncode, 0, r.stderr)
        after = json.loads((d / "out" / "tree.json").read_text())
        self.assertEqual(len(after["search"]["nodes"]), 8)
        self.assertEqual(after["search"]["pending"], [])
        self.assertEqual(after["search"]["nodes"][:len(told)], told)

    def test_a_401_stops_cleanly_with_the_tree_saved(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                body = json.dumps({"error": {"message": "Incorrect API key provided: sk-te****"}})
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            d = scratch("auth")
            url = "http://127.0.0.1:%d/v1" % server.server_address[1]
            write_task(d, calls=6, algorithm="algorithm: {name: repeated-sampling, "
                       "action: round-robin}\n", extra_models=f"""  - {{name: hosted, backend: http,
     base_url: '{url}', model: gpt-test, api_key_env: SHOAL_E2E_KEY}}
""")
            env = dict(os.environ, SHOAL_E2E_KEY="sk-test")
            r = run(["search", "task.yml", "--out", "out", "--log-json"], cwd=d, env=env)
        finally:
            server.shutdown()
            server.server_close()
        self.assertEqual(r.returncode, 1, r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("shoal: error:")]
        self.assertEqual(errors, ["shoal: error: backend 'hosted' (http gpt-test at " + url +
                                  "): HTTP 401: Incorrect API key provided: sk-te****"])
        events = [json.loads(ln) for ln in r.stderr.splitlines() if ln.startswith("{")]
        self.assertTrue(any(e.get("event") == "call" for e in events))
        tree = json.loads((d / "out" / "tree.json").read_text())
        self.assertTrue(tree["status"].startswith("stopped: backend 'hosted'"))
        # Round robin: even (told), odd (told), hosted (401) -> stop; both answers are kept.
        self.assertEqual([n["meta"]["model"] for n in tree["search"]["nodes"]], ["even", "odd"])
        self.assertEqual(tree["totals"]["calls"], 3)
        self.assertTrue((d / "out" / "tree.html").exists())
        self.assertTrue((d / "out" / "best" / "2.txt").exists())

    def test_the_offline_example_finds_a_correct_answer(self):
        d = scratch("offline")
        # One call at a time (the tells come in a fixed order, so the tree does not depend on
        # the machine's load), and fewer calls to keep the suite fast.
        examples = REPO / "examples" / "search"
        text = (examples / "offline" / "task.yml").read_text()
        for old, new in (("concurrency: 2\n", "concurrency: 1\n"), ("calls: 16", "calls: 6"),
                         ("python3 ../hosted/score.py", "python3 %s" % (examples / "hosted" /
                                                                        "score.py"))):
            self.assertIn(old, text)
            text = text.replace(old, new)
        (d / "task.yml").write_text(text)
        r = run(["search", "task.yml", "--out", d / "out"], cwd=d)
        self.assertEqual(r.returncode, 0, r.stderr)
        summary = json.loads(r.stdout)
        self.assertEqual(summary["calls"], 6)
        self.assertEqual(summary["scorer_failures"], 0)
        self.assertEqual(summary["best_score"], 1.0)  # the careful model's first answer
        self.assertIn("def parse_duration", (d / "out" / "best" / "1.txt").read_text())
        tree = json.loads((d / "out" / "tree.json").read_text())
        feedback = [n["meta"]["feedback"] for n in tree["search"]["nodes"]]
        self.assertIn("10 of 10 tests passed.", feedback)

    def test_config_errors_name_the_line(self):
        d = scratch("errors")
        write_task(d, calls=2)
        text = (d / "task.yml").read_text().replace("concurrency: 1", "concurency: 1")
        (d / "task.yml").write_text(text)
        r = run(["search", "task.yml"], cwd=d)
        self.assertEqual(r.returncode, 1)
        line = 1 + text.splitlines().index("concurency: 1")
        self.assertRegex(r.stderr, r"^shoal: error: .*task\.yml:%d: unknown key 'concurency'" % line)
        self.assertFalse((d / "task-search").exists())


if __name__ == "__main__":
    unittest.main()
