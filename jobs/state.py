"""Trial state: what each planned trial is doing now, from the sweep directory and what its
backend says (for Slurm: one `sacct` plus one `squeue` call, whatever the sweep's size).

    state = the result file's status          if the trial wrote one (a non-final one that the
                                               backend is running again counts as running)
          | the backend's live state           pending / running, or how its last run ended
          | pending                            if its submission is recorded but not confirmed yet
          | unsubmitted                        if no submission holds it (waiting for queue room)
          | waiting / stopped                  if it is held for a promotion (successive halving:
                                               jobs.promote says whether it may still climb)
          | lost                               if submitted but neither the backend nor the disk knows it

A completed result whose sweep metric is NaN or infinite reads as diverged: it is flagged, and
never the best. `sweep resume` resubmits every trial whose state `needs_run()`.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs import manifest as mf
from jobs.backends import Live, LiveTask, SweepRef
from jobs.causes import headline
from jobs.manifest import Manifest, Trial
from jobs.results import finite_metric, metric_value, read_results
from jobs.trial_state import TrialState

# squeue's reason for a task whose dependency failed: it will never start by itself.
NEVER_SATISFIED = "DependencyNeverSatisfied"
BEING_SUBMITTED = "being submitted"

# Slurm's job states (jobs.slurm.JobState names) -> ours, for a task that left no result.
_FROM_SLURM = {
    "PENDING": TrialState.PENDING, "CONFIGURING": TrialState.RUNNING, "RUNNING": TrialState.RUNNING,
    "COMPLETING": TrialState.RUNNING, "SUSPENDED": TrialState.RUNNING, "STOPPED": TrialState.RUNNING,
    "RESIZING": TrialState.RUNNING, "REQUEUED": TrialState.PENDING, "REQUEUE_HOLD": TrialState.PENDING,
    "REQUEUE_FED": TrialState.PENDING, "SPECIAL_EXIT": TrialState.PENDING,
    # A task that ended "COMPLETED" but wrote no result: the runner died or was killed.
    "COMPLETED": TrialState.FAILED, "FAILED": TrialState.FAILED, "OUT_OF_MEMORY": TrialState.FAILED,
    "BOOT_FAIL": TrialState.FAILED, "NODE_FAIL": TrialState.PREEMPTED, "PREEMPTED": TrialState.PREEMPTED,
    "TIMEOUT": TrialState.TIMEOUT, "DEADLINE": TrialState.TIMEOUT, "CANCELLED": TrialState.CANCELLED,
    "REVOKED": TrialState.CANCELLED,
}


def from_slurm(state_name: str) -> TrialState:
    return _FROM_SLURM.get(state_name, TrialState.LOST)


@dataclass
class TrialStatus:
    trial: Trial
    state: TrialState
    slurm_id: str | None = None        # "<array job>_<task>" of its latest submission
    slurm_state: str | None = None     # what Slurm says, verbatim, when it says anything
    attempts: int = 0
    runtime_s: float | None = None
    node: str | None = None
    metric: float | None = None        # latest finite value of the sweep's metric
    error: str | None = None
    reason: str | None = None          # why it waits (squeue's pending reason, or ours)
    result: dict[str, Any] | None = None
    live: LiveTask | None = None       # what the backend said about its task
    warning: str | None = None         # e.g. its metric is NaN

    @property
    def params(self) -> dict[str, Any]:
        """What the plan varied, or for trials whose params are asked at run time (bayes), what
        the trial ran with."""
        if self.trial.params:
            return self.trial.params
        hps = (self.result or {}).get("hyperparameters")
        return hps if isinstance(hps, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        t = self.trial
        return {"id": t.id, "index": t.index, "stage": t.stage, "params": self.params,
                "parent": t.parent, "environment": t.environment, "state": self.state.value,
                "slurm_id": self.slurm_id, "slurm_state": self.slurm_state, "reason": self.reason,
                "attempts": self.attempts, "runtime_s": self.runtime_s, "node": self.node, "metric": self.metric,
                "error": self.error, "warning": self.warning}


@dataclass
class SweepStatus:
    trials: list[TrialStatus]
    metric: str | None
    accounting: bool = True            # False when sacct could not answer (accounting off)
    notes: list[str] = field(default_factory=list)
    gpu_hours_saved: float | None = None  # by early stopping, when any trial was pruned
    rungs: list[Any] = field(default_factory=list)   # successive halving: jobs.promote.Rung per rung

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state.value] = out.get(t.state.value, 0) + 1
        return out

    def ended(self) -> int:
        """Trials nothing will run again by itself: final results, and failures for good."""
        return sum(t.state.is_ended() for t in self.trials)

    def done_fraction(self) -> float:
        return self.ended() / len(self.trials) if self.trials else 1.0

    def active(self) -> list[TrialStatus]:
        """Trials that may still change by themselves (a task stuck behind a failed dependency
        never will, so it does not keep `--watch` going)."""
        return [t for t in self.trials if t.state.is_active() and t.reason != NEVER_SATISFIED]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "counts": self.counts(), "total": len(self.trials),
                "ended": self.ended(), "done": round(self.done_fraction(), 4), "active": len(self.active()),
                "accounting": self.accounting, "notes": self.notes, "gpu_hours_saved": self.gpu_hours_saved,
                **({"rungs": [r.to_dict() for r in self.rungs]} if self.rungs else {}),
                "trials": [t.to_dict() for t in self.trials]}


def latest_metric(sweep_dir: str | os.PathLike, trial_id: str, metric: str | None) -> float | None:
    """The last value of `metric` in the trial's progress.jsonl (reads only the file's tail)."""
    if not metric:
        return None
    path = Path(sweep_dir) / mf.TRIALS / trial_id / mf.PROGRESS
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            value = json.loads(line).get(metric)
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, (int, float)):
            return float(value)
    return None


def combine(manifest: Manifest, results: dict[str, dict[str, Any]], live: Live, *,
            sweep_dir: str | os.PathLike | None = None) -> SweepStatus:
    """The state of every trial (pure: everything it needs is passed in)."""
    metric = manifest.settings.metric
    latest = manifest.latest_submissions()
    task_ids: dict[int, str] = {}
    for sub in dict.fromkeys(latest.values()):
        task_ids.update((i, task) for i, task in sub.task_ids().items() if latest[i] is sub)
    out: list[TrialStatus] = []
    for trial in manifest.trials:
        sub = latest.get(trial.index)
        st = TrialStatus(trial=trial, state=TrialState.UNSUBMITTED, slurm_id=task_ids.get(trial.index))
        task = live.tasks.get(trial.index)
        live_state = from_slurm(task.state) if task is not None else None
        if task is not None:
            st.live, st.slurm_state, st.node, st.runtime_s = task, task.state, task.node, task.elapsed_s
            st.slurm_id = task.task or st.slurm_id
            # restarts = runs before this one; a pending task has not started its own run yet.
            st.attempts = task.restarts + (0 if live_state is TrialState.PENDING else 1)
            st.reason = task.reason or None
        result = results.get(trial.id)
        if result is not None:
            st.state = TrialState.of_result(result)
            st.result = result
            job = result.get("job") or {}
            st.attempts = max(st.attempts, int(job.get("attempt") or 0) + 1)
            st.node = job.get("node") or st.node
            st.runtime_s = result.get("runtime_s")
            st.metric = finite_metric(result.get("results"), metric)
            error = result.get("error")
            st.error = (headline(str(error))[:200] or None) if error else None
            raw = metric_value(result.get("results"), metric)
            if st.state is TrialState.COMPLETED and raw is not None and st.metric is None:
                st.state, st.warning = TrialState.DIVERGED, f"{metric} is {raw}"
            # A non-final result whose task the backend holds again is a retry in flight.
            if not st.state.is_final() and live_state is not None and live_state.is_active():
                st.state = live_state
        elif live_state is not None:
            st.state = live_state
            if not live_state.is_active() and live_state is not TrialState.LOST:
                st.error = f"Slurm says {task.state} and the trial wrote no result"
        elif sub is not None and sub.state == "pending":
            st.state, st.reason = TrialState.PENDING, BEING_SUBMITTED
        elif sub is not None:
            if sub.executor == "local":
                st.state, st.error = TrialState.FAILED, "the local run ended without a result"
            else:
                st.state = TrialState.LOST
        if st.state is TrialState.RUNNING and sweep_dir is not None:
            st.metric = latest_metric(sweep_dir, trial.id, metric)
        out.append(st)
    rungs = _held(manifest, out) if manifest.settings.method == "asha" else []
    return SweepStatus(trials=out, metric=metric, accounting=live.accounting, notes=list(live.notes), rungs=rungs)


def _held(manifest: Manifest, out: list[TrialStatus]) -> list[Any]:
    """Successive halving: a trial held for a promotion waits for it, or is stopped; and the rungs as
    they stand (jobs.promote)."""
    from jobs import promote

    by_index = {st.trial.index: st for st in out}
    values = {i: st.metric for i, st in by_index.items() if st.state is TrialState.COMPLETED}
    for index, (state, why) in promote.held_states(manifest, {i: st.state for i, st in by_index.items()},
                                                   values).items():
        st = by_index[index]
        if st.state is TrialState.UNSUBMITTED:    # nothing else is known of it: no result, no task
            st.state, st.reason = state, why
    return promote.ladder(manifest, {i: st.state for i, st in by_index.items()})


def collect(sweep_dir: str | os.PathLike, manifest: Manifest | None = None, *, live: Any = None) -> SweepStatus:
    """The sweep's status now: manifest + result files + what its backend says (for Slurm one sacct
    and one squeue, asked while the result files are read)."""
    from jobs import backends

    manifest = manifest if manifest is not None else mf.read_manifest(sweep_dir)
    backend = backends.get(manifest.settings.executor)
    ask = live or (lambda: backend.live(SweepRef(Path(sweep_dir), manifest)))
    answer: list[Any] = [Live()]
    worker = None
    if manifest.submissions:
        # The backend answers while we read the result files: the two waits overlap.
        def run() -> None:
            try:
                answer[0] = ask()
            except BaseException as exc:  # re-raised below, in the caller's thread
                answer[0] = exc
        worker = threading.Thread(target=run, name="sweep-status", daemon=True)
        worker.start()
    ids = [t.id for t in manifest.trials]
    results = read_results(sweep_dir, ids)
    if worker is not None:
        worker.join()
        # The files were read while the backend answered: a task that finished in between is gone
        # from squeue but its result was not read yet. Read those once more, so that a finished
        # trial is never taken for a lost one (and resubmitted).
        results.update(read_results(sweep_dir, [i for i in ids if i not in results]))
    if isinstance(answer[0], BaseException):
        raise answer[0]
    status = combine(manifest, results, answer[0], sweep_dir=sweep_dir)
    if any(r.get("status") == TrialState.PRUNED for r in results.values()):
        from jobs import bayes

        status.gpu_hours_saved = bayes.gpu_hours_saved(manifest.settings, results.values())
    return status


def watch_delays(start: float = 2.0, factor: float = 1.5, cap: float = 60.0):
    """Refresh intervals for --watch: back off so a long sweep costs slurmctld little."""
    delay = start
    while True:
        yield delay
        delay = min(cap, delay * factor)
