"""One trial in two processes on the CPU (gloo), started as the HRM guides start it:
`torchrun --standalone --nproc_per_node=2 -m train ...`.

Two ranks on a global batch of 16 (8 rows each) must train like one process on the same 16 rows:
the dense gradients are summed over the ranks, and the sparse puzzle embedding's sign-SGD must see
every rank's rows (Sudoku has one puzzle identifier, so every row of the global batch updates the
same table row: a rank that used only its own 8 rows would get other signs). Rank 0 alone writes
progress, checkpoints and metrics; a stop signal that reaches both ranks checkpoints once, both
exit 0, and the next attempt on two ranks resumes exactly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
# 100 puzzles / batch 16, 2 epochs evaluated every epoch: 12 steps in two iterations of 6.
RUN = ["arch=hrm_tiny", "global_batch_size=16", "epochs=2", "eval_interval=1", "lr=3e-3", "lr_warmup_steps=2",
       "log_interval=1", "checkpoint_every_minutes=0", "puzzle_emb_lr=1e-2",
       # ACT exploration draws its noise per rank (seed + rank, as the HRM reference does), so with
       # it on two ranks halt other rows than one process would: off here, to compare step by step.
       "arch.halt_exploration_prob=0",
       # gloo on the CPU wherever the suite runs: on a one-GPU machine NCCL would refuse two ranks.
       "device=cpu"]
ENV = {**os.environ, "DISABLE_COMPILE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
STEPS = 12


def command(ranks: int, sudoku_data: Path, *extra: str) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"] if ranks > 1 else []
    return [sys.executable, *launcher, "-m", "train", *RUN, f"data_path={sudoku_data}", *extra]


def sweep_env(trial_dir: Path, attempt: int = 0) -> dict[str, str]:
    return {**ENV, "SWEEP_DIR": str(trial_dir.parent.parent), "SWEEP_TRIAL_ID": trial_dir.name,
            "SWEEP_TRIAL_DIR": str(trial_dir), "SWEEP_RESULT_FILE": str(trial_dir / "metrics.json"),
            "SWEEP_CHECKPOINT_DIR": str(trial_dir / "checkpoints"), "SWEEP_ATTEMPT": str(attempt),
            "SWEEP_STAGE": "0"}


def progress(run_dir: Path) -> list[dict]:
    path = run_dir / "progress.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    except json.JSONDecodeError:  # caught the writer mid-line
        return []


def train_rows(run_dir: Path) -> dict[int, dict]:
    rows = [r for r in progress(run_dir) if "train/loss" in r]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)), "every step logged once, by rank 0 only"
    return {r["step"]: r for r in rows}


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def one_process(sudoku_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("one")
    run(command(1, sudoku_data, f"run_dir={run_dir}"), ENV)
    return run_dir


@pytest.fixture(scope="module")
def two_ranks(sudoku_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("two")
    proc = run(command(2, sudoku_data, f"run_dir={run_dir}"), ENV)
    assert "x2;" in proc.stdout  # "... params on cpu x2; ...": really two ranks
    return run_dir


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)["model"]


def test_two_ranks_train_like_one_process_on_the_same_global_batch(one_process: Path, two_ranks: Path) -> None:
    one, two = train_rows(one_process), train_rows(two_ranks)
    assert sorted(one) == sorted(two) == list(range(1, STEPS + 1))
    for step in one:
        for key in ("train/loss", "train/lm_loss", "train/q_halt_loss", "train/accuracy", "train/steps"):
            assert two[step][key] == pytest.approx(one[step][key], rel=1e-5, abs=1e-6), (step, key)
    evals = [[r for r in progress(d) if "eval/lm_loss" in r] for d in (one_process, two_ranks)]
    assert [r["step"] for r in evals[0]] == [r["step"] for r in evals[1]] == [6, 12]
    for a, b in zip(*evals):  # the test split, divided over the ranks and summed back
        assert b["eval/lm_loss"] == pytest.approx(a["eval/lm_loss"], rel=1e-5)
        assert b["eval/accuracy"] == pytest.approx(a["eval/accuracy"], rel=1e-5)

    w1, w2 = weights(one_process), weights(two_ranks)
    assert w1.keys() == w2.keys()
    table = "model.inner.puzzle_emb.weights"
    for name in w1:
        assert torch.allclose(w2[name], w1[name], rtol=0, atol=2e-6), (name, (w2[name] - w1[name]).abs().max())
    # Sign-SGD steps of 1e-2 moved the shared row between the two evaluations' checkpoints: equal
    # tables are the cross-rank update at work, not an untouched buffer.
    halfway = torch.load(one_process / "checkpoints" / "step_0000006.pt", map_location="cpu",
                         weights_only=False)["model"][table]
    assert (w1[table] - halfway).abs().max() > 0.02

    one_metrics = json.loads((one_process / "metrics.json").read_text())
    two_metrics = json.loads((two_ranks / "metrics.json").read_text())
    assert two_metrics["status"] == "completed" and two_metrics["steps"] == one_metrics["steps"] == STEPS
    assert two_metrics["eval/exact_accuracy"] == one_metrics["eval/exact_accuracy"]
    latest = torch.load(two_ranks / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
    assert len(latest["ranks"]) == 2  # one file, every rank's RNG, data position and carry in it


def worker_pids(launcher_pid: int) -> list[int]:
    """The processes torchrun started (its children)."""
    pids = []
    for task in Path(f"/proc/{launcher_pid}/task").iterdir():
        pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


def test_stop_signal_on_every_rank_checkpoints_once_and_two_ranks_resume_exactly(
        sudoku_data: Path, two_ranks: Path, tmp_path: Path) -> None:
    trial = tmp_path / "sweep" / "trials" / "t0"
    proc = subprocess.Popen(command(2, sudoku_data), cwd=REPO, env=sweep_env(trial), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len([r for r in progress(trial) if "train/loss" in r]) < 3:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no 3 steps within 120 s"
            time.sleep(0.02)
        workers = worker_pids(proc.pid)
        assert len(workers) == 2, workers
        for pid in workers:  # what the task runner does: the warning reaches every rank
            os.kill(pid, signal.SIGUSR1)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert out.count("stop signal: checkpointed") == 1, out
    assert not (trial / "metrics.json").exists()  # not finished: nothing for the runner to record
    saved = torch.load(trial / "checkpoints" / "latest.pt", map_location="cpu", weights_only=False)
    stopped_at = saved["step"]
    assert len(saved["ranks"]) == 2 and stopped_at < STEPS
    assert [r["data"]["batch"] for r in saved["ranks"]] == [saved["ranks"][0]["data"]["batch"]] * 2

    resumed = run(command(2, sudoku_data), sweep_env(trial, attempt=1))
    assert f"resumed from {trial / 'checkpoints' / 'latest.pt'} at step {stopped_at}" in resumed.stdout
    got, want = train_rows(trial), train_rows(two_ranks)
    assert sorted(got) == sorted(want)
    for step in want:
        assert got[step]["train/loss"] == pytest.approx(want[step]["train/loss"], abs=1e-6), step
    final = json.loads((trial / "metrics.json").read_text())
    assert final["steps"] == STEPS and "status" not in final  # completed (the runtime omits it)
    assert final["eval/lm_loss"] == pytest.approx(json.loads((two_ranks / "metrics.json").read_text())["eval/lm_loss"],
                                                  abs=1e-6)


# Runs the trainer as torchrun does; each rank writes its thread count before it joins the process
# group and after it leaves it to threads.<rank> in the directory given first.
THREADS_PROBE = """
import os, sys
from pathlib import Path
from train import distributed, pretrain

