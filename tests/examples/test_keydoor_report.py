"""`sweep report` on keydoor results: rewards and success rates per environment, the random
policy marked. Result files written here in the runner's schema; the Slurm test makes real ones."""
from __future__ import annotations

import json

import pytest

from results.report import build_report


def _result(i: int, env: str, success: float) -> dict:
    return {"schema": 1, "sweep": "conspec_keydoor", "trial": i, "trial_id": f"t{i:03d}", "stage": 0,
            "environment": env, "hyperparameters": {"learning_rate": 10 ** -(2 + i % 3), "batch_size": 32 << (i % 3)},
            "results": {"mean_reward": success / 2, "success_rate": success, "max_reward": 0.9,
                        "random_success_rate": {"single": 0.17, "double": 0.01, "triple": 0.0}[env]},
            "status": "completed", "error": None, "timestamp": "2026-12-04T00:00:00Z", "runtime_s": 12.0,
            "job": {"id": None, "node": "n", "attempt": 0, "gpu": None}}


def test_report_shows_reward_and_success_per_environment(tmp_path):
    pytest.importorskip("matplotlib")
    rates = {"single": (0.6, 0.8, 0.9), "double": (0.1, 0.2, 0.3), "triple": (0.0, 0.02, 0.05)}
    for i, (env, success) in enumerate((e, s) for e, values in rates.items() for s in values):
        trial = tmp_path / "trials" / f"t{i:03d}"
        trial.mkdir(parents=True)
        (trial / "result.json").write_text(json.dumps(_result(i, env, success)))
    report = build_report(str(tmp_path), metric="mean_reward")
    assert {"Metric per environment", "Success rate per environment"} <= set(report.figures)
    text = open(report.path).read()
    assert "## Best per environment" in text and "success_by_environment.png" in text
    for env in ("single", "double", "triple"):
        assert f"| {env} " in text
