"""Exactly once on the real cluster (issue 16): every array is recorded before it exists, one writer per
sweep, cancel means cancel, a time limit ends the trial. Every trial appends a line per start to
runs.log, so each test asserts from the trials' own records that nothing ran twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


from jobs import manifest as mf
from jobs import slurm
from launcher.cli import main
from tests.slurm.support import COUNTING_PROGRAM, job_ids, results, starts, wait_for

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]


def setup(tmp_path: Path, spec_text: str, profile: str | None = None) -> tuple[Path, list[str]]:
    (tmp_path / "prog.py").write_text(COUNTING_PROGRAM)
    (tmp_path / "spec.yaml").write_text(spec_text)
    cluster = "local"
    if profile is not None:
        (tmp_path / "profile.yaml").write_text(profile)
        cluster = str(tmp_path / "profile.yaml")
    argv = ["launch", str(tmp_path / "spec.yaml"), "--executor", "slurm", "--cluster", cluster,
            "--dir", str(tmp_path / "sweep"), "--command", f"{PY} {tmp_path / 'prog.py'}"]
    return tmp_path / "sweep", argv


def queued(sweep: Path) -> int:
    ids = set(job_ids(sweep))
    return sum(1 for j in slurm.queued_tasks(slurm.current_user()) if j.job in ids)


def status_json(sweep: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["status", str(sweep), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_launcher_killed_right_after_sbatch_returns_submits_nothing_twice(tmp_path, slurm_cleanup, capsys):
    """sbatch behind a shim that runs the real one, then SIGKILLs the launcher before it can read the
    job id: the array exists in Slurm and the manifest only has it as pending. The next resume finds it
    by its token instead of submitting the trials again."""
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    (shim / "sbatch").write_text(f"#!/bin/bash\nexport PATH={os.environ['PATH']}\nout=$({real} \"$@\"); rc=$?\n"
                                 f"echo \"$out\" > {tmp_path}/sbatch.out\nkill -9 $PPID\nexit $rc\n")
    (shim / "sbatch").chmod(0o755)
    sweep, argv = setup(tmp_path, "name: killed-after-sbatch\ngrid: {x: [0, 1, 2, 3]}\nfixed: {steps: 20}\n")
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
    done = subprocess.run([PY, "-m", "launcher", *argv], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == -signal.SIGKILL, done.stderr
    real_job = (tmp_path / "sbatch.out").read_text().strip().split(";")[0]
    slurm_cleanup.append(real_job)
    [sub] = mf.read_manifest(sweep).submissions
    assert sub.state == "pending" and sub.job_id is None and sub.token     # recorded before it existed
    # Status and resume settle the record with what Slurm holds under the token: no second array.
    doc = status_json(sweep, capsys)
    assert doc["counts"].get("lost", 0) == 0
    [sub] = mf.read_manifest(sweep).submissions
    assert sub.state == "submitted" and sub.job_id == real_job
    capsys.readouterr()
    assert main(["resume", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resubmit"] == []
    wait_for(lambda: len(results(sweep)) == 4, 90, "4 results")
    assert job_ids(sweep) == [real_job]
    assert set(starts(tmp_path).values()) == {1} and len(starts(tmp_path)) == 4


@pytest.mark.exclusive    # the queue limit counts every job of the user: other tests' jobs would take its room
def test_two_resumes_at_once_submit_each_trial_once(tmp_path, slurm_cleanup, capsys, slurm_exclusive):
    """A sweep held back by its queue limit (no top-up from tasks): two `sweep resume` started together
    take turns on the sweep's lock; the second finds the first's submission and adds nothing twice."""
    # Room for 10 of its tasks, whatever jobs of the user (other tests' leftovers) are queued already.
    limit = len(slurm.queued_tasks(slurm.current_user())) + 10
    profile = ("name: tight\npartition: main\ncpus_per_task: 1\nmem: 300M\ntime: '00:10:00'\ngrace_s: 30\n"
               f"max_array_size: 1000\nmax_queued_jobs: {limit}\nsubmit_from_tasks: false\n")
    sweep, argv = setup(tmp_path, "name: two-resumes\ngrid: {x: " + json.dumps(list(range(30))) + "}\n"
                        "fixed: {steps: 3}\n", profile)
    assert main(argv) == 0
    slurm_cleanup.extend(job_ids(sweep))
    room = 30 - len(mf.expand_ranges(mf.read_manifest(sweep).unsubmitted))      # 10 (more if a leftover ended)
    assert room >= 10 and mf.read_manifest(sweep).unsubmitted == f"{room}-29"
    wait_for(lambda: len(results(sweep)) == room, 90, "the first results")
    for _round in range(3):
        procs = [subprocess.Popen([PY, "-m", "launcher", "resume", str(sweep), "--json"], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        slurm_cleanup.extend(job_ids(sweep))
        submitted = [json.loads(o)["submitted"] for o, _ in outs]
        assert sorted(submitted)[0] == 0, submitted   # one of them, once: the other found nothing left to do
        n = len(results(sweep))
        wait_for(lambda: len(results(sweep)) == min(30, n + max(submitted)), 90, "the next results")
    assert len(results(sweep)) == 30
    assert set(starts(tmp_path).values()) == {1} and len(starts(tmp_path)) == 30
    subs = mf.read_manifest(sweep).submissions
    assert sorted(i for s in subs for i in s.index_list()) == list(range(30))     # each trial in one array


def test_cancel_means_cancel(tmp_path, slurm_cleanup, capsys):
    sweep, argv = setup(tmp_path, "name: cancel-means-cancel\ngrid: {x: [0, 1, 2, 3]}\nfixed: {forever: true}\n",
                        "name: two\npartition: main\ncpus_per_task: 1\nmem: 300M\ntime: '00:10:00'\ngrace_s: 30\n"
                        "max_parallel: 2\nmax_array_size: 1000\nmax_queued_jobs: 1000\n")
    assert main(argv) == 0
    slurm_cleanup.extend(job_ids(sweep))
    wait_for(lambda: len(list(sweep.glob("trials/*/started.0"))) == 2, 60, "two trials running")
    # A plain `scancel` of one running task (not ours): recorded as cancelled, not requeued.
    [job] = job_ids(sweep)
    running = sorted(p.parent.name for p in sweep.glob("trials/*/started.0"))
    index = {t.id: t.index for t in mf.read_manifest(sweep).trials}[running[0]]
    subprocess.run(["scancel", f"{job}_{index}"], check=True)
    wait_for(lambda: running[0] in results(sweep), 30, "the scancelled trial to record its end")
    assert results(sweep)[running[0]]["status"] == "cancelled"
    time.sleep(20)   # longer than a requeued task would take to come back (cred_expire 15 s)
    assert not (mf.trial_dir(sweep, running[0]) / "started.1").exists()
    # `sweep cancel`: nothing pending or running any more, at once.
    assert main(["cancel", str(sweep)]) == 0
    assert queued(sweep) == 0
    time.sleep(20)
    assert queued(sweep) == 0 and not list(sweep.glob("trials/*/started.1"))
    doc = status_json(sweep, capsys)
    assert doc["active"] == 0 and set(doc["counts"]) == {"cancelled"}, doc["counts"]
    assert set(starts(tmp_path).values()) == {1}


def test_a_trial_over_its_time_limit_ends_as_timeout(tmp_path, slurm_cleanup, capsys):
    """A 1-minute limit, warned 30 s ahead (Slurm may warn up to a minute early): one time-limit requeue
    (the profile's budget), then recorded as timeout with the limit named; it does not loop."""
    sweep, argv = setup(tmp_path, "name: time-limit\ngrid: {x: [0]}\nfixed: {forever: true}\n",
                        "name: short\npartition: main\ncpus_per_task: 1\nmem: 300M\ntime: '00:01:00'\ngrace_s: 30\n"
                        "timeout_requeues: 1\nmax_array_size: 1000\nmax_queued_jobs: 1000\n")
    assert main(argv) == 0
    slurm_cleanup.extend(job_ids(sweep))
    wait_for(lambda: len(results(sweep)) == 1, 240, "the timeout result")
    [r] = results(sweep).values()
    assert r["status"] == "timeout" and "time limit (00:01:00)" in r["error"] and r["job"]["attempt"] == 1
    # The runner writes its result before it exits: until Slurm lets go of the task, status shows it running.
    wait_for(lambda: queued(sweep) == 0, 60, "the task to leave the queue")
    [t] = status_json(sweep, capsys)["trials"]
    assert t["cause"]["kind"] == "time_limit" and "time:" in t["cause"]["fix"]
    assert list(starts(tmp_path).values()) == [2]                  # the first run and its one requeue
    time.sleep(20)
    assert queued(sweep) == 0 and list(starts(tmp_path).values()) == [2]
