"""`sweep resume DIR [--dry-run] [--max-parallel N] [--json]`: run what the search still needs.

Resubmits exactly the trials whose state needs a run (no completed/diverged/pruned result, not
pending or running), with their same ids and indices, through the launch backends' own
submission code. Progressive stages stay linked:

    parent being resubmitted too  -> the child's array waits on the parent's new array (aftercorr)
    parent still pending/running  -> the child's array waits on the parent's existing array, with
                                     the child at its parent's task id (aftercorr pairs task ids)
    parent completed              -> the child runs at once
    parent diverged or pruned     -> the child is skipped: it would start from a dead checkpoint

Tasks Slurm holds behind a dependency that can never be satisfied (their parent failed) are
cancelled first and resubmitted with the rest. The queue limit counts what is already queued;
what does not fit stays `unsubmitted` for the next resume.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from jobs import manifest as mf
from jobs.errors import UserError
from jobs.state import NEVER_SATISFIED, SweepStatus, TrialState, TrialStatus, collect


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("resume", help="resubmit the trials that have no result and are not queued",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory (holds manifest.json)")
    p.add_argument("--dry-run", action="store_true", help="print what would be submitted; change nothing")
    p.add_argument("--max-parallel", type=int, metavar="N",
                   help="trials running at once (default: the launch's)")
    p.add_argument("--detach", action="store_true", help="local sweeps: run in the background")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


# --- choosing -------------------------------------------------------------------------------------

@dataclass
class Selection:
    run: list[TrialStatus] = field(default_factory=list)       # to submit
    blocked: list[TrialStatus] = field(default_factory=list)   # parent diverged/pruned: never
    stuck: list[TrialStatus] = field(default_factory=list)     # queued behind a failed dependency


def select(status: SweepStatus) -> Selection:
    """Split the trials: which to resubmit, which can never run, which Slurm holds for nothing."""
    by_id = {t.trial["id"]: t for t in status.trials}
    sel = Selection()
    memo: dict[str, bool] = {}

    def dead_parent(t: TrialStatus) -> bool:
        """True when an ancestor ended for good without completing (diverged or pruned)."""
        tid = t.trial["id"]
        if tid not in memo:
            memo[tid] = False  # guards a (malformed) cycle
            parent = by_id.get(t.trial.get("parent") or "")
            if parent is None:
                memo[tid] = False
            elif parent.state.is_final():
                memo[tid] = parent.state is not TrialState.COMPLETED
            else:
                memo[tid] = dead_parent(parent)
        return memo[tid]

    for t in status.trials:
        stuck = t.state.is_active() and t.reason == NEVER_SATISFIED
        if stuck:
            sel.stuck.append(t)
        if not (stuck or t.state.needs_run()):
            continue
        (sel.blocked if dead_parent(t) else sel.run).append(t)
    return sel


# --- planning (Slurm) -------------------------------------------------------------------------------

@dataclass
class ResumePlan:
    arrays: list[Any]                                    # launcher.backends.PlannedArray, in order
    external: dict[int, str] = field(default_factory=dict)  # position -> dependency on an old job
    unsubmitted: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)      # parent active where we cannot link to it


def plan_resume(status: SweepStatus, to_run: list[TrialStatus], *, max_array_size: int,
                budget: int, link_existing: bool = True) -> ResumePlan:
    """Arrays for `to_run`, composed from launcher.backends.plan_arrays.

    Trials form trees (a child with its parent in the set hangs under it). A tree whose root's
    parent is complete (or absent) is planned as a fresh launch; a tree whose root's parent is
    still queued is planned separately per old array and shifted so that each task id equals its
    parent's task id there, then made to depend on that old array with aftercorr.
    """
    from launcher.backends import plan_arrays
    from launcher.trial import Trial

    by_id = {t.trial["id"]: t for t in status.trials}
    wanted = {t.trial["id"] for t in to_run}
    children: dict[str, list[TrialStatus]] = {}
    roots: list[TrialStatus] = []
    for t in sorted(to_run, key=lambda t: t.trial["index"]):
        parent = t.trial.get("parent")
        if parent in wanted:
            children.setdefault(parent, []).append(t)
        else:
            roots.append(t)

    def tree(t: TrialStatus) -> list[Trial]:
        out = [Trial.from_dict(t.trial)]
        for c in children.get(t.trial["id"], ()):
            out += tree(c)
        return out

    plan = ResumePlan(arrays=[])
    free: list[Trial] = []
    attached: dict[tuple[str, int], list[Trial]] = {}
    for root in roots:
        parent = by_id.get(root.trial.get("parent") or "")
        if parent is None or parent.state is TrialState.COMPLETED:
            free += tree(root)
        elif link_existing and parent.state.is_active() and parent.slurm_id:
            job, task = parent.slurm_id.rsplit("_", 1)
            attached.setdefault((job, root.trial["index"] - int(task)), []).extend(tree(root))
        else:
            plan.waiting += [t.index for t in tree(root)]

    def add(trials: list[Trial], old: tuple[str, int] | None) -> None:
        nonlocal budget
        arrays, left = plan_arrays(trials, max_array_size=max_array_size, max_queued_jobs=max(budget, 0))
        plan.unsubmitted += left
        budget -= len(trials) - len(left)
        if not arrays:
            return
        base = len(plan.arrays)
        if old is not None:
            job, offset = old
            # plan_arrays starts task ids at 0; move the tree so they match the parents' task ids.
            shift = arrays[0].offset - offset
            for a in arrays:
                a.offset -= shift
            plan.external[base] = f"aftercorr:{job}"
        for a in arrays:
            if a.depends_on is not None:
                a.depends_on += base
        plan.arrays += arrays

    if free:
        add(free, None)
    for key in sorted(attached, key=lambda k: (int(k[0]) if k[0].isdigit() else 0, k[0], k[1])):
        add(attached[key], key)
    plan.unsubmitted.sort()
    return plan


def render_slurm(plan: ResumePlan, manifest: dict[str, Any], sweep_dir: str, max_parallel: int | None) -> None:
    """Fill each array's --array value, script and options, as the slurm backend's plan() does."""
    from launcher.backends import slurm

    profile = profile_of(manifest)
    throttle = max_parallel or profile.max_parallel
    for pos, array in enumerate(plan.arrays):
        array.array = slurm.array_spec(array.task_ids, throttle)
        array.script = slurm.render_script(sweep_name=manifest["name"], sweep_dir=sweep_dir,
                                           workdir=manifest.get("workdir") or str(Path.cwd()),
                                           stage=array.stage, offset=array.offset, indices=array.indices,
                                           profile=profile)
        array.options = [f"--array={array.array}"]
        if pos in plan.external:
            array.options.append(f"--dependency={plan.external[pos]}")


def profile_of(manifest: dict[str, Any]) -> Any:
    from launcher.cluster import ClusterProfile

    data = dict(manifest.get("cluster") or {})
    names = {f.name for f in dataclasses.fields(ClusterProfile)}
    return ClusterProfile(**{k: v for k, v in data.items() if k in names})


# --- the command ------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    sweep_dir = str(Path(args.sweep_dir).absolute())
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError("--max-parallel must be at least 1", key="--max-parallel")
    manifest = mf.read_manifest(sweep_dir)
    status = collect(sweep_dir, manifest)
    sel = select(status)
    executor = manifest.get("executor", "slurm")
    max_parallel = args.max_parallel or (manifest.get("launch") or {}).get("max_parallel")
    if executor == "local":
        return _resume_local(args, sweep_dir, manifest, status, sel, max_parallel)
    return _resume_slurm(args, sweep_dir, manifest, status, sel, max_parallel, executor)


def _resume_slurm(args: argparse.Namespace, sweep_dir: str, manifest: dict[str, Any], status: SweepStatus,
                  sel: Selection, max_parallel: int | None, executor: str,
                  scancel: Callable[..., None] | None = None) -> int:
    profile = profile_of(manifest)
    active = sum(1 for t in status.trials if t.state.is_active() and t not in sel.stuck)
    budget = profile.max_queued_jobs - active
    plan = plan_resume(status, sel.run, max_array_size=profile.max_array_size, budget=budget,
                       link_existing=executor == "slurm")
    if executor == "slurm":
        render_slurm(plan, manifest, sweep_dir, max_parallel)
    else:
        for a in plan.arrays:
            a.array = f"0-{max(a.task_ids)}"
    doc = _document(sweep_dir, status, sel, plan)
    if args.dry_run or not (plan.arrays or sel.stuck):
        _print(args, doc, dry_run=args.dry_run)
        return 0
    if sel.stuck:
        from jobs import slurm as slurm_cmd

        # One scancel for every task held behind a failed dependency (they never start).
        (scancel or slurm_cmd.scancel)([t.slurm_id for t in sel.stuck if t.slurm_id])
    records: list[dict[str, Any]] = []
    if plan.arrays:
        if executor == "slurm":
            from launcher.backends import slurm

            records = slurm.submit(sweep_dir, manifest, plan.arrays)
            for pos, dependency in plan.external.items():
                records[pos]["dependency"] = dependency
        else:
            from launcher.backends import submitit

            records = submitit.submit(sweep_dir, manifest, plan.arrays, profile, max_parallel=max_parallel)
    manifest["unsubmitted"] = mf.compact_ranges(plan.unsubmitted)
    mf.write_manifest(sweep_dir, manifest)
    doc["submissions"] = records
    _print(args, doc, dry_run=False)
    return 0


def _resume_local(args: argparse.Namespace, sweep_dir: str, manifest: dict[str, Any], status: SweepStatus,
                  sel: Selection, max_parallel: int | None) -> int:
    from jobs.run import now_iso
    from launcher.backends import local

    indices = sorted(t.trial["index"] for t in sel.run)
    doc = _document(sweep_dir, status, sel, None)
    doc["submissions"] = [{"executor": "local", "indices": mf.compact_ranges(indices)}] if indices else []
    if args.dry_run or not indices:
        _print(args, doc, dry_run=args.dry_run)
        return 0
    spec = mf.compact_ranges(indices)
    pid = local.start_detached(sweep_dir, max_parallel=max_parallel or 1, indices=spec,
                               workdir=manifest.get("workdir")) if args.detach else os.getpid()
    stages = sorted({t.trial.get("stage", 0) for t in sel.run})
    records = [{"stage": s, "job_id": f"local:{pid}", "offset": 0,
                "array": mf.compact_ranges([t.trial["index"] for t in sel.run if t.trial.get("stage", 0) == s]),
                "indices": mf.compact_ranges([t.trial["index"] for t in sel.run if t.trial.get("stage", 0) == s]),
                "dependency": None, "executor": "local", "submitted": now_iso()} for s in stages]
    manifest.setdefault("submissions", []).extend(records)
    manifest["unsubmitted"] = ""
    mf.write_manifest(sweep_dir, manifest)
    doc["submissions"] = records
    if args.detach:
        doc["pid"] = pid
        _print(args, doc, dry_run=False)
        return 0
    outcome = local.run_pool(sweep_dir, [t.trial for t in sel.run], max_parallel=max_parallel or 1)
    doc["outcome"] = outcome
    _print(args, doc, dry_run=False)
    return 0 if all(s == "completed" for s in outcome.values()) else 1


# --- output -----------------------------------------------------------------------------------------

def _document(sweep_dir: str, status: SweepStatus, sel: Selection, plan: ResumePlan | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "sweep_dir": sweep_dir, "counts": status.counts(),
        "resubmit": [{"id": t.trial["id"], "index": t.trial["index"], "stage": t.trial.get("stage", 0),
                      "was": t.state.value} for t in sel.run],
        "cancel_stuck": [t.slurm_id for t in sel.stuck],
        "blocked": [t.trial["index"] for t in sel.blocked],
        "notes": status.notes,
    }
    if plan is not None:
        doc["submissions"] = [dict(a.to_dry_run(), dependency=plan.external.get(i) or (
            None if a.depends_on is None else f"aftercorr:<job of submission {a.depends_on}>"))
            for i, a in enumerate(plan.arrays)]
        doc["unsubmitted"] = mf.compact_ranges(plan.unsubmitted)
        doc["waiting"] = mf.compact_ranges(plan.waiting)
    return doc


def _print(args: argparse.Namespace, doc: dict[str, Any], *, dry_run: bool) -> None:
    if args.json:
        print(json.dumps(dict(doc, dry_run=dry_run), default=str, indent=1))
        return
    n = len(doc["resubmit"])
    counts = " ".join(f"{k} {v}" for k, v in sorted(doc["counts"].items()))
    print(f"{doc['sweep_dir']}: {counts}")
    if not n and not doc["cancel_stuck"]:
        print("nothing to resume: every trial has a final result or is queued")
    if doc["cancel_stuck"]:
        print(f"  {'would cancel' if dry_run else 'cancelled'} {len(doc['cancel_stuck'])} task(s) held behind "
              "a failed dependency")
    for s in doc.get("submissions", []):
        dep = f" after {s['dependency']}" if s.get("dependency") else ""
        job = f"job {s['job_id']}: " if s.get("job_id") else ""
        print(f"  {job}stage {s.get('stage', 0)} array {s.get('array', '')} (trials {s['indices']}){dep}")
    if doc.get("blocked"):
        print(f"  skipped {len(doc['blocked'])} trial(s) whose earlier stage diverged or was pruned")
    if doc.get("unsubmitted"):
        print(f"  trials {doc['unsubmitted']} wait for queue room: run `sweep resume` again later")
    if doc.get("waiting"):
        print(f"  trials {doc['waiting']} wait for their earlier stage: run `sweep resume` again after it")
    for note in doc.get("notes", []):
        print(f"  note: {note}")
    if dry_run:
        print(f"dry run: would resubmit {n} trial(s); nothing changed")
    elif n:
        print(f"resubmitted {n} trial(s); watch: sweep status {doc['sweep_dir']}")
