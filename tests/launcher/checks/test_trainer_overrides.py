"""A sweep of our trainer is checked against its composed Hydra config before anything is written.

Through the real CLI (`launcher.cli.main`) and the real configs/ tree; nothing here trains: an
accepted launch is a dry run, a refused one must stop before the sweep directory exists.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import hydra
import pytest

from jobs.errors import UserError
from launcher.checks.trainer_overrides import trainer_items
from launcher.cli import main

ROOT = Path(__file__).resolve().parents[3]
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
FEUDAL = str(ROOT / "configs" / "sweeps" / "feudal_weight.yaml")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    # `python -m train` means the `train` found from the launch's working directory.
    monkeypatch.chdir(ROOT)


def launch(tmp_path, *args, dry_run=True):
    sweep = tmp_path / "sweep"
    argv = ["launch", *args, "--dir", str(sweep), "--executor", "local"] + (["--dry-run"] if dry_run else [])
    return main(argv), sweep


def refused(capsys, rc, sweep) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not sweep.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def write(tmp_path, text: str, name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# --- the issue's cases --------------------------------------------------------------------------

def test_typo_from_the_issue_is_refused_with_did_you_mean_and_nothing_written(tmp_path, capsys):
    # Not a dry run: without the check this would create the sweep directory and start 4 trials.
    rc, sweep = launch(tmp_path, FEUDAL, "los.feudal_loss_weight=0.3", dry_run=False)
    line = refused(capsys, rc, sweep)
    assert "command line: key 'los.feudal_loss_weight'" in line
    assert "did you mean loss.feudal_loss_weight?" in line.lower()
    assert "+los.feudal_loss_weight=" in line  # how to add a key on purpose


def test_a_typo_in_the_file_names_the_file(tmp_path, capsys):
    path = write(tmp_path, """
        name: t
        fixed: {arch.subgoal_head.enabeld: true}
        grid: {lr: [1e-4, 3e-4]}
    """)
    line = refused(capsys, *launch(tmp_path, path))
    assert line.startswith(f"sweep launch: error: {path}: key 'arch.subgoal_head.enabeld'")
    assert "did you mean arch.subgoal_head.enabled?" in line.lower()


def test_empty_value_is_refused_for_every_program(tmp_path, capsys):
    line = refused(capsys, *launch(tmp_path, FEUDAL, "lr="))
    assert "key 'lr'" in line and "no value" in line
    line = refused(capsys, *launch(tmp_path, "--grid", "a=1,2", "b=", "--command", "my_prog --x"))
    assert "key 'b'" in line and "no value" in line


@pytest.mark.parametrize("override, words", [
    ("epochs=abc", "holds an integer here (epochs: 20000), got 'abc'"),
    ("epochs=2.5", "holds an integer here (epochs: 20000), got 2.5"),
    ("arch.use_gating=yes", "holds a boolean"),
    ("lr=fast", "holds a number"),
    ("arch.subgoal_head=3", "holds a group of keys"),
])
def test_a_value_of_the_wrong_type_is_refused(tmp_path, capsys, override, words):
    line = refused(capsys, *launch(tmp_path, FEUDAL, override))
    assert words in line and f"key '{override.split('=')[0]}'" in line


@pytest.mark.parametrize("override", [
    "lr=1",                      # a float key takes an integer
    "lr=3e-4",
    "epochs=100",
    "eval_interval=null",        # null is accepted everywhere
    "compile=true",              # a text key (auto) takes a boolean
    "device=cpu",
    "+new_key=1",                # Hydra append: a key of the user's own
    "++lr=0.01",
    "arch=hrm_v1_gated",         # a group choice
    "arch.subgoal_head.manager_period=2,4,8",
])
def test_valid_overrides_are_accepted(tmp_path, capsys, override):
    rc, sweep = launch(tmp_path, FEUDAL, override)
    assert rc == 0, capsys.readouterr().err
    assert not sweep.exists()


def test_a_valid_inline_grid_is_accepted(tmp_path, capsys):
    rc, _ = launch(tmp_path, "--grid", "lr=0.001,0.002,0.003", "arch.subgoal_head.manager_period=2,4",
                   "data_path=data/sudoku-easy", "device=cpu")
    assert rc == 0, capsys.readouterr().err


def test_appending_a_key_that_exists_is_what_hydra_refuses(tmp_path, capsys):
    line = refused(capsys, *launch(tmp_path, FEUDAL, "+lr=1"))
    assert "key '+lr'" in line and "An item is already at 'lr'" in line


def test_group_choices_are_the_group_files(tmp_path, capsys):
    line = refused(capsys, *launch(tmp_path, FEUDAL, "arch=nope"))
    assert "key 'arch'" in line and "no arch config 'nope'" in line
    assert "hrm_tiny, hrm_v1, hrm_v1_balanced, hrm_v1_gated" in line
    line = refused(capsys, *launch(tmp_path, FEUDAL, "arch=hrm_v1_gate"))
    assert "did you mean arch=hrm_v1_gated?" in line.lower()


def test_a_text_value_that_reads_as_a_sweep_is_refused(tmp_path, capsys):
    path = write(tmp_path, """
        name: t
        fixed: {data_path: "data/a,data/b"}
        grid: {lr: [1e-4, 3e-4]}
    """)
    line = refused(capsys, *launch(tmp_path, path))
    assert "key 'data_path'" in line and "reads as a Hydra sweep" in line


def test_a_later_stage_checkpoint_key_is_checked(tmp_path, capsys):
    path = write(tmp_path, """
        name: prog
        grid: {lr: [1e-4, 3e-4]}
        stages: {key: arch.halt_max_steps, values: [4, 8], checkpoint_key: checkpoint_pth}
    """)
    line = refused(capsys, *launch(tmp_path, path))
    assert "key 'checkpoint_pth'" in line and "did you mean checkpoint_path?" in line.lower()


def test_a_bayes_space_is_checked_through_its_bounds(tmp_path, capsys):
    path = write(tmp_path, """
        name: b
        method: bayes
        trials: 4
        metric: eval/exact_accuracy
        space:
          lr: {distribution: loguniform, min: 1e-5, max: 1e-3}
          epochs: {distribution: uniform, min: 10, max: 100}
    """)
    line = refused(capsys, *launch(tmp_path, path))
    assert "key 'epochs'" in line and "holds an integer" in line


# --- which programs are checked ----------------------------------------------------------------

@pytest.mark.parametrize("command", [
    "python -m train",
    "python3 -m train",
    f"{sys.executable} -m train",
    "/usr/bin/env python -u -m train",
    "/usr/bin/env OMP_NUM_THREADS=1 python3.11 -m train ${args_no_hyphens}",
    "torchrun --nproc_per_node=2 -m train",
    "torchrun --standalone --nproc_per_node 2 --module train",
    "python -m torch.distributed.run --nproc_per_node=2 -m train",
])
def test_the_trainer_under_any_interpreter_is_checked(tmp_path, capsys, command):
    line = refused(capsys, *launch(tmp_path, FEUDAL, "los.feudal_loss_weight=0.3", "--command", command))
    assert "did you mean loss.feudal_loss_weight?" in line.lower()


def test_a_wandb_file_running_the_trainer_is_checked(tmp_path, capsys):
    path = write(tmp_path, """
        program: train
        method: grid
        command: ["${env}", python, -m, "${program}", "${args_no_hyphens}"]
        parameters:
          lr: {values: [0.001, 0.002]}
          los:
            parameters:
              feudal_loss_weight: {value: 0.3}
    """)
    line = refused(capsys, *launch(tmp_path, path))
    assert f"{path}: key 'los.feudal_loss_weight'" in line


def test_overrides_passed_with_hyphens_to_the_trainer_are_refused(tmp_path, capsys):
    line = refused(capsys, *launch(tmp_path, FEUDAL, "--command", "python -m train ${args}"))
    assert "${args_no_hyphens}" in line


@pytest.mark.parametrize("command", [
    "python -m other_module",
    "python train.py",
    "python -m train --multirun",      # Hydra flags change what is composed: not ours to judge
    "./train",
])
def test_other_programs_are_not_checked(tmp_path, capsys, command):
    rc, _ = launch(tmp_path, FEUDAL, "los.feudal_loss_weight=0.3", "--command", command)
    assert rc == 0, capsys.readouterr().err


def test_a_train_module_of_another_project_is_not_checked(tmp_path, monkeypatch, capsys):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert trainer_items(["python", "-m", "train"]) is None
    rc, _ = launch(tmp_path, FEUDAL, "los.feudal_loss_weight=0.3")
    assert rc == 0, capsys.readouterr().err


def test_trainer_items_are_the_commands_own_overrides():
    assert trainer_items(["python", "-m", "train"]) == []
    assert trainer_items(["python", "-m", "train", "arch=hrm_tiny", "${args_no_hyphens}"]) == ["arch=hrm_tiny"]
    assert trainer_items(["python", "-X", "dev", "-m", "train"]) == []
    assert trainer_items(["python", "-c", "import train"]) is None
    assert trainer_items(["torchrun", "--nproc_per_node", "4", "-m", "train", "arch=hrm_tiny"]) == ["arch=hrm_tiny"]
    assert trainer_items(["torchrun", "--nproc_per_node=4", "other.py"]) is None
    with pytest.raises(UserError, match="args_no_hyphens"):
        trainer_items(["python", "-m", "train", "${args_json}"])


def test_the_commands_own_overrides_are_checked(tmp_path, capsys):
    line = refused(capsys, *launch(tmp_path, FEUDAL, "--command", "python -m train arch.hidden_sze=64"))
    assert "did you mean arch.hidden_size?" in line.lower()
    # the same key later on the command line wins, as in Hydra: the file's arch=hrm_v1 here
    rc, _ = launch(tmp_path, FEUDAL, "--command", "python -m train arch=hrm_tny")
    assert rc == 0, capsys.readouterr().err


# --- cost: Hydra once per key set, not per trial --------------------------------------------------

@pytest.fixture
def compositions(monkeypatch):
    """The overrides of every hydra.compose call (the real one runs)."""
    calls = []
    real = hydra.compose

    def counting(*args, **kwargs):
        calls.append(kwargs.get("overrides"))
        return real(*args, **kwargs)

    monkeypatch.setattr(hydra, "compose", counting)
    return calls


def test_hydra_composes_once_per_key_set(tmp_path, capsys, compositions):
    # 2 stages x 2 environments x 100 random points = 400 trials; key sets: stage 0, and
    # stage 1 which adds checkpoint_path. One base composition (the arch choice) + one per key set.
    path = write(tmp_path, """
        name: many
        method: random
        trials: 100
        fixed: {arch: hrm_v1}
        space: {lr: {distribution: loguniform, min: 1e-5, max: 1e-3}}
        environments: [data/a, data/b]
        stages: {key: arch.halt_max_steps, values: [4, 8]}
    """)
    rc, _ = launch(tmp_path, path, "--json")
    assert rc == 0, capsys.readouterr().err
    assert len(compositions) == 3
    assert sum(any(o.startswith("checkpoint_path=") for o in c) for c in compositions) == 1


def test_each_swept_group_choice_is_composed(tmp_path, capsys, compositions):
    rc, _ = launch(tmp_path, "--grid", "arch=hrm_tiny,hrm_v1", "lr=1e-4,3e-4", "arch.hidden_size=64")
    assert rc == 0, capsys.readouterr().err
    # per choice: the base config (for the keys and their types) and the trials' key set
    assert sorted(c for c in compositions if len(c) == 1) == [["arch=hrm_tiny"], ["arch=hrm_v1"]]
    assert len(compositions) == 4


# --- every sweep file we ship still launches ----------------------------------------------------

@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_shipped_sweep_file_is_accepted(tmp_path, capsys, path):
    rc, sweep = launch(tmp_path, str(path))
    assert rc == 0, capsys.readouterr().err
    assert not sweep.exists()
