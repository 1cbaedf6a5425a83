#!/usr/bin/env python3
"""Scorer for `shoal search`: reads an answer on stdin, runs test_parse_duration.py against the
Python code in it, and prints {"score": passed / total, "feedback": "..."}.

The code is the longest ```python block of the answer (or the whole answer when it has none). It
runs in a fresh temporary folder, in a child process with a 10 s limit, so a crash, an infinite
loop or a syntax error in the answer is a score of 0 with the reason as feedback, which the next
refinement prompt shows to the model.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = "test_parse_duration.py"

# Runs inside the temporary folder: the tests, one result per test, as JSON on stdout.
RUNNER = r"""
import json, sys, unittest
suite = unittest.defaultTestLoader.loadTestsFromName("test_parse_duration")
result = unittest.TestResult()
suite.run(result)
failed = [(str(t).split()[0], tb.strip().splitlines()[-1]) for t, tb in result.failures + result.errors]
print(json.dumps({"total": result.testsRun, "failed": failed}))
"""


def extract_code(answer):
    blocks = re.findall(r"```(?:python|py)?[ \t]*\n(.*?)```", answer, re.S)
    return max(blocks, key=len) if blocks else answer


def report(score, feedback):
    print(json.dumps({"score": score, "feedback": feedback}))


def main():
    code = extract_code(sys.stdin.read())
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "solution.py"), "w") as f:
            f.write(code)
        shutil.copy(os.path.join(HERE, TESTS), tmp)
        try:
            run = subprocess.run([sys.executable, "-c", RUNNER], cwd=tmp, capture_output=True,
                                 text=True, timeout=10)
        except subprocess.TimeoutExpired:
            return report(0.0, "The tests did not finish within 10 s (an infinite loop?).")
    try:
        result = json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        error = (run.stderr.strip().splitlines() or ["no output"])[-1]
        return report(0.0, "The code could not be tested: " + error)
    total, failed = result["total"], result["failed"]
    if total == 0:
        return report(0.0, "No test ran.")
    passed = total - len(failed)
    lines = ["%d of %d tests passed." % (passed, total)]
    lines += ["- %s: %s" % (name, why) for name, why in failed]
    report(passed / total, "\n".join(lines))


if __name__ == "__main__":
    main()
