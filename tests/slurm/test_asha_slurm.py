"""Successive halving across Slurm jobs (issue 19), on the real cluster: finishing tasks promote the
top 1/eta of each rung as their results come in, each promotion a new array task that resumes from the
trial's own checkpoint (as the program records it), no rung of any trial runs twice, and a top-rung
task requeued mid-way (`scontrol requeue`) carries on from its own checkpoint and loses nothing."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs import promote, slurm
from jobs.state import collect
from jobs.trial_state import TrialState
from launcher.cli import main
from tests.slurm.support import wait_for
from tests.fixtures.asha_records import PROGRAM, starts

PY = sys.executable
N, ETA, BUDGETS = 8, 2, (3, 6, 18)
SPEC = f"""
name: asha-slurm
method: asha
trials: {N}
seed: 11
metric: score
space: {{x: {{distribution: uniform, min: 0, max: 1}}}}
fixed: {{delay: 0.4}}
rungs: {{key: steps, values: {list(BUDGETS)}}}
eta: {ETA}
"""
PROFILE = ("name: asha\npartition: main\ncpus_per_task: 1\nmem: 300M\ntime: '00:10:00'\ngrace_s: 30\n"
           "max_array_size: 1000\nmax_queued_jobs: 100\n")


def step_of(sweep: Path, trial_id: str) -> int:
    try:
        return json.loads((mf.trial_dir(sweep, trial_id) / mf.CHECKPOINTS / "state.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def results(sweep: Path) -> dict[str, tuple[dict, float]]:
    """{trial id: (result, the result file's mtime)}."""
    return {p.parent.name: (json.loads(p.read_text()), p.stat().st_mtime) for p in sweep.glob("trials/*/result.json")}


@pytest.mark.timeout(300)
def test_promotions_climb_from_their_own_checkpoints_in_asha_order_and_a_requeue_loses_nothing(tmp_path,
                                                                                               slurm_cleanup):
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "profile.yaml").write_text(PROFILE)
    sweep = tmp_path / "sweep"
    assert main(["launch", str(tmp_path / "spec.yaml"), "--executor", "slurm", "--cluster",
                 str(tmp_path / "profile.yaml"), "--dir", str(sweep), "--command", f"{PY} {PROGRAM}"]) == 0
    m = mf.read_manifest(sweep)
    assert [s.indices for s in m.submissions] == [f"0-{N - 1}"] and m.held == f"{N}-{3 * N - 1}"

    def jobs_now() -> list[str]:
        ids = mf.read_manifest(sweep).job_ids()
        slurm_cleanup.extend(i for i in ids if i not in slurm_cleanup)
        return ids

    # Requeue the first top-rung task once it is mid-way through its own rung (past its parent's budget).
    top = [t for t in m.trials if t.stage == 2]

    def climbing() -> bool:
        jobs_now()
        return any(step_of(sweep, t.id) >= BUDGETS[1] + 3 for t in top)

    wait_for(climbing, 150, "a top-rung trial mid-way", poll=0.2)
    victim = next(t for t in top if step_of(sweep, t.id) >= BUDGETS[1] + 3)
    task = mf.read_manifest(sweep).latest_submissions()[victim.index].task_ids()[victim.index]
    slurm.scontrol_requeue([task])

    def settled() -> bool:
        jobs_now()
        return all(t.state.is_ended() for t in collect(sweep).trials)

    wait_for(settled, 200, "every trial completed or stopped", poll=0.2)
    m = mf.read_manifest(sweep)
    status = {t.trial.index: t for t in collect(sweep).trials}
    res = results(sweep)
    assert all(status[i].state is TrialState.COMPLETED for i in range(N))

    # ASHA's order, from the promotions as recorded: each parent ranked in the top 1/eta of the results
    # its rung had when the pass read them (results written in the second before the read surely in).
    log = [json.loads(line) for line in (sweep / promote.LOG).read_text().splitlines()]
    children = [e["child"] for e in log]
    assert len(children) == len(set(children)), "a trial was promoted twice"
    for e in log:
        parent = m.trial_at(e["parent"])
        rung = [t for t in m.trials if t.stage == parent.stage and t.id in res
                and res[t.id][0]["status"] == "completed"]
        mine = res[parent.id][0]["results"]["score"]
        assert res[parent.id][1] <= e["time"], "promoted before its result was written"
        before = [t for t in rung if res[t.id][1] < e["read_at"] - 1.0 and t.id != parent.id]
        rank = 1 + sum(res[t.id][0]["results"]["score"] > mine for t in before)
        known = sum(res[t.id][1] <= e["time"] for t in rung)
        assert rank <= known // ETA, (e, rank, known)
    assert log[0]["rung"] == 1 and log[0]["of"] >= ETA
    # Once a rung is done, its final top 1/eta all climbed (and the best of all reached the top rung).
    for r in (0, 1):
        ran = [t for t in m.trials if t.stage == r and status[t.index].state is TrialState.COMPLETED]
        best = sorted(ran, key=lambda t: -status[t.index].metric)[:len(ran) // ETA]
        assert {t.index + N for t in best} <= set(children)
    assert max((status[i] for i in range(N)), key=lambda t: t.metric).trial.index + 2 * N in children

    # Each climber started once from its parent's checkpoint at the parent's budget (the program's own
    # record); every trial ran in exactly one array task; stopped trials never ran.
    for t in m.trials:
        runs = starts(sweep, t.id)
        if t.index not in children and t.stage:
            assert status[t.index].state is TrialState.STOPPED and not runs and t.id not in res
            continue
        assert status[t.index].state is TrialState.COMPLETED, (t.index, status[t.index].state)
        first, *again = runs
        expected = str(mf.trial_dir(sweep, t.parent) / mf.CHECKPOINTS) if t.parent else None
        assert (first["origin"], first["from_step"]) == (expected, BUDGETS[t.stage - 1] if t.stage else 0)
        assert all(r["origin"] == "own" for r in again), runs       # restarts only ever carry on
        assert res[t.id][0]["results"]["steps"] == BUDGETS[t.stage]
        assert first["job"] == res[t.id][0]["job"]["id"]             # the same array task throughout
    held = set(m.held_indices())
    assert sorted(i for s in m.submissions for i in s.index_list()) == sorted([*range(N), *children])
    assert not held & set(children) and m.unsubmitted == ""

    # The requeued task: a second start of the same task, from its own checkpoint past the parent's budget.
    [before, after] = starts(sweep, victim.id)
    assert after["origin"] == "own" and after["from_step"] >= BUDGETS[1] + 3 and after["attempt"] >= 1
    assert res[victim.id][0]["job"]["attempt"] >= 1 and res[victim.id][0]["results"]["steps"] == BUDGETS[2]
    assert not (sweep / promote.MARKER).exists()
    print(f"promotions: {[(e['parent'], e['child']) for e in log]}; requeued {task} at step {after['from_step']}")


@pytest.mark.timeout(240)
def test_launch_wait_returns_only_once_every_rung_is_decided(tmp_path, slurm_cleanup, capsys):
    # A rung-0 task writes its result, then promotes before it exits: --wait must not return in between.
    spec = SPEC.replace(f"trials: {N}", "trials: 4").replace(f"values: {list(BUDGETS)}", "values: [2, 4]")
    (tmp_path / "spec.yaml").write_text(spec)
    (tmp_path / "profile.yaml").write_text(PROFILE)
    sweep = tmp_path / "sweep"
    rc = main(["launch", str(tmp_path / "spec.yaml"), "--executor", "slurm", "--cluster", str(tmp_path / "profile.yaml"),
               "--dir", str(sweep), "--command", f"{PY} {PROGRAM}", "--wait", "--json"])
    slurm_cleanup.extend(mf.read_manifest(sweep).job_ids())
    assert rc == 0, capsys.readouterr()
    status = collect(sweep).trials
    assert all(t.state.is_ended() for t in status), [(t.trial.index, t.state) for t in status]
    assert_rungs_decided({t.trial.index: t.state.value for t in status})
    assert not slurm.queued_tasks(slurm.current_user()) or not set(mf.read_manifest(sweep).job_ids()) & {
        j.job for j in slurm.queued_tasks(slurm.current_user())}


@pytest.mark.timeout(240)
def test_submitit_tasks_promote_too(tmp_path, slurm_cleanup):
    spec = SPEC.replace(f"trials: {N}", "trials: 4").replace(f"values: {list(BUDGETS)}", "values: [2, 4]")
    (tmp_path / "spec.yaml").write_text(spec)
    (tmp_path / "profile.yaml").write_text(PROFILE)
    sweep = tmp_path / "sweep"
    assert main(["launch", str(tmp_path / "spec.yaml"), "--executor", "submitit", "--cluster",
                 str(tmp_path / "profile.yaml"), "--dir", str(sweep), "--command", f"{PY} {PROGRAM}"]) == 0

    def settled() -> bool:
        slurm_cleanup.extend(i for i in mf.read_manifest(sweep).job_ids() if i not in slurm_cleanup)
        return all(t.state.is_ended() for t in collect(sweep).trials)

    wait_for(settled, 180, "every trial completed or stopped, with nobody resuming", poll=0.5)
    m = mf.read_manifest(sweep)
    assert_rungs_decided({t.trial.index: t.state.value for t in collect(sweep).trials})
    assert {s.executor for s in m.submissions} == {"submitit"} and len(m.submissions) >= 2


def assert_rungs_decided(states: dict[int, str]) -> None:
    """4 trials over rungs 2/4 with eta 2: all of rung 0 completed; at least the top half climbed (ASHA
    promotes as results come in, so an early leader may climb too) and completed; the rest stopped."""
    assert all(states[i] == "completed" for i in range(4)), states
    climbed = [i for i in range(4, 8) if states[i] == "completed"]
    assert len(climbed) >= 2 and all(states[i] == "stopped" for i in range(4, 8) if i not in climbed), states
