"""What the Slurm tests share: waiting on the real cluster (with what to look at when it times out)
and reading a sweep's results, jobs and start records back."""
from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs import manifest as mf


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
