"""Our search space in Optuna's terms: the space and its centre, samplers and pruners by name.

What each distribution kind becomes in Optuna is the kind's own business (search.kinds); this
module assembles a study's pieces. Unknown names raise ValueError; the launcher checks names when it
reads the sweep file (launcher.plans.validate), so an array task never meets one. Optuna is imported inside the functions: an array task
imports this module only for a bayes (or pruned) sweep, and `sweep launch --dry-run` never
pays for it.
"""
from __future__ import annotations

import warnings
from typing import Any

from search.dist import Dist
from search.kinds import Choice, kind_of
from search.pruner import PRUNERS, Pruner

SAMPLERS = ("gp", "tpe", "random", "grid", "qmc", "cmaes", "nsgaii", "nsgaiii")
# Names other tools use for the same strategies (Protein, CARBS and BoTorch are GP-based; MOTPE is
# TPE, which handles several objectives itself since Optuna 4).
SAMPLER_ALIASES = {"gp": "gp", "gpsampler": "gp", "protein": "gp", "carbs": "gp", "bayes": "gp",
                   "bayesian": "gp", "botorch": "gp", "botorchsampler": "gp", "tpe": "tpe", "tpesampler": "tpe",
                   "motpe": "tpe", "motpesampler": "tpe", "random": "random", "randomsampler": "random",
                   "grid": "grid", "gridsampler": "grid", "qmc": "qmc", "qmcsampler": "qmc", "cmaes": "cmaes",
                   "cmaessampler": "cmaes", "nsgaii": "nsgaii", "nsgaiisampler": "nsgaii", "nsgaiii": "nsgaiii",
                   "nsgaiiisampler": "nsgaiii"}
# What a sampler needs installed besides Optuna (checked when the sweep file is read).
SAMPLER_PACKAGES = {"cmaes": "cmaes"}


def to_optuna(dist: Dist) -> Any:
    """The optuna distribution that searches `dist` (search.kinds says how, kind by kind)."""
    return kind_of(dist).to_optuna(dist)


def from_optuna(dist: Dist, x: Any) -> Any:
    """The program's value for optuna value `x` (inside `to_optuna(dist)`)."""
    return kind_of(dist).from_optuna(dist, x)


def to_optuna_value(dist: Dist, value: Any) -> Any:
    """The optuna value of a program value (for enqueueing a search centre), clipped into the box."""
    return kind_of(dist).optuna_value(dist, value)


def search_space(space: dict[str, Dist]) -> dict[str, Any]:
    return {key: to_optuna(dist) for key, dist in space.items()}


def center_point(space: dict[str, Dist]) -> dict[str, Any] | None:
    """Optuna values of the spec's search centre (Protein `mean`, CARBS `search_center`), or None.

    Keys without a centre are left out: enqueue_trial lets the sampler fill them in.
    """
    point = {key: to_optuna_value(d, d.center) for key, d in space.items() if d.center is not None}
    return point or None


# --- samplers and pruners ---------------------------------------------------------------------

def sampler_name(name: str | None) -> str:
    """Canonical sampler name; GP when unset (what Protein/CARBS users expect). ValueError for a name
    Optuna has no sampler for, or one whose package is not installed."""
    if name is None:
        return "gp"
    canonical = SAMPLER_ALIASES.get(str(name).strip().lower())
    if canonical is None:
        raise ValueError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)} (gp is the default)")
    package = SAMPLER_PACKAGES.get(canonical)
    if package is not None:
        import importlib.util

        if importlib.util.find_spec(package) is None:
            raise ValueError(f"sampler {name!r} needs the `{package}` package: pip install {package} "
                             "(or use gp or tpe)")
    return canonical


def make_sampler(name: str | None, space: dict[str, Dist], *, seed: int, options: dict[str, Any] | None = None) -> Any:
    """An optuna sampler by name. `options["n_startup"]` sets the random start-up trials."""
    import optuna

    options = options or {}
    name = sampler_name(name)
    # Metta's num_random_samples arrives as n_startup; native files may spell Optuna's name.
    n_startup = next((options[k] for k in ("n_startup", "n_startup_trials", "num_random_samples")
                      if options.get(k) is not None), None)
    startup = {} if n_startup is None else {"n_startup_trials": int(n_startup)}
    if name == "gp":
        # deterministic_objective: the benchmarks' objectives are noise-free; training is not.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, **startup,
                                             deterministic_objective=bool(options.get("deterministic", False)))
    if name == "tpe":
        # constant_liar: running trials count as bad guesses, so parallel asks spread out.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True, **startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **startup, warn_independent_sampling=False)
    if name in ("nsgaii", "nsgaiii"):
        cls = optuna.samplers.NSGAIISampler if name == "nsgaii" else optuna.samplers.NSGAIIISampler
        return cls(seed=seed)
    grid: dict[str, list[Any]] = {}
    for key, dist in space.items():
        kind = kind_of(dist)
        if not isinstance(kind, Choice):
            raise ValueError(f"{key}: the grid sampler needs a list of values, got a {dist.kind} distribution; "
                             "list the values, or use sampler: gp / tpe")
        grid[key] = kind.categories(dist)
    return optuna.samplers.GridSampler(grid, seed=seed)


def make_pruner(pruner: Pruner) -> Any:
    """hyperband | asha (successive halving) | median | none, in the units of the reported steps."""
    import optuna

    kind = pruner.kind
    if not pruner.active:
        return optuna.pruners.NopPruner()
    lo, hi = pruner.resource_bounds()
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=lo, max_resource=hi if hi is not None else "auto",
                                             reduction_factor=pruner.eta)
    if kind == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=lo, reduction_factor=pruner.eta)
    if kind == "median":
        # Judge nobody before min_iter, and only once a few trials have reported that far.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=lo if pruner.min_iter else 0)
    raise ValueError(f"unknown pruner {kind!r}: use one of {', '.join(PRUNERS)}")
