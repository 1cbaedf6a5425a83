# Circle packing: place 26 disjoint circles inside the unit square so that the sum of their radii
# is as large as possible. The evaluator (evaluate.py) imports this file and calls construct().
# Only the code between the EVOLVE-BLOCK markers is changed by the search.
import math

# EVOLVE-BLOCK-START
def construct():
    """Returns 26 tuples (x, y, r): centre and radius of each circle."""
    n = 26
    cols, rows = 6, 5
    r = 0.5 / max(cols, rows) * 0.999
    circles = []
    for i in range(n):
        cx = (i % cols + 0.5) / cols
        cy = (i // cols + 0.5) / rows
        circles.append((cx, cy, r))
    return circles
# EVOLVE-BLOCK-END


if __name__ == "__main__":
    c = construct()
    print(len(c), sum(r for _, _, r in c))
