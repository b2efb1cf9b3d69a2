"""Benchmark: `sweep status --json` on a 10,000-trial sweep, beside the one sacct call it makes.

    .venv/bin/python bench/status.py [--trials 10000] [--dir DIR] [--repeat 3] [--keep]

Builds a sweep directory (manifest.json with N trials, and result.json files for a mix:
60% completed, 5% failed, 2% diverged; the rest have none) and submits ONE real N-task array
to the test cluster, held (`sbatch --hold`) so that it never runs; the manifest records it as
the sweep's submission. Then, in this process, times:

  status:  launcher.commands.status.status_document(DIR)   (manifest + results + sacct + squeue)
  sacct:   jobs.slurm.sacct([array job id])                  (the single sacct call alone)

and prints the best of --repeat runs of each and their ratio. Goal: status < 1 s. The array is
cancelled at the end (also on Ctrl-C). No pass/fail assertion: it prints.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jobs import manifest as mf  # noqa: E402
from jobs import slurm  # noqa: E402
from jobs.atomic import write_json_atomic  # noqa: E402


def build(sweep_dir: str, n: int, seed: int = 0) -> dict:
    """Manifest + a mix of result files, as the launcher and the runner write them."""
    rng = random.Random(seed)
    trials = [{"id": f"{i:010x}", "index": i, "stage": 0,
               "params": {"lr": 10 ** rng.uniform(-5, -2), "arch.hidden_size": rng.choice([128, 256, 512])},
               "overrides": {}} for i in range(n)]
    manifest = {"schema": 1, "name": "bench-status", "metric": "exact_accuracy", "goal": "maximize",
                "command": ["python", "-m", "train"], "executor": "slurm", "cluster": {}, "max_attempts": 3,
                "trials": trials, "submissions": [], "unsubmitted": ""}
    os.makedirs(os.path.join(sweep_dir, mf.TRIALS), exist_ok=True)
    for t in trials:
        roll = rng.random()
        if roll >= 0.67:
            continue
        status = "completed" if roll < 0.60 else "failed" if roll < 0.65 else "diverged"
        tdir = os.path.join(sweep_dir, mf.TRIALS, t["id"])
        os.makedirs(tdir, exist_ok=True)
        with open(os.path.join(tdir, mf.RESULT), "w") as f:
            json.dump({"schema": 1, "sweep": "bench-status", "trial": t["index"], "trial_id": t["id"],
                       "stage": 0, "hyperparameters": t["params"], "status": status,
                       "results": {"exact_accuracy": rng.random(), "lm_loss": rng.random() * 2},
                       "error": "Traceback ...\nRuntimeError: boom" if status == "failed" else None,
                       "timestamp": "2026-01-01T00:00:00Z", "runtime_s": rng.uniform(10, 1000),
                       "job": {"id": f"1_{t['index']}", "node": "cn-a001", "attempt": 0, "gpu": "H100"}}, f)
    return manifest


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--dir", help="sweep directory to build (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the directory")
    args = parser.parse_args()
    sweep_dir = os.path.abspath(args.dir) if args.dir else tempfile.mkdtemp(prefix="bench-status-")
    t0 = time.perf_counter()
    manifest = build(sweep_dir, args.trials)
    print(f"built {args.trials} trials in {sweep_dir} ({time.perf_counter() - t0:.1f}s)")
    job = None
    try:
        # One real array, held so it never runs; it is what sacct and squeue report on.
        job = slurm.sbatch("#!/bin/sh\ntrue\n", [f"--array=0-{args.trials - 1}", "--hold",
                                                 "--output=/dev/null", "--job-name=bench-status"])
        manifest["submissions"].append({"stage": 0, "job_id": job, "array": f"0-{args.trials - 1}", "offset": 0,
                                        "indices": f"0-{args.trials - 1}", "dependency": None,
                                        "executor": "slurm", "submitted": "2026-01-01T00:00:00Z"})
        write_json_atomic(mf.manifest_path(sweep_dir), manifest)
        print(f"submitted held array job {job} with {args.trials} tasks")

        from launcher.commands.status import status_document

        status_document(sweep_dir)  # warm the imports and the page cache, as a second `status` would be
        status_s, doc = best_of(lambda: status_document(sweep_dir), args.repeat)
        sacct_s, rows = best_of(lambda: slurm.sacct([job]), args.repeat)
        print(f"counts: {doc['counts']}  (accounting {'on' if doc['accounting'] else 'off'}; "
              f"sacct returned {len(rows)} row(s))")
        print(f"status --json (in-process, best of {args.repeat}): {status_s * 1000:8.1f} ms   goal < 1000 ms")
        print(f"the single sacct call alone:                {sacct_s * 1000:8.1f} ms")
        print(f"ratio status / sacct:                       {status_s / sacct_s:8.2f}x")
    finally:
        if job:
            slurm.scancel([job])
            print(f"cancelled {job}")
        if not args.keep and not args.dir:
            shutil.rmtree(sweep_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
