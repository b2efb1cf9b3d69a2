"""Benchmark: a 10,000-trial random sweep from spec to recorded submissions, on the real cluster.

    .venv/bin/python bench/launch.py [--trials 10000] [--repeats 1]

Measured in the same run, each `--repeats` times (median shown):
  bare      `sbatch --parsable --hold --array=0-<n-1>` of a one-line script (the floor)
  launch    `sweep launch SPEC --executor slurm` as a command (python start, imports,
            parse, plan, sweep directory, sbatch, manifest) -- what a user waits for
  inproc    the same through `launcher.cli.main` in this process (imports already paid)
  python    `python -c pass` with this interpreter: the floor of any command written in Python
            (bare sbatch of a held array is a few ms, so "3x bare" is below that floor)
Both sides submit held arrays (`--hold`, via a profile `sbatch: {hold: null}`) so that
10,000 tasks do not start on this machine; every job is cancelled afterwards.
Prints times, the ratio to bare (goal <= 3x, and < 2 s) and the sweep directory's
bytes per trial before any trial ran (goal < 1 KB). No pass/fail: numbers only.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEC = """
name: bench-launch
method: random
trials: {n}
command: [{python}, -c, "pass"]
fixed: {{data_path: data/sudoku-extreme-1k-aug-1000, epochs: 20000}}
space:
  lr: {{distribution: loguniform, min: 1e-5, max: 1e-3}}
  weight_decay: {{distribution: loguniform, min: 1e-6, max: 1e-1}}
  arch.hidden_size: [256, 512]
  loss.feudal_loss_weight: {{distribution: uniform, min: 0.0, max: 0.5}}
"""
PROFILE = """
name: bench
partition: main
time: "00:01:00"
max_array_size: 100000
max_queued_jobs: 100000
sbatch: {hold: null}
"""


def bare(n: int, work: Path) -> tuple[float, str]:
    script = "#!/bin/bash\ntrue\n"
    t0 = time.perf_counter()
    out = subprocess.run(["sbatch", "--parsable", "--hold", f"--array=0-{n - 1}", "--partition=main",
                          f"--output={work}/bare_%A_%a.out"], input=script, text=True, capture_output=True,
                         check=True).stdout
    return time.perf_counter() - t0, out.strip().split(";")[0]


def python_floor() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def launch_command(spec: Path, profile: Path, sweep: Path) -> tuple[float, list[str]]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "launcher", "launch", str(spec), "--executor", "slurm",
                          "--cluster", str(profile), "--dir", str(sweep), "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"sweep launch failed: {out.stderr}")
    return elapsed, [s["job_id"] for s in json.loads(out.stdout)["submissions"]]


def launch_inproc(spec: Path, profile: Path, sweep: Path) -> tuple[float, list[str]]:
    from launcher.cli import main

    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = main(["launch", str(spec), "--executor", "slurm", "--cluster", str(profile), "--dir", str(sweep),
                   "--json"])
    elapsed = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit("sweep launch failed in-process")
    return elapsed, [s["job_id"] for s in json.loads(buf.getvalue())["submissions"]]


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1,
                        help="each repeat leaves ~30,000 job records in slurmctld for MinJobAge (300 s here); "
                             "MaxJobCount is 200,000")
    args = parser.parse_args()
    if not shutil.which("sbatch"):
        print("bench/launch.py: no sbatch on PATH; start the test cluster with `scripts/cluster.sh up`")
        return 2
    n = args.trials
    work = Path(tempfile.mkdtemp(prefix="bench-launch-"))
    spec, profile = work / "spec.yaml", work / "bench.yaml"
    spec.write_text(SPEC.format(n=n, python=json.dumps(sys.executable)))
    profile.write_text(PROFILE)
    jobs: list[str] = []
    times: dict[str, list[float]] = {"bare": [], "launch": [], "inproc": [], "python": []}
    size = 0
    try:
        for r in range(args.repeats):
            times["python"].append(python_floor())
            t, job = bare(n, work)
            times["bare"].append(t)
            jobs.append(job)
            t, ids = launch_command(spec, profile, work / f"cmd{r}")
            times["launch"].append(t)
            jobs += ids
            size = dir_bytes(work / f"cmd{r}")
            t, ids = launch_inproc(spec, profile, work / f"inproc{r}")
            times["inproc"].append(t)
            jobs += ids
            subprocess.run(["scancel", *jobs], check=False)   # keep the controller's queue small
            jobs.clear()
    finally:
        if jobs:
            subprocess.run(["scancel", *jobs], check=False)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n} trials, median of {args.repeats}:")
    print(f"  bare sbatch --array=0-{n - 1}    {med['bare']:.3f} s")
    print(f"  sweep launch (command)        {med['launch']:.3f} s   ratio {med['launch'] / med['bare']:.1f}x"
          f"   (goal <= 3x and < 2 s)")
    print(f"  sweep launch (in-process)     {med['inproc']:.3f} s   ratio {med['inproc'] / med['bare']:.1f}x")
    print(f"  python -c pass (floor)        {med['python']:.3f} s   launch = {med['launch'] / med['python']:.0f}x that")
    print(f"  sweep directory before trials {size / n:.0f} bytes per trial (goal < 1024)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
