"""`sweep sync SWEEP`: upload the sweep's finished offline W&B runs, once each (results/wandb_sync.py)."""
from __future__ import annotations

import argparse
import os
import sys

HELP = "upload a sweep's finished offline W&B runs (from the login node), oldest first, once each"

EPILOG = """\
Trials on compute nodes log W&B offline (WANDB_MODE=offline is the default under Slurm). Run this
on a node with internet, as often as you like: runs already uploaded, runs whose trial has no
result yet and runs written to in the last --settle seconds are left alone.
examples:
  sweep sync $SCRATCH/sweeps/lr --dry-run          # what would be uploaded, and why the rest waits
  sweep sync $SCRATCH/sweeps/lr --parallel 8
  watch -n 600 sweep sync $SCRATCH/sweeps/lr       # keep W&B up to date while the sweep runs
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sync", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", metavar="SWEEP", help="the sweep directory")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded (and what waits, and why); upload nothing")
    p.add_argument("--parallel", type=int, default=4, metavar="N", help="`wandb sync` processes at a time (default 4)")
    p.add_argument("--settle", type=float, default=60.0, metavar="SECONDS",
                   help="leave runs written to in the last SECONDS (default 60)")
    p.add_argument("--project", help="upload into this W&B project instead of the runs' own")
    p.add_argument("--entity", help="upload under this W&B entity instead of the runs' own")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from jobs.errors import UserError
    from results import wandb_sync as ws

    if args.parallel < 1:
        raise UserError(f"--parallel {args.parallel} is less than 1", fix="give a number of processes, e.g. --parallel 4")
    sweep = os.path.abspath(args.sweep_dir)
    sel = ws.select(sweep, settle_s=args.settle)
    rel = lambda path: os.path.relpath(path, sweep)  # noqa: E731 - short names in a listing
    if not sel.ready and not sel.skipped:
        print(f"no offline W&B runs under {sweep}/trials: its trials log to W&B with enable_wandb=true "
              "(the trainer) or wandb=true (examples.keydoor)")
        return 0
    verb = "would upload" if args.dry_run else "uploading"
    print(f"{verb} {len(sel.ready)} run(s), oldest first:")
    for r in sel.ready:
        print(f"  {rel(r.directory)}")
    if sel.skipped:
        print(f"leaving {len(sel.skipped)} run(s):")
        for r, why in sel.skipped:
            print(f"  {rel(r.directory)}: {why}")
    if args.dry_run or not sel.ready:
        return 0
    # Once, quickly, before any upload: a compute node without internet fails here, in one line.
    ws.check_reachable(ws.server_url())
    extra = [*(["--project", args.project] if args.project else []), *(["--entity", args.entity] if args.entity else [])]
    uploaded, failed = ws.upload(sel, parallel=args.parallel, extra_args=extra,
                                 say=lambda line: print(line, file=sys.stderr))
    print(f"uploaded {uploaded} run(s)" + (f"; {failed} failed (they are retried by the next `sweep sync`)" if failed else ""))
    return 1 if failed else 0
