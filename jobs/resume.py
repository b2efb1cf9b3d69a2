"""What `sweep resume` runs again: planned - finished - running, decided under the sweep's lock.

Which trials (`select`):

    no result, not queued (unsubmitted, lost, killed without a result, preempted)  -> run
    a failed or timed-out result           -> run when its failures are under --max-attempts, or
                                              with --retry-failed
    cancelled (by `sweep cancel` or scancel) -> run only with --retry-cancelled
    completed, diverged, pruned            -> never
    earlier stage diverged, pruned, or left as it is -> not now (it would start from no checkpoint)
    queued behind a dependency that failed -> cancelled in Slurm, then run

How they are linked (`plan`): a trial whose earlier stage is resubmitted too waits on that new
array (aftercorr); one whose earlier stage is still queued waits on that old array, at its parent's
task id (Slurm only, unpacked); one whose earlier stage completed runs at once. What does not fit
the queue limit (what is already queued counts) waits for the top-up or the next resume.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jobs import attempts
from jobs import manifest as mf
from jobs.backends import Backend, SweepRef
from jobs.backends.arrays import ArrayPlan
from jobs.manifest import Trial
from jobs.state import NEVER_SATISFIED, SweepStatus, TrialStatus
from jobs.trial_state import TrialState


@dataclass
class Selection:
    run: list[TrialStatus] = field(default_factory=list)       # to submit
    blocked: list[TrialStatus] = field(default_factory=list)   # earlier stage diverged/pruned: never
    stuck: list[TrialStatus] = field(default_factory=list)     # queued behind a failed dependency
    kept: list[TrialStatus] = field(default_factory=list)      # failed/cancelled, not asked to retry


def select(status: SweepStatus, sweep_dir: Path, *, max_attempts: int, timeout_requeues: int,
           retry_failed: bool = False, retry_cancelled: bool = False) -> Selection:
    """Split the trials: which to resubmit, which can never run, which Slurm holds for nothing."""
    by_id = {t.trial.id: t for t in status.trials}
    sel = Selection()

    def kept(t: TrialStatus) -> bool:
        """A trial left as it is: failed (or timed out) after its attempts, or cancelled, and not asked
        to rerun -- what the task runner would leave alone too (jobs.attempts)."""
        if t.state is TrialState.CANCELLED and not t.state.is_active():
            return not retry_cancelled
        return (t.result is not None and not retry_failed
                and attempts.used_up(mf.trial_dir(sweep_dir, t.trial.id), t.state, max_attempts=max_attempts,
                                     timeout_requeues=timeout_requeues))

    memo: dict[str, bool] = {}

    def dead_parent(t: TrialStatus) -> bool:
        """True when an ancestor will not complete: it ended for good without completing (diverged,
        pruned), or it is left as it is (kept)."""
        tid = t.trial.id
        if tid not in memo:
            memo[tid] = False  # guards a (malformed) cycle
            parent = by_id.get(t.trial.parent or "")
            if parent is not None:
                memo[tid] = (parent.state is not TrialState.COMPLETED if parent.state.is_final()
                             else kept(parent) or dead_parent(parent))
        return memo[tid]

    for t in status.trials:
        stuck = t.state.is_active() and t.reason == NEVER_SATISFIED
        if stuck:
            sel.stuck.append(t)    # cancelled in Slurm either way: it never starts by itself
        elif not t.state.needs_run():
            continue
        elif kept(t):
            sel.kept.append(t)
            continue
        (sel.blocked if dead_parent(t) else sel.run).append(t)
    return sel


@dataclass
class ResumePlan:
    plan: ArrayPlan
    waiting_for_parent: list[int] = field(default_factory=list)   # earlier stage active, cannot link


def plan(status: SweepStatus, to_run: list[TrialStatus], backend: Backend, sweep: SweepRef, *,
         budget: int, max_parallel: int | None) -> ResumePlan:
    """Arrays for `to_run` (see the module docstring)."""
    by_id = {t.trial.id: t for t in status.trials}
    wanted = {t.trial.id for t in to_run}
    pack = sweep.manifest.settings.pack
    attach: dict[str, tuple[str, int]] = {}
    trials: list[Trial] = []
    waiting: list[int] = []
    for t in sorted(to_run, key=lambda t: t.trial.index):
        parent = by_id.get(t.trial.parent or "")
        if parent is None or parent.trial.id in wanted or parent.state is TrialState.COMPLETED:
            trials.append(t.trial)
        elif backend.uses_slurm and backend.name == "slurm" and pack <= 1 and parent.state.is_active() \
                and parent.slurm_id and "_" in parent.slurm_id:
            job, task = parent.slurm_id.rsplit("_", 1)
            attach[parent.trial.id] = (job, int(task))
            trials.append(t.trial)
        else:
            waiting.append(t.trial.index)
    # A child waits with its parent: drop descendants of trials that wait.
    held = set(waiting)
    changed = True
    while changed:
        changed = False
        for t in list(trials):
            parent = by_id.get(t.parent or "")
            if parent is not None and parent.trial.index in held:
                held.add(t.index)
                waiting.append(t.index)
                trials.remove(t)
                changed = True
    arrays = backend.plan(trials, sweep, budget=budget, pack=pack, attach=attach, max_parallel=max_parallel)
    return ResumePlan(plan=arrays, waiting_for_parent=sorted(waiting))


def clear_for_retry(sweep_dir: Path, trials: list[TrialStatus]) -> None:
    """Before trials that were left as they are (failed after their attempts, timed out, cancelled)
    run again: their result moves aside (trials/<id>/result.json.<n>, kept for the record) and their
    attempt counters start over, so that the task runs them instead of leaving them alone."""
    import os

    for t in trials:
        if t.result is None or t.state not in (TrialState.FAILED, TrialState.TIMEOUT, TrialState.CANCELLED):
            continue
        tdir = mf.trial_dir(sweep_dir, t.trial.id)
        n = 1
        while (tdir / f"{mf.RESULT}.{n}").exists():
            n += 1
        try:
            os.replace(tdir / mf.RESULT, tdir / f"{mf.RESULT}.{n}")
        except FileNotFoundError:
            pass
        attempts.clear(tdir)


def queued_tasks(status: SweepStatus, leaving: set[int] = frozenset()) -> int:
    """Array tasks of the sweep that Slurm holds (what a queue limit counts), apart from the trials
    in `leaving` (about to be cancelled): the trials of one packed task count once."""
    return len({t.slurm_id or f"trial {t.trial.index}" for t in status.trials
                if t.state.is_active() and t.trial.index not in leaving})
