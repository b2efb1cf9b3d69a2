"""Grid plan: the cartesian product of every key's values, in a fixed order.

Keys vary in the order the spec lists them, the last one fastest (like nested loops written
top to bottom), so the same file always yields the same trial order.
"""
from __future__ import annotations

import itertools
import math
from typing import Any

from jobs.errors import UserError
from search.dist import Dist

# A product this large is a typo (a range without a step, a forgotten key), not a sweep.
MAX_POINTS = 1_000_000


def grid_size(space: dict[str, Dist]) -> int:
    return math.prod(len(d.values) for d in space.values())


def grid_points(space: dict[str, Dist], *, source: str | None = None, dialect: str | None = None
                ) -> list[dict[str, Any]]:
    """Every combination of the `choice` values in `space`; `{}` alone when space is empty."""
    for key, dist in space.items():
        if dist.kind != "choice":
            raise UserError(f"a grid needs a list of values, got a {dist.kind} distribution",
                            file=source, key=key, dialect=dialect,
                            fix="list the values (e.g. `[1e-4, 1e-3]` or `1,2,3`), or use method: random")
    size = grid_size(space)
    if size > MAX_POINTS:
        raise UserError(f"the grid has {size} points (more than {MAX_POINTS})", file=source,
                        dialect=dialect, fix="drop values or keys, or use method: random with `trials:`")
    keys = list(space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(space[k].values for k in keys))]
