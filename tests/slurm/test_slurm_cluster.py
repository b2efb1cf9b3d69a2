"""jobs.slurm against the real single-node cluster (scripts/cluster.sh): arrays, throttles,
dependencies, requeue, preemption, GPUs, and the states sacct reports for each."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobs.errors import SlurmError
from jobs.slurm import (JobState, SacctRow, sacct, sbatch, scancel, scontrol_requeue,
                        scontrol_show_job, scontrol_update, squeue)

# Other suites share the cluster and may fill it: our jobs go to the highest PriorityTier partition,
# which the scheduler serves first (it preempts nothing: PreemptMode=OFF there).
FIRST = "--partition=unkillable"

# Each task appends "<task> <start> <end>" (epoch seconds) to a file: what really ran, and when.
RECORD = """#!/bin/sh
start=$(date +%s.%N)
sleep {sleep}
echo "${{SLURM_ARRAY_TASK_ID:-0}} $start $(date +%s.%N) ${{SLURM_RESTART_COUNT:-0}}" >> {out}
"""


def wait_for(job_id: str, count: int, timeout: float = 120, *, duplicates: bool = False
             ) -> list[SacctRow]:
    """Poll sacct (one call per poll) until `count` rows exist and every latest run is finished
    (earlier runs of a requeued job stay REQUEUED, which counts as active)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = sacct([job_id], duplicates=duplicates)
        latest = {str(r.job_id): r for r in rows}.values()
        if len(rows) >= count and all(r.state.is_finished() for r in latest):
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} not finished after {timeout}s: "
                        f"{[(str(r.job_id), r.state.name) for r in rows]}")
        time.sleep(0.5)


def wait_running(job_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(r.state is JobState.RUNNING for r in squeue([job_id])):
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} did not start within {timeout}s: {squeue([job_id])}")
        time.sleep(0.2)


def records(path: Path) -> list[tuple[int, float, float, int]]:
    return [(int(t), float(a), float(b), int(r))
            for t, a, b, r in (line.split() for line in path.read_text().splitlines())]


def max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


def test_throttled_array_runs_every_task_never_more_than_two(tmp_path, slurm_cleanup):
    out = tmp_path / "ran.txt"
    job = sbatch(RECORD.format(sleep=1, out=out), [FIRST, "--array=0-5%2", f"--output={tmp_path}/%A_%a.out"])
    slurm_cleanup.append(job)
    rows = wait_for(job, 6)
    assert sorted(t for r in rows for t in r.job_id.tasks()) == list(range(6))
    assert all(r.state is JobState.COMPLETED for r in rows)
    ran = records(out)
    assert sorted(t for t, *_ in ran) == list(range(6))
    assert max_overlap([(a, b) for _, a, b, _ in ran]) <= 2


def test_aftercorr_chains_two_arrays_task_by_task(tmp_path, slurm_cleanup):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    # Task 0 of the first array runs until task 3 of the second has run (at most 60 s): that can
    # only happen if each successor waits for its own predecessor, not the whole array.  Task 2
    # fails, so its successor must never run.
    wait_for_successor = (f'[ "$SLURM_ARRAY_TASK_ID" = 0 ] && for i in $(seq 300); do\n'
                          f'  grep -q "^3 " {second} 2>/dev/null && break; sleep 0.2; done\n')
    stage0 = sbatch(RECORD.format(sleep=f"0\n{wait_for_successor}", out=first)
                    + '[ "$SLURM_ARRAY_TASK_ID" = 2 ] && exit 1\nexit 0\n',
                    [FIRST, "--array=0-3", f"--output={tmp_path}/a_%a.out"])
    stage1 = sbatch(RECORD.format(sleep=0, out=second),
                    [FIRST, "--array=0-3", f"--dependency=aftercorr:{stage0}", f"--output={tmp_path}/b_%a.out"])
    slurm_cleanup += [stage0, stage1]
    states = {r.job_id.task: r.state for r in wait_for(stage0, 4)}
    assert states == {0: JobState.COMPLETED, 1: JobState.COMPLETED, 2: JobState.FAILED,
                      3: JobState.COMPLETED}
    deadline = time.monotonic() + 120
    while len(second.read_text().splitlines() if second.exists() else []) < 3:
        assert time.monotonic() < deadline, "second array did not run its 3 tasks"
        time.sleep(0.3)
    done0 = {t: b for t, _, b, _ in records(first)}
    started1 = {t: a for t, a, _, _ in records(second)}
    assert sorted(started1) == [0, 1, 3]
    assert all(started1[t] >= done0[t] for t in started1)
    assert started1[3] < done0[0]  # it followed its own predecessor, not the whole array
    pending = [r for r in squeue([stage1])]
    assert pending and all(r.state is JobState.PENDING and 2 in r.job_id.tasks() for r in pending)
    assert pending[0].reason == "DependencyNeverSatisfied"


