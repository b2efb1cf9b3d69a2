"""One trial on two ranks of the real trainer, swept on the real cluster: `gpus_per_trial: 2` asks for
`--gres=gpu:2` (the test cluster's fake GPUs) and two CPUs, the runner starts `python -m train` under
torchrun (gloo on the CPU), a preemption warning sent to the task's batch shell only (as
`--signal=B:USR1@grace` is) reaches both ranks through the runner, the trainer checkpoints once and
the task requeues itself; the next run resumes on two ranks from that checkpoint, by the trainer's
own log line, and the trial reports once."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from jobs import manifest as mf
from launcher.cli import main
from tests.slurm.support import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# 100 puzzles / global batch 16: about 6 steps an epoch; 16 epochs, evaluated and checkpointed every 4
# (about 25 steps): a few seconds of training on two ranks, with room to warn the trial mid-way.
EPOCHS, EVAL_EVERY = 16, 4
SPEC = """name: torchrun2
command: [python, -m, train]
grid: {{lr: [3e-3]}}
fixed: {{arch: hrm_tiny, global_batch_size: 16, epochs: {epochs}, eval_interval: {every}, lr_warmup_steps: 2,
        log_interval: 1,
        checkpoint_every_minutes: 0, device: cpu, data_path: {data}}}
resources: {{gpus_per_trial: 2, mem: 3G, time: "00:10:00"}}
"""


def train_steps(trial_dir: Path) -> list[int]:
    path = trial_dir / "progress.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:   # caught the writer mid-line
            pass
    return [r["step"] for r in rows if "train/loss" in r]


def test_two_rank_trial_is_requeued_mid_way_resumes_on_two_ranks_and_reports_once(
        tmp_path, sudoku_data, slurm_cleanup, monkeypatch):
    monkeypatch.chdir(ROOT)   # the sweep's workdir: where `python -m train` is found
    for key, value in {"DISABLE_COMPILE": "1", "WANDB_MODE": "disabled"}.items():
        monkeypatch.setenv(key, value)   # sbatch passes the environment on to the task
    spec = tmp_path / "torchrun2.yaml"
    spec.write_text(SPEC.format(data=sudoku_data, epochs=EPOCHS, every=EVAL_EVERY))
    sweep = tmp_path / "sweep"
    started = time.monotonic()
    assert main(["launch", str(spec), "--executor", "slurm", "--cluster", "local", "--dir", str(sweep)]) == 0
    manifest = mf.read_manifest(sweep)
    job = manifest.submissions[0].job_id
    slurm_cleanup.append(job)
    (trial,) = manifest.trials
    tdir = mf.trial_dir(sweep, trial.id)

    # After the first checkpoint (an evaluation's), warn the batch shell only: torchrun's agent would
    # die of USR1 and leave its ranks behind; the runner sends it to each rank instead.
    wait_for(lambda: (tdir / "checkpoints" / "latest.pt").exists(), 150, "the first checkpoint", sweep=sweep)
    first = train_steps(tdir)[-1]
    subprocess.run(["scancel", "--signal=USR1", "--batch", f"{job}_0"], check=True, timeout=30)

    wait_for(lambda: mf.result_path(sweep, trial.id).exists(), 240, "the trial's result", sweep=sweep)
    elapsed = time.monotonic() - started
    result = json.loads(mf.result_path(sweep, trial.id).read_text())
    log = (tdir / "trial.log").read_text()
    assert result["status"] == "completed", (result, log[-3000:])
    steps = result["results"]["steps"]
    assert result["job"]["attempt"] == 1 and steps >= EPOCHS * 6
    assert log.count("=== attempt") == 2 and log.count("x2;") == 2, log[-3000:]   # two ranks, both times
    stopped = re.findall(r"^\[rank0\]:\S* ?stop signal: checkpointed step (\d+) ", log, re.MULTILINE)
    resumed = re.findall(r"^\[rank0\]:\S* ?resumed from (\S+) at step (\d+) \(attempt 1\)", log, re.MULTILINE)
    assert len(stopped) == 1 and len(resumed) == 1, log[-3000:]      # rank 0 alone saves and says so
    assert resumed[0] == (str(tdir / "checkpoints" / "latest.pt"), stopped[0])
    assert first <= int(stopped[0]) < steps, "the warning came after the trial had finished"
    assert "SignalException" not in log and "ChildFailedError" not in log   # the agent ended with its ranks
    # Every step logged once (the stopped attempt ended at its checkpoint), by rank 0 only.
    assert train_steps(tdir) == list(range(1, steps + 1))
    # Reported once: one result file, one final line from the runner, after one requeue of its own.
    assert [p.parent.name for p in sweep.glob("trials/*/result.json")] == [trial.id]
    runner = (sweep / "logs" / f"{job}_0.out").read_text()
    assert runner.count(f"trial {trial.id} completed") == 1 and runner.count(f"requeued {job}_0") == 1, runner
    assert "stopped by SIGUSR1" in runner
    # What Slurm gave the task: two fake GPUs and a CPU for each rank.
    tres = subprocess.run(["sacct", "-X", "-n", "-P", "-j", f"{job}_0", "-o", "AllocTRES"], capture_output=True,
                          text=True, timeout=30).stdout
    assert "gres/gpu=2" in tres and "cpu=2" in tres, tres
    print(f"\n2-rank trial: checkpointed at step {first}, warned, stopped at step {stopped[0]}, resumed at step "
          f"{resumed[0][1]}, {steps} steps, result {elapsed:.0f} s after launch; AllocTRES {tres.strip()}")
