"""The trainer is a plain Hydra app: hydra-submitit-launcher's Slurm launcher runs its multirun
sweeps on the real cluster, each job in its own run directory."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_train_multirun_through_hydra_submitit_launcher(tmp_path: Path, slurm_cleanup) -> None:
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "train.data.sudoku", "--output-dir", str(data), "--subsample-size", "64",
                    "--test-size", "16", "--max-blanks", "6", "--workers", "1"],
                   check=True, capture_output=True, cwd=REPO)
    sweep_dir = tmp_path / "multirun"
    done = subprocess.run(
        [sys.executable, "-m", "train", "-m", "hydra/launcher=submitit_slurm",
         "hydra.launcher.partition=main", "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", f"hydra.sweep.dir={sweep_dir}",
         "arch=hrm_tiny", f"data_path={data}", "global_batch_size=16", "epochs=1", "eval_interval=1", "max_steps=3",
         "log_interval=1", "checkpoint_every_minutes=0", "lr=1e-3,3e-3"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    # The launcher's job ids, for cleanup if anything below fails.
    slurm_cleanup.extend(p.name for p in (sweep_dir / ".submitit").glob("*") if p.name.isdigit())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    runs = sorted(p for p in sweep_dir.iterdir() if p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1"]
    lrs = set()
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed", metrics
        assert metrics["steps"] == 3 and metrics["train/lm_loss"] > 0
        lrs.add(float(yaml.safe_load((run / "config.yaml").read_text())["lr"]))
    assert lrs == {1e-3, 3e-3}
    # The jobs really went through Slurm: submitit's folders carry Slurm job ids that sacct knows.
    job_ids = sorted({p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir() if p.name[0].isdigit()})
    assert job_ids, "no Slurm job folder under .submitit/"
    # slurmdbd records the end a moment after the job ends: poll it briefly.
    deadline = time.monotonic() + 60
    while True:
        acct = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                              capture_output=True, text=True).stdout
        if acct.count("COMPLETED") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert acct.count("COMPLETED") >= 2, acct
