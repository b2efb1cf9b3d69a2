"""jobs.resume: which trials `sweep resume` runs again and how their arrays are linked (no Slurm:
states from captured sacct/squeue text and result dicts)."""
from __future__ import annotations

from pathlib import Path

from jobs import manifest as mf
from jobs import slurm
from jobs.backends import Live, LiveTask, SweepRef
from jobs.backends.slurm import BACKEND, slurm_live
from jobs.manifest import Manifest, Settings, Submission, Trial
from jobs.profile import ClusterProfile
from jobs.resume import plan, select
from jobs.state import combine

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "sacct"


def trial(index: int, stage: int = 0, parent: str | None = None) -> Trial:
    return Trial(id=f"t{index:03d}", index=index, stage=stage, parent=parent)


def progressive(n: int) -> list[Trial]:
    """n first-stage trials (indices 0..n-1) and their second stage (n..2n-1)."""
    return [trial(i) for i in range(n)] + [trial(n + i, stage=1, parent=f"t{i:03d}") for i in range(n)]


def sub(job: str, indices: str, offset: int = 0, stage: int = 0) -> Submission:
    return Submission(stage=stage, indices=indices, executor="slurm", job_id=job, offset=offset)


def manifest(trials: list[Trial], subs: list[Submission]) -> Manifest:
    settings = Settings(name="s", command=("true",), workdir="/tmp", cluster=ClusterProfile(max_array_size=1001))
    return Manifest(settings=settings, trials=tuple(trials), submissions=tuple(subs))


def result(status: str = "completed") -> dict:
    return {"status": status, "results": {}, "job": {"attempt": 0}}


def live(tasks: dict[int, str], job: str = "50") -> Live:
    return Live(tasks={i: LiveTask(state, f"{job}_{i}") for i, state in tasks.items()})


def test_dependency_never_satisfied_is_cancelled_and_rerun_with_its_parent(tmp_path):
    m = manifest(progressive(10), [sub("129", "0-9"), sub("130", "10-19", offset=10, stage=1)])
    state = slurm_live(m, sacct=lambda ids, steps=False: slurm.parse_sacct((DATA / "state_sacct_never.txt").read_text()),
                       squeue=lambda ids, user=None: slurm.parse_squeue((DATA / "state_squeue_never.txt").read_text()))
    status = combine(m, {}, state)
    sel = select(status, tmp_path, max_attempts=3, timeout_requeues=1)
    assert len(sel.stuck) == 10 and len(sel.run) == 20      # 10 failed parents + their 10 held children
    rp = plan(status, sel.run, BACKEND, SweepRef(tmp_path, m), budget=1000, max_parallel=None)
    assert [(a.stage, a.offset, a.depends_on) for a in rp.plan.arrays] == [(0, 0, None), (1, 10, 0)]


def test_children_link_to_still_running_parents_at_their_task_ids(tmp_path):
    # Stage 0 in job 50 (tasks 0-3): 0 completed, 1 running, 2 pending, 3 failed (no result).
    # Stage 1 array (job 51) was cancelled: every child needs a run.
    m = manifest(progressive(4), [sub("50", "0-3"), sub("51", "4-7", offset=4, stage=1)])
    state = Live(tasks={1: LiveTask("RUNNING", "50_1"), 2: LiveTask("PENDING", "50_2"), 3: LiveTask("FAILED", "50_3"),
                        **{4 + t: LiveTask("CANCELLED", f"51_{t}") for t in range(4)}})
    status = combine(m, {"t000": result()}, state)
    sel = select(status, tmp_path, max_attempts=3, timeout_requeues=1, retry_cancelled=True)
    assert sorted(t.trial.index for t in sel.run) == [3, 4, 5, 6, 7]
    arrays = plan(status, sel.run, BACKEND, SweepRef(tmp_path, m), budget=100, max_parallel=None).plan.arrays
    by_indices = {tuple(a.indices): a for a in arrays}
    # t004's parent completed: runs at once, no dependency.
    assert by_indices[(4,)].depends_on is None and by_indices[(4,)].after_job is None
    # t003 failed without a result (killed): resubmitted; its child t007 waits on the new array.
    assert by_indices[(7,)].depends_on == arrays.index(by_indices[(3,)])
    assert by_indices[(7,)].task_ids == by_indices[(3,)].task_ids
    # t005/t006: parents still in job 50 at tasks 1 and 2 -> same task ids, aftercorr on 50.
    linked = by_indices[(5, 6)]
    assert linked.task_ids == [1, 2] and linked.after_job == "50"


