"""How many trials each array task runs: `--pack N`, `pack: N`, or `pack: auto`.

Thousands of short trials (a 2-minute smoke run, an evaluation sweep) would otherwise pay one
scheduling round each, and HPC centres ask users to pack work when they launch more than about
ten jobs a minute. A packed task runs its trials one after another (side by side when it holds
several GPUs); each trial keeps its own directory, result, attempts and log.

`auto` fills about 80% of the task's time limit with trials of the expected length: both come
from the cluster profile or the sweep's resources (`time:` and `trial_time:`), and packs stay
at 1 when either is missing or a trial is longer than a quarter of the limit.
"""
from __future__ import annotations

from typing import Any

from jobs.errors import UserError
from jobs.profile import ClusterProfile
from jobs import slurm

AUTO_FILL = 0.8
MAX_PACK = 10_000


def _seconds(text: Any, key: str, source: str | None) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(slurm.time_spec_s(text))
    except ValueError:
        raise UserError(f"'{text}' is not a Slurm time", file=source, key=key,
                        fix="write it as HH:MM:SS or D-HH:MM:SS") from None


def pack_size(value: Any, profile: ClusterProfile, spec: Any = None) -> int:
    """The number of trials per task for `value` (None, an int, or "auto")."""
    source = getattr(spec, "source", None)
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().lower() == "auto":
        limit = _seconds(profile.time, "time", source)
        trial = _seconds(profile.trial_time, "trial_time", source)
        if not limit or not trial:
            raise UserError("pack: auto needs the task's time limit and the expected time of one trial",
                            file=source, key="pack",
                            fix="set `time:` and `trial_time:` in the cluster profile or the sweep's resources, "
                                "or give a number (--pack 50)")
        return max(1, min(MAX_PACK, int(limit * AUTO_FILL // trial)))
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(value).strip() not in (str(n), f"{n}.0"):
        raise UserError(f"pack must be a positive whole number or auto, not {value!r}", file=source, key="pack",
                        fix="e.g. --pack 50, or pack: auto")
    return min(n, MAX_PACK)
