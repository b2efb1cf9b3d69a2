"""Benchmark: 200 trivial trials end to end on the test cluster, ours against a bare array.

    .venv/bin/python bench/e2e.py [--tasks 200] [--repeats 1] [--no-submitit]

Each contestant runs the same Python program (it writes a small JSON object to the file
named by $SWEEP_RESULT_FILE, atomically) and is timed from the moment its submission starts
until every result is on disk. Completion is seen by polling the disk, never Slurm:

  bare      `sbatch --array=0-<n-1>` of a two-line script that runs the program (the floor)
  sweep     `sweep launch spec.yaml --command 'python prog.py' --executor slurm` of a native
            file with `grid: {x: [0, ..., n-1]}` (or `--grid x=range(0,n)` with --inline-grid),
            as a command (its own start, imports, plan, sbatch included); done when every
            trials/<id>/result.json exists
  submitit  `AutoExecutor.map_array` of a function doing the same work (if submitit imports)

All three ask for the same resources (partition main, 1 CPU, the same time limit). Between
contestants the bench waits, untimed, until the cluster's queue holds none of its jobs, so
they never overlap. Prints each time (median of --repeats) and the ratio to bare; the goal
for ours is <= 1.2x bare. No pass/fail: numbers only. Every job is cancelled at the end.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PY = sys.executable
PARTITION = "main"
TIME_LIMIT = "00:10:00"
POLL_S = 0.05
DEADLINE_S = 300.0

# The trial program: what a user's trivial objective does (argv `x=<n>`, one JSON object out).
PROGRAM = """\
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
path = os.environ["SWEEP_RESULT_FILE"]
with open(path + ".tmp", "w") as f:
    json.dump({"value": float(args.get("x", 0)) ** 2}, f)
os.replace(path + ".tmp", path)
"""
BARE_SCRIPT = """\
#!/bin/bash
export SWEEP_RESULT_FILE={out}/$SLURM_ARRAY_TASK_ID.json
exec {py} {prog} x=$SLURM_ARRAY_TASK_ID
"""
SPEC = """\
name: bench-e2e
method: grid
grid:
  x: [{values}]
