"""A tiny bayes sweep of Branin through `sweep launch` on the real Slurm cluster: every array
task asks the journal-backed study for its point when it starts and tells its value at the end."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from jobs import bayes
from jobs import manifest as mf
from launcher.cli import main

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

SPEC = """
name: branin_bayes_slurm
method: bayes
trials: 8
metric: value
goal: minimize
sampler: gp
# The GP sampler imports torch in the task: more than the test cluster's 256 MB default.
resources: {mem: 1500M}
options: {n_startup: 3, deterministic: true}
space:
  x1: {distribution: uniform, min: -5, max: 10, center: 2.5}
  x2: {distribution: uniform, min: 0, max: 15}
"""


@pytest.mark.timeout(600)
def test_bayes_sweep_on_slurm(tmp_path, slurm_cluster, slurm_cleanup):
    spec = tmp_path / "branin.yaml"
    spec.write_text(SPEC)
    sweep = tmp_path / "sweep"
    assert main(["launch", str(spec), "--executor", "slurm", "--cluster", "local", "--dir", str(sweep),
                 "--max-parallel", "4", "--command", f"{PY} {ROOT / 'bench/objectives/branin.py'}"]) == 0
    manifest = mf.read_manifest(sweep)
    slurm_cleanup.extend(s.job_id for s in manifest.submissions)
    assert manifest.settings.sampler == "gp" and manifest.settings.search_options["n_startup"] == 3

    deadline = time.monotonic() + 480
    paths = [mf.result_path(sweep, t.id) for t in manifest.trials]
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text()[-2000:] for p in sweep.glob("logs/*.out"))
            pytest.fail(f"bayes sweep did not finish; logs:\n{logs}")
        time.sleep(1)

    results = [json.loads(p.read_text()) for p in paths]
    assert [r["status"] for r in results] == ["completed"] * 8
    points = [(r["hyperparameters"]["x1"], r["hyperparameters"]["x2"]) for r in results]
    assert len(set(points)) == 8
    assert all(-5 <= x1 <= 10 and 0 <= x2 <= 15 for x1, x2 in points)
    assert (2.5, ) in [(p[0],) for p in points]          # the centre was the first point asked

    study = bayes.load_study(sweep, manifest.settings)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 8
    by_task = {t.user_attrs["sweep_trial_id"]: t for t in study.trials}
    for trial, result in zip(manifest.trials, results):
        told = by_task[trial.id]
        assert told.value == pytest.approx(result["results"]["value"])
        assert told.params == result["hyperparameters"]
        assert result["job"]["id"] and "_" in result["job"]["id"]       # it ran as an array task
