"""Keeping the queue topped up from inside the sweep: no human has to come back and `sweep resume`.

When the cluster's limits (`max_queued_jobs`, `max_array_size`) kept trials back at launch, the
manifest lists them as waiting and the sweep directory holds a `waiting` marker. Every Slurm array
task that ends while the marker is there calls `top_up`: it tries the sweep's lock once (another
task holding it is topping up already), counts what this user has queued, and submits the next
piece that fits, through the same recorded, locked path as `sweep launch` (jobs.submission). The
last tasks of each piece submit the next one, until nothing waits. `sweep cancel` stops it (its
marker), and so does a profile with `submit_from_tasks: false` (compute nodes without sbatch).

A task with no room leaves the top-up to the sweep's tasks still queued, but only to those whose own
top-up is still to come: each task first leaves a file named for itself in `topup.done/`. (Without
it, the last two tasks of a piece could each leave it to the other, the second finding the first
still listed as completing, and the waiting trials stayed unsubmitted.)

`hand_back` is the other way in: a packed task too close to its time limit returns the trials it
will not start (and their later stages), and its own top-up submits them again.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from jobs import manifest as mf
from jobs.lock import LockBusy
from jobs.results import read_results
from jobs.runtime import slurm_task_id
from jobs.submission import Session, cancel_requested, open_sweep
from jobs.trial_state import TrialState

# How long a task waits for the sweep's lock to hand trials back (it must, or they are lost).
HAND_BACK_WAIT_S = 120.0
# How long the last task of a sweep waits for queue room when nothing else of the sweep is queued
# (tasks that just ended still show as completing for a moment), and how often it looks.
ROOM_WAIT_S, ROOM_POLL_S = 120.0, 3.0
# A task that finds the lock held leaves this file; the holder looks again (up to PASSES times in all).
REQUEST = "topup.request"
PASSES = 3
# One empty file per array task ("<job>_<task>") whose top-up has begun: nobody waits on those.
DONE = "topup.done"


def _say(message: str) -> None:
    print(f"[jobs.topup] {message}", file=sys.stderr, flush=True)


def queue_room(max_queued_jobs: int, job_ids: list[str], done: frozenset[str] = frozenset()) -> tuple[int, int]:
    """(array tasks this user may still queue, tasks of this sweep queued besides this one and those
    in `done`), from one squeue call: the limit counts every job of the user."""
    from jobs import slurm

    me = slurm_task_id()
    queued = slurm.queued_tasks(slurm.current_user())
    ours = [j for j in queued if j.job in job_ids and str(j) != me and str(j) not in done]
    return max_queued_jobs - len(queued), len(ours)


def _done_tasks(sweep_dir: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(sweep_dir / DONE))
    except OSError:
        return frozenset()


def top_up(sweep_dir: str | os.PathLike, *, who: str | None = None) -> int:
    """Submit what fits of the trials waiting for queue room; return how many were submitted.

    A task that finds the lock held leaves a request and goes: the holder, once it lets go, looks
    again when a request came meanwhile. (Without it, two tasks ending together could each leave it to
    the other: the holder to the other task still queued, that task to the holder of the lock.)"""
    sweep_dir = Path(sweep_dir)
    request = sweep_dir / REQUEST
    me = slurm_task_id()
    who = who or f"top-up from task {me or '?'}"
    try:    # first: from here on, no other task leaves the top-up to this one
        if me:
            (sweep_dir / DONE).mkdir(exist_ok=True)
            (sweep_dir / DONE / me).touch()
    except OSError:
        pass
    for _ in range(PASSES):
        if cancel_requested(sweep_dir):
            return 0
        try:
            request.touch()
        except OSError:
            pass
        try:
            with open_sweep(sweep_dir, who, timeout=0) as session:
                request.unlink(missing_ok=True)     # this pass answers every request made before it
                submitted = _pass(session, sweep_dir)
        except LockBusy:
            return 0   # the holder sees our request when it lets go
        except Exception as exc:  # noqa: BLE001 - a failed top-up must not fail the trial that ended
            _say(f"could not top the queue up: {exc}")
            return 0
        if submitted or not request.exists():
            return submitted
    return 0


def _pass(session: Session, sweep_dir: Path) -> int:
    manifest = session.manifest
    settings = manifest.settings
    waiting = manifest.unsubmitted_indices()
    if not waiting or not settings.cluster.submit_from_tasks or not session.backend.uses_slurm:
        return 0
    if cancel_requested(sweep_dir):   # again, under the lock: a cancel may have ended while we waited
        return 0
    room, ours = queue_room(settings.cluster.max_queued_jobs, manifest.job_ids(), _done_tasks(sweep_dir))
    waited = 0.0
    while room <= 0:
        # Others of this sweep queued and not yet ending top up when they end; the last one waits a while.
        if ours or waited >= ROOM_WAIT_S:
            if not ours:
                _say(f"no queue room after {waited:.0f} s: {len(waiting)} trial(s) still wait; "
                     f"`sweep resume {sweep_dir}` submits them")
            return 0
        time.sleep(ROOM_POLL_S)
        waited += ROOM_POLL_S
        room, ours = queue_room(settings.cluster.max_queued_jobs, manifest.job_ids(), _done_tasks(sweep_dir))
    trials, behind = ready_to_submit(sweep_dir, manifest, waiting)
    plan = session.backend.plan(trials, session.ref, budget=room, pack=settings.pack)
    session.submit(plan, unsubmitted=sorted(plan.unsubmitted + behind))
    submitted = len(plan.planned)
    if not session.manifest.unsubmitted:     # nothing waits: no task tops up again
        shutil.rmtree(sweep_dir / DONE, ignore_errors=True)
    _say(f"submitted {submitted} waiting trial(s); {len(plan.unsubmitted)} still wait for room"
         + (f", {len(behind)} for an earlier stage" if behind else ""))
    return submitted


def ready_to_submit(sweep_dir: Path, manifest: mf.Manifest, waiting: list[int]) -> tuple[list[mf.Trial], list[int]]:
    """(the waiting trials that can be submitted now, the indices that wait for an earlier stage).
    A later stage whose parent also waits goes with it (the plan chains them); one whose parent was
    submitted already and has not completed waits, or it would start without its checkpoint (a
    dropped or handed-back stage); the top-up after the parent's task submits it."""
    by_index = {t.index: t for t in manifest.trials}
    by_id = {t.id: t for t in manifest.trials}
    waiting_ids = {by_index[i].id for i in waiting if i in by_index}
    outside = {t.parent for i in waiting if i in by_index and (t := by_index[i]).parent
               and t.parent not in waiting_ids}
    done = {tid for tid, r in read_results(sweep_dir, sorted(outside)).items()
            if TrialState.of_result(r) is TrialState.COMPLETED}
    ready: list[mf.Trial] = []
    behind: set[str] = set()
    for i in sorted(i for i in waiting if i in by_index):   # parents come before their children
        t = by_index[i]
        if t.parent and (t.parent in behind or (t.parent in outside and t.parent not in done)):
            behind.add(t.id)
        else:
            ready.append(t)
    return ready, [by_id[tid].index for tid in behind]


