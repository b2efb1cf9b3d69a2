"""A/B baseline: every named variant runs at every point of the plan.

A variant is a small dict of overrides (`{loss.feudal_loss_weight: 0.0}`); its values join
the point's params, winning over a sampled value of the same key, since that is what the
comparison is about.
"""
from __future__ import annotations

from typing import Any


def apply_variants(point: dict[str, Any], variants: dict[str, dict[str, Any]]
                   ) -> list[tuple[str | None, dict[str, Any]]]:
    """[(variant name, params), ...] in the variants' order; [(None, point)] without variants."""
    if not variants:
        return [(None, dict(point))]
    return [(name, {**point, **overrides}) for name, overrides in variants.items()]
