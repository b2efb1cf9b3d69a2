"""A synthetic learning curve with a known optimum, for successive halving (bench/search_efficiency.py).

    python curve.py x1=<0..1> x2=<0..1> x3=<0..1> steps=<T> [checkpoint_path=<dir>]

The loss after t steps of training is f(x) + g(x) / sqrt(t) (lower is better):
    f(x) = 1 + 4 |x - x*|^2,  x* = (0.3, 0.6, 0.8)     where training converges: minimum 1.0 at x*
    g(x) = 0.2 + 2 (1 - x1)                             how slowly it gets there
Configurations near the optimum (small x1) learn slowly, so early rungs rank them too low: the
curves cross, as real ones do. The best loss any x reaches at budget T is `optimum(T)` (exact).

Like a real trainer it resumes: from its own checkpoint (a requeued run), else from checkpoint_path
(the rung below), it trains only the steps it has not done yet, and reports how many it ran
(`steps_run`, the compute the benchmark counts). Stdlib only.
"""
from __future__ import annotations

import json
import math
import os
import sys

X_STAR = (0.3, 0.6, 0.8)


def loss(x: tuple[float, float, float], t: int) -> float:
    f = 1 + 4 * sum((a - b) ** 2 for a, b in zip(x, X_STAR))
    g = 0.2 + 2 * (1 - x[0])
    return f + g / math.sqrt(t)


def optimum(t: int) -> float:
    """min over x of loss(x, t): x2, x3 at x*; x1 = 0.3 + 1 / (4 sqrt(t)) (where d/dx1 vanishes)."""
    x1 = min(1.0, X_STAR[0] + 1 / (4 * math.sqrt(t)))
    return loss((x1, X_STAR[1], X_STAR[2]), t)


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    x = (float(args["x1"]), float(args["x2"]), float(args["x3"]))
    steps = int(args["steps"])
    ckpt_dir = os.environ.get("SWEEP_CHECKPOINT_DIR")
    done = 0
    for source in (ckpt_dir, args.get("checkpoint_path")):
        if source and os.path.exists(os.path.join(source, "state.json")):
            with open(os.path.join(source, "state.json")) as f:
                done = json.load(f)["step"]
            break
    if ckpt_dir:
        os.makedirs(ckpt_dir, exist_ok=True)
        with open(os.path.join(ckpt_dir, "state.json"), "w") as f:
            json.dump({"step": steps}, f)
    metrics = {"value": loss(x, steps), "steps_run": max(0, steps - done), "steps": steps}
    path = os.environ.get("SWEEP_RESULT_FILE")
    if not path:
        print(json.dumps(metrics))
        return
    with open(f"{path}.tmp", "w") as f:
        json.dump(metrics, f)
    os.replace(f"{path}.tmp", path)


if __name__ == "__main__":
    main(sys.argv[1:])
