"""`sweep cancel DIR [--json]`: stop everything the sweep has queued or running, for good.

Under the sweep's lock: first a `cancelled` marker in the sweep directory (so that no task
requeues itself on the signal, and nothing tops the queue up), then one scancel with the array
job ids (or SIGTERM to a local pool). Running trials checkpoint and record `cancelled`; trials
that never started show as cancelled too. `sweep resume DIR` continues the search (and
`--retry-cancelled` reruns the cancelled trials).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from jobs import manifest as mf

# How long to watch the queue drain after scancel (a running task writes its result first).
DRAIN_S = 60.0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("cancel", help="cancel the sweep's Slurm jobs / local pool, for good",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory (holds manifest.json)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def cancel(sweep_dir: Path) -> dict[str, Any]:
    """Cancel everything the sweep has in flight; return what was cancelled and what is left."""
    from jobs.atomic import write_text_atomic
    from jobs.manifest import now_iso
    from jobs.state import collect, watch_delays
    from jobs.submission import filesystem_error, open_sweep

    with open_sweep(sweep_dir, "sweep cancel") as session:
        try:
            write_text_atomic(sweep_dir / mf.CANCEL_MARKER, now_iso() + "\n")
        except OSError as exc:
            raise filesystem_error(sweep_dir / mf.CANCEL_MARKER, exc) from None
        done = session.backend.cancel(session.ref)
        manifest = session.manifest
    # Wait for what Slurm still holds to leave (tasks record `cancelled` on the way out).
    deadline = time.monotonic() + DRAIN_S
    delays = watch_delays(start=1.0, cap=5.0)   # each look is one sacct and one squeue: back off
    while True:
        left = [t.trial.id for t in collect(sweep_dir, manifest).active()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(next(delays))
    return {"sweep_dir": str(sweep_dir), "jobs": done.get("jobs", []), "local_pids": done.get("local_pids", []),
            "still_active": left}


def run(args: argparse.Namespace) -> int:
    done = cancel(Path(args.sweep_dir).absolute())
    if args.json:
        print(json.dumps(done))
        return 0
    if not done["jobs"] and not done["local_pids"]:
        print(f"{done['sweep_dir']}: nothing to cancel (no Slurm job, no live local pool)")
    if done["jobs"]:
        print(f"cancelled Slurm job(s) {', '.join(done['jobs'])}")
    if done["local_pids"]:
        print(f"stopped local pool(s) {', '.join(map(str, done['local_pids']))}")
    if done["still_active"]:
        print(f"  {len(done['still_active'])} trial(s) are still stopping; `sweep status` shows when they are gone")
    print(f"continue later with: sweep resume {done['sweep_dir']}  (--retry-cancelled reruns the cancelled trials)")
    return 0
