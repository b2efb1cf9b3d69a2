"""torch.compile in the trainer: the `compile` key, and one compile cache per sweep that a second
array task with the same shapes loads instead of compiling (real trainer subprocesses on CPU)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.errors import UserError
from jobs.runtime import TrialContext
from train import compile_cache
from train.data import sudoku

REPO = Path(__file__).resolve().parents[2]
# The smallest HRM the trainer builds: compile time is mostly per kernel, not per parameter.
SMALL = ["arch=hrm_tiny", "arch.H_cycles=1", "arch.L_cycles=1", "arch.halt_max_steps=1", "global_batch_size=8",
         "epochs=1", "eval_interval=null", "max_steps=2", "log_interval=1", "checkpoint_every_minutes=0"]
CACHE_VARS = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
              "TORCHINDUCTOR_AUTOGRAD_CACHE", "DISABLE_COMPILE")


def context(sweep_dir: Path | None) -> TrialContext:
    trial = sweep_dir / "trials" / "t0" if sweep_dir else None
    return TrialContext(sweep_dir=sweep_dir, trial_id="t0" if sweep_dir else None, trial_dir=trial,
                        result_file=trial / "metrics.json" if trial else None, checkpoint_dir=None, attempt=0,
                        stage=0, job_id=None, in_sweep=sweep_dir is not None)


# --- the `compile` key ------------------------------------------------------------------------


@pytest.mark.parametrize("setting, device, env, expected", [
    ("auto", "cuda", {}, True),
    ("auto", "cpu", {}, False),
    (True, "cpu", {}, True),
    (False, "cuda", {}, False),
    (True, "cuda", {"DISABLE_COMPILE": "1"}, False),
    (True, "cuda", {"DISABLE_COMPILE": "0"}, True),
])
def test_compile_setting(setting: object, device: str, env: dict, expected: bool) -> None:
    assert compile_cache.wanted(setting, device, env) is expected


@pytest.mark.parametrize("setting", ["yes", 1, None])
def test_bad_compile_setting_names_the_key(setting: object) -> None:
    with pytest.raises(UserError) as err:
        compile_cache.wanted(setting, "cpu", {})
    assert err.value.key == "compile"


# --- where the cache goes ---------------------------------------------------------------------


def test_outside_a_sweep_torch_defaults_stay(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert compile_cache.configure(context(None), env) is None
    assert env == {}


def test_inside_a_sweep_the_cache_is_in_the_sweep_dir(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    assert compile_cache.configure(context(tmp_path), env) == tmp_path.resolve() / "compile_cache"
    assert env == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path.resolve() / "compile_cache"),
                   "TRITON_CACHE_DIR": str(tmp_path.resolve() / "compile_cache" / "triton")}


def test_the_users_own_cache_dir_wins(tmp_path: Path) -> None:
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}
    assert compile_cache.configure(context(tmp_path / "sweep"), env) == tmp_path / "mine"
    assert env == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "mine")}


# --- two array tasks of one sweep -------------------------------------------------------------


def run_trial(sweep_dir: Path, trial_id: str, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    trial = sweep_dir / "trials" / trial_id
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARS}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled", SWEEP_DIR=str(sweep_dir), SWEEP_TRIAL_ID=trial_id,
               SWEEP_TRIAL_DIR=str(trial), SWEEP_RESULT_FILE=str(trial / "metrics.json"),
               SWEEP_CHECKPOINT_DIR=str(trial / "checkpoints"), SWEEP_ATTEMPT="0", SWEEP_STAGE="0")
    return subprocess.run([sys.executable, "-m", "train", *SMALL, f"data_path={data_dir}", *extra], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def cache_report(stdout: str) -> dict[str, int]:
    found = re.search(r"FX graph cache (\d+) hits / (\d+) misses, AOTAutograd cache (\d+) hits / (\d+) misses",
                      stdout)
    assert found, stdout[-2000:]
    return dict(zip(("fx_hit", "fx_miss", "aot_hit", "aot_miss"), map(int, found.groups())))


def losses(trial_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (trial_dir / "progress.jsonl").read_text().splitlines()]
    return [row["train/loss"] for row in rows if "train/loss" in row]


@pytest.mark.slow
def test_second_task_of_a_sweep_loads_the_compiled_step(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    sudoku.build(sudoku.BuildConfig(output_dir=str(data_dir), subsample_size=40, num_aug=1, test_size=8, seed=0),
                 log=lambda _: None)
    sweep = tmp_path / "sweep"

    first = run_trial(sweep, "t0", data_dir, "compile=true")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"torch.compile cache: {sweep.resolve() / 'compile_cache'}" in first.stdout
    cold = cache_report(first.stdout)
    assert cold["fx_miss"] > 0 and cold["fx_hit"] == 0 and cold["aot_miss"] > 0
    cache = sweep / "compile_cache"
    assert list((cache / "fxgraph").rglob("*")) and list((cache / "aotautograd").rglob("*"))

    second = run_trial(sweep, "t1", data_dir, "compile=true")
    assert second.returncode == 0, second.stderr[-3000:]
    warm = cache_report(second.stdout)
    assert warm["fx_hit"] > 0 and warm["fx_miss"] == 0 and warm["aot_hit"] > 0 and warm["aot_miss"] == 0, warm
    # The cached code computes what the freshly compiled one did (same seed, same data).
    assert losses(sweep / "trials" / "t1") == pytest.approx(losses(sweep / "trials" / "t0"), rel=1e-6)


def test_bad_compile_value_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "train", *SMALL, "data_path=/nonexistent", "compile=sometimes",
                           f"run_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WANDB_MODE": "disabled"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "key 'compile'" in proc.stderr.strip().splitlines()[-1]
