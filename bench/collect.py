"""Benchmark: collecting 100,000 trial results, ours against a naive script, in the same run.

    .venv/bin/python bench/collect.py [--trials 100000] [--dir DIR] [--keep] [--repeat 3]

Writes synthetic result files (schema 1 as the task runner writes them, with realistic drift:
missing and extra keys, `metrics` instead of `results`, NaN/Infinity, old flat files, about
0.5% truncated or empty files) and each sweep's result index (the line the runner appends per
result) into a temporary directory (or --dir; reused if it already holds them), then times:

  after imports (in a fresh process, the clock started once its imports are done):
    naive:  glob + json.load per file + pandas.json_normalize (what analysis scripts do)
    ours:   results.collect.collect (no cache)
  whole commands (the clock around the process, as a user feels it):
    naive:              python naive.py            (the same script, imports included)
    first collect:      sweep collect DIR --format csv --out F    (no cache yet; writes the caches)
    again, unchanged:   the same command                           (caches + result index)
    again, 1% changed:  after rewriting 1% of the results through the runner's path
    again, by stat:     sweep collect DIR ... --rescan             (what sweeps without an index get)

and prints each time (best of --repeat), the ratios and the machine's load average before and
after (other work on a shared machine slows every side). Goals (2 cores): first collect <= 1.2 s
and >= 3.5x the naive script; unchanged <= 0.5 s; 1% changed <= 0.7 s. No assertions: it prints.
"""
from __future__ import annotations

import argparse
import glob
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
sys.path.insert(0, ROOT)
from jobs import result_index  # noqa: E402  (stdlib only)

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


def write_indexes(root: str) -> None:
    """Each sweep's result index as the runner leaves it: one line per result written."""
    for sdir in sorted(glob.glob(os.path.join(root, "sweeps", "*"))):
        names = sorted(os.listdir(os.path.join(sdir, "trials")))
        os.makedirs(result_index.index_dir(sdir), exist_ok=True)
        with open(os.path.join(result_index.index_dir(sdir), "cn-001.jsonl"), "w") as f:
            f.write("".join(result_index.line(n, "completed") for n in names))


def rewrite_some(root: str, share: float, seed: int) -> int:
    """Rewrite `share` of the results as the runner would (rename into place, then an index
    line): a trial rerun, a result fixed. Returns how many."""
    rng = random.Random(seed)
    paths = sorted(glob.glob(os.path.join(root, "sweeps", "*", "trials", "*", "result.json")))
    picked = rng.sample(paths, max(1, round(share * len(paths))))
    for path in picked:
        tdir = os.path.dirname(path)
        sdir = os.path.dirname(os.path.dirname(tdir))
        rec = _result(rng, os.path.basename(sdir), rng.randrange(10 ** 6), os.path.basename(tdir))
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, path)
        result_index.append(sdir, os.path.basename(tdir), status=rec.get("status", "completed"))
    return len(picked)


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
got = collect([sys.argv[1] + "/sweeps"], cache=False)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "cpu": cpu() - c0, "rows": got.table.num_rows, "cols": got.table.num_columns,
                  "skipped": len(got.skipped), "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "worker_maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


PHASES = r"""
import glob, json, os, resource, sys, time
def cpu(who=resource.RUSAGE_SELF):
    r = resource.getrusage(who); return r.ru_utime + r.ru_stime
t0, c0 = time.perf_counter(), cpu()
sys.path.insert(0, sys.argv[2])
from results import collect as col, table
import pyarrow.csv
t1, c1 = time.perf_counter(), cpu()
got = col.collect([sys.argv[1] + "/sweeps"], wait=False)
t2, c2 = time.perf_counter(), cpu()
table.write(got.table, "csv", sys.argv[1] + "/phases.csv")
t3, c3 = time.perf_counter(), cpu()
got.wait()
t4, c4 = time.perf_counter(), cpu()
print(json.dumps({"imports": [t1 - t0, c1 - c0], "collect": [t2 - t1, c2 - c1], "csv": [t3 - t2, c3 - c2],
                  "caches": [t4 - t3, c4 - c3], "workers_cpu": cpu(resource.RUSAGE_CHILDREN), "parsed": got.parsed}))
"""