def test_requeued_task_runs_again_and_sacct_shows_both_runs(tmp_path, slurm_cleanup):
    out = tmp_path / "ran.txt"
    job = sbatch(RECORD.format(sleep=2, out=out), [FIRST, "--array=0", "--requeue",
                                                   f"--output={tmp_path}/%A_%a.out"])
    slurm_cleanup.append(job)
    wait_running(job)
    scontrol_requeue([f"{job}_0"])
    # A requeued job waits AuthInfo cred_expire (15 s on this cluster) before it starts again.
    rows = wait_for(job, 2, duplicates=True)
    assert [r.state for r in rows] == [JobState.REQUEUED, JobState.COMPLETED]
    assert [r.restarts for r in rows] == [0, 1]
    assert [restart for *_, restart in records(out)] == [1]  # the first run never got to write
    assert scontrol_show_job(f"{job}_0")["Restarts"] == "1"
    (latest,) = sacct([job])
    assert latest.state is JobState.COMPLETED and latest.restarts == 1


def test_main_job_preempts_long_job_which_is_requeued(tmp_path, slurm_cleanup, slurm_cluster,
                                                     slurm_exclusive):
    # GPUs are the one thing OverSubscribe does not share: a main job needing one must evict.
    # Exclusive: it needs every GPU free, and it would evict other suites' `long` jobs.
    victim = sbatch("#!/bin/sh\nsleep 120\n", ["--partition=long", f"--gres=gpu:{slurm_cluster.gpus}",
                                              f"--output={tmp_path}/long.out"])
    slurm_cleanup.append(victim)
    wait_running(victim)
    winner = sbatch("#!/bin/sh\nexit 0\n", ["--partition=main", "--gres=gpu:1",
                                            f"--output={tmp_path}/main.out"])
    slurm_cleanup.append(winner)
    assert wait_for(winner, 1)[0].state is JobState.COMPLETED
    runs = sacct([victim], duplicates=True)
    assert runs[0].state is JobState.PREEMPTED and runs[0].end is not None
    # Back in the queue under the same id, with no signal sent (Mila's main/long behaviour).
    info = scontrol_show_job(victim)
    assert JobState.parse(info["JobState"]).is_active() and int(info["Restarts"]) >= 1
    assert "preemption" in (tmp_path / "long.out").read_text().lower()


def test_gpu_gres_schedules_and_sets_cuda_visible_devices(tmp_path, slurm_cleanup):
    out = tmp_path / "gpu.out"
    job = sbatch('#!/bin/sh\necho "$CUDA_VISIBLE_DEVICES"\n', [FIRST, "--gres=gpu:2", f"--output={out}"])
    slurm_cleanup.append(job)
    assert wait_for(job, 1)[0].state is JobState.COMPLETED
    assert len(out.read_text().strip().split(",")) == 2


def test_failed_cancelled_and_memory_killed_states(tmp_path, slurm_cleanup):
    opts = [FIRST, f"--output={tmp_path}/%j.out"]
    failed = sbatch("#!/bin/sh\nexit 3\n", opts)
    held = sbatch("#!/bin/sh\nsleep 60\n", [*opts, "--hold"])
    # Over --mem: without cgroups, jobacct_gather's OverMemoryKill kills it (FAILED, signal 9);
    # OUT_OF_MEMORY needs the cgroup OOM killer and is covered by the literal unit test data.
    hog = sbatch("#!/bin/sh\nexec python3 -c 'b = bytearray(400 << 20); import time; "
                 "time.sleep(10)'\n", [*opts, "--mem=50M"])
    slurm_cleanup += [failed, held, hog]
    (row,) = squeue([held])
    assert row.state is JobState.PENDING and "Held" in row.reason
    scontrol_update(held, JobName="renamed", TimeLimit="5")
    info = scontrol_show_job(held)
    assert info["JobName"] == "renamed" and info["TimeLimit"] == "00:05:00"
    scancel([held])
    scancel([held])  # cancelling a finished job is not an error
    assert wait_for(failed, 1)[0].state is JobState.FAILED
    assert wait_for(failed, 1)[0].return_code == 3
    assert wait_for(held, 1)[0].state is JobState.CANCELLED
    hog_row = wait_for(hog, 1)[0]
    assert hog_row.state is JobState.FAILED and hog_row.signal == 9
    assert "exceeded memory limit" in (tmp_path / f"{hog}.out").read_text()


def test_sbatch_mistake_names_command_and_fix(tmp_path):
    with pytest.raises(SlurmError) as info:
        sbatch("#!/bin/sh\n", ["--partition=no_such_partition", f"--output={tmp_path}/x.out"])
    assert "sbatch --parsable --partition=no_such_partition" in str(info.value)
    assert "sinfo" in str(info.value)


def test_time_limit_gives_timeout(tmp_path, slurm_cleanup):
    job = sbatch("#!/bin/sh\nsleep 300\n", [FIRST, "--time=5", f"--output={tmp_path}/%j.out"])
    slurm_cleanup.append(job)
    wait_running(job)
    # Time limits are whole minutes; moving the end time to now makes slurmctld enforce the
    # limit at once, the same path as a job that ran out of time.
    scontrol_update(job, EndTime="now")
    row = wait_for(job, 1)[0]
    assert row.state is JobState.TIMEOUT
    assert "time limit" in (tmp_path / f"{job}.out").read_text().lower()
