"""`sweep sync`: which offline W&B runs of a sweep are uploaded (finished, not yet synced, oldest
first), and the one-line failure when the server cannot be reached. The runs are real offline
runs written by wandb through train.metrics.RunLogger; nothing is uploaded here (no internet)."""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from results import wandb_sync as ws

pytestmark = pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
ROOT = Path(__file__).resolve().parents[2]

# One process writes every run (wandb's service starts once): trial id, attempt start time.
WRITE_RUNS = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from train.metrics import RunLogger
sweep = sys.argv[2]
for spec in sys.argv[3:]:
    trial, started = spec.split(":")
    tdir = os.path.join(sweep, "trials", trial)
    log = RunLogger(tdir, config={"lr": 0.01}, enable_wandb=True, run_name=trial, run_id=trial)
    log.log(1, {"train/lm_loss": 1.0}, epoch=0, time_s=0.1)
    log.close()
    wandb_dir = os.path.join(tdir, "wandb")
    made = max((d for d in os.listdir(wandb_dir) if d.startswith("offline-run-")),
               key=lambda d: os.path.getmtime(os.path.join(wandb_dir, d)))
    os.rename(os.path.join(wandb_dir, made), os.path.join(wandb_dir, f"offline-run-{started}-{trial}"))
"""


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            os.utime(os.path.join(root, name), (when, when), follow_symlinks=False)
    os.utime(path, (when, when))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Trials: done (one run), requeued (two attempts, the later one listed first by name order of
    trial), running (no result), fresh (result, but its run was written just now), synced (marker)."""
    sweep = tmp_path_factory.mktemp("sync") / "lr"
    runs = ["b-requeued:20261201_100500", "b-requeued:20261201_090000", "a-done:20261201_100000",
            "c-running:20261201_080000", "d-fresh:20261201_070000", "e-synced:20261201_060000"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "SWEEP_NAME": "lr"}
    done = subprocess.run([sys.executable, "-c", WRITE_RUNS, str(ROOT), str(sweep), *runs], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for trial in ("a-done", "b-requeued", "d-fresh", "e-synced"):
        (sweep / "trials" / trial / "result.json").write_text(json.dumps({"status": "completed"}))
    for trial in ("a-done", "b-requeued", "c-running", "e-synced"):
        _age(sweep / "trials" / trial, 3600)
    [synced] = (sweep / "trials" / "e-synced" / "wandb").glob("offline-run-*")
    (synced / ws.MARKER).write_text("2026-12-01T00:00:00Z\n")
    return sweep


def test_selection_is_finished_unsynced_runs_oldest_first(sweep):
    sel = ws.select(str(sweep))
    assert [(r.trial_id, r.started) for r in sel.ready] == [
        ("b-requeued", "20261201_090000"), ("a-done", "20261201_100000"), ("b-requeued", "20261201_100500")]
    why = {r.trial_id: reason for r, reason in sel.skipped}
    assert set(why) == {"c-running", "d-fresh", "e-synced"}
    assert "no result yet" in why["c-running"] and "settle" in why["d-fresh"] and why["e-synced"] == "already synced"
    for run in sel.ready:
        assert list(Path(run.directory).glob("*.wandb")), run


def test_batches_keep_a_trials_attempts_together_and_in_order(sweep):
    ready = ws.select(str(sweep)).ready
    for parallel in (1, 2, 8):
        batches = ws.deal(ready, parallel)
        assert sorted(r.directory for b in batches for r in b) == sorted(r.directory for r in ready)
        home = {r.trial_id: i for i, b in enumerate(batches) for r in b}
        assert all(r.trial_id not in home or home[r.trial_id] == i for i, b in enumerate(batches) for r in b)
        for b in batches:
            assert [r.started for r in b] == sorted(r.started for r in b)
    assert len(ws.deal(ready, 2)) == 2


def _sweep_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_dry_run_lists_the_selection_and_uploads_nothing(sweep):
    done = _sweep_cli("sync", str(sweep), "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "would upload 3 run(s), oldest first:"
    assert [line.strip() for line in lines[1:4]] == [
        "trials/b-requeued/wandb/offline-run-20261201_090000-b-requeued",
        "trials/a-done/wandb/offline-run-20261201_100000-a-done",
        "trials/b-requeued/wandb/offline-run-20261201_100500-b-requeued"]
    assert lines[4] == "leaving 3 run(s):"
    assert len(list(sweep.glob(f"trials/*/wandb/*/{ws.MARKER}"))) == 1     # only e-synced's own marker


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]       # nothing listens there once the socket is closed


def test_unreachable_server_is_one_line_exit_2_before_any_upload(sweep):
    url = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    done = _sweep_cli("sync", str(sweep), "--parallel", "8", env={"WANDB_BASE_URL": url})
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sweep sync: error: cannot reach the W&B server " + url), done.stderr
    assert "login node" in err[0] and "Traceback" not in done.stderr
    assert time.monotonic() - started < 30
    assert len(list(sweep.glob(f"trials/*/wandb/*/{ws.MARKER}"))) == 1     # nothing was marked


def test_not_a_sweep_is_one_line(tmp_path):
    done = _sweep_cli("sync", str(tmp_path), "--dry-run")
    assert done.returncode == 2 and "no trials/" in done.stderr and "Traceback" not in done.stderr


def test_a_sweep_without_wandb_runs_says_how_to_get_them(tmp_path):
    (tmp_path / "trials" / "t1").mkdir(parents=True)
    done = _sweep_cli("sync", str(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("no offline W&B runs under") and "enable_wandb=true" in done.stdout
