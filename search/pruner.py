"""`Pruner`: a sweep's early-stopping settings, and the resource bounds they imply.

Stdlib only: the manifest holds one, and the array tasks read it before deciding whether to
import Optuna at all.
"""
from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

PRUNERS = ("hyperband", "asha", "median", "none")


class Pruner(namedtuple("Pruner", "kind min_iter max_iter eta s", defaults=("none", None, None, 3, None))):
    """Early stopping (bayes / random plans). kind: hyperband | asha | median | none.

    min_iter / max_iter / eta / s are in the units of the steps the program reports (W&B's
    `early_terminate` names; `s` is hyperband's bracket count). A namedtuple: see jobs.manifest."""

    __slots__ = ()

    @property
    def active(self) -> bool:
        return str(self.kind or "none").lower() != "none"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "min_iter": self.min_iter, "max_iter": self.max_iter, "eta": self.eta,
                "s": self.s}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Pruner:
        d = d or {}
        return cls(kind=str(d.get("kind") or "none").lower(), min_iter=d.get("min_iter"),
                   max_iter=d.get("max_iter"), eta=int(d.get("eta") or 3), s=d.get("s"))

    def resource_bounds(self) -> tuple[int, int | None]:
        """(min_iter, max_iter), W&B's `s` (bracket count) filling in the missing one."""
        lo, hi, eta, s = self.min_iter, self.max_iter, self.eta, self.s
        if lo is None and hi is not None and s is not None:
            lo = max(1, int(hi) // eta ** int(s))
        if hi is None and lo is not None and s is not None:
            hi = int(lo) * eta ** int(s)
        return int(lo or 1), None if hi is None else int(hi)