"""
PROFILE = f"""\
name: bench-e2e
partition: {PARTITION}
cpus_per_task: 1
time: "{TIME_LIMIT}"
max_array_size: 100000
max_queued_jobs: 100000
"""


def wait_files(paths: list[Path], t0: float) -> float:
    """Seconds from t0 until every path exists (checks only the ones still missing)."""
    missing = list(paths)
    deadline = t0 + DEADLINE_S
    while missing:
        missing = [p for p in missing if not p.exists()]
        if not missing:
            break
        if time.perf_counter() > deadline:
            raise SystemExit(f"bench/e2e.py: {len(missing)} results still missing after {DEADLINE_S:.0f}s "
                             f"(first: {missing[0]})")
        time.sleep(POLL_S)
    return time.perf_counter() - t0


def queue_empty(job_ids: list[str], timeout: float = 120.0) -> None:
    """Untimed: wait until Slurm no longer lists these jobs (their tasks left the node)."""
    deadline = time.monotonic() + timeout
    while job_ids and time.monotonic() < deadline:
        out = subprocess.run(["squeue", "--noheader", "-h", "-o", "%i", "-j", ",".join(job_ids)],
                             capture_output=True, text=True).stdout
        if not out.strip():
            return
        time.sleep(0.5)


# --- contestants: each returns seconds and appends its job ids to `jobs` at once ----------------
# (appended before the wait, so that a timeout still cancels them)

def run_bare(n: int, work: Path, prog: Path, jobs: list[str]) -> float:
    out = work / "bare"
    out.mkdir()
    script = BARE_SCRIPT.format(out=out, py=PY, prog=prog)
    t0 = time.perf_counter()
    job = subprocess.run(["sbatch", "--parsable", f"--array=0-{n - 1}", f"--partition={PARTITION}",
                          "--cpus-per-task=1", f"--time={TIME_LIMIT}", f"--output={out}/%A_%a.out"],
                         input=script, text=True, capture_output=True, check=True).stdout.strip().split(";")[0]
    jobs.append(job)
    return wait_files([out / f"{i}.json" for i in range(n)], t0)


def run_sweep(n: int, work: Path, prog: Path, jobs: list[str], inline_grid: bool = False) -> float:
    profile = work / "bench-e2e.yaml"
    profile.write_text(PROFILE)
    sweep = work / "sweep"
    if inline_grid:  # `--grid x=range(0,n)`: the Hydra override parser reads the axis
        what = ["--grid", f"x=range(0,{n})", "--name", "bench-e2e"]
    else:             # a native sweep file listing the values
        spec = work / "spec.yaml"
        spec.write_text(SPEC.format(values=", ".join(map(str, range(n)))))
        what = [str(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run([PY, "-m", "launcher", "launch", *what, "--command", f"{PY} {prog}",
                           "--executor", "slurm", "--cluster", str(profile), "--dir", str(sweep), "--json"],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"sweep launch failed:\n{proc.stderr}")
    jobs += [s["job_id"] for s in json.loads(proc.stdout)["submissions"]]
    manifest = json.loads((sweep / "manifest.json").read_text())
    paths = [sweep / "trials" / t["id"] / "result.json" for t in manifest["trials"]]
    return wait_files(paths, t0)


def _submitit_work(out: str, x: int) -> None:
    # The same work as PROGRAM, in the worker process submitit starts.
    path = os.path.join(out, f"{x}.json")
    with open(path + ".tmp", "w") as f:
        json.dump({"value": float(x) ** 2}, f)
    os.replace(path + ".tmp", path)


def run_submitit(n: int, work: Path, prog: Path, jobs: list[str]) -> float:
    import submitit

    out = work / "submitit-results"
    out.mkdir()
    t0 = time.perf_counter()
    executor = submitit.AutoExecutor(folder=work / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition=PARTITION, cpus_per_task=1, timeout_min=10,
                               slurm_array_parallelism=n)
    submitted = executor.map_array(functools.partial(_submitit_work, str(out)), range(n))
    jobs += sorted({j.job_id.split("_")[0] for j in submitted})
    return wait_files([out / f"{i}.json" for i in range(n)], t0)


def submitit_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("submitit") is not None


# --- main ----------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-submitit", action="store_true", help="skip submitit even if installed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (printed)")
    parser.add_argument("--inline-grid", action="store_true",
                        help="launch with `--grid x=range(0,n)` instead of a sweep file")
    args = parser.parse_args()
    if not shutil.which("sbatch"):
        print("bench/e2e.py: no sbatch on PATH; start the test cluster with `scripts/cluster.sh up`")
        return 2
    n = args.tasks
    contestants: dict[str, Callable[[int, Path, Path, list[str]], float]] = {
        "bare": run_bare, "sweep": functools.partial(run_sweep, inline_grid=args.inline_grid)}
    if not args.no_submitit and submitit_available():
        contestants["submitit"] = run_submitit
    times: dict[str, list[float]] = {k: [] for k in contestants}
    work_root = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    prog = work_root / "prog.py"
    prog.write_text(PROGRAM)
    all_jobs: list[str] = []
    try:
        for r in range(args.repeats):
            # Rotate the order so that no contestant always runs on a freshly idle controller.
            names = list(contestants)
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                work = work_root / f"{name}{r}"
                work.mkdir()
                jobs: list[str] = []
                try:
                    seconds = contestants[name](n, work, prog, jobs)
                finally:
                    all_jobs += jobs
                times[name].append(seconds)
                print(f"  run {r} {name:<9} {seconds:6.2f} s", flush=True)
                queue_empty(jobs)
    finally:
        if all_jobs:
            subprocess.run(["scancel", *all_jobs], check=False)
        if args.keep:
            print(f"work directory: {work_root}")
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n} trivial tasks, submission -> every result on disk, median of {args.repeats}:")
    print(f"  bare sbatch --array=0-{n - 1}   {med['bare']:6.2f} s")
    print(f"  sweep launch (slurm)         {med['sweep']:6.2f} s   ratio {med['sweep'] / med['bare']:.2f}x"
          "   (goal <= 1.2x)")
    if "submitit" in med:
        print(f"  submitit map_array           {med['submitit']:6.2f} s   ratio {med['submitit'] / med['bare']:.2f}x")
        print(f"  sweep / submitit             {med['sweep'] / med['submitit']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
