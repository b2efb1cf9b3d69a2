"""`Dist`: one hyperparameter's distribution, in value space, as every dialect parser yields it.

Stdlib only: the manifest (read in every array task) holds the sweep's space as Dists.
What each kind means and how it is sampled and searched lives in `search.kinds`.
"""
from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing costs a few ms at every array task's start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

# Bounds are in value space (never exponents):
#   choice         values, probabilities (optional)
#   uniform        low, high                       (float)
#   int_uniform    low, high                       (inclusive ints)
#   loguniform     low, high > 0                   (float, log-uniform)
#   int_loguniform low, high > 0                   (ints, log-uniform)
#   pow2           low, high powers of two         (ints 2**k)
#   logit          0 < low < high < 1              (uniform in logit space)
#   normal         mu, sigma                       (optionally clipped to low/high)
#   lognormal      mu, sigma (of log value)        (optionally clipped to low/high)
#   beta           a, b                            (in [0, 1])
KINDS = ("choice", "uniform", "int_uniform", "loguniform", "int_loguniform", "pow2", "logit",
         "normal", "lognormal", "beta")
_NUMBERS = ("low", "high", "q", "mu", "sigma", "a", "b", "center")
_INTEGER_KINDS = ("int_uniform", "int_loguniform", "pow2")


class Dist(namedtuple("Dist", "kind low high values probabilities q mu sigma a b center is_int",
                      defaults=(None, None, (), None, None, None, None, None, None, None, False))):
    """`q` quantises a sampled value to a multiple of q; `center` is the search centre
    (Protein `mean`, CARBS `search_center`): the first point a bayes plan suggests.
    A namedtuple, as the manifest's records (see jobs.manifest): every array task reads the space."""

    __slots__ = ()

    def __new__(cls, kind: str, *args: Any, **kwargs: Any) -> Dist:
        self = super().__new__(cls, kind, *args, **kwargs)
        if kind in _INTEGER_KINDS and not self.is_int:   # their values are ints, whatever was said
            self = self._replace(is_int=True)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON form (`--dry-run --json`'s "space", manifest.json's "space")."""
        d: dict[str, Any] = {"distribution": self.kind}
        for name in _NUMBERS:
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        if self.values:
            d["values"] = list(self.values)
        if self.probabilities is not None:
            d["probabilities"] = list(self.probabilities)
        if self.is_int and self.kind not in _INTEGER_KINDS:
            d["is_int"] = True
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Dist:
        """Inverse of `to_dict`."""
        probabilities = d.get("probabilities")
        return cls(kind=d["distribution"], values=tuple(d.get("values", ())),
                   probabilities=tuple(probabilities) if probabilities is not None else None,
                   is_int=bool(d.get("is_int", False)),
                   **{name: d.get(name) for name in _NUMBERS})