out = Path(sys.argv.pop(1)) / f"threads.{os.environ['RANK']}"
join, leave = distributed.setup, distributed.teardown

def threads():
    return len(os.listdir("/proc/self/task"))

def setup(device):
    out.write_text(f"{threads()}")
    return join(device)

def teardown():
    leave()
    out.write_text(f"{out.read_text()} {threads()}")

distributed.setup, distributed.teardown = setup, teardown
pretrain.main()
"""


def test_every_rank_leaves_its_process_group_whole_before_exiting(sudoku_data: Path, tmp_path: Path) -> None:
    """gloo's worker threads are joined when the trainer leaves the group. Left running into
    interpreter shutdown (torch._dynamo imported after the group was made kept it alive; train.distributed.setup now imports it first), one of them
    freed the last collective's tensors without the interpreter and aborted its rank: "terminate
    called without an active exception", torchrun then failed a finished run (about 1 run in 10 on
    two loaded cores)."""
    probe = tmp_path / "probe.py"
    probe.write_text(THREADS_PROBE)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run([sys.executable, *launcher, str(probe), str(tmp_path), *RUN, f"data_path={sudoku_data}", "max_steps=2",
         f"run_dir={tmp_path / 'run'}"], {**ENV, "PYTHONPATH": str(REPO)})
    counts = {rank: (tmp_path / f"threads.{rank}").read_text().split() for rank in (0, 1)}
    for rank, (before, after) in counts.items():   # KeyError/ValueError: a rank never left
        assert after == before, f"rank {rank}: {before} threads before joining, {after} after leaving"
