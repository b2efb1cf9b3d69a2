"""What the Slurm tests share: a counting test program, waiting on the real cluster (with what to look
at when it times out) and reading a sweep's results, jobs and start records back."""
from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs import manifest as mf

# A program that counts `steps` tenths of a second, checkpointing the count on a stop signal and going
# on from it when run again; `hold` (a file next to the sweep) keeps every trial counting, `forever`
# never ends on its own. Each start appends "<trial> <attempt>" to runs.log next to the sweep (`starts`)
# and touches trials/<id>/started.<attempt>.
COUNTING_PROGRAM = r"""
import os, sys, time
from jobs import runtime
ctx = runtime.context()
args = dict(a.split("=", 1) for a in sys.argv[1:])
root = os.path.dirname(os.environ["SWEEP_DIR"])
with open(os.path.join(root, "runs.log"), "a") as f:
    f.write(f"{ctx.trial_id} {ctx.attempt}\n")
stop = runtime.StopSignal.install()
ckpt = ctx.checkpoint_dir / "count"
start = count = int(ckpt.read_text()) if ckpt.exists() else 0
(ctx.trial_dir / f"started.{ctx.attempt}").touch()
while os.path.exists(os.path.join(root, "hold")) or args.get("forever") == "true" or count < int(args.get("steps", "0")):
    if stop.requested:
        ckpt.write_text(str(count))
        sys.exit(0)
    time.sleep(0.1)
    count += 1
runtime.write_metrics({"count": count, "resumed_from": start, "x": int(args["x"]) if "x" in args else None})
"""


def job_ids(sweep: Path) -> list[str]:
    return [s.job_id for s in mf.read_manifest(sweep).submissions if s.job_id]


def results(sweep: Path) -> dict[str, dict]:
    """{trial id: result.json} of every trial that has one."""
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("trials/*/result.json")}


def starts(tmp_path: Path) -> Counter:
    """{trial id: starts} from the runs.log the test programs append a line to when they start."""
    log = tmp_path / "runs.log"
    return Counter(line.split()[0] for line in log.read_text().splitlines()) if log.exists() else Counter()


def wait_for(predicate, timeout: float, what: str, *, sweep: Path | None = None, poll: float = 0.5) -> None:
    """Poll `predicate` until it holds; past `timeout` fail, after printing the queue and, given the
    sweep, its jobs in sacct and the end of every trial log and Slurm output."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            print(subprocess.run(["squeue"], capture_output=True, text=True).stdout)
            if sweep is not None:
                if (sweep / mf.MANIFEST).exists() and job_ids(sweep):
                    print(subprocess.run(["sacct", "-X", "-j", ",".join(job_ids(sweep))], capture_output=True,
                                         text=True).stdout)
                for log in [*sweep.glob("trials/*/trial.log"), *sweep.glob("logs/*.out")]:
                    print(f"--- {log}\n{log.read_text(errors='replace')[-3000:]}")
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
