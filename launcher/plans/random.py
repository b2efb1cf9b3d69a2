"""Random plan: n independent samples of every key in the space."""
from __future__ import annotations

from typing import Any

import numpy as np

from launcher.plans.sampling import sample
from launcher.spec import Dist


def random_points(space: dict[str, Dist], n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """`n` points; each key is drawn in the spec's order, so one seed gives one list."""
    return [{key: sample(dist, rng) for key, dist in space.items()} for _ in range(n)]


def stream(seed: int, *parts: int) -> np.random.Generator:
    """An independent generator per (seed, environment...): adding an environment to a sweep
    leaves the samples of the others unchanged."""
    return np.random.default_rng([seed % 2**63, *parts])
