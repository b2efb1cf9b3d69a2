"""Metta / Protein sweep files, generations 1-3 (launcher/dialects/metta.py)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jobs.argv import render_argv
from jobs.errors import UserError
from launcher.dialects import load_spec

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "sweeps"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "metta.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_generation_1_nested_sweep_block():
    spec = load_spec(FIX / "metta_gen1.yaml")
    assert (spec.dialect, spec.method, spec.metric, spec.goal) == ("metta", "bayes", "reward", "maximize")
    assert spec.n_trials == 20  # rollout_count 10 x num_samples 2
    # A rollout's samples run side by side and are grouped as one rollout in reports.
    assert spec.resources["max_parallel"] == 2 and spec.search_options["num_samples"] == 2
    s = spec.space
    assert (s["trainer.learning_rate"].kind, s["trainer.learning_rate"].center) == ("loguniform", 0.001)
    assert (s["trainer.batch_size"].kind, s["trainer.batch_size"].low, s["trainer.batch_size"].high) == \
        ("pow2", 32, 256)
    assert s["trainer.gamma"].kind == "uniform" and s["trainer.epochs"].kind == "int_uniform"
    assert (s["trainer.clip"].kind, s["trainer.clip"].center) == ("logit", 0.5)
    assert spec.constants == {"trainer.total_timesteps": 50000, "trainer.evaluate_interval": 5000,
                              "env.game.max_steps": 64, "env.game.objects.altar.hp": 10,
                              "env.game.objects.altar.cooldown": 5}
    assert spec.extra["scale"]["trainer.learning_rate"] == 1 and spec.extra["scale"]["trainer.gamma"] == "auto"


def test_generation_1_root_trainer_says_nest_under_sweep():
    with pytest.raises(UserError) as err:
        load_spec(FIX / "metta_gen1_root_trainer.yaml")
    msg = str(err.value)
    assert "key 'trainer'" in msg and "metta dialect" in msg and "sweep.trainer" in msg
    assert "metta_gen1_root_trainer.yaml" in msg


def test_root_env_alone_says_nest_under_sweep(tmp_path):
    path = write(tmp_path, """
        env:
          game:
            max_steps: {distribution: int_uniform, min: 10, max: 100, mean: 50, scale: auto}
    """)
    with pytest.raises(UserError, match="key 'env'.*metta dialect.*sweep"):
        load_spec(path)


def test_generation_2_root_dotted_parameters_and_command_run_as_given():
    spec = load_spec(FIX / "metta_gen2.yaml")
    assert (spec.method, spec.n_trials, spec.metric, spec.goal) == ("bayes", 30, "reward", "maximize")
    assert spec.command == ("python", "tools/train.py", "run=sweep")
    assert spec.space["trainer.optimizer.learning_rate"].center == 3e-4
    assert spec.space["trainer.batch_size"].kind == "pow2"
    assert spec.extra["project"] == "metta" and spec.extra["entity"] == "metta-research"
    assert render_argv(spec.command, {"trainer.batch_size": 512}) == [
        "python", "tools/train.py", "run=sweep", "trainer.batch_size=512"]


def test_generation_3_nested_tree_and_protein_block():
    spec = load_spec(FIX / "metta_gen3.yaml")
    assert set(spec.space) == {"trainer.total_timesteps", "trainer.batch_size", "trainer.optimizer.learning_rate"}
    assert spec.search_options == {"n_startup": 20, "max_cost": 3600}
    assert spec.extra["protein"]["expansion_rate"] == 0.15
    assert spec.extra["max_observations_to_load"] == 250
    assert spec.extra["scale"]["trainer.optimizer.learning_rate"] == "time"
    assert spec.n_trials == 50 and spec.method == "bayes"
    assert spec.warnings == ()


def test_program_without_command_and_metric_inside_parameters(tmp_path):
    path = write(tmp_path, """
        program: tools/train.py
        method: random
        rollout_count: 4
        parameters:
          metric: score
          goal: minimize
          trainer:
            lr: {distribution: log_normal, min: 1e-5, max: 1e-2, mean: 1e-3, scale: auto}
            bs: 256
    """)
    spec = load_spec(path)
    assert spec.command == ("python", "tools/train.py")
    assert (spec.metric, spec.goal, spec.method) == ("score", "minimize", "random")
    assert spec.constants == {"trainer.bs": 256}


def test_inline_carbs_value_and_look_alike_inside_metta(tmp_path):
    path = write(tmp_path, """
        rollout_count: 2
        sweep:
          parameters:
            trainer.lr: {distribution: uniform, min: 0.1, max: 0.2, mean: 0.15, scale: auto}
          trainer:
            bs: ${ss:pow2, 16, 64}
            odd: $pow2(1024, 32768)
    """)
    spec = load_spec(path)
    assert spec.space["trainer.bs"].kind == "pow2"
    assert spec.constants == {"trainer.odd": "'$pow2(1024, 32768)'"}
    assert len(spec.warnings) == 1 and "trainer.odd" in spec.warnings[0]


@pytest.mark.parametrize("leaf, key, words", [
    ("{distribution: uniform, min: 2, max: 1, mean: 1.5}", "trainer.x", "greater than max"),
    ("{distribution: uniform, min: 0, max: 1, mean: 3}", "trainer.x.mean", "outside"),
    ("{distribution: log_normal, min: 0, max: 1, mean: 0.5}", "trainer.x", "min > 0"),
    ("{distribution: uniform_pow2, min: 30, max: 256, mean: 64}", "trainer.x", "powers of two"),
    ("{distribution: logit_normal, min: 0.1, max: 1.5, mean: 0.5}", "trainer.x", "inside (0, 1)"),
    ("{distribution: beta_prime, min: 0, max: 1}", "trainer.x.distribution", "unknown distribution"),
    ("{distribution: uniform, max: 1}", "trainer.x", "needs min and max"),
    ("{distribution: uniform, min: 0, max: 1, scale: -2}", "trainer.x.scale", "scale must be"),
])
def test_bad_leaves(tmp_path, leaf, key, words):
    path = write(tmp_path, f"rollout_count: 3\nsweep:\n  parameters:\n    trainer.x: {leaf}\n")
    with pytest.raises(UserError) as err:
        load_spec(path)
    msg = str(err.value)
    assert str(path) in msg and f"key '{key}'" in msg and "metta dialect" in msg and words in msg


@pytest.mark.parametrize("text, key", [
    ("method: annealing\nparameters: {a.b: {distribution: uniform, min: 0, max: 1, mean: 0.5}}\n", "method"),
    ("goal: up\nrollout_count: 2\nparameters: {a.b: {distribution: uniform, min: 0, max: 1, mean: 0.5}}\n", "goal"),
    ("rollout_count: 0\nparameters: {a.b: {distribution: uniform, min: 0, max: 1, mean: 0.5}}\n",
     "rollout_count"),
    ("protein: 3\nparameters: {a.b: {distribution: uniform, min: 0, max: 1, mean: 0.5}}\n", "protein"),
    ("method: protein\nparameters: {a.b: {distribution: uniform, min: 0, max: 1, mean: 0.5}}\n",
     "rollout_count"),
])
def test_bad_header(tmp_path, text, key):
    with pytest.raises(UserError, match=f"key '{key}'"):
        load_spec(write(tmp_path, text))


def test_not_search_keys_are_kept_never_an_error(tmp_path):
    path = write(tmp_path, """
        rollout_count: 2
        eval: {num_episodes: 10}
        generation: {enabled: true}
        test: 1
        resume: true
        max_observations_to_load: 100
        description: hi
        controller: {type: local}
        sweep:
          parameters:
            a.b: {distribution: uniform, min: 0, max: 1, mean: 0.5, scale: auto}
    """)
    spec = load_spec(path)
    for k in ("eval", "generation", "test", "resume", "max_observations_to_load", "description", "controller"):
        assert k in spec.extra
    assert spec.warnings == ()


def test_oldest_form_searched_values_inside_sweep_trainer(tmp_path):
    path = write(tmp_path, """
        # @package _global_
        rollout_count: 5
        sweep:
          trainer:
            optimizer:
              lr: {distribution: log_normal, min: 1e-5, max: 1e-2, mean: 1e-3, scale: 1.0}
            epochs: 3
    """)
    spec = load_spec(path)
    assert spec.space["trainer.optimizer.lr"].kind == "loguniform"
    assert spec.constants == {"trainer.epochs": 3}


def test_protein_file_with_wandb_style_leaves(tmp_path):
    path = write(tmp_path, """
        program: python
        method: protein
        rollout_count: 3
        parameters:
          trainer.lr: {min: 0.0001, max: 0.01}
          trainer.bs: {values: [32, 64]}
          trainer.epochs: {min: 1, max: 5}
          trainer.p: {distribution: logit_normal, min: 0.0, max: 1.0, mean: 0.5, scale: auto}
        command: [python, -m, trainer.main, ++wandb_enabled=True]
    """)
    spec = load_spec(path)
    assert (spec.space["trainer.lr"].kind, spec.space["trainer.epochs"].kind) == ("uniform", "int_uniform")
    assert spec.space["trainer.bs"].values == (32, 64)
    # logit bounds 0 and 1 (Protein's and CARBS's default) step just inside
    assert 0 < spec.space["trainer.p"].low < 1e-5 and 1 - 1e-5 < spec.space["trainer.p"].high < 1
    assert spec.command == ("python", "-m", "trainer.main", "++wandb_enabled=True")
