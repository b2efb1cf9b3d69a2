"""What the benchmark objectives share: key=value argv in, {"value": ...} to $SWEEP_RESULT_FILE out.

Stdlib only, so that an objective costs one Python start and nothing else: the benchmark
measures the search, not imports.
"""
from __future__ import annotations

import json
import os
import sys


def parse_args(argv: list[str], names: tuple[str, ...]) -> dict[str, float]:
    """`x1=0.5 x2=3` -> {"x1": 0.5, "x2": 3.0}; every name must be given, nothing else."""
    values: dict[str, float] = {}
    for arg in argv:
        key, sep, text = arg.partition("=")
        if not sep or key not in names:
            sys.exit(f"unexpected argument {arg!r}; expected {' '.join(n + '=<number>' for n in names)}")
        values[key] = float(text)
    missing = [n for n in names if n not in values]
    if missing:
        sys.exit(f"missing {', '.join(missing)}")
    return values


def write_value(value: float) -> None:
    """Write {"value": value} where the sweep runner looks for it (stdout outside a sweep)."""
    path = os.environ.get("SWEEP_RESULT_FILE")
    text = json.dumps({"value": value})
    if not path:
        print(text)
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
