"""Our search space in Optuna's terms: `Dist` <-> optuna distributions, samplers and pruners by name.

Optuna is imported inside the functions: the array task imports this module only when a
sweep is bayes (or pruned), and `sweep launch --dry-run` never pays for it.

How each `Dist` kind is searched (the "optuna value" is what the study stores; the
"value" is what the program gets):

    uniform          Float(low, high)                   value = optuna value
    loguniform       Float(low, high, log=True)         value = optuna value
    int_uniform      Int(low, high)                     value = optuna value
    int_loguniform   Int(low, high, log=True)           value = optuna value
    pow2             Int(log2 low, log2 high)           value = 2 ** k      (the GP sees the exponent)
    logit            Float(logit low, logit high)       value = sigmoid(x)  (uniform in logit space)
    choice           Categorical(values, or indices when a value is a list/dict)
    normal           Float(mu - 3 sigma, mu + 3 sigma)  intersected with low/high when given
    lognormal        Float(e^(mu - 3 sigma), e^(mu + 3 sigma), log=True)  intersected with low/high
    beta             Float(0, 1)                        intersected with low/high when given

normal / lognormal / beta become bounded uniform searches over (nearly) all of their mass:
a Bayesian optimiser needs a box, and the prior's shape only mattered for random draws.
`q` and `is_int` are applied to the value afterwards (the same rounding as random plans),
and a choice's `probabilities` are ignored (every choice is a candidate).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

from jobs.errors import UserError
from launcher.plans.sampling import _finish as finish_value  # q / is_int rounding, shared with random
from launcher.spec import Dist

SAMPLERS = ("gp", "tpe", "random", "grid")
# Names other tools use for the same strategies (Protein and CARBS are GP-based).
SAMPLER_ALIASES = {"gp": "gp", "gpsampler": "gp", "protein": "gp", "carbs": "gp", "bayes": "gp",
                   "bayesian": "gp", "tpe": "tpe", "tpesampler": "tpe", "random": "random",
                   "randomsampler": "random", "grid": "grid", "gridsampler": "grid"}
PRUNERS = ("hyperband", "asha", "median", "none")
_SIGMAS = 3.0
_PRIMITIVE = (str, int, float, bool, type(None))


def dist_from_dict(d: dict[str, Any]) -> Dist:
    """Inverse of `Dist.to_dict()` (what manifest.json's "space" holds)."""
    return Dist(kind=d["distribution"], low=d.get("low"), high=d.get("high"), values=tuple(d.get("values", ())),
                probabilities=tuple(d["probabilities"]) if d.get("probabilities") is not None else None,
                q=d.get("q"), mu=d.get("mu"), sigma=d.get("sigma"), a=d.get("a"), b=d.get("b"),
                center=d.get("center"), is_int=bool(d.get("is_int", False)))


def space_from_manifest(manifest: dict[str, Any]) -> dict[str, Dist]:
    return {key: dist_from_dict(d) for key, d in (manifest.get("space") or {}).items()}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _clip_box(dist: Dist, lo: float, hi: float) -> tuple[float, float]:
    """The prior's box, narrowed to the user's bounds when they gave any."""
    if dist.low is not None:
        lo = max(lo, dist.low)
    if dist.high is not None:
        hi = min(hi, dist.high)
    if not lo < hi:
        raise ValueError(f"empty search box [{lo}, {hi}] for {dist}")
    return lo, hi


def _categorical_choices(dist: Dist) -> list[Any]:
    # Optuna's categorical holds only JSON scalars; lists or dicts are searched by index.
    if all(isinstance(v, _PRIMITIVE) for v in dist.values):
        return list(dist.values)
    return list(range(len(dist.values)))


def to_optuna(dist: Dist) -> Any:
    """The optuna distribution that searches `dist` (see the module docstring)."""
    from optuna import distributions as od

    kind = dist.kind
    if kind == "choice":
        return od.CategoricalDistribution(_categorical_choices(dist))
    if kind == "uniform":
        return od.FloatDistribution(float(dist.low), float(dist.high))
    if kind == "loguniform":
        return od.FloatDistribution(float(dist.low), float(dist.high), log=True)
    if kind == "int_uniform":
        return od.IntDistribution(int(math.ceil(dist.low)), int(math.floor(dist.high)))
    if kind == "int_loguniform":
        return od.IntDistribution(int(math.ceil(dist.low)), int(math.floor(dist.high)), log=True)
    if kind == "pow2":
        return od.IntDistribution(round(math.log2(dist.low)), round(math.log2(dist.high)))
    if kind == "logit":
        return od.FloatDistribution(_logit(dist.low), _logit(dist.high))
    if kind == "normal":
        return od.FloatDistribution(*_clip_box(dist, dist.mu - _SIGMAS * dist.sigma, dist.mu + _SIGMAS * dist.sigma))
    if kind == "lognormal":
        lo, hi = _clip_box(dist, math.exp(dist.mu - _SIGMAS * dist.sigma), math.exp(dist.mu + _SIGMAS * dist.sigma))
        return od.FloatDistribution(lo, hi, log=True)
    if kind == "beta":
        return od.FloatDistribution(*_clip_box(dist, 0.0, 1.0))
    raise ValueError(f"no optuna mapping for distribution kind {kind!r}")


def from_optuna(dist: Dist, x: Any) -> Any:
    """The program's value for optuna value `x` (inside `to_optuna(dist)`)."""
    kind = dist.kind
    if kind == "choice":
        return dist.values[x] if _categorical_choices(dist) != list(dist.values) else x
    if kind == "pow2":
        return 2 ** int(x)
    if kind in ("int_uniform", "int_loguniform"):
        return int(finish_value(dist, int(x))) if dist.q is not None else int(x)
    if kind == "logit":
        return finish_value(dist, _sigmoid(float(x)))
    return finish_value(dist, float(x))


def to_optuna_value(dist: Dist, value: Any) -> Any:
    """The optuna value of a program value (for enqueueing a search centre), clipped into the box."""
    kind = dist.kind
    if kind == "choice":
        choices = _categorical_choices(dist)
        return value if choices == list(dist.values) else list(dist.values).index(value)
    target = to_optuna(dist)
    if kind == "pow2":
        x: float = math.log2(value)
    elif kind == "logit":
        x = _logit(value)
    else:
        x = value
    x = min(max(x, target.low), target.high)
    return int(round(x)) if kind in ("pow2", "int_uniform", "int_loguniform") else float(x)


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
    """Canonical sampler name; GP when unset (what Protein/CARBS users expect)."""
    if name is None:
        return "gp"
    canonical = SAMPLER_ALIASES.get(str(name).strip().lower())
    if canonical is None:
        raise UserError(f"unknown sampler {name!r}", key="sampler",
                        fix=f"use one of: {', '.join(SAMPLERS)} (gp is the default)")
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
    grid: dict[str, list[Any]] = {}
    for key, dist in space.items():
        if dist.kind != "choice":
            raise UserError(f"the grid sampler needs a list of values, got a {dist.kind} distribution", key=key,
                            fix="list the values, or use sampler: gp / tpe")
        grid[key] = _categorical_choices(dist)
    return optuna.samplers.GridSampler(grid, seed=seed)


def pruner_settings(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's pruner block (launcher.spec.Pruner as a dict); kind "none" when absent."""
    p = manifest.get("pruner") or {}
    return {"kind": str(p.get("kind") or "none").lower(), "min_iter": p.get("min_iter"),
            "max_iter": p.get("max_iter"), "eta": int(p.get("eta") or 3), "s": p.get("s")}


def resource_bounds(settings: dict[str, Any]) -> tuple[int, int | None]:
    """(min_iter, max_iter) with W&B's `s` (bracket count) filling in the missing one."""
    lo, hi, eta, s = settings["min_iter"], settings["max_iter"], settings["eta"], settings["s"]
    if lo is None and hi is not None and s is not None:
        lo = max(1, int(hi) // eta ** int(s))
    if hi is None and lo is not None and s is not None:
        hi = int(lo) * eta ** int(s)
    return int(lo or 1), None if hi is None else int(hi)


def make_pruner(settings: dict[str, Any]) -> Any:
    """hyperband | asha (successive halving) | median | none, in the units of the reported steps."""
    import optuna

    kind = settings["kind"]
    if kind in ("none", "", None):
        return optuna.pruners.NopPruner()
    lo, hi = resource_bounds(settings)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=lo, max_resource=hi if hi is not None else "auto",
                                             reduction_factor=settings["eta"])
    if kind in ("asha", "sha", "successive_halving"):
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=lo, reduction_factor=settings["eta"])
    if kind == "median":
        # Judge nobody before min_iter, and only once a few trials have reported that far.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=lo if settings["min_iter"] else 0)
    raise UserError(f"unknown pruner {kind!r}", key="pruner", fix=f"use one of: {', '.join(PRUNERS)}")
