"""Trial state from real captured sacct/squeue text + result files, and resume planning (no Slurm)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs import slurm
from jobs.errors import SlurmError
from jobs.slurm import AccountingDisabled
from jobs.state import (NEVER_SATISFIED, LiveTask, SweepStatus, TrialState, collect, combine, live_tasks,
                        local_states, query_slurm, slurm_job_ids, task_map)
from launcher.commands.resume import plan_resume, select

DATA = Path(__file__).parent / "data" / "sacct"


def capture(name: str) -> str:
    return (DATA / f"state_{name}.txt").read_text()


def trial(index: int, stage: int = 0, parent: str | None = None, tid: str | None = None) -> dict:
    t = {"id": tid or f"t{index:03d}", "index": index, "stage": stage, "params": {"x": index}, "overrides": {}}
    if parent:
        t["parent"] = parent
    return t


def manifest(trials: list[dict], submissions: list[dict], executor: str = "slurm") -> dict:
    return {"name": "s", "metric": "acc", "goal": "maximize", "executor": executor, "trials": trials,
            "submissions": submissions, "cluster": {"max_array_size": 1001, "max_queued_jobs": 1000}}


def sub(job: str, indices: str, offset: int = 0, stage: int = 0, executor: str = "slurm", **kw) -> dict:
    return {"stage": stage, "job_id": job, "array": indices, "offset": offset, "indices": indices,
            "dependency": None, "executor": executor, "submitted": kw.get("submitted", "2026-01-01T00:00:00Z")}


def result(status: str = "completed", attempt: int = 0, **results) -> dict:
    return {"schema": 1, "status": status, "results": results, "runtime_s": 1.5, "error": None,
            "job": {"id": "x", "node": "n1", "attempt": attempt}}


# --- parsing real output into states ------------------------------------------------------------

def test_real_sacct_and_squeue_map_to_trial_states():
    # Job 121: task 0 exit 0, 1 exit 1, 2 requeued (pending again), 3 cancelled, 4-7 exit 0.
    live = live_tasks(slurm.parse_sacct(capture("sacct_mixed")), slurm.parse_squeue(capture("squeue_requeued")))
    trials = [trial(i) for i in range(8)]
    m = manifest(trials, [sub("121", "0-7")])
    results = {"t000": result(acc=0.5), "t004": result("diverged"), "t005": result(acc=0.9)}
    st = {t.trial["index"]: t for t in combine(m, results, live).trials}
    assert st[0].state is TrialState.COMPLETED and st[0].metric == 0.5
    assert st[1].state is TrialState.FAILED and "FAILED" in st[1].error
    assert st[2].state is TrialState.PENDING and st[2].slurm_state == "PENDING" and st[2].reason == "BeginTime"
    assert st[2].attempts == 1  # one run before the requeue, none yet since
    assert st[3].state is TrialState.CANCELLED
    assert st[4].state is TrialState.DIVERGED
    # Slurm says COMPLETED but no result.json: the runner died; it must be rerun.
    assert st[6].state is TrialState.FAILED and st[6].state.needs_run()
    assert st[1].node == "vm" and st[5].runtime_s == 1.5


def test_grouped_pending_range_expands_and_squeue_wins():
    rows = slurm.parse_squeue(capture("squeue_grouped"))
    live = live_tasks([], rows, job_ids=["129"])
    assert sorted(live) == [f"129_{t}" for t in range(4, 10)]  # 130 filtered out: not ours
    assert all(v.state == "PENDING" and v.reason == "JobArrayTaskLimit" for v in live.values())
    # sacct said RUNNING a moment ago, squeue says PENDING now (requeued): squeue wins.
    sacct_rows = slurm.parse_sacct("129_4|RUNNING|0:0|2026-11-23T19:20:57|Unknown|3|vm\n")
    assert live_tasks(sacct_rows, rows)["129_4"].state == "PENDING"


def test_dependency_never_satisfied_is_not_active_and_resume_cancels_it():
    live = live_tasks(slurm.parse_sacct(capture("sacct_never")), slurm.parse_squeue(capture("squeue_never")))
    parents = [trial(i) for i in range(10)]
    children = [trial(10 + i, stage=1, parent=f"t{i:03d}") for i in range(10)]
    m = manifest(parents + children, [sub("129", "0-9"), sub("130", "10-19", offset=10, stage=1)])
    status = combine(m, {}, live)
    kids = [t for t in status.trials if t.trial["stage"] == 1]
    assert all(t.state is TrialState.PENDING and t.reason == NEVER_SATISFIED for t in kids)
    assert status.active() == []  # --watch ends
    sel = select(status)
    assert len(sel.stuck) == 10 and len(sel.run) == 20  # 10 failed parents + their 10 held children
    plan = plan_resume(status, sel.run, max_array_size=1001, budget=1000)
    assert [(a.stage, a.offset, a.depends_on) for a in plan.arrays] == [(0, 0, None), (1, 10, 0)]


def test_failed_result_with_task_running_again_is_running():
    live = {"7_0": LiveTask("RUNNING", "n2", 12.0, restarts=1, source="squeue")}
    m = manifest([trial(0)], [sub("7", "0")])
    st = combine(m, {"t000": result("failed", attempt=0)}, live).trials[0]
    assert st.state is TrialState.RUNNING and st.attempts == 2


def test_unsubmitted_lost_and_latest_submission_wins():
    trials = [trial(0), trial(1), trial(2)]
    m = manifest(trials, [sub("5", "0-1"), sub("9", "1", offset=1)])
    assert task_map(m) == {0: "5_0", 1: "9_0"}
    assert slurm_job_ids(m) == ["5", "9"]
    st = {t.trial["index"]: t.state for t in combine(m, {}, {}).trials}
    assert st == {0: TrialState.LOST, 1: TrialState.LOST, 2: TrialState.UNSUBMITTED}
    assert all(s.needs_run() for s in st.values())


def test_query_slurm_one_call_each_and_accounting_fallback():
    calls = []

    def sacct(ids):
        calls.append(("sacct", list(ids)))
        raise AccountingDisabled(["sacct"], "Slurm accounting storage is disabled")

    def squeue(ids, user=None):
        calls.append(("squeue", ids))
        return slurm.parse_squeue(capture("squeue_grouped"))

    live, accounting, notes = query_slurm(["129", "130"], sacct=sacct, squeue=squeue)
    assert [c[0] for c in calls] == ["sacct", "squeue"] and calls[0][1] == ["129", "130"]
    assert not accounting and len(notes) == 1 and "sacct unavailable" in notes[0]
    assert live["129_9"].state == "PENDING" and live["130_2"].reason == "Dependency"

    def broken_squeue(ids, user=None):
        raise SlurmError(["squeue"], "slurm_load_jobs error: Unable to contact slurm controller")

    live, accounting, notes = query_slurm(["129"], sacct=lambda ids: [], squeue=broken_squeue)
    assert accounting and live == {} and "squeue failed" in notes[0]


def test_collect_reads_results_from_disk(tmp_path):
    trials = [trial(i) for i in range(3)]
    m = manifest(trials, [sub("42", "0-2")])
    mf.write_manifest(tmp_path, m)
    for tid, res in (("t000", result(acc=0.7)), ("t001", {"status": "failed", "error": "boom\ntrace"})):
        mf.trial_dir(tmp_path, tid).mkdir(parents=True)
        mf.result_path(tmp_path, tid).write_text(json.dumps(res))
    mf.trial_dir(tmp_path, "t002").mkdir(parents=True)
    (mf.trial_dir(tmp_path, "t002") / mf.PROGRESS).write_text('{"acc": 0.1}\n{"acc": 0.3}\nnot json\n')
    sacct_text = "42_0|COMPLETED|0:0|2026-01-01T00:00:00|2026-01-01T00:00:05|5|n1\n" \
                 "42_1|FAILED|1:0|2026-01-01T00:00:00|2026-01-01T00:00:05|5|n1\n"
    status = collect(tmp_path, sacct=lambda ids: slurm.parse_sacct(sacct_text),
                     squeue=lambda ids, user=None: slurm.parse_squeue("42_2|RUNNING|None|n1|0:09\n"))
    doc = status.to_dict()
    assert doc["counts"] == {"completed": 1, "failed": 1, "running": 1}
    assert [t["metric"] for t in doc["trials"]] == [0.7, None, 0.3]  # running: latest progress value
    assert doc["trials"][1]["error"] == "boom" and doc["active"] == 1


# --- resume planning -------------------------------------------------------------------------------

def progressive(n: int) -> list[dict]:
    """n first-stage trials (indices 0..n-1) and their second stage (n..2n-1)."""
    return [trial(i) for i in range(n)] + [trial(n + i, stage=1, parent=f"t{i:03d}") for i in range(n)]


def test_plan_links_children_to_still_running_parents_at_their_task_ids():
    # Stage 0 in job 50 (tasks 0-3): 0 completed, 1 running, 2 pending, 3 failed.
    # Stage 1 array (job 51) was cancelled: every child needs a run.
    trials = progressive(4)
    m = manifest(trials, [sub("50", "0-3"), sub("51", "4-7", offset=4, stage=1)])
    live = {"50_1": LiveTask("RUNNING", "n", 3.0), "50_2": LiveTask("PENDING"),
            "50_3": LiveTask("FAILED"), **{f"51_{t}": LiveTask("CANCELLED") for t in range(4)}}
    status = combine(m, {"t000": result()}, live)
    sel = select(status)
    assert sorted(t.trial["index"] for t in sel.run) == [3, 4, 5, 6, 7]
    plan = plan_resume(status, sel.run, max_array_size=1001, budget=100)
    by_indices = {tuple(a.indices): a for a in plan.arrays}
    # t004's parent completed: runs at once, no dependency.
    assert by_indices[(4,)].depends_on is None and by_indices[(4,)].offset == 4
    # t003 failed: resubmitted; its child t007 waits on the new array at the same task id.
    parent_pos = plan.arrays.index(by_indices[(3,)])
    assert by_indices[(7,)].depends_on == parent_pos
    assert by_indices[(7,)].task_ids == by_indices[(3,)].task_ids
    # t005/t006: parents still in job 50 at tasks 1 and 2 -> same task ids, aftercorr on 50.
    linked = by_indices[(5, 6)]
    assert linked.task_ids == [1, 2] and plan.external[plan.arrays.index(linked)] == "aftercorr:50"
    assert plan.unsubmitted == []


def test_plan_grandchildren_of_a_linked_child_follow_it():
    trials = [trial(0), trial(1, stage=1, parent="t000"), trial(2, stage=2, parent="t001")]
    m = manifest(trials, [sub("60", "0"), sub("61", "1", offset=1, stage=1), sub("62", "2", offset=2, stage=2)])
    live = {"60_0": LiveTask("RUNNING"), "61_0": LiveTask("CANCELLED"), "62_0": LiveTask("CANCELLED")}
    status = combine(m, {}, live)
    plan = plan_resume(status, select(status).run, max_array_size=1001, budget=100)
    assert [(a.indices, a.task_ids, a.depends_on) for a in plan.arrays] == [([1], [0], None), ([2], [0], 0)]
    assert plan.external == {0: "aftercorr:60"}


def test_plan_skips_children_of_diverged_and_honours_the_queue_budget():
    trials = progressive(3)
    m = manifest(trials, [])
    status = combine(m, {"t000": result("diverged")}, {})
    sel = select(status)
    assert [t.trial["index"] for t in sel.blocked] == [3]
    assert sorted(t.trial["index"] for t in sel.run) == [1, 2, 4, 5]
    plan = plan_resume(status, sel.run, max_array_size=1001, budget=2)
    # Whole chains only: t001 + its child fit, t002's chain waits for queue room.
    assert sorted(i for a in plan.arrays for i in a.indices) == [1, 4]
    assert plan.unsubmitted == [2, 5]


def test_local_states_see_a_live_supervisor_and_ignore_a_dead_one(tmp_path):
    from jobs.run import now_iso

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        trials = [trial(0), trial(1), trial(2)]
        m = manifest(trials, [sub(f"local:{proc.pid}", "0-2", executor="local", submitted=now_iso())],
                     executor="local")
        mf.trial_dir(tmp_path, "t001").mkdir(parents=True)
        (mf.trial_dir(tmp_path, "t001") / "trial.log").write_text("=== attempt 0 ===\n")
        done = {"t000": result()}
        assert local_states(tmp_path, m, done) == {"t001": TrialState.RUNNING, "t002": TrialState.PENDING}
        status = combine(m, done, {}, local_states(tmp_path, m, done))
        assert [t.state.value for t in status.trials] == ["completed", "running", "pending"]
    finally:
        proc.kill()
        proc.wait()
    assert local_states(tmp_path, m, {}) == {}
    status = combine(m, {"t000": result()}, {}, {})
    assert [t.state.value for t in status.trials] == ["completed", "failed", "failed"]


def test_recycled_pid_is_not_the_supervisor(tmp_path):
    import os

    # Our own (alive) pid, recorded as a submission made long before this process started.
    m = manifest([trial(0)], [sub(f"local:{os.getpid()}", "0", executor="local",
                                  submitted="2001-01-01T00:00:00Z")], executor="local")
    assert local_states(tmp_path, m, {}) == {}


def test_sweep_status_counts_and_done_fraction():
    s = SweepStatus(trials=combine(manifest(progressive(2), []), {"t000": result(), "t001": result("pruned")},
                                   {}).trials, metric="acc")
    assert s.counts() == {"completed": 1, "pruned": 1, "unsubmitted": 2}
    assert s.done_fraction() == pytest.approx(0.5)
