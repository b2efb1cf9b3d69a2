"""jobs.promote: ASHA's decision (pure), the waiting/stopped states and the ladder, and promotions
through open_sweep on the local backend: recorded once, never twice, coalesced between finishing
tasks, run from each trial's own checkpoint."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from jobs import manifest as mf
from jobs import promote
from jobs.backends import Live
from jobs.manifest import Manifest, Settings, Stages, Trial
from jobs.promote import Entry, decide
from jobs.state import collect, combine
from jobs.submission import open_sweep
from jobs.trial_state import TrialState
from launcher.cli import main
from tests.fixtures.asha_records import PROGRAM, starts

PY = sys.executable


# --- the decision ----------------------------------------------------------------------------------

def rung0(values: list[float | None], promoted: set[int] = frozenset(), rung: int = 0, group=None) -> list[Entry]:
    return [Entry(index=i, rung=rung, child=100 + i, value=v, promoted=i in promoted, group=group)
            for i, v in enumerate(values)]


def test_the_top_floor_n_over_eta_of_the_results_so_far_climb():
    assert decide(rung0([0.5]), eta=2, goal="maximize") == []                       # 1 // 2 = 0
    [p] = decide(rung0([0.5, 0.9]), eta=2, goal="maximize")
    assert (p.child, p.parent, p.rung, p.rank, p.of) == (101, 1, 1, 1, 2)
    # Not finished yet (None) do not count; 5 results, eta 2: the best two.
    got = decide(rung0([0.5, 0.9, None, 0.7, 0.1, 0.8]), eta=2, goal="maximize")
    assert [p.parent for p in got] == [1, 5]
    assert [p.parent for p in decide(rung0([0.5, 0.9, None, 0.7, 0.1, 0.8]), eta=2, goal="minimize")] == [4, 0]
    # eta 3 of 5: one; ties go to the earlier trial.
    assert [p.parent for p in decide(rung0([0.9, 0.9, 0.1, 0.2, 0.3]), eta=3, goal="maximize")] == [0]


def test_a_promotion_is_never_handed_out_twice_nor_taken_back():
    # Results came worst first: 1 climbed when it was the better of two; now it is not in the top 2
    # of 4, and stays promoted, while the two better ones climb too (ASHA's price for not waiting).
    got = decide(rung0([0.1, 0.2, 0.8, 0.9], promoted={1}), eta=2, goal="maximize")
    assert [p.parent for p in got] == [3, 2]
    assert decide(rung0([0.1, 0.2, 0.8, 0.9], promoted={1, 2, 3}), eta=2, goal="maximize") == []


def test_higher_rungs_first_and_each_environment_ranks_its_own():
    entries = rung0([0.9, 0.1], group="easy") + rung0([0.2, 0.3], group="hard") \
        + [Entry(index=10, rung=1, child=20, value=0.5), Entry(index=11, rung=1, child=21, value=0.6)]
    got = decide(entries, eta=2, goal="maximize")
    assert [(p.rung, p.parent) for p in got] == [(2, 11), (1, 0), (1, 1)]


# --- waiting, stopped, the ladder ------------------------------------------------------------------

def ladder_manifest(n: int = 4, held: str | None = None) -> Manifest:
    """n points on rungs 2/4/8, eta 2; indices r*n + i, trial i of rung r+1 the child of trial i of rung r."""
    trials = [Trial(id=f"r{r}t{i}", index=r * n + i, stage=r, params={"x": i}, overrides={"x": i, "steps": s},
                    parent=f"r{r - 1}t{i}" if r else None)
              for r, s in enumerate((2, 4, 8)) for i in range(n)]
    settings = Settings(name="s", command=("true",), executor="local", method="asha", metric="score",
                        stages=Stages(key="steps", values=(2, 4, 8)), search_options={"eta": 2})
    return Manifest(settings=settings, trials=tuple(trials), held=held if held is not None else f"{n}-{3 * n - 1}")


def done(score: float | None = None, status: str = "completed") -> dict:
    return {"status": status, "results": {} if score is None else {"score": score}, "runtime_s": 10.0, "job": {}}


def states(m: Manifest, results: dict) -> dict[int, TrialState]:
    return {t.trial.index: t.state for t in combine(m, results, Live()).trials}


def test_held_trials_wait_while_their_rung_may_rank_them_and_stop_once_it_is_decided():
    m = ladder_manifest()
    # Rung 0: trial 0 completed, 1 diverged, 2 and 3 still without a result (not queued here: unsubmitted).
    st = {t.trial.index: t for t in combine(m, {"r0t0": done(0.5), "r0t1": done(status="diverged")}, Live()).trials}
    assert st[4].state is TrialState.WAITING and "ranks it" in st[4].reason
    assert st[5].state is TrialState.STOPPED and "ended diverged" in st[5].reason
    assert st[6].state is TrialState.WAITING and "waits for its rung-0 run" in st[6].reason
    assert st[9].state is TrialState.STOPPED and "not promoted to rung 1" in st[9].reason   # 1's rung 2
    assert st[8].state is TrialState.WAITING
    # Every rung-0 run ended: 0.9 (trial 2) is due (nobody promoted it yet); 0 and 3 are out.
    results = {"r0t0": done(0.5), "r0t1": done(status="diverged"), "r0t2": done(0.9), "r0t3": done(0.2)}
    st = {t.trial.index: t for t in combine(m, results, Live()).trials}
    assert [st[i].state for i in (4, 5, 6, 7)] == [TrialState.STOPPED, TrialState.STOPPED, TrialState.WAITING,
                                                   TrialState.STOPPED]
    assert "promotion due (rank 1 of 3 at rung 0)" in st[6].reason and "top 1/2 of rung 0" in st[4].reason
    for s in (TrialState.WAITING, TrialState.STOPPED):
        assert not s.needs_run() and not s.is_active()
    assert TrialState.STOPPED.is_final() and TrialState.STOPPED.is_ended() and not TrialState.WAITING.is_ended()


def test_the_ladder_partitions_each_rung_into_promoted_waiting_and_stopped():
    m = ladder_manifest(held="5,7-11")          # trials 0 and 2 climbed to rung 1 (indices 4, 6)
    results = {"r0t0": done(0.9), "r0t1": done(0.1), "r0t2": done(0.8), "r0t3": done(0.2), "r1t0": done(0.95)}
    status = combine(m, results, Live())
    rows = [r.to_dict() for r in status.rungs]
    assert rows[0] == {"rung": 0, "budget": 2, "trials": 4, "completed": 4, "active": 0, "promoted": 2,
                       "waiting": 0, "stopped": 2}
    # Rung 1: 4 completed, 6 has no result (not queued here); 4's rung 2 waits for 6 (1 // 2 = 0 so far).
    assert rows[1] == {"rung": 1, "budget": 4, "trials": 2, "completed": 1, "active": 0, "promoted": 0,
                       "waiting": 2, "stopped": 0}
    assert rows[2]["trials"] == 0 and rows[2]["promoted"] is None
    assert status.to_dict()["rungs"] == rows


# --- promotions through open_sweep (local backend) ----------------------------------------------------

SPEC = """
name: climb
method: asha
trials: {n}
seed: 7
metric: score
space: {{x: {{distribution: uniform, min: 0, max: 1}}}}
fixed: {{delay: 0.01}}
rungs: {{key: steps, values: [2, 4, 8]}}
eta: 2
"""


def make_sweep(tmp_path: Path, n: int = 4) -> Path:
    """An asha sweep directory as `sweep launch` writes it, nothing submitted yet."""
    from launcher import launching, sweepdir

    (tmp_path / "spec.yaml").write_text(SPEC.format(n=n))
    prep = launching.prepare(launching.LaunchOptions(items=[str(tmp_path / "spec.yaml")], executor="local",
                                                     dir=tmp_path / "sweep", command=f"{PY} {PROGRAM}"))
    return sweepdir.create(prep.sweep_dir, prep.manifest, prep.spec_text)


def run_without_promoting(sweep: Path, indices: list[int]) -> None:
    """Run trials for real in this process, as a task that dies before its promotion pass would."""
    from jobs import run

    m = mf.read_manifest(sweep)
    assert run.run_task(sweep, m.settings, [m.trial_at(i) for i in indices]) == 0


def log(sweep: Path) -> list[dict]:
    path = sweep / promote.LOG
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def score(sweep: Path, m: Manifest, index: int) -> float:
    return json.loads(mf.result_path(sweep, m.trial_at(index).id).read_text())["results"]["score"]


def test_a_pass_records_its_promotions_once_and_a_second_pass_finds_nothing(tmp_path):
    sweep = make_sweep(tmp_path)
    run_without_promoting(sweep, [0, 1, 2, 3])
    m = mf.read_manifest(sweep)
    best_two = sorted(range(4), key=lambda i: -score(sweep, m, i))[:2]
    with open_sweep(sweep, "test") as session:
        # As where compute nodes cannot submit: decided and recorded (they wait for room), nothing started.
        assert promote.promote_in(session, submit=False) == sorted(i + 4 for i in best_two)
    with open_sweep(sweep, "test") as session:
        assert promote.promote_in(session) == []
    m = mf.read_manifest(sweep)
    assert m.unsubmitted_indices() == sorted(i + 4 for i in best_two) and not m.submissions
    assert m.held_indices() == sorted({4, 5, 6, 7} - {i + 4 for i in best_two}) + list(range(8, 12))
    assert [(e["parent"], e["child"], e["rung"]) for e in log(sweep)] == [(i, i + 4, 1) for i in best_two]
    status = {t.trial.index: t.state for t in collect(sweep).trials}
    # Waiting for room is what the top-up and `sweep resume` submit; the two left behind are stopped.
    assert [status[i + 4] for i in best_two] == [TrialState.UNSUBMITTED] * 2
    assert sorted(i for i in range(4, 8) if status[i] is TrialState.STOPPED) == sorted(
        {4, 5, 6, 7} - {i + 4 for i in best_two})


def test_a_task_that_finds_its_result_read_by_a_pass_meanwhile_does_not_pass_again(tmp_path):
    sweep = make_sweep(tmp_path)
    run_without_promoting(sweep, [0, 1])
    m = mf.read_manifest(sweep)
    outcome: list[int] = []
    with open_sweep(sweep, "another task's pass") as session:
        # This task finished while another held the lock: it marks its result and waits for the lock.
        waiter = threading.Thread(target=lambda: outcome.append(
            promote.after_task(sweep, m.settings, [m.trial_at(1)])))
        waiter.start()
        deadline = time.monotonic() + 10
        while not (sweep / promote.MARKER).exists():
            assert time.monotonic() < deadline, "the task never marked its result"
            time.sleep(0.05)
        # The holder's pass starts after that mark: it reads trial 1's result (recorded only: nothing runs).
        assert len(promote.promote_in(session, submit=False)) == 1
    waiter.join(30)
    assert outcome == [0] and len(log(sweep)) == 1 and not (sweep / promote.MARKER).exists()


def test_a_task_whose_trial_did_not_complete_below_the_top_rung_passes_nothing(tmp_path):
    sweep = make_sweep(tmp_path)
    m = mf.read_manifest(sweep)
    assert promote.after_task(sweep, m.settings, [m.trial_at(0)]) == 0     # no result
    assert not (sweep / promote.MARKER).exists() and not (sweep / ".lock").exists()


def wait_until_settled(sweep: Path, timeout: float = 120) -> dict:
    """Until every trial ended (completed, stopped, ...): nothing waits for a promotion any more."""
    deadline = time.monotonic() + timeout
    while True:
        status = collect(sweep)
        if all(t.state.is_ended() for t in status.trials):
            return {t.trial.index: t for t in status.trials}
        assert time.monotonic() < deadline, {t.trial.index: t.state.value for t in status.trials}
        time.sleep(0.3)


@pytest.mark.slow
def test_sweep_resume_promotes_what_a_killed_task_left_and_each_climber_starts_from_its_own_checkpoint(
        tmp_path, capsys):
    sweep = make_sweep(tmp_path)
    run_without_promoting(sweep, [0, 1, 2, 3])
    assert main(["resume", str(sweep), "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert len(dry["promoted"]) == 2 and dry["submitted"] == 0
    assert main(["resume", str(sweep), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["promoted"] == dry["promoted"]
    st = wait_until_settled(sweep)
    m = mf.read_manifest(sweep)
    by_id = m.by_id()
    for t in m.trials:
        if t.stage and st[t.index].state is TrialState.COMPLETED:
            parent = by_id[t.parent]
            [start] = starts(sweep, t.id)
            assert start["origin"] == str(mf.trial_dir(sweep, parent.id) / mf.CHECKPOINTS)
            assert start["from_step"] == parent.overrides["steps"]
    assert sorted(i for s in m.submissions for i in s.index_list()) == sorted(
        i for i, t in st.items() if t.state is TrialState.COMPLETED and i >= 4)


@pytest.mark.slow
def test_a_local_sweep_climbs_its_rungs_by_itself(tmp_path, capsys):
    n = 8
    (tmp_path / "spec.yaml").write_text(SPEC.format(n=n))
    sweep = tmp_path / "sweep"
    assert main(["launch", str(tmp_path / "spec.yaml"), "--executor", "local", "--dir", str(sweep),
                 "--max-parallel", "2", "--command", f"{PY} {PROGRAM}", "--json"]) == 0
    capsys.readouterr()
    st = wait_until_settled(sweep)
    m = mf.read_manifest(sweep)
    assert all(st[i].state is TrialState.COMPLETED for i in range(n))
    for r in (0, 1):
        ran = [i for i in range(r * n, (r + 1) * n) if st[i].state is TrialState.COMPLETED]
        climbed = {i for i in ran if st[i + n].state is not TrialState.STOPPED}
        # ASHA's guarantee once a rung is done: its final top floor(k / eta) all climbed.
        top = sorted(ran, key=lambda i: -st[i].metric)[:len(ran) // 2]
        assert set(top) <= climbed and st[top[0] + n].state is TrialState.COMPLETED
    # Every promotion once, each child started once, from its parent's checkpoint at the parent's budget.
    children = [e["child"] for e in log(sweep)]
    assert len(children) == len(set(children)) and not set(children) & set(m.held_indices())
    for child in children:
        t = m.trial_at(child)
        [start] = starts(sweep, t.id)
        assert start["origin"].endswith(f"{t.parent}/checkpoints") and start["from_step"] == (2, 4)[t.stage - 1]
    assert sorted(i for s in m.submissions for i in s.index_list()) == sorted([*range(n), *children])
    rows = collect(sweep).rungs
    assert [r.trials for r in rows] == [n, rows[0].promoted, rows[1].promoted]
    assert all(r.waiting == 0 for r in rows[:2]) and rows[0].promoted + rows[0].stopped == n
