"""Metta / Protein sweep files, every generation.

1. A nested `sweep:` block; constant overrides nest under it (never at the root):

       rollout_count: 10            # trials = rollout_count x num_samples
       num_samples: 1
       sweep:
         metric: reward
         goal: maximize
         parameters:
           trainer.learning_rate: {distribution: log_normal, min: 1e-5, max: 1e-2, mean: 3e-4, scale: auto}
         trainer: {total_timesteps: 50000}       # -> trainer.total_timesteps=50000 for every trial
         env: {game: {max_steps: 64}}

2. Root `parameters:` with dotted keys and a W&B-like header; `command:` is run as given
   with each trial's overrides appended as key=value (W&B macros, if any, are expanded):

       program: tools/train.py
       method: protein              # protein / bayes -> bayes ; random ; grid
       metric: reward
       goal: maximize
       command: [python, tools/train.py]
       parameters:
         trainer.batch_size: {distribution: uniform_pow2, min: 256, max: 4096, mean: 1024, scale: auto}

3. Root `parameters:` as a nested tree down to the leaves, with a `protein:` block:

       protein: {num_random_samples: 20, max_suggestion_cost: 3600, expansion_rate: 0.15}
       method: bayes
       parameters:
         trainer:
           optimizer:
             learning_rate: {distribution: log_normal, min: 1e-4, max: 1e-2, mean: 3e-4, scale: auto}

Protein distributions: uniform, int_uniform, uniform_pow2 (-> pow2), log_normal (a bounded
log-scale search -> loguniform), logit_normal (-> logit, bounds 0/1 stepped inside by 1e-6); `mean` is the search centre (the
first bayes point) and must lie in [min, max]; `scale` (auto, time or a number) is recorded in
spec.extra["scale"]. From `protein:`, num_random_samples -> search_options["n_startup"] and
max_suggestion_cost -> search_options["max_cost"]; the whole block is kept in extra["protein"].
Generations 4 and 5 (CARBS) live in carbs.py and share this module's header handling.
"""
from __future__ import annotations

from typing import Any, Mapping

from jobs.errors import UserError
from launcher.dialects import NOT_SEARCH_KEYS, slug_name
from launcher.dialects.common import coerce_number, join_key, make_dist, number, positive_int, split_command
from launcher.dialects.carbs import check_center, open_logit_bounds, walk
from search.dist import Dist
from launcher.spec import DEFAULT_COMMAND, SweepSpec

DIALECT = "metta"
HEADER_KEYS = ("program", "method", "metric", "goal", "command", "protein", "rollout_count", "num_samples",
               "num_random_samples", "max_suggestion_cost")
OVERRIDE_BLOCKS = ("trainer", "env")
METHODS = {"protein": "bayes", "bayes": "bayes", "gp": "bayes", "random": "random", "grid": "grid"}
DISTRIBUTIONS = {"uniform": "uniform", "int_uniform": "int_uniform", "uniform_pow2": "pow2",
                 "log_normal": "loguniform", "logit_normal": "logit"}
LEAF_FIELDS = ("distribution", "min", "max", "mean", "scale", "values")


def _warn_unknown(key: str, file: str, what: str) -> str:
    return f"{file}: key '{key}': not a {what} key; kept in sweep.yaml and ignored"


def split_header(doc: Mapping[str, Any], *, file: str, dialect: str,
                 tree_at_root: bool) -> tuple[dict[str, Any], Mapping[str, Any], dict[str, Any], list[str]]:
    """(header, parameter tree, extra, warnings) of a Protein/CARBS file.

    Header keys are read at the root and under `sweep:` (the block wins). The tree is
    `sweep.parameters`, else the root `parameters:`, else - with `tree_at_root` (CARBS
    inline values) - the whole root minus the header.
    """
    sweep = doc.get("sweep") if isinstance(doc.get("sweep"), Mapping) else {}
    header: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    warnings: list[str] = []
    for source, prefix in ((doc, ""), (sweep, "sweep")):
        for k, v in source.items():
            if k in HEADER_KEYS:
                header[k] = v
            elif k in NOT_SEARCH_KEYS or k in ("defaults", "hydra"):
                extra[join_key(prefix, k)] = v
    if "parameters" in sweep:
        tree = sweep["parameters"]
    elif "parameters" in doc:
        tree = doc["parameters"]
    elif tree_at_root:
        tree = {k: v for k, v in doc.items()
                if k not in HEADER_KEYS and k not in NOT_SEARCH_KEYS and k not in ("sweep", "defaults", "hydra")}
        return header, tree, extra, warnings
    elif any(isinstance(sweep.get(b), Mapping) for b in OVERRIDE_BLOCKS):
        tree = {}  # the oldest form: searched values live in sweep.trainer / sweep.env
    else:
        raise UserError("no `parameters:` to search", key="sweep.parameters" if sweep else "parameters",
                        file=file, dialect=dialect,
                        fix="add `parameters:` (under `sweep:` when the file has a sweep block)")
    if not isinstance(tree, Mapping) or (not tree and ("parameters" in sweep or "parameters" in doc)):
        raise UserError("`parameters` must be a non-empty mapping", key="parameters", file=file, dialect=dialect,
                        fix="write one `key: {distribution: ..., min: ..., max: ...}` per parameter")
    # Everything else at the root (and in the sweep block) is kept, not refused: real files carry
    # launcher settings of their own.
    for source, prefix in ((doc, ""), (sweep, "sweep")):
        for k, v in source.items():
            if k in HEADER_KEYS or k in ("sweep", "parameters") or join_key(prefix, k) in extra \
                    or (prefix == "sweep" and k in OVERRIDE_BLOCKS):
                continue
            extra[join_key(prefix, k)] = v
            warnings.append(_warn_unknown(join_key(prefix, k), file, f"{dialect} sweep"))
    return header, tree, extra, warnings


