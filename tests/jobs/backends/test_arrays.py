"""jobs.backends.arrays: trials -> arrays within the cluster's limits (split, chains, budget, attach, pack)."""
from __future__ import annotations

from jobs.backends.arrays import plan_arrays
from jobs.manifest import tasks_of
from tests.jobs.backends.support import chained_trials


def test_large_stage_is_split_below_max_array_size():
    plan = plan_arrays(chained_trials(2500), max_array_size=1000, budget=10_000)
    arrays, left = plan.arrays, plan.unsubmitted
    assert left == []
    assert [(a.offset, len(a.indices)) for a in arrays] == [(0, 1000), (1000, 1000), (2000, 500)]
    assert all(max(a.task_ids) < 1000 and min(a.task_ids) == 0 for a in arrays)


def test_progressive_chunks_depend_chunk_to_chunk_at_same_task_ids():
    trials = chained_trials(1500, stages=3)
    arrays = plan_arrays(trials, max_array_size=1000, budget=10_000).arrays
    by_index = {t.index: t for t in trials}
    assert [a.stage for a in arrays] == [0, 0, 1, 1, 2, 2]
    for a in arrays:
        if a.depends_on is None:
            continue
        parent_array = arrays[a.depends_on]
        assert parent_array.stage == a.stage - 1
        parent_of_task = {i - parent_array.offset: i for i in parent_array.indices}
        for index in a.indices:   # aftercorr: task t waits for task t of the parent array
            assert by_index[index].parent == by_index[parent_of_task[index - a.offset]].id


def test_queue_cap_keeps_whole_chains_and_records_the_rest():
    trials = chained_trials(10, stages=3)
    plan = plan_arrays(trials, max_array_size=100, budget=10)
    arrays, left = plan.arrays, plan.unsubmitted
    submitted = sorted(i for a in arrays for i in a.indices)
    assert len(submitted) == 9                      # 3 whole chains of 3
    assert submitted == [0, 1, 2, 10, 11, 12, 20, 21, 22]
    assert left == sorted(set(range(30)) - set(submitted))


def test_packed_tasks_hold_their_chunks_and_later_stages_pair_task_by_task():
    trials = chained_trials(7, stages=2)
    plan = plan_arrays(trials, max_array_size=100, budget=100, pack=3)
    first, second = plan.arrays
    assert first.tasks == {0: [0, 1, 2], 1: [3, 4, 5], 2: [6]}
    assert second.tasks == {0: [7, 8, 9], 1: [10, 11, 12], 2: [13]} and second.depends_on == 0
    assert tasks_of(sorted(second.indices), offset=second.offset, pack=3)[1] == [10, 11, 12]


def test_a_packed_budget_counts_tasks_notchained_trials():
    plan = plan_arrays(chained_trials(10, stages=2), max_array_size=100, budget=4, pack=3)
    # 6 chains of 2 stages fill 2 tasks per stage; the 7th chain would need a third task per stage.
    assert plan.planned == [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15] and len(plan.arrays) == 2
    assert plan.unsubmitted == [6, 7, 8, 9, 16, 17, 18, 19]


def test_attached_children_sit_at_their_parents_task_ids_in_the_old_job():
    trials = chained_trials(4, stages=2)
    children = [t for t in trials if t.stage == 1][1:3]     # t1-1, t1-2: parents at tasks 1 and 2 of job 50
    plan = plan_arrays(children, max_array_size=100, budget=100, attach={"t0-1": ("50", 1), "t0-2": ("50", 2)})
    (array,) = plan.arrays
    assert array.after_job == "50" and array.task_ids == [1, 2] and array.indices == [5, 6]


def test_tasks_of_numbers_tasks_from_the_offset():
    indices = [3, 4, 5, 9, 11, 12]
    assert tasks_of(indices, offset=3, pack=1) == {0: [3], 1: [4], 2: [5], 6: [9], 8: [11], 9: [12]}
    assert tasks_of(indices, offset=0, pack=4) == {0: [3, 4, 5, 9], 1: [11, 12]}
