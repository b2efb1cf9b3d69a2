"""Hydra app configs that carry their own sweep under `hydra.sweeper`.

    defaults:
      - override hydra/sweeper: optuna          # or the basic sweeper (grid) when absent
      - override hydra/sweeper/sampler: tpe
    command: [python, my_app.py]                # ours, optional: else --command, else python -m train
    hydra:
      sweeper:
        sampler: {_target_: optuna.samplers.TPESampler, seed: 123}
        direction: maximize
        n_trials: 40
        params:
          model.lr: tag(log, interval(1e-5, 1e-2))
          model.depth: range(2, 8)
          optim: adam,sgd

Every `params` value is Hydra sweep syntax (launcher.dialects.hydra_syntax); a plain value is
a constant. The sweeper sets the plan: basic -> grid; Optuna with GridSampler -> grid,
RandomSampler / QMCSampler -> random, any other sampler (TPE by default) -> bayes with
spec.sampler naming it; `n_trials` -> trials, `direction` -> goal. Optuna's older
`search_space: {x: {type: float, low, high, log}}` form is read too. The rest of the file is
the app's own configuration, which the app reads itself: none of it becomes an override.
"""
from __future__ import annotations

from typing import Any, Mapping

from jobs.errors import UserError
from launcher.dialects import slug_name
from launcher.dialects.common import coerce_tree, join_key, make_dist, positive_int, split_command
from launcher.dialects.hydra_syntax import parse_value
from search.dist import Dist
from launcher.spec import DEFAULT_COMMAND, SweepSpec

DIALECT = "hydra"
# Optuna sampler class / Hydra config name -> (method, sampler name)
SAMPLERS = {"gridsampler": ("grid", "grid"), "grid": ("grid", "grid"),
            "randomsampler": ("random", "random"), "random": ("random", "random"),
            "qmcsampler": ("random", "qmc"), "qmc": ("random", "qmc"),
            "tpesampler": ("bayes", "tpe"), "tpe": ("bayes", "tpe"),
            "cmaessampler": ("bayes", "cmaes"), "cmaes": ("bayes", "cmaes"),
            "nsgaiisampler": ("bayes", "nsgaii"), "nsgaii": ("bayes", "nsgaii"),
            "nsgaiiisampler": ("bayes", "nsgaiii"), "motpesampler": ("bayes", "motpe"),
            "motpe": ("bayes", "motpe"), "gpsampler": ("bayes", "gp"), "botorchsampler": ("bayes", "botorch")}


def _defaults_overrides(doc: Mapping[str, Any]) -> dict[str, str]:
    """`- override hydra/sweeper: optuna` entries of the defaults list -> {"hydra/sweeper": "optuna"}."""
    out: dict[str, str] = {}
    for item in doc.get("defaults") or []:
        if isinstance(item, Mapping):
            for k, v in item.items():
                k = str(k).strip()
                if k.startswith("override "):
                    out[k[len("override "):].strip()] = str(v)
    return out


def _sampler(sweeper: Mapping[str, Any], defaults: Mapping[str, str], *, file: str) -> tuple[str, str, int | None]:
    """(method, sampler name, seed) of an Optuna sweeper."""
    cfg = sweeper.get("sampler")
    name, seed = defaults.get("hydra/sweeper/sampler", "tpe"), None
    if isinstance(cfg, Mapping):
        name = str(cfg.get("_target_", name)).rsplit(".", 1)[-1]
        if cfg.get("seed") is not None:
            seed = positive_int(cfg["seed"], minimum=0, key="hydra.sweeper.sampler.seed", file=file,
                                dialect=DIALECT)
    elif isinstance(cfg, str):
        name = cfg
    try:
        method, sampler = SAMPLERS[name.strip().lower()]
    except KeyError:
        raise UserError(f"unknown Optuna sampler {name!r}", key="hydra.sweeper.sampler", file=file,
                        dialect=DIALECT,
                        fix="use optuna.samplers.TPESampler, RandomSampler, GridSampler, CmaEsSampler, ...") from None
    return method, sampler, seed


