"""`sweep list [ROOT...] [--json]`: the sweeps under a root, with their progress.

ROOT defaults to $SCRATCH/sweeps (or ./sweeps). Progress comes from each sweep's result files and
one squeue call for all of them (no sacct): what is queued or running, what ended, what waits.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.errors import UserError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("list", help="list the sweeps under a directory, with their progress",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="*", metavar="ROOT", help="where to look (default: $SCRATCH/sweeps or ./sweeps)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def find_sweeps(roots: list[Path], depth: int = 3) -> list[Path]:
    """Directories holding a manifest.json, at most `depth` levels below each root."""
    found: list[Path] = []
    for root in roots:
        if mf.manifest_path(root).is_file():
            found.append(root)
            continue
        stack = [(root, 0)]
        while stack:
            here, level = stack.pop()
            try:
                entries = sorted(os.scandir(here), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False) and not e.name.startswith(".") and e.name != mf.TRIALS:
                    if os.path.isfile(os.path.join(e.path, mf.MANIFEST)):
                        found.append(Path(e.path))
                    elif level + 1 < depth:
                        stack.append((Path(e.path), level + 1))
    return sorted(set(found))


def summary(sweep: Path, queued: dict[str, int]) -> dict[str, Any]:
    from jobs.results import read_results
    from jobs.trial_state import TrialState

    manifest = mf.read_manifest(sweep)
    results = read_results(sweep, [t.id for t in manifest.trials])
    states = [TrialState.of_result(r) for r in results.values()]
    in_queue = sum(queued.get(j, 0) for j in manifest.job_ids())
    return {"sweep_dir": str(sweep), "name": manifest.name, "executor": manifest.settings.executor,
            "created": manifest.settings.created, "trials": len(manifest.trials),
            "completed": sum(s is TrialState.COMPLETED for s in states),
            "failed": sum(not s.is_final() for s in states), "ended": sum(s.is_ended() for s in states),
            "queued": in_queue, "waiting": len(manifest.unsubmitted_indices()),
            "cancelled": (sweep / mf.CANCEL_MARKER).exists()}


def _queued_by_job() -> dict[str, int]:
    """{array job id: tasks this user has pending or running}, from one squeue call ({} without Slurm)."""
    import shutil

    if shutil.which("squeue") is None:
        return {}
    from jobs import slurm
    from jobs.errors import SlurmError

    try:
        rows = slurm.squeue(None, user=slurm.current_user())
    except SlurmError:
        return {}
    out: dict[str, int] = {}
    for row in rows:
        out[row.job_id.job] = out.get(row.job_id.job, 0) + max(1, len(row.job_id.tasks()))
    return out


def run(args: argparse.Namespace) -> int:
    from launcher.sweepdir import sweeps_root

    roots = [Path(r) for r in args.roots] or [sweeps_root()]
    for root in roots:
        if not root.is_dir():
            raise UserError(f"{root} is not a directory", fix="pass the directory your sweeps are in")
    sweeps = find_sweeps(roots)
    queued = _queued_by_job() if sweeps else {}
    rows = []
    for sweep in sweeps:
        try:
            rows.append(summary(sweep, queued))
        except UserError as exc:
            rows.append({"sweep_dir": str(sweep), "error": str(exc)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print(f"no sweeps under {', '.join(map(str, roots))}")
        return 0
    from rich.table import Table

    from launcher.commands.status import console

    table = Table(title=f"{len(rows)} sweep(s) under {', '.join(map(str, roots))}", title_justify="left")
    for col in ("sweep", "trials", "ended", "completed", "failed", "queued", "waiting", "directory"):
        table.add_column(col, justify="left" if col in ("sweep", "directory") else "right",
                         no_wrap=col == "sweep", overflow="fold")
    for r in rows:
        if "error" in r:
            table.add_row("?", "", "", "", "", "", "", f"{r['sweep_dir']}: {r['error']}")
            continue
        name = r["name"] + (" (cancelled)" if r["cancelled"] else "")
        table.add_row(name, str(r["trials"]), f"{r['ended']}/{r['trials']}", str(r["completed"]), str(r["failed"]),
                      str(r["queued"]), str(r["waiting"]), r["sweep_dir"])
    console().print(table)
    return 0
