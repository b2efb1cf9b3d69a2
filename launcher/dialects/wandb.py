"""W&B sweep configurations, run with no W&B server.

    program: train.py
    method: bayes                     # grid | random | bayes
    metric: {name: val_loss, goal: minimize}
    run_cap: 50                       # trials for random / bayes
    early_terminate: {type: hyperband, min_iter: 3, eta: 3}
    command: [${env}, ${interpreter}, ${program}, ${args_no_hyphens}]
    parameters:
      lr: {distribution: log_uniform_values, min: 1e-5, max: 1e-2}
      epochs: {value: 10}                         # constant, passed like the others
      optimizer:
        parameters:                               # nesting -> dotted keys: optimizer.beta1
          beta1: {min: 0.8, max: 0.99}

Distributions (W&B's names -> our Dist kinds; bounds always end up in value space):

    constant -> constants          categorical[_w_probabilities] -> choice
    int_uniform -> int_uniform     uniform / q_uniform -> uniform (q)
    log_uniform, q_log_uniform     min/max are natural-log exponents -> loguniform [e^min, e^max]
    log_uniform_values, q_...      min/max are values -> loguniform
    inv_log_uniform[_values]       W&B draws X = exp(-U): X is itself log-uniform, on
                                   [e^-max, e^-min] (exponents) or [min, max] (values) -> loguniform
    normal, q_normal               mu (0), sigma (1)
    log_normal, q_log_normal       lognormal, mu/sigma of log X
    beta, q_beta                   a (1), b (1)

Without `distribution`: `value` -> constant, `values` -> categorical, min/max -> int_uniform
when both are integers, else uniform. An integer `q` makes the values integers, as in W&B
(its default q, 1.0, does not).
The command's `${env}`, `${interpreter}` and `${program}` are resolved here; the `${args...}`
macros are expanded per trial by jobs.argv.

Hyperband for a program that checkpoints: our extension of `early_terminate` says so by naming the
program's argument that starts it from a checkpoint. W&B stops runs inside one process; on Slurm a
promotion is a new job, so such a file becomes successive halving across jobs (method asha,
launcher.plans.asha): rungs at W&B's bracket budgets, passed as `budget_key` (default epochs).

    early_terminate: {type: hyperband, min_iter: 4, max_iter: 16, eta: 2,
                      checkpoint_key: checkpoint_path, budget_key: epochs}

Rungs: min_iter, min_iter*eta, ... up to max_iter (or min_iter*eta**s); with max_iter and s
only, max_iter/eta**s ... max_iter. Without `checkpoint_key` hyperband stays the in-process pruner.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from jobs.argv import MACROS
from jobs.errors import UserError
from launcher.dialects import NOT_SEARCH_KEYS, slug_name
from launcher.dialects.common import (check_key, coerce_scalar, coerce_tree, join_key, make_dist, number,
                                      positive_int)
from jobs.manifest import Stages
from launcher.plans import asha
from launcher.spec import DEFAULT_COMMAND as SPEC_DEFAULT_COMMAND
from search.dist import Dist
from search.pruner import Pruner
from launcher.spec import SweepSpec

DIALECT = "wandb"
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
# Without a program: the team's trainer, the way Hydra programs take W&B parameters.
DEFAULT_COMMAND_NO_PROGRAM = (*SPEC_DEFAULT_COMMAND, "${args_no_hyphens}")
METHODS = ("grid", "random", "bayes")
TOP_KEYS = ("program", "method", "metric", "parameters", "early_terminate", "command", "run_cap")

# distribution -> (our kind, bounds are log exponents, negated/inverted exponents, has q)
_DISTS: dict[str, tuple[str, bool, bool, bool]] = {
    "int_uniform": ("int_uniform", False, False, False),
    "uniform": ("uniform", False, False, False),
    "q_uniform": ("uniform", False, False, True),
    "log_uniform": ("loguniform", True, False, False),
    "q_log_uniform": ("loguniform", True, False, True),
    "log_uniform_values": ("loguniform", False, False, False),
    "q_log_uniform_values": ("loguniform", False, False, True),
    "inv_log_uniform": ("loguniform", True, True, False),
    "inv_log_uniform_values": ("loguniform", False, False, False),
    "normal": ("normal", False, False, False),
    "q_normal": ("normal", False, False, True),
    "log_normal": ("lognormal", False, False, False),
    "q_log_normal": ("lognormal", False, False, True),
    "beta": ("beta", False, False, False),
    "q_beta": ("beta", False, False, True),
}
ALL_DISTRIBUTIONS = ("constant", "categorical", "categorical_w_probabilities", *_DISTS)
PARAM_FIELDS = ("distribution", "value", "values", "probabilities", "min", "max", "q", "mu", "sigma",
                "a", "b", "parameters")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _param(key: str, cfg: Any, *, file: str) -> tuple[str, Any]:
    """One W&B parameter -> ("const", value) or ("dist", Dist)."""
    kw = dict(file=file, dialect=DIALECT)
    if not isinstance(cfg, Mapping):
        raise UserError(f"a parameter must be a mapping, got {cfg!r}", key=key, **kw,
                        fix=f"write `{key.rsplit('.', 1)[-1]}: {{value: {cfg!r}}}` for a constant, "
                            "or `{values: [...]}` / `{min: .., max: ..}`")
    for field in cfg:
        if field not in PARAM_FIELDS:
            raise UserError(f"unknown field {field!r}", key=join_key(key, field), **kw,
                            fix="a W&B parameter takes: " + ", ".join(PARAM_FIELDS))
    dist = cfg.get("distribution")
    if dist is None:
        if "value" in cfg:
            dist = "constant"
        elif "values" in cfg:
            dist = "categorical_w_probabilities" if "probabilities" in cfg else "categorical"
        elif "min" in cfg and "max" in cfg:
            lo, hi = (number(cfg[b], key=join_key(key, b), **kw) for b in ("min", "max"))
            dist = "int_uniform" if _is_int(lo) and _is_int(hi) else "uniform"
        elif "mu" in cfg or "sigma" in cfg:
            dist = "normal"
        elif "a" in cfg or "b" in cfg:
            dist = "beta"
        else:
            raise UserError("cannot tell the distribution", key=key, **kw,
                            fix="give `value:`, `values: [...]`, `min:` and `max:`, or `distribution:`")
    dist = str(dist).strip().lower()

    if dist == "constant":
        if "value" not in cfg:
            raise UserError("a constant needs `value:`", key=key, **kw, fix="add `value: ...`")
        return "const", coerce_tree(cfg["value"])
    if dist in ("categorical", "categorical_w_probabilities"):
        if dist == "categorical_w_probabilities" and "probabilities" not in cfg:
            raise UserError("categorical_w_probabilities needs `probabilities:`", key=key, **kw,
                            fix="add one probability per value, summing to 1")
        return "dist", make_dist("choice", values=cfg.get("values"), probabilities=cfg.get("probabilities"),
                                 key=key, **kw)
    if dist not in _DISTS:
        raise UserError(f"unknown distribution {dist!r}", key=join_key(key, "distribution"), **kw,
                        fix="use one of: " + ", ".join(ALL_DISTRIBUTIONS))

    kind, exponents, inverted, quantised = _DISTS[dist]
    q = cfg.get("q", 1.0) if quantised else None  # W&B's default q is 1.0 (floats)
    is_int = quantised and _is_int(coerce_scalar(q))
    if kind in ("normal", "lognormal"):
        return "dist", make_dist(kind, mu=cfg.get("mu", 0), sigma=cfg.get("sigma", 1), q=q, is_int=is_int,
                                 key=key, **kw)
    if kind == "beta":
        return "dist", make_dist(kind, a=cfg.get("a", 1), b=cfg.get("b", 1), q=q, is_int=is_int, key=key, **kw)
    for bound in ("min", "max"):
        if bound not in cfg:
            raise UserError(f"{dist} needs `min:` and `max:`", key=key, **kw, fix=f"add `{bound}:`")
    lo, hi = (number(cfg[b], key=join_key(key, b), **kw) for b in ("min", "max"))
    if exponents:
        if lo > hi:
            raise UserError(f"min ({lo}) is greater than max ({hi})", key=key, **kw, fix="swap min and max")
        # W&B's log_uniform bounds are natural-log exponents; inv_log_uniform draws exp(-U(min, max)).
        lo, hi = (math.exp(-hi), math.exp(-lo)) if inverted else (math.exp(lo), math.exp(hi))
    return "dist", make_dist(kind, low=lo, high=hi, q=q, is_int=is_int, key=key, **kw)


def _parameters(tree: Any, prefix: str, *, file: str, space: dict[str, Dist],
                constants: dict[str, Any]) -> None:
    if not isinstance(tree, Mapping) or not tree:
        raise UserError("expected a mapping of parameters", key=prefix or "parameters", file=file,
                        dialect=DIALECT, fix="write `parameters:` with one `name: {...}` entry per parameter")
    for name, cfg in tree.items():
        key = join_key(prefix, name)
        if isinstance(cfg, Mapping) and "parameters" in cfg:
            others = [f for f in cfg if f != "parameters"]
            if others:
                raise UserError(f"a nested parameter holds only `parameters:`, found {others}", key=key,
                                file=file, dialect=DIALECT, fix="move those fields into a child parameter")
            _parameters(cfg["parameters"], key, file=file, space=space, constants=constants)
            continue
        what, value = _param(key, cfg, file=file)
        (constants if what == "const" else space)[key] = value


def resolve_command(command: Any, program: Any, *, file: str, dialect: str,
                    default: tuple[str, ...] = DEFAULT_COMMAND) -> tuple[tuple[str, ...], list[str]]:
    """The command with ${env}, ${interpreter} and ${program} resolved (W&B rules), and warnings.

    ${interpreter} is `python` for a .py program and dropped otherwise (the program runs
    itself); the `${args...}` macros stay for jobs.argv to expand per trial.
    """
    if command is None:
        command = list(default)
    if isinstance(command, str) or not isinstance(command, list) or not command \
            or not all(isinstance(c, (str, int, float)) for c in command):
        raise UserError(f"expected a list of strings, got {command!r}", key="command", file=file,
                        dialect=dialect, fix="write e.g. `command: [${env}, ${interpreter}, ${program}, ${args}]`")
    out: list[str] = []
    for element in map(str, command):
        if element == "${env}":
            out.append("/usr/bin/env")
        elif element == "${interpreter}":
            if program is not None and not str(program).endswith(".py"):
                continue
            out.append("python")
        elif element == "${program}":
            if program in (None, ""):
                raise UserError("the command uses ${program} but there is no `program:`", key="program",
                                file=file, dialect=dialect, fix="add `program: train.py` (the script to run)")
            out.append(str(program))
        else:
            out.append(element)
    warnings = []
    if not any(c in MACROS for c in out):
        warnings.append(f"{file}: key 'command': no ${{args...}} macro; each trial's parameters are "
                        "appended as key=value")
    return tuple(out), warnings


def _goal(value: Any, *, file: str, key: str) -> str:
    goal = str(value).strip().lower()
    if goal not in ("minimize", "maximize"):
        raise UserError(f"goal must be minimize or maximize, got {value!r}", key=key, file=file,
                        dialect=DIALECT, fix="write `goal: minimize` or `goal: maximize`")
    return goal


def _pruner(cfg: Any, *, file: str) -> Pruner:
    kw = dict(file=file, dialect=DIALECT)
    if not isinstance(cfg, Mapping) or str(cfg.get("type", "")).lower() != "hyperband":
        raise UserError(f"only `type: hyperband` early termination exists, got {cfg!r}",
                        key="early_terminate", **kw, fix="write `early_terminate: {type: hyperband, min_iter: 3}`")
    for k in cfg:
        if k not in ("type", "min_iter", "max_iter", "eta", "s", "strict", *ASHA_FIELDS):
            raise UserError(f"unknown field {k!r}", key=f"early_terminate.{k}", **kw,
                            fix="hyperband takes min_iter or max_iter (+ s), eta, strict "
                                "(and checkpoint_key, budget_key for a program that checkpoints)")

    def opt(name: str) -> int | None:
        v = cfg.get(name)
        return None if v is None else positive_int(v, key=f"early_terminate.{name}", **kw)

    min_iter, max_iter, s = opt("min_iter"), opt("max_iter"), opt("s")
    if min_iter is None and max_iter is None:
        raise UserError("hyperband needs min_iter or max_iter", key="early_terminate", **kw,
                        fix="add `min_iter: 3` (or `max_iter: 27` with `s: 2`)")
    eta = opt("eta") or 3
    if eta < 2:
        raise UserError(f"eta must be at least 2, got {eta}", key="early_terminate.eta", **kw, fix="use eta: 3")
    return Pruner(kind="hyperband", min_iter=min_iter, max_iter=max_iter, eta=eta, s=s)


# Our fields in `early_terminate`: the program resumes from `<checkpoint_key>=<dir>` (so hyperband runs
# across jobs) with its budget passed as `<budget_key>=<rung budget>`.
ASHA_FIELDS = ("checkpoint_key", "budget_key")


def _rung_values(pruner: Pruner, *, file: str) -> tuple[int, ...]:
    """Hyperband's rung budgets (see the module docstring)."""
    kw = dict(file=file, dialect=DIALECT, key="early_terminate")
    lo, hi = pruner.resource_bounds()
    if hi is None:
        raise UserError("hyperband across jobs needs its top budget", **kw,
                        fix="add `max_iter: 16` (or `s: 2`: min_iter * eta**s)")
    if pruner.min_iter is None:      # max_iter and s: W&B's brackets max_iter / eta**k
        values = sorted({max(1, hi // pruner.eta ** k) for k in range(int(pruner.s or 0) + 1)})
    else:
        values, v = [], lo
        while v <= hi:
            values.append(v)
            v *= pruner.eta
    if len(values) < 2:
        raise UserError(f"hyperband from {lo} to {hi} with eta {pruner.eta} leaves one rung", **kw,
                        fix="raise max_iter (or s), or lower min_iter or eta")
    return tuple(values)


def _asha(cfg: Any, pruner: Pruner, method: str, *, file: str) -> tuple[Stages, dict[str, Any]] | None:
    """Hyperband as successive halving across jobs, when the file says the program checkpoints."""
    if not isinstance(cfg, Mapping) or cfg.get("checkpoint_key") is None:
        return None
    kw = dict(file=file, dialect=DIALECT)
    if method == "bayes":
        raise UserError("successive halving across jobs plans every trial's params at launch; a bayes search "
                        "asks them as each trial starts", key="early_terminate.checkpoint_key", **kw,
                        fix="use `method: random` (or grid), or drop checkpoint_key to stop runs in-process")
    ckpt = check_key(cfg["checkpoint_key"], where="early_terminate.checkpoint_key", **kw)
    budget = check_key(cfg.get("budget_key", "epochs"), where="early_terminate.budget_key", **kw)
    stages = Stages(key=budget, values=_rung_values(pruner, file=file), checkpoint_key=ckpt)
    return stages, {asha.ETA_KEY: pruner.eta}


def parse(doc: dict[str, Any], *, file: str) -> SweepSpec:
    kw = dict(file=file, dialect=DIALECT)
    warnings: list[str] = []
    extra: dict[str, Any] = {}
    for k, v in doc.items():
        if k in TOP_KEYS:
            continue
        extra[k] = v
        if k not in NOT_SEARCH_KEYS:
            # W&B Launch adds its own keys (job, scheduler, ...): keep them rather than refuse the file.
            warnings.append(f"{file}: key '{k}': not a W&B sweep key; kept in sweep.yaml and ignored")

    if "parameters" not in doc:
        raise UserError("no `parameters:`", key="parameters", **kw,
                        fix="add `parameters:` with the values to sweep")
    space: dict[str, Dist] = {}
    constants: dict[str, Any] = {}
    _parameters(doc["parameters"], "", file=file, space=space, constants=constants)

    method = str(doc.get("method", "")).strip().lower()
    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, got {doc.get('method')!r}", key="method",
                        **kw, fix="write `method: random` (or grid, bayes)")

    metric, goal, search_options = None, "minimize", {}
    m = doc.get("metric")
    if isinstance(m, Mapping):
        metric = m.get("name")
        if m.get("goal") is not None:
            goal = _goal(m["goal"], file=file, key="metric.goal")
        if m.get("target") is not None:
            search_options["target"] = number(m["target"], key="metric.target", **kw)
    elif m is not None:
        metric = str(m)
    if method == "bayes" and not metric:
        raise UserError("a bayes search needs a metric to optimize", key="metric", **kw,
                        fix="add `metric: {name: val_loss, goal: minimize}`")

    n_trials = None
    if doc.get("run_cap") is not None:
        n_trials = positive_int(doc["run_cap"], key="run_cap", **kw)
    pruner = _pruner(doc["early_terminate"], file=file) if doc.get("early_terminate") else Pruner()
    stages = None
    rungs = _asha(doc.get("early_terminate"), pruner, method, file=file)
    if rungs is not None:
        # run_cap samples that many points; a grid without one runs every point at rung 0.
        stages, pruner, method = rungs[0], Pruner(), asha.METHOD
        search_options.update(rungs[1])
        if str(doc.get("method", "")).strip().lower() == "grid":
            n_trials = None

    if doc.get("command") is None and doc.get("program") in (None, ""):
        # Configs written for `wandb.agent(function=...)` have no program: run ours, Hydra-style.
        command = DEFAULT_COMMAND_NO_PROGRAM
        warnings.append(f"{file}: key 'program': none given; each trial runs "
                        f"`{' '.join(command[:-1])}` with key=value overrides (add `program:` or pass --command)")
    else:
        command, cmd_warnings = resolve_command(doc.get("command"), doc.get("program"), **kw)
        warnings += cmd_warnings
    return SweepSpec(
        name=slug_name(doc.get("name"), file), method=method, space=space, constants=constants,
        command=command, n_trials=n_trials, metric=metric, goal=goal, pruner=pruner, search_options=search_options,
        stages=stages, dialect=DIALECT, source=file, extra=extra, warnings=tuple(warnings))
