"""`python -m train` on CPU: schedule and checkpoint helpers, a tiny run that learns, the NaN guard,
starting from an earlier checkpoint, and config errors. Real subprocesses on a tiny generated Sudoku set."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from jobs.errors import UserError
from train import checkpoint, pretrain
from train.metrics import RunLogger, truncate_progress
from train.optim import cosine_lr
from train.pretrain import check_config

REPO = Path(__file__).resolve().parents[2]
TINY = ["arch=hrm_tiny", "global_batch_size=16", "lr=3e-3", "lr_warmup_steps=3", "log_interval=1",
        "checkpoint_every_minutes=0"]


def run_train(*overrides: str, env: dict[str, str] | None = None, timeout: float = 120
              ) -> subprocess.CompletedProcess:
    # One thread: fast for a tiny model on a shared 2-core machine, and bitwise repeatable.
    full_env = {**os.environ, "DISABLE_COMPILE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "train", *overrides], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def progress(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "progress.jsonl").read_text().splitlines()]


def sweep_env(trial_dir: Path) -> dict[str, str]:
    """What jobs.run sets for a trial."""
    return {"SWEEP_DIR": str(trial_dir.parent.parent), "SWEEP_TRIAL_ID": trial_dir.name,
            "SWEEP_TRIAL_DIR": str(trial_dir), "SWEEP_RESULT_FILE": str(trial_dir / "metrics.json"),
            "SWEEP_CHECKPOINT_DIR": str(trial_dir / "checkpoints"), "SWEEP_ATTEMPT": "0", "SWEEP_STAGE": "0"}


@pytest.fixture(scope="module")
def learned(sudoku_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("learned")
    proc = run_train(*TINY, f"data_path={sudoku_data}", "epochs=8", "eval_interval=4", f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


# --- pure helpers ---------------------------------------------------------------------------


def test_cosine_lr_warms_up_then_decays_to_min_ratio() -> None:
    kw = dict(base_lr=1.0, warmup_steps=10, total_steps=110, min_ratio=0.1)
    assert cosine_lr(0, **kw) == 0.0
    assert cosine_lr(5, **kw) == pytest.approx(0.5)
    assert cosine_lr(10, **kw) == pytest.approx(1.0)
    assert cosine_lr(60, **kw) == pytest.approx(0.55)          # half way: (1 + 0.1) / 2
    assert cosine_lr(110, **kw) == pytest.approx(0.1)
    assert cosine_lr(500, **kw) == pytest.approx(0.1)          # flat after the end
    assert cosine_lr(60, **{**kw, "min_ratio": 1.0}) == pytest.approx(1.0)  # the reference's constant lr


def test_checkpoint_find_and_roundtrip(tmp_path: Path) -> None:
    assert checkpoint.find(tmp_path) is None
    weights = {"w": torch.arange(3.0)}
    checkpoint.save_weights(tmp_path, step=7, model=weights, config={})
    checkpoint.save_weights(tmp_path, step=12, model=weights, config={})
    assert checkpoint.find(tmp_path) == tmp_path / "step_0000012.pt"
    checkpoint.save_latest(tmp_path, {"step": 3, "model": weights})
    assert checkpoint.find(tmp_path) == tmp_path / "latest.pt"
    assert checkpoint.find(tmp_path / "step_0000007.pt") == tmp_path / "step_0000007.pt"
    loaded = checkpoint.load(tmp_path / "latest.pt")
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], weights["w"])
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_checkpoint_load_rejects_foreign_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.pt"
    torch.save({"something": 1}, bad)
    with pytest.raises(Exception, match="not a checkpoint"):
        checkpoint.load(bad)


def test_truncate_progress_drops_later_and_broken_lines(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    path.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "tr')
    truncate_progress(path, 2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_wandb_on_without_the_package_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)   # `import wandb` raises ImportError, installed or not
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(UserError, match=r"pip install -e '\.\[wandb\]', or pass enable_wandb=false") as err:
        RunLogger(tmp_path, config={}, enable_wandb=True)
    assert err.value.key == "enable_wandb"


def test_a_stop_signal_taken_during_an_evaluation_checkpoints_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluation's periodic checkpoint (latest.pt and the step file) is the requeue's: written
    once, not twice in a row inside the preemption grace window."""
    saves: list[bool] = []
    monkeypatch.setattr(pretrain, "evaluate_and_report", lambda run, state: False)
    monkeypatch.setattr(pretrain, "save_checkpoint", lambda run, state, weights=False: saves.append(weights))
    run = SimpleNamespace(cfg={"checkpoint_every_eval": True}, total_iters=4, total_steps=100, world_size=1,
                          train_data=SimpleNamespace(state_dict=lambda: {"epoch": 1}), ckpt_dir=Path("ckpt"),
                          say=lambda text: None)
    state = pretrain.LoopState(step=10)
    assert pretrain.end_of_iteration(run, state, SimpleNamespace(requested=True)) == pretrain.Ending(None)
    assert saves == [True]
    saves.clear()
    assert pretrain.end_of_iteration(run, state, SimpleNamespace(requested=False)) is None
    assert saves == [True]


