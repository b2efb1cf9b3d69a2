"""What a swept program needs to know about its sweep, read from environment variables.

The task runner (`python -m jobs.run`) sets SWEEP_* variables before it starts the
program; the program calls `context()` to find its checkpoint directory and
`write_metrics()` to report. Outside a sweep both are harmless: `in_sweep` is False
and `write_metrics` does nothing, so the same trainer runs by hand.

Stdlib only: the trainer imports this before torch.
"""
from __future__ import annotations

import json
import os
import signal
from collections import namedtuple
from pathlib import Path

from jobs.atomic import write_bytes_atomic
from jobs.results import RESERVED_KEYS
from jobs.trial_state import PROGRAM_STATES, TrialState

TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

# Statuses a program may report itself; "failed" is decided by the runner from the exit code.
PROGRAM_STATUSES = tuple(s.value for s in PROGRAM_STATES)
# Slurm's warning before a time limit or preemption (USR1, or USR2 under submitit) and TERM.
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


# The trial this process runs, from SWEEP_* (a namedtuple, like jobs.manifest's records: the runner
# reads this module at every array task's start, and `dataclasses` would cost it ~7 ms).
TrialContext = namedtuple("TrialContext", "sweep_dir trial_id trial_dir result_file checkpoint_dir attempt stage "
                                          "job_id in_sweep")


def _path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _int(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def slurm_task_id() -> str | None:
    """`<array job>_<task>` (how users know an array task, what scontrol requeue takes), or the plain
    job id; None outside Slurm."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def context() -> TrialContext:
    """The current trial, from SWEEP_* (set by jobs.run); `in_sweep` False outside a sweep."""
    result_file = _path("SWEEP_RESULT_FILE")
    return TrialContext(
        sweep_dir=_path("SWEEP_DIR"),
        trial_id=os.environ.get("SWEEP_TRIAL_ID"),
        trial_dir=_path("SWEEP_TRIAL_DIR"),
        result_file=result_file,
        checkpoint_dir=_path("SWEEP_CHECKPOINT_DIR"),
        attempt=_int("SWEEP_ATTEMPT", _int("SLURM_RESTART_COUNT")),
        stage=_int("SWEEP_STAGE"),
        job_id=slurm_task_id(),
        in_sweep=result_file is not None,
    )


class StopSignal:
    """A flag set by SIGUSR1/SIGUSR2/SIGTERM: the training loop checks it, checkpoints and exits.

    Handlers only set the flag (no I/O in a signal handler); the loop does the work at a
    safe point, which is what lets a checkpoint finish inside Slurm's grace period.
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    @classmethod
    def install(cls, signals: tuple[int, ...] = STOP_SIGNALS) -> "StopSignal":
        stop = cls()
        for sig in signals:
            signal.signal(sig, stop._handle)
        return stop

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


def write_metrics(metrics: dict[str, Any], *, status: str = "completed", error: str | None = None) -> None:
    """Atomically write the metrics object to $SWEEP_RESULT_FILE (no-op outside a sweep, and on
    every torchrun rank but rank 0: a trial has one result).

    `status` "diverged" or "pruned" tells the runner the run ended early on purpose.
    """
    if status not in PROGRAM_STATUSES:
        raise ValueError(f"status must be one of {PROGRAM_STATUSES}, not {status!r}")
    target = _path("SWEEP_RESULT_FILE")
    if target is None or _int("RANK") != 0:
        return
    payload = {k: v for k, v in metrics.items() if k not in RESERVED_KEYS}
    if _last_step is not None:
        # What `sweep status` / `sweep report` need to estimate the GPU-hours pruning saved.
        payload.setdefault("last_step", _last_step)
        if status == TrialState.PRUNED:
            payload.setdefault("pruned_at_step", _last_step)
    if status != TrialState.COMPLETED:
        payload["status"] = status
    if error is not None:
        payload["error"] = error
    target.parent.mkdir(parents=True, exist_ok=True)
    # Atomically: the runner never reads half a file.
    write_bytes_atomic(target, (json.dumps(payload, default=_jsonable, allow_nan=True) + "\n").encode())


_last_step: int | None = None   # the step of the latest report(), for write_metrics


def metric(default: str) -> str:
    """The metric the sweep optimises ($SWEEP_METRIC, from its settings), else `default` (outside a
    sweep, or one that names none): what a program reports to the sweep's pruner."""
    return os.environ.get("SWEEP_METRIC") or default


def report(step: int, value: float) -> bool:
    """Report the eval metric at `step`; True means stop now (the pruner judged the trial hopeless).

    Call it at every eval; on True, write your metrics with `write_metrics(..., status="pruned")`
    and exit 0. `step` is in the units of the sweep's pruner (min_iter / max_iter). Only bayes
    sweeps and sweeps with a pruner keep a study (jobs.bayes, trials/<id>/optuna.json); anywhere
    else, by hand included, this records the step and returns False without importing Optuna.
    """
    global _last_step
    _last_step = int(step)
    trial_dir = _path("SWEEP_TRIAL_DIR")
    if trial_dir is None or not (trial_dir / "optuna.json").exists():
        return False
    from jobs import bayes

    return bayes.report(step, value)


def _jsonable(value: Any) -> Any:
    # Tensors and numpy scalars: `.item()` gives the Python number.
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)
