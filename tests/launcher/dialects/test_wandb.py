"""W&B sweep configurations -> SweepSpec (launcher/dialects/wandb.py)."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from jobs.argv import has_macro, render_argv
from jobs.errors import UserError
from launcher.dialects import load_spec

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "sweeps"


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_every_distribution():
    spec = load_spec(FIX / "wandb_all_distributions.yaml")
    assert (spec.dialect, spec.method, spec.n_trials, spec.metric, spec.goal) == \
        ("wandb", "random", 40, "val_loss", "minimize")
    s = spec.space
    assert s["optimizer"].kind == "choice" and s["optimizer"].values == ("adam", "sgd")
    assert s["act"].probabilities == (0.5, 0.25, 0.25)
    assert s["act2"].probabilities == (0.9, 0.1)
    assert s["cat"].values == (1, 2, 3)
    # min/max alone: int_uniform when both ints, uniform otherwise
    assert (s["layers"].kind, s["layers"].low, s["layers"].high) == ("int_uniform", 1, 4)
    assert s["dropout"].kind == "uniform"
    assert s["width"].kind == "int_uniform"
    assert (s["qu"].kind, s["qu"].q, s["qu"].is_int) == ("uniform", 10, True)
    # log_uniform bounds are natural-log exponents
    assert s["lr_exp"].kind == "loguniform"
    assert math.isclose(s["lr_exp"].low, math.exp(-9.21)) and math.isclose(s["lr_exp"].high, math.exp(-4.6))
    assert (s["lr"].low, s["lr"].high) == (1e-5, 1e-2)
    assert math.isclose(s["bs_exp"].low, 32, rel_tol=1e-3) and s["bs_exp"].q == 1 and s["bs_exp"].is_int
    assert (s["bs"].low, s["bs"].high, s["bs"].q) == (32, 256, 8)
    # inv_log_uniform: X = exp(-U(min, max)) -> log-uniform on [e^-max, e^-min]
    assert math.isclose(s["inv"].low, math.exp(-5)) and math.isclose(s["inv"].high, math.exp(-2))
    assert (s["inv_v"].kind, s["inv_v"].low, s["inv_v"].high) == ("loguniform", 0.001, 0.1)
    assert (s["noise"].kind, s["noise"].mu, s["noise"].sigma) == ("normal", 0, 0.1)
    assert (s["qnoise"].q, s["qnoise"].is_int) == (1, True)
    assert (s["scale"].kind, s["scale"].mu, s["scale"].sigma) == ("lognormal", 0, 1)
    assert (s["qscale"].q, s["qscale"].is_int) == (0.5, False)
    assert (s["frac"].kind, s["frac"].a, s["frac"].b) == ("beta", 2, 5)
    assert s["qfrac"].q == 0.1
    # nesting -> dotted keys; constants, `1e-8` string -> number
    assert s["optim.adam.beta1"].kind == "uniform"
    assert spec.constants == {"epochs": 10, "tag": "baseline", "optim.adam.eps": 1e-08}
    assert spec.extra == {"name": "all dists", "project": "hrm", "entity": "someone"}
    assert spec.name == "all-dists"
    assert spec.warnings == ()


def test_default_command_and_constants_passed_like_parameters():
    spec = load_spec(FIX / "wandb_all_distributions.yaml")
    assert spec.command == ("/usr/bin/env", "python", "train.py", "${args}")
    argv = render_argv(spec.command, {**spec.constants, "lr": 0.001})
    assert argv == ["/usr/bin/env", "python", "train.py", "--epochs=10", "--tag=baseline",
                    "--optim.adam.eps=1e-08", "--lr=0.001"]


def test_grid_enumerates_int_uniform_and_keeps_hyperband():
    spec = load_spec(FIX / "wandb_grid_nested.yaml")
    assert spec.method == "grid" and spec.goal == "maximize" and spec.metric == "acc"
    assert spec.space["depth"].kind == "choice" and spec.space["depth"].values == (2, 3, 4)
    assert set(spec.space) == {"seed", "depth", "model.dim"}
    assert spec.constants == {"model.act": "relu"}
    assert (spec.pruner.kind, spec.pruner.min_iter, spec.pruner.eta) == ("hyperband", 3, 2)
    assert spec.command == ("/usr/bin/env", "python", "train.py", "--config", "base.yaml", "${args_no_hyphens}")
    assert render_argv(spec.command, {"seed": 0, "model.act": "relu"})[-2:] == ["seed=0", "model.act=relu"]


def test_interpreter_dropped_for_a_non_python_program():
    spec = load_spec(FIX / "wandb_macros.yaml")
    assert spec.command[:2] == ("/usr/bin/env", "scripts/fit.sh")
    assert has_macro(spec.command) and spec.n_trials == 5 and spec.method == "bayes"


def test_no_run_cap_needs_trials():
    with pytest.raises(UserError) as err:
        load_spec(FIX / "wandb_no_run_cap.yaml")
    msg = str(err.value)
    assert "run_cap" in msg and "--trials" in msg and "wandb" in msg and "wandb_no_run_cap.yaml" in msg
    spec = load_spec(FIX / "wandb_no_run_cap.yaml", trials=7)
    assert spec.n_trials == 7
    assert load_spec(FIX / "wandb_no_run_cap.yaml", method="bayes", trials=3).method == "bayes"


def test_method_override_to_grid_refuses_continuous():
    with pytest.raises(UserError, match="key 'lr'.*grid"):
        load_spec(FIX / "wandb_no_run_cap.yaml", method="grid")


def test_hyperband_max_iter_and_s(tmp_path):
    path = write(tmp_path, """
        program: t.py
        method: random
        run_cap: 4
        early_terminate: {type: hyperband, max_iter: 27, s: 2}
        parameters: {x: {values: [1, 2]}}
    """)
    spec = load_spec(path)
    assert (spec.pruner.max_iter, spec.pruner.s, spec.pruner.eta) == (27, 2, 3)


def test_command_without_args_macro_appends_with_warning(tmp_path):
    path = write(tmp_path, """
        program: t.py
        method: grid
        command: [python, t.py]
        parameters: {x: {values: [1, 2]}}
    """)
    spec = load_spec(path)
    assert not has_macro(spec.command) and any("no ${args" in w for w in spec.warnings)
    assert render_argv(spec.command, {"x": 1}) == ["python", "t.py", "x=1"]


def test_unknown_top_level_key_is_kept_with_a_warning(tmp_path):
    path = write(tmp_path, """
        program: t.py
        method: grid
        job: my-launch-job
        controller: {type: local}
        parameters: {x: {values: [1, 2]}}
    """)
    spec = load_spec(path)
    assert spec.extra == {"job": "my-launch-job", "controller": {"type": "local"}}
    assert len(spec.warnings) == 1 and "'job'" in spec.warnings[0]


@pytest.mark.parametrize("param, key, words", [
    ("{distribution: uniform, min: 2, max: 1}", "x", "min (2) is greater than max"),
    ("{distribution: log_uniform_values, min: 0, max: 1}", "x", "min > 0"),
    ("{distribution: log_uniform, min: 3, max: 1}", "x", "greater than max"),
    ("{distribution: gaussian_mix, min: 0, max: 1}", "x.distribution", "unknown distribution"),
    ("{distribution: uniform, min: 0}", "x", "needs `min:` and `max:`"),
    ("{values: [a, b], probabilities: [0.2, 0.2]}", "x", "summing to 1"),
    ("{min: 0, max: 1, stepsize: 2}", "x.stepsize", "unknown field"),
    ("{distribution: uniform, min: abc, max: 1}", "x.min", "expected a number"),
    ("{distribution: beta, a: -1, b: 1}", "x", "a > 0"),
    ("7", "x", "must be a mapping"),
])
def test_bad_parameters_name_file_key_dialect_and_fix(tmp_path, param, key, words):
    path = write(tmp_path, f"program: t.py\nmethod: random\nrun_cap: 3\nparameters:\n  x: {param}\n")
    with pytest.raises(UserError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg and f"key '{key}'" in msg and "wandb dialect" in msg and words in msg
    assert err.value.fix


@pytest.mark.parametrize("text, key", [
    ("program: t.py\nmethod: hyper\nparameters: {x: {values: [1]}}\n", "method"),
    ("program: t.py\nmethod: bayes\nrun_cap: 2\nparameters: {x: {min: 0.0, max: 1.0}}\n", "metric"),
    ("method: grid\ncommand: ['${program}', '${args}']\nparameters: {x: {values: [1]}}\n", "program"),
    ("program: t.py\nmethod: grid\nearly_terminate: {type: median}\nparameters: {x: {values: [1]}}\n",
     "early_terminate"),
    ("program: t.py\nmethod: grid\nmetric: {name: a, goal: up}\nparameters: {x: {values: [1]}}\n", "metric.goal"),
    ("program: t.py\nmethod: random\nrun_cap: -1\nparameters: {x: {values: [1]}}\n", "run_cap"),
])
def test_bad_header(tmp_path, text, key):
    with pytest.raises(UserError, match=f"key '{key}'"):
        load_spec(write(tmp_path, text))


def test_numbers_written_1e_minus_5_are_numbers(tmp_path):
    path = write(tmp_path, """
        program: t.py
        method: random
        run_cap: 1e1
        parameters:
          lr: {distribution: log_uniform_values, min: 1e-5, max: 1e-2}
          wd: {values: [1e-5, 1e-4, "abc"]}
    """)
    spec = load_spec(path)
    assert spec.space["lr"].low == 1e-5 and isinstance(spec.space["lr"].low, float)
    assert spec.space["wd"].values == (1e-5, 1e-4, "abc")
    assert spec.n_trials == 10