def test_cancelled_children_wait_unless_asked(tmp_path):
    m = manifest(progressive(2), [sub("50", "0-1"), sub("51", "2-3", offset=2, stage=1)])
    status = combine(m, {"t000": result(), "t001": result()}, live({2: "CANCELLED", 3: "CANCELLED"}, "51"))
    sel = select(status, tmp_path, max_attempts=3, timeout_requeues=1)
    assert sel.run == [] and [t.trial.index for t in sel.kept] == [2, 3]
    assert [t.trial.index
            for t in select(status, tmp_path, max_attempts=3, timeout_requeues=1, retry_cancelled=True).run] == [2, 3]


def two_ended(tmp_path: Path, state: str, counter: str, counts: tuple[int, int]):
    """Trials 0 and 1 ended as `state`, their `counter` (failures, timeouts) at `counts`."""
    m = manifest([trial(0), trial(1)], [sub("5", "0-1")])
    for tid, n in zip(("t000", "t001"), counts):
        mf.trial_dir(tmp_path, tid).mkdir(parents=True)
        (mf.trial_dir(tmp_path, tid) / counter).write_text(f"{n}\n")
    return combine(m, {"t000": result(state), "t001": result(state)}, Live())


def test_failures_rerun_under_their_attempts_or_when_asked(tmp_path):
    status = two_ended(tmp_path, "failed", "failures", (1, 3))
    sel = select(status, tmp_path, max_attempts=3, timeout_requeues=1)
    assert [t.trial.id for t in sel.run] == ["t000"] and [t.trial.id for t in sel.kept] == ["t001"]
    assert len(select(status, tmp_path, max_attempts=3, timeout_requeues=1, retry_failed=True).run) == 2
    assert len(select(status, tmp_path, max_attempts=5, timeout_requeues=1).run) == 2      # a raised --max-attempts


def test_a_trial_that_used_its_time_limit_requeues_is_kept_as_the_runner_would_keep_it(tmp_path):
    # Timed out after its one time-limit requeue: the task runner would leave it alone, so resume
    # must not submit a task that does nothing.
    status = two_ended(tmp_path, "timeout", "timeouts", (1, 2))
    sel = select(status, tmp_path, max_attempts=3, timeout_requeues=1)
    assert [t.trial.id for t in sel.run] == ["t000"] and [t.trial.id for t in sel.kept] == ["t001"]
    assert len(select(status, tmp_path, max_attempts=3, timeout_requeues=1, retry_failed=True).run) == 2


def test_children_of_diverged_or_kept_parents_are_blocked_and_the_budget_keeps_whole_chains(tmp_path):
    trials = progressive(3)
    m = manifest(trials, [])
    status = combine(m, {"t000": result("diverged")}, Live())
    sel = select(status, tmp_path, max_attempts=3, timeout_requeues=1)
    assert [t.trial.index for t in sel.blocked] == [3]
    assert sorted(t.trial.index for t in sel.run) == [1, 2, 4, 5]
    rp = plan(status, sel.run, BACKEND, SweepRef(tmp_path, m), budget=2, max_parallel=None)
    # Whole chains only: t001 + its child fit, t002's chain waits for queue room.
    assert rp.plan.planned == [1, 4] and rp.plan.unsubmitted == [2, 5]


def test_the_queue_limit_counts_a_packed_task_once():
    # Six trials packed three to a task (tasks 0 and 1 of job 50), both running: two tasks queued, not six,
    # so a resume under a limit of 10 may still submit 8 tasks.
    from jobs.resume import queued_tasks

    m = manifest([trial(i) for i in range(8)], [Submission(stage=0, indices="0-5", executor="slurm", job_id="50",
                                                           pack=3)])
    tasks = {i: LiveTask("RUNNING", f"50_{i // 3}") for i in range(6)}
    status = combine(m, {}, Live(tasks=tasks))
    assert queued_tasks(status) == 2
    assert queued_tasks(status, leaving={0, 1, 2}) == 1
