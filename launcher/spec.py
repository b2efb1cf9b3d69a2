"""The validated sweep spec every dialect parser yields and every plan reads.

Plans never see a dialect: a W&B file, a Metta file and our own native file that
describe the same search become the same `SweepSpec`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobs.manifest import Stages
from search.dist import Dist
from search.pruner import Pruner

DEFAULT_COMMAND = ("python", "-m", "train")

@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep.

    name:         sweep name (ids hash it; the default directory is named after it).
    method:       grid | random | bayes | baseline.
    space:        dotted key -> Dist (random/bayes) ; for grid every Dist is a `choice`.
    constants:    dotted key -> value passed to every trial as `key=value`.
    command:      argv prefix; `None` entries never appear. Overrides are appended as
                  `key=value` unless it holds W&B macros (jobs.argv).
    n_trials:     trials for random/bayes (per environment when environments are given).
    environments: optional list of environment names, swept as `env_key=<name>`.
    """

    name: str
    method: str = "grid"
    space: dict[str, Dist] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] = DEFAULT_COMMAND
    n_trials: int | None = None
    # The plan's seed; None = not given (`sweep launch` draws one and records it).
    seed: int | None = None
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