# --- runs -----------------------------------------------------------------------------------


def test_tiny_run_learns_and_reports(learned: Path) -> None:
    lines = progress(learned)
    train = [line for line in lines if "train/lm_loss" in line]
    evals = [line for line in lines if "eval/accuracy" in line]
    assert [line["step"] for line in train] == list(range(1, len(train) + 1))  # log_interval=1
    assert len(evals) == 2  # every 4 of 8 epochs
    first, last = train[0]["train/lm_loss"], sum(line["train/lm_loss"] for line in train[-5:]) / 5
    assert last < 0.85 * first, (first, last)
    # Copying the givens alone lifts cell accuracy far above chance (1/9).
    assert evals[-1]["eval/accuracy"] > 0.25, evals

    metrics = json.loads((learned / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["error"] is None
    assert metrics["steps"] == train[-1]["step"]
    assert metrics["accuracy"] == metrics["eval/accuracy"] == evals[-1]["eval/accuracy"]
    assert metrics["best_exact_accuracy"] >= metrics["exact_accuracy"]
    assert {"train/lm_loss", "eval/exact_accuracy", "eval/lm_loss", "lm_loss"} <= set(metrics)
    ckpts = learned / "checkpoints"
    assert (ckpts / "latest.pt").is_file()
    assert len(list(ckpts.glob("step_*.pt"))) == 2  # the first eval (checkpoint_every_eval) + the final one
    assert "data_path" in (learned / "config.yaml").read_text()


def test_nan_guard_stops_with_diverged(sudoku_data: Path, tmp_path: Path) -> None:
    trial = tmp_path / "sweep" / "trials" / "t0"
    proc = run_train(*TINY, f"data_path={sudoku_data}", "epochs=4", "eval_interval=null", "lr=1e30", "lr_warmup_steps=0",
                     env=sweep_env(trial), timeout=60)
    assert proc.returncode == 3, proc.stderr[-3000:]
    result = json.loads((trial / "metrics.json").read_text())
    assert result["status"] == "diverged"
    assert "non-finite loss at step" in result["error"]
    assert result["steps"] <= 5  # stopped at once, not at the end of the run (25 steps)
    assert not (trial / "checkpoints" / "latest.pt").exists()  # nothing to resume into


def test_checkpoint_path_starts_from_earlier_weights(sudoku_data: Path, learned: Path, tmp_path: Path) -> None:
    fresh, warm = tmp_path / "fresh", tmp_path / "warm"
    common = [*TINY, f"data_path={sudoku_data}", "epochs=4", "eval_interval=null", "max_steps=2",
              "arch.halt_max_steps=2"]
    assert run_train(*common, f"run_dir={fresh}").returncode == 0
    proc = run_train(*common, f"run_dir={warm}", f"checkpoint_path={learned / 'checkpoints'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "started from" in proc.stdout
    fresh_first, warm_first = progress(fresh)[0], progress(warm)[0]
    # A new run: step 1 with a fresh optimizer (the warmup lr), but the trained weights' loss.
    assert warm_first["step"] == 1 and warm_first["train/lr"] == fresh_first["train/lr"]
    assert warm_first["train/lm_loss"] < 0.9 * fresh_first["train/lm_loss"]


@pytest.mark.parametrize("overrides, key", [
    (["checkpoint_path=/nonexistent/ckpt"], "checkpoint_path"),
    (["data_path=/nonexistent/data"], "data_path"),
    (["optimizer=adamw"], "optimizer"),
])
def test_config_errors_are_one_line_exit_2(sudoku_data: Path, tmp_path: Path, overrides: list[str], key: str) -> None:
    data = [] if any(o.startswith("data_path=") for o in overrides) else [f"data_path={sudoku_data}"]
    proc = run_train(*TINY, *data, "epochs=4", "eval_interval=null", f"run_dir={tmp_path}", *overrides, timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert key in proc.stderr.strip().splitlines()[-1]


def test_an_unknown_optimizer_stops_before_the_run_dir_is_written(sudoku_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(*TINY, f"data_path={sudoku_data}", "epochs=4", "eval_interval=null", f"run_dir={run_dir}",
                     "optimizer=adamw", timeout=60)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "optimizer" in proc.stderr.strip().splitlines()[-1]
    assert not run_dir.exists() or not any(run_dir.iterdir())   # no config.yaml (Hydra may make the directory)


@pytest.mark.parametrize("change, key", [
    ({"eval_interval": 3}, "eval_interval"),     # must divide epochs
    ({"epochs": 0}, "epochs"),
    ({"max_steps": -1}, "max_steps"),
    ({"lr_min_ratio": 2.0}, "lr_min_ratio"),
    ({"optimizer": "adamw"}, "optimizer"),
])
def test_check_config_names_the_key(change: dict, key: str) -> None:
    cfg = {"global_batch_size": 16, "epochs": 8, "eval_interval": 4, "max_steps": None, "lr_min_ratio": 1.0,
           "optimizer": "adam_atan2"}
    check_config(cfg)
    with pytest.raises(UserError) as err:
        check_config({**cfg, **change})
    assert err.value.key == key


def test_a_dataset_the_profile_staged_on_the_node_is_read_from_there(tmp_path, monkeypatch, capsys):
    from train.pretrain import staged_data_path

    (tmp_path / "scratch" / "sudoku-x" / "train").mkdir(parents=True)
    (tmp_path / "node" / "sudoku-x" / "train").mkdir(parents=True)
    original = str(tmp_path / "scratch" / "sudoku-x")
    monkeypatch.delenv("SWEEP_DATA_ROOT", raising=False)
    assert staged_data_path(original, True) == original
    monkeypatch.setenv("SWEEP_DATA_ROOT", str(tmp_path / "node"))      # what the mila profile exports
    assert staged_data_path(original, True) == str(tmp_path / "node" / "sudoku-x")
    assert "staged copy" in capsys.readouterr().out
    assert staged_data_path(str(tmp_path / "scratch" / "other"), True) == str(tmp_path / "scratch" / "other")


def test_the_sweeps_own_dataset_is_copied_to_the_node_once(tmp_path, monkeypatch):
    # Whatever data_path the trials use (not one dataset named in the profile): the first process copies
    # it into SWEEP_DATA_ROOT, the next ones read that copy; what is not a dataset is read where it is.
    from train.pretrain import staged_data_path

    source = tmp_path / "scratch" / "my-data"
    (source / "train").mkdir(parents=True)
    (source / "train" / "inputs.npy").write_bytes(b"x" * 1000)
    monkeypatch.setenv("SWEEP_DATA_ROOT", str(tmp_path / "node"))
    staged = tmp_path / "node" / "my-data"
    assert staged_data_path(str(source), False) == str(staged)
    assert (staged / "train" / "inputs.npy").read_bytes() == b"x" * 1000
    (source / "train" / "inputs.npy").write_bytes(b"changed")
    assert staged_data_path(str(source), False) == str(staged)            # copied once, then reused
    assert (staged / "train" / "inputs.npy").read_bytes() == b"x" * 1000
    assert not [p for p in (tmp_path / "node").iterdir() if p.name.endswith(".tmp")]
    assert staged_data_path(str(tmp_path / "nowhere"), False) == str(tmp_path / "nowhere")
