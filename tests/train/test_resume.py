"""Exact resume: a run interrupted (stop signal, or killed without one after a periodic checkpoint)
and started again gives the same per-step losses as one that was never interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# 100 puzzles / batch 16, 4 epochs evaluated every 2: two iterations of 12 steps, so interrupted
# runs also cross an iteration boundary with an evaluation in it. lr_min_ratio=1 (the reference's
# constant lr after warmup) lets a capped run (max_steps) share the uninterrupted run's schedule.
RUN = ["arch=hrm_tiny", "global_batch_size=16", "epochs=4", "eval_interval=2", "lr=3e-3", "lr_warmup_steps=5",
       "lr_min_ratio=1.0", "log_interval=1", "checkpoint_every_minutes=0"]
ENV = {**os.environ, "DISABLE_COMPILE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}


def train_cmd(sudoku_data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", *RUN, f"data_path={sudoku_data}", *extra]


def sweep_env(trial_dir: Path) -> dict[str, str]:
    return {**ENV, "SWEEP_DIR": str(trial_dir.parent.parent), "SWEEP_TRIAL_ID": trial_dir.name,
            "SWEEP_TRIAL_DIR": str(trial_dir), "SWEEP_RESULT_FILE": str(trial_dir / "metrics.json"),
            "SWEEP_CHECKPOINT_DIR": str(trial_dir / "checkpoints"), "SWEEP_ATTEMPT": "0", "SWEEP_STAGE": "0"}


def lines(run_dir: Path) -> list[dict]:
    path = run_dir / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def train_losses(run_dir: Path) -> dict[int, tuple[float, float]]:
    rows = [r for r in lines(run_dir) if "train/loss" in r]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), "every step logged exactly once"
    return {r["step"]: (r["train/loss"], r["train/lm_loss"]) for r in rows}


def wait_for_steps(proc: subprocess.Popen, run_dir: Path, n: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [r["step"] for r in lines_safe(run_dir) if "train/loss" in r]
        if len(done) >= n:
            return done[-1]
        assert proc.poll() is None, f"exited early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"no {n} steps within {timeout}s")


def lines_safe(run_dir: Path) -> list[dict]:
    try:
        return lines(run_dir)
    except json.JSONDecodeError:  # caught the writer mid-line
        return []


@pytest.fixture(scope="module")
def reference(sudoku_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    run_dir = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(train_cmd(sudoku_data, f"run_dir={run_dir}"), cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(train_losses(run_dir)) >= 20
    return run_dir


def assert_same_run(resumed: Path, reference: Path) -> None:
    got, want = train_losses(resumed), train_losses(reference)
    assert sorted(got) == sorted(want) == list(range(1, len(want) + 1))
    for step in want:
        assert got[step] == pytest.approx(want[step], abs=1e-6), f"step {step}: {got[step]} != {want[step]}"
    final = json.loads((resumed / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    for key in ("steps", "eval/accuracy", "eval/exact_accuracy", "eval/lm_loss", "train/lm_loss"):
        assert final[key] == pytest.approx(expected[key], abs=1e-6), key


@pytest.mark.parametrize("how", ["stop-signal", "kill-after-periodic-checkpoint"])
def test_interrupted_run_resumes_exactly(sudoku_data: Path, reference: Path, tmp_path: Path, how: str) -> None:
    trial = tmp_path / "sweep" / "trials" / "t0"  # inside a sweep: run dir = trial dir, own checkpoint dir
    env = sweep_env(trial)
    extra = [] if how == "stop-signal" else ["checkpoint_every_minutes=0.0005"]  # ~every step
    proc = subprocess.Popen(train_cmd(sudoku_data, *extra), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        if how == "stop-signal":
            # What Slurm's --signal=B:USR1@grace (via the task runner) does.
            wait_for_steps(proc, trial, 3)
            proc.send_signal(signal.SIGUSR1)
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-3000:]
            assert "stop signal" in out
            assert not (trial / "metrics.json").exists()  # not finished: the runner must not record it
        else:
            # Mila's preemption: no signal, the job is simply gone; only the periodic checkpoint survives.
            wait_for_steps(proc, trial, 8)
            proc.kill()
            proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (trial / "checkpoints" / "latest.pt").is_file()
    stopped_at = max(train_losses(trial))
    assert stopped_at < len(train_losses(reference)), "the run finished before it was interrupted; nothing was tested"

    resumed = subprocess.run(train_cmd(sudoku_data), cwd=REPO, env={**env, "SWEEP_ATTEMPT": "1"},
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    assert_same_run(trial, reference)
    assert "status" not in json.loads((trial / "metrics.json").read_text())  # completed (runtime omits it)


def test_capped_run_continues_to_the_end(sudoku_data: Path, reference: Path, tmp_path: Path) -> None:
    """Run K steps (max_steps=K ends it: final eval, metrics, checkpoint), then run again without the
    cap in the same run dir: it resumes at K and ends exactly like the uninterrupted run."""
    first = subprocess.run(train_cmd(sudoku_data, f"run_dir={tmp_path}", "max_steps=7"), cwd=REPO, env=ENV,
                           capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 7
    again = subprocess.run(train_cmd(sudoku_data, f"run_dir={tmp_path}"), cwd=REPO, env=ENV, capture_output=True,
                           text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stdout and "at step 7" in again.stdout
    assert_same_run(tmp_path, reference)
