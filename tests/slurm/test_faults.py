"""Faults injected on the real cluster. Every test asserts that each trial ends with exactly one
result.json (none lost, none duplicated) and prints what it injected and what survived.

Slurm holds a requeued task back (BeginTime) for cred_expire seconds, 15 on the test cluster. The
tests wait for that: starting the task earlier (`scontrol update StartTime=now`) races slurmd, which
then kills it as "Job credential revoked" and the task ends FAILED.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs.submission import IN_FLIGHT_S
from jobs import slurm
from jobs.state import collect
from launcher.cli import main
from tests.slurm.support import job_ids, results, wait_for

PY = sys.executable

# `steps` tenths of a second of work, counted in a checkpoint that SIGUSR1/USR2/TERM saves before
# the program exits (the runner then requeues the task); `hold` (a file next to the sweep) keeps it
# working; `until_signal` keeps the first attempt working until a signal comes; `diverge_x`
# reports that trial as diverged at once.
PROGRAM = r"""
import os, sys, time
from jobs import runtime
ctx = runtime.context()
args = dict(a.split("=", 1) for a in sys.argv[1:])
root = os.path.dirname(os.environ["SWEEP_DIR"])
flag = lambda name: os.path.exists(os.path.join(root, name))
with open(os.path.join(root, "runs.log"), "a") as f:
    f.write(f"{ctx.trial_id} {ctx.attempt}\n")
if args.get("diverge_x") == args.get("x"):
    runtime.write_metrics({"loss": float("nan")}, status="diverged")
    sys.exit(0)
stop = runtime.StopSignal.install()
ckpt = ctx.checkpoint_dir / "count"
count = start = int(ckpt.read_text()) if ckpt.exists() else 0
(ctx.trial_dir / f"started.{ctx.attempt}").touch()
until_signal = args.get("until_signal") == "true" and ctx.attempt == 0
while flag("hold") or count < int(args.get("steps", "0")) or (until_signal and count < 900):
    if stop.requested:
        ckpt.write_text(str(count))
        (ctx.trial_dir / f"signal.{ctx.attempt}").write_text(str(stop.signum))
        sys.exit(0)
    time.sleep(0.1)
    count += 1
runtime.write_metrics({"count": count, "resumed_from": start, "attempt": ctx.attempt,
                       "acc": float(args.get("x", 0))})
"""


def pending_since(sweep: Path) -> float:
    from datetime import datetime

    subs = [s for s in mf.read_manifest(sweep).submissions if s.state == "pending"]
    return max(datetime.fromisoformat(s.submitted.replace("Z", "+00:00")).timestamp() for s in subs)


def write_spec(tmp_path: Path, text: str) -> Path:
    (tmp_path / "prog.py").write_text(PROGRAM)
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return spec


def launch(tmp_path: Path, spec_text: str, cleanup: list, *extra: str) -> Path:
    spec = write_spec(tmp_path, spec_text)
    sweep = tmp_path / "sweep"
    assert main(["launch", str(spec), "--executor", "slurm", "--cluster", "local", "--dir", str(sweep),
                 "--command", f"{PY} {tmp_path / 'prog.py'}", *extra]) == 0
    cleanup.extend(job_ids(sweep))
    return sweep


def completed(sweep: Path) -> int:
    return sum(r["status"] == "completed" for r in results(sweep).values())


def rewrites(sweep: Path) -> int:
    """Results the runner wrote before the last one (it logs each as 'trial <id> <status>')."""
    logs = "".join(p.read_text(errors="replace") for p in (sweep / "logs").glob("*.out"))
    return sum(line.endswith((" preempted", " failed")) and "] trial " in line for line in logs.splitlines())


def started(sweep: Path, attempt: int) -> int:
    return len(list(sweep.glob(f"trials/*/started.{attempt}")))


def check_one_result_each(sweep: Path, injected: str, statuses: set[str] = frozenset({"completed"})) -> dict:
    """Exactly one result.json per trial, none stray; print the tally."""
    manifest = mf.read_manifest(sweep)
    ids = {t.id for t in manifest.trials}
    files = list(sweep.glob("trials/*/result.json")) + list(sweep.glob("trials/*/*/result.json"))
    per_trial = Counter(p.parent.name for p in files)
    res = results(sweep)
    lost = ids - set(res)
    duplicated = [t for t, n in per_trial.items() if n > 1]
    stray = set(per_trial) - ids
    print(f"\ninjected: {injected}\nsurvived: {len(res)}/{len(ids)} trials with a result; "
          f"lost {len(lost)}, duplicated {len(duplicated)}, stray {len(stray)}; "
          f"statuses {dict(Counter(r['status'] for r in res.values()))}")
    assert not lost and not duplicated and not stray
    assert {r["status"] for r in res.values()} <= set(statuses)
    return res


def test_running_tasks_requeued_several_times(tmp_path, slurm_cleanup):
    (tmp_path / "hold").touch()
    sweep = launch(tmp_path, "name: fault-requeue\ngrid: {x: [0, 1, 2]}\nfixed: {steps: 3}\n", slurm_cleanup)
    [job] = job_ids(sweep)
    rounds = 3
    for attempt in range(rounds):
        wait_for(lambda: started(sweep, attempt) == 3, 40, f"attempt {attempt} of every task", sweep=sweep)
        slurm.scontrol_requeue([job])  # the whole array: every running task
    wait_for(lambda: started(sweep, rounds) == 3, 40, "the last restart", sweep=sweep)
    (tmp_path / "hold").unlink()
    wait_for(lambda: completed(sweep) == 3, 40, "3 completed results", sweep=sweep)
    res = check_one_result_each(sweep, f"`scontrol requeue {job}` x{rounds} on 3 running tasks")
    # When Slurm itself requeued the task, the runner's own `scontrol requeue` is refused ("Job is
    # pending execution"): it must then write nothing, leaving the result to the next attempt.
    assert rewrites(sweep) == 0, "an attempt wrote a result that a later attempt replaced"
    for r in res.values():
        assert r["job"]["attempt"] == rounds and r["results"]["attempt"] == rounds  # SLURM_RESTART_COUNT
        assert r["results"]["resumed_from"] > 0  # continued from the checkpoint saved on TERM
    runs = Counter(line.split()[0] for line in (tmp_path / "runs.log").read_text().splitlines())
    assert set(runs.values()) == {rounds + 1}


def test_time_limit_signal_checkpoint_requeue_finish(tmp_path, slurm_cleanup):
    # A 2-minute limit with a 100 s grace: USR1 is due 20 s in (slurmctld checks every ~30 s, and
    # may signal up to a minute early), leaving a wide margin before the kill even on a loaded
    # machine. The first attempt works until it is signalled.
    sweep = launch(tmp_path, """
