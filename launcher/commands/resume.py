"""`sweep resume DIR`: run what the search still needs, under the sweep's lock.

    sweep resume DIR [--dry-run] [--retry-failed] [--retry-cancelled] [--max-attempts N]
                     [--max-parallel N] [--mem M --time T ...] [--detach] [--json]

By default: every trial that has no result and is not queued, and failures still under
--max-attempts. launcher.resuming does the work (jobs.resume says which trials and how they are
linked); this module parses the command line and prints.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.errors import UserError
from launcher.commands import add_resource_options, exit_code, resources_from


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("resume", help="resubmit the trials that have no result and are not queued",
                              description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n  sweep resume $SCRATCH/sweeps/lr_search --dry-run\n"
                                     "  sweep resume $SCRATCH/sweeps/lr_search --retry-failed --mem 32G")
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory (holds manifest.json)")
    p.add_argument("--dry-run", action="store_true", help="print what would be submitted; change nothing")
    p.add_argument("--retry-failed", action="store_true",
                   help="also rerun trials that failed (or timed out) after all their attempts")
    p.add_argument("--retry-cancelled", action="store_true", help="also rerun trials that were cancelled")
    p.add_argument("--max-attempts", type=int, metavar="N",
                   help="failed runs allowed per trial (default: the launch's); raising it reruns failures under it")
    p.add_argument("--max-parallel", type=int, metavar="N", help="trials running at once (default: the launch's)")
    add_resource_options(p)
    p.add_argument("--detach", action="store_true", help="local sweeps: run in the background")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from launcher.resuming import ResumeOptions, resume

    for flag in ("max_parallel", "max_attempts"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1", key=f"--{flag.replace('_', '-')}")
    sweep_dir = Path(args.sweep_dir).absolute()
    done = resume(sweep_dir, ResumeOptions(
        dry_run=args.dry_run, retry_failed=args.retry_failed, retry_cancelled=args.retry_cancelled,
        max_attempts=args.max_attempts, max_parallel=args.max_parallel, resources=resources_from(args),
        detach=args.detach))
    if done.run_here:   # a local sweep, in this terminal (after the lock: status and cancel work meanwhile)
        from jobs.backends import local

        done.doc["outcome"] = local.run_pool(sweep_dir, done.run_here, max_parallel=done.max_parallel or 1)
        _print(args, done.doc, dry_run=False)
        return exit_code(done.doc["outcome"].values())
    _print(args, done.doc, dry_run=args.dry_run)
    return 0


# --- output -----------------------------------------------------------------------------------------

def _print(args: argparse.Namespace, doc: dict[str, Any], *, dry_run: bool) -> None:
    if args.json:
        print(json.dumps(dict(doc, dry_run=dry_run), default=str, indent=1))
        return
    n = doc["submitted"]
    counts = " ".join(f"{k} {v}" for k, v in sorted(doc["counts"].items()))
    print(f"{doc['sweep_dir']}: {counts}")
    rec = doc["reconciled"]
    if rec["confirmed"] or rec["dropped"]:
        print(f"  settled an interrupted submission: {rec['confirmed']} found in Slurm"
              + (f", trials {rec['dropped']} never reached it" if rec["dropped"] else ""))
    if rec["duplicates_cancelled"]:
        print(f"  cancelled duplicate job(s) {', '.join(rec['duplicates_cancelled'])}")
    if doc.get("promoted"):
        print(f"  {'would promote' if dry_run else 'promoted'} {len(doc['promoted'])} trial(s) to their next rung "
              f"(successive halving): trials {mf.compact_ranges(doc['promoted'])}")
    if not n and not doc["cancel_stuck"] and not doc.get("promoted"):
        print("nothing to resume: every trial has a final result or is queued")
    if doc["cancel_stuck"]:
        print(f"  {'would cancel' if dry_run else 'cancelled'} {len(doc['cancel_stuck'])} task(s) held behind "
              "a failed dependency")
    for s in doc.get("submissions", []):
        dep = f" after {s['dependency']}" if s.get("dependency") else ""
        job = f"job {s['job_id']}: " if s.get("job_id") else ""
        print(f"  {job}stage {s.get('stage', 0)} array {s.get('array', '')} (trials {s['indices']}){dep}")
    if doc.get("blocked"):
        print(f"  skipped {len(doc['blocked'])} trial(s) whose earlier stage diverged, was pruned or is left as it is")
    kept = doc.get("kept") or []
    for state, flag in (("failed", "--retry-failed"), ("timeout", "--retry-failed"), ("cancelled", "--retry-cancelled")):
        k = sum(1 for t in kept if t["state"] == state)
        if k:
            print(f"  left {k} {state} trial(s) as they are ({flag} reruns them)")
    if doc.get("unsubmitted"):
        print(f"  trials {doc['unsubmitted']} wait for queue room")
    if doc.get("waiting"):
        print(f"  trials {doc['waiting']} wait for their earlier stage: "
              + ("the sweep's own tasks submit them when it completes" if doc.get("tops_up")
                 else "run `sweep resume` again after it"))
    for note in doc.get("notes", []):
        print(f"  note: {note}")
    if dry_run:
        print(f"dry run: would resubmit {n} trial(s); nothing changed")
    elif n:
        print(f"resubmitted {n} trial(s); watch: sweep status {doc['sweep_dir']}")
