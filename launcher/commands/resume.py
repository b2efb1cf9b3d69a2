"""`sweep resume DIR`: run what the search still needs, under the sweep's lock.

    sweep resume DIR [--dry-run] [--retry-failed] [--retry-cancelled] [--max-attempts N]
                     [--max-parallel N] [--mem M --time T ...] [--detach] [--json]

By default: every trial that has no result and is not queued, and failures still under
--max-attempts. jobs.resume says which trials and how they are linked; this module parses the
command line, submits through jobs.submission and prints.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.errors import UserError
from launcher.commands import add_resource_options, resources_from


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
    from jobs import promote, resume, slurm
    from jobs.backends import SweepRef
    from jobs.state import collect
    from jobs.submission import open_sweep

    sweep_dir = Path(args.sweep_dir).absolute()
    for flag in ("max_parallel", "max_attempts"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1", key=f"--{flag.replace('_', '-')}")
    resources = resources_from(args)
    with open_sweep(sweep_dir, "sweep resume") as session:
        manifest = session.manifest
        settings = manifest.settings
        if resources:
            from launcher.cluster import with_resources

            settings = settings._replace(cluster=with_resources(settings.cluster, resources,
                                                                             source="command line"))
            manifest = manifest.replace(settings=settings)
        if args.max_attempts is not None:
            settings = settings._replace(max_attempts=args.max_attempts)
            manifest = manifest.replace(settings=settings)
        status = collect(sweep_dir, manifest)
        sel = resume.select(status, sweep_dir, max_attempts=settings.max_attempts,
                            timeout_requeues=settings.cluster.timeout_requeues, retry_failed=args.retry_failed,
                            retry_cancelled=args.retry_cancelled)
        max_parallel = args.max_parallel or settings.max_parallel
        stuck = {t.trial.index for t in sel.stuck}
        active = resume.queued_tasks(status, stuck)
        rp = resume.plan(status, sel.run, session.backend, SweepRef(sweep_dir, manifest),
                         budget=settings.cluster.max_queued_jobs - active, max_parallel=max_parallel)
        doc = _document(sweep_dir, status, sel, rp, session.reconciled)
        doc["tops_up"] = session.backend.uses_slurm and settings.cluster.submit_from_tasks
        if args.dry_run:
            doc["promoted"] = [p.child for p in promote.due(sweep_dir, session.manifest)]
            _print(args, doc, dry_run=True)
            return 0
        (sweep_dir / mf.CANCEL_MARKER).unlink(missing_ok=True)   # resuming undoes `sweep cancel`
        if manifest is not session.manifest:
            session.save(manifest)
        if sel.stuck and session.backend.uses_slurm:
            # One scancel for every task held behind a failed dependency (they never start).
            slurm.scancel([t.slurm_id for t in sel.stuck if t.slurm_id])
        if args.retry_failed or args.retry_cancelled:
            planned = set(rp.plan.planned)
            resume.clear_for_retry(sweep_dir, [t for t in sel.run if t.trial.index in planned])
        local_foreground = session.backend.name == "local" and not args.detach
        before = len(session.manifest.submissions)
        # Later stages whose earlier stage still runs (and cannot be chained to it) wait with the trials
        # that wait for room: the top-up submits them once their parent has completed.
        session.submit(rp.plan, unsubmitted=sorted({*rp.plan.unsubmitted, *rp.waiting_for_parent}),
                       foreground=local_foreground,
                       max_parallel=max_parallel)
        # Successive halving: what the results rank now climbs a rung (with what is left of the queue).
        doc["promoted"] = promote.promote_in(session, budget=settings.cluster.max_queued_jobs - active
                                             - sum(len(a.task_ids) for a in rp.plan.arrays))
        submitted = list(session.manifest.submissions[before:])
    doc["submissions"] = [s.to_dict() for s in submitted]
    doc["submitted"] = len(rp.plan.planned)
    doc["pid"] = next((s.pid for s in submitted if s.pid is not None), None)
    if local_foreground and submitted:
        from jobs.backends import local

        wanted = set(rp.plan.planned)
        outcome = local.run_pool(sweep_dir, [t for t in manifest.trials if t.index in wanted],
                                 max_parallel=max_parallel or 1)
        doc["outcome"] = outcome
        _print(args, doc, dry_run=False)
        return 0 if all(s == "completed" for s in outcome.values()) else 1
    _print(args, doc, dry_run=False)
    return 0


# --- output -----------------------------------------------------------------------------------------

def _document(sweep_dir: Path, status: Any, sel: Any, rp: Any, reconciled: Any) -> dict[str, Any]:
    planned = set(rp.plan.planned)
    return {
        "sweep_dir": str(sweep_dir), "counts": status.counts(),
        "resubmit": [{"id": t.trial.id, "index": t.trial.index, "stage": t.trial.stage, "was": t.state.value}
                     for t in sel.run if t.trial.index in planned],
        "submitted": len(rp.plan.planned),
        "cancel_stuck": [t.slurm_id for t in sel.stuck],
        "blocked": [t.trial.index for t in sel.blocked],
        "kept": [{"index": t.trial.index, "state": t.state.value} for t in sel.kept],
        "submissions": [dict(a.to_dry_run()) for a in rp.plan.arrays],
        "unsubmitted": mf.compact_ranges(rp.plan.unsubmitted),
        "waiting": mf.compact_ranges(rp.waiting_for_parent),
        "reconciled": {"confirmed": reconciled.confirmed, "dropped": mf.compact_ranges(reconciled.dropped),
                       "duplicates_cancelled": reconciled.duplicates_cancelled},
        "notes": status.notes,
    }


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