def _leaf(cfg: Mapping[str, Any], *, key: str, file: str, warnings: list[str],
          scales: dict[str, Any]) -> Dist:
    kw = dict(key=key, file=file, dialect=DIALECT)
    for f in cfg:
        if f not in LEAF_FIELDS:
            warnings.append(f"{file}: key '{join_key(key, f)}': not a Protein field ({', '.join(LEAF_FIELDS)}); "
                            "ignored")
    if "distribution" not in cfg and isinstance(cfg.get("values"), list):
        return make_dist("choice", values=cfg["values"], **kw)
    name = str(cfg.get("distribution", "")).strip().lower()
    if "distribution" not in cfg:
        # W&B-style `min`/`max` alone (method: protein files copied from W&B ones).
        lo, hi = (coerce_number(cfg.get(b)) for b in ("min", "max"))
        name = "int_uniform" if all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) \
            else "uniform"
    if name not in DISTRIBUTIONS:
        raise UserError(f"unknown distribution {cfg.get('distribution')!r}", key=join_key(key, "distribution"),
                        file=file, dialect=DIALECT, fix="use one of: " + ", ".join(DISTRIBUTIONS))
    for bound in ("min", "max"):
        if cfg.get(bound) is None:
            raise UserError(f"a {name} distribution needs min and max", **kw, fix=f"add `{bound}:`")
    lo, hi = cfg["min"], cfg["max"]
    if name == "logit_normal":
        lo, hi = open_logit_bounds(lo, hi, **kw)
    dist = make_dist(DISTRIBUTIONS[name], low=lo, high=hi, center=cfg.get("mean"), **kw)
    check_center(dist, name="mean", **kw)
    scale = cfg.get("scale")
    if scale is not None:
        if not (isinstance(scale, str) and scale.strip().lower() in ("auto", "time")):
            scale = number(scale, key=join_key(key, "scale"), file=file, dialect=DIALECT)
            if scale <= 0:
                raise UserError(f"scale must be > 0, auto or time, got {scale}", key=join_key(key, "scale"),
                                file=file, dialect=DIALECT, fix="write `scale: auto`")
        scales[key] = scale
    return dist


def _is_leaf(value: Any) -> bool:
    """A parameter spec, as opposed to a group of them: `distribution:`, or scalar min/max, or a list of values."""
    if not isinstance(value, Mapping):
        return False
    if "distribution" in value:
        return True
    if "min" in value and "max" in value and not isinstance(value["min"], Mapping):
        return True
    return isinstance(value.get("values"), list)


def _walk(tree: Mapping[str, Any], prefix: str, *, file: str, space: dict[str, Dist],
          constants: dict[str, Any], warnings: list[str], scales: dict[str, Any]) -> None:
    walk(tree, prefix, file=file, dialect=DIALECT, space=space, constants=constants, warnings=warnings,
         is_leaf=_is_leaf,
         make_leaf=lambda value, key: _leaf(value, key=key, file=file, warnings=warnings, scales=scales))


def _command(header: Mapping[str, Any], *, file: str, dialect: str) -> tuple[str, ...]:
    command, program = header.get("command"), header.get("program")
    if command is None:
        if program in (None, ""):
            return DEFAULT_COMMAND
        program = str(program)
        return ("python", program) if program.endswith(".py") else (program,)
    if isinstance(command, list) and any(str(c).startswith("${") for c in command):
        from launcher.dialects.wandb import resolve_command  # W&B macros in a W&B-like header
        return resolve_command(command, program, file=file, dialect=dialect)[0]
    return split_command(command, file=file, key="command", dialect=dialect)


