"""Branin-Hoo, minimise over x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887 at three points.

    python bench/objectives/branin.py x1=-3.14 x2=12.27
"""
from __future__ import annotations

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args, write_value  # noqa: E402

MINIMUM = 0.397887
BOUNDS = {"x1": (-5.0, 10.0), "x2": (0.0, 15.0)}


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


if __name__ == "__main__":
    p = parse_args(sys.argv[1:], tuple(BOUNDS))
    write_value(branin(p["x1"], p["x2"]))
