"""The ConSpec agent: arguments, one training iteration, and checkpoints that resume bit for bit,
in the trainer and through the program as a sweep runs it (SWEEP_* variables, a stop signal)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.keydoor import cli
from examples.keydoor.config import Config, parse_args
from examples.keydoor.trainer import CHECKPOINT, Trainer
from jobs.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
# Small and fast, and with enough successes early that the prototypes become valid and pay an
# intrinsic reward by iteration 10 (seed 1), so that a resume there exercises all of the state.
TINY = ["batch_size=16", "episodes=192", "max_steps_per_episode=60", "hidden_dim=16", "lstm_hidden_size=16",
        "memory_size=600", "num_prototypes=3", "learning_rate=0.003", "seed=1"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_arguments_are_the_nine_hyperparameters_and_the_task():
    cfg = parse_args(["num_prototypes=7", "learning_rate=0.0003", "intrinsic_reward_scale=0.25", "gamma=0.98",
                      "epsilon_decay=0.999", "hidden_dim=256", "lstm_hidden_size=64", "batch_size=128",
                      "memory_size=10000", "environment=triple", "episodes=50", "max_steps_per_episode=80",
                      "seed=3", "wandb=false", "+hidden_dim=64.0"])
    assert cfg == Config(num_prototypes=7, learning_rate=3e-4, intrinsic_reward_scale=0.25, gamma=0.98,
                         epsilon_decay=0.999, hidden_dim=64, lstm_hidden_size=64, batch_size=128,
                         memory_size=10000, environment="triple", episodes=50, max_steps_per_episode=80, seed=3)


@pytest.mark.parametrize("arg,key,match", [
    ("lr=0.1", "lr", "unknown key 'lr'"),
    ("hidden_dim=12.5", "hidden_dim", "whole number"),
    ("learning_rate=fast", "learning_rate", "expected a number"),
    ("gamma=1.5", "gamma", r"\(0, 1\]"),
    ("environment=quadruple", "environment", "unknown environment"),
    ("batch_size=0", "batch_size", "at least 1"),
    ("wandb=maybe", "wandb", "true or false"),
])
def test_bad_arguments_name_the_key(arg, key, match):
    with pytest.raises(UserError, match=match) as info:
        parse_args([arg])
    assert info.value.key == key and info.value.fix


def test_a_bad_argument_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "examples.keydoor", "episodes=10", "epochs=3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "unknown key 'epochs'" in done.stderr


def test_wandb_without_the_package_says_how_to_get_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)   # `import wandb` raises ImportError, installed or not
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert cli.main(TINY + ["episodes=16", "wandb=true"]) == 2
    assert "pip install -e '.[wandb]'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_wandb_offline_run_holds_the_project_tags_and_metrics(tmp_path, monkeypatch):
    trial = tmp_path / "t0a1"
    _sweep_env(monkeypatch, trial)
    for k, v in {"WANDB_MODE": "offline", "WANDB_PROJECT": "keydoor-test-project", "SWEEP_NAME": "kd-sweep",
                 "SWEEP_ENVIRONMENT": "double"}.items():
        monkeypatch.setenv(k, v)
    assert cli.run(TINY[:1] + ["episodes=32", "max_steps_per_episode=20", "environment=double", "wandb=true"],
                   stop=Never()) == 0
    [run] = list((trial / "wandb").glob("offline-run-*-t0a1/run-t0a1.wandb"))   # the trial id is the run id
    wanted = (b"keydoor-test-project", b"kd-sweep", b"double", b"mean_reward", b"success_rate", b"learning_rate")
    # wandb's service process may still be writing the file when finish() has returned (seen under load).
    deadline = time.monotonic() + 60
    while not all(text in run.read_bytes() for text in wanted) and time.monotonic() < deadline:
        time.sleep(0.5)
    data = run.read_bytes()
    for text in wanted:
        assert text in data, text


def test_one_iteration_updates_the_policy_and_counts_episodes():
    t = Trainer(parse_args(TINY))
    before = [p.detach().clone() for p in t.policy.parameters()]
    stats = t.iteration()
    assert t.episode == 16 and t.updates == 1 and len(t.recent_reward) == 16
    assert all(np.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, t.policy.parameters()))
    m = t.metrics()
    assert set(m) >= {"mean_reward", "success_rate", "max_reward"} and 0 <= m["success_rate"] <= 1


def _state(t: Trainer) -> dict:
    s = t.state_dict()
    return {"policy": s["policy"], "prototypes": s["prototypes"], "optimizer": s["optimizer"]["state"],
            "proto_optimizer": s["proto_optimizer"]["state"], "memory": s["memory"], "rng": s["rng"],
            "gen": s["gen"], "counters": (s["episode"], s["updates"], s["successes"], s["max_reward"]),
            "recent": (s["recent_reward"], s["recent_success"], s["recent_doors"])}


def _assert_same(a, b, where="state"):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert a == b, where


def test_checkpoint_round_trip_resumes_bit_for_bit(tmp_path):
    straight = Trainer(parse_args(TINY))
    paid = []
    for _ in range(12):
        paid.append(straight.iteration()["intrinsic_reward"])
    assert max(paid[10:]) > 0, "test setup: the prototypes should pay an intrinsic reward after the resume point"

    first = Trainer(parse_args(TINY))
    for _ in range(10):
        first.iteration()
    path = first.save(tmp_path)
    resumed = Trainer(parse_args(TINY))
    resumed.load(path)
    for _ in range(2):
        resumed.iteration()
    _assert_same(_state(straight), _state(resumed))
    assert straight.metrics() == resumed.metrics()


def test_a_checkpoint_of_other_hyperparameters_is_refused(tmp_path):
    t = Trainer(parse_args(TINY))
    path = t.save(tmp_path)
    other = Trainer(parse_args(TINY[:-1] + ["seed=2"]))
    with pytest.raises(UserError, match="other settings") as info:
        other.load(path)
    assert info.value.key == "seed"
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        other.load(tmp_path / "junk.pt")


class StopAfter:
    """A stop signal that arrives after `n` training iterations."""

    signum = 10

    def __init__(self, n: int) -> None:
        self.n, self.checks = n, 0

    @property
    def requested(self) -> bool:
        self.checks += 1
        return self.checks > self.n


class Never:
    signum = None
    requested = False


def _sweep_env(monkeypatch, trial: Path) -> None:
    monkeypatch.setenv("SWEEP_TRIAL_ID", trial.name)
    monkeypatch.setenv("SWEEP_TRIAL_DIR", str(trial))
    monkeypatch.setenv("SWEEP_RESULT_FILE", str(trial / "metrics.json"))
    monkeypatch.setenv("SWEEP_CHECKPOINT_DIR", str(trial / "checkpoints"))


def test_stopped_program_checkpoints_then_resumes_to_the_same_result(tmp_path, monkeypatch, capsys):
    _sweep_env(monkeypatch, tmp_path / "straight")
    assert cli.run(TINY, stop=Never()) == 0
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())

    trial = tmp_path / "stopped"
    _sweep_env(monkeypatch, trial)
    assert cli.run(TINY, stop=StopAfter(5)) == 0
    assert (trial / "checkpoints" / CHECKPOINT).exists() and not (trial / "metrics.json").exists()
    assert "stopped by signal 10 at episode 80" in capsys.readouterr().out
    # A line of the killed attempt's future that the checkpoint does not cover: dropped on resume.
    with open(trial / "progress.jsonl", "a") as f:
        f.write(json.dumps({"step": 96, "mean_reward": 123.0}) + "\n")
    assert cli.run(TINY, stop=Never()) == 0
    assert "resumed from" in capsys.readouterr().out
    resumed = json.loads((trial / "metrics.json").read_text())
    assert resumed.pop("resumed_from_episode") == 80 and straight.pop("resumed_from_episode") is None
    for result in (straight, resumed):
        result.pop("attempt_time_s")
    assert resumed == straight and resumed["episodes"] == 192
    steps = [json.loads(line)["step"] for line in (trial / "progress.jsonl").read_text().splitlines()]
    assert steps == [16 * i for i in range(1, 13)] + [192]   # every iteration once, then the final eval line


def test_by_hand_outside_a_sweep_prints_progress_and_the_result(monkeypatch, capsys):
    for name in ("SWEEP_RESULT_FILE", "SWEEP_CHECKPOINT_DIR", "SWEEP_TRIAL_DIR", "SWEEP_TRIAL_ID"):
        monkeypatch.delenv(name, raising=False)
    assert cli.run(TINY[:1] + ["episodes=32", "max_steps_per_episode=20"], stop=Never()) == 0
    out = capsys.readouterr().out
    assert "episode 32/32" in out and "result: mean_reward" in out and "random_success_rate" in out
    assert dataclasses.asdict(parse_args([]))["environment"] == "single"
