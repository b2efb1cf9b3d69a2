"""Why a running trial was signalled, and what the task does about it.

Slurm sends the same signal for different reasons; the task runner must not take one for another:

    cancelled     `sweep cancel` (its marker is in the sweep directory), or a plain `scancel`:
                  slurmctld already shows the job COMPLETING with its end time now. Recorded as
                  cancelled, never requeued (a requeue would undo the user's cancel).
    requeued      Slurm requeued the job itself (preemption with PreemptMode=REQUEUE, a node
                  failure): its restart count is already past this run's. Nothing to do: the next
                  run resumes from the checkpoint.
    time_limit    the warning (`--signal=B:SIG@grace`) came because the job's time limit is near:
                  its end time is its start plus its limit, and that is at most grace + slack away.
                  Slurm checks limits about every 30 s, so the warning may come that much early:
                  the slack covers it. Requeued while the trial's time-limit budget lasts, then
                  recorded as timeout with the limit named.
    warning       anything else: a preemption warning (a grace-time partition sets PreemptTime and
                  moves the end time), or a signal sent by hand. Checkpoint and requeue.

Outside Slurm (the local pool) a stop is a cancel when the marker is there, else a warning.
"""
from __future__ import annotations

import os
import signal
import time
TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

CANCELLED, REQUEUED, TIME_LIMIT, WARNING = "cancelled", "requeued", "time_limit", "warning"
# How much earlier than `grace` a time-limit warning may come (Slurm's ~30 s check, and clocks).
EARLY_WARNING_SLACK_S = 75
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


def parse_limit_s(text: str | None) -> float | None:
    """scontrol's TimeLimit ('00:05:00', '1-00:00:00', 'UNLIMITED') -> seconds; None when there is none."""
    from jobs import slurm  # only here: read when a signal came, not at every task's start

    return slurm.parse_duration(text) or None if text and text[0].isdigit() else None


def classify(info: dict[str, str], *, now: float, restart_count: int, grace_s: float) -> str:
    """Why this run of a job was signalled, from `scontrol show job` of it (pure; see the module doc)."""
    state = info.get("JobState", "")
    if state == "CANCELLED":
        return CANCELLED
    try:
        restarts = int(info.get("Restarts", restart_count))
    except ValueError:
        restarts = restart_count
    if restarts > restart_count:
        return REQUEUED
    from jobs.slurm import epoch_s

    end, start, limit = epoch_s(info.get("EndTime")), epoch_s(info.get("StartTime")), parse_limit_s(info.get("TimeLimit"))
    if state == "COMPLETING" and end is not None and end <= now + 5:
        return CANCELLED                     # plain scancel: the job is already ending, now
    if info.get("PreemptTime") not in (None, "", "None", "N/A"):
        return WARNING
    if end is not None and start is not None and limit is not None and abs(end - start - limit) <= 5 \
            and end - now <= grace_s + EARLY_WARNING_SLACK_S:
        return TIME_LIMIT
    return WARNING


def why_stopped(cancel_marker: str, *, grace_s: float) -> tuple[str, dict[str, str]]:
    """(cause, the scontrol record it was read from). Asks slurmctld once; when it cannot answer,
    a warning (checkpoint and requeue: what loses the least)."""
    if os.path.exists(cancel_marker):
        return CANCELLED, {}
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return WARNING, {}
    from jobs import slurm

    try:
        info = slurm.scontrol_show_job(job)
    except Exception:  # noqa: BLE001 - slurmctld busy or gone: the safe default
        return WARNING, {}
    return classify(info, now=time.time(), restart_count=int(os.environ.get("SLURM_RESTART_COUNT") or 0),
                    grace_s=grace_s), info


class Forwarder:
    """Signal handlers that pass SIGUSR1/SIGUSR2/SIGTERM to the programs' process groups.

    Each program runs in its own session (so its data-loader workers get the signal too), which
    means Slurm's `--signal=B:...` only reaches this runner: forwarding is our job. Several
    programs run at once when a packed task runs its trials side by side.
    """

    def __init__(self) -> None:
        self.children: set[Any] = set()   # subprocess.Popen or inproc.ForkedProgram
        self.signum: int | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        for child in list(self.children):
            self.send(child, signum)

    @staticmethod
    def send(child: Any, signum: int) -> None:
        if child.poll() is None:
            deliver = getattr(child, "deliver", None)
            if deliver is not None:   # a program that says where its signals go (jobs.torchrun.Agent)
                deliver(signum)
                return
            try:
                os.killpg(child.pid, signum)
            except ProcessLookupError:
                pass

    def adopt(self, child: Any) -> None:
        self.children.add(child)
        if self.signum is not None:   # a signal that came before the program existed
            self.send(child, self.signum)

    def release(self, child: Any) -> None:
        self.children.discard(child)


def requeue_self(say: Any) -> bool:
    """`scontrol requeue <job>_<task>`: same job id, SLURM_RESTART_COUNT + 1. False if refused."""
    from jobs import slurm  # only here: most tasks never requeue
    from jobs.runtime import slurm_task_id

    job = slurm_task_id()
    try:
        slurm.scontrol_requeue([job])
    except Exception as exc:  # SlurmError, or scontrol missing: the caller records the trial
        if "pending execution" in str(exc).lower():
            # Slurm requeued the task itself (scontrol requeue, node down, preemption): the next
            # attempt is already queued and owns the result, so this one writes none.
            say("already requeued by Slurm")
            return True
        say(f"requeue failed: {exc}")
        return False
    say(f"requeued {job}")
    return True
