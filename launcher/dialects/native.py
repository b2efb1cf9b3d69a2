"""The native sweep file: every feature of slurmsweep, spelled out once.

    # configs/sweeps/feudal_random.yaml   (tests/launcher/dialects/test_native.py parses this example)
    name: feudal_random                  # default: the file name; names the sweep dir and trial ids
    command: python -m train             # string (shlex-split, never a shell) or a list
    method: random                       # grid | random | bayes | baseline | asha
                                         #   (default: grid, or random when `space:` is given)
    trials: 20                           # random/bayes: trials per environment
    seed: 0                              # seeds the plan (and repeat r's `seed=<seed + r>`)
    metric: eval/exact_accuracy          # what reports rank by and bayes optimises
    goal: maximize                       # maximize | minimize
    fixed:                               # constants: `key=value` for every trial
      epochs: 20
      arch: {hidden_size: 256}           #   nested mappings become dotted keys: arch.hidden_size
    space:                               # random/bayes: distributions
      lr: {distribution: loguniform, min: 1e-5, max: 1e-3}
      arch.H_cycles: "choice(1,2)"       # Hydra syntax; a list is a choice too
      wd: "tag(log, interval(1e-6, 1e-2))"
    # grid:                              # method grid/baseline instead of space: lists or Hydra syntax
    #   loss.feudal_loss_weight: [0.01, 0.05, 0.1]
    #   arch.subgoal_head.manager_period: "2,4,8"    # also range(1,5), choice(a,b)
    environments:                        # each trial runs once per environment,
      key: data_path                     #   passed as `<key>=<value>` (default key: data_path;
      values: [data/sudoku-easy, data/sudoku-hard]   #   a plain list is accepted as well)
    stages:                              # progressive: every trial once per value, in order,
      key: arch.halt_max_steps           #   stage k+1 starts from stage k's checkpoint
      values: [4, 8, 16]                 #   (passed as `checkpoint_path=...`, see checkpoint_key)
    # rungs: {key: epochs, values: [4, 8, 16]}   # method asha instead of stages: every point runs
    # eta: 2                             #   rung 0; the best 1/eta of each rung's results go on,
                                         #   each from its own checkpoint (launcher.plans.asha)
    variants:                            # A/B: every variant at every point (what method: baseline
      baseline: {loss.feudal_loss_weight: 0.0}      #   compares; other methods accept it too)
      feudal: {loss.feudal_loss_weight: 0.1}
    repeats: 2                           # seeds per point: repeat r gets `<seed_key>=<seed + r>`
    seed_key: seed
    resources: {time: "02:00:00", gres: "gpu:1", cpus_per_task: 4, mem: 16G, partition: long}
    max_parallel: 8                      # the array's %throttle
    pack: 20                             # trials per array task, one after another (or `auto`:
                                         #   fill the time limit with trials of resources.trial_time)
    pruner: {kind: hyperband, min_iter: 2, max_iter: 27, eta: 3}   # random/bayes early stopping
    sampler: tpe                         # bayes: Optuna sampler name
    options: {n_startup_trials: 10}      # bayes: settings passed to the search
    description: free text               # kept, not used

Distribution fields: `distribution` (choice, uniform, int_uniform, loguniform, int_loguniform,
pow2, logit, normal, lognormal, beta), `min`/`max`, `values`, `probabilities`, `q`,
`mu`/`sigma`, `a`/`b`, `center`, `int`. Numbers may be written `1e-5` (PyYAML reads that as a
string; we don't).
"""
from __future__ import annotations

from typing import Any, Mapping

from jobs.errors import UserError
from launcher.dialects.common import (check_key, check_unknown_keys, coerce_tree, dist_from_mapping,
                                      flatten, make_dist, metric_and_goal, number, parse_resources, plain_name,
                                      positive_int, require_list, require_mapping, split_command,
                                      sweep_name)