def build_spec(header: Mapping[str, Any], space: dict[str, Dist], constants: dict[str, Any],
               extra: dict[str, Any], warnings: list[str], *, file: str, dialect: str) -> SweepSpec:
    """The SweepSpec of a Protein/CARBS header around an already parsed space."""
    kw = dict(file=file, dialect=dialect)
    raw_method = header.get("method", "protein")
    method = METHODS.get(str(raw_method).strip().lower())
    if method is None:
        raise UserError(f"unknown method {raw_method!r}", key="method", **kw,
                        fix="use protein (or bayes), random or grid")

    metric, goal = header.get("metric"), header.get("goal", "maximize")
    if isinstance(metric, Mapping):  # a W&B-style {name, goal}
        goal = metric.get("goal", goal)
        metric = metric.get("name")
    goal = str(goal).strip().lower()
    if goal not in ("maximize", "minimize"):
        raise UserError(f"goal must be maximize or minimize, got {header.get('goal')!r}", key="goal", **kw,
                        fix="write `goal: maximize`")

    n_trials = None
    search_options: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    if header.get("rollout_count") is not None:
        n_trials = positive_int(header["rollout_count"], key="rollout_count", **kw)
    if header.get("num_samples") is not None:
        samples = positive_int(header["num_samples"], key="num_samples", **kw)
        n_trials = samples * (n_trials or 1)
        # A rollout is num_samples trials suggested together: they run side by side (the array's
        # %throttle) and the report's per-rollout summary groups them.
        search_options["num_samples"] = samples
        resources["max_parallel"] = samples

    protein = header.get("protein")
    if protein is not None and not isinstance(protein, Mapping):
        raise UserError(f"expected a mapping of optimizer settings, got {protein!r}", key="protein", **kw,
                        fix="write `protein: {num_random_samples: 10, max_suggestion_cost: 3600}`")
    settings = {**(protein or {}), **{k: header[k] for k in ("num_random_samples", "max_suggestion_cost")
                                      if k in header}}
    if settings.get("num_random_samples") is not None:
        search_options["n_startup"] = positive_int(settings["num_random_samples"], minimum=0,
                                                   key="protein.num_random_samples", **kw)
    if settings.get("max_suggestion_cost") is not None:
        search_options["max_cost"] = number(settings["max_suggestion_cost"], key="protein.max_suggestion_cost",
                                            **kw)
    if protein:
        extra["protein"] = dict(protein)
    command = _command(header, file=file, dialect=dialect)
    return SweepSpec(
        name=slug_name(extra.get("name") or extra.get("sweep.name"), file), method=method, space=space,
        constants=constants, command=command, n_trials=n_trials, metric=None if metric is None else str(metric), goal=goal,
        search_options=search_options, resources=resources, dialect=dialect, source=file, extra=extra,
        warnings=tuple(warnings))


def parse(doc: dict[str, Any], *, file: str) -> SweepSpec:
    kw = dict(file=file, dialect=DIALECT)
    sweep = doc.get("sweep")
    if sweep is not None and not isinstance(sweep, Mapping):
        raise UserError(f"expected a mapping, got {sweep!r}", key="sweep", **kw,
                        fix="write `sweep:` as a block holding parameters, metric, goal, trainer, env")
    for block in OVERRIDE_BLOCKS:
        if block in doc:
            raise UserError(f"a root-level `{block}:` block is not read by the sweep", key=block, **kw,
                            fix=f"nest it under `sweep:` (sweep.{block}), where its values override every trial"
                                + ("" if sweep else "; searched values go under `parameters:`"))

    header, tree, extra, warnings = split_header(doc, file=file, dialect=DIALECT, tree_at_root=False)
    tree = dict(tree)
    # Generation 3 files sometimes put metric/goal/method at the top of the parameter tree.
    for k in ("metric", "goal", "method"):
        if k in tree and not isinstance(tree[k], Mapping):
            header.setdefault(k, tree.pop(k))

    space: dict[str, Dist] = {}
    constants: dict[str, Any] = {}
    scales: dict[str, Any] = {}
    _walk(tree, "", file=file, space=space, constants=constants, warnings=warnings, scales=scales)
    for block in OVERRIDE_BLOCKS:
        overrides = (sweep or {}).get(block)
        if overrides is None:
            continue
        if not isinstance(overrides, Mapping):
            raise UserError(f"expected a mapping of overrides, got {overrides!r}", key=f"sweep.{block}", **kw,
                            fix=f"write `{block}:` as nested `key: value` lines")
        _walk(overrides, block, file=file, space=space, constants=constants, warnings=warnings, scales=scales)
    if not space:
        raise UserError("nothing to search: no parameter has a distribution", key="parameters", **kw,
                        fix="give at least one parameter `distribution:`, `min:` and `max:`")
    if scales:
        extra["scale"] = scales
    return build_spec(header, space, constants, extra, warnings, file=file, dialect=DIALECT)