def _search_space(tree: Mapping[str, Any], *, file: str) -> dict[str, Dist]:
    """Optuna sweeper 1.1's `search_space: {x: {type: float|int|categorical, low, high, step, log, choices}}`."""
    space: dict[str, Dist] = {}
    for name, cfg in tree.items():
        key = join_key("hydra.sweeper.search_space", name)
        kw = dict(key=key, file=file, dialect=DIALECT)
        if not isinstance(cfg, Mapping):
            raise UserError(f"expected a mapping, got {cfg!r}", **kw, fix="write `{type: float, low: 0, high: 1}`")
        kind = str(cfg.get("type", "")).lower()
        if kind == "categorical":
            space[str(name)] = make_dist("choice", values=cfg.get("choices"), **kw)
        elif kind in ("float", "int"):
            log = bool(cfg.get("log", False))
            dist = {("float", False): "uniform", ("float", True): "loguniform",
                    ("int", False): "int_uniform", ("int", True): "int_loguniform"}[(kind, log)]
            space[str(name)] = make_dist(dist, low=cfg.get("low"), high=cfg.get("high"), q=cfg.get("step"), **kw)
        else:
            raise UserError(f"unknown type {cfg.get('type')!r}", **kw, fix="use float, int or categorical")
    return space


def parse(doc: dict[str, Any], *, file: str) -> SweepSpec:
    kw = dict(file=file, dialect=DIALECT)
    hydra = doc.get("hydra") if isinstance(doc.get("hydra"), Mapping) else {}
    sweeper = hydra.get("sweeper") or {}
    if not isinstance(sweeper, Mapping):
        raise UserError(f"expected a mapping, got {sweeper!r}", key="hydra.sweeper", **kw,
                        fix="write `hydra: {sweeper: {params: {key: '1,2,3'}}}`")
    defaults = _defaults_overrides(doc)
    kind = defaults.get("hydra/sweeper") or str(sweeper.get("_target_", "basic"))
    kind = kind.lower()

    space: dict[str, Dist] = {}
    constants: dict[str, Any] = {}
    params = sweeper.get("params")
    if params is None and isinstance(sweeper.get("search_space"), Mapping):
        space = _search_space(sweeper["search_space"], file=file)
    elif isinstance(params, Mapping) and params:
        for name, expr in params.items():
            key = str(name)
            where = join_key("hydra.sweeper.params", key)
            if isinstance(expr, str):
                value = parse_value(expr, key=where, **kw)
            elif isinstance(expr, list):
                value = make_dist("choice", values=expr, key=where, **kw)
            elif expr is None or isinstance(expr, Mapping):
                raise UserError(f"expected a sweep expression, got {expr!r}", key=where, **kw,
                                fix="write e.g. `1,2,3`, `range(1,5)` or `tag(log, interval(1e-5, 1e-2))`")
            else:
                value = coerce_tree(expr)
            (space if isinstance(value, Dist) else constants)[key] = value
    else:
        raise UserError("no sweep parameters", key="hydra.sweeper.params", **kw,
                        fix="add `hydra: {sweeper: {params: {model.lr: 'tag(log, interval(1e-5, 1e-2))'}}}`")

    warnings: list[str] = []
    goal, n_trials, sampler, seed = "maximize", None, None, None
    if "optuna" in kind:
        method, sampler, sampler_seed = _sampler(sweeper, defaults, file=file)
        seed = sampler_seed
        n_trials = positive_int(sweeper.get("n_trials", 20), key="hydra.sweeper.n_trials", **kw)
        direction = sweeper.get("direction", "minimize")
        if isinstance(direction, list):
            if len(direction) > 1:
                warnings.append(f"{file}: key 'hydra.sweeper.direction': several objectives; optimizing the "
                                f"first ({direction[0]})")
            direction = direction[0] if direction else "minimize"
        goal = str(direction).strip().lower()
        if goal not in ("minimize", "maximize"):
            raise UserError(f"direction must be minimize or maximize, got {direction!r}",
                            key="hydra.sweeper.direction", **kw, fix="write `direction: maximize`")
    elif "nevergrad" in kind:
        optim = sweeper.get("optim") if isinstance(sweeper.get("optim"), Mapping) else {}
        method, sampler = "bayes", str(optim.get("optimizer", "NGOpt"))
        if optim.get("budget") is not None:
            n_trials = positive_int(optim["budget"], key="hydra.sweeper.optim.budget", **kw)
        goal = "maximize" if optim.get("maximize") else "minimize"
    else:
        method = "grid"  # Hydra's basic sweeper: the cartesian product

    command = DEFAULT_COMMAND
    if doc.get("command") is not None:
        command = split_command(doc["command"], key="command", **kw)
    job = hydra.get("job") if isinstance(hydra.get("job"), Mapping) else {}
    extra = {"hydra.sweeper": {k: v for k, v in sweeper.items() if k not in ("params", "search_space")}}
    return SweepSpec(
        name=slug_name(sweeper.get("study_name") or job.get("name"), file), method=method, space=space,
        constants=constants, command=command, n_trials=n_trials, seed=seed, goal=goal, sampler=sampler,
        dialect=DIALECT, source=file, extra=extra, warnings=tuple(warnings))
