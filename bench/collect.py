"""Benchmark: collecting 100,000 trial results, ours against a naive loop, in the same run.

    .venv/bin/python bench/collect.py [--trials 100000] [--dir DIR] [--keep]

Writes synthetic result files (schema 1 as the task runner writes them, with realistic drift:
missing and extra keys, `metrics` instead of `results`, NaN/Infinity, old flat files, about
0.5% truncated or empty files) into a temporary directory (or --dir; reused if it already
holds them), then times, each in a fresh subprocess after its imports:

  naive:  glob + json.load per file + pandas.json_normalize (what analysis scripts do)
  ours:   results.collect.collect

and prints both times, the ratio and peak memory (ru_maxrss of the process; for ours also its
largest pool worker, so parent + workers x largest is an upper bound). Goal: ours <= 3 s on a
2-core machine, >= 5x faster than naive, < 1 GB. No pass/fail assertions: it prints.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_SIZES = (20000, 20000, 15000, 10000, 10000, 10000, 5000, 5000, 3000, 2000)


def _result(rng: random.Random, sweep: str, index: int, tid: str) -> dict:
    lr = 10 ** rng.uniform(-5, -2)
    hps = {"lr": lr, "arch.hidden_size": rng.choice([128, 256, 512]),
           "arch.halt_max_steps": rng.choice([4, 8, 16]), "weight_decay": rng.uniform(0, 1.0),
           "arch.use_gating": rng.random() < 0.5, "global_batch_size": rng.choice([256, 512, 768])}
    acc = max(0.0, min(1.0, 0.9 - abs(math.log10(lr) + 3.5) * 0.2 + rng.gauss(0, 0.05)))
    results = {"eval/exact_accuracy": acc * 0.6, "eval/accuracy": acc, "eval/lm_loss": 2.0 - acc,
               "train/lm_loss": 1.9 - acc, "eval/q_halt_accuracy": rng.random(), "eval/steps": rng.uniform(2, 16),
               "train/steps": rng.uniform(2, 16), "epoch": 20}
    status, error = "completed", None
    u = rng.random()
    if u < 0.02:
        status, error = "diverged", "loss became NaN at step 1200"
        results["eval/lm_loss"] = float("nan")
        results["train/lm_loss"] = float("inf")
    elif u < 0.03:
        status, error, results = "failed", "Traceback ...\nRuntimeError: CUDA out of memory", {}
    rec = {"schema": 1, "sweep": sweep, "trial": index, "trial_id": tid, "stage": index % 3,
           "environment": rng.choice(["sudoku-easy", "sudoku-hard"]), "hyperparameters": hps,
           "results": results, "status": status, "error": error,
           "timestamp": "2026-03-01T12:00:00Z", "runtime_s": rng.uniform(100, 4000),
           "job": {"id": f"{1000 + index // 1000}_{index % 1000}", "node": f"cn-{rng.randrange(40):03d}",
                   "attempt": rng.choice([0, 0, 0, 1, 2]), "gpu": "H100"}}
    # Drift: older runners, renamed keys, new keys.
    d = rng.random()
    if d < 0.05:
        rec.pop("runtime_s")
        rec["gpu_hours"] = rng.uniform(0.1, 2)
    elif d < 0.07:
        rec["metrics"] = rec.pop("results")
    elif d < 0.08:
        rec = {"hyperparameters": hps, "results": results}        # the researchers' flat format
    return rec


def generate(root: str, total: int, seed: int = 0) -> int:
    """Write `total` result files under root/sweeps/<name>/trials/<id>/; returns bad files written."""
    rng = random.Random(seed)
    sizes = [max(1, round(s * total / sum(SWEEP_SIZES))) for s in SWEEP_SIZES]
    sizes[0] += total - sum(sizes)
    bad = 0
    for k, size in enumerate(sizes):
        sweep = f"sweep{k:02d}"
        sdir = os.path.join(root, "sweeps", sweep)
        os.makedirs(os.path.join(sdir, "trials"), exist_ok=True)
        with open(os.path.join(sdir, "manifest.json"), "w") as f:
            json.dump({"schema": 1, "name": sweep, "trials": []}, f)
        for i in range(size):
            tid = f"{k:02d}{i:08x}"
            tdir = os.path.join(sdir, "trials", tid)
            os.mkdir(tdir)
            text = json.dumps(_result(rng, sweep, i, tid))
            u = rng.random()
            if u < 0.004:
                text, bad = text[: len(text) // 2], bad + 1       # a node died mid-write (no atomic write)
            elif u < 0.005:
                text, bad = "", bad + 1
            with open(os.path.join(tdir, "result.json"), "w") as f:
                f.write(text)
    return bad


NAIVE = r"""
import glob, json, resource, sys, time
import pandas as pd
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
c0 = cpu()
t = time.perf_counter()
records = []
for path in glob.glob(sys.argv[1] + "/sweeps/*/trials/*/result.json"):
    try:
        with open(path) as f:
            records.append(json.load(f))
    except (ValueError, OSError):
        pass
frame = pd.json_normalize(records)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "cpu": cpu() - c0, "rows": len(frame), "cols": frame.shape[1],
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

OURS = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from results.collect import collect
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
c0 = cpu()
t = time.perf_counter()
got = collect([sys.argv[1] + "/sweeps"])
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "cpu": cpu() - c0, "rows": len(got.frame), "cols": got.frame.shape[1], "skipped": len(got.skipped),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "worker_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _run(code: str, root: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, root, ROOT], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--dir", help="where to write the files (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the files afterwards")
    ap.add_argument("--repeat", type=int, default=1, help="time each side this many times, report the best")
    args = ap.parse_args()

    root = args.dir or tempfile.mkdtemp(prefix="bench-collect-")
    marker = os.path.join(root, f".generated-{args.trials}")
    try:
        if os.path.exists(marker):
            print(f"reusing {args.trials} result files in {root}")
        else:
            print(f"writing {args.trials} synthetic result files into {root} (temporary) ...", flush=True)
            t = time.perf_counter()
            bad = generate(root, args.trials)
            open(marker, "w").close()
            print(f"  done in {time.perf_counter() - t:.1f} s ({bad} deliberately corrupt or empty)")
        naive = min((_run(NAIVE, root) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        ours = min((_run(OURS, root) for _ in range(args.repeat)), key=lambda r: r["seconds"])
        mb = 1 / 1024
        print(f"naive (json.load + json_normalize): {naive['seconds']:.2f} s ({naive['cpu']:.2f} s CPU), {naive['rows']} rows, "
              f"{naive['cols']} cols, peak {naive['maxrss_kb'] * mb:.0f} MB")
        print(f"ours  (results.collect):            {ours['seconds']:.2f} s ({ours['cpu']:.2f} s CPU), {ours['rows']} rows, "
              f"{ours['cols']} cols, {ours['skipped']} skipped, peak {ours['maxrss_kb'] * mb:.0f} MB "
              f"(+ largest worker {ours['worker_maxrss_kb'] * mb:.0f} MB)")
        print(f"speed-up: {naive['seconds'] / ours['seconds']:.1f}x wall, {naive['cpu'] / ours['cpu']:.1f}x CPU   "
              f"(goal: ours <= 3 s, >= 5x, < 1 GB; cores: {len(os.sched_getaffinity(0))}; "
              f"load average now {os.getloadavg()[0]:.1f}: other work on the machine slows both sides)")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
