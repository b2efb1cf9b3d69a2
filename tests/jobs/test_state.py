"""jobs.state: each trial's state from real captured sacct/squeue text and result files (no Slurm)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs import slurm
from jobs.backends import Live, LiveTask
from jobs.backends.slurm import live_tasks, slurm_live
from jobs.manifest import Manifest, Settings, Submission, Trial
from jobs.state import BEING_SUBMITTED, NEVER_SATISFIED, SweepStatus, collect, combine
from jobs.trial_state import TrialState

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "sacct"


def capture(name: str) -> str:
    return (DATA / f"state_{name}.txt").read_text()


def trial(index: int, stage: int = 0, parent: str | None = None) -> Trial:
    return Trial(id=f"t{index:03d}", index=index, stage=stage, params={"x": index}, parent=parent)


def sub(job: str | None, indices: str, offset: int = 0, stage: int = 0, **kw) -> Submission:
    return Submission(stage=stage, indices=indices, executor=kw.pop("executor", "slurm"), job_id=job, offset=offset,
                      submitted=kw.pop("submitted", "2026-01-01T00:00:00Z"), **kw)


def manifest(trials: list[Trial], submissions: list[Submission], executor: str = "slurm", **kw) -> Manifest:
    return Manifest(settings=Settings(name="s", command=("true",), metric="acc", executor=executor),
                    trials=tuple(trials), submissions=tuple(submissions), **kw)


def result(status: str = "completed", attempt: int = 0, **results) -> dict:
    return {"schema": 1, "status": status, "results": results, "runtime_s": 1.5, "error": None,
            "job": {"id": "x", "node": "n1", "attempt": attempt}}


def live_from(sacct_text: str, squeue_text: str, m: Manifest) -> Live:
    return slurm_live(m, sacct=lambda ids, steps=False: slurm.parse_sacct(sacct_text),
                      squeue=lambda ids, user=None: slurm.parse_squeue(squeue_text))


def test_real_sacct_and_squeue_map_to_trial_states():
    # Job 121: task 0 exit 0, 1 exit 1, 2 requeued (pending again), 3 cancelled, 4-7 exit 0.
    m = manifest([trial(i) for i in range(8)], [sub("121", "0-7")])
    live = live_from(capture("sacct_mixed"), capture("squeue_requeued"), m)
    results = {"t000": result(acc=0.5), "t004": result("diverged"), "t005": result(acc=0.9)}
    st = {t.trial.index: t for t in combine(m, results, live).trials}
    assert st[0].state is TrialState.COMPLETED and st[0].metric == 0.5
    assert st[1].state is TrialState.FAILED and "FAILED" in st[1].error
    assert st[2].state is TrialState.PENDING and st[2].slurm_state == "PENDING" and st[2].reason == "BeginTime"
    assert st[2].attempts == 1  # one run before the requeue, none yet since
    assert st[3].state is TrialState.CANCELLED and st[3].live.reason == "by 0"
    assert st[4].state is TrialState.DIVERGED
    # Slurm says COMPLETED but no result.json: the runner died; it must be rerun.
    assert st[6].state is TrialState.FAILED and st[6].state.needs_run()
    assert st[1].node == "vm" and st[5].runtime_s == 1.5 and st[1].slurm_id == "121_1"


def test_grouped_pending_range_expands_and_squeue_wins():
    rows = slurm.parse_squeue(capture("squeue_grouped"))
    live = live_tasks([], rows, job_ids=["129"])
    assert sorted(live) == [f"129_{t}" for t in range(4, 10)]  # 130 filtered out: not ours
    assert all(v.state == "PENDING" and v.reason == "JobArrayTaskLimit" for v in live.values())
    # sacct said RUNNING a moment ago, squeue says PENDING now (requeued): squeue wins.
    sacct_rows = slurm.parse_sacct("129_4|RUNNING|0:0|2026-11-23T19:20:57|Unknown|3|vm\n")
    assert live_tasks(sacct_rows, rows)["129_4"].state == "PENDING"


def test_dependency_never_satisfied_is_active_but_not_moving():
    parents = [trial(i) for i in range(10)]
    children = [trial(10 + i, stage=1, parent=f"t{i:03d}") for i in range(10)]
    m = manifest(parents + children, [sub("129", "0-9"), sub("130", "10-19", offset=10, stage=1)])
    status = combine(m, {}, live_from(capture("sacct_never"), capture("squeue_never"), m))
    kids = [t for t in status.trials if t.trial.stage == 1]
    assert all(t.state is TrialState.PENDING and t.reason == NEVER_SATISFIED for t in kids)
    assert status.active() == []  # --watch ends


def test_failed_result_with_task_running_again_is_running():
    live = Live(tasks={0: LiveTask("RUNNING", "7_0", "n2", 12.0, restarts=1, source="squeue")})
    m = manifest([trial(0)], [sub("7", "0")])
    st = combine(m, {"t000": result("failed", attempt=0)}, live).trials[0]
    assert st.state is TrialState.RUNNING and st.attempts == 2


def test_unsubmitted_pending_record_lost_and_latest_submission_wins():
    trials = [trial(i) for i in range(5)]
    m = manifest(trials, [sub("5", "0-1"), sub("9", "1", offset=1), sub(None, "3", state="pending", token="ab12")],
                 unsubmitted="2")
    assert m.latest_submissions()[1].task_ids()[1] == "9_0" and m.job_ids() == ["5", "9"]
    st = {t.trial.index: t for t in combine(m, {}, Live()).trials}
    assert {i: s.state for i, s in st.items()} == {0: TrialState.LOST, 1: TrialState.LOST, 2: TrialState.UNSUBMITTED,
                                                   3: TrialState.PENDING, 4: TrialState.UNSUBMITTED}
    assert st[3].reason == BEING_SUBMITTED
    assert all(s.state.needs_run() for i, s in st.items() if i != 3)


def test_nan_metric_is_diverged_flagged_and_never_best():
    m = manifest([trial(0), trial(1)], [sub("3", "0-1")])
    status = combine(m, {"t000": result(acc=float("nan")), "t001": result(acc=0.2)}, Live())
    nan, ok = status.trials
    assert nan.state is TrialState.DIVERGED and nan.metric is None and nan.warning == "acc is nan"
    assert ok.state is TrialState.COMPLETED and ok.metric == 0.2


def test_params_of_trials_asked_at_run_time_come_from_their_result():
    m = manifest([Trial(id="b0", index=0, replica=0)], [sub("3", "0")])
    status = combine(m, {"b0": {**result(acc=1.0), "hyperparameters": {"lr": 0.01}}}, Live())
    assert status.trials[0].params == {"lr": 0.01}
    assert status.to_dict()["trials"][0]["params"] == {"lr": 0.01}


def test_collect_reads_results_from_disk(tmp_path):
    m = manifest([trial(i) for i in range(3)], [sub("42", "0-2")])
    mf.write_manifest(tmp_path, m)
    for tid, res in (("t000", result(acc=0.7)), ("t001", {"status": "failed", "error": "boom\ntrace"})):
        mf.trial_dir(tmp_path, tid).mkdir(parents=True)
        mf.result_path(tmp_path, tid).write_text(json.dumps(res))
    mf.trial_dir(tmp_path, "t002").mkdir(parents=True)
    (mf.trial_dir(tmp_path, "t002") / mf.PROGRESS).write_text('{"acc": 0.1}\n{"acc": 0.3}\nnot json\n')
    sacct_text = "42_0|COMPLETED|0:0|2026-01-01T00:00:00|2026-01-01T00:00:05|5|n1\n" \
                 "42_1|FAILED|1:0|2026-01-01T00:00:00|2026-01-01T00:00:05|5|n1\n"
    status = collect(tmp_path, live=lambda: live_from(sacct_text, "42_2|RUNNING|None|n1|0:09\n", m))
    doc = status.to_dict()
    assert doc["counts"] == {"completed": 1, "failed": 1, "running": 1}
    assert [t["metric"] for t in doc["trials"]] == [0.7, None, 0.3]  # running: latest progress value
    assert doc["trials"][1]["error"] == "boom" and doc["active"] == 1


def test_sweep_status_counts_ended_and_done_fraction():
    trials = [trial(0), trial(1), trial(2), trial(3, stage=1, parent="t000")]
    s = SweepStatus(trials=combine(manifest(trials, [sub("1", "0-2")]),
                                   {"t000": result(), "t001": result("pruned"), "t002": result("failed")},
                                   Live()).trials, metric="acc")
    assert s.counts() == {"completed": 1, "pruned": 1, "failed": 1, "unsubmitted": 1}
    assert s.ended() == 3 and s.done_fraction() == pytest.approx(0.75)   # a failure has ended too
