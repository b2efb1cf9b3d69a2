"""Backends run planned arrays somewhere; they never decide what to try.

    slurm     one `sbatch --array` per array (split to the cluster's limits)   backends/slurm.py
    submitit  submitit's AutoExecutor.map_array over the same task runner        backends/submitit.py
    local     a process pool on this machine (the embedded default)             backends/local.py

Every backend runs the same task runner (jobs.run) and answers the same few questions, so that
`sweep launch`, `sweep resume`, `sweep status`, `sweep cancel` and the array tasks that top the
queue up never switch on an executor's name:

    plan(trials, sweep, budget=..., pack=..., attach=...)  -> ArrayPlan (scripts rendered)
    start(sweep, arrays, confirm, ...)     submit / start them; `confirm(array, job_id, pid, dependency)` after each
    find(sweep, pending)                   {token: [job ids]} for submissions recorded but unconfirmed
    live(sweep)                            {trial index: LiveTask}, accounting answered, notes
    cancel(sweep)                          stop everything the sweep has queued or running

`get(name)` is the one table from executor name to backend. Heavy imports (submitit) stay
inside the backend modules, and those are imported only when used.
"""
from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from jobs.errors import UserError
from jobs.manifest import EXECUTORS

if TYPE_CHECKING:
    from jobs.backends.arrays import ArrayPlan, PlannedArray
    from jobs.manifest import Manifest, Submission, Trial

# confirm(array, job_id, pid, dependency=None): the array started (dependency: the one it was given).
Confirm = Callable[..., None]


@dataclass(frozen=True)
class LiveTask:
    """What the backend says about one trial's task (Slurm: squeue laid over sacct)."""

    state: str                       # jobs.slurm.JobState name
    task: str | None = None          # "<array job>_<task>" (Slurm), None locally
    node: str | None = None
    elapsed_s: float | None = None
    restarts: int = 0                # earlier runs (requeues, preemptions), from sacct
    reason: str = ""                 # squeue's pending reason
    source: str = "sacct"            # "squeue", "sacct" or "local"
    exit_code: str | None = None     # sacct's "<code>:<signal>"
    max_rss_mb: float | None = None  # sacct's MaxRSS of the task's steps, in MB
    req_mem_mb: float | None = None  # what the task asked for, in MB
    time_limit_s: float | None = None


@dataclass
class Live:
    tasks: dict[int, LiveTask] = field(default_factory=dict)   # trial index -> its task
    accounting: bool = True                                     # False when sacct could not answer
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SweepRef:
    """What a backend needs to know about the sweep it works for."""

    sweep_dir: Path
    manifest: Manifest


class Backend:
    name = ""
    # Whether the sweep's tasks are Slurm jobs (status asks Slurm; resume may attach to jobs).
    uses_slurm = False
    # Whether each task reads its trials from arrays/<token>.jsonl (written at submission), rather
    # than from the manifest.
    reads_task_files = False

    def plan(self, trials: list[Trial], sweep: SweepRef, *, budget: int, pack: int = 1,
             attach: dict[str, tuple[str, int]] | None = None, max_parallel: int | None = None) -> ArrayPlan:
        raise NotImplementedError

    def start(self, sweep: SweepRef, arrays: list[PlannedArray], confirm: Confirm, **options: Any) -> Any:
        raise NotImplementedError

    def find(self, sweep: SweepRef, pending: list[Submission]) -> dict[str, list[str]]:
        """{token: job ids Slurm knows under it} for submissions recorded but not confirmed."""
        return {}

    def live(self, sweep: SweepRef) -> Live:
        raise NotImplementedError

    def cancel(self, sweep: SweepRef) -> dict[str, Any]:
        raise NotImplementedError


_MODULES = {"slurm": "jobs.backends.slurm", "submitit": "jobs.backends.submitit", "local": "jobs.backends.local"}


def get(name: str) -> Backend:
    """The backend for an executor name (the one table of them)."""
    if name not in _MODULES:
        raise UserError(f"unknown executor {name!r}", key="--executor", fix=f"use one of: {', '.join(EXECUTORS)}")
    return importlib.import_module(_MODULES[name]).BACKEND


def default_executor() -> str:
    """slurm where `sbatch` is on PATH, else local."""
    return "slurm" if shutil.which("sbatch") else "local"
