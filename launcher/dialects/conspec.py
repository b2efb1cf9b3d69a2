"""ConSpec-style sweep files: a hyperparameter table, a list of environments, a search block.

    # a ConSpec-style sweep file (configs/sweeps/conspec_keydoor.yaml is one that runs)
    name: conspec_keydoor                # default: the file name
    command: python -m train             # default: python -m train
    hyperparameters:
      num_prototypes: {type: choice, values: [3, 5, 7, 10]}
      learning_rate: {type: loguniform, min: 1e-4, max: 1e-2}
      intrinsic_reward_scale: {type: uniform, min: 0.1, max: 1.0}
      batch: {type: int_uniform, min: 16, max: 64}     # also int, int_loguniform, pow2
    environments: [key_door_goal_base, key_door_goal_hard, key_door_goal_visual]
    environment_key: env                 # each trial gets `env=<name>` (default: env)
    training: {num_episodes: 5000, eval: {every: 100}}   # constants; nested -> dotted keys
    search:
      method: random                     # random | grid | bayesian (-> bayes)
      n_trials: 50                       # per environment: 50 x 3 environments = 150 trials
      optimization_metric: success_rate
      goal: maximize                     # default maximize
      seed: 0
    resources: {time: "04:00:00", gres: "gpu:1"}
    max_parallel: 16
    logging: {wandb_project: conspec, wandb_entity: my-team}   # optional; both keys optional

A random search samples each environment's trials independently. `logging:` is kept in the
spec's `extra["logging"]` (strings only), for the runner to hand to the runs as
WANDB_PROJECT and WANDB_ENTITY.

A `grid` search needs every hyperparameter to be a choice.
"""
from __future__ import annotations

from typing import Any

from jobs.errors import UserError
from launcher.dialects.common import (KIND_ALIASES, check_key, check_unknown_keys, coerce_tree, flatten,
                                      make_dist, metric_and_goal, number, parse_resources, positive_int, require_list,
                                      require_mapping, split_command, sweep_name)
from search.dist import Dist
from launcher.spec import DEFAULT_COMMAND, SweepSpec

DIALECT = "conspec"
KEYS = ("name", "description", "command", "hyperparameters", "environments", "environment_key", "training",
        "search", "resources", "max_parallel", "logging")
SEARCH_KEYS = ("method", "n_trials", "optimization_metric", "goal", "seed", "repeats")
PARAM_FIELDS = ("type", "values", "min", "max", "probabilities", "q", "log")
TYPES = ("choice", "uniform", "loguniform", "int_uniform", "int_loguniform", "pow2")
LOGGING_KEYS = ("wandb_project", "wandb_entity")
METHODS = {"random": "random", "grid": "grid", "bayesian": "bayes", "bayes": "bayes"}


def _err(message: str, file: str | None, key: str | None, fix: str) -> UserError:
    return UserError(message, file=file, key=key, dialect=DIALECT, fix=fix)


def _param(name: str, spec: Any, file: str | None) -> Dist:
    key = f"hyperparameters.{name}"
    if isinstance(spec, list):                       # shorthand: a bare list is a choice
        spec = {"type": "choice", "values": spec}
    spec = require_mapping(spec, file=file, key=key, dialect=DIALECT, example="{type: uniform, min: 0, max: 1}")
    check_unknown_keys(spec, PARAM_FIELDS, file=file, dialect=DIALECT, prefix=key)
    if "type" not in spec:
        raise _err("no type given", file, key, "add `type:` (one of " + ", ".join(TYPES) + ")")
    raw = spec["type"]
    kind = KIND_ALIASES.get(raw, raw) if isinstance(raw, str) else raw
    if kind == "uniform" and spec.get("log"):
        kind = "loguniform"
    if kind not in TYPES:
        raise _err(f"unknown type {spec['type']!r}", file, f"{key}.type", "use one of: " + ", ".join(TYPES))
    return make_dist(kind, file=file, key=key, dialect=DIALECT, low=spec.get("min"), high=spec.get("max"),
                     values=spec.get("values"), probabilities=spec.get("probabilities"), q=spec.get("q"))


