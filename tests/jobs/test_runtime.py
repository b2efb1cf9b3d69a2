"""jobs.runtime: what a swept program calls, harmless outside a sweep."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import runtime

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_step_reported_yet(monkeypatch):
    """runtime remembers the last step reported in this process: another test's report must not leak in."""
    monkeypatch.setattr(runtime, "_last_step", None)


def test_runtime_report_outside_a_sweep_is_free(tmp_path):
    code = ("import sys; from jobs import runtime; assert runtime.report(3, 0.5) is False; "
            "assert 'optuna' not in sys.modules; print('ok')")
    env = {"PATH": "/usr/bin:/bin", "SWEEP_TRIAL_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


def test_write_metrics_records_the_step_it_was_pruned_at(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    monkeypatch.setenv("SWEEP_RESULT_FILE", str(target))
    monkeypatch.setenv("SWEEP_TRIAL_DIR", str(tmp_path))      # no optuna.json: report records only
    assert runtime.report(7, 0.1) is False
    runtime.write_metrics({"acc": 0.1}, status="pruned")
    assert json.loads(target.read_text()) == {"acc": 0.1, "last_step": 7, "pruned_at_step": 7, "status": "pruned"}


def test_runtime_outside_a_sweep_is_harmless(tmp_path, monkeypatch):
    for k in list(os.environ):
        if k.startswith("SWEEP_"):
            monkeypatch.delenv(k)
    ctx = runtime.context()
    assert not ctx.in_sweep and ctx.result_file is None
    runtime.write_metrics({"a": 1})                     # no-op, no error
    target = tmp_path / "m.json"
    monkeypatch.setenv("SWEEP_RESULT_FILE", str(target))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    runtime.write_metrics({"a": 1, "status": "ignored"}, status="pruned")
    assert json.loads(target.read_text()) == {"a": 1, "status": "pruned"}
    assert runtime.context().job_id == "12_3"
    with pytest.raises(ValueError):
        runtime.write_metrics({}, status="failed")


def test_under_torchrun_only_rank_zero_writes_the_result(tmp_path, monkeypatch):
    target = tmp_path / "m.json"
    monkeypatch.setenv("SWEEP_RESULT_FILE", str(target))
    monkeypatch.setenv("RANK", "1")
    runtime.write_metrics({"a": 1})
    assert not target.exists()
    monkeypatch.setenv("RANK", "0")
    runtime.write_metrics({"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}


def test_the_metric_to_report_is_the_sweeps_else_the_programs_own(monkeypatch):
    monkeypatch.delenv("SWEEP_METRIC", raising=False)
    assert runtime.metric("mean_reward") == "mean_reward"
    monkeypatch.setenv("SWEEP_METRIC", "")                  # a sweep that names none
    assert runtime.metric("mean_reward") == "mean_reward"
    monkeypatch.setenv("SWEEP_METRIC", "success_rate")
    assert runtime.metric("mean_reward") == "success_rate"
