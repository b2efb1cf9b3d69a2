"""The trainer's W&B path, really run: a one-trial sweep of `python -m train` on the local
executor with WANDB_MODE=offline, read back with wandb's own reader of offline run files
(`wandb leet inspect --json`, which prints each record of the .wandb transaction log)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")]
REPO = Path(__file__).resolve().parents[2]

SPEC = """\
# ConSpec-style: one trial per environment; the logging: block names the W&B project and entity.
name: wbcheck
command: python -m train
hyperparameters:
  lr: {{type: choice, values: [0.003]}}
environments: [{data}]
environment_key: data_path
training:
  arch: hrm_tiny
  device: cpu
  global_batch_size: 16
  epochs: 2
  eval_interval: 1
  lr_warmup_steps: 2
  log_interval: 1
  checkpoint_every_minutes: 0
  enable_wandb: true
search: {{method: random, n_trials: 1, seed: 0, optimization_metric: eval/exact_accuracy}}
logging: {{wandb_project: hrm-wandb-check, wandb_entity: slurmsweep-lab}}
"""


def read_run(path: Path) -> list[dict]:
    """Every record of a .wandb file, as wandb itself decodes it."""
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wandb")
    data = root / "sudoku-tiny"
    subprocess.run([sys.executable, "-m", "train.data.sudoku", "--output-dir", str(data), "--subsample-size", "64",
                    "--num-aug", "1", "--test-size", "16", "--seed", "0"], cwd=REPO, check=True,
                   capture_output=True, timeout=120)
    spec = root / "wbcheck.yaml"
    spec.write_text(SPEC.format(data=data))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SWEEP_"))}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", DISABLE_COMPILE="1", OMP_NUM_THREADS="1")
    sweep = root / "wbcheck-dir"   # not the sweep's name: the W&B group is the name
    done = subprocess.run([sys.executable, "-m", "launcher", "launch", str(spec), "--executor", "local",
                           "--dir", str(sweep), "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert set(json.loads(done.stdout)["trials"].values()) == {"completed"}, done.stdout
    return sweep


def test_offline_run_holds_config_group_name_tags_and_metrics(sweep: Path) -> None:
    [trial] = [p for p in (sweep / "trials").iterdir() if p.is_dir()]
    result = json.loads((trial / "result.json").read_text())
    [run_file] = list((trial / "wandb").glob(f"offline-run-*-{trial.name}/run-{trial.name}.wandb"))
    records = read_run(run_file)
    [run] = [r["run"] for r in records if r["type"] == "run"]
    assert run["run_id"] == trial.name and run["display_name"] == trial.name          # the trial id
    assert run["run_group"] == "wbcheck"                                              # the sweep
    assert run["tags"] == ["wbcheck", "sudoku-tiny"]                                  # sweep, environment
    assert (run["project"], run["entity"]) == ("hrm-wandb-check", "slurmsweep-lab")   # the logging: block
    config = run["config"]["update"]
    assert config["lr"] == 0.003 and config["data_path"] == result["environment"] == str(sweep.parent / "sudoku-tiny")
    assert config["arch"]["name"] == "hrm_tiny" and config["run_dir"] == str(trial)
    assert config["global_batch_size"] == 16 and config["enable_wandb"] is True

    # The logged metrics: every progress.jsonl line is a history row of W&B at the same step.
    history = {r["history"]["step"]["num"]: r["history"]["item"] for r in records if r["type"] == "history"}
    progress = [json.loads(line) for line in (trial / "progress.jsonl").read_text().splitlines()]
    evals = [p for p in progress if "eval/exact_accuracy" in p]
    assert len(progress) >= 4 and len(evals) == 2
    for line in progress:
        item = history.get(line["step"], {})
        for key, value in line.items():
            if key.startswith(("train/", "eval/")) and value is not None:
                assert item.get(key) == pytest.approx(value, rel=1e-6), (line["step"], key)
    assert evals[-1]["eval/exact_accuracy"] == pytest.approx(result["results"]["eval/exact_accuracy"])
    assert [r["exit"]["exit_code"] for r in records if r["type"] == "exit"] == [0]