def _logging(tree: Any, file: str | None) -> dict[str, str]:
    block = require_mapping(tree if tree is not None else {}, file=file, key="logging", dialect=DIALECT,
                            example="{wandb_project: conspec, wandb_entity: my-team}")
    check_unknown_keys(block, LOGGING_KEYS, file=file, dialect=DIALECT, prefix="logging")
    out = {}
    for k, v in block.items():
        if v is None:
            continue
        if not isinstance(v, str) or not v.strip():
            raise _err(f"expected a name, got {v!r}", file, f"logging.{k}", f"write {k} as a non-empty string")
        out[k] = v
    return out


def parse(doc: dict, *, file: str) -> SweepSpec:
    """Validate a ConSpec-style sweep file (already loaded from YAML) into a SweepSpec."""
    require_mapping(doc, file=file, key=None, dialect=DIALECT, example="hyperparameters: {...}")
    check_unknown_keys(doc, KEYS, file=file, dialect=DIALECT)
    if "hyperparameters" not in doc:
        raise _err("no hyperparameters given", file, "hyperparameters",
                   "add `hyperparameters: {lr: {type: loguniform, min: 1e-5, max: 1e-2}}`")

    name = sweep_name(doc, file=file, dialect=DIALECT)

    params = require_mapping(doc["hyperparameters"], file=file, key="hyperparameters", dialect=DIALECT)
    space = {}
    for k, v in params.items():
        check_key(k, file=file, dialect=DIALECT, where=f"hyperparameters.{k}")
        space[k] = _param(k, v, file)

    search = require_mapping(doc.get("search") or {}, file=file, key="search", dialect=DIALECT,
                             example="{method: random, n_trials: 50}")
    check_unknown_keys(search, SEARCH_KEYS, file=file, dialect=DIALECT, prefix="search")
    raw_method = search.get("method", "random")
    if raw_method not in METHODS:
        raise _err(f"unknown search method {raw_method!r}", file, "search.method",
                   "use one of: " + ", ".join(("random", "grid", "bayesian")))
    method = METHODS[raw_method]
    # A missing n_trials or a grid over continuous ranges is checked after `--trials/--method`
    # have been applied (launcher.dialects.finalize, launcher.plans.validate).
    n_trials = (positive_int(search["n_trials"], file=file, key="search.n_trials", dialect=DIALECT)
                if "n_trials" in search else None)
    metric, goal = metric_and_goal(search.get("optimization_metric"), search.get("goal"), method, file=file,
                                   dialect=DIALECT, metric_key="search.optimization_metric", goal_key="search.goal")

    environments: tuple[str, ...] = ()
    if doc.get("environments") is not None:
        envs = require_list(doc["environments"], file=file, key="environments", dialect=DIALECT)
        if not all(isinstance(e, str) for e in envs) or len(set(envs)) != len(envs):
            raise _err(f"environments must be distinct names, got {envs}", file, "environments",
                       "list each environment name once")
        environments = tuple(envs)
    env_key = check_key(doc.get("environment_key", "env"), file=file, dialect=DIALECT, where="environment_key")

    training = require_mapping(doc.get("training") or {}, file=file, key="training", dialect=DIALECT,
                               example="num_episodes: 5000")
    constants = {}
    for k, v in flatten(training).items():
        check_key(k, file=file, dialect=DIALECT, where=f"training.{k}")
        constants[k] = coerce_tree(v)

    resources = parse_resources(doc.get("resources"), doc.get("max_parallel"), file=file, dialect=DIALECT)
    spec = SweepSpec(
        name=name, method=method, space=space, constants=constants,
        command=(split_command(doc["command"], file=file, key="command", dialect=DIALECT)
                 if doc.get("command") is not None else DEFAULT_COMMAND),
        n_trials=n_trials,
        seed=None if search.get("seed") is None else int(number(search["seed"], file=file, key="search.seed", dialect=DIALECT,
                                                                 integer=True)),
        environments=environments, env_key=env_key,
        repeats=positive_int(search.get("repeats", 1), file=file, key="search.repeats", dialect=DIALECT),
        metric=metric, goal=goal, resources=resources, dialect=DIALECT, source=file,
        extra={**({"description": doc["description"]} if "description" in doc else {}),
               **({"logging": _logging(doc["logging"], file)} if "logging" in doc else {})},
    )
    return spec
