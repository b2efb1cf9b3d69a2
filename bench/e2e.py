"""Benchmark: 200 trivial trials end to end on the test cluster, ours against a bare array.

    .venv/bin/python bench/e2e.py [--tasks 200] [--repeats 1] [--no-submitit] [--compare-exec]
    .venv/bin/python bench/e2e.py --tasks 2000 --pack 50 --no-unpacked --no-submitit   # the packed case

Each contestant runs the same Python program (it writes a small JSON object to the file
named by $SWEEP_RESULT_FILE, atomically) and is timed from the moment its submission starts
until every result is on disk. Completion is seen by polling the disk, never Slurm:

  bare      `sbatch --array=0-<n-1>` of a two-line script that runs the program (the floor)
  sweep     `sweep launch spec.yaml --command 'python prog.py' --executor slurm` of a native
            file with `grid: {x: [0, ..., n-1]}` (or `--grid x=range(0,n)` with --inline-grid),
            as a command (its own start, imports, plan, sbatch included); done when every
            trials/<id>/result.json exists
  submitit  `AutoExecutor.map_array` of a function doing the same work (if submitit imports)
  exec      (--compare-exec) `sweep` again with SLURMSWEEP_NO_INPROC=1 (sbatch passes it on): the
            runner starts a second interpreter for the program instead of forking (jobs.inproc)
  packed    (--pack N) `sweep launch ... --pack N`: N trials one after another in each array task
            (goal: at least 5x faster than bare; HyperQueue claims < 0.1 ms overhead per task, Parsl ~5 ms)

All ask for the same resources (partition main, 1 CPU, the same time limit). Between
contestants the bench waits, untimed, until the cluster's queue holds none of its jobs, so
they never overlap. Prints each time (median of --repeats, min-max) and the ratio to bare;
the goal for ours is <= 1.2x bare (packed: bare / packed >= 5x). Each run also says when its first, middle and last result
landed (file mtimes): the first is latency (submission, scheduling, one task's start), the
spread after it is throughput (what every task costs the node); and the median CPU time of one
task from sacct (TotalCPU of its steps: script, runner, program), which other load on the
machine barely moves. The summary says whether the runner's modules had cached bytecode
(without it every task compiles them). No pass/fail: numbers only. Every job is cancelled at
the end.
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


CURVES: list[tuple[float, float, float]] = []   # (first, middle, last) result of each run, s


def runner_bytecode() -> str:
    """Whether the runner's modules have up-to-date bytecode in jobs/__pycache__.

    Without it every task compiles them (~1,000 lines, ~10 ms of CPU): the case under
    PYTHONDONTWRITEBYTECODE=1 until something writes the cache (pip does at install time).
    jobs/start.py (a few lines) is compiled on every start: python never caches the script it runs;
    `sweep launch` writes the rest (jobs.backends.slurm.compile_runner).
    """
    import importlib.util

    stale = []
    for name in ("__init__", "inproc", "bayes", "manifest", "atomic", "errors", "argv"):
        source = ROOT / "jobs" / f"{name}.py"
        try:
            header = Path(importlib.util.cache_from_source(str(source))).read_bytes()[:16]
        except OSError:
            stale.append(name)
            continue
        st = source.stat()
        if int.from_bytes(header[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF or \
                int.from_bytes(header[12:16], "little") != st.st_size & 0xFFFFFFFF:
            stale.append(name)
    if not stale:
        return "cached"
    return f"missing or stale for {', '.join(stale)} (compiled by every task)"


def wait_files(paths: list[Path], t0: float) -> float:
    """Seconds from t0 until every path exists (checks only the ones still missing)."""
    wall0 = time.time() - (time.perf_counter() - t0)
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
    seconds = time.perf_counter() - t0
    landed = sorted(p.stat().st_mtime - wall0 for p in paths)
    CURVES.append((landed[0], landed[len(landed) // 2], landed[-1]))
    return seconds


def cpu_seconds(text: str) -> float:
    """sacct's TotalCPU ('00:00.031', '01:02.500', '1:02:03', '2-01:02:03') -> seconds."""
    days, _, clock = text.strip().rpartition("-")
    total = 0.0
    for part in clock.split(":"):
        total = total * 60 + float(part)
    return total + int(days or 0) * 86400


def program_cpu(prog: Path, work: Path, runs: int = 20) -> float:
    """CPU seconds the program itself takes per trial, run alone: a whole interpreter (what bare
    pays per task) and, for the fork the runner uses, what is left after the interpreter's start."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for i in range(runs):
        subprocess.run([PY, str(prog), f"x={i}"], env={**os.environ, "SWEEP_RESULT_FILE": str(work / "p.json")},
                       check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / runs


def task_cpu(job_ids: list[str], n: int, timeout: float = 20.0) -> float | None:
    """Untimed: median CPU seconds of one task's steps (batch script, runner and program, and
    any srun step: sacct's TotalCPU), the measure least disturbed by other load. None if
    accounting lags."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["sacct", "-n", "-P", "-o", "JobID,TotalCPU", "-j", ",".join(job_ids)],
                             capture_output=True, text=True).stdout
        per_task: dict[str, float] = {}
        for line in out.splitlines():
            job, _, step = line.split("|")[0].partition(".")
            if step and step != "extern":   # the batch step, and srun steps (submitit runs one)
                per_task[job] = per_task.get(job, 0.0) + cpu_seconds(line.split("|")[1])
        if len(per_task) >= n:
            return statistics.median(per_task.values())
        if time.monotonic() > deadline:
            return None
        time.sleep(1.0)


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