name: fault-timelimit
grid: {x: [0, 1]}
fixed: {until_signal: true, steps: 5}
resources: {time: "00:02:00", grace_s: 100, signal: USR1}
""", slurm_cleanup)
    wait_for(lambda: completed(sweep) == 2, 110, "both trials to finish after their time-limit warning", sweep=sweep)
    res = check_one_result_each(sweep, "a 2-minute time limit with --signal=B:USR1@100 on work that outlasts it")
    for t in res:
        assert (mf.trial_dir(sweep, t) / "signal.0").read_text() == str(int(signal.SIGUSR1))
    for r in res.values():
        assert r["job"]["attempt"] >= 1 and r["results"]["resumed_from"] > 0


@pytest.mark.exclusive  # setting the only node DOWN requeues every other test's jobs too
def test_node_down_then_resumed_mid_run(tmp_path, slurm_cleanup, slurm_cluster, slurm_exclusive):
    (tmp_path / "hold").touch()
    sweep = launch(tmp_path, "name: fault-node\ngrid: {x: [0, 1]}\nfixed: {steps: 3}\n", slurm_cleanup)
    wait_for(lambda: started(sweep, 0) == 2, 40, "both tasks to start", sweep=sweep)
    node = slurm_cluster.node
    try:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=slurmsweep-test"],
                       check=True, capture_output=True)
        time.sleep(3)
    finally:
        # ReturnToService=2 may have brought the node back already (then scontrol refuses RESUME).
        done = subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"],
                              capture_output=True, text=True)
        node_state = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True,
                                    text=True).stdout.strip()
        assert done.returncode == 0 or ("down" not in node_state and "drain" not in node_state), \
            f"node {node} stays {node_state}: {done.stderr}"
    wait_for(lambda: started(sweep, 1) == 2, 60, "both tasks to restart on the resumed node", sweep=sweep)
    (tmp_path / "hold").unlink()
    wait_for(lambda: completed(sweep) == 2, 40, "2 completed results", sweep=sweep)
    res = check_one_result_each(sweep, f"node {node} set DOWN for 3 s mid-run, then RESUMED")
    assert rewrites(sweep) == 0, "an attempt wrote a result that a later attempt replaced"
    assert all(r["job"]["attempt"] >= 1 for r in res.values())


def test_launcher_killed_between_stage_submissions_then_resume(tmp_path, slurm_cleanup, capsys):
    # A real sbatch behind a shim that stalls the second submission: the launcher is SIGKILLed
    # (its whole process group, like a lost login node) while stage 1 is not yet submitted.
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["bash", "-c", "command -v sbatch"], capture_output=True, text=True).stdout.strip()
    (shim / "sbatch").write_text(f"""#!/bin/bash
