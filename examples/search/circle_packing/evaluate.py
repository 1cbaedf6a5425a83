"""Evaluator of the circle packing example (standard library only).

shoal runs it in a fresh folder that holds the candidate as program.py ($SHOAL_PROGRAM). It imports
the program, calls construct(), checks validity exactly and prints one JSON object:
  {"score": sum of radii (0 when invalid), "correct": valid?, "metrics": {...}, "feedback": "..."}

Exact validity: every coordinate is a binary float, so Fraction(x) is its exact value; the checks
0 <= x - r, x + r <= 1 (same for y), r > 0 and (xi - xj)^2 + (yi - yj)^2 >= (ri + rj)^2 are done in
rational arithmetic, with no tolerance: touching circles are allowed, overlaps by 1e-300 are not.
"""
import importlib.util
import json
import math
import os
import sys
from fractions import Fraction

N = 26


def fail(message, **metrics):
    print(json.dumps({"score": 0.0, "correct": False, "metrics": metrics, "feedback": message}))
    sys.exit(0)


def main():
    path = os.environ.get("SHOAL_PROGRAM", "program.py")
    spec = importlib.util.spec_from_file_location("candidate", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        circles = module.construct()
    except Exception as e:  # the candidate's own error is feedback, not an evaluator failure
        fail("the program raised %s: %s" % (type(e).__name__, e))
    try:
        circles = [tuple(float(v) for v in c) for c in circles]
    except Exception:
        fail("construct() must return a list of (x, y, r) numbers")
    if len(circles) != N or any(len(c) != 3 for c in circles):
        fail("construct() must return %d tuples (x, y, r); got %d" % (N, len(circles)))
    if not all(math.isfinite(v) for c in circles for v in c):
        fail("a coordinate or radius is not finite")
    exact = [tuple(Fraction(v) for v in c) for c in circles]
    for i, (x, y, r) in enumerate(exact):
        if r <= 0:
            fail("circle %d has radius %r <= 0" % (i, circles[i][2]))
        if x - r < 0 or x + r > 1 or y - r < 0 or y + r > 1:
            fail("circle %d (%r) is not inside the unit square" % (i, circles[i]))
    worst = None
    for i in range(N):
        xi, yi, ri = exact[i]
        for j in range(i + 1, N):
            xj, yj, rj = exact[j]
            if (xi - xj) ** 2 + (yi - yj) ** 2 < (ri + rj) ** 2:
                gap = math.hypot(circles[i][0] - circles[j][0], circles[i][1] - circles[j][1])
                worst = (i, j, circles[i][2] + circles[j][2] - gap)
                fail("circles %d and %d overlap (by about %.3g)" % worst)
    total = sum(r for _, _, r in circles)
    radii = [r for _, _, r in circles]
    print(json.dumps({
        "score": total,
        "correct": True,
        "metrics": {"sum_radii": total, "min_radius": min(radii), "max_radius": max(radii)},
        "feedback": "valid packing of %d circles, sum of radii %.6f (best known about 2.6359)"
                    % (N, total),
    }))


if __name__ == "__main__":
    main()
