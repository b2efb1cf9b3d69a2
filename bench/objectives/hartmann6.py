"""Hartmann-6, minimise over [0, 1]^6; minimum -3.32237.

    python bench/objectives/hartmann6.py x1=0.2 x2=0.15 x3=0.48 x4=0.28 x5=0.31 x6=0.66
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args, write_value  # noqa: E402

MINIMUM = -3.32237
BOUNDS = {f"x{i}": (0.0, 1.0) for i in range(1, 7)}
ALPHA = (1.0, 1.2, 3.0, 3.2)
A = ((10, 3, 17, 3.5, 1.7, 8), (0.05, 10, 17, 0.1, 8, 14), (3, 3.5, 1.7, 10, 17, 8), (17, 8, 0.05, 10, 0.1, 14))
P = ((1312, 1696, 5569, 124, 8283, 5886), (2329, 4135, 8307, 3736, 1004, 9991),
     (2348, 1451, 3522, 2883, 3047, 6650), (4047, 8828, 8732, 5743, 1091, 381))


def hartmann6(x: list[float]) -> float:
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j] * 1e-4) ** 2 for j in range(6)))
                for i in range(4))


if __name__ == "__main__":
    p = parse_args(sys.argv[1:], tuple(BOUNDS))
    write_value(hartmann6([p[k] for k in BOUNDS]))
