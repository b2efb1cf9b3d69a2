"""Sweeps bigger than the queue (issue 18), on the real cluster: finishing tasks top the queue up with
nobody calling resume, never past the limit; packed tasks that are requeued mid-pack lose and repeat
nothing; a killed launcher plus a concurrent resume submit nothing twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs import slurm
from launcher.cli import main
from tests.slurm.support import COUNTING_PROGRAM, job_ids, results, starts, wait_for

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]


def profile(max_queued: int, **extra: object) -> str:
    text = ("name: capped\npartition: main\ncpus_per_task: 1\nmem: 300M\ntime: '00:10:00'\ngrace_s: 30\n"
            f"max_array_size: 1000\nmax_queued_jobs: {max_queued}\n")
    return text + "".join(f"{k}: {v}\n" for k, v in extra.items())


def prepare(tmp_path: Path, spec: str, prof: str, *extra: str) -> tuple[Path, list[str]]:
    (tmp_path / "prog.py").write_text(COUNTING_PROGRAM)
    (tmp_path / "spec.yaml").write_text(spec)
    (tmp_path / "profile.yaml").write_text(prof)
    argv = ["launch", str(tmp_path / "spec.yaml"), "--executor", "slurm", "--cluster", str(tmp_path / "profile.yaml"),
            "--dir", str(tmp_path / "sweep"), "--command", f"{PY} {tmp_path / 'prog.py'}", *extra]
    return tmp_path / "sweep", argv


class QueueWatch(threading.Thread):
    """The most tasks of this sweep Slurm held queued or running at once, sampled every 0.3 s."""

    def __init__(self, sweep: Path, cleanup: list[str]) -> None:
        super().__init__(daemon=True)
        self.sweep, self.cleanup, self.peak, self.done = sweep, cleanup, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                ids = set(job_ids(self.sweep))
                self.cleanup.extend(i for i in ids if i not in self.cleanup)
                n = sum(1 for j in slurm.queued_tasks(slurm.current_user()) if j.job in ids)
                self.peak = max(self.peak, n)
            except Exception:  # noqa: BLE001 - a manifest mid-write, a busy controller: sample again
                pass
            time.sleep(0.3)


@pytest.mark.timeout(600)
@pytest.mark.exclusive    # the limit counts every job of the user: other tests' jobs would take its room
def test_300_trials_under_a_40_job_limit_finish_with_nobody_resuming(tmp_path, slurm_cleanup, slurm_exclusive):
    sweep, argv = prepare(tmp_path, "name: topup-300\ngrid: {x: " + json.dumps(list(range(300))) + "}\n"
                          "fixed: {steps: 1}\n", profile(40))
    watch = QueueWatch(sweep, slurm_cleanup)
    watch.start()
    try:
        assert main(argv) == 0
        # 40, less any leftover job of the user still listed (the limit counts every one)
        room = 300 - len(mf.expand_ranges(mf.read_manifest(sweep).unsubmitted))
        assert 0 < room <= 40 and mf.read_manifest(sweep).unsubmitted == f"{room}-299"
        assert (sweep / mf.WAITING_MARKER).exists()
        wait_for(lambda: len(results(sweep)) == 300, 480, "300 results from the sweep's own top-ups")
    finally:
        watch.done.set()
        watch.join()
    runs = starts(tmp_path)
    assert len(runs) == 300 and set(runs.values()) == {1}, Counter(runs.values())
    assert 0 < watch.peak <= 40, watch.peak
    m = mf.read_manifest(sweep)
    assert m.unsubmitted == "" and not (sweep / mf.WAITING_MARKER).exists()
    assert sorted(i for s in m.submissions for i in s.index_list()) == list(range(300))    # each in one array
    print(f"300 trials, max_queued_jobs 40: {len(m.submissions)} arrays, at most {watch.peak} queued at once")


def test_a_packed_task_requeued_mid_pack_loses_and_repeats_nothing(tmp_path, slurm_cleanup):
    sweep, argv = prepare(tmp_path, "name: packed\ngrid: {x: [0, 1, 2, 3, 4, 5, 6, 7]}\nfixed: {steps: 15}\n",
                          profile(100), "--pack", "4")
    assert main(argv) == 0
    [sub] = mf.read_manifest(sweep).submissions
    slurm_cleanup.append(sub.job_id)
    assert sub.pack == 4 and sub.array.split("%")[0] == "0-1"            # 8 trials in 2 tasks
    by_index = {t.index: t.id for t in mf.read_manifest(sweep).trials}
    # Task 0 runs trials 0-3 one after another: requeue it while its third trial runs.
    wait_for(lambda: (mf.trial_dir(sweep, by_index[2]) / "started.0").exists(), 60, "the third trial of task 0")
    slurm.scontrol_requeue([f"{sub.job_id}_0"])
    wait_for(lambda: len(results(sweep)) == 8, 120, "8 results")
    res = results(sweep)
    assert {r["status"] for r in res.values()} == {"completed"}
    runs = starts(tmp_path)
    # Trials 0 and 1 had finished: never started again. Trial 2 started again and went on from its
    # checkpoint; 3 started once, after the requeue. Task 1's trials never noticed.
    assert [runs[by_index[i]] for i in range(8)] == [1, 1, 2, 1, 1, 1, 1, 1]
    assert res[by_index[2]]["results"]["resumed_from"] > 0 and res[by_index[2]]["job"]["attempt"] == 1
    # Trial 3 first started after the requeue: its first attempt, whatever its task's restarts.
    assert [res[by_index[i]]["job"]["attempt"] for i in (0, 1, 3, 4)] == [0, 0, 0, 0]
    assert all(res[by_index[i]]["job"]["id"] == f"{sub.job_id}_{i // 4}" for i in range(8))


@pytest.mark.timeout(600)
@pytest.mark.exclusive    # the limit counts every job of the user: other tests' jobs would take its room
def test_a_killed_launcher_and_a_concurrent_resume_submit_nothing_twice(tmp_path, slurm_cleanup, capsys,
                                                                          slurm_exclusive):
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    # The jobs must not inherit the shim (their own top-ups would be killed too): it leaves PATH first.
    (shim / "sbatch").write_text(f"#!/bin/bash\nexport PATH={os.environ['PATH']}\n{real} \"$@\"; rc=$?\n"
                                 "kill -9 $PPID\nexit $rc\n")
    (shim / "sbatch").chmod(0o755)
    sweep, argv = prepare(tmp_path, "name: killed-topup\ngrid: {x: " + json.dumps(list(range(60))) + "}\n"
                          "fixed: {steps: 2}\n", profile(15))
    watch = QueueWatch(sweep, slurm_cleanup)
    watch.start()
    try:
        env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
        done = subprocess.run([PY, "-m", "launcher", *argv], env=env, capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == -signal.SIGKILL
        assert [s.state for s in mf.read_manifest(sweep).submissions] == ["pending"]
        # While the first array's tasks top the queue up, the user resumes too.
        assert main(["resume", str(sweep)]) == 0
        wait_for(lambda: len(results(sweep)) == 60, 420, "60 results")
    finally:
        watch.done.set()
        watch.join()
    runs = starts(tmp_path)
    assert len(runs) == 60 and set(runs.values()) == {1}, Counter(runs.values())
    assert watch.peak <= 15, watch.peak
    assert main(["status", str(sweep)]) == 0        # settles anything a task recorded and was killed after
    m = mf.read_manifest(sweep)
    assert {s.state for s in m.submissions} == {"submitted"}
    assert sorted(i for s in m.submissions for i in s.index_list()) == list(range(60))


SIDE_BY_SIDE = r"""
import os, sys, time
from jobs import runtime
start = time.time()
time.sleep(3)
runtime.write_metrics({"gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "start": start, "end": time.time()})
"""


def test_a_packed_task_on_four_gpus_runs_four_trials_side_by_side_one_gpu_each(tmp_path, slurm_cleanup):
    (tmp_path / "side.py").write_text(SIDE_BY_SIDE)
    sweep, argv = prepare(tmp_path, "name: side\ngrid: {x: [0, 1, 2, 3]}\n", profile(100, gres="gpu:4"), "--pack", "4")
    argv[argv.index("--command") + 1] = f"{PY} {tmp_path / 'side.py'}"
    assert main(argv) == 0
    [sub] = mf.read_manifest(sweep).submissions
    slurm_cleanup.append(sub.job_id)
    assert sub.array.split("%")[0] == "0"                                   # one task holds all four
    wait_for(lambda: len(results(sweep)) == 4, 120, "4 results")
    res = [r["results"] for r in results(sweep).values()]
    assert sorted(r["gpus"] for r in res) == ["0", "1", "2", "3"]          # Slurm's four, one to each trial
    assert max(r["start"] for r in res) < min(r["end"] for r in res)       # all four ran at once



def test_a_packed_task_of_two_cpus_runs_two_one_cpu_trials_side_by_side(tmp_path, slurm_cleanup):
    (tmp_path / "side.py").write_text(SIDE_BY_SIDE.replace('"gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")',
                                                           '"threads": os.environ.get("OMP_NUM_THREADS")'))
    sweep, argv = prepare(tmp_path, "name: side-cpus\ngrid: {x: [0, 1, 2, 3]}\n", profile(100), "--pack", "4",
                          "--cpus-per-task", "2", "--cpus-per-trial", "1")
    argv[argv.index("--command") + 1] = f"{PY} {tmp_path / 'side.py'}"
    assert main(argv) == 0
    [sub] = mf.read_manifest(sweep).submissions
    slurm_cleanup.append(sub.job_id)
    wait_for(lambda: len(results(sweep)) == 4, 120, "4 results")
    res = sorted((r["results"] for r in results(sweep).values()), key=lambda r: r["start"])
    assert {r["threads"] for r in res} == {"1"}
    assert res[1]["start"] < res[0]["end"] and res[3]["start"] < res[2]["end"]     # two at a time
    assert res[2]["start"] >= min(res[0]["end"], res[1]["end"]) - 0.5               # never three

@pytest.mark.parametrize("gpus", [{}, {"gres": "gpu:2"}], ids=["in-turn", "side-by-side"])
def test_a_packed_task_near_its_time_limit_hands_the_rest_back_to_the_top_up(tmp_path, slurm_cleanup, gpus):
    # 6 trials of ~12 s packed in one task of a 2-minute limit (warning 10 s before, or up to 75 s
    # earlier): a task starts no trial that could still run when the warning may come (two fit, or
    # two pairs on two GPUs), and hands the rest back to the top-up; no trial is warned, each starts once.
    sweep, argv = prepare(tmp_path, "name: near-limit\ngrid: {x: [0, 1, 2, 3, 4, 5]}\nfixed: {steps: 120}\n",
                          profile(100, **gpus).replace("time: '00:10:00'\ngrace_s: 30", "time: '00:02:00'\ngrace_s: 10"),
                          "--pack", "6")
    watch = QueueWatch(sweep, slurm_cleanup)
    watch.start()
    try:
        assert main(argv) == 0
        wait_for(lambda: len(results(sweep)) == 6, 300, "6 results")
    finally:
        watch.done.set()
        watch.join()
    res = results(sweep)
    assert {r["status"] for r in res.values()} == {"completed"}                # no trial reached the limit
    runs = starts(tmp_path)
    assert len(runs) == 6 and set(runs.values()) == {1}, runs                 # each started once
    first_job = mf.read_manifest(sweep).submissions[0].job_id
    in_first = sum(1 for r in res.values() if r["job"]["id"] == f"{first_job}_0")
    assert 1 <= in_first < 6, in_first
    assert len(mf.read_manifest(sweep).submissions) >= 2                      # the rest came by the top-up
    log = next((sweep / "logs").glob(f"{first_job}_0.out")).read_text()
    assert f"{6 - in_first} trial(s) left for the top-up: too close to its time limit" in log


@pytest.mark.exclusive    # counts every job of the user: nothing else may come and go meanwhile
def test_launch_counts_the_users_other_queued_jobs_against_the_limit(tmp_path, slurm_cleanup, slurm_exclusive):
    # Eight tasks of the user's own already queue (held); the profile allows two more: launch submits two
    # of its six trials, not an array sbatch would refuse, and the sweep's tasks top up the other four.
    held = subprocess.run(["sbatch", "--parsable", "--hold", "--array=0-7", "--partition=main", "--mem=50M",
                           "--output=/dev/null", "--wrap", "sleep 1"], capture_output=True, text=True, check=True)
    slurm_cleanup.append(held.stdout.strip().split(";")[0])
    limit = len(slurm.queued_tasks(slurm.current_user())) + 2
    sweep, argv = prepare(tmp_path, "name: room\ngrid: {x: [0, 1, 2, 3, 4, 5]}\nfixed: {steps: 2}\n", profile(limit))
    assert main(argv) == 0
    first = mf.read_manifest(sweep).submissions[0]
    slurm_cleanup.append(first.job_id)
    assert len(first.index_list()) == 2, first
    wait_for(lambda: len(results(sweep)) == 6, 180, "6 results")
    slurm_cleanup.extend(job_ids(sweep))
    assert set(starts(tmp_path).values()) == {1}


def test_a_later_stage_resumed_while_its_packed_earlier_stage_runs_is_left_to_the_top_up(tmp_path, slurm_cleanup,
                                                                                         capsys):
    # A packed task cannot be chained to (aftercorr pairs tasks, not trials): resume records such a later
    # stage as waiting, and the earlier stage's tasks submit it once they complete. No second resume.
    (tmp_path / "hold").touch()
    sweep, argv = prepare(tmp_path, "name: chain\ngrid: {x: [0, 1, 2, 3]}\nstages: {key: steps, values: [2, 3]}\n",
                          profile(100), "--pack", "2")
    assert main(argv) == 0
    first, second = mf.read_manifest(sweep).submissions
    slurm_cleanup += [first.job_id, second.job_id]
    wait_for(lambda: len(list(sweep.glob("trials/*/started.0"))) == 2, 60, "the first stage's two tasks running")
    subprocess.run(["scancel", second.job_id], check=True)
    wait_for(lambda: not any(j.job == second.job_id for j in slurm.queued_tasks(slurm.current_user())), 30,
             "the second stage to leave the queue")
    # and accounting to record it (slurmdbd can still say PENDING a moment after squeue lets go)
    wait_for(lambda: {r.state.name for r in slurm.sacct([second.job_id])} == {"CANCELLED"}, 30,
             "sacct to record the cancel")
    capsys.readouterr()
    assert main(["resume", str(sweep), "--retry-cancelled", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["waiting"] == "4-7" and doc["submitted"] == 0, doc
    assert mf.read_manifest(sweep).unsubmitted == "4-7"
    (tmp_path / "hold").unlink()
    wait_for(lambda: len(results(sweep)) == 8, 120, "8 results, the second stage by the top-up", sweep=sweep)
    slurm_cleanup.extend(job_ids(sweep))
    assert {r["status"] for r in results(sweep).values()} == {"completed"}
    assert set(starts(tmp_path).values()) == {1}
