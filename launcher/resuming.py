"""`sweep resume`: what the search still needs, submitted under the sweep's lock.

jobs.resume says which trials run again and how they link to what still runs; this module applies
the command line's changes (resources, --max-attempts), cancels tasks stuck behind a failed
dependency, submits through jobs.submission (record first, then submit), promotes what successive
halving now ranks high enough, and returns what happened as a document. The command module
(launcher.commands.resume) parses and prints, as launcher.commands.launch does over launching.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.manifest import Trial


@dataclass
class ResumeOptions:
    dry_run: bool = False
    retry_failed: bool = False
    retry_cancelled: bool = False
    max_attempts: int | None = None
    max_parallel: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)   # --mem, --time, ... (win over the launch's)
    detach: bool = False                                      # local sweeps: run in the background


@dataclass
class Resumed:
    doc: dict[str, Any]                                       # what `--json` prints
    run_here: list[Trial] = field(default_factory=list)       # local, not detached: run in this terminal
    max_parallel: int | None = None


def resume(sweep_dir: Path, opts: ResumeOptions) -> Resumed:
    """Resume the sweep in `sweep_dir` (a dry run: say what would happen, change nothing)."""
    from jobs import promote
    from jobs import resume as choose
    from jobs.backends import SweepRef
    from jobs.state import collect
    from jobs.submission import open_sweep
    from launcher.launching import queue_budget

    with open_sweep(sweep_dir, "sweep resume") as session:
        manifest = session.manifest
        settings = manifest.settings
        if opts.resources:
            from launcher.cluster import with_resources

            settings = settings._replace(cluster=with_resources(settings.cluster, opts.resources,
                                                                source="command line"))
        if opts.max_attempts is not None:
            settings = settings._replace(max_attempts=opts.max_attempts)
        manifest = manifest.replace(settings=settings) if settings is not manifest.settings else manifest
        status = collect(sweep_dir, manifest)
        sel = choose.select(status, sweep_dir, max_attempts=settings.max_attempts,
                            timeout_requeues=settings.cluster.timeout_requeues, retry_failed=opts.retry_failed,
                            retry_cancelled=opts.retry_cancelled)
        max_parallel = opts.max_parallel or settings.max_parallel
        # The queue limit counts every job of the user (what squeue says is left, the stuck tasks about
        # to be cancelled given back), and never more than the sweep's own tasks leave of it.
        active = choose.queued_tasks(status, {t.trial.index for t in sel.stuck})
        stuck_tasks = choose.queued_tasks(status) - active
        budget = min(settings.cluster.max_queued_jobs - active,
                     queue_budget(settings.cluster, session.backend, opts.dry_run) + stuck_tasks)
        rp = choose.plan(status, sel.run, session.backend, SweepRef(sweep_dir, manifest),
                         budget=budget, max_parallel=max_parallel)
        doc = document(sweep_dir, status, sel, rp, session.reconciled)
        doc["tops_up"] = session.backend.uses_slurm and settings.cluster.submit_from_tasks
        if opts.dry_run:
            doc["promoted"] = [p.child for p in promote.due(sweep_dir, session.manifest)]
            return Resumed(doc)
        (sweep_dir / mf.CANCEL_MARKER).unlink(missing_ok=True)   # resuming undoes `sweep cancel`
        if manifest is not session.manifest:
            session.save(manifest)
        if sel.stuck and session.backend.uses_slurm:
            from jobs import slurm

            # One scancel for every task held behind a failed dependency (they never start).
            slurm.scancel([t.slurm_id for t in sel.stuck if t.slurm_id])
        if opts.retry_failed or opts.retry_cancelled:
            planned = set(rp.plan.planned)
            choose.clear_for_retry(sweep_dir, [t for t in sel.run if t.trial.index in planned])
        here = session.backend.name == "local" and not opts.detach
        before = len(session.manifest.submissions)
        # Later stages whose earlier stage still runs (and cannot be chained to it) wait with the trials
        # that wait for room: the top-up submits them once their parent has completed.
        session.submit(rp.plan, unsubmitted=sorted({*rp.plan.unsubmitted, *rp.waiting_for_parent}),
                       foreground=here, max_parallel=max_parallel)
        # Successive halving: what the results rank now climbs a rung (with what is left of the queue).
        doc["promoted"] = promote.promote_in(session, budget=budget - sum(len(a.task_ids) for a in rp.plan.arrays))
        submitted = list(session.manifest.submissions[before:])
    doc["submissions"] = [s.to_dict() for s in submitted]
    doc["pid"] = next((s.pid for s in submitted if s.pid is not None), None)
    wanted = set(rp.plan.planned)
    run_here = [t for t in manifest.trials if t.index in wanted] if here and submitted else []
    return Resumed(doc, run_here, max_parallel)


def document(sweep_dir: Path, status: Any, sel: Any, rp: Any, reconciled: Any) -> dict[str, Any]:
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
