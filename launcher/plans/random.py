"""Random plan: n independent samples of every key in the space."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search.dist import Dist
from search.kinds import sampler

if TYPE_CHECKING:
    import numpy as np


def random_points(space: dict[str, Dist], n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """`n` points; each key is drawn in the spec's order, so one seed gives one list."""
    # One prepared sampler per key (checks done once); the draw order is unchanged.
    draws = [(key, sampler(dist)) for key, dist in space.items()]
    return [{key: draw(rng) for key, draw in draws} for _ in range(n)]


def stream(seed: int, *parts: int) -> np.random.Generator:
    """An independent generator per (seed, environment...): adding an environment to a sweep
    leaves the samples of the others unchanged."""
    import numpy as np  # here, not at import: grid and bayes plans never pay for numpy

    return np.random.default_rng([seed % 2**63, *parts])
