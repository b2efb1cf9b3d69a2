"""The validated sweep spec every dialect parser yields and every plan reads.

Plans never see a dialect: a W&B file, a Metta file and our own native file that
describe the same search become the same `SweepSpec`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_COMMAND = ("python", "-m", "train")

# Every distribution a parser may produce. Bounds are in value space (never exponents):
#   choice        values, probabilities (optional)
#   uniform       low, high                       (float)
#   int_uniform   low, high                       (inclusive ints)
#   loguniform    low, high > 0                   (float, log-uniform)
#   int_loguniform low, high > 0                  (ints, log-uniform)
#   pow2          low, high powers of two         (ints 2**k)
#   logit         0 < low < high < 1              (uniform in logit space)
#   normal        mu, sigma                       (optionally clipped to low/high)
#   lognormal     mu, sigma (of log value)        (optionally clipped to low/high)
#   beta          a, b                            (in [0, 1])
# `q` quantises a sampled value to a multiple of q; `center` is the search centre
# (Protein `mean`, CARBS `search_center`): the first suggested point of a bayes plan.
KINDS = ("choice", "uniform", "int_uniform", "loguniform", "int_loguniform", "pow2", "logit",
         "normal", "lognormal", "beta")


@dataclass(frozen=True)
class Dist:
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None
    a: float | None = None
    b: float | None = None
    center: Any = None
    is_int: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON form for `--dry-run --json` (`space`) and manifest.json."""
        d: dict[str, Any] = {"distribution": self.kind}
        for name in ("low", "high", "q", "mu", "sigma", "a", "b", "center"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        if self.values:
            d["values"] = list(self.values)
        if self.probabilities is not None:
            d["probabilities"] = list(self.probabilities)
        if self.is_int and self.kind not in ("int_uniform", "int_loguniform", "pow2"):
            d["is_int"] = True
        return d


@dataclass(frozen=True)
class Stages:
    """Progressive training: the same trials run once per value of `key`, in order.

    Stage k+1 of trial i starts from trial i's stage-k checkpoint, passed as
    `<checkpoint_key>=<path>`.
    """

    key: str
    values: tuple[Any, ...]
    checkpoint_key: str = "checkpoint_path"


@dataclass(frozen=True)
class Pruner:
    """Early stopping (bayes / random plans). kind: hyperband | asha | median | none."""

    kind: str = "none"
    min_iter: int | None = None
    max_iter: int | None = None
    eta: int = 3
    s: int | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep.

    name:         sweep name (ids hash it; the default directory is named after it).
    method:       grid | random | bayes | baseline.
    space:        dotted key -> Dist (random/bayes) ; for grid every Dist is a `choice`.
    constants:    dotted key -> value passed to every trial as `key=value`.
    command:      argv prefix; `None` entries never appear. Overrides are appended as
                  `key=value` unless `args_style` says otherwise (W&B macros).
    n_trials:     trials for random/bayes (per environment when environments are given).
    environments: optional list of environment names, swept as `env_key=<name>`.
    """

    name: str
    method: str = "grid"
    space: dict[str, Dist] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] = DEFAULT_COMMAND
    # How overrides are spliced into `command`: "append" (key=value after the command) or
    # a W&B-style template handled by launcher.argv (see that module).
    args_style: str = "append"
    n_trials: int | None = None
    seed: int = 0
    environments: tuple[str, ...] = ()
    env_key: str = "data_path"
    stages: Stages | None = None
    # A/B baseline: named variants, each a dict of overrides, run with every other point.
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    repeats: int = 1
    # With repeats > 1, repeat r of a point gets `<seed_key>=<seed + r>` (and a distinct id).
    seed_key: str = "seed"
    metric: str | None = None
    goal: str = "maximize"
    pruner: Pruner = field(default_factory=Pruner)
    sampler: str | None = None
    # Bayes settings that the plan honours (n_startup, max_cost, ...) and ones merely recorded.
    search_options: dict[str, Any] = field(default_factory=dict)
    # Slurm resources / executor hints from the file (time, partition, gres, max_parallel ...).
    resources: dict[str, Any] = field(default_factory=dict)
    dialect: str = "native"
    source: str | None = None
    # Keys kept verbatim but not about the search (project, entity, description, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
