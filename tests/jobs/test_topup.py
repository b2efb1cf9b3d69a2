"""jobs.topup: which waiting trials a finishing task may submit (no Slurm: the choice is pure apart
from reading results)."""
from __future__ import annotations

import json

from jobs import manifest as mf
from jobs.backends.slurm import BACKEND
from jobs.backends import SweepRef
from jobs.manifest import Manifest, Settings, Trial
from jobs.topup import ready_to_submit


def test_a_later_stage_waits_for_a_parent_that_was_submitted_and_has_not_completed(tmp_path):
    # Three trials, two stages. Trial 1 and the three second stages wait for room; trial 0 has
    # completed, trial 2 is still running in an array submitted earlier (its child was handed back).
    first = [Trial(id=f"a{i}", index=i) for i in range(3)]
    second = [Trial(id=f"b{i}", index=3 + i, stage=1, parent=f"a{i}") for i in range(3)]
    manifest = Manifest(settings=Settings(name="s", command=("true",)), trials=tuple(first + second))
    tdir = mf.trial_dir(tmp_path, "a0")
    tdir.mkdir(parents=True)
    (tdir / mf.RESULT).write_text(json.dumps({"status": "completed", "results": {}}))
    ready, behind = ready_to_submit(tmp_path, manifest, [1, 3, 4, 5])
    # b0: its parent completed; b1 goes with a1 (same plan, chained); b2 would start without a2's checkpoint.
    assert [t.index for t in ready] == [1, 3, 4] and behind == [5]
    plan = BACKEND.plan(ready, SweepRef(tmp_path, manifest), budget=100)
    child = next(a for a in plan.arrays if 4 in a.indices)
    assert child.depends_on is not None and 1 in plan.arrays[child.depends_on].indices


def test_a_cancel_that_ends_while_a_top_up_waits_for_the_lock_stops_it(tmp_path, monkeypatch):
    # The top-up looked before `sweep cancel` wrote its marker, and got the lock after cancel let go:
    # it must look again under the lock, or it submits a piece that nobody cancels.
    from jobs import topup

    trials = tuple(Trial(id=f"a{i}", index=i) for i in range(2))
    manifest = Manifest(settings=Settings(name="s", command=("true",), executor="slurm"), trials=trials,
                        unsubmitted="0-1")
    mf.write_manifest(tmp_path, manifest)
    answers = iter([False, True])
    monkeypatch.setattr(topup, "cancel_requested", lambda _: next(answers))

    def no_squeue(*_a, **_k):
        raise AssertionError("asked the queue for room after the cancel")

    monkeypatch.setattr(topup, "queue_room", no_squeue)
    assert topup.top_up(tmp_path) == 0
    assert mf.read_manifest(tmp_path).unsubmitted == "0-1"


def test_a_task_that_found_the_lock_held_is_answered_by_the_holder(tmp_path, monkeypatch):
    # Task A holds the lock and leaves the top-up to task B, still queued; B, ending meanwhile, found the
    # lock held and left a request. A must look again once it lets go, or nobody submits what waits.
    from jobs import topup

    trials = tuple(Trial(id=f"a{i}", index=i) for i in range(2))
    mf.write_manifest(tmp_path, Manifest(settings=Settings(name="s", command=("true",), executor="slurm"),
                                         trials=trials, unsubmitted="0-1"))
    calls = []

    def room(limit, job_ids, done=frozenset(), *, b_ends=True):
        calls.append(1)
        if len(calls) == 1 and b_ends:
            (tmp_path / topup.REQUEST).touch()      # B: lock held, request left, gone
        return 0, ["42_1"]                          # the queue is full; task 42_1 (B) still listed

    monkeypatch.setattr(topup, "queue_room", room)
    assert topup.top_up(tmp_path) == 0
    assert len(calls) == 2 and not (tmp_path / topup.REQUEST).exists()
    calls.clear()
    monkeypatch.setattr(topup, "queue_room", lambda *a: room(*a, b_ends=False))
    assert topup.top_up(tmp_path) == 0 and len(calls) == 1      # no request: one pass


def test_the_last_two_tasks_of_a_piece_do_not_each_leave_the_top_up_to_the_other(tmp_path, monkeypatch):
    # Two trials run as tasks 42_0 (A) and 42_1 (B) under a limit the queue fills; two more wait.
    # A ends first: B is still running, so A leaves the top-up to B. B ends while A still shows as
    # completing: B must not leave it to A (whose top-up is over), but wait for A's slot and submit.
    from jobs import slurm, topup
    from jobs.slurm import JobId
    from jobs.submission import Session

    trials = tuple(Trial(id=f"a{i}", index=i) for i in range(4))
    first = mf.Submission(stage=0, indices="0-1", executor="slurm", job_id="42", array="0-1")
    settings = Settings(name="s", command=("true",), executor="slurm")
    settings = settings._replace(cluster=settings.cluster._replace(max_queued_jobs=3))
    mf.write_manifest(tmp_path, Manifest(settings=settings, trials=trials, submissions=(first,), unsubmitted="2-3"))
    other = JobId("7", 0)                                   # another job of the user's, queued throughout
    queue = {"A ends": [other, JobId("42", 0), JobId("42", 1)],
             "B ends": [[other, JobId("42", 0), JobId("42", 1)], [other, JobId("42", 1)]]}
    monkeypatch.setattr(slurm, "current_user", lambda: "me")
    monkeypatch.setattr(topup, "ROOM_POLL_S", 0.01)
    submitted = []

    def submit(self, plan, unsubmitted):
        submitted.append(plan.planned)
        self.save(self.manifest.replace(unsubmitted=mf.compact_ranges(unsubmitted)))

    monkeypatch.setattr(Session, "submit", submit)

    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "42")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setattr(slurm, "queued_tasks", lambda user: queue["A ends"])
    assert topup.top_up(tmp_path) == 0 and submitted == []      # B, still running, will do it

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    views = iter(queue["B ends"])
    monkeypatch.setattr(slurm, "queued_tasks", lambda user: next(views))
    assert topup.top_up(tmp_path) == 1 and submitted == [[2]]   # one slot: A's, once it has left
    assert mf.read_manifest(tmp_path).unsubmitted == "3"
