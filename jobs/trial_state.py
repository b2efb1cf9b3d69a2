"""`TrialState`: the one spelling of a trial's state, in result files, status and resume.

A result file's "status" is one of the result states; `sweep status` adds what Slurm or the
sweep directory says about trials without a final result (unsubmitted, pending, running, lost).
Stdlib only (enum is loaded by `signal` anyway): the trainer imports it before torch.
"""
from __future__ import annotations

import enum


class TrialState(str, enum.Enum):
    UNSUBMITTED = "unsubmitted"    # not submitted yet (queue limits), or its submission was lost
    PENDING = "pending"            # Slurm (or the local pool) holds it, not started
    RUNNING = "running"
    COMPLETED = "completed"        # the program finished and reported its metrics
    FAILED = "failed"              # the program failed (exit code, no metrics) after its attempts
    TIMEOUT = "timeout"            # it reached its time limit (after its time-limit requeues)
    PREEMPTED = "preempted"        # stopped by a signal and not requeued
    CANCELLED = "cancelled"        # the user cancelled it (`sweep cancel`, scancel)
    DIVERGED = "diverged"          # the program stopped it: the loss went NaN/Inf
    PRUNED = "pruned"              # the sweep's pruner stopped it early
    LOST = "lost"                  # submitted, but neither Slurm nor the disk knows it
    # Successive halving (ASHA): a trial of a higher rung runs only once its rung below ranks it.
    WAITING = "waiting"            # not promoted yet: its rung below may still rank it (or it is due)
    STOPPED = "stopped"            # not promoted, and never will be: its rung below is decided

    def __str__(self) -> str:        # reads as its value in messages, f-strings and JSON alike
        return self.value

    __format__ = str.__format__

    def is_active(self) -> bool:
        """Slurm (or the local pool) still holds it: never resubmit."""
        return self in _ACTIVE

    def is_final(self) -> bool:
        """A result the search keeps: completed, or stopped on purpose (diverged, pruned)."""
        return self in _FINAL

    def is_ended(self) -> bool:
        """Nothing is running it and nothing will by itself: final, or failed for good."""
        return not (self.is_active() or self in _NOT_STARTED)

    def needs_run(self) -> bool:
        """`sweep resume` submits it (a trial waiting for a promotion is jobs.promote's to submit)."""
        return not (self.is_active() or self.is_final() or self is TrialState.WAITING)

    @classmethod
    def of_result(cls, result: dict) -> TrialState:
        """The state a result file records (an unknown status reads as failed)."""
        try:
            return cls(result.get("status", "failed"))
        except ValueError:
            return cls.FAILED


_ACTIVE = frozenset({TrialState.PENDING, TrialState.RUNNING})
# A stopped trial is a decision of the search, like a pruned one: final, without a result.
_FINAL = frozenset({TrialState.COMPLETED, TrialState.DIVERGED, TrialState.PRUNED, TrialState.STOPPED})
_NOT_STARTED = frozenset({TrialState.UNSUBMITTED, TrialState.WAITING})
# What a swept program may report itself through jobs.runtime.write_metrics.
PROGRAM_STATES = (TrialState.COMPLETED, TrialState.DIVERGED, TrialState.PRUNED)
