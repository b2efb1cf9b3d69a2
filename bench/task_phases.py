"""Benchmark: where one array task's time goes, without Slurm (tasks one after another).

    .venv/bin/python bench/task_phases.py [--tasks 40]

bench/e2e.py's trivial program, with time stamps, runs --tasks times in each of three ways:

  bare   `python prog.py x=<i>`, the program alone
  fork   `python -S jobs/start.py SWEEP <i>`, as the sbatch template starts the runner: the program
         runs in a fork of the runner (jobs.inproc, the default)
  exec   the same with SLURMSWEEP_NO_INPROC=1: the runner starts a second interpreter

The program stamps time.time() at its first line and before it writes its metrics; with the
launch time, result.json's mtime and the process's end, each task splits into

  start    launch -> program's first line (interpreters, runner imports, manifest, fork, site)
  program  first line -> metrics written
  result   metrics -> trials/<id>/result.json renamed (wait, read, build, fsync, rename)
  exit     result.json -> the process is gone

plus CPU seconds (user + sys of the task's whole process tree) per task: the figure that decides
how many tasks a loaded node gets through, and the least noisy one. Rounds alternate the three
ways so that load from elsewhere falls on all of them. Prints medians (and min-max of CPU) and
the runner's import time from `python -S -X importtime`. Numbers only, no pass/fail.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e import runner_bytecode  # noqa: E402  (bench/ is sys.path[0])
from jobs import manifest as mf  # noqa: E402
from jobs.inproc import ENV_OFF  # noqa: E402

PY = sys.executable
RUNNER = str(ROOT / "jobs" / "run.py")
PROGRAM = """\
import time
t_first = time.time()
import json, os, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
path = os.environ["SWEEP_RESULT_FILE"]
with open(path + ".tmp", "w") as f:
    json.dump({"value": float(args.get("x", 0)) ** 2, "t_first": t_first, "t_last": time.time()}, f)
os.replace(path + ".tmp", path)
"""
WAYS = ("bare", "fork", "exec")


def make_sweep(work: Path, n: int) -> tuple[Path, list[str]]:
    from launcher import sweepdir
    from launcher.spec import SweepSpec
    from jobs.manifest import Trial

    trials = [Trial(id=f"t{i:04d}", index=i, params={"x": i}, overrides={"x": i}) for i in range(n)]
    manifest = sweepdir.build_manifest(SweepSpec(name="phases", command=(PY, str(work / "prog.py"))), trials,
                                       executor="local", cluster=None, workdir=str(work), max_attempts=1)
    return sweepdir.create(work / "sweep", manifest, "name: phases\n"), [t.id for t in trials]


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_one(way: str, i: int, work: Path, sweep: Path, trial_id: str, env: dict[str, str]) -> dict[str, float]:
    if way == "bare":
        out = work / "bare" / f"{i}.json"
        argv, env = [PY, str(work / "prog.py"), f"x={i}"], {**env, "SWEEP_RESULT_FILE": str(out)}
        metrics_path = result_path = out
    else:
        argv = [PY, "-S", RUNNER, str(sweep), str(i)]
        env = {**env, ENV_OFF: "1"} if way == "exec" else env
        metrics_path, result_path = None, mf.result_path(sweep, trial_id)
    cpu0, t0 = cpu_children(), time.time()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    t_end, cpu = time.time(), cpu_children() - cpu0
    data = json.loads(result_path.read_text())
    stamps = data if metrics_path else data["results"]
    t_result = result_path.stat().st_mtime_ns / 1e9
    return {"start": stamps["t_first"] - t0, "program": stamps["t_last"] - stamps["t_first"],
            "result": t_result - stamps["t_last"] if way != "bare" else 0.0,
            "exit": t_end - t_result, "total": t_end - t0, "cpu": cpu}


def runner_import_ms(runs: int = 5) -> float:
    """Top-level imports of `python -S jobs/start.py`, summed from -X importtime (ms, best of `runs`)."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import jobs.run, jobs.argv"
    best = float("inf")
    for _ in range(runs):
        err = subprocess.run([PY, "-S", "-X", "importtime", "-c", code], capture_output=True, text=True).stderr
        total = 0
        for line in err.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
                total += int(parts[1])   # cumulative us of a module imported at top level
        best = min(best, total / 1000)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=40)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "SWEEP_", ENV_OFF))}
    with tempfile.TemporaryDirectory(prefix="bench-phases-") as tmp:
        work = Path(tmp)
        (work / "prog.py").write_text(PROGRAM)
        (work / "bare").mkdir()
        sweeps = {way: make_sweep(work / way, args.tasks) for way in WAYS if way != "bare"}
        for way in sweeps:
            (work / way / "prog.py").write_text(PROGRAM)
        rows: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
        for i in range(args.tasks):
            for way in WAYS[i % 3:] + WAYS[:i % 3]:
                sweep, ids = sweeps.get(way, (None, [None] * args.tasks))
                rows[way].append(run_one(way, i, work / way if sweep else work, sweep, ids[i], env))
    print(f"{args.tasks} tasks each, one at a time; medians in ms (cpu: min-max); runner bytecode {runner_bytecode()}")
    print(f"  {'':6} {'start':>7} {'program':>8} {'result':>7} {'exit':>6} {'total':>7} {'cpu':>6} {'cpu range':>12}")
    cpu_bare = statistics.median(r["cpu"] for r in rows["bare"])
    for way in WAYS:
        med = {k: 1000 * statistics.median(r[k] for r in rows[way]) for k in rows[way][0]}
        lo, hi = (1000 * f(r["cpu"] for r in rows[way]) for f in (min, max))
        print(f"  {way:6} {med['start']:7.1f} {med['program']:8.1f} {med['result']:7.1f} {med['exit']:6.1f} "
              f"{med['total']:7.1f} {med['cpu']:6.1f} {lo:5.1f}-{hi:<6.1f} cpu {med['cpu'] / 1000 / cpu_bare:.2f}x bare")
    print(f"  runner imports (python -S -X importtime, top level, best of 5): {runner_import_ms():.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
