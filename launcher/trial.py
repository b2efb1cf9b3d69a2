"""A trial's identity: a short stable hash of what makes it that trial.

The trial record itself (`Trial`) lives in jobs.manifest: plans make them, backends submit
them, the runner runs them.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

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
