"""`sweep launch --wait`: stay in the foreground until every submitted trial has a result.

A trial ends when its result file appears (the runner writes it once, atomically, before the task
exits), so the disk is what is polled: a stat of each still-missing result file, nothing more.
The backend is only asked (jobs.state.collect: for Slurm one sacct plus one squeue, whatever the
sweep's size) on a backing-off schedule, to notice tasks that ended without a result (killed,
cancelled, out of memory) and trials the top-up submitted meanwhile.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from jobs import manifest as mf
from jobs import state
from jobs.submission import cancel_requested
from jobs.trial_state import TrialState

# Disk polls between backend refreshes.
POLL_S = 0.25


def wait_for_results(sweep_dir: str | os.PathLike, *, poll_s: float = POLL_S, delays: Any = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                     live: Callable[[], Any] | None = None) -> state.SweepStatus:
    """Block until every trial has a result or nothing that could still write one is queued;
    return the final status. `live` replaces asking the backend (what the unit tests feed in)."""
    sweep_dir = Path(sweep_dir)
    delays = delays if delays is not None else state.watch_delays()
    manifest = mf.read_manifest(sweep_dir)
    paths = {t.id: str(mf.result_path(sweep_dir, t.id)) for t in manifest.trials}
    missing = dict(paths)
    next_refresh = clock() + next(delays)
    shown = -1
    while missing:
        missing = {tid: p for tid, p in missing.items() if not os.path.exists(p)}
        if on_progress is not None and len(missing) != shown:
            shown = len(missing)
            on_progress(len(paths) - shown, len(paths))
        if not missing:
            break
        if clock() >= next_refresh:
            status = state.collect(sweep_dir, live=live)
            # squeue failing says nothing about the tasks: keep waiting rather than give up.
            blind = any(note.startswith("squeue failed") for note in status.notes)
            # Slurm first, disk second: a task writes its result before it leaves the queue.
            missing = {tid: p for tid, p in missing.items() if not os.path.exists(p)}
            tops_up = manifest.settings.cluster.submit_from_tasks and tops_up_now(sweep_dir)
            moving = {t.trial.id for t in status.active()} | {
                t.trial.id for t in status.trials if t.state is TrialState.UNSUBMITTED and tops_up}
            if not blind and not (moving & set(missing)) and not _still_held(status):
                break
            next_refresh = clock() + next(delays)
        sleep(poll_s)
    return state.collect(sweep_dir, live=live)


def _still_held(status: state.SweepStatus) -> bool:
    """A task the backend still holds, though its trial has a result: it may yet submit trials
    (successive halving's promotions, the queue's top-up) before it exits."""
    return any(t.slurm_state and state.from_slurm(t.slurm_state).is_active() for t in status.trials)


def tops_up_now(sweep_dir: Path) -> bool:
    """Trials wait for room and nothing holds the top-up back (jobs.topup)."""
    return (sweep_dir / mf.WAITING_MARKER).exists() and not cancel_requested(sweep_dir)