n=$(cat {tmp_path}/sbatch.calls 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/sbatch.calls
if [ "$n" -ge 1 ]; then sleep 120; fi
exec {real} "$@"
""")
    (shim / "sbatch").chmod(0o755)
    spec = write_spec(tmp_path, "name: fault-launcher\ngrid: {x: [0, 1, 2]}\nstages: {key: steps, values: [2, 4]}\n")
    sweep = tmp_path / "sweep"
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
    proc = subprocess.Popen([PY, "-m", "launcher", "launch", str(spec), "--executor", "slurm", "--cluster", "local",
                             "--dir", str(sweep), "--command", f"{PY} {tmp_path / 'prog.py'}"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: mf.manifest_path(sweep).exists() and len(job_ids(sweep)) == 1, 30,
                 "the first submission in manifest.json")
        wait_for(lambda: (tmp_path / "sbatch.calls").read_text().strip() == "2", 10, "the second sbatch")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    slurm_cleanup.extend(job_ids(sweep))
    assert len(job_ids(sweep)) == 1
    # Stage 1 was recorded before its sbatch ran: its trials are "being submitted", not free to take.
    pending = [s for s in mf.read_manifest(sweep).submissions if s.state == "pending"]
    assert [s.indices for s in pending] == ["3-5"]
    capsys.readouterr()
    assert main(["resume", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resubmit"] == []
    # Once the record is older than any sbatch could take (and Slurm holds nothing under its
    # token), the next resume settles it as never submitted and submits those trials.
    time.sleep(max(0.0, IN_FLIGHT_S + 1 - (time.time() - pending_since(sweep))))
    assert main(["resume", str(sweep), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    slurm_cleanup.extend(job_ids(sweep))
    assert [r["index"] for r in done["resubmit"]] == [3, 4, 5] and done["reconciled"]["dropped"] == "3-5"
    wait_for(lambda: len(results(sweep)) == 6, 60, "6 results", sweep=sweep)
    res = check_one_result_each(sweep, "SIGKILL to `sweep launch` between stage 0 and stage 1 sbatch, then resume")
    by_id = {t.id: t for t in mf.read_manifest(sweep).trials}
    assert sorted(by_id[t].stage for t in res) == [0, 0, 0, 1, 1, 1]
    runs = Counter(line.split()[0] for line in (tmp_path / "runs.log").read_text().splitlines())
    assert set(runs.values()) == {1}


@pytest.mark.exclusive  # 200 tasks fill the node: other tests' tasks would wait behind them
def test_200_tasks_finishing_at_once(tmp_path, slurm_cleanup, slurm_exclusive):
    (tmp_path / "hold").touch()
    sweep = launch(tmp_path, f"name: fault-200\ngrid: {{x: {list(range(200))}}}\n", slurm_cleanup)
    t0 = time.monotonic()
    wait_for(lambda: started(sweep, 0) >= 100 or time.monotonic() - t0 > 40, 60, "100 tasks running")
    running = started(sweep, 0)
    (tmp_path / "hold").unlink()  # release them together
    t1 = time.monotonic()
    wait_for(lambda: len(results(sweep)) == 200, 150, "200 results", poll=1.0)
    took = time.monotonic() - t1
    res = check_one_result_each(sweep, f"{running} of 200 tasks released at the same instant")
    assert len(res) == 200
    status = collect(sweep)
    assert status.counts() == {"completed": 200} and not status.active()
    print(f"200 results {took:.1f}s after the release")


def test_nan_loss_diverges_fast_and_is_final(tmp_path, slurm_cleanup, capsys):
    sweep = launch(tmp_path, "name: fault-nan\nmetric: acc\ngrid: {x: [0, 1, 2]}\nfixed: {diverge_x: 1}\n",
                   slurm_cleanup, "--max-attempts", "3")
    t0 = time.monotonic()
    wait_for(lambda: len(results(sweep)) == 3, 40, "3 results")
    res = check_one_result_each(sweep, "trial x=1 reports a NaN loss (status diverged)",
                                {"completed", "diverged"})
    diverged = [r for r in res.values() if r["status"] == "diverged"]
    assert len(diverged) == 1 and diverged[0]["job"]["attempt"] == 0  # no retry of a diverged run
    runs = Counter(line.split()[0] for line in (tmp_path / "runs.log").read_text().splitlines())
    assert set(runs.values()) == {1}
    capsys.readouterr()
    assert main(["resume", str(sweep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resubmit"] == []  # diverged is final
    print(f"3 results in {time.monotonic() - t0:.1f}s")
