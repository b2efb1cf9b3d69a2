"""Hydra configs with `hydra.sweeper` (launcher/dialects/hydra_sweeper.py)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jobs.errors import UserError
from launcher.dialects import load_spec

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "sweeps"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_optuna_sweeper_every_expression():
    spec = load_spec(FIX / "hydra_optuna.yaml")
    assert (spec.dialect, spec.method, spec.sampler, spec.seed, spec.n_trials, spec.goal) == \
        ("hydra", "bayes", "tpe", 123, 30, "maximize")
    assert spec.name == "hrm-tune" and spec.command == ("python", "my_app.py")
    s = spec.space
    assert (s["model.lr"].kind, s["model.lr"].low, s["model.lr"].high) == ("loguniform", 1e-5, 1e-2)
    assert s["model.depth"].values == (2, 3, 4, 5, 6, 7)  # range() is half-open
    assert (s["model.dropout"].kind, s["model.dropout"].high) == ("uniform", 0.5)
    assert (s["model.width"].kind, s["model.width"].low, s["model.width"].high) == ("int_uniform", 16, 128)
    assert s["optim"].values == ("adam", "sgd") and s["model.act"].values == ("relu", "gelu")
    # A plain value is a constant; the app's own config (model.lr: 0.001) never becomes one.
    assert spec.constants == {"model.wd": 1e-4}
    assert spec.extra["hydra.sweeper"]["study_name"] == "hrm-tune"


def test_basic_sweeper_is_a_grid_with_the_default_command():
    spec = load_spec(FIX / "hydra_basic.yaml")
    assert spec.method == "grid" and spec.n_trials is None
    assert spec.command == ("python", "-m", "train")
    assert spec.space["schema"].values == ("warehouse", "support", "school")
    assert spec.space["seed"].values == (0, 1, 2)
    assert spec.space["lr"].values == (0.1, 0.01)


def test_random_sampler_default_trials_and_multi_objective_warning():
    spec = load_spec(FIX / "hydra_random_sampler.yaml")
    assert (spec.method, spec.sampler, spec.n_trials, spec.goal) == ("random", "random", 20, "minimize")
    assert any("several objectives" in w for w in spec.warnings)


def test_command_from_the_caller():
    spec = load_spec(FIX / "hydra_basic.yaml", command=["python", "app.py"])
    assert spec.command == ("python", "app.py")


@pytest.mark.parametrize("sampler, method", [("optuna.samplers.GridSampler", "grid"),
                                             ("optuna.samplers.NSGAIISampler", "bayes"),
                                             ("optuna.samplers.QMCSampler", "random")])
def test_sampler_target_sets_the_method(tmp_path, sampler, method):
    path = write(tmp_path, f"""
        hydra:
          sweeper:
            _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
            sampler: {{_target_: {sampler}}}
            params: {{x: "1,2,3"}}
    """)
    assert load_spec(path).method == method


def test_a_sampler_whose_package_is_missing_is_refused_before_anything_runs(tmp_path):
    import importlib.util

    if importlib.util.find_spec("cmaes") is not None:
        pytest.skip("the cmaes package is installed here")
    path = write(tmp_path, """
        hydra:
          sweeper:
            _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
            sampler: {_target_: optuna.samplers.CmaEsSampler}
            n_trials: 4
            params: {x: "interval(0, 1)"}
    """)
    with pytest.raises(UserError, match="needs the `cmaes` package.*Pip install cmaes"):
        load_spec(path)


def test_sampler_from_defaults_list(tmp_path):
    path = write(tmp_path, """
        defaults:
          - override hydra/sweeper: optuna
          - override hydra/sweeper/sampler: random
        hydra:
          sweeper:
            n_trials: 5
            params: {x: "interval(0, 1)"}
    """)
    spec = load_spec(path)
    assert (spec.method, spec.n_trials) == ("random", 5)


def test_legacy_optuna_search_space(tmp_path):
    path = write(tmp_path, """
        defaults: [{override hydra/sweeper: optuna}]
        hydra:
          sweeper:
            n_trials: 4
            search_space:
              x: {type: float, low: 1e-5, high: 1e-2, log: true}
              n: {type: int, low: 1, high: 4}
              c: {type: categorical, choices: [a, b]}
    """)
    s = load_spec(path).space
    assert (s["x"].kind, s["n"].kind, s["c"].values) == ("loguniform", "int_uniform", ("a", "b"))


@pytest.mark.parametrize("params, key, words", [
    ('{x: "interval(0, 1)"}', "x", "grid needs a list"),          # basic sweeper: grid only
    ('{x: "range(1, 5"}', "hydra.sweeper.params.x", "cannot parse Hydra sweep syntax"),
    ('{x: "tag(log, interval(0, 1))"}', "hydra.sweeper.params.x", "min > 0"),
    ("{x: null}", "hydra.sweeper.params.x", "expected a sweep expression"),
    ("{}", "hydra.sweeper.params", "no sweep parameters"),
])
def test_bad_params(tmp_path, params, key, words):
    path = write(tmp_path, f"hydra:\n  sweeper:\n    params: {params}\n")
    with pytest.raises(UserError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg and f"key '{key}'" in msg and "hydra dialect" in msg and words in msg


def test_bad_direction_and_sampler(tmp_path):
    base = "defaults: [{override hydra/sweeper: optuna}]\nhydra:\n  sweeper:\n    params: {x: '1,2'}\n"
    with pytest.raises(UserError, match="key 'hydra.sweeper.direction'"):
        load_spec(write(tmp_path, base + "    direction: upward\n"))
    with pytest.raises(UserError, match="key 'hydra.sweeper.sampler'"):
        load_spec(write(tmp_path, base + "    sampler: {_target_: my.MagicSampler}\n"))