from launcher.dialects.hydra_syntax import parse_value
from jobs.manifest import Stages
from search.dist import Dist
from search.pruner import PRUNERS, Pruner
from launcher.plans import METHODS, asha
from launcher.spec import DEFAULT_COMMAND, SweepSpec

DIALECT = "native"
KEYS = ("name", "description", "dialect", "command", "method", "trials", "seed", "metric", "goal",
        "fixed", "grid", "space", "environments", "stages", "rungs", "eta", "variants", "repeats", "seed_key",
        "resources", "max_parallel", "pack", "pruner", "sampler", "options")


def _err(message: str, file: str | None, key: str | None, fix: str) -> UserError:
    return UserError(message, file=file, key=key, dialect=DIALECT, fix=fix)


def _is_dist_mapping(value: Mapping[str, Any]) -> bool:
    return "distribution" in value or "values" in value


def parse_dist(value: Any, *, file: str | None, key: str, grid: bool) -> Dist:
    """One entry of `grid:` (lists, Hydra syntax) or `space:` (also distribution mappings)."""
    kw = dict(file=file, key=key, dialect=DIALECT)
    section = "grid" if grid else "space"
    if isinstance(value, (list, tuple)):
        dist = make_dist("choice", values=require_list(value, **kw), **kw)
    elif isinstance(value, Mapping) and not grid:
        dist = dist_from_mapping(value, **kw)
    elif isinstance(value, str):
        dist = parse_value(value, **kw)
        if not isinstance(dist, Dist):
            raise _err(f"{value!r} is a single value, not a sweep", file, key,
                       "move it to `fixed:`, or list values such as `1,2,3`")
    else:
        raise _err(f"{value!r} is a single value, not a sweep", file, key,
                   f"give {section}.{key} a list" + ("" if grid else " or a distribution mapping")
                   + ", or move it to `fixed:`")
    if grid:
        if dist.kind != "choice":
            raise _err(f"a grid needs a list of values, got a {dist.kind} distribution", file, key,
                       "list the values, or move the key to `space:` with method: random")
        if len(set(map(repr, dist.values))) != len(dist.values):
            raise _err(f"repeated values in {list(dist.values)}", file, key,
                       "list each value once (use `repeats:` to run a point several times)")
    return dist


def _space(doc: Mapping[str, Any], section: str, file: str | None) -> dict[str, Dist]:
    tree = require_mapping(doc[section], file=file, key=section, dialect=DIALECT, example="lr: [1e-4, 1e-3]")
    leaves = flatten(tree, is_leaf=None if section == "grid" else _is_dist_mapping)
    out = {}
    for k, v in leaves.items():
        check_key(k, file=file, dialect=DIALECT, where=f"{section}.{k}")
        out[k] = parse_dist(v, file=file, key=f"{section}.{k}", grid=section == "grid")
    # Keyed without the section prefix: that is how they reach the command line.
    return out


