"""ConSpec-style sweep files: hyperparameters x environments, search block, errors."""
from __future__ import annotations

import textwrap

import pytest
import yaml

from jobs.errors import UserError
from launcher.dialects.conspec import parse
from launcher.plans import expand
from search.kinds import in_domain

FILE = "configs/sweeps/conspec.yaml"

DOC = """
hyperparameters:
  num_prototypes: {type: choice, values: [3, 5, 7, 10]}
  learning_rate: {type: loguniform, min: 1e-4, max: 1e-2}
  intrinsic_reward_scale: {type: uniform, min: 0.1, max: 1.0}
environments: [key_door_goal_base, key_door_goal_hard, key_door_goal_visual]
training: {num_episodes: 5000, eval: {every: 100}, entropy: 1e-3}
search:
  method: random
  n_trials: 50
  optimization_metric: success_rate
"""


def load(text: str = DOC, **changes):
    doc = yaml.safe_load(textwrap.dedent(text))
    for path, value in changes.items():
        node = doc
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return parse(doc, file=FILE)


def test_fifty_trials_times_three_environments():
    spec = load()
    assert spec.dialect == "conspec" and spec.method == "random" and spec.metric == "success_rate"
    assert spec.goal == "maximize" and spec.env_key == "env" and spec.name == "conspec"
    assert spec.constants == {"num_episodes": 5000, "eval.every": 100, "entropy": 1e-3}
    trials = expand(spec)
    assert len(trials) == 150 and len({t.id for t in trials}) == 150
    for env in spec.environments:
        mine = [t for t in trials if t.environment == env]
        assert len(mine) == 50 and all(t.overrides["env"] == env for t in mine)
    for t in trials:
        assert all(in_domain(spec.space[k], v) for k, v in t.params.items())
    assert list(trials[0].overrides)[:4] == ["num_episodes", "eval.every", "entropy", "env"]


def test_bayesian_grid_and_environment_key():
    spec = load(search__method="bayesian", search__goal="minimize", environment_key="training.env_name")
    assert spec.method == "bayes" and spec.goal == "minimize" and spec.env_key == "training.env_name"
    assert all(t.params == {} for t in expand(spec))
    grid = load(hyperparameters={"a": {"type": "choice", "values": [1, 2]}, "b": [3, 4, 5]},
                search={"method": "grid"})
    assert grid.method == "grid" and len(expand(grid)) == 2 * 3 * 3


def test_logging_block_is_kept_for_the_runner():
    spec = load(logging={"wandb_project": "conspec", "wandb_entity": "my-team"}, description="keys and doors")
    assert spec.extra == {"description": "keys and doors",
                          "logging": {"wandb_project": "conspec", "wandb_entity": "my-team"}}
    assert load(logging={"wandb_project": "conspec", "wandb_entity": None}).extra == {
        "logging": {"wandb_project": "conspec"}}
    assert load(logging={}).extra == {"logging": {}} and "logging" not in load().extra
    assert len(expand(load(logging={"wandb_project": "conspec"}))) == 150   # planning ignores it


def test_budget_and_grid_are_checked_when_planning():
    with pytest.raises(UserError, match="needs a number of trials") as info:
        expand(load(search={"method": "random"}))
    assert info.value.file == FILE
    with pytest.raises(UserError, match="a grid needs a list") as info:
        expand(load(search={"method": "grid"}))
    assert info.value.key == "learning_rate"


@pytest.mark.parametrize("changes,key,match", [
    (dict(hyperparameters__learning_rate={"type": "loguniform", "min": 0, "max": 1}),
     "hyperparameters.learning_rate", "min > 0"),
    (dict(hyperparameters__learning_rate={"type": "uniform", "min": 2, "max": 1}),
     "hyperparameters.learning_rate", "greater than max"),
    (dict(hyperparameters__x={"type": "gaussian", "min": 0, "max": 1}), "hyperparameters.x.type",
     "unknown type"),
    (dict(hyperparameters__x={"min": 0, "max": 1}), "hyperparameters.x", "no type"),
    (dict(hyperparameters__x={"type": "pow2", "min": 3, "max": 64}), "hyperparameters.x", "powers of two"),
    (dict(hyperparameters__x={"type": "uniform", "low": 0, "max": 1}), "hyperparameters.x.low", "unknown key"),
    (dict(search__method="evolution"), "search.method", "unknown search method"),
    (dict(search__trials=3), "search.trials", "unknown key"),
    (dict(search={"method": "bayesian", "n_trials": 3}), "search.optimization_metric", "optimization_metric"),
    (dict(environments=["a", "a"]), "environments", "distinct"),
    (dict(envs=["a"]), "envs", "unknown key"),
    (dict(logging=["wandb"]), "logging", "expected a mapping"),
    (dict(logging={"project": "x"}), "logging.project", "unknown key"),
    (dict(logging={"wandb_project": 3}), "logging.wandb_project", "expected a name"),
    (dict(logging={"wandb_entity": " "}), "logging.wandb_entity", "expected a name"),
])
def test_bad_files_name_file_key_and_fix(changes, key, match):
    with pytest.raises(UserError, match=match) as info:
        load(**changes)
    err = info.value
    assert (err.file, err.key, err.dialect) == (FILE, key, "conspec") and err.fix
