"""`sweep cancel DIR [--json]`: stop the sweep's jobs (one scancel with the array job ids) and, for
local sweeps, its local supervisors (SIGTERM: running trials checkpoint and record `preempted`).

Cancelled trials keep their directories and checkpoints: `sweep resume DIR` continues the search.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.state import LOCAL_PREFIX, slurm_job_ids, supervisor_alive


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("cancel", help="cancel the sweep's Slurm jobs / local supervisor",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory (holds manifest.json)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def local_supervisors(manifest: dict[str, Any]) -> list[int]:
    """Pids of the sweep's local supervisors that still run (recycled pids excluded)."""
    pids: dict[int, None] = {}
    for sub in manifest.get("submissions", []):
        if sub.get("executor") == "local" and supervisor_alive(sub):
            pids[int(str(sub["job_id"])[len(LOCAL_PREFIX):])] = None
    return [p for p in pids if p != os.getpid()]


def cancel(sweep_dir: str) -> dict[str, Any]:
    """Cancel everything the sweep has in flight; return what was cancelled."""
    manifest = mf.read_manifest(sweep_dir)
    job_ids = slurm_job_ids(manifest)
    if job_ids:
        from jobs import slurm

        slurm.scancel(job_ids)  # one call; jobs already gone are not an error
    stopped = []
    for pid in local_supervisors(manifest):
        try:
            # The supervisor turns TERM into an unwind that stops its runners cleanly.
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except ProcessLookupError:
            pass
    return {"sweep_dir": sweep_dir, "jobs": job_ids, "local_pids": stopped}


def run(args: argparse.Namespace) -> int:
    done = cancel(str(Path(args.sweep_dir).absolute()))
    if args.json:
        print(json.dumps(done))
        return 0
    if not done["jobs"] and not done["local_pids"]:
        print(f"{done['sweep_dir']}: nothing to cancel (no Slurm job, no live local supervisor)")
        return 0
    if done["jobs"]:
        print(f"cancelled Slurm job(s) {', '.join(done['jobs'])}")
    if done["local_pids"]:
        print(f"stopped local supervisor(s) {', '.join(map(str, done['local_pids']))}")
    print(f"continue later with: sweep resume {done['sweep_dir']}")
    return 0