def _constants(value: Any, file: str | None, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    tree = require_mapping(value, file=file, key=key, dialect=DIALECT, example="epochs: 20")
    out = {}
    for k, v in flatten(tree).items():
        check_key(k, file=file, dialect=DIALECT, where=f"{key}.{k}")
        out[k] = coerce_tree(v)
    return out


def _environments(value: Any, file: str | None) -> tuple[str, tuple[str, ...]]:
    key = "data_path"
    if isinstance(value, Mapping):
        check_unknown_keys(value, ("key", "values"), file=file, dialect=DIALECT, prefix="environments")
        key = check_key(value.get("key", key), file=file, dialect=DIALECT, where="environments.key")
        value = value.get("values")
    values = require_list(value, file=file, key="environments.values", dialect=DIALECT)
    names = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise _err(f"an environment must be a name or a number, got {v!r}", file, "environments",
                       "list names such as `[data/sudoku-easy, data/sudoku-hard]`")
        names.append(str(v))
    if len(set(names)) != len(names):
        raise _err(f"repeated environments in {names}", file, "environments", "list each environment once")
    return key, tuple(names)


def _stages(value: Any, file: str | None, section: str = "stages") -> Stages:
    """`stages:` (progressive) or `rungs:` (asha): the same shape, a key and its values in order."""
    tree = require_mapping(value, file=file, key=section, dialect=DIALECT,
                           example="{key: arch.halt_max_steps, values: [4, 8, 16]}")
    check_unknown_keys(tree, ("key", "values", "checkpoint_key"), file=file, dialect=DIALECT, prefix=section)
    if "key" not in tree or "values" not in tree:
        raise _err(f"{section} needs `key` and `values`", file, section,
                   f"write e.g. `{section}: {{key: arch.halt_max_steps, values: [4, 8, 16]}}`")
    key = check_key(tree["key"], file=file, dialect=DIALECT, where=f"{section}.key")
    dist = parse_dist(tree["values"], file=file, key=f"{section}.values", grid=True)
    ckpt = check_key(tree.get("checkpoint_key", "checkpoint_path"), file=file, dialect=DIALECT,
                     where=f"{section}.checkpoint_key")
    return Stages(key=key, values=dist.values, checkpoint_key=ckpt)


def _rungs(doc: Mapping[str, Any], method: str, file: str | None) -> tuple[Stages | None, dict[str, Any]]:
    """(stages, search options) of the file: `stages:` for progressive training, or for method asha
    `rungs:` and `eta:` (kept as the stages and the search option `eta`, launcher.plans.asha)."""
    if method != asha.METHOD:
        for key in ("rungs", "eta"):
            if doc.get(key) is not None:
                raise _err(f"`{key}:` is for method asha (successive halving), not {method}", file, key,
                           "set `method: asha`, or use `stages:` to run every trial through every value")
        return (_stages(doc["stages"], file) if doc.get("stages") is not None else None), {}
    if doc.get("stages") is not None:
        raise _err("method asha takes `rungs:`, not `stages:`", file, "stages",
                   "rename `stages:` to `rungs:` (only promoted trials climb them)")
    if doc.get("rungs") is None:
        raise _err("method asha needs `rungs:`", file, "rungs",
                   "add e.g. `rungs: {key: arch.halt_max_steps, values: [4, 8, 16]}` and `eta: 2`")
    options = {}
    if doc.get("eta") is not None:
        options[asha.ETA_KEY] = positive_int(doc["eta"], file=file, key="eta", dialect=DIALECT, minimum=2)
    return _stages(doc["rungs"], file, "rungs"), options


def _variants(value: Any, file: str | None) -> dict[str, dict[str, Any]]:
    tree = require_mapping(value, file=file, key="variants", dialect=DIALECT,
                           example="{baseline: {x: 0}, treatment: {x: 1}}")
    out = {}
    for name, overrides in tree.items():
        plain_name(name, file=file, key=f"variants.{name}", dialect=DIALECT)
        out[name] = _constants(overrides, file, f"variants.{name}")
    return out


def _with_pack(resources: dict[str, Any], pack: Any, file: str | None) -> dict[str, Any]:
    """`pack: N` or `pack: auto` travels with the resources (launcher.packing sizes it)."""
    if pack is None:
        return resources
    if not (pack == "auto" or (isinstance(pack, int) and not isinstance(pack, bool) and pack >= 1)):
        raise _err(f"pack must be a positive whole number or auto, not {pack!r}", file, "pack",
                   "write e.g. `pack: 50` or `pack: auto`")
    return {**resources, "pack": pack}


def _pruner(value: Any, file: str | None) -> Pruner:
    if isinstance(value, str):
        value = {"kind": value}
    tree = require_mapping(value, file=file, key="pruner", dialect=DIALECT, example="{kind: hyperband}")
    check_unknown_keys(tree, ("kind", "min_iter", "max_iter", "eta", "s"), file=file, dialect=DIALECT,
                       prefix="pruner")
    kind = tree.get("kind", "none")
    if kind not in PRUNERS:
        raise _err(f"unknown pruner {kind!r}", file, "pruner.kind", "use one of: " + ", ".join(PRUNERS))
    ints = {k: positive_int(tree[k], file=file, key=f"pruner.{k}", dialect=DIALECT)
            for k in ("min_iter", "max_iter", "eta", "s") if k in tree}
    return Pruner(kind=kind, **ints)


def parse(doc: dict, *, file: str) -> SweepSpec:
    """Validate a native sweep file (already loaded from YAML) into a SweepSpec.

    What depends on the final method and budget (which `sweep launch --method/--trials` may
    change) is checked later, by launcher.dialects.finalize and launcher.plans.validate.
    """
    require_mapping(doc, file=file, key=None, dialect=DIALECT, example="name: my_sweep")
    check_unknown_keys(doc, KEYS, file=file, dialect=DIALECT)
    if doc.get("dialect", DIALECT) != DIALECT:
        raise _err(f"dialect {doc['dialect']!r} given to the native parser", file, "dialect",
                   "remove `dialect:` or pass the right --dialect")

    name = sweep_name(doc, file=file, dialect=DIALECT)
    command = (split_command(doc["command"], file=file, key="command", dialect=DIALECT)
               if doc.get("command") is not None else DEFAULT_COMMAND)

    space: dict[str, Dist] = {}
    for section in ("grid", "space"):
        if doc.get(section):
            for k, d in _space(doc, section, file).items():
                if k in space:
                    raise _err(f"{k!r} is in both grid and space", file, f"space.{k}", "keep it in one of them")
                space[k] = d

    method = doc.get("method", "random" if doc.get("space") else "grid")
    if method not in METHODS:
        raise _err(f"unknown method {method!r}", file, "method", "use one of: " + ", ".join(METHODS))
    if method in ("random", "bayes") and doc.get("grid"):
        raise _err(f"`grid:` is for method grid or baseline, not {method}", file, "grid",
                   "move the lists to `space:` (they are sampled as choices), or use method: grid")
    # A missing budget is not an error yet: `sweep launch --trials N` may supply it
    # (launcher.dialects.finalize checks it once the command line has been applied).
    n_trials = positive_int(doc["trials"], file=file, key="trials", dialect=DIALECT) if "trials" in doc else None
    metric, goal = metric_and_goal(doc.get("metric"), doc.get("goal"), method, file=file, dialect=DIALECT,
                                   metric_key="metric", goal_key="goal")

    env_key, environments = ("data_path", ())
    if doc.get("environments") is not None:
        env_key, environments = _environments(doc["environments"], file)
    stages, rung_options = _rungs(doc, method, file)
    sampler = doc.get("sampler")
    if sampler is not None and not isinstance(sampler, str):
        raise _err(f"expected a sampler name, got {sampler!r}", file, "sampler", "write e.g. `sampler: tpe`")
    spec = SweepSpec(
        name=name, method=method, space=space, constants=_constants(doc.get("fixed"), file, "fixed"),
        command=command, n_trials=n_trials,
        seed=None if doc.get("seed") is None else int(number(doc["seed"], file=file, key="seed", dialect=DIALECT, integer=True)),
        environments=environments, env_key=env_key,
        stages=stages,
        variants=_variants(doc["variants"], file) if doc.get("variants") is not None else {},
        repeats=positive_int(doc.get("repeats", 1), file=file, key="repeats", dialect=DIALECT),
        seed_key=check_key(doc.get("seed_key", "seed"), file=file, dialect=DIALECT, where="seed_key"),
        metric=metric, goal=goal,
        pruner=_pruner(doc["pruner"], file) if doc.get("pruner") is not None else Pruner(),
        sampler=sampler,
        search_options={**require_mapping(doc.get("options") or {}, file=file, key="options",
                                          dialect=DIALECT, example="n_startup_trials: 10"), **rung_options},
        resources=_with_pack(parse_resources(doc.get("resources"), doc.get("max_parallel"), file=file,
                                             dialect=DIALECT), doc.get("pack"), file),
        dialect=DIALECT, source=file,
        extra={"description": doc["description"]} if "description" in doc else {},
    )
    return spec
