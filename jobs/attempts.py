"""A trial's attempt counters, trials/<id>/failures, timeouts and starts, and the rule they decide:
whether a failed or timed-out result is left as it is. The task runner (before it runs a trial again)
and `sweep resume` (before it submits one) ask the same rule. Stdlib only: every array task reads it.
"""
from __future__ import annotations

from pathlib import Path

from jobs.atomic import write_text_atomic
from jobs.trial_state import TrialState

FAILURES = "failures"    # failed attempts so far (preemptions not counted)
TIMEOUTS = "timeouts"    # time-limit requeues so far
STARTS = "starts"        # runs started so far, of a trial in a packed task (its task's restarts are not its own)


def count(tdir: Path, name: str) -> int:
    try:
        return int((tdir / name).read_text())
    except (OSError, ValueError):
        return 0


def bump(tdir: Path, name: str) -> int:
    n = count(tdir, name) + 1
    write_text_atomic(tdir / name, f"{n}\n")
    return n


def used_up(tdir: Path, state: TrialState, *, max_attempts: int, timeout_requeues: int) -> bool:
    """A failure (or time out) after `max_attempts` failed attempts, or a time out after its
    `timeout_requeues` time-limit requeues: final until `sweep resume --retry-failed`."""
    if state in (TrialState.FAILED, TrialState.TIMEOUT) and count(tdir, FAILURES) >= max_attempts:
        return True
    return state is TrialState.TIMEOUT and count(tdir, TIMEOUTS) > timeout_requeues


def clear(tdir: Path) -> None:
    """Start the counts over (a trial retried on request)."""
    for name in (FAILURES, TIMEOUTS):
        (tdir / name).unlink(missing_ok=True)
