"""Dialect detection, load_spec's reading/overrides/errors, and a random pass over every fixture."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from jobs.argv import render_argv
from jobs.errors import UserError
from launcher.dialects import DIALECTS, detect, load_spec, read_yaml
from launcher.plans import expand
from search.kinds import in_domain, sample

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "sweeps"
LOADABLE = {
    "wandb_all_distributions.yaml": "wandb", "wandb_grid_nested.yaml": "wandb", "wandb_macros.yaml": "wandb",
    "metta_gen1.yaml": "metta", "metta_gen2.yaml": "metta", "metta_gen3.yaml": "metta",
    "carbs_leaves.yaml": "carbs", "carbs_inline.yaml": "carbs",
    "hydra_optuna.yaml": "hydra", "hydra_basic.yaml": "hydra", "hydra_random_sampler.yaml": "hydra",
}
CONFIG_SWEEPS = Path(__file__).resolve().parents[3] / "configs" / "sweeps"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("name, dialect", sorted({**LOADABLE, "wandb_no_run_cap.yaml": "wandb",
                                                  "metta_gen1_root_trainer.yaml": "metta"}.items()))
def test_fixture_detection(name, dialect):
    assert detect(read_yaml(FIX / name)) == dialect


@pytest.mark.parametrize("doc, dialect", [
    ({"hydra": {"sweeper": {"params": {"x": "1,2"}}}}, "hydra"),
    ({"defaults": [{"override hydra/sweeper": "optuna"}], "x": 1}, "hydra"),
    ({"hyperparameters": {"lr": {"type": "uniform", "min": 0, "max": 1}}}, "conspec"),
    ({"parameters": {"x": {"values": [1, 2]}}, "method": "grid"}, "wandb"),
    ({"parameters": {"space": {"values": [1, 2]}}, "method": "grid"}, "wandb"),  # a parameter named space
    ({"parameters": {"x": {"distribution": "log_normal", "mu": 0, "sigma": 1}}, "method": "random"}, "wandb"),
    ({"parameters": {"x": {"distribution": "log_normal", "min": 1e-5, "max": 1}}}, "metta"),
    ({"parameters": {"x": {"distribution": "uniform", "min": 0, "max": 1}}, "method": "protein"}, "metta"),
    ({"parameters": {"a": {"b": {"distribution": "uniform", "min": 0, "max": 1}}}}, "metta"),
    ({"parameters": {"a": {"b": {"space": "log", "min": 1e-5, "max": 1}}}}, "carbs"),
    ({"sweep": {"parameters": {"a.b": {"space": "linear", "min": 0, "max": 1}}}}, "carbs"),
    ({"sweep": {"parameters": {"a.b": {"distribution": "uniform", "min": 0, "max": 1}}}}, "metta"),
    ({"sweep": {"metric": "r"}, "trainer": {"lr": "${ss:log, 1e-5, 1e-2}"}}, "carbs"),
    ({"trainer": {"lr": {"distribution": "uniform", "min": 0, "max": 1, "mean": 0.5}}}, "metta"),
    ({"program": "t.py", "method": "grid"}, "wandb"),
    ({"grid": {"a": [1, 2]}, "name": "x"}, "native"),
    ({"space": {"lr": {"distribution": "uniform", "min": 0, "max": 1}}, "trials": 3}, "native"),
])
def test_detect_from_keys(doc, dialect):
    assert detect(doc) == dialect


def test_dialect_can_be_forced(tmp_path):
    # A W&B-looking file read as Metta: Metta's leaf rules apply (and say so).
    path = write(tmp_path, "method: random\nrun_cap: 2\nparameters:\n  x: {values: [1, 2]}\n")
    spec = load_spec(path)
    assert spec.dialect == "wandb"
    # no program: our trainer with Hydra-style overrides, and a warning saying so
    assert spec.command == ("python", "-m", "train", "${args_no_hyphens}") and "program" in spec.warnings[0]
    with pytest.raises(UserError, match="metta dialect"):
        load_spec(path, dialect="metta")
    with pytest.raises(UserError, match="unknown dialect 'yaml'.*" + ", ".join(DIALECTS)):
        load_spec(path, dialect="yaml")


@pytest.mark.parametrize("text, words", [
    ("a: [1, 2\n", "invalid YAML at line"),
    ("", "the file is empty"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("a: 1\n---\nb: 2\n", "invalid YAML"),
])
def test_unreadable_files_are_one_clear_error(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_spec(path)
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")


def test_invalid_yaml_fixture_names_the_line():
    with pytest.raises(UserError, match="invalid_yaml.yaml: invalid YAML at line 4"):
        load_spec(FIX / "invalid_yaml.yaml")


def test_bad_overrides(tmp_path):
    path = FIX / "wandb_macros.yaml"
    with pytest.raises(UserError, match="unknown method 'hill'"):
        load_spec(path, method="hill")
    with pytest.raises(UserError, match="--trials must be a positive integer"):
        load_spec(path, trials=0)


def test_grid_override_enumerates_pow2_int_and_quantised_spaces(tmp_path):
    path = write(tmp_path, """
        rollout_count: 2
        sweep:
          parameters:
            bs: {distribution: uniform_pow2, min: 32, max: 256, mean: 64, scale: auto}
            epochs: {distribution: int_uniform, min: 1, max: 8, mean: 4, scale: auto}
    """)
    spec = load_spec(path, method="grid")
    assert spec.space["bs"].values == (32, 64, 128, 256)
    assert spec.space["epochs"].values == tuple(range(1, 9))
    path = write(tmp_path, "program: t.py\nmethod: grid\nparameters:\n"
                           "  wd: {distribution: q_uniform, min: 0.1, max: 0.5, q: 0.1}\n")
    assert load_spec(path).space["wd"].values == (0.1, 0.2, 0.3, 0.4, 0.5)


# --------------------------------------------------------------------------- random pass

@pytest.mark.parametrize("name", sorted(LOADABLE))
def test_every_sampled_value_lies_in_its_declared_domain(name):
    spec = load_spec(FIX / name)
    rng = np.random.default_rng(1234)
    for key, dist in spec.space.items():
        for _ in range(300):
            v = sample(dist, rng)
            assert in_domain(dist, v), (name, key, dist, v)
            # and inside the bounds as the file declared them (W&B exponents already converted)
            if dist.low is not None:
                assert dist.low - 1e-9 * abs(dist.low) <= v <= dist.high + 1e-9 * abs(dist.high), (key, v)


@pytest.mark.parametrize("name", sorted(LOADABLE))
def test_random_plan_over_each_fixture_renders_one_argument_per_value(name, tmp_path):
    spec = load_spec(FIX / name)
    if spec.method == "grid":
        spec = load_spec(FIX / name, method="grid")
    else:
        spec = load_spec(FIX / name, method="random", trials=25)
    trials = expand(spec)
    assert trials and len({t.id for t in trials}) == len(trials)
    for t in trials:
        for key, value in t.params.items():
            assert in_domain(spec.space[key], value), (name, key, value)
        argv = render_argv(spec.command, t.overrides, json_file_dir=tmp_path)
        assert all(isinstance(a, str) for a in argv)
        if not any(c.startswith("${args_json") for c in spec.command):
            # every override is exactly one element, wherever the macros put it
            joined = [a for a in argv if "=" in a]
            assert len(joined) >= len(t.overrides)


def test_the_wandb_hrm_config_parses_and_renders_hydra_overrides():
    spec = load_spec(CONFIG_SWEEPS / "wandb_hrm.yaml")
    assert (spec.dialect, spec.method, spec.n_trials, spec.goal) == ("wandb", "random", 24, "maximize")
    assert spec.command == ("/usr/bin/env", "python", "-m", "train", "${args_no_hyphens}")
    assert spec.pruner.kind == "hyperband"
    trial = expand(spec)[0]
    argv = render_argv(spec.command, trial.overrides)
    assert argv[:4] == ["/usr/bin/env", "python", "-m", "train"]
    assert "arch.subgoal_head.enabled=true" in argv
    assert any(a.startswith("loss.feudal_loss_weight=") for a in argv)
    assert all(not a.startswith("--") for a in argv[4:])
