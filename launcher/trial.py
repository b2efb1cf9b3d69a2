"""A trial: one run of the swept command with one set of overrides."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from jobs.argv import format_value  # noqa: F401  (re-exported: how a value reads on a command line)


# What json.dumps(key, sort_keys=True, default=str, separators=(",", ":")) builds on every
# call, built once: a 10,000-trial plan hashes 10,000 keys (same text, so the same ids).
_ID_JSON = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


def trial_id(sweep: str, stage: int, params: dict[str, Any], environment: str | None = None,
             replica: int = 0, *, variant: str | None = None) -> str:
    """Short stable hash of (sweep name, stage, params[, environment, replica, variant]).

    The same spec always yields the same ids: that is what makes resume idempotent.
    Optional parts enter the hash only when set, so ids without them never change.
    """
    key = {"sweep": sweep, "stage": stage, "params": params}
    if environment is not None:
        key["environment"] = environment
    if replica:
        key["replica"] = replica
    if variant is not None:
        key["variant"] = variant
    return hashlib.sha1(_ID_JSON.encode(key).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Trial:
    """One planned run. Plans make these; backends submit them; the runtime runs them.

    index:       position in the sweep (unique across stages); the Slurm array task id
                 is `index - offset` of the submission that holds it.
    params:      only what the plan varied (what reports call hyperparameters).
    overrides:   every value passed to the command (constants, params, environment and stage
                 key), typed, in command-line order; rendered as `key=value` by jobs.argv.
    parent:      id of the trial whose checkpoint this one starts from (progressive stages).
    variant:     name of the A/B variant (baseline plans) whose overrides are in params.
    replica:     repeat / sample number that tells apart trials with equal params (random
                 samples, repeated seeds, bayes trials whose params are asked at run time).
    """

    id: str
    index: int
    stage: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None
    parent: str | None = None
    variant: str | None = None
    replica: int = 0

    def override_args(self) -> list[str]:
        """The overrides as `key=value` strings (what `--dry-run --json` shows)."""
        return [f"{k}={format_value(v)}" for k, v in self.overrides.items()]

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "index": self.index, "stage": self.stage, "params": self.params,
             "overrides": self.overrides}
        if self.environment is not None:
            d["environment"] = self.environment
        if self.parent is not None:
            d["parent"] = self.parent
        if self.variant is not None:
            d["variant"] = self.variant
        if self.replica:
            d["replica"] = self.replica
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Trial":
        return cls(id=d["id"], index=d["index"], stage=d.get("stage", 0), params=d.get("params", {}),
                   overrides=d.get("overrides", {}), environment=d.get("environment"),
                   parent=d.get("parent"), variant=d.get("variant"), replica=d.get("replica", 0))
