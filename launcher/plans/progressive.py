"""Turn planned points into trials, once per stage of a progressive plan.

Without stages this is the identity (one stage, index = position). With
`stages: {key: arch.halt_max_steps, values: [4, 8, 16]}` every point runs once per value:
stage s holds indices s*n .. s*n+n-1 (contiguous, so one array per stage), and trial i of
stage s+1 names trial i of stage s as its parent, whose checkpoint it starts from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.manifest import Trial
from launcher.spec import SweepSpec
from launcher.trial import trial_id


@dataclass(frozen=True)
class Point:
    """One planned run before stages: what varies, and what tells it apart from its twins."""

    params: dict[str, Any]
    environment: str | None = None
    variant: str | None = None
    replica: int = 0
    # Overrides that are not params: the repeat's seed.
    extra: dict[str, Any] = field(default_factory=dict)


def overrides_for(spec: SweepSpec, point: Point) -> dict[str, Any]:
    """Command-line order: constants, environment, params, seed, stage key (added by the caller)."""
    out = dict(spec.constants)
    if point.environment is not None:
        out[spec.env_key] = point.environment
    out.update(point.params)
    out.update(point.extra)
    return out


def build_trials(spec: SweepSpec, points: list[Point]) -> list[Trial]:
    stage_values = spec.stages.values if spec.stages else (None,)
    n = len(points)
    trials: list[Trial] = []
    previous: list[str] = []
    for s, value in enumerate(stage_values):
        current: list[str] = []
        for i, p in enumerate(points):
            overrides = overrides_for(spec, p)
            if spec.stages is not None:
                overrides[spec.stages.key] = value
            tid = trial_id(spec.name, s, p.params, p.environment, p.replica, variant=p.variant)
            trials.append(Trial(id=tid, index=s * n + i, stage=s, params=dict(p.params), overrides=overrides,
                                environment=p.environment, parent=previous[i] if s else None,
                                variant=p.variant, replica=p.replica))
            current.append(tid)
        previous = current
    return trials
