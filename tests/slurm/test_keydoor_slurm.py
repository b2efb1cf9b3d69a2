"""The ConSpec key-door sweep file as written, on the real cluster: a handful of short trials
across the three environments, one requeued mid-run (`scontrol requeue`, as a preemption does),
then every trial completed exactly once, the requeued one resumed from its own checkpoint (by
the program's own record), and `sweep report` shows results per environment."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs import slurm
from launcher.cli import main
from tests.slurm.support import results, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "configs" / "sweeps" / "conspec_keydoor.yaml"
ENVIRONMENTS = ("single", "double", "triple")
EPISODES = 400


def progress_steps(trial_dir: Path) -> list[int]:
    path = trial_dir / "progress.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def task_id(trial_dir: Path) -> str | None:
    """`<array job>_<task>` of the trial, from the Slurm log the runner links into its directory."""
    for log in trial_dir.glob("slurm-*.out"):
        found = re.fullmatch(r"slurm-(\d+_\d+)\.out", log.name)
        if found:
            return found.group(1)
    return None


def test_keydoor_sweep_requeue_one_trial_and_report(tmp_path, slurm_cleanup, monkeypatch):
    monkeypatch.chdir(ROOT)   # the sweep's workdir: where `python -m examples.keydoor` is found
    sweep = tmp_path / "sweep"
    assert main(["launch", str(SPEC), "--executor", "slurm", "--cluster", "local", "--dir", str(sweep),
                 "--trials", "2", f"episodes={EPISODES}", "max_steps_per_episode=50"]) == 0
    # manifest.json as written (its format is the contract; the Python view of it may change).
    manifest = json.loads(mf.manifest_path(sweep).read_text())
    slurm_cleanup.extend(s["job_id"] for s in manifest["submissions"])
    trials = manifest["trials"]
    assert len(trials) == 6 and sorted(t["environment"] for t in trials) == sorted(ENVIRONMENTS * 2)

    # Requeue the trial with the most updates ahead (smallest batch), once it has logged progress.
    victim = min(trials, key=lambda t: (t["params"]["batch_size"], -t["params"]["hidden_dim"]))
    vdir = mf.trial_dir(sweep, victim["id"])
    wait_for(lambda: progress_steps(vdir) and task_id(vdir), 240, f"trial {victim['id']} to make progress", sweep=sweep)
    assert progress_steps(vdir)[-1] < EPISODES, "the trial to requeue finished before it could be requeued"
    slurm.scontrol_requeue([task_id(vdir)])

    wait_for(lambda: len(results(sweep)) == 6, 420, "6 results", sweep=sweep, poll=1.0)
    res = results(sweep)
    assert {r["status"] for r in res.values()} == {"completed"}, res
    for t in trials:
        r = res[t["id"]]
        log = (mf.trial_dir(sweep, t["id"]) / "trial.log").read_text()
        assert r["environment"] == t["environment"] and r["results"]["episodes"] == EPISODES
        assert 0 <= r["results"]["success_rate"] <= 1 and "mean_reward" in r["results"]
        if t["id"] != victim["id"]:
            assert log.count("=== attempt") == 1 and r["results"]["resumed_from_episode"] is None
    # The requeued trial stopped on the signal with a checkpoint and went on from there.
    r = res[victim["id"]]
    log = (vdir / "trial.log").read_text()
    stopped = re.search(r"stopped by signal \d+ at episode (\d+); checkpoint saved", log)
    resumed = re.search(r"resumed from \S+keydoor\.pt at episode (\d+)", log)
    assert stopped and resumed and log.count("=== attempt") == 2, log[-3000:]
    assert int(stopped.group(1)) == int(resumed.group(1)) == r["results"]["resumed_from_episode"] > 0
    assert r["job"]["attempt"] == 1
    # Every iteration logged once (the stopped attempt's lines past its checkpoint were dropped),
    # then the final evaluation's line.
    steps = progress_steps(vdir)
    assert steps == sorted(set(steps[:-1])) + [EPISODES] and steps[-2] == EPISODES
    print(f"\nrequeued {victim['id']} ({victim['environment']}, batch_size {victim['params']['batch_size']}): "
          f"stopped and resumed at episode {resumed.group(1)} of {EPISODES}; "
          + ", ".join(f"{res[t['id']]['environment']} {res[t['id']]['results']['success_rate']:.2f}" for t in trials))

    assert main(["report", str(sweep)]) == 0
    report = (sweep / "reports" / "report.md").read_text()
    assert "mean_reward" in report and "## Best per environment" in report
    for env in ENVIRONMENTS:
        assert f"| {env} " in report
    assert (sweep / "reports" / "figures" / "success_by_environment.png").exists()
    assert (sweep / "reports" / "figures" / "metric_by_environment.png").exists()