def _run(code: str, root: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, root, ROOT], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _whole(argv: list[str], env: dict[str, str]) -> dict:
    """One process timed from the outside: wall clock, and CPU of it and everything it waited for."""
    before = os.times()
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return {"seconds": wall, "cpu": (after.children_user - before.children_user) + (after.children_system - before.children_system)}


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def _clear_caches(root: str, env: dict[str, str]) -> None:
    for path in glob.glob(os.path.join(root, "sweeps", "*", "reports", "collect-cache.arrow")):
        os.unlink(path)
    shutil.rmtree(os.path.join(env["XDG_CACHE_HOME"], "slurmsweep"), ignore_errors=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--dir", help="where to write the files (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the files afterwards")
    ap.add_argument("--repeat", type=int, default=3, help="time each case this many times, report the best")
    args = ap.parse_args()

    root = args.dir or tempfile.mkdtemp(prefix="bench-collect-")
    marker = os.path.join(root, f".generated-{args.trials}")
    env = {**os.environ, "XDG_CACHE_HOME": os.path.join(root, "xdg-cache")}
    sweep_cmd = os.path.join(os.path.dirname(sys.executable), "sweep")
    sweep = [sweep_cmd] if os.path.exists(sweep_cmd) else [sys.executable, "-m", "launcher"]
    out = os.path.join(root, "all.csv")
    collect = [*sweep, "collect", os.path.join(root, "sweeps"), "--format", "csv", "--out", out]
    naive_script = os.path.join(root, "naive.py")
    try:
        if os.path.exists(marker):
            print(f"reusing {args.trials} result files in {root}")
            if not glob.glob(os.path.join(root, "sweeps", "*", result_index.INDEX_DIR)):
                write_indexes(root)
        else:
            print(f"writing {args.trials} synthetic result files into {root} (temporary) ...", flush=True)
            t = time.perf_counter()
            bad = generate(root, args.trials)
            write_indexes(root)
            open(marker, "w").close()
            print(f"  done in {time.perf_counter() - t:.1f} s ({bad} deliberately corrupt or empty)")
        with open(naive_script, "w") as f:
            f.write(NAIVE)
        print(f"load average before (1, 5, 15 min): {_load()}; cores: {len(os.sched_getaffinity(0))}", flush=True)
        R = args.repeat
        naive = _best([_run(NAIVE, root) for _ in range(R)])
        ours = _best([_run(OURS, root) for _ in range(R)])
        naive_whole = _best([_whole([sys.executable, naive_script, root], env) for _ in range(R)])
        first = []
        for _ in range(R):
            _clear_caches(root, env)
            first.append(_whole(collect, env))
        first = _best(first)
        unchanged = _best([_whole(collect, env) for _ in range(R)])
        changed, n_changed = [], 0
        for k in range(R):
            n_changed = rewrite_some(root, 0.01, seed=k)
            changed.append(_whole(collect, env))
        changed = _best(changed)
        by_stat = _best([_whole([*collect, "--rescan"], env) for _ in range(R)])
        _clear_caches(root, env)
        phases = _run(PHASES, root)

        mb = 1 / 1024
        print(f"after imports   naive (glob + json.load + json_normalize): {naive['seconds']:.2f} s "
              f"({naive['cpu']:.2f} s CPU), {naive['rows']} rows x {naive['cols']}, peak {naive['maxrss_kb'] * mb:.0f} MB")
        print(f"after imports   ours  (results.collect, no cache):         {ours['seconds']:.2f} s "
              f"({ours['cpu']:.2f} s CPU), {ours['rows']} rows x {ours['cols']}, {ours['skipped']} skipped, "
              f"peak {ours['maxrss_kb'] * mb:.0f} MB (+ largest worker {ours['worker_maxrss_kb'] * mb:.0f} MB)")
        print(f"                speed-up {naive['seconds'] / ours['seconds']:.1f}x wall, {naive['cpu'] / ours['cpu']:.1f}x CPU")
        print(f"whole command   naive script:                   {naive_whole['seconds']:.2f} s ({naive_whole['cpu']:.2f} s CPU)")
        print(f"whole command   sweep collect, first (no cache): {first['seconds']:.2f} s ({first['cpu']:.2f} s CPU)"
              f"   {naive_whole['seconds'] / first['seconds']:.1f}x the naive script   (goal <= 1.2 s, >= 3.5x)")
        print(f"whole command   again, unchanged:               {unchanged['seconds']:.2f} s ({unchanged['cpu']:.2f} s CPU)"
              f"   (goal <= 0.5 s)")
        print(f"whole command   again, {n_changed} changed (1%):        {changed['seconds']:.2f} s ({changed['cpu']:.2f} s CPU)"
              f"   (goal <= 0.7 s)")
        print(f"whole command   again, --rescan (by stat):      {by_stat['seconds']:.2f} s ({by_stat['cpu']:.2f} s CPU)"
              f"   (sweeps without a result index)")
        print("where a first collect's time goes (wall s / CPU s of this process; the parsing workers' CPU apart):")
        print("  python start + `sweep` parser: see the whole command minus the parts below")
        for name in ("imports", "collect", "csv", "caches"):
            wall, used = phases[name]
            print(f"  {name:8s} {wall:.2f} / {used:.2f}")
        print(f"  workers  CPU {phases['workers_cpu']:.2f} (reading, JSON, Arrow columns; {phases['parsed']} files)")
        print(f"best of {R}; load average after: {_load()} (other work on a shared machine slows every side)")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
