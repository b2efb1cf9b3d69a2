"""ASHA (asynchronous successive halving) across Slurm jobs: the plan's half, pure like the rest.

    rungs: {key: arch.halt_max_steps, values: [4, 8, 16]}    eta: 2

Every trial of every rung is planned up front, the way progressive stages are (the rungs are kept
as the spec's `stages`): rung r holds indices r*n .. r*n+n-1, and trial i of rung r+1 names trial
i of rung r as its parent, whose checkpoint it starts from (`<checkpoint_key>=<parent's
checkpoints/>`, added by the task runner). Only rung 0 is submitted at launch; the higher rungs
are held in the manifest until jobs.promote promotes them, one trial at a time, as soon as the
finished results of the rung below rank it in their top 1/eta.

The points are a random sample when the spec gives a number of trials, else a grid.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from jobs.errors import UserError
from launcher.spec import SweepSpec

METHOD = "asha"
DEFAULT_ETA = 3
ETA_KEY = "eta"          # where the spec (and the manifest's settings) keep eta: search_options


def eta_of(options: dict[str, Any]) -> int:
    """eta from a spec's (or a manifest's) search options."""
    return int(options.get(ETA_KEY) or DEFAULT_ETA)


def base_method(spec: SweepSpec) -> str:
    """How the rung-0 points are chosen: random samples with `trials:`, else the grid."""
    return "random" if spec.n_trials is not None else "grid"


def check(spec: SweepSpec, fail: Callable[[str, str | None, str], UserError]) -> None:
    """Raise what makes an asha spec unplannable (plans.validate calls this)."""
    rungs = spec.stages
    if rungs is None or len(rungs.values) < 2:
        raise fail("method asha needs at least two rungs", "rungs",
                   "add e.g. `rungs: {key: arch.halt_max_steps, values: [4, 8, 16]}` (or key: epochs)")
    values = rungs.values
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
            or any(b <= a for a, b in itertools.pairwise(values)):
        raise fail(f"rung budgets must be numbers that grow, got {list(values)}", "rungs.values",
                   "list each rung's budget once, smallest first, e.g. [4, 8, 16]")
    eta = spec.search_options.get(ETA_KEY, DEFAULT_ETA)
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise fail(f"eta must be an integer of at least 2, got {eta!r}", "eta",
                   "set `eta: 2` (keep the best half at each rung) or 3 (the best third)")
    if not spec.metric:
        raise fail("method asha needs a metric to rank each rung by", "metric",
                   "add e.g. `metric: eval/exact_accuracy` and `goal: maximize`")
    if spec.pruner.active:
        raise fail("method asha stops trials between rungs; a pruner would stop them inside one too", "pruner",
                   "remove `pruner:` (or use method random with the pruner instead)")
    if base_method(spec) == "grid":
        for key, dist in spec.space.items():
            if dist.kind != "choice":
                raise fail(f"a grid of rung-0 points needs lists of values, got a {dist.kind} distribution", key,
                           "set `trials: N` to sample N points, or list the values")