def hand_back(sweep_dir: str | os.PathLike, indices: list[int]) -> None:
    """Put trials this task will not run (and their later stages) back on the waiting list."""
    if not indices:
        return
    try:
        with open_sweep(sweep_dir, "hand back a packed task's trials", timeout=HAND_BACK_WAIT_S) as session:
            manifest = session.manifest
            children: dict[str, list[int]] = {}
            for t in manifest.trials:
                if t.parent:
                    children.setdefault(t.parent, []).append(t.index)
            by_index = {t.index: t for t in manifest.trials}
            wanted, stack = set(), list(indices)
            while stack:
                i = stack.pop()
                if i in wanted or i not in by_index:
                    continue
                wanted.add(i)
                stack += children.get(by_index[i].id, [])
            results = read_results(sweep_dir, [by_index[i].id for i in wanted])
            back = {i for i in wanted if not TrialState.of_result(results.get(by_index[i].id, {})).is_final()}
            back -= set(manifest.held_indices())   # successive halving: those wait for a promotion
            session.save(manifest.replace(unsubmitted=mf.compact_ranges(set(manifest.unsubmitted_indices()) | back)))
    except Exception as exc:  # noqa: BLE001 - `sweep resume` still finds them (no result, task ended)
        _say(f"could not hand trials back ({exc}); `sweep resume` will run them")