def run_sweep(n: int, work: Path, prog: Path, jobs: list[str], inline_grid: bool = False,
              env: dict[str, str] | None = None, pack: int = 1) -> float:
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
    packing = ["--pack", str(pack)] if pack > 1 else []
    proc = subprocess.run([PY, "-m", "launcher", "launch", *what, "--command", f"{PY} {prog}", *packing,
                           "--executor", "slurm", "--cluster", str(profile), "--dir", str(sweep), "--json"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
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
    parser.add_argument("--compare-exec", action="store_true",
                        help="also run ours with SLURMSWEEP_NO_INPROC=1 (the program in a second interpreter)")
    parser.add_argument("--pack", type=int, default=0, metavar="N",
                        help="also run ours with --pack N (N trials per array task)")
    parser.add_argument("--no-unpacked", action="store_true", help="skip ours unpacked (with --pack, for big --tasks)")
    args = parser.parse_args()
    if not shutil.which("sbatch"):
        print("bench/e2e.py: no sbatch on PATH; start the test cluster with `scripts/cluster.sh up`")
        return 2
    n = args.tasks
    contestants: dict[str, Callable[[int, Path, Path, list[str]], float]] = {"bare": run_bare}
    if not args.no_unpacked:
        contestants["sweep"] = functools.partial(run_sweep, inline_grid=args.inline_grid)
    if args.pack > 1:
        contestants["packed"] = functools.partial(run_sweep, inline_grid=args.inline_grid, pack=args.pack)
    if not args.no_submitit and submitit_available():
        contestants["submitit"] = run_submitit
    if args.compare_exec:
        contestants["exec"] = functools.partial(run_sweep, inline_grid=args.inline_grid,
                                                env={"SLURMSWEEP_NO_INPROC": "1"})
    times: dict[str, list[float]] = {k: [] for k in contestants}
    cpus: dict[str, list[float]] = {k: [] for k in contestants}
    work_root = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    prog = work_root / "prog.py"
    prog.write_text(PROGRAM)
    own = program_cpu(prog, work_root)   # untimed: the program alone, before the cluster is busy
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
                queue_empty(jobs)
                tasks = -(-n // args.pack) if name == "packed" else n
                cpu = task_cpu(jobs, tasks)
                if cpu is not None and name == "packed":
                    cpu /= args.pack     # per trial
                if cpu is not None:
                    cpus[name].append(cpu)
                first, middle, last = CURVES[-1]
                print(f"  run {r} {name:<9} {seconds:6.2f} s   results landed: first {first:5.2f}  "
                      f"middle {middle:5.2f}  last {last:5.2f} s   cpu/trial "
                      + (f"{1000 * cpu:5.1f} ms" if cpu is not None else "n/a"), flush=True)
    finally:
        if all_jobs:
            subprocess.run(["scancel", *all_jobs], check=False)
        if args.keep:
            print(f"work directory: {work_root}")
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}

    def line(label: str, name: str) -> str:
        spread = f"({min(times[name]):.2f}-{max(times[name]):.2f})" if args.repeats > 1 else ""
        cpu = f"cpu/trial {1000 * statistics.median(cpus[name]):5.1f} ms  " if cpus[name] else ""
        return f"  {label:<29}{med[name]:6.2f} s {spread:<13} {cpu}"

    print(f"{n} trivial tasks, submission -> every result on disk, median of {args.repeats} (min-max); "
          f"runner bytecode {runner_bytecode()}:")
    print(line(f"bare sbatch --array=0-{n - 1}", "bare"))
    if "sweep" in med:
        print(line("sweep launch (slurm)", "sweep") + f"ratio {med['sweep'] / med['bare']:.2f}x   (goal <= 1.2x)")
    if "packed" in med:
        print(line(f"sweep launch --pack {args.pack}", "packed") + f"bare/packed {med['bare'] / med['packed']:.2f}x "
              "faster (goal >= 5x)")
        print(f"  per trial: wall {1000 * med['packed'] / n:.1f} ms (bare {1000 * med['bare'] / n:.1f} ms); the program "
              f"alone {1000 * own:.1f} ms CPU in its own interpreter"
              + (f"; packed trials {1000 * statistics.median(cpus['packed']):.1f} ms CPU each, "
                 f"{1000 * (statistics.median(cpus['packed']) - own):+.1f} ms above the program's own"
                 if cpus["packed"] else ""))
    if "exec" in med:
        print(line("  same, SLURMSWEEP_NO_INPROC=1", "exec") + f"ratio {med['exec'] / med['bare']:.2f}x")
    if "submitit" in med:
        print(line("submitit map_array", "submitit") + f"ratio {med['submitit'] / med['bare']:.2f}x")
        print(f"  sweep / submitit             {med['sweep'] / med['submitit']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
